"""History writes that survive a busy morning, and an agent who is told when one is finally lost.

- SQLite has one writer at a time: the writes of the process go through one queue (an ``asyncio.Lock`` per event
  loop), so they never wait on each other inside SQLite; another process holding the file waits up to
  ``history_db.BUSY_TIMEOUT_S`` per attempt.
- A statement that fails for a passing reason (database locked or busy, pool exhausted, connection lost, deadlock
  or serialization failure on PostgreSQL) is tried again with back-off: ``ATTEMPTS`` attempts in all.
- A write that still fails is logged and said in the agent's chat, in French (at most once per ``TELL_EVERY_S`` per
  session): the answer stays on screen, but it will be missing from the history.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
import weakref
from dataclasses import dataclass
from typing import Awaitable, Callable, TypeVar

from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError, TimeoutError as PoolTimeoutError

logger = logging.getLogger(__name__)

ATTEMPTS = 5
FIRST_DELAY_S = 0.2  # then 0.4, 0.8, 1.6 s
TELL_EVERY_S = 60.0
NOT_SAVED = ("Votre échange n'a pas pu être enregistré dans l'historique (base de données occupée ou "
             "indisponible). La réponse affichée reste valable, mais elle manquera quand vous reprendrez cette "
             "conversation ; si cela se répète, signalez-le à la DSI.")
_TRANSIENT_DRIVER_ERRORS = {"DeadlockDetectedError", "SerializationError", "TooManyConnectionsError",
                            "CannotConnectNowError", "ConnectionDoesNotExistError", "InterfaceError",
                            "ConnectionFailureError", "AdminShutdownError"}

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class WriteFailure:
    """A history write given up after every attempt."""

    query: str
    error: str
    attempts: int


def is_write(query: str) -> bool:
    return query.lstrip().split(None, 1)[0].upper() in ("INSERT", "UPDATE", "DELETE") if query.strip() else False


def is_transient(exc: BaseException) -> bool:
    """Whether trying again may succeed (a lock, a busy pool, a lost connection), not a wrong statement."""
    if isinstance(exc, PoolTimeoutError):
        return True
    if isinstance(exc, OperationalError):
        return True
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        names = {type(exc.orig).__name__} | {type(getattr(exc.orig, "__cause__", None)).__name__}
        return bool(names & _TRANSIENT_DRIVER_ERRORS)
    return False


class WriteQueue:
    """One writer at a time per event loop (SQLite); no queue at all for a server database."""

    def __init__(self, serialize: bool) -> None:
        self.serialize = serialize
        self._locks: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock]" = weakref.WeakKeyDictionary()

    def lock(self) -> asyncio.Lock | None:
        if not self.serialize:
            return None
        loop = asyncio.get_running_loop()
        lock = self._locks.get(loop)
        if lock is None:
            lock = self._locks[loop] = asyncio.Lock()
        return lock

    async def run(self, query: str, statement: Callable[[], Awaitable[T]]) -> T:
        """Run ``statement`` (through the queue if it writes), trying again on passing errors; raises
        ``SQLAlchemyError`` once every attempt failed."""
        delay = FIRST_DELAY_S
        for attempt in range(1, ATTEMPTS + 1):
            lock = self.lock() if is_write(query) else None
            try:
                if lock is None:
                    return await statement()
                async with lock:
                    return await statement()
            except SQLAlchemyError as exc:
                if attempt == ATTEMPTS or not is_transient(exc):
                    raise
                logger.warning("historique : écriture retentée (%s/%s) après « %s »", attempt, ATTEMPTS,
                               str(exc).splitlines()[0][:200])
                await asyncio.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")


_told: dict[str, float] = {}


async def tell_agent(failure: WriteFailure) -> bool:
    """Say in the agent's chat that the history missed a write; True if said (a websocket session was there)."""
    logger.error("historique : écriture perdue après %s tentatives (%s) : %s", failure.attempts, failure.error,
                 " ".join(failure.query.split())[:160])
    try:
        from chainlit.context import context
        from chainlit.session import WebsocketSession

        session = context.session
        if not isinstance(session, WebsocketSession):
            return False
        now = time.monotonic()
        if now - _told.get(session.id, float("-inf")) < TELL_EVERY_S:
            return False
        if len(_told) > 10_000:
            _told.clear()
        _told[session.id] = now
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + "Z"
        await context.emitter.send_step({  # shown, never persisted (that would fail again)
            "id": str(uuid.uuid4()), "threadId": session.thread_id, "parentId": None, "name": "Collectivia",
            "type": "assistant_message", "output": NOT_SAVED, "isError": True, "streaming": False,
            "createdAt": stamp, "start": stamp, "end": stamp, "metadata": {}, "tags": None,
        })
        return True
    except Exception as exc:  # no Chainlit context, or the socket is gone: the log has it
        logger.debug("historique : agent non prévenu (%s)", exc)
        return False
