"""Knowledge gaps: the questions of the services in view that found nothing, only a partial answer, or a refusal,
grouped into topics (``topics.py``), each with its most typical question, its count and its weekly trend.

A topic asked fewer than ``min_group`` times is not shown (its questions are only counted as hidden): nobody can
be singled out from a rare question.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterable

from chat_ui.reports.access import View
from chat_ui.reports.history import DayCount, LoggedQuestion
from chat_ui.reports.topics import NO_TOPIC, merge_keys, topic_key, typical


@dataclass(frozen=True, slots=True)
class Topic:
    key: str  # stemmed decisive words (« cong report »), "" for questions without any
    question: str  # the most typical question of the group (masked)
    count: int
    not_found: int
    uncertain: int
    refused: int
    weeks: tuple[tuple[str, int], ...]  # (« 2026-W48 », questions of the topic that week), oldest first

    def to_json(self) -> dict:
        return {"sujet": self.key, "question_type": self.question, "questions": self.count,
                "introuvables": self.not_found, "incertaines": self.uncertain, "refusees": self.refused,
                "semaines": dict(self.weeks)}


@dataclass(frozen=True, slots=True)
class GapsReport:
    view: View
    since: dt.datetime | None
    min_group: int
    questions: int  # every question of the view in the period
    gaps: int
    topics: tuple[Topic, ...]  # shown (≥ min_group), most asked first
    hidden_topics: int
    hidden_questions: int
    weeks: tuple[tuple[str, int, int], ...]  # (week, questions, gaps), oldest first

    def to_json(self) -> dict:
        return {"rapport": "lacunes", "services": self.view.label, "depuis": _day(self.since),
                "seuil": self.min_group, "questions": self.questions, "lacunes": self.gaps,
                "sujets": [t.to_json() for t in self.topics], "sujets_masques": self.hidden_topics,
                "questions_masquees": self.hidden_questions,
                "semaines": [{"semaine": w, "questions": q, "lacunes": g} for w, q, g in self.weeks]}

    def csv_rows(self) -> list[dict]:
        return [{"sujet": t.key, "question_type": t.question, "questions": t.count, "introuvables": t.not_found,
                 "incertaines": t.uncertain, "refusees": t.refused,
                 "tendance": " ".join(f"{w}:{n}" for w, n in t.weeks)} for t in self.topics]


def week_of(moment: dt.datetime | dt.date | str) -> str:
    """ISO week « 2026-W48 » of a moment, a date or an « AAAA-MM-JJ… » string (UTC)."""
    if isinstance(moment, dt.datetime):
        moment = moment.astimezone(dt.timezone.utc).date()
    return _week(str(moment)[:10])


@lru_cache(maxsize=4096)
def _week(day: str) -> str:
    year, week, _ = dt.date.fromisoformat(day).isocalendar()
    return f"{year}-W{week:02d}"


def _day(moment: dt.datetime | None) -> str | None:
    return moment.date().isoformat() if moment else None


def gaps_report(days: Iterable[DayCount], rows: Iterable[LoggedQuestion], view: View, *, min_group: int,
                since: dt.datetime | None = None) -> GapsReport:
    """The gaps of ``rows`` (questions of the period, the gaps at least) for the services of ``view``; ``days``:
    the questions and gaps per day of the period, for the totals and the weekly trend."""
    per_week_all: Counter[str] = Counter()
    per_week_gaps: Counter[str] = Counter()
    for day in days:
        if view.covers(day.services):
            per_week_all[week_of(day.day)] += day.questions
            per_week_gaps[week_of(day.day)] += day.gaps
    gaps = [(row, row.topic if row.topic is not None else topic_key(row.question))
            for row in rows if row.gap and view.covers(row.services)]
    canonical = merge_keys(Counter(key for _, key in gaps))
    groups: dict[str, list[LoggedQuestion]] = defaultdict(list)
    for row, key in gaps:
        groups[canonical[key]].append(row)
    topics, hidden_topics, hidden_questions = [], 0, 0
    for key, members in groups.items():
        if len(members) < min_group:
            hidden_topics += 1
            hidden_questions += len(members)
            continue
        weeks = Counter(week_of(m.created_at) for m in members)
        topics.append(Topic(
            key=key if key != NO_TOPIC else "",
            question=typical([m.question for m in members], key),
            count=len(members),
            not_found=sum(1 for m in members if m.outcome == "not_found" and not m.refused),
            uncertain=sum(1 for m in members if m.outcome == "uncertain" and not m.refused),
            refused=sum(1 for m in members if m.refused),
            weeks=tuple(sorted(weeks.items())),
        ))
    topics.sort(key=lambda t: (-t.count, t.key))
    weeks = tuple((w, per_week_all[w], per_week_gaps[w]) for w in sorted(per_week_all))
    return GapsReport(view=view, since=since, min_group=min_group, questions=sum(per_week_all.values()),
                      gaps=len(gaps), topics=tuple(topics), hidden_topics=hidden_topics,
                      hidden_questions=hidden_questions, weeks=weeks)
