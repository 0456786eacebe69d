"""Conversation history and feedback: Chainlit's SQLAlchemy data layer on SQLite (default, under the data directory)
or PostgreSQL, with the tables it needs created here (it does not create its own), plus Collectivia's feedback table.

What this layer adds to Chainlit's:
- the schema (Chainlit's documented one, translated for SQLite), created or completed at start-up;
- JSON values read back as objects, and lists/dicts written as JSON on SQLite;
- the source and feedback cards (custom elements) kept without any blob storage, in the ``props`` column;
- ownership checks: a step, an element, a feedback or a deletion only ever touches a thread of the user acting,
  and a step is never moved from one thread to another;
- writes that survive concurrency and tell the agent when one is lost (``history_writes.py``);
- personal data masked in what is kept of an agent's message, feedback and question log (``rag/personal_data.py``);
- the question log of the managers' reports (``log_question``; ``chat_ui/reports/``), without any user id.

The database itself — URL, schema, integrity check — is ``history_db.py``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import uuid
from contextvars import ContextVar
from typing import Any, Sequence

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from chat_ui.history_db import (  # noqa: F401  (the names the chat imports from here)
    THREAD_TABLES, HistoryDatabaseError, database_url, engine_options, ensure_schema, is_sqlite, schema_statements,
)
from chat_ui import history_writes
from chat_ui.history_writes import WriteFailure, WriteQueue, tell_agent
from chat_ui.reports.history import INSERT_QUESTION, question_row
from rag.personal_data import mask

logger = logging.getLogger(__name__)

FEEDBACK_NAMESPACE = uuid.UUID("0b8a4c1e-6f0e-4f55-9a53-61c0c7a1a9f1")

# Who is making the current HTTP request (set by ``guard.py``); websocket events use Chainlit's session instead.
request_identifier: ContextVar[str | None] = ContextVar("collectivia_request_identifier", default=None)

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
                super().__init__(conninfo=conninfo, storage_provider=None,
                                 connect_args=engine_options(conninfo).get("connect_args"))
            finally:
                quiet.setLevel(level)
            self.sqlite = is_sqlite(conninfo)
            self.writes = WriteQueue(serialize=self.sqlite)

        # -- values ------------------------------------------------------------------------------------------
        def _bind(self, value: Any) -> Any:
            if isinstance(value, dict):
                return json.dumps(value, ensure_ascii=False)
            if isinstance(value, (list, tuple)) and self.sqlite:
                return json.dumps(list(value), ensure_ascii=False)
            return value

        async def execute_sql(self, query: str, parameters: dict):
            """Chainlit's, without swallowing errors silently: passing ones are retried, and a write finally lost
            is said to the agent. Returns the rows, the row count, or None after a failure (Chainlit's contract)."""
            params = {k: self._bind(v) for k, v in (parameters or {}).items()}

            async def statement():
                async with self.async_session() as session:
                    async with session.begin():
                        result = await session.execute(text(query), params)
                        rows = [dict(row._mapping) for row in result.fetchall()] if result.returns_rows else None
                return self.clean_result(rows) if rows is not None else result.rowcount

            try:
                return await self.writes.run(query, statement)
            except SQLAlchemyError as exc:
                failure = WriteFailure(query, f"{type(exc).__name__} : {str(exc).splitlines()[0][:200]}",
                                       history_writes.ATTEMPTS)
                if history_writes.is_write(query):
                    await tell_agent(failure)
                else:
                    logger.error("historique : lecture impossible (%s)", failure.error)
                return None

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

        # -- steps: never written into, nor moved out of, another user's thread ----------------------------------
        async def _may_write_step(self, step_id: str | None, thread_id: str | None) -> bool:
            current = await self.step_thread(step_id) if step_id else None
            if current is not None and str(current) != str(thread_id):
                return False  # a step stays in its thread: an id sent again from another thread is refused
            who = acting_identifier()
            owner = await self.thread_owner(thread_id)
            return owner is None or who is None or owner == who

        @queue_until_user_message()
        async def create_step(self, step_dict) -> None:
            step_id, thread_id = step_dict.get("id"), step_dict.get("threadId")
            if not await self._may_write_step(step_id, thread_id):
                logger.warning("étape %s refusée : elle appartient à un autre fil que %s, ou le fil %s à un autre "
                               "utilisateur", step_id, thread_id, thread_id)
                return
            # The agent's text is kept masked of personal data: their message, and the input of every step (Chainlit's
            # « on_message » run step holds the message as its input). Answers quote documents: left as they are.
            typed = ("input", "output") if step_dict.get("type") == "user_message" else ("input",)
            step_dict = {**step_dict, **{k: mask(step_dict[k]) for k in typed if isinstance(step_dict.get(k), str)}}
            await super().create_step(step_dict)

        async def update_thread(self, thread_id: str, name: str | None = None, *args, **kwargs):
            # Chainlit names a conversation after its first message: masked like the message.
            return await super().update_thread(thread_id, mask(name) if isinstance(name, str) else name,
                                               *args, **kwargs)

        async def delete_thread(self, thread_id: str):
            """Chainlit's deletion, then Collectivia's rows of that conversation: the agent's opinions and the
            question log (both hold the question's text)."""
            await super().delete_thread(thread_id)
            for table in THREAD_TABLES.values():
                await self.execute_sql(f'DELETE FROM {table} WHERE "threadId" = :id', {"id": thread_id})

        @queue_until_user_message()
        async def delete_step(self, step_id: str) -> None:
            thread_id = await self.step_thread(step_id)
            if thread_id is not None and not await self._may_write_step(step_id, thread_id):
                logger.warning("suppression de l'étape %s refusée : fil %s d'un autre utilisateur", step_id, thread_id)
                return
            await super().delete_step(step_id)

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
                "value": int(value), "tags": json.dumps(list(tags), ensure_ascii=False),
                "comment": mask(comment) if comment else None, "question": mask(question) if question else None,
                "docIds": json.dumps(list(doc_ids), ensure_ascii=False),
                "createdAt": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            }
            columns = ", ".join(f'"{k}"' for k in row)
            values = ", ".join(f":{k}" for k in row)
            updates = ", ".join(f'"{k}" = EXCLUDED."{k}"' for k in row if k != "id")
            await self.execute_sql(
                f"INSERT INTO collectivia_feedback ({columns}) VALUES ({values}) "
                f"ON CONFLICT (\"id\") DO UPDATE SET {updates}", row,
            )
            summary = "; ".join(x for x in (", ".join(tags), row["comment"]) if x) or None
            await SQLAlchemyDataLayer.upsert_feedback(self, Feedback(
                forId=step_id, value=1 if value else 0, threadId=thread_id, comment=summary, id=row_id,
            ))
            return row_id

        async def log_question(self, *, answer_id: str, thread_id: str | None, services, outcome: str,
                               refused: bool, question: str, doc_ids, repealed_doc_ids=()) -> None:
            """One row of the question log (masked question, no user id), through the write queue."""
            if not await self._may_write(thread_id):
                logger.warning("question du fil %s non journalisée : fil d'un autre utilisateur", thread_id)
                return
            await self.execute_sql(INSERT_QUESTION, question_row(
                answer_id=answer_id, thread_id=thread_id, services=services, outcome=outcome, refused=refused,
                question=question, doc_ids=doc_ids, repealed_doc_ids=repealed_doc_ids))

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
