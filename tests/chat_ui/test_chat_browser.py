"""The chat end to end: a real `collectivia serve` (extractive answers, bundled embedder) and headless Chromium."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import pytest
from playwright.sync_api import expect

from chat_fixtures import browser, chat_corpus, chat_server, context, shots  # noqa: F401 (fixtures)
from chat_helpers import FICHE_URL, ask, click_action, fetch, login, press, record_socket, session_cookie, streamed

pytestmark = pytest.mark.slow


def test_login_page_is_french_and_loads_nothing_from_outside(chat_server, context, shots):
    page = context.new_page()
    outside: list[str] = []
    page.on("request", lambda r: outside.append(r.url) if not r.url.startswith((chat_server.url, "data:", "blob:"))
            else None)
    page.goto(chat_server.url + "/")
    page.wait_for_selector("#email")
    page.wait_for_timeout(500)
    assert page.get_attribute("html", "lang") == "fr"
    body = page.inner_text("body")
    assert "Connectez-vous à Collectivia" in body and "Identifiant" in body and "Mot de passe" in body
    page.screenshot(path=str(shots / "login.png"))
    login(page, chat_server.url, "agent.rh")
    text = page.inner_text("body")
    for expected in ("Ce que je sais faire", "Ce que je ne fais pas", "Charte locale de l'IA",
                     "N'écrivez aucune donnée personnelle", "Vous restez responsable", "Ressources humaines (rh)"):
        assert expected in text
    assert not outside, f"requêtes vers l'extérieur : {outside}"
    status, _, html = fetch(chat_server.url + "/")
    assert status == 200
    assert not re.findall(rb"(?:href|src|content)=\"https?://", html), "adresse externe dans la page"


def test_logged_out_everything_is_refused(chat_server, chat_corpus):
    refused = [
        ("GET", "/user"), ("GET", "/project/settings"), ("POST", "/project/threads"), ("GET", "/project/thread/x"),
        ("GET", "/documents/PROC-CONGES"), ("GET", "/documents/CHARTE-IA"), ("GET", "/documents/SP-F1234"),
        ("GET", "/project/file/x?session_id=y"), ("POST", "/project/file?session_id=y"), ("PUT", "/feedback"),
        ("POST", "/project/action"), ("GET", "/ws/socket.io/?EIO=4&transport=polling"), ("GET", "/thread/x"),
    ]
    for method, path in refused:
        status, _, body = fetch(chat_server.url + path, method=method, data=b"{}" if method != "GET" else None,
                                headers={"content-type": "application/json"})
        assert status == 401, (method, path, status, body[:200])
    # A browser opening a protected page is sent to the login page.
    status, headers, _ = fetch(chat_server.url + "/documents/PROC-CONGES", headers={"accept": "text/html"})
    assert status == 303 and headers["location"].startswith("/login")
    # The project's files are nowhere to be served: the index, the history, the uploads, the secret.
    for path in ("/data/chat.db", "/.files/", "/chat.db", "/auth_secret", "/uploads/", "/.chainlit/config.toml",
                 "/public/../auth_secret", "/public/../../chat.db"):
        status, _, body = fetch(chat_server.url + path)
        assert status in (401, 404), (path, status)
        assert b"SQLite" not in body
    # What the login page needs stays public.
    for path in ("/", "/login", "/auth/config", "/project/translations?language=fr-FR", "/health", "/favicon",
                 "/public/collectivia.css"):
        assert fetch(chat_server.url + path)[0] == 200, path


def test_agent_question_streams_an_answer_with_sources_that_open(chat_server, context, shots):
    page = context.new_page()
    frames = record_socket(page)
    outside: list[str] = []
    context.on("request", lambda r: outside.append(r.url)
               if not r.url.startswith((chat_server.url, "data:", "blob:")) else None)
    login(page, chat_server.url, "agent.rh")
    ask(page, "Combien de jours avant le départ faut-il déposer une demande de congé annuel ?")
    assert streamed(frames), "la réponse n'a pas été diffusée au fil de l'eau"
    card = page.locator("[data-testid=source-card][data-doc-id=PROC-CONGES]").first
    card.wait_for()
    text = card.inner_text()
    assert "Congés annuels des agents" in text and "Procédure" in text and "Ressources humaines" in text
    body = page.inner_text("body")
    assert "quinze jours" in body and "[1]" in body
    page.screenshot(path=str(shots / "answer.png"), full_page=False)
    link = card.locator("[data-testid=open-source]")
    assert link.get_attribute("href").startswith("/documents/PROC-CONGES")
    with context.expect_page() as opened:
        link.click()
    original = opened.value
    original.wait_for_load_state()
    assert "quinze jours avant le départ" in original.inner_text("body")
    original.close()
    assert not outside, f"requêtes vers l'extérieur : {outside}"


def test_pdf_source_opens_at_its_page_and_fiche_redirects(chat_server, context):
    page = context.new_page()
    login(page, chat_server.url, "agent.urba")
    ask(page, "En combien de temps est instruit le permis de construire d'une maison individuelle ?")
    card = page.locator("[data-testid=source-card][data-doc-id=PROC-PERMIS]").first
    card.wait_for()
    href = card.locator("[data-testid=open-source]").get_attribute("href")
    assert re.fullmatch(r"/documents/PROC-PERMIS#page=[23]", href), href
    assert "page" in card.inner_text()
    cookie = session_cookie(context)
    status, headers, body = fetch(chat_server.url + "/documents/PROC-PERMIS", cookie=cookie)
    assert status == 200 and headers["content-type"] == "application/pdf" and body.startswith(b"%PDF")
    status, headers, _ = fetch(chat_server.url + "/documents/SP-F1234", cookie=cookie)
    assert status == 302 and headers["location"] == FICHE_URL


def test_another_services_document_is_404_like_a_missing_one(chat_server, context):
    page = context.new_page()
    login(page, chat_server.url, "agent.rh")
    cookie = session_cookie(context)
    forbidden = fetch(chat_server.url + "/documents/PROC-PERMIS", cookie=cookie)
    missing = fetch(chat_server.url + "/documents/NO-SUCH-DOC", cookie=cookie)
    assert forbidden[0] == missing[0] == 404
    assert forbidden[2] == missing[2]
    assert fetch(chat_server.url + "/documents/PROC-CONGES", cookie=cookie)[0] == 200
    assert fetch(chat_server.url + "/documents/CHARTE-IA", cookie=cookie)[0] == 200
    # In the browser too: the page says « introuvable », nothing else.
    other = context.new_page()
    response = other.goto(chat_server.url + "/documents/PROC-PERMIS")
    assert response.status == 404 and "introuvable" in other.inner_text("body")


def test_feedback_with_tags_and_comment_is_stored(chat_server, context):
    page = context.new_page()
    login(page, chat_server.url, "agent.rh")
    ask(page, "Sous quel délai le chef de service valide-t-il une demande de congé ?")
    card = page.locator("[data-testid=feedback]").last
    press(card.get_by_role("button", name="Pas utile"))
    press(card.get_by_role("button", name="source obsolète"))
    press(card.get_by_role("button", name="incomplet"))
    card.get_by_label("Commentaire").fill("Le délai a changé en 2025.")
    card.get_by_role("button", name="Envoyer l'avis").click()
    sent = page.locator("[data-testid=feedback-sent]").last
    sent.wait_for()
    assert "source obsolète" in sent.inner_text()
    with sqlite3.connect(chat_server.data / "chat.db") as db:
        rows = db.execute('SELECT "userIdentifier", value, tags, comment, question FROM collectivia_feedback '
                          'WHERE comment = ?', ("Le délai a changé en 2025.",)).fetchall()
        native = db.execute("SELECT value FROM feedbacks WHERE comment LIKE '%Le délai a changé%'").fetchall()
    assert len(rows) == 1
    who, value, tags, _, question = rows[0]
    assert (who, value, json.loads(tags)) == ("agent.rh", 0, ["source obsolète", "incomplet"])
    assert "chef de service" in question and native == [(0,)]


def test_conversation_is_resumed_with_its_sources_and_only_by_its_owner(chat_server, context, browser):
    page = context.new_page()
    login(page, chat_server.url, "agent.rh")
    question = "Quel outil sert à déposer une demande de congé ?"
    ask(page, question)
    page.wait_for_selector(f"a[href^='/thread/']:has-text('{question[:20]}')")
    thread_url = page.locator(f"a[href^='/thread/']:has-text('{question[:20]}')").first.get_attribute("href")
    # A fresh page of the same agent: the conversation is in the history, and resumes with its source cards.
    again = context.new_page()
    again.goto(chat_server.url + "/")
    again.locator(f"a[href='{thread_url}']").first.click()
    again.wait_for_selector(f"text={question}")
    again.wait_for_selector("[data-testid=source-card][data-doc-id=PROC-CONGES]")
    ask(again, "Et qui valide la demande ?")
    assert again.locator("[data-testid=source-card]").count() >= 2
    # Another agent sees neither the conversation in the history nor through its address.
    stranger_ctx = browser.new_context()
    stranger = stranger_ctx.new_page()
    login(stranger, chat_server.url, "agent.urba")
    assert stranger.locator(f"a[href='{thread_url}']").count() == 0
    cookie = session_cookie(stranger_ctx)
    status, _, _ = fetch(chat_server.url + "/project" + thread_url, cookie=cookie)
    assert status in (401, 403, 404)
    status, _, body = fetch(chat_server.url + "/project/threads", method="POST", cookie=cookie,
                            headers={"content-type": "application/json"},
                            data=json.dumps({"pagination": {"first": 50}, "filter": {}}).encode())
    assert status == 200 and thread_url.rsplit("/", 1)[1].encode() not in body
    stranger_ctx.close()


def test_agent_has_no_upload_control_and_the_server_refuses_uploads(chat_server, context):
    page = context.new_page()
    login(page, chat_server.url, "agent.rh")
    assert page.get_by_role("button", name="Ajouter un document").count() == 0
    assert page.locator("input[type=file]").count() == 0
    cookie = session_cookie(context)
    boundary = "----collectivia"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.md\"\r\n"
            f"Content-Type: text/markdown\r\n\r\n# Titre\r\n--{boundary}--\r\n").encode()
    status, _, answer = fetch(chat_server.url + "/project/file?session_id=whatever", method="POST", cookie=cookie,
                              data=body, headers={"content-type": f"multipart/form-data; boundary={boundary}"})
    assert status == 403 and "gestionnaires" in answer.decode()
    audited = [json.loads(line) for line in (chat_server.data / "audit" / "documents.jsonl").read_text().splitlines()]
    assert ("upload", "refused", "agent.rh") in [(e["action"], e["outcome"], e["user"]) for e in audited]


def _upload(page, path: Path, *, title: str | None = None, services=("rh",)) -> None:
    click_action(page, page.get_by_role("button", name="Ajouter un document").last)
    page.get_by_role("button", name="Parcourir les fichiers").last.wait_for()
    page.wait_for_timeout(300)  # the drop zone binds its handlers once rendered
    page.locator("input[type=file]").last.set_input_files(str(path))
    if title is None:
        return
    form = page.locator("[data-testid=document-form]").last
    form.wait_for()
    form.locator("input[name=title]").fill(title)
    form.locator("select[name=doc_type]").select_option("procedure")
    for service in services:
        form.locator(f"input[name=services][value='{service}']").check()
    form.get_by_role("button", name="Indexer le document").click()


def test_manager_uploads_a_document_that_answers_right_after(chat_server, context, shots, tmp_path):
    page = context.new_page()
    login(page, chat_server.url, "gest.rh")
    note = tmp_path / "Note badge parking.md"
    note.write_text("# Badge de parking\n\n## Article 1 – Dépôt de garantie\n\nLe badge d'accès au parking de "
                    "l'hôtel de ville est remis contre un dépôt de garantie de quarante-deux euros.\n", encoding="utf-8")
    _upload(page, note, title="Badge d'accès au parking", services=("rh",))
    page.wait_for_selector("text=Lecture du document")
    page.screenshot(path=str(shots / "upload.png"))
    page.wait_for_selector("text=est consultable dès maintenant", timeout=180_000)
    ask(page, "Quel est le montant du dépôt de garantie du badge de parking ?")
    card = page.locator("[data-testid=source-card]", has_text="Badge d'accès au parking").last
    card.wait_for()
    assert "quarante-deux euros" in page.inner_text("body")
    audit = [json.loads(line) for line in (chat_server.data / "audit" / "documents.jsonl").read_text().splitlines()]
    entry = [e for e in audit if e["action"] == "upload" and e["outcome"] == "ok"][-1]
    assert (entry["user"], entry["services"], entry["title"]) == ("gest.rh", ["rh"], "Badge d'accès au parking")
    assert entry["doc_id"].startswith("RH-badge-d-acces-au-parking-") and entry["sha256"] and entry["ts"]
    # The original opens through the authorised route; an agent of another service gets a 404.
    cookie = session_cookie(context)
    assert fetch(chat_server.url + "/documents/" + entry["doc_id"], cookie=cookie)[0] == 200


@pytest.mark.parametrize("name, content, expected", [
    ("archive.zip", b"PK\x03\x04 pas un document", "Format non pris en charge"),
    ("gros.txt", b"a" * 400_000, "trop volumineux"),
    ("bombe.docx", None, "bombe de décompression"),
    ("faux.pdf", b"%PDF-1.4\n pas vraiment un pdf \n%%EOF", "corrompu"),
])
def test_bad_uploads_get_a_french_message_and_change_nothing(chat_server, context, tmp_path, name, content, expected):
    from fixtures import make_zip_bomb

    page = context.new_page()
    login(page, chat_server.url, "gest.rh")
    documents_before = _indexed_documents(chat_server)
    path = tmp_path / name
    if content is None:
        make_zip_bomb(path, size_mb=60)
    else:
        path.write_bytes(content)
    _upload(page, path)
    form = page.locator("[data-testid=document-form]")
    refusal = page.get_by_text(re.compile(r"refusé —"))
    form.or_(refusal).last.wait_for(timeout=60_000)
    if form.count():  # refused only once parsed: the form comes first
        form.last.locator("input[name=services][value='rh']").check()
        form.last.get_by_role("button", name="Indexer le document").click()
    refusal.last.wait_for(timeout=120_000)
    text = refusal.last.inner_text()
    assert expected.lower() in text.lower(), text
    assert str(tmp_path) not in page.inner_text("body") and "_staging" not in page.inner_text("body")
    assert "Rien n'a été modifié" in page.inner_text("body")
    assert _indexed_documents(chat_server) == documents_before


def _indexed_documents(chat_server) -> set[str]:
    """Document ids, as the audit log and the uploads folder tell (the index itself is held by the server)."""
    uploads = chat_server.data / "uploads"
    return {p.name for p in uploads.iterdir() if not p.name.startswith("_")} if uploads.exists() else set()


# Waits on work done by the server (listing the index, reading a document's record, removing it, answering): on a
# machine shared with other jobs these take far longer than the browser's default 30 s without anything being
# wrong; a hung dialog still fails, after these.
SERVER_WORK_MS = 120_000
ANSWER_MS = 180_000


def test_manager_lists_replaces_and_withdraws_documents_of_their_services(chat_server, context, tmp_path, shots):
    page = context.new_page()
    login(page, chat_server.url, "gest.rh")
    first = tmp_path / "horaires.md"
    first.write_text("# Horaires de la médiathèque\n\nLa médiathèque ouvre le samedi de neuf heures à midi.\n",
                     encoding="utf-8")
    manage = page.get_by_role("button", name="Gérer mes documents")
    manage.first.wait_for(timeout=SERVER_WORK_MS)  # the welcome's, sent just after its text
    buttons_before = manage.count()
    _upload(page, first, title="Horaires de la médiathèque", services=("rh",))
    page.wait_for_selector("text=est consultable dès maintenant", timeout=180_000)
    # The confirmation's own buttons arrive just after its text and shift the page: click once they are there and
    # the dialog is over (the message box is enabled again).
    expect(manage).to_have_count(buttons_before + 1, timeout=SERVER_WORK_MS)
    page.wait_for_selector("#chat-input:not([disabled])", timeout=SERVER_WORK_MS)
    click_action(page, manage.last, timeout=SERVER_WORK_MS)
    documents = page.locator("[data-testid=documents]").last
    documents.wait_for(timeout=SERVER_WORK_MS)
    row = documents.locator(".cv-docrow", has_text="Horaires de la médiathèque")
    row.wait_for(timeout=SERVER_WORK_MS)
    assert documents.locator(".cv-docrow", has_text="Instruction du permis de construire").count() == 0
    assert documents.locator(".cv-docrow", has_text="Charte de l'IA").count() == 0
    assert documents.locator(".cv-docrow", has_text="Congés annuels des agents").count() == 1
    page.screenshot(path=str(shots / "documents.png"))
    doc_id = row.get_attribute("data-doc-id")
    # Replace with a new version: the answer changes.
    second = tmp_path / "horaires-2026.md"
    second.write_text("# Horaires de la médiathèque\n\nLa médiathèque ouvre le samedi de quatorze heures à dix-huit "
                      "heures.\n", encoding="utf-8")
    click_action(page, row.get_by_role("button", name="Remplacer"), timeout=SERVER_WORK_MS)
    page.wait_for_selector("text=Déposez la nouvelle version", timeout=SERVER_WORK_MS)
    page.get_by_role("button", name="Parcourir les fichiers").last.wait_for(timeout=SERVER_WORK_MS)
    page.wait_for_timeout(300)
    page.locator("input[type=file]").last.set_input_files(str(second))
    page.wait_for_selector("text=est consultable dès maintenant >> nth=1", timeout=180_000)
    ask(page, "À quelle heure ouvre la médiathèque le samedi ?", timeout=ANSWER_MS)
    assert "quatorze heures" in page.inner_text("body")
    cards = page.locator("[data-testid=source-card]", has_text="Horaires de la médiathèque")
    shown = cards.count()
    assert shown >= 1
    # Withdraw it: it leaves the answers.
    row = page.locator("[data-testid=documents]").last.locator(".cv-docrow", has_text="Horaires de la médiathèque")
    row.get_by_role("button", name="Retirer").click()
    click_action(page, row.get_by_role("button", name="Oui, retirer"), timeout=SERVER_WORK_MS)
    page.wait_for_selector("text=a été retiré", timeout=SERVER_WORK_MS)
    ask(page, "À quelle heure ouvre la médiathèque le samedi ?", timeout=ANSWER_MS)
    assert cards.count() == shown  # no new card for it
    actions = [(e["action"], e["outcome"]) for e in map(json.loads, (chat_server.data / "audit" / "documents.jsonl")
                                                         .read_text().splitlines()) if e["doc_id"] == doc_id]
    assert actions == [("upload", "ok"), ("replace", "ok"), ("withdraw", "ok")]
    cookie = session_cookie(context)
    assert fetch(chat_server.url + "/documents/" + doc_id, cookie=cookie)[0] == 404
