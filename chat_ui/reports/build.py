"""One entry for every report, used by ``collectivia report`` and by the chat's dashboard: read the period from the
history database, keep what the view covers, build the report."""

from __future__ import annotations

import datetime as dt
import re
from typing import Mapping

from chat_ui.reports.access import View
from chat_ui.reports.documents import DocumentsReport, documents_report
from chat_ui.reports.feedback import FeedbackReport, feedback_report
from chat_ui.reports.gaps import GapsReport, gaps_report
from chat_ui.reports.history import now_utc, read_day_counts, read_feedback, read_questions
from index.store import DocRecord

KINDS = ("gaps", "feedback", "documents")
DEFAULT_SINCE = "30d"
_UNITS = {"d": 1, "j": 1, "w": 7, "s": 7, "m": 30, "y": 365, "a": 365}


class ReportRequestError(ValueError):
    """A report request that cannot be read (period, kind); the message quotes the value, in French."""


def parse_since(value: str | None, now: dt.datetime | None = None) -> dt.datetime:
    """« 30d » (days; also j), « 12w » (weeks; also s), « 6m » (30-day months), « 1y » (also a), or a date
    AAAA-MM-JJ → the start of the period, in UTC."""
    now = now or now_utc()
    text = (value or DEFAULT_SINCE).strip().lower()
    match = re.fullmatch(r"(\d{1,5})\s*([djwsmya])", text)
    if match:
        return now - dt.timedelta(days=int(match.group(1)) * _UNITS[match.group(2)])
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        raise ReportRequestError(f"période « {value} » illisible : écrivez par exemple 30d (jours), 12w (semaines), "
                                 "6m (mois), 1y (an) ou une date 2026-01-31") from None
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc)


async def make_report(kind: str, view: View, url: str, records: Mapping[str, DocRecord], settings,
                      since: dt.datetime) -> GapsReport | FeedbackReport | DocumentsReport:
    """The ``kind`` report (gaps, feedback, documents) of ``view`` from ``since``; ``settings``: ``ReportSettings``."""
    if kind == "gaps":
        return gaps_report(await read_day_counts(url, since), await read_questions(url, since, view, gaps_only=True),
                           view, min_group=settings.min_group, since=since)
    if kind == "feedback":
        return feedback_report(await read_feedback(url, since), view, min_group=settings.min_group,
                               doc_services={d: r.services for d, r in records.items()},
                               titles={d: r.title for d, r in records.items()}, since=since)
    if kind == "documents":
        now = now_utc()
        recent_since = now - dt.timedelta(days=settings.uncited_days)
        start = min(since, recent_since)
        rows = await read_questions(url, start, cited_only=True)
        return documents_report([r for r in rows if r.created_at >= since],
                                [r for r in rows if r.created_at >= recent_since], records, view,
                                min_group=settings.min_group, uncited_days=settings.uncited_days,
                                old_document_days=settings.old_document_days, today=now.date(), since=since)
    raise ReportRequestError(f"rapport « {kind} » inconnu (rapports : {', '.join(KINDS)})")
