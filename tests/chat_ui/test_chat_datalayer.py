"""History and feedback: the schema created on SQLite, JSON read back as objects, the cards kept without blob
storage, and every write checked against the owner of the thread."""

from __future__ import annotations

import chat_helpers  # noqa: F401  (keeps Chainlit's run-time folder out of the repository)

import asyncio
import concurrent.futures
import json
import os
import shutil
import sqlite3
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

from chat_ui.process import free_port
from chat_ui.datalayer import database_url, ensure_schema, make_data_layer, request_identifier, schema_statements


def test_database_url_defaults_to_sqlite_under_the_data_dir(tmp_path):
    assert database_url(None, tmp_path) == f"sqlite+aiosqlite:///{tmp_path.resolve() / 'chat.db'}"
    assert database_url("postgresql://u:p@db/chat", tmp_path) == "postgresql+asyncpg://u:p@db/chat"
    assert database_url("postgresql+asyncpg://u:p@db/chat", tmp_path) == "postgresql+asyncpg://u:p@db/chat"


def test_postgresql_schema_is_chainlits_documented_one():
    ddl = "\n".join(schema_statements(sqlite=False))
    for fragment in ('"identifier" TEXT NOT NULL UNIQUE', '"tags" TEXT[]', '"metadata" JSONB', '"defaultOpen" BOOLEAN',
                     '"command" TEXT', '"modes" JSONB', '"props" JSONB', 'REFERENCES threads("id") ON DELETE CASCADE',
                     "CREATE TABLE IF NOT EXISTS collectivia_feedback"):
        assert fragment in ddl


def run(coro):
    """Run in a thread of its own: Playwright's sync API may hold an event loop in the main thread."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


async def _drop_all(url: str) -> None:
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(url)
    async with engine.begin() as conn:
        for table in ("collectivia_feedback", "feedbacks", "elements", "steps", "threads", "users"):
            await conn.execute(text(f"DROP TABLE IF EXISTS {table} CASCADE"))
    await engine.dispose()


def _postgres_binaries() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return found[-1].parent if found else None


@pytest.fixture(scope="module")
def postgres_url():
    """COLLECTIVIA_TEST_DATABASE_URL, or a throwaway PostgreSQL server of the system's packages (postgresql)."""
    given = os.environ.get("COLLECTIVIA_TEST_DATABASE_URL")
    if given:
        yield given
        return
    binaries = _postgres_binaries()
    if binaries is None:
        pytest.skip("PostgreSQL absent : installez le paquet postgresql ou donnez COLLECTIVIA_TEST_DATABASE_URL")
    root = Path(tempfile.mkdtemp(prefix="collectivia-pg-"))  # not under pytest's folders: root-only (700)
    as_user: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        shutil.chown(root, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = root / "data", free_port()
    subprocess.run(as_user + [str(binaries / "initdb"), "-D", str(data), "-A", "trust", "-U", "collectivia",
                              "--encoding", "UTF8", "--no-locale"], check=True, capture_output=True)
    subprocess.run(as_user + [str(binaries / "pg_ctl"), "-D", str(data), "-w", "-l", str(root / "log"), "-o",
                              f"-p {port} -k {root} -c listen_addresses=127.0.0.1", "start"],
                   check=True, capture_output=True)
    try:
        subprocess.run(as_user + [str(binaries / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "collectivia",
                                  "chat"], check=True, capture_output=True)
        yield f"postgresql+asyncpg://collectivia@127.0.0.1:{port}/chat"
    finally:
        subprocess.run(as_user + [str(binaries / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"],
                       capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def layer(request, tmp_path):
    """The data layer on SQLite, and on a real PostgreSQL server (emptied first)."""
    if request.param == "sqlite":
        url = database_url(None, tmp_path)
    else:
        url = database_url(request.getfixturevalue("postgres_url"), tmp_path)
        run(_drop_all(url))
    run(ensure_schema(url))
    run(ensure_schema(url))  # idempotent
    return url


def test_schema_adds_columns_missing_from_an_older_chainlit(tmp_path):
    db = tmp_path / "chat.db"
    with sqlite3.connect(db) as conn:
        conn.execute('CREATE TABLE steps ("id" TEXT PRIMARY KEY, "name" TEXT NOT NULL, "type" TEXT NOT NULL, '
                     '"threadId" TEXT NOT NULL, "streaming" BOOLEAN NOT NULL)')
    run(ensure_schema(database_url(None, tmp_path)))
    with sqlite3.connect(db) as conn:
        columns = {row[1] for row in conn.execute("PRAGMA table_info(steps)")}
    assert {"autoCollapse", "modes", "command", "defaultOpen", "generation"} <= columns


async def _thread(dl, owner: str) -> tuple[str, str]:
    from chainlit.user import User

    user = await dl.create_user(User(identifier=owner, metadata={"provider": "password"}))
    thread_id = str(uuid.uuid4())
    await dl.update_thread(thread_id, name="Question", user_id=user.id)
    step_id = str(uuid.uuid4())
    await dl.create_step({"id": step_id, "threadId": thread_id, "name": "Collectivia", "type": "assistant_message",
                          "streaming": False, "output": "Réponse [1].", "metadata": {"collectivia": {"question": "q"}},
                          "tags": ["a", "b"], "createdAt": "2025-01-01T00:00:00Z"})
    return thread_id, step_id


def test_feedback_and_cards_are_stored_for_the_owner_only(layer):
    from chainlit.element import CustomElement
    from chainlit.types import Feedback

    url = layer

    async def scenario():
        from chainlit.context import init_http_context

        init_http_context()  # a Chainlit context, as in a request
        dl = make_data_layer(url)
        alice_thread, alice_step = await _thread(dl, "alice")
        bob_thread, bob_step = await _thread(dl, "bob")

        # Alice's card is kept, with its props, and read back as an object.
        request_identifier.set("alice")
        card = CustomElement(name="Source", props={"n": 1, "title": "Congés"}, display="inline",
                             thread_id=alice_thread, for_id=alice_step)
        await dl.create_element(card)
        thread = await dl.get_thread(alice_thread)
        assert thread["elements"][0]["props"] == {"n": 1, "title": "Congés"}
        assert thread["steps"][0]["metadata"] == {"collectivia": {"question": "q"}}
        assert thread["steps"][0]["tags"] == ["a", "b"]

        # Bob can neither add a card to Alice's thread, nor steal hers into his own, nor delete it.
        request_identifier.set("bob")
        await dl.create_element(CustomElement(name="Source", props={"x": 1}, display="inline",
                                              thread_id=alice_thread, for_id=alice_step))
        await dl.create_element(CustomElement(name="Source", props={"volé": True}, display="inline",
                                              thread_id=bob_thread, for_id=bob_step, id=card.id))
        await dl.delete_element(card.id, bob_thread)
        assert [e["props"] for e in (await dl.get_thread(alice_thread))["elements"]] == [{"n": 1, "title": "Congés"}]
        with pytest.raises(PermissionError):
            await dl.upsert_feedback(Feedback(forId=alice_step, value=1))
        with pytest.raises(PermissionError):
            await dl.save_answer_feedback(step_id=alice_step, user_identifier="bob", value=1, tags=[], comment="")

        # Alice's opinion goes to both tables.
        request_identifier.set("alice")
        await dl.save_answer_feedback(step_id=alice_step, user_identifier="alice", value=0,
                                      tags=["hallucination", "incomplet"], comment="Faux.", question="q",
                                      doc_ids=["PROC-1"])
        await dl.save_answer_feedback(step_id=alice_step, user_identifier="alice", value=0, tags=["incomplet"],
                                      comment="Incomplet plutôt.", question="q", doc_ids=["PROC-1"])  # updated
        rows = await dl.answer_feedback("alice")
        assert len(rows) == 1 and rows[0]["tags"] == ["incomplet"] and rows[0]["docIds"] == ["PROC-1"]
        step = (await dl.get_thread(alice_thread))["steps"][0]
        assert step["feedback"]["value"] == 0 and "Incomplet plutôt." in step["feedback"]["comment"]
        assert await dl.execute_sql("SELECT count(*) AS n FROM feedbacks", {}) == [{"n": 1}]
        tags = (await dl.execute_sql("SELECT tags FROM collectivia_feedback", {}))[0]["tags"]
        assert json.loads(tags) == ["incomplet"]
        # The history lists Alice's threads only.
        from chainlit.types import Pagination, ThreadFilter

        alice = await dl.get_user("alice")
        listed = await dl.list_threads(Pagination(first=10), ThreadFilter(userId=alice.id))
        assert [t["id"] for t in listed.data] == [alice_thread]
        await dl.close()

    run(scenario())
