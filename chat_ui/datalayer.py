"""Conversation history and feedback: Chainlit's SQLAlchemy data layer on SQLite (default, under the data directory)
or PostgreSQL, with the tables it needs created here (it does not create its own), plus Collectivia's feedback table.

What this layer adds to Chainlit's:
- the schema (Chainlit's documented one, translated for SQLite), created or completed at start-up;
- JSON values read back as objects, and lists/dicts written as JSON on SQLite;
- the source and feedback cards (custom elements) kept without any blob storage, in the ``props`` column;
- ownership checks: an element, a feedback or a deletion only ever touches a thread of the user acting.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import uuid
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Sequence

from sqlalchemy import inspect, text
from sqlalchemy.ext.asyncio import create_async_engine

logger = logging.getLogger(__name__)

FEEDBACK_NAMESPACE = uuid.UUID("0b8a4c1e-6f0e-4f55-9a53-61c0c7a1a9f1")

# Who is making the current HTTP request (set by ``guard.py``); websocket events use Chainlit's session instead.
request_identifier: ContextVar[str | None] = ContextVar("collectivia_request_identifier", default=None)

# (column, PostgreSQL type, SQLite type); the order is Chainlit's documented schema.
_TABLES: dict[str, list[tuple[str, str, str]]] = {
    "users": [
        ("id", "UUID PRIMARY KEY", "TEXT PRIMARY KEY"),
        ("identifier", "TEXT NOT NULL UNIQUE", "TEXT NOT NULL UNIQUE"),
        ("metadata", "JSONB NOT NULL", "TEXT NOT NULL"),
        ("createdAt", "TEXT", "TEXT"),
    ],
    "threads": [
        ("id", "UUID PRIMARY KEY", "TEXT PRIMARY KEY"),
        ("createdAt", "TEXT", "TEXT"),
        ("name", "TEXT", "TEXT"),
        ("userId", "UUID", "TEXT"),
        ("userIdentifier", "TEXT", "TEXT"),
        ("tags", "TEXT[]", "TEXT"),
        ("metadata", "JSONB", "TEXT"),
    ],
    "steps": [
        ("id", "UUID PRIMARY KEY", "TEXT PRIMARY KEY"),
        ("name", "TEXT NOT NULL", "TEXT NOT NULL"),
        ("type", "TEXT NOT NULL", "TEXT NOT NULL"),
        ("threadId", "UUID NOT NULL", "TEXT NOT NULL"),
        ("parentId", "UUID", "TEXT"),
        ("streaming", "BOOLEAN NOT NULL", "BOOLEAN NOT NULL"),
        ("waitForAnswer", "BOOLEAN", "BOOLEAN"),
        ("isError", "BOOLEAN", "BOOLEAN"),
        ("metadata", "JSONB", "TEXT"),
        ("tags", "TEXT[]", "TEXT"),
        ("input", "TEXT", "TEXT"),
        ("output", "TEXT", "TEXT"),
        ("createdAt", "TEXT", "TEXT"),
        ("command", "TEXT", "TEXT"),
        ("modes", "JSONB", "TEXT"),
        ("start", "TEXT", "TEXT"),
        ("end", "TEXT", "TEXT"),
        ("generation", "JSONB", "TEXT"),
        ("showInput", "TEXT", "TEXT"),
        ("language", "TEXT", "TEXT"),
        ("indent", "INT", "INTEGER"),
        ("defaultOpen", "BOOLEAN", "BOOLEAN"),
        ("autoCollapse", "BOOLEAN", "BOOLEAN"),
    ],
    "elements": [
        ("id", "UUID PRIMARY KEY", "TEXT PRIMARY KEY"),
        ("threadId", "UUID", "TEXT"),
        ("type", "TEXT", "TEXT"),
        ("url", "TEXT", "TEXT"),
        ("chainlitKey", "TEXT", "TEXT"),
        ("name", "TEXT NOT NULL", "TEXT NOT NULL"),
        ("display", "TEXT", "TEXT"),
        ("objectKey", "TEXT", "TEXT"),
        ("size", "TEXT", "TEXT"),
        ("page", "INT", "INTEGER"),
        ("language", "TEXT", "TEXT"),
        ("forId", "UUID", "TEXT"),
        ("mime", "TEXT", "TEXT"),
        ("props", "JSONB", "TEXT"),
        ("autoPlay", "BOOLEAN", "BOOLEAN"),
        ("playerConfig", "JSONB", "TEXT"),
    ],
    "feedbacks": [
        ("id", "UUID PRIMARY KEY", "TEXT PRIMARY KEY"),
        ("forId", "UUID NOT NULL", "TEXT NOT NULL"),
        ("threadId", "UUID NOT NULL", "TEXT NOT NULL"),
        ("value", "INT NOT NULL", "INTEGER NOT NULL"),
        ("comment", "TEXT", "TEXT"),
    ],
    # Collectivia's own: one row per (answer, agent), with the tags Chainlit's feedback has no room for.
    "collectivia_feedback": [
        ("id", "TEXT PRIMARY KEY", "TEXT PRIMARY KEY"),
        ("stepId", "TEXT NOT NULL", "TEXT NOT NULL"),
        ("threadId", "TEXT", "TEXT"),
        ("userIdentifier", "TEXT NOT NULL", "TEXT NOT NULL"),
        ("value", "INT NOT NULL", "INTEGER NOT NULL"),
        ("tags", "TEXT NOT NULL", "TEXT NOT NULL"),
        ("comment", "TEXT", "TEXT"),
        ("question", "TEXT", "TEXT"),
        ("docIds", "TEXT", "TEXT"),
        ("createdAt", "TEXT NOT NULL", "TEXT NOT NULL"),
    ],
}

_FOREIGN_KEYS = {
    "threads": ['FOREIGN KEY ("userId") REFERENCES users("id") ON DELETE CASCADE'],
    "steps": ['FOREIGN KEY ("threadId") REFERENCES threads("id") ON DELETE CASCADE'],
    "elements": ['FOREIGN KEY ("threadId") REFERENCES threads("id") ON DELETE CASCADE'],
    "feedbacks": ['FOREIGN KEY ("threadId") REFERENCES threads("id") ON DELETE CASCADE'],
}


def database_url(configured: str | None, data_dir: Path) -> str:
    """The async SQLAlchemy URL of the history database: SQLite under the data directory unless one is configured."""
    if not configured:
        return f"sqlite+aiosqlite:///{(Path(data_dir) / 'chat.db').resolve()}"
    url = configured.strip()
    for plain, driver in (("postgresql://", "postgresql+asyncpg://"), ("postgres://", "postgresql+asyncpg://"),
                          ("sqlite://", "sqlite+aiosqlite://")):
        if url.startswith(plain):
            return driver + url[len(plain):]
    return url


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def schema_statements(sqlite: bool) -> list[str]:
    """CREATE TABLE IF NOT EXISTS statements of every table, in dependency order."""
    out = []
    for table, columns in _TABLES.items():
        cols = [f'"{name}" {lite if sqlite else pg}' for name, pg, lite in columns]
        cols += _FOREIGN_KEYS.get(table, [])
        if table == "collectivia_feedback":
            cols.append('UNIQUE ("stepId", "userIdentifier")')
        out.append(f"CREATE TABLE IF NOT EXISTS {table} (\n    " + ",\n    ".join(cols) + "\n)")
    out.append('CREATE INDEX IF NOT EXISTS threads_user_idx ON threads ("userId")')
    out.append('CREATE INDEX IF NOT EXISTS steps_thread_idx ON steps ("threadId")')
    out.append('CREATE INDEX IF NOT EXISTS elements_thread_idx ON elements ("threadId")')
    out.append('CREATE INDEX IF NOT EXISTS feedbacks_for_idx ON feedbacks ("forId")')
    return out


async def ensure_schema(url: str) -> None:
    """Create the tables, and add the columns a newer Chainlit needs to tables created by an older one."""
    sqlite = is_sqlite(url)
    if sqlite:
        path = url.split(":///", 1)[1]
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            if sqlite:
                await conn.execute(text("PRAGMA journal_mode=WAL"))
            for statement in schema_statements(sqlite):
                await conn.execute(text(statement))
            existing = await conn.run_sync(
                lambda sync: {t: {c["name"] for c in inspect(sync).get_columns(t)} for t in _TABLES}
            )
            for table, columns in _TABLES.items():
                for name, pg, lite in columns:
                    if name not in existing[table]:
                        kind = (lite if sqlite else pg).replace(" NOT NULL", "").replace(" PRIMARY KEY", "")
                        await conn.execute(text(f'ALTER TABLE {table} ADD COLUMN "{name}" {kind}'))
    finally:
        await engine.dispose()


# --------------------------------------------------------------------------------------------------------------
# The data layer
# --------------------------------------------------------------------------------------------------------------

_JSON_KEYS = {"metadata", "tags", "generation", "modes", "props", "playerConfig", "thread_metadata", "thread_tags",
              "step_metadata", "step_tags", "step_generation"}


def _decode(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _decode_dict(data: dict) -> dict:
    return {k: (_decode(v) if k in _JSON_KEYS else v) for k, v in data.items()}


def acting_identifier() -> str | None:
    """The user behind the current request: the HTTP request (guard) or the websocket session."""
    who = request_identifier.get()
    if who:
        return who
    try:
        from chainlit.context import context

        user = context.session.user
        return user.identifier if user else None
    except Exception:  # no Chainlit context (startup, tests)
        return None


def _session_thread_id() -> str | None:
    try:
        from chainlit.context import context

        return context.session.thread_id
    except Exception:
        return None


def make_data_layer(url: str):
    """The Chainlit data layer of Collectivia (imports Chainlit, so only the chat process calls it)."""
    from chainlit.data.sql_alchemy import SQLAlchemyDataLayer
    from chainlit.data.utils import queue_until_user_message

    class CollectiviaDataLayer(SQLAlchemyDataLayer):
        def __init__(self, conninfo: str) -> None:
            quiet = logging.getLogger("chainlit")
            level = quiet.level
            quiet.setLevel(logging.ERROR)  # its warning about blob storage does not apply: cards live in `props`
            try:
                super().__init__(conninfo=conninfo, storage_provider=None)
            finally:
                quiet.setLevel(level)
            self.sqlite = is_sqlite(conninfo)

        # -- values ------------------------------------------------------------------------------------------
        def _bind(self, value: Any) -> Any:
            if isinstance(value, dict):
                return json.dumps(value, ensure_ascii=False)
            if isinstance(value, (list, tuple)) and self.sqlite:
                return json.dumps(list(value), ensure_ascii=False)
            return value

        async def execute_sql(self, query: str, parameters: dict):
            return await super().execute_sql(query, {k: self._bind(v) for k, v in (parameters or {}).items()})

        async def get_all_user_threads(self, user_id=None, thread_id=None):
            threads = await super().get_all_user_threads(user_id=user_id, thread_id=thread_id)
            for thread in threads or []:
                thread["metadata"] = _decode(thread.get("metadata")) or {}
                thread["tags"] = _decode(thread.get("tags"))
                thread["steps"] = [_decode_dict(s) for s in thread.get("steps", [])]
                for element in thread.get("elements", []):
                    element["props"] = _decode(element.get("props")) or {}
                    element["playerConfig"] = _decode(element.get("playerConfig"))
            return threads

        async def get_step(self, step_id: str):
            step = await super().get_step(step_id)
            return _decode_dict(step) if step else step

        # -- ownership ---------------------------------------------------------------------------------------
        async def thread_owner(self, thread_id: str | None) -> str | None:
            if not thread_id:
                return None
            rows = await self.execute_sql('SELECT "userIdentifier" FROM threads WHERE "id" = :id', {"id": thread_id})
            return rows[0]["userIdentifier"] if isinstance(rows, list) and rows else None

        async def _may_write(self, thread_id: str | None) -> bool:
            who = acting_identifier()
            if not who or not thread_id:
                return False
            owner = await self.thread_owner(thread_id)
            if owner is None:
                return thread_id == _session_thread_id()  # the new thread of the session itself
            return owner == who

        # -- elements: the cards, kept in `props` --------------------------------------------------------------
        @queue_until_user_message()
        async def create_element(self, element) -> None:
            if getattr(element, "type", None) != "custom" or not element.for_id or not element.thread_id:
                return  # only Collectivia's cards are kept; uploaded files live in the document store
            if not await self._may_write(element.thread_id):
                logger.warning("élément %s refusé : fil %s d'un autre utilisateur", element.id, element.thread_id)
                return
            await self.update_thread(element.thread_id)
            row = {
                "id": element.id, "threadId": element.thread_id, "type": "custom", "name": element.name,
                "display": element.display, "forId": element.for_id, "mime": "application/json",
                "props": json.dumps(getattr(element, "props", {}) or {}, ensure_ascii=False),
            }
            columns = ", ".join(f'"{k}"' for k in row)
            values = ", ".join(f":{k}" for k in row)
            updates = ", ".join(f'"{k}" = EXCLUDED."{k}"' for k in row if k != "id")
            await self.execute_sql(
                f"INSERT INTO elements ({columns}) VALUES ({values}) ON CONFLICT (\"id\") DO UPDATE SET {updates} "
                'WHERE elements."threadId" = EXCLUDED."threadId"',
                row,
            )

        @queue_until_user_message()
        async def delete_element(self, element_id: str, thread_id: str | None = None) -> None:
            rows = await self.execute_sql('SELECT "threadId" FROM elements WHERE "id" = :id', {"id": element_id})
            if not (isinstance(rows, list) and rows):
                return
            if not await self._may_write(rows[0]["threadId"]):
                logger.warning("suppression de l'élément %s refusée", element_id)
                return
            await self.execute_sql('DELETE FROM elements WHERE "id" = :id', {"id": element_id})

        # -- feedback ------------------------------------------------------------------------------------------
        async def step_thread(self, step_id: str) -> str | None:
            rows = await self.execute_sql('SELECT "threadId" FROM steps WHERE "id" = :id', {"id": step_id})
            return rows[0]["threadId"] if isinstance(rows, list) and rows else None

        async def upsert_feedback(self, feedback) -> str:
            thread_id = await self.step_thread(feedback.forId)
            owner = await self.thread_owner(thread_id)
            if owner is None or owner != acting_identifier():
                raise PermissionError("avis refusé : cette réponse n'appartient pas à vos conversations")
            feedback.threadId = thread_id
            return await super().upsert_feedback(feedback)

        async def delete_feedback(self, feedback_id: str) -> bool:
            rows = await self.execute_sql('SELECT "threadId" FROM feedbacks WHERE "id" = :id', {"id": feedback_id})
            if not (isinstance(rows, list) and rows):
                return True
            if await self.thread_owner(rows[0]["threadId"]) != acting_identifier():
                raise PermissionError("suppression d'avis refusée")
            return await super().delete_feedback(feedback_id)

        async def save_answer_feedback(
            self, *, step_id: str, user_identifier: str, value: int, tags: Sequence[str], comment: str,
            question: str = "", doc_ids: Sequence[str] = (),
        ) -> str:
            """Record an agent's opinion of an answer: Collectivia's table (with tags) and Chainlit's feedbacks."""
            from chainlit.types import Feedback

            thread_id = await self.step_thread(step_id)
            if thread_id is None or await self.thread_owner(thread_id) != user_identifier:
                raise PermissionError("avis refusé : cette réponse n'appartient pas à vos conversations")
            row_id = str(uuid.uuid5(FEEDBACK_NAMESPACE, f"{step_id}\x1f{user_identifier}"))
            row = {
                "id": row_id, "stepId": step_id, "threadId": thread_id, "userIdentifier": user_identifier,
                "value": int(value), "tags": json.dumps(list(tags), ensure_ascii=False), "comment": comment or None,
                "question": question or None, "docIds": json.dumps(list(doc_ids), ensure_ascii=False),
                "createdAt": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            }
            columns = ", ".join(f'"{k}"' for k in row)
            values = ", ".join(f":{k}" for k in row)
            updates = ", ".join(f'"{k}" = EXCLUDED."{k}"' for k in row if k != "id")
            await self.execute_sql(
                f"INSERT INTO collectivia_feedback ({columns}) VALUES ({values}) "
                f"ON CONFLICT (\"id\") DO UPDATE SET {updates}", row,
            )
            summary = "; ".join(x for x in (", ".join(tags), comment) if x) or None
            await SQLAlchemyDataLayer.upsert_feedback(self, Feedback(
                forId=step_id, value=1 if value else 0, threadId=thread_id, comment=summary, id=row_id,
            ))
            return row_id

        async def answer_feedback(self, user_identifier: str | None = None) -> list[dict]:
            """Rows of Collectivia's feedback table (all, or one agent's), newest first, JSON decoded."""
            query = "SELECT * FROM collectivia_feedback"
            params: dict[str, Any] = {}
            if user_identifier:
                query += ' WHERE "userIdentifier" = :who'
                params["who"] = user_identifier
            rows = await self.execute_sql(query + ' ORDER BY "createdAt" DESC', params)
            out = []
            for row in rows if isinstance(rows, list) else []:
                row = dict(row)
                row["tags"] = _decode(row.get("tags")) or []
                row["docIds"] = _decode(row.get("docIds")) or []
                out.append(row)
            return out

    return CollectiviaDataLayer(url)
