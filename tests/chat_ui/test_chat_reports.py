"""The managers' reports on a generated history: what a manager sees (their services only), what nobody sees (groups
under the threshold, agents' names, personal data), the question log written by the data layer, and the CLI."""

from __future__ import annotations

import chat_helpers  # noqa: F401  (keeps Chainlit's run-time folder out of the repository)

import csv
import datetime as dt
import json
import re
import sqlite3
import uuid

import pytest

from chat_fixtures import browser, chat_corpus, context, shots  # noqa: F401 (fixtures)
from chat_helpers import base_env, fetch, login, run_cli, session_cookie
from chat_ui.datalayer import database_url, ensure_schema, make_data_layer, request_identifier
from chat_ui.reports.access import ReportAccessError, View, report_view
from chat_ui.reports.build import make_report, parse_since
from chat_ui.reports.history import INSERT_QUESTION, question_row
from chat_ui.reports.topics import topic_key
from index.store import DocRecord
from rag.access import User
from test_chat_datalayer import _thread, layer, postgres_url, run  # noqa: F401 (fixtures)

NOW = dt.datetime.now(dt.timezone.utc)
IBAN = "FR76 3000 6000 0112 3456 7890 189"
RH_MANAGER = User("gest.rh", "Gaston", frozenset({"rh", "finances"}), frozenset({"agent", "document_manager"}))
ADMIN = User("admin", "Adèle", frozenset({"dsi"}), frozenset({"admin"}))
AGENT = User("agent.rh", "Agnès", frozenset({"rh"}), frozenset({"agent"}))


class Settings:  # the ReportSettings values the reports read
    min_group, old_document_days, uncited_days = 3, 1095, 90


def write(url: str, rows: list[dict]) -> None:
    run(ensure_schema(url))
    with sqlite3.connect(url.split(":///", 1)[1]) as conn:
        conn.executemany(INSERT_QUESTION, rows)


def asked(question: str, services=("rh",), outcome="not_found", days_ago: float = 1, refused=False, doc_ids=(),
          repealed=()) -> dict:
    return question_row(answer_id=str(uuid.uuid4()), thread_id=str(uuid.uuid4()), services=services, outcome=outcome,
                        refused=refused, question=question, doc_ids=doc_ids, repealed_doc_ids=repealed,
                        at=NOW - dt.timedelta(days=days_ago))


def report(kind, view, url, records=None, since="30d"):
    return run(make_report(kind, view, url, records or {}, Settings, parse_since(since)))


@pytest.fixture
def history(tmp_path):
    """Agents of rh and urbanisme asking, some questions unanswered, typed the way agents type."""
    url = database_url(None, tmp_path)
    rows = [asked(q, days_ago=d) for q, d in (
        ("cb de jrs de congés je peux reporter ?", 1), ("report des congés : combien de jours ?", 2),
        ("Peut-on reporter ses congés sur l'an prochain ?", 9), ("report congés", 15))]
    rows += [asked(q, services=("urbanisme",), outcome="uncertain") for q in (
        "délai instruction véranda", "véranda délai d'instruction ?", "instruction d'une véranda : quel délai",
        "délai véranda instruction")]
    rows += [asked("Combien de jours de congé annuel ?", outcome="answer", doc_ids=["PROC-CONGES"])] * 1
    rows += [asked(q) for q in ("badge cantine perdu", "badge de cantine perdu !")]  # a group of 2: hidden
    rows += [asked("report des congés il y a longtemps", days_ago=60)]  # outside the 30 days
    write(url, rows)
    return url


def test_a_manager_of_rh_sees_rhs_gaps_grouped_and_never_urbanismes(history):
    gaps = report("gaps", report_view(RH_MANAGER), history)
    assert [t.count for t in gaps.topics] == [4]
    topic = gaps.topics[0]
    assert "congés" in topic.question and topic.not_found == 4 and sum(n for _, n in topic.weeks) == 4
    assert gaps.questions == 7 and gaps.gaps == 6  # rh only: 4 + 1 answered + 2 hidden
    assert "véranda" not in json.dumps(gaps.to_json(), ensure_ascii=False)
    everything = report("gaps", report_view(ADMIN), history)
    assert sorted(t.count for t in everything.topics) == [4, 4]
    assert any("véranda" in t.question and t.uncertain == 4 for t in everything.topics)
    assert report("gaps", report_view(ADMIN, ["urbanisme"]), history).questions == 4


def test_a_group_under_the_threshold_is_hidden_and_one_at_it_shown(history):
    gaps = report("gaps", report_view(RH_MANAGER), history)
    assert "badge" not in json.dumps(gaps.to_json(), ensure_ascii=False)
    assert (gaps.hidden_topics, gaps.hidden_questions) == (1, 2)
    write(history, [asked("badge cantine perdu")])
    shown = report("gaps", report_view(RH_MANAGER), history)
    assert [t.count for t in shown.topics] == [4, 3] and "badge" in shown.topics[1].question


def test_an_agent_gets_no_report_and_a_manager_nothing_outside_their_services():
    with pytest.raises(ReportAccessError, match="réservé aux gestionnaires.*agent.rh est agent"):
        report_view(AGENT)
    with pytest.raises(ReportAccessError, match="« urbanisme » hors de votre périmètre"):
        report_view(RH_MANAGER, ["urbanisme"])
    assert report_view(RH_MANAGER, ["rh"]) == View(frozenset({"rh"}))
    with pytest.raises(ReportAccessError):
        report_view(None)


def test_topics_survive_shorthand_accents_and_typos():
    assert topic_key("cb de jrs de congés je peux reporter ?") == topic_key("Report des conges : combien de jours")
    assert topic_key("ttv combien de jours") == topic_key("télétravail : combien de jours ?")
    assert topic_key("poser une demi journée de RTT") == topic_key("RTT en demi-journée ?")
    from chat_ui.reports.topics import merge_keys

    merged = merge_keys({topic_key("télétravail jours par semaine"): 5, topic_key("teletravial jours semaine"): 1})
    assert len(set(merged.values())) == 1


def test_not_useful_answers_per_tag_with_masked_comments_in_large_groups_only(tmp_path):
    url = database_url(None, tmp_path)
    rh = [asked("report des congés", doc_ids=["PROC-CONGES"]) for _ in range(4)]
    urba = asked("véranda", services=("urbanisme",), doc_ids=["PROC-PERMIS"])
    write(url, rh + [urba])
    with sqlite3.connect(tmp_path / "chat.db") as conn:
        for n, (row, tags, comment) in enumerate([
            (rh[0], ["source obsolète"], f"Mon RIB {IBAN} n'y est pas"), (rh[1], ["source obsolète"], "Vieux."),
            (rh[2], ["source obsolète", "incomplet"], ""), (rh[3], ["incomplet"], "Écrivez à jean.dupont@mairie.fr"),
            (urba, ["source obsolète"], "Urbanisme : pas à jour"),
        ]):
            conn.execute('INSERT INTO collectivia_feedback ("id", "stepId", "threadId", "userIdentifier", "value", '
                         '"tags", "comment", "question", "docIds", "createdAt") VALUES (?, ?, ?, ?, 0, ?, ?, ?, ?, ?)',
                         (str(n), row["id"], row["threadId"], f"agent{n}", json.dumps(tags), comment, "q",
                          row["docIds"], row["createdAt"]))
    records = {"PROC-CONGES": DocRecord("PROC-CONGES", "v1", "", "Congés annuels", ("rh",), "procedure", "en_vigueur")}
    result = report("feedback", report_view(RH_MANAGER), url, records)
    shown = json.dumps(result.to_json(), ensure_ascii=False)
    assert [(t.tag, t.count) for t in result.tags] == [("source obsolète", 3)]  # « incomplet » (2) hidden
    assert IBAN not in shown and "[IBAN masqué]" in shown and "Vieux." in shown
    assert "jean.dupont" not in shown and "Urbanisme" not in shown and "agent0" not in shown
    assert [(d.doc_id, d.count) for d in result.documents] == [("PROC-CONGES", 4)]
    assert result.not_useful == 4 and result.hidden_groups == 1


def test_documents_most_cited_never_cited_old_and_repealed(tmp_path):
    url = database_url(None, tmp_path)
    rows = [asked("congés", outcome="answer", doc_ids=["PROC-CONGES", "NOTE-1998"]) for _ in range(3)]
    rows += [asked("ancienne délibération", outcome="answer", doc_ids=["DELIB-2010"], repealed=["DELIB-2010"])
             for _ in range(3)]
    rows += [asked("tarif", outcome="answer", doc_ids=["TARIF"]) for _ in range(2)]  # 2 citations: not shown
    write(url, rows)

    def rec(doc_id, services=("rh",), status="en_vigueur", date="2025-06-01"):
        return DocRecord(doc_id, "v1", "", f"Titre {doc_id}", services, "procedure", status, date)

    records = {r.doc_id: r for r in (rec("PROC-CONGES"), rec("NOTE-1998", date="1998-02-01"),
                                     rec("DELIB-2010", status="abroge"), rec("TARIF"), rec("OUBLIE"),
                                     rec("PERMIS", services=("urbanisme",)))}
    result = report("documents", report_view(RH_MANAGER), url, records)
    assert [(d.doc_id, d.count) for d in result.most_cited] == [("DELIB-2010", 3), ("NOTE-1998", 3),
                                                                ("PROC-CONGES", 3)]
    assert [d.doc_id for d in result.never_cited] == ["OUBLIE"]  # PERMIS is urbanisme's
    assert [d.doc_id for d in result.old_cited] == ["NOTE-1998"]
    assert [d.doc_id for d in result.repealed_reached] == ["DELIB-2010"]


def test_the_question_log_is_written_masked_without_any_user_id(layer):
    url = layer

    async def scenario():
        from chainlit.context import init_http_context

        init_http_context()
        dl = make_data_layer(url)
        await dl.execute_sql("DELETE FROM collectivia_questions", {})
        request_identifier.set("alice")
        thread, step = await _thread(dl, "alice")
        await dl.create_step({"id": str(uuid.uuid4()), "threadId": thread, "name": "alice", "type": "user_message",
                              "streaming": False, "output": f"Mon IBAN {IBAN}, cb de congés ?",
                              "createdAt": "2025-01-01T00:00:01Z"})
        await dl.log_question(answer_id=step, thread_id=thread, services=["rh"], outcome="not_found", refused=True,
                              question=f"Mon IBAN {IBAN}, cb de congés ?", doc_ids=[], repealed_doc_ids=[])
        await dl.save_answer_feedback(step_id=step, user_identifier="alice", value=0, tags=[],
                                      comment=f"Mon RIB : {IBAN}", question=f"Mon IBAN {IBAN}")
        opinion = (await dl.answer_feedback("alice"))[0]
        assert (opinion["comment"], opinion["question"]) == ("Mon RIB : [IBAN masqué]", "Mon IBAN [IBAN masqué]")
        request_identifier.set("bob")  # never into another agent's thread
        await dl.log_question(answer_id=str(uuid.uuid4()), thread_id=thread, services=["rh"], outcome="answer",
                              refused=False, question="volé", doc_ids=[])
        rows = await dl.execute_sql("SELECT * FROM collectivia_questions", {})
        steps = (await dl.get_thread(thread))["steps"]
        await dl.close()
        return rows, steps

    rows, steps = run(scenario())
    assert len(rows) == 1 and rows[0]["question"] == "Mon IBAN [IBAN masqué], cb de congés ?"
    assert json.loads(rows[0]["services"]) == ["rh"] and "alice" not in json.dumps(rows[0], default=str)
    assert not any(IBAN in (s.get("output") or "") for s in steps)
    assert any("[IBAN masqué]" in (s.get("output") or "") for s in steps)
    one = type("S", (), {"min_group": 1, "uncited_days": 90, "old_document_days": 1095})
    gaps = run(make_report("gaps", View(None), url, {}, one, parse_since("1d")))
    assert gaps.gaps == 1 and gaps.topics[0].refused == 1
    assert run(make_report("gaps", View(frozenset({"rh"})), url, {}, one, parse_since("1d"))).gaps == 1
    assert run(make_report("gaps", View(frozenset({"r_"})), url, {}, one, parse_since("1d"))).questions == 0
    documents = run(make_report("documents", View(frozenset({"rh"})), url, {}, one, parse_since("1d")))
    feedback = run(make_report("feedback", View(frozenset({"rh"})), url, {}, one, parse_since("1d")))
    elsewhere = run(make_report("feedback", View(frozenset({"urbanisme"})), url, {}, one, parse_since("1d")))
    assert documents.most_cited == () and documents.never_cited == ()  # the SQL of each report runs on this database
    assert (feedback.not_useful, elsewhere.opinions) == (1, 0)  # the opinion has its question's services


def test_cli_report_json_csv_and_a_french_refusal(history, tmp_path):
    users = tmp_path / "users.yaml"
    users.write_text("users:\n- {id: gest.rh, name: G, services: [rh], roles: [document_manager]}\n"
                     "- {id: agent.rh, name: A, services: [rh]}\n", encoding="utf-8")
    env = base_env(tmp_path, users)
    out = run_cli(["report", "gaps", "--user", "gest.rh", "--json", "--csv", str(tmp_path / "gaps.csv")], env)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["services"] == "rh" and [s["questions"] for s in data["sujets"]] == [4]
    with open(tmp_path / "gaps.csv", encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter=";"))
    assert [r["questions"] for r in rows] == ["4"] and "congés" in rows[0]["question_type"]
    table = run_cli(["report", "gaps", "--since", "12w"], env)
    assert table.returncode == 0 and "tous les services" in table.stdout and "véranda" in table.stdout
    refused = run_cli(["report", "gaps", "--user", "agent.rh"], env)
    assert refused.returncode == 2 and "agent.rh est agent" in refused.stderr


def test_the_period_is_read_in_french_terms_and_a_bad_one_quoted():
    from chat_ui.reports.build import ReportRequestError

    now = dt.datetime(2026, 3, 31, tzinfo=dt.timezone.utc)
    assert parse_since("30d", now) == now - dt.timedelta(days=30)
    assert parse_since("2 s", now) == now - dt.timedelta(days=14)
    assert parse_since("2026-01-15", now) == dt.datetime(2026, 1, 15, tzinfo=dt.timezone.utc)
    with pytest.raises(ReportRequestError, match="« hier »"):
        parse_since("hier", now)


def test_the_purge_takes_the_question_log_with_its_conversations(tmp_path):
    from chat_ui.retention import purge

    url = database_url(None, tmp_path)
    run(ensure_schema(url))

    async def scenario():
        from chainlit.context import init_http_context

        init_http_context()
        dl = make_data_layer(url)
        request_identifier.set("alice")
        thread, step = await _thread(dl, "alice")  # last activity 2025-01-01: to purge
        await dl.log_question(answer_id=step, thread_id=thread, services=["rh"], outcome="not_found", refused=False,
                              question="congés", doc_ids=[])
        await dl.close()

    run(scenario())
    write(url, [asked("ancienne question", days_ago=400), asked("récente", days_ago=1)])  # threads already gone
    report_ = run(purge(url, 365))
    with sqlite3.connect(tmp_path / "chat.db") as conn:
        left = [r[0] for r in conn.execute("SELECT question FROM collectivia_questions")]
    assert left == ["récente"] and report_.counts.report_rows == 2


# -- in the browser: the dashboard of a manager, none for an agent, the personal-data warning ------------------------

@pytest.fixture(scope="module")
def report_server(chat_corpus):
    """The chat of the browser tests, its history holding questions of rh and urbanisme agents."""
    from chat_helpers import ChatServer

    rows = [asked(q) for q in ("Comment poser un RTT en demi-journée ?", "RTT demi-journée possible ?",
                               "RTT en demi-journée ?")]
    rows += [asked(q, services=("urbanisme",)) for q in ("délai véranda", "véranda délai", "délai pour une véranda")]
    rows += [asked(q) for q in ("badge cantine perdu", "badge de cantine perdu !")]  # rh, a group of 2: hidden
    write(database_url(None, chat_corpus["data"]), rows)
    server = ChatServer(chat_corpus).start()
    yield server
    server.stop()


@pytest.mark.slow
def test_a_manager_of_rh_sees_rhs_gaps_in_the_dashboard_and_an_agent_has_none(report_server, context, browser, shots):
    page = context.new_page()
    login(page, report_server.url, "gest.rh")
    page.get_by_role("button", name="Tableau de bord").last.click()
    page.wait_for_selector("text=Questions sans réponse sûre")
    page.wait_for_selector("img[alt='lacunes-par-semaine.png']")
    body = page.inner_text("body")
    assert "RTT" in body and "véranda" not in body and "finances, rh" in body
    assert "badge" not in body  # a topic asked by fewer than COLLECTIVIA_REPORTS__MIN_GROUP questions is not shown
    assert "agent.rh" not in body and "Agnès" not in body
    page.set_viewport_size({"width": 1280, "height": 2000})
    page.get_by_text("Questions sans réponse sûre").first.scroll_into_view_if_needed()
    page.screenshot(path=str(shots / "dashboard.png"))
    # An agent has no button, and the action sent by hand is refused by the server, in French, and audited.
    agent_ctx = browser.new_context()
    agent = agent_ctx.new_page()
    sent: list[str] = []
    agent.on("websocket", lambda ws: ws.on("framesent", lambda f: sent.append(str(f))))
    agent.on("request", lambda r: sent.append(str(r.post_data or "") + " " + r.url) if "socket.io" in r.url else None)
    login(agent, report_server.url, "agent.rh")
    assert agent.get_by_role("button", name="Tableau de bord").count() == 0
    found = [m.group(1) for f in sent for m in [re.search(r'sessionId"?\s*[:=]\s*"?([0-9a-f-]{36})', f)] if m]
    assert found, sent[:5]
    session_id = found[0]
    status, _, _ = fetch(report_server.url + "/project/action", method="POST", cookie=session_cookie(agent_ctx),
                         headers={"content-type": "application/json"},
                         data=json.dumps({"sessionId": session_id, "action": {
                             "name": "Tableau de bord", "payload": {}, "id": str(uuid.uuid4())}}).encode())
    assert status == 200
    agent.wait_for_selector("text=Tableau de bord refusé")
    assert "réservé aux gestionnaires" in agent.inner_text("body") and "RTT" not in agent.inner_text("body")
    agent_ctx.close()
    audited = [json.loads(line) for line in (report_server.data / "audit" / "documents.jsonl").read_text().splitlines()]
    seen = [(e["action"], e["outcome"], e["user"]) for e in audited]
    assert ("report", "ok", "gest.rh") in seen and ("report", "refused", "agent.rh") in seen


@pytest.mark.slow
def test_personal_data_is_warned_before_sending_and_only_the_masked_question_is_kept(report_server, context):
    page = context.new_page()
    login(page, report_server.url, "agent.rh")
    page.fill("#chat-input", f"Mon IBAN est {IBAN} : quel délai pour déposer une demande de congé ?")
    page.keyboard.press("Enter")
    page.wait_for_selector("text=données personnelles")
    assert "charte d'usage de l'intelligence artificielle" in page.inner_text("body")
    assert page.locator("[data-testid=feedback]").count() == 0  # nothing answered yet
    page.get_by_role("button", name="Envoyer sans ces données").click()
    page.wait_for_selector("[data-testid=feedback]", timeout=90_000)
    with sqlite3.connect(report_server.data / "chat.db") as db:
        logged = [r[0] for r in db.execute("SELECT question FROM collectivia_questions WHERE question LIKE '%IBAN%'")]
        kept = " ".join(str(v) for row in db.execute('SELECT "input", "output", "metadata" FROM steps') for v in row)
        kept += " ".join(str(r[0]) for r in db.execute('SELECT "name" FROM threads'))
    assert logged == ["Mon IBAN est [IBAN masqué] : quel délai pour déposer une demande de congé ?"]
    assert IBAN not in kept and IBAN.replace(" ", "") not in kept and "[IBAN masqué]" in kept
