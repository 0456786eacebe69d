"""The history database itself: its URL, Chainlit's schema (translated for SQLite) created or completed at start-up,
the connection options that let many agents write at once, and the start-up integrity check of a SQLite file.

SQLite runs in WAL mode (readers never wait for the writer) with a busy timeout far above SQLite's default 5 s;
the data layer (``datalayer.py``) also funnels the writes of the process through one queue and retries a write
that still finds the database busy.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

from sqlalchemy import inspect, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import create_async_engine

BUSY_TIMEOUT_S = 10.0  # how long one SQLite statement waits for another process's lock (SQLite's default: 5 s)
DAMAGED_EXIT_CODE = 3  # exit status of `collectivia serve` when the history database is damaged


class HistoryDatabaseError(RuntimeError):
    """The history database is damaged or unreachable; the message says what to do, in French."""

    def __init__(self, message: str, damaged: bool = False) -> None:
        super().__init__(message)
        self.damaged = damaged


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
    # Collectivia's question log, read by the managers' reports (chat_ui/reports/): one row per answer, no user
    # identifier; the asking agent's services at that time; the question masked of personal data. `id` is the
    # answer step's id. Purged with its thread (`threadId`, `createdAt`).
    "collectivia_questions": [
        ("id", "TEXT PRIMARY KEY", "TEXT PRIMARY KEY"),
        ("createdAt", "TEXT NOT NULL", "TEXT NOT NULL"),
        ("threadId", "TEXT", "TEXT"),
        ("services", "TEXT NOT NULL", "TEXT NOT NULL"),
        ("outcome", "TEXT NOT NULL", "TEXT NOT NULL"),
        ("refused", "BOOLEAN NOT NULL", "BOOLEAN NOT NULL"),
        ("question", "TEXT NOT NULL", "TEXT NOT NULL"),
        ("docIds", "TEXT NOT NULL", "TEXT NOT NULL"),
        ("repealedDocIds", "TEXT NOT NULL", "TEXT NOT NULL"),
        ("topic", "TEXT", "TEXT"),
    ],
}

# Collectivia's own tables whose rows belong to a conversation (``threadId``, no foreign key: Chainlit deletes
# conversations itself): they go with it, whoever deletes it (the agent, the purge, an erasure). Keyed by the name a
# purge report counts them under.
THREAD_TABLES = {"report_rows": "collectivia_questions", "answer_feedback": "collectivia_feedback"}

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
    out.append('CREATE INDEX IF NOT EXISTS questions_created_idx ON collectivia_questions ("createdAt")')
    out.append('CREATE INDEX IF NOT EXISTS questions_thread_idx ON collectivia_questions ("threadId")')
    return out


def sqlite_path(url: str) -> Path:
    return Path(url.split(":///", 1)[1])


def engine_options(url: str) -> dict:
    """``create_async_engine`` keyword arguments of the history database."""
    return {"connect_args": {"timeout": BUSY_TIMEOUT_S}} if is_sqlite(url) else {"pool_pre_ping": True}


def check_sqlite(path: Path) -> None:
    """Raise ``HistoryDatabaseError`` if the SQLite file exists and is damaged (``PRAGMA quick_check``: every page
    and index of the file is read, in about a second per 100 MB)."""
    if not path.exists() or path.stat().st_size == 0:
        return
    try:
        with closing(sqlite3.connect(path, timeout=BUSY_TIMEOUT_S)) as conn:
            problems = [row[0] for row in conn.execute("PRAGMA quick_check(5)").fetchall() if row[0] != "ok"]
    except sqlite3.DatabaseError as exc:
        problems = [str(exc)]
    if problems:
        raise HistoryDatabaseError(
            f"la base de l'historique « {path} » est endommagée ({'; '.join(problems)[:300]}). Le chat ne démarre "
            "pas, pour ne pas servir un historique vide ou incomplet. Arrêtez tout processus qui l'utilise, gardez "
            f"une copie du fichier, puis récupérez ce qui peut l'être : sqlite3 {path} \".recover\" | sqlite3 "
            f"{path.with_name('chat-recupere.db')} et remplacez {path.name} par chat-recupere.db — ou restaurez la "
            "dernière sauvegarde (docs/deployment.md, « Base de l'historique endommagée »).",
            damaged=True,
        )


async def ensure_schema(url: str) -> None:
    """Check a SQLite file, then create the tables and add the columns a newer Chainlit needs to tables created by an
    older one. Raises ``HistoryDatabaseError`` (in French) if the database is damaged or cannot be reached."""
    sqlite = is_sqlite(url)
    if sqlite:
        sqlite_path(url).parent.mkdir(parents=True, exist_ok=True)
        check_sqlite(sqlite_path(url))
    engine = create_async_engine(url, **engine_options(url))
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
    except (SQLAlchemyError, OSError) as exc:
        shown = url.split("@", 1)[-1] if "@" in url else url  # never the password
        raise HistoryDatabaseError(f"base de l'historique inaccessible ({shown}) : {type(exc).__name__} : "
                                   f"{str(exc).splitlines()[0][:300]}", damaged=sqlite and "malformed" in str(exc)) from exc
    finally:
        await engine.dispose()
