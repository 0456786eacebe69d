"""The command line while the chat runs: `collectivia serve` holds the embedded index and lends it, so `ingest`,
`search`, `ask`, `users` and `eval run` work beside it and give what they give without it; the chat cites at once
a document the command line has just indexed. One real `collectivia serve` for the whole module."""

from __future__ import annotations

import json
import time

import pytest

from chat_fixtures import browser, context  # noqa: F401 (fixtures)
from chat_helpers import NAMES, PASSWORDS, ROOT, ChatServer, ask, base_env, login, run_cli
from fixtures import make_md, write_meta

pytestmark = pytest.mark.slow

LENT = "Index ouvert par le chat en cours (PID {pid}) : les opérations passent par lui."
QUESTION = "Combien de jours avant le départ faut-il déposer une demande de congé annuel ?"
TINY_QUESTIONS = [
    {"id": "Q1", "question": "Combien de jours avant le départ déposer une demande de congé ?", "user": "rh.agent",
     "gold_docs": ["PROC-CONGES"], "gold_passage": "au moins quinze jours avant le départ", "short_answer": "15 jours",
     "expected": "answer", "type": "lexical"},
    {"id": "Q2", "question": "Quelle est la recette de la tarte tatin ?", "user": "nobody", "gold_docs": [],
     "gold_passage": None, "short_answer": None, "expected": "refuse_not_found", "type": "out_of_corpus"},
]


@pytest.fixture(scope="module")
def lent(tmp_path_factory):
    """A chat started on an empty data directory, lending its index; the documents are not indexed yet."""
    from chat_ui.accounts import add_user

    tmp = tmp_path_factory.mktemp("owner")
    docs = tmp / "docs"
    docs.mkdir()
    write_meta(make_md(docs / "conges.md", title="Congés annuels des agents"), id="PROC-CONGES",
               title="Congés annuels des agents", services=["rh"], doc_type="procedure")
    write_meta(make_md(docs / "charte.md", title="Charte de l'IA", sections=[
        ("Article 1 – Responsabilité", "L'agent reste responsable des contenus produits avec une IA générative."),
    ]), id="CHARTE-IA", title="Charte de l'IA", services=["tous"], doc_type="charte")
    users = tmp / "users.yaml"
    add_user(users, "agent.rh", name=NAMES["agent.rh"], services=["rh"], roles=["agent"],
             password=PASSWORDS["agent.rh"])
    data = tmp / "data"
    server = ChatServer({"data": data, "env": base_env(data, users), "tmp": tmp}).start()
    socket = data / "qdrant" / "owner.sock"
    deadline = time.monotonic() + 120
    while not socket.exists():  # the index opens in the background, after the login page is served
        assert server.process.poll() is None and time.monotonic() < deadline, server.log.read_text()
        time.sleep(0.3)
    state = {"server": server, "env": server.env, "docs": docs, "tmp": tmp, "socket": socket}
    yield state
    server.stop()


def _json(result):
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


def test_commands_go_through_the_running_chat(lent):
    env, pid = lent["env"], lent["server"].process.pid
    ingested = run_cli(["ingest", str(lent["docs"]), "--json"], env)
    report = _json(ingested)
    assert (report["indexed"], report["failed"]) == (2, [])
    assert LENT.format(pid=pid) in ingested.stderr
    search = run_cli(["search", "congé annuel dépôt", "--user", "agent.rh", "--json"], env)
    lent["search"] = _json(search)
    assert lent["search"][0]["doc_id"] == "PROC-CONGES"
    assert LENT.format(pid=pid) in search.stderr
    lent["ask"] = _json(run_cli(["ask", QUESTION, "--user", "agent.rh", "--json"], env))
    assert lent["ask"]["outcome"] == "answer" and lent["ask"]["citations"][0]["doc_id"] == "PROC-CONGES"
    # The users file needs no index.
    assert [u["id"] for u in _json(run_cli(["users", "list", "--json"], env))] == ["agent.rh"]
    # An evaluation builds its own index under <data_dir>/evals, beside the chat's.
    questions = lent["tmp"] / "tiny.jsonl"
    questions.write_text("\n".join(json.dumps(q, ensure_ascii=False) for q in TINY_QUESTIONS) + "\n", encoding="utf-8")
    summary = _json(run_cli(["eval", "run", "--dataset", str(questions), "--corpus", str(lent["docs"]), "--users",
                             str(ROOT / "tests" / "data" / "users.yaml"), "--out", str(lent["tmp"] / "run"),
                             "--json"], env))
    assert (summary["questions"], summary["access"]["leaks"]) == (2, 0)
    assert lent["server"].process.poll() is None


def test_the_chat_cites_at_once_documents_indexed_by_the_command_line(lent, context):
    assert "search" in lent, "le test précédent n'a pas tourné"  # it indexed the documents, the chat running
    page = context.new_page()
    login(page, lent["server"].url, "agent.rh")
    ask(page, QUESTION)
    card = page.locator("[data-testid=source-card][data-doc-id=PROC-CONGES]").first
    card.wait_for()
    assert "Congés annuels des agents" in card.inner_text()
    assert "quinze jours" in page.inner_text("body")


def test_once_the_chat_stops_the_commands_give_the_same_results(lent):
    assert "search" in lent, "le test précédent n'a pas tourné"
    lent["server"].stop()
    assert not lent["socket"].exists()
    env = lent["env"]
    search = run_cli(["search", "congé annuel dépôt", "--user", "agent.rh", "--json"], env)
    assert _json(search) == lent["search"] and "Index ouvert par le chat" not in search.stderr
    alone = _json(run_cli(["ask", QUESTION, "--user", "agent.rh", "--json"], env))
    assert {k: v for k, v in alone.items() if k != "timings_ms"} == \
        {k: v for k, v in lent["ask"].items() if k != "timings_ms"}
    # What went through the chat was written into the index for good.
    assert _json(run_cli(["ingest", str(lent["docs"]), "--json"], env))["unchanged"] == 2
