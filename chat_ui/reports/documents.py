"""Documents seen from the answers: the most cited, those no answer cited in ``uncited_days``, those cited though
dated more than ``old_document_days`` ago, and repealed texts still reached through « inclure les textes abrogés ».

Lines counted from questions (most cited, old, repealed) need at least ``min_group`` questions to be shown. « Never
cited » lists documents, not questions: it is shown whole, and counts the citations of every agent (a document
cited by anyone is not forgotten). The documents are those of the services in view (every document for an
administrator).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Mapping

from chat_ui.reports.access import View
from chat_ui.reports.history import LoggedQuestion
from index.store import DocRecord

MOST_CITED = 10


@dataclass(frozen=True, slots=True)
class DocLine:
    doc_id: str
    title: str
    services: tuple[str, ...]
    count: int  # questions whose answer cited it (0 for « never cited »)
    date: str | None = None

    def to_json(self) -> dict:
        return {"doc_id": self.doc_id, "titre": self.title, "services": list(self.services), "citations": self.count,
                "date": self.date}


@dataclass(frozen=True, slots=True)
class DocumentsReport:
    view: View
    since: dt.datetime | None
    min_group: int
    uncited_days: int
    old_document_days: int
    most_cited: tuple[DocLine, ...]
    never_cited: tuple[DocLine, ...]
    old_cited: tuple[DocLine, ...]
    repealed_reached: tuple[DocLine, ...]
    hidden_lines: int

    SECTIONS = (("most_cited", "les plus cités"), ("never_cited", "jamais cités"), ("old_cited", "cités mais anciens"),
                ("repealed_reached", "abrogés encore consultés"))

    def to_json(self) -> dict:
        return {"rapport": "documents", "services": self.view.label,
                "depuis": self.since.date().isoformat() if self.since else None, "seuil": self.min_group,
                "jours_sans_citation": self.uncited_days, "jours_ancien": self.old_document_days,
                "plus_cites": [d.to_json() for d in self.most_cited],
                "jamais_cites": [d.to_json() for d in self.never_cited],
                "cites_anciens": [d.to_json() for d in self.old_cited],
                "abroges_consultes": [d.to_json() for d in self.repealed_reached],
                "lignes_masquees": self.hidden_lines}

    def csv_rows(self) -> list[dict]:
        return [{"section": label, "doc_id": d.doc_id, "titre": d.title, "services": " ".join(d.services),
                 "citations": d.count, "date": d.date or ""}
                for attr, label in self.SECTIONS for d in getattr(self, attr)]


def _in_view(record: DocRecord, view: View) -> bool:
    return view.covers(record.services)


def _date(value: str | None) -> dt.date | None:
    try:
        return dt.date.fromisoformat(str(value)[:10]) if value else None
    except ValueError:
        return None


def documents_report(period: Iterable[LoggedQuestion], recent: Iterable[LoggedQuestion],
                     records: Mapping[str, DocRecord], view: View, *, min_group: int, uncited_days: int,
                     old_document_days: int, today: dt.date, since: dt.datetime | None = None) -> DocumentsReport:
    """``period``: questions of the report's period; ``recent``: every question of the last ``uncited_days``."""
    cited: Counter[str] = Counter()
    repealed: Counter[str] = Counter()
    for row in period:
        if not view.covers(row.services):
            continue
        cited.update(set(row.doc_ids))
        repealed.update(set(row.repealed_doc_ids))
    cited_recently = {d for row in recent for d in row.doc_ids}
    hidden = 0

    def line(doc_id: str, count: int) -> DocLine | None:
        record = records.get(doc_id)
        if record is not None and not _in_view(record, view):
            return None
        return DocLine(doc_id, record.title if record else "", record.services if record else (), count,
                       record.date if record else None)

    def shown(counter: Counter[str], keep=lambda _: True) -> list[DocLine]:
        nonlocal hidden
        out = []
        for doc_id, count in sorted(counter.items(), key=lambda kv: (-kv[1], kv[0])):
            item = line(doc_id, count)
            if item is None or not keep(item):
                continue
            if count < min_group:
                hidden += 1
                continue
            out.append(item)
        return out

    limit = today - dt.timedelta(days=old_document_days)
    most = shown(cited)[:MOST_CITED]
    old = shown(cited, keep=lambda d: (_date(d.date) or limit) < limit)
    reached = shown(repealed)
    never = sorted((DocLine(r.doc_id, r.title, r.services, 0, r.date) for r in records.values()
                    if _in_view(r, view) and r.doc_id not in cited_recently), key=lambda d: (d.title, d.doc_id))
    return DocumentsReport(view=view, since=since, min_group=min_group, uncited_days=uncited_days,
                           old_document_days=old_document_days, most_cited=tuple(most), never_cited=tuple(never),
                           old_cited=tuple(old), repealed_reached=tuple(reached), hidden_lines=hidden)
