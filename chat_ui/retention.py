"""Retention and rights over the chat history: purge what is older than the retention, export or erase one agent's
data, and let an agent delete all their conversations.

The same SQL runs on SQLite and PostgreSQL (the history database of ``history_db.py``). Deletions are set-based and
go by batches of ``BATCH`` conversations, each batch one short transaction, so that the chat keeps writing while a
purge runs (SQLite: the batch takes the write lock at its start, ``BEGIN IMMEDIATE``; PostgreSQL: the batch locks its
conversations, ``FOR UPDATE``). Each batch checks again, under its lock, that its conversations are still to be
deleted: one an agent resumed during the purge stays.

A conversation's last activity is its newest message (``steps.createdAt``), or its creation when it has none.
What goes with a conversation: its messages (``steps``), its source and feedback cards (``elements``; the chat keeps
no element file on disk, cards live in the ``props`` column), Chainlit's ``feedbacks`` and Collectivia's
``collectivia_feedback`` rows. Collectivia feedback rows whose conversation is already gone (deleted by its agent)
go at the purge once older than the retention. The question log of the managers' reports (``collectivia_questions``,
no user id) goes with its conversation, and every row of it older than the retention goes at the purge.

Never another agent's data: every deletion is keyed on the conversations selected for one agent, or on age.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, AsyncIterator, Iterable

from sqlalchemy import bindparam, event, text
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from chat_ui.history_db import THREAD_TABLES, engine_options, is_sqlite

BATCH = 500  # conversations per transaction
PURGE_EVERY_S = 24 * 3600  # `collectivia serve` purges at start-up, then once a day
EXPORT_FORMAT = "collectivia-export/1"

_LAST_ACTIVITY = ('COALESCE((SELECT MAX(s."createdAt") FROM steps s WHERE s."threadId" = t."id"), t."createdAt")')
_JSON_COLUMNS = {"metadata", "tags", "generation", "modes", "props", "playerConfig", "docIds"}


@dataclass(frozen=True, slots=True)
class Counts:
    """Rows deleted (or that would be) per table."""

    threads: int = 0
    steps: int = 0
    elements: int = 0
    feedbacks: int = 0  # Chainlit's feedback table
    answer_feedback: int = 0  # Collectivia's feedback table (tags, comment)
    report_rows: int = 0  # Collectivia's question log (the managers' reports; no user id, keyed by conversation)
    users: int = 0

    def __add__(self, other: "Counts") -> "Counts":
        return Counts(*(a + b for a, b in zip(asdict(self).values(), asdict(other).values())))

    @property
    def total(self) -> int:
        return sum(asdict(self).values())


ROW_COUNTS = tuple(name for name in Counts.__dataclass_fields__ if name != "users")  # a purge's, in the audit log


@dataclass(frozen=True, slots=True)
class PurgeReport:
    retention_days: int
    cutoff: str  # ISO 8601, UTC: conversations whose last activity is older are deleted
    dry_run: bool
    counts: Counts = field(default_factory=Counts)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"retention_days": self.retention_days, "cutoff": self.cutoff, "dry_run": self.dry_run,
                **{k: v for k, v in asdict(self.counts).items() if k != "users"}, "seconds": round(self.seconds, 3)}


@dataclass(frozen=True, slots=True)
class ErasureReport:
    """What ``forget_user`` or ``delete_conversations`` erased for one agent."""

    identifier: str
    counts: Counts

    def to_dict(self) -> dict[str, Any]:
        return {"identifier": self.identifier, **asdict(self.counts)}


def cutoff_of(older_than_days: int, now: dt.datetime | None = None) -> str:
    """The ISO timestamp (UTC, to the second) before which a conversation's last activity means « to purge »."""
    if older_than_days < 1:
        raise ValueError(f"durée de conservation invalide : « {older_than_days} » jours (1 au moins pour purger)")
    now = now or dt.datetime.now(dt.timezone.utc)
    if now.tzinfo is not None:
        now = now.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return (now - dt.timedelta(days=older_than_days)).strftime("%Y-%m-%dT%H:%M:%S")


# -- connections ---------------------------------------------------------------------------------------------------

@asynccontextmanager
async def _engine(url: str) -> AsyncIterator[Any]:
    engine = create_async_engine(url, **engine_options(url))
    if is_sqlite(url):  # each transaction takes the write lock at once: what it read cannot change before it writes
        @event.listens_for(engine.sync_engine, "connect")
        def _autocommit_driver(dbapi_connection, _record) -> None:
            dbapi_connection.isolation_level = None

        @event.listens_for(engine.sync_engine, "begin")
        def _begin_immediate(connection) -> None:
            connection.exec_driver_sql("BEGIN" if connection.get_execution_options().get(_READ) else "BEGIN IMMEDIATE")
    try:
        yield engine
    finally:
        await engine.dispose()


_READ = "collectivia_read_only"


@asynccontextmanager
async def _reading(engine) -> AsyncIterator[AsyncConnection]:
    """A connection that only reads: it never waits for, nor holds, SQLite's write lock."""
    async with engine.connect() as conn:
        await conn.execution_options(**{_READ: True})
        yield conn


def _ids(name: str = "ids"):
    return bindparam(name, expanding=True)


def _chunks(items: list[str], size: int = BATCH) -> Iterable[list[str]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


async def _scalar(conn: AsyncConnection, sql: str, **params: Any) -> int:
    statement = text(sql)
    if "ids" in params:
        statement = statement.bindparams(_ids())
    return int((await conn.execute(statement, params)).scalar() or 0)


# Statements on the conversations of one batch (``ids``); children first (PostgreSQL would cascade, uncounted).
_OF_THREADS = {
    **{name: f'{table} WHERE "threadId" IN :ids' for name, table in THREAD_TABLES.items()},
    "feedbacks": 'feedbacks WHERE "forId" IN (SELECT "id" FROM steps WHERE "threadId" IN :ids)',
    "elements": 'elements WHERE "threadId" IN :ids',
    "steps": 'steps WHERE "threadId" IN :ids',
    "threads": 'threads WHERE "id" IN :ids',
}


async def _count_threads(conn: AsyncConnection, ids: list[str]) -> Counts:
    values = {name: await _scalar(conn, f"SELECT COUNT(*) FROM {where}", ids=ids) for name, where in _OF_THREADS.items()}
    return Counts(**values)


async def _delete_threads(conn: AsyncConnection, ids: list[str]) -> Counts:
    values = {}
    for name, where in _OF_THREADS.items():
        result = await conn.execute(text(f"DELETE FROM {where}").bindparams(_ids()), {"ids": ids})
        values[name] = max(result.rowcount or 0, 0)
    return Counts(**values)


async def _erase(engine, candidates: list[str], *, still: str, params: dict[str, Any], dry_run: bool,
                 lock: bool) -> Counts:
    """Delete (or count) the conversations ``candidates`` by batches; each batch keeps, under its lock, only those
    for which the condition ``still`` (SQL on ``t``) still holds."""
    total = Counts()
    for batch in _chunks(candidates):
        async with (_reading(engine) if dry_run else engine.begin()) as conn:
            recheck = f'SELECT t."id" FROM threads t WHERE t."id" IN :ids AND {still}'
            if lock and not dry_run:
                recheck += " FOR UPDATE OF t"
            rows = await conn.execute(text(recheck).bindparams(_ids()), {**params, "ids": batch})
            ids = [str(r[0]) for r in rows]
            if ids:
                total += await (_count_threads(conn, ids) if dry_run else _delete_threads(conn, ids))
    return total


# -- purge ---------------------------------------------------------------------------------------------------------

async def purge(url: str, older_than_days: int, *, now: dt.datetime | None = None, dry_run: bool = False) -> PurgeReport:
    """Delete the conversations whose last activity is older than ``older_than_days`` days, with everything that
    belongs to them; ``dry_run`` counts the same rows and deletes nothing."""
    started = time.perf_counter()
    cutoff = cutoff_of(older_than_days, now)
    expired = f"{_LAST_ACTIVITY} < :cutoff"
    orphans = ('collectivia_feedback WHERE "createdAt" < :cutoff AND ("threadId" IS NULL OR "threadId" NOT IN '
               '(SELECT CAST(t."id" AS TEXT) FROM threads t))')  # one pass over threads (ids are UUID on PostgreSQL)
    async with _engine(url) as engine:
        async with _reading(engine) as conn:
            rows = await conn.execute(text(f'SELECT t."id" FROM threads t WHERE {expired}'), {"cutoff": cutoff})
            candidates = [str(r[0]) for r in rows]
        counts = await _erase(engine, candidates, still=expired, params={"cutoff": cutoff}, dry_run=dry_run,
                              lock=not is_sqlite(url))
        async with (_reading(engine) if dry_run else engine.begin()) as conn:
            if dry_run:
                gone = await _scalar(conn, f"SELECT COUNT(*) FROM {orphans}", cutoff=cutoff)
            else:
                gone = max((await conn.execute(text(f"DELETE FROM {orphans}"), {"cutoff": cutoff})).rowcount or 0, 0)
        counts += Counts(answer_feedback=gone)
        logged = 'collectivia_questions WHERE "createdAt" < :cutoff'  # whose conversation its agent deleted earlier
        async with (_reading(engine) if dry_run else engine.begin()) as conn:
            if dry_run:  # the rows of the conversations counted above are not counted twice
                old = await _scalar(conn, f'SELECT COUNT(*) FROM {logged} AND ("threadId" IS NULL OR "threadId" NOT IN '
                                    f'(SELECT CAST(t."id" AS TEXT) FROM threads t WHERE {expired}))', cutoff=cutoff)
            else:
                old = max((await conn.execute(text(f"DELETE FROM {logged}"), {"cutoff": cutoff})).rowcount or 0, 0)
        counts += Counts(report_rows=old)
    return PurgeReport(older_than_days, cutoff, dry_run, counts, time.perf_counter() - started)


# -- one agent -----------------------------------------------------------------------------------------------------

_OWNED = ('(t."userIdentifier" = :who OR t."userId" IN '
          '(SELECT u."id" FROM users u WHERE u."identifier" = :who))')


async def _owned_threads(engine, identifier: str) -> list[str]:
    async with _reading(engine) as conn:
        rows = await conn.execute(text(f'SELECT t."id" FROM threads t WHERE {_OWNED}'), {"who": identifier})
        return [str(r[0]) for r in rows]


async def delete_conversations(url: str, identifier: str) -> ErasureReport:
    """Delete every conversation of one agent, with their messages, cards and feedback (the chat's « Supprimer
    toutes mes conversations »); the agent's user row stays (they are logged in)."""
    _check_identifier(identifier)
    async with _engine(url) as engine:
        counts = await _erase(engine, await _owned_threads(engine, identifier), still=_OWNED,
                              params={"who": identifier}, dry_run=False, lock=not is_sqlite(url))
        async with engine.begin() as conn:
            result = await conn.execute(text('DELETE FROM collectivia_feedback WHERE "userIdentifier" = :who'),
                                        {"who": identifier})
            counts += Counts(answer_feedback=max(result.rowcount or 0, 0))
    return ErasureReport(identifier, counts)


async def forget_user(url: str, identifier: str) -> ErasureReport:
    """Erase everything the chat stores about one agent: conversations, feedback, and their user row. The login
    account (users file, or the OpenID Connect provider) is not the chat's: ``collectivia users`` manages it."""
    report = await delete_conversations(url, identifier)
    async with _engine(url) as engine:
        async with engine.begin() as conn:
            result = await conn.execute(text('DELETE FROM users WHERE "identifier" = :who'), {"who": identifier})
            users = max(result.rowcount or 0, 0)
    return ErasureReport(identifier, report.counts + Counts(users=users))


async def export_user(url: str, identifier: str, *, now: dt.datetime | None = None) -> dict[str, Any]:
    """Everything the chat stores about one agent, as plain JSON values: user row, conversations with their
    messages, cards and question-log rows, feedback (right of access)."""
    _check_identifier(identifier)
    async with _engine(url) as engine:
        async with _reading(engine) as conn:
            async def rows(sql: str, **params: Any) -> list[dict[str, Any]]:
                statement = text(sql).bindparams(_ids()) if "ids" in params else text(sql)
                return [_plain(dict(r._mapping)) for r in await conn.execute(statement, params)]

            user = await rows('SELECT * FROM users WHERE "identifier" = :who', who=identifier)
            threads = await rows(f'SELECT * FROM threads t WHERE {_OWNED} ORDER BY t."createdAt", t."id"',
                                 who=identifier)
            by_id = {t["id"]: {**t, "messages": [], "elements": [], "feedbacks": [], "question_log": []}
                     for t in threads}
            for batch in _chunks(list(by_id)):
                for key, sql in (
                    ("messages", 'SELECT * FROM steps WHERE "threadId" IN :ids ORDER BY "createdAt", "id"'),
                    ("elements", 'SELECT * FROM elements WHERE "threadId" IN :ids ORDER BY "id"'),
                    ("feedbacks", 'SELECT * FROM feedbacks WHERE "threadId" IN :ids ORDER BY "id"'),
                    ("question_log", 'SELECT * FROM collectivia_questions WHERE "threadId" IN :ids ORDER BY "id"'),
                ):
                    for row in await rows(sql, ids=batch):
                        by_id[row["threadId"]][key].append(row)
            feedback = await rows('SELECT * FROM collectivia_feedback WHERE "userIdentifier" = :who '
                                  'ORDER BY "createdAt", "id"', who=identifier)
    stamp = (now or dt.datetime.now(dt.timezone.utc)).isoformat(timespec="seconds")
    return {"format": EXPORT_FORMAT, "exported_at": stamp, "identifier": identifier,
            "user": user[0] if user else None, "conversations": list(by_id.values()), "answer_feedback": feedback}


def export_counts(export: dict[str, Any]) -> dict[str, int]:
    """Row counts of an export, for the audit log and the command's summary."""
    conversations = export.get("conversations") or []
    return {"threads": len(conversations), "steps": sum(len(c["messages"]) for c in conversations),
            "elements": sum(len(c["elements"]) for c in conversations),
            "feedbacks": sum(len(c["feedbacks"]) for c in conversations),
            "report_rows": sum(len(c["question_log"]) for c in conversations),
            "answer_feedback": len(export.get("answer_feedback") or []), "users": 1 if export.get("user") else 0}


def _check_identifier(identifier: str) -> None:
    if not identifier or not identifier.strip():
        raise ValueError(f"identifiant d'agent invalide : « {identifier} »")


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    """A database row as JSON values: ids as text, JSON columns decoded."""
    out = {}
    for key, value in row.items():
        if isinstance(value, uuid.UUID):
            value = str(value)
        elif isinstance(value, (dt.datetime, dt.date)):
            value = value.isoformat()
        elif key in _JSON_COLUMNS and isinstance(value, str) and value[:1] in ("{", "["):
            try:
                value = json.loads(value)
            except ValueError:
                pass
        out[key] = value
    return out


# -- `collectivia serve`: at start-up, then once a day ---------------------------------------------------------------

async def purge_periodically(url: str, retention_days: int, on_report, every_s: float = PURGE_EVERY_S) -> None:
    """Purge now, then every ``every_s`` seconds, until cancelled; ``on_report(report | exception)`` is told each
    time (audit, log). A failed purge is reported and tried again at the next turn."""
    while True:
        try:
            on_report(await purge(url, retention_days))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a database briefly unreachable: said, and tried again next time
            on_report(exc)
        await asyncio.sleep(every_s)
