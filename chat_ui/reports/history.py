"""What the reports read from the history database: the question log and the agents' feedback, with no user id.

- ``question_row``: the row the chat writes after each answer (``collectivia_questions``): the asking agent's
  services at that time, the outcome, the question masked of personal data, the cited documents, the cited
  repealed ones, the topic key. The data layer writes it through its write queue.
- ``read_questions`` / ``read_feedback``: rows of a period, decoded. The feedback rows carry the services and the
  outcome of their answer's logged question (joined on the answer's id); the agent's identifier is never read.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import sqlite3
from contextlib import closing
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Iterable, Sequence

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from chat_ui.history_db import BUSY_TIMEOUT_S, engine_options, is_sqlite, sqlite_path
from chat_ui.reports.access import View
from chat_ui.reports.topics import topic_key
from rag.personal_data import mask

GAP_OUTCOMES = ("not_found", "uncertain")


@dataclass(frozen=True, slots=True)
class LoggedQuestion:
    created_at: dt.datetime
    services: tuple[str, ...]
    outcome: str  # answer · uncertain · not_found (rag/answerability.py)
    refused: bool
    question: str  # masked of personal data
    doc_ids: tuple[str, ...]
    repealed_doc_ids: tuple[str, ...]
    topic: str | None

    @property
    def gap(self) -> bool:
        """Nothing found, or only a partial (uncertain) answer, or a refusal."""
        return self.refused or self.outcome in GAP_OUTCOMES


@dataclass(frozen=True, slots=True)
class FeedbackEntry:
    created_at: dt.datetime
    useful: bool
    tags: tuple[str, ...]
    comment: str  # masked of personal data
    doc_ids: tuple[str, ...]
    services: tuple[str, ...] | None  # of the logged question; None: answer logged before the question log existed


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def stamp(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).isoformat(timespec="seconds")


def question_row(*, answer_id: str, thread_id: str | None, services: Iterable[str], outcome: str, refused: bool,
                 question: str, doc_ids: Sequence[str], repealed_doc_ids: Sequence[str] = (),
                 at: dt.datetime | None = None) -> dict[str, Any]:
    """The ``collectivia_questions`` row of one answer (the question masked, its topic computed)."""
    masked = mask(question)
    return {
        "id": answer_id, "createdAt": stamp(at or now_utc()), "threadId": thread_id,
        "services": json.dumps(sorted(set(services)), ensure_ascii=False), "outcome": outcome,
        "refused": bool(refused), "question": masked, "docIds": json.dumps(list(doc_ids), ensure_ascii=False),
        "repealedDocIds": json.dumps(list(repealed_doc_ids), ensure_ascii=False), "topic": topic_key(masked),
    }


INSERT_QUESTION = (
    'INSERT INTO collectivia_questions ("id", "createdAt", "threadId", "services", "outcome", "refused", "question", '
    '"docIds", "repealedDocIds", "topic") VALUES (:id, :createdAt, :threadId, :services, :outcome, :refused, '
    ':question, :docIds, :repealedDocIds, :topic) ON CONFLICT ("id") DO NOTHING'
)


def _when(value: Any) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
    moment = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)


@lru_cache(maxsize=65536)
def _list(value: Any) -> tuple[str, ...]:
    """A JSON list column as a tuple (rows share few distinct values: decoded once each)."""
    if not value:
        return ()
    try:
        decoded = json.loads(value)
    except (TypeError, ValueError):
        return ()
    return tuple(str(v) for v in decoded) if isinstance(decoded, list) else ()


def _services_clause(view: View | None, column: str = '"services"') -> tuple[str, dict]:
    """A SQL pre-filter on the JSON list of services (exact ids between quotes; rows are checked again after)."""
    if view is None or view.services is None:
        return "", {}
    params = {f"svc{i}": '%"' + s.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + '"%'
              for i, s in enumerate(sorted(view.services))}
    return " AND (" + " OR ".join(f"{column} LIKE :{k} ESCAPE '\\'" for k in params) + ")", params


async def _rows(url: str, query: str, params: dict) -> list[tuple]:
    """Rows as tuples: SQLite read directly (read-only, off the event loop), PostgreSQL through SQLAlchemy."""
    if is_sqlite(url):
        def read() -> list[tuple]:
            path = sqlite_path(url)
            with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S)) as conn:
                return conn.execute(query, params).fetchall()
        return await asyncio.to_thread(read)
    engine = create_async_engine(url, **engine_options(url))
    try:
        async with engine.connect() as conn:
            return [tuple(row) for row in (await conn.execute(text(query), params)).fetchall()]
    finally:
        await engine.dispose()


def _since(query: str, since: dt.datetime | None, column: str = '"createdAt"') -> tuple[str, dict]:
    if since is None:
        return query + " WHERE 1 = 1", {}
    return query + f" WHERE {column} >= :since", {"since": stamp(since)}


@dataclass(frozen=True, slots=True)
class DayCount:
    day: str  # AAAA-MM-JJ (UTC)
    services: tuple[str, ...]
    questions: int
    gaps: int


_GAP = "(\"outcome\" <> 'answer' OR \"refused\")"


async def read_day_counts(url: str, since: dt.datetime | None = None) -> list[DayCount]:
    """Questions and gaps per day and set of services (counted by the database: a few thousand rows at most)."""
    query, params = _since(f'SELECT substr("createdAt", 1, 10) AS day, "services", COUNT(*), '
                           f'SUM(CASE WHEN {_GAP} THEN 1 ELSE 0 END) FROM collectivia_questions', since)
    rows = await _rows(url, query + ' GROUP BY substr("createdAt", 1, 10), "services"', params)
    return [DayCount(day, _list(services), int(n), int(g or 0)) for day, services, n, g in rows]


def _question(r: tuple) -> LoggedQuestion:
    return LoggedQuestion(created_at=_when(r[0]), services=_list(r[1]), outcome=str(r[2]), refused=bool(r[3]),
                          question=r[4] or "", doc_ids=_list(r[5]), repealed_doc_ids=_list(r[6]), topic=r[7])


_COLUMNS = ('SELECT "createdAt", "services", "outcome", "refused", "question", "docIds", "repealedDocIds", "topic" '
            'FROM collectivia_questions')


async def read_questions(url: str, since: dt.datetime | None = None, view: View | None = None, *,
                         gaps_only: bool = False, cited_only: bool = False) -> list[LoggedQuestion]:
    """The logged questions asked at or after ``since`` (all when None) that ``view`` may cover, oldest first;
    ``gaps_only``: those without a sure answer; ``cited_only``: those citing a document, without their text."""
    columns = _COLUMNS.replace('"question"', "''").replace('"topic"', "NULL") if cited_only else _COLUMNS
    query, params = _since(columns, since)
    clause, more = _services_clause(view)
    query += clause + (f" AND {_GAP}" if gaps_only else "") + (""" AND "docIds" <> '[]'""" if cited_only else "")
    rows = await _rows(url, query + ' ORDER BY "createdAt"', {**params, **more})
    return [_question(r) for r in rows]


async def read_feedback(url: str, since: dt.datetime | None = None) -> list[FeedbackEntry]:
    """The agents' opinions given at or after ``since`` (all when None), with their question's services."""
    query, params = _since('SELECT f."createdAt", f."value", f."tags", f."comment", f."docIds", q."services" '
                           'FROM collectivia_feedback f LEFT JOIN collectivia_questions q ON q."id" = f."stepId"',
                           since, 'f."createdAt"')
    rows = await _rows(url, query, params)
    return [FeedbackEntry(created_at=_when(r[0]), useful=bool(r[1]), tags=_list(r[2]), comment=mask(r[3] or ""),
                          doc_ids=_list(r[4]), services=None if r[5] is None else _list(r[5])) for r in rows]
