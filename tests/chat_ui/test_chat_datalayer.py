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

        # Alice deletes the conversation from the sidebar: her opinion and the logged question go with it.
        await dl.log_question(answer_id=alice_step, thread_id=alice_thread, services=["rh"], outcome="not_found",
                              refused=True, question="q", doc_ids=[])
        await dl.delete_thread(alice_thread)
        for table in ("collectivia_feedback", "collectivia_questions"):
            assert await dl.execute_sql(f"SELECT count(*) AS n FROM {table}", {}) == [{"n": 0}]
        await dl.close()

    run(scenario())


# -- hardening: steps of another user, concurrent writes, lost writes said, damaged database --------------------------

def test_a_step_of_another_users_thread_is_neither_overwritten_nor_moved(layer):
    """A ``client_message`` whose id is another agent's step must not move it to the sender's thread."""
    async def scenario():
        from chainlit.context import init_http_context

        init_http_context()
        dl = make_data_layer(layer)
        alice_thread, alice_step = await _thread(dl, "alice")
        bob_thread, _ = await _thread(dl, "bob")
        request_identifier.set("bob")
        stolen = {"id": alice_step, "threadId": bob_thread, "name": "bob", "type": "user_message",
                  "streaming": False, "output": "volé", "createdAt": "2025-01-02T00:00:00Z"}
        await dl.create_step(dict(stolen))
        await dl.update_step(dict(stolen))
        intruder = str(uuid.uuid4())  # nor can Bob add a step to Alice's thread
        await dl.create_step({**stolen, "id": intruder, "threadId": alice_thread})
        await dl.delete_step(alice_step)
        steps = (await dl.get_thread(alice_thread))["steps"]
        assert [(s["id"], s["output"]) for s in steps] == [(alice_step, "Réponse [1].")]
        assert all(s["id"] != alice_step for s in (await dl.get_thread(bob_thread))["steps"])
        request_identifier.set("alice")  # Alice still updates her own step
        await dl.update_step({**stolen, "threadId": alice_thread, "output": "Réponse corrigée."})
        assert (await dl.get_step(alice_step))["output"] == "Réponse corrigée."
        await dl.close()

    run(scenario())


async def _concurrent_agents(dl, agents: int, turns: int) -> list[str]:
    """``agents`` agents at once, each writing ``turns`` question/answer pairs (answer updated as Chainlit does)."""
    from chainlit.user import User

    async def agent(i: int) -> list[str]:
        request_identifier.set(f"agent{i}")
        user = await dl.create_user(User(identifier=f"agent{i}", metadata={}))
        thread_id = str(uuid.uuid4())
        await dl.update_thread(thread_id, name="Question", user_id=user.id)
        sent = []
        for turn in range(turns):
            for kind in ("user_message", "assistant_message"):
                step = {"id": str(uuid.uuid4()), "threadId": thread_id, "name": kind, "type": kind,
                        "streaming": False, "output": f"{kind} {i}/{turn}", "createdAt": "2025-01-01T00:00:00Z"}
                await dl.create_step(dict(step))
                await dl.update_step({**step, "output": step["output"] + " (fin)"})
                sent.append(step["id"])
        return sent

    return [s for ids in await asyncio.gather(*(agent(i) for i in range(agents))) for s in ids]


def test_concurrent_agents_lose_no_history_write(layer):
    async def scenario():
        from chainlit.context import init_http_context

        init_http_context()
        dl = make_data_layer(layer)
        sent = await _concurrent_agents(dl, agents=20, turns=5)
        rows = await dl.execute_sql('SELECT "id", "output" FROM steps', {})
        stored = {str(r["id"]): r["output"] for r in rows}
        assert [s for s in sent if not str(stored.get(s, "")).endswith("(fin)")] == []  # 0 lost writes
        await dl.close()

    run(scenario())


@pytest.mark.slow
def test_history_writes_wait_for_another_process_holding_the_sqlite_file(tmp_path):
    """Another process holds the write lock longer than SQLite's default 5 s: no write is lost."""
    import threading
    import time

    url = database_url(None, tmp_path)
    run(ensure_schema(url))
    holder = sqlite3.connect(tmp_path / "chat.db", check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    threading.Thread(target=lambda: (time.sleep(6.5), holder.rollback()), daemon=True).start()

    async def scenario():
        from chainlit.context import init_http_context

        init_http_context()
        dl = make_data_layer(url)
        sent = await _concurrent_agents(dl, agents=20, turns=1)
        rows = await dl.execute_sql('SELECT "id" FROM steps', {})
        assert sorted(sent) == sorted(str(r["id"]) for r in rows)
        await dl.close()

    run(scenario())
    holder.close()


def test_a_history_write_finally_lost_is_said_to_the_agent(tmp_path, monkeypatch):
    from chat_ui import history_db, history_writes

    monkeypatch.setattr(history_db, "BUSY_TIMEOUT_S", 0.1)
    monkeypatch.setattr(history_writes, "ATTEMPTS", 2)
    monkeypatch.setattr(history_writes, "FIRST_DELAY_S", 0.05)
    url = database_url(None, tmp_path)
    run(ensure_schema(url))
    emitted: list[tuple[str, dict]] = []

    async def scenario():
        from chainlit.context import init_ws_context
        from chainlit.session import WebsocketSession
        from chainlit.user import User

        async def emit(event, data):
            emitted.append((event, data))

        dl = make_data_layer(url)
        user = await dl.create_user(User(identifier="alice", metadata={}))
        thread_id = str(uuid.uuid4())
        await dl.update_thread(thread_id, name="Question", user_id=user.id)
        session = WebsocketSession(id=str(uuid.uuid4()), socket_id="s", emit=emit, emit_call=None, user_env={},
                                   client_type="webapp", thread_id=thread_id, user=user)
        session.has_first_interaction = True
        init_ws_context(session)
        holder = sqlite3.connect(tmp_path / "chat.db")
        holder.execute("BEGIN IMMEDIATE")  # another process keeps the file locked throughout
        try:
            await dl.create_step({"id": str(uuid.uuid4()), "threadId": thread_id, "name": "alice",
                                  "type": "user_message", "streaming": False, "output": "Ma question",
                                  "createdAt": "2025-01-01T00:00:00Z"})
        finally:
            holder.rollback()
            holder.close()
        await dl.close()

    run(scenario())
    said = [data for event, data in emitted if event == "new_message"]
    assert len(said) == 1 and "n'a pas pu être enregistré dans l'historique" in said[0]["output"]


def _damage(db: Path, where: str) -> None:
    data = bytearray(db.read_bytes())
    if where == "header":
        data[0:16] = b"pas une base !!!"
    else:  # a page in the middle of the steps table
        page = int.from_bytes(data[16:18], "big")
        middle = (len(data) // page) // 2
        data[middle * page: middle * page + page] = bytes([0xA5]) * page
    db.write_bytes(bytes(data))


def _filled_history(tmp_path) -> Path:
    url = database_url(None, tmp_path)
    run(ensure_schema(url))
    with sqlite3.connect(tmp_path / "chat.db") as conn:
        conn.execute("PRAGMA journal_mode=DELETE")
        conn.execute("""INSERT INTO threads ("id", "userIdentifier") VALUES ('t', 'alice')""")
        conn.executemany("""INSERT INTO steps ("id", "name", "type", "threadId", "streaming", "output")
                            VALUES (?, 'x', 'user_message', 't', 0, ?)""",
                         [(str(i), "question " * 40) for i in range(2000)])
    return tmp_path / "chat.db"


def test_a_damaged_page_of_the_history_stops_the_start_with_a_french_message(tmp_path):
    db = _filled_history(tmp_path)
    _damage(db, "page")
    with pytest.raises(RuntimeError, match="endommagée") as raised:
        run(ensure_schema(database_url(None, tmp_path)))
    assert ".recover" in str(raised.value) and "sauvegarde" in str(raised.value)


def test_serve_refuses_a_damaged_history_database_without_a_traceback(tmp_path):
    import sys

    db = _filled_history(tmp_path)
    _damage(db, "header")
    users = tmp_path / "users.yaml"
    users.write_text("users: []\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COLLECTIVIA_", "CHAINLIT_"))}
    env.update(COLLECTIVIA_DATA_DIR=str(tmp_path), COLLECTIVIA_USERS=str(users), COLUMNS="200")
    done = subprocess.run([sys.executable, "-m", "collectivia.cli", "serve", "--port", str(free_port())], env=env,
                          capture_output=True, text=True, timeout=120)
    output = done.stdout + done.stderr
    assert done.returncode == 3, output
    assert "Traceback" not in output and "endommagée" in output and ".recover" in output
