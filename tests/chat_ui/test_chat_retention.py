"""Retention and rights over the chat history, on SQLite and on a real PostgreSQL server: the purge removes what is
older than the retention and nothing else, the dry run changes nothing, an agent's export holds their data only,
erasing one agent leaves the others intact, and the commands audit what they did (never a question)."""

from __future__ import annotations

import chat_helpers  # noqa: F401  (keeps Chainlit's run-time folder out of the repository)

import datetime as dt
import json
import os
import sqlite3
import stat
import subprocess
import uuid

import pytest

from chat_helpers import run_cli
from chat_ui.datalayer import database_url, make_data_layer, request_identifier
from chat_ui.reports.history import INSERT_QUESTION, question_row
from chat_ui.retention import delete_conversations, export_user, forget_user, purge
from test_chat_datalayer import layer, postgres_url, run  # noqa: F401  (fixtures: SQLite and PostgreSQL)

NOW = dt.datetime(2026, 6, 30, 12, 0, 0, tzinfo=dt.timezone.utc)
DAYS = 30  # cutoff 2026-05-31T12:00:00
TABLES = ("users", "threads", "steps", "elements", "feedbacks", "collectivia_feedback", "collectivia_questions")


async def _conversation(dl, owner: str, stamps: list[str], question: str, *, card: bool = False,
                        feedback: bool = False) -> str:
    """A conversation of ``owner``: one question/answer pair per timestamp, written through the chat's data layer."""
    from chainlit.element import CustomElement
    from chainlit.user import User

    request_identifier.set(owner)
    user = await dl.get_user(owner) or await dl.create_user(User(identifier=owner, metadata={"provider": "password"}))
    thread_id = str(uuid.uuid4())
    await dl.update_thread(thread_id, name=question, user_id=user.id)
    answer = None
    for stamp in stamps:
        for kind, output in (("user_message", question), ("assistant_message", f"Réponse à « {question} » [1].")):
            step = str(uuid.uuid4())
            await dl.create_step({"id": step, "threadId": thread_id, "name": kind, "type": kind, "streaming": False,
                                  "output": output, "createdAt": stamp})
            answer = step
        # the question log of the managers' reports, as the chat writes it, dated like the answer
        await dl.execute_sql(INSERT_QUESTION, question_row(
            answer_id=answer, thread_id=thread_id, services=["rh"], outcome="answer", refused=False,
            question=question, doc_ids=["PROC-1"], at=dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))))
    if card:
        await dl.create_element(CustomElement(name="Source", props={"n": 1, "title": "Congés"}, display="inline",
                                              thread_id=thread_id, for_id=answer))
    if feedback:
        await dl.save_answer_feedback(step_id=answer, user_identifier=owner, value=0, tags=["incomplet"],
                                      comment="Manque le délai.", question=question, doc_ids=["PROC-1"])
    return thread_id


async def _history(url: str) -> dict[str, str]:
    """Alice and Bob, each with a conversation outside the retention and one just inside; two orphan feedbacks."""
    from chainlit.context import init_http_context

    init_http_context()
    dl = make_data_layer(url)
    made = {
        "alice_old": await _conversation(dl, "alice", ["2026-04-01T09:00:00.000Z"], "Congés d'été 2026 ?",
                                         card=True, feedback=True),
        # an old conversation resumed just inside the retention stays, with its old messages
        "alice_kept": await _conversation(dl, "alice", ["2026-01-05T09:00:00.000Z", "2026-05-31T12:00:05.000Z"],
                                          "Mutuelle des agents ?", card=True, feedback=True),
        "bob_old": await _conversation(dl, "bob", ["2026-05-31T11:59:59.000Z"], "Permis de Bob ?", feedback=True),
        "bob_kept": await _conversation(dl, "bob", ["2026-06-29T08:00:00.000Z"], "Voirie de Bob ?", card=True),
    }
    for thread, stamp in (("gone-old", "2026-02-01T00:00:00+00:00"), ("gone-new", "2026-06-20T00:00:00+00:00")):
        await dl.execute_sql(
            'INSERT INTO collectivia_feedback ("id", "stepId", "threadId", "userIdentifier", "value", "tags", '
            '"createdAt") VALUES (:id, :step, :thread, :who, 1, :tags, :at)',
            {"id": str(uuid.uuid4()), "step": str(uuid.uuid4()), "thread": thread, "who": "alice", "tags": "[]",
             "at": stamp})
    await dl.close()
    return made


async def _snapshot(url: str) -> dict[str, list[tuple]]:
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(url)
    out = {}
    async with engine.connect() as conn:
        for table in TABLES:
            rows = await conn.execute(text(f"SELECT * FROM {table}"))
            out[table] = sorted(tuple(str(v) for v in r) for r in rows)
    await engine.dispose()
    return out


async def _threads(url: str) -> set[str]:
    return {row[0] for row in (await _snapshot(url))["threads"]}


def test_purge_removes_exactly_what_is_older_than_the_retention(layer):
    made = run(_history(layer))
    before = run(_snapshot(layer))

    dry = run(purge(layer, DAYS, now=NOW, dry_run=True))
    assert run(_snapshot(layer)) == before  # the dry run changes nothing
    report = run(purge(layer, DAYS, now=NOW))
    assert report.cutoff == "2026-05-31T12:00:00"
    assert dry.counts == report.counts
    c = report.counts
    # alice_old (1 pair, a card, feedback in both tables) + bob_old (1 pair, feedback) + the old orphan feedback
    assert (c.threads, c.steps, c.elements, c.feedbacks, c.answer_feedback) == (2, 4, 1, 2, 3)
    # the question log: both purged conversations' rows, and the January row of the resumed one (older than the
    # retention: the reports keep no question longer)
    assert c.report_rows == 3

    after = run(_snapshot(layer))
    assert {row[0] for row in after["threads"]} == {made["alice_kept"], made["bob_kept"]}
    kept_steps = [row for row in before["steps"] if made["alice_kept"] in row or made["bob_kept"] in row]
    assert after["steps"] == kept_steps  # the resumed conversation keeps its January messages
    assert len(after["elements"]) == 2 and len(after["feedbacks"]) == 1
    remaining = {row[2] for row in after["collectivia_feedback"]}  # threadId column
    assert remaining == {made["alice_kept"], "gone-new"}
    assert after["users"] == before["users"]  # agents themselves are not purged
    assert sorted(row[1][:10] for row in after["collectivia_questions"]) == ["2026-05-31", "2026-06-29"]
    again = run(purge(layer, DAYS, now=NOW))
    assert again.counts.total == 0


def test_export_holds_one_agents_data_and_nothing_of_another(layer):
    made = run(_history(layer))
    export = run(export_user(layer, "alice", now=NOW))
    text = json.dumps(export, ensure_ascii=False)
    assert export["user"]["identifier"] == "alice"
    assert {c["id"] for c in export["conversations"]} == {made["alice_old"], made["alice_kept"]}
    kept = next(c for c in export["conversations"] if c["id"] == made["alice_kept"])
    assert len(kept["messages"]) == 4 and {m["output"] for m in kept["messages"]} == {
        "Mutuelle des agents ?", "Réponse à « Mutuelle des agents ? » [1]."}
    assert kept["elements"][0]["props"] == {"n": 1, "title": "Congés"}
    assert [q["question"] for q in kept["question_log"]] == ["Mutuelle des agents ?"] * 2
    assert {f["comment"] for f in export["answer_feedback"]} >= {"Manque le délai."}
    assert all(f["userIdentifier"] == "alice" for f in export["answer_feedback"])
    assert "Bob" not in text and made["bob_old"] not in text and made["bob_kept"] not in text
    assert run(export_user(layer, "nobody"))["conversations"] == []


def test_forget_erases_one_agent_and_leaves_the_others_intact(layer):
    made = run(_history(layer))
    before = run(_snapshot(layer))
    bob_before = json.dumps(run(export_user(layer, "bob", now=NOW)), sort_keys=True)

    report = run(forget_user(layer, "alice"))
    assert (report.counts.threads, report.counts.users) == (2, 1)
    assert report.counts.answer_feedback == 4  # her two answers' feedback and her two orphan rows
    assert report.counts.report_rows == 3  # her three questions in the reports' log
    after = run(_snapshot(layer))
    assert "alice" not in json.dumps(after)
    assert json.dumps(run(export_user(layer, "bob", now=NOW)), sort_keys=True) == bob_before
    assert {row[0] for row in after["threads"]} == {made["bob_old"], made["bob_kept"]}
    assert len(after["steps"]) == len(before["steps"]) - 6


def test_an_agent_deleting_their_conversations_keeps_their_login_and_others_data(layer):
    made = run(_history(layer))
    report = run(delete_conversations(layer, "bob"))
    assert (report.counts.threads, report.counts.steps, report.counts.report_rows, report.counts.users) == (2, 4, 2, 0)
    assert run(_threads(layer)) == {made["alice_old"], made["alice_kept"]}
    export = run(export_user(layer, "bob"))
    assert export["user"]["identifier"] == "bob" and export["conversations"] == [] and export["answer_feedback"] == []
    assert len(run(export_user(layer, "alice"))["answer_feedback"]) == 4


# -- the commands (SQLite under a data directory of their own) ---------------------------------------------------------

@pytest.fixture
def history_dir(tmp_path):
    from chat_ui.datalayer import ensure_schema

    url = database_url(None, tmp_path)
    run(ensure_schema(url))
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")

    async def fill():
        from chainlit.context import init_http_context

        init_http_context()
        dl = make_data_layer(url)
        made = {"old": await _conversation(dl, "alice", ["2020-01-01T00:00:00.000Z"], "Ancienne question d'Alice",
                                           feedback=True),
                "new": await _conversation(dl, "alice", [now], "Question récente d'Alice"),
                "bob": await _conversation(dl, "bob", [now], "Question de Bob")}
        await dl.close()
        return made

    env = {**os.environ, "COLLECTIVIA_DATA_DIR": str(tmp_path), "COLLECTIVIA_USERS": str(tmp_path / "users.yaml")}
    env = {k: v for k, v in env.items() if not k.startswith("COLLECTIVIA_CHAT__")}
    return tmp_path, env, run(fill())


def _audit(folder) -> list[dict]:
    path = folder / "audit" / "privacy.jsonl"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text(encoding="utf-8")
    assert "question" not in text.lower()  # counts, never what the agents asked
    return [json.loads(line) for line in text.splitlines()]


def test_purge_command_reports_in_json_and_is_audited(history_dir):
    folder, env, made = history_dir
    dry = run_cli(["purge", "--dry-run", "--json"], env)
    assert dry.returncode == 0, dry.stderr
    done = run_cli(["purge", "--json"], env)
    assert done.returncode == 0, done.stderr
    counted, purged = json.loads(dry.stdout), json.loads(done.stdout)
    assert counted["dry_run"] and not purged["dry_run"]
    assert {k: counted[k] for k in ("threads", "steps", "answer_feedback")} == \
           {k: purged[k] for k in ("threads", "steps", "answer_feedback")} == {"threads": 1, "steps": 2,
                                                                               "answer_feedback": 1}
    with sqlite3.connect(folder / "chat.db") as db:
        assert {r[0] for r in db.execute("SELECT id FROM threads")} == {made["new"], made["bob"]}
    entries = _audit(folder)
    assert [(e["action"], e["dry_run"], e["counts"]["threads"]) for e in entries] == [("purge", True, 1),
                                                                                      ("purge", False, 1)]
    assert entries[0]["by"].startswith("cli")


def test_a_negative_retention_is_refused_in_french(history_dir):
    folder, env, _ = history_dir
    done = run_cli(["purge"], {**env, "COLLECTIVIA_CHAT__RETENTION_DAYS": "-5", "COLUMNS": "200"})
    assert done.returncode == 2 and "RETENTION_DAYS invalide : « -5 »" in done.stdout + done.stderr
    kept = run_cli(["purge", "--json"], {**env, "COLLECTIVIA_CHAT__RETENTION_DAYS": "0"})
    assert kept.returncode == 0 and json.loads(kept.stdout)["skipped"] is True
    with sqlite3.connect(folder / "chat.db") as db:
        assert db.execute("SELECT COUNT(*) FROM threads").fetchone()[0] == 3  # kept forever: nothing purged


def test_users_export_and_forget_commands(history_dir):
    folder, env, made = history_dir
    out = folder / "alice.json"
    done = run_cli(["users", "export", "alice", "--out", str(out)], env)
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    export = json.loads(out.read_text(encoding="utf-8"))
    assert {c["id"] for c in export["conversations"]} == {made["old"], made["new"]}
    assert "Question de Bob" not in out.read_text(encoding="utf-8")

    refused = run_cli(["users", "forget", "alice"], env, stdin=subprocess.DEVNULL)
    assert refused.returncode == 2 and "--yes" in refused.stdout + refused.stderr
    done = run_cli(["users", "forget", "alice", "--yes", "--json"], env)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert (report["threads"], report["users"], report["account_kept"]) == (2, 1, True)
    assert "compte de connexion n'est pas supprimé" in " ".join(done.stderr.split())
    with sqlite3.connect(folder / "chat.db") as db:
        assert {r[0] for r in db.execute("SELECT id FROM threads")} == {made["bob"]}
        assert [r[0] for r in db.execute("SELECT identifier FROM users")] == ["bob"]
    entries = _audit(folder)
    assert [(e["action"], e["subject"]) for e in entries] == [("export", "alice"), ("forget", "alice")]
    assert entries[1]["counts"]["threads"] == 2


# -- in the chat: an agent deletes all their conversations ----------------------------------------------------------

from chat_fixtures import browser, chat_corpus, chat_server, context, shots  # noqa: E402,F401 (fixtures)


def _history_links(page, base_url: str, *, some: bool = True) -> int:
    """How many conversations the history list shows, once it has loaded (it loads after the page): waited for when
    some are expected, given a few seconds when none are."""
    page.goto(base_url + "/")
    page.wait_for_selector("#chat-input:not([disabled])")
    if some:
        page.wait_for_selector("a[href^='/thread/']")
    else:
        page.wait_for_timeout(3_000)
    return page.locator("a[href^='/thread/']").count()


@pytest.mark.slow
def test_an_agent_deletes_all_their_conversations_from_the_chat(chat_server, browser, context, shots):
    from chat_helpers import ask, login

    pages = {}
    other = browser.new_context(viewport={"width": 1280, "height": 900}, locale="fr-FR")
    for ctx in (context, other):  # a busy CI machine: reloads and answers may take longer than the usual 30 s
        ctx.set_default_timeout(60_000)
    for agent, question, ctx in (("agent.rh", "Combien de jours avant le départ déposer un congé ?", context),
                                 ("agent.urba", "En combien de temps est instruit le permis de construire ?", other)):
        page = ctx.new_page()
        login(page, chat_server.url, agent)
        ask(page, question)
        page.wait_for_selector("a[href^='/thread/']")
        pages[agent] = page
    page = pages["agent.rh"]
    assert _history_links(page, chat_server.url) >= 1
    # Asked, then cancelled: nothing goes.
    page.get_by_role("button", name="Supprimer toutes mes conversations").last.click()
    page.get_by_role("button", name="Annuler").last.click()
    page.wait_for_selector("text=Suppression annulée")
    assert _history_links(page, chat_server.url) >= 1
    # Asked, then confirmed.
    page.get_by_role("button", name="Supprimer toutes mes conversations").last.click()
    page.wait_for_selector("text=Supprimer toutes vos conversations ?")
    page.screenshot(path=str(shots / "delete-confirm.png"))
    page.get_by_role("button", name="Oui, tout supprimer").last.click()
    page.wait_for_selector("text=conversation(s) supprimée(s)")
    page.screenshot(path=str(shots / "deleted.png"))

    fresh = page.context.new_page()
    assert _history_links(fresh, chat_server.url, some=False) == 0  # the agent's history list is empty
    assert _history_links(pages["agent.urba"], chat_server.url) >= 1  # another agent's is not
    # The agent goes on in the same page: the next question starts a new conversation of theirs.
    ask(page, "Qui valide la demande de congé ?")
    assert _history_links(fresh, chat_server.url) == 1
    assert "Qui valide" in fresh.locator("a[href^='/thread/']").first.inner_text()
    with sqlite3.connect(chat_server.data / "chat.db") as db:
        owners = {r[0] for r in db.execute('SELECT "userIdentifier" FROM threads WHERE "userIdentifier" IS NOT NULL')}
    assert owners == {"agent.rh", "agent.urba"}  # agent.rh: the new conversation only (checked above)
    entries = _audit(chat_server.data)
    deleted = [e for e in entries if e["action"] == "delete_own"]
    assert [(e["by"], e["outcome"]) for e in deleted] == [("agent.rh", "cancelled"), ("agent.rh", "ok")]
    assert deleted[1]["counts"]["threads"] >= 1
    assert any(e["action"] == "purge" and e["by"] == "serve" for e in entries)  # purged at start-up
    other.close()
