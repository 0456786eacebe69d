"""Hardening, unit by unit: Markdown from documents, security headers, body limits, sessions, throttling, PDFs,
and the small refusals (users file encoding, metadata, empty question)."""

from __future__ import annotations

import chat_helpers  # noqa: F401  (keeps Chainlit's run-time folder out of the repository)

import asyncio
import json
import re
from pathlib import Path

import pytest

from chat_ui.body_limits import BodyLimit, BodyLimits
from chat_ui.guard import LoginRequired
from chat_ui.safe_markdown import safe_markdown, safe_token
from chat_ui.security_headers import HeaderPolicy, SecurityHeaders, inline_script_hashes
from chat_ui.sessions import LoginThrottle, SessionPolicy, SessionRegistry, ThrottlePolicy, new_session_claims

EVIL = "http://127.0.0.1:18999"


# ---------------------------------------------------------------------------------------------------- Markdown


def test_images_never_load_and_outside_links_are_text():
    text = safe_markdown(f"Voir ![x]({EVIL}/a.png?q=secret) et la [page de validation]({EVIL}/phish) [1].")
    assert "](" not in text and "![" not in text and "(image non affichée)" in text
    assert f"page de validation (`{EVIL}/phish`)" in text and text.endswith("[1].")


def outside_code(text: str) -> str:
    """The Markdown text outside inline code: what the renderer (remark-gfm) reads once escapes are resolved, and
    where it turns addresses into links."""
    return re.sub(r"(?<![\\`])(`+)(?!`).*?(?<!`)\1(?!`)", " ", text).replace("\\", "")


@pytest.mark.parametrize("raw", [
    f"{EVIL}/nu", f"<{EVIL}/auto>", "www.exemple.fr", "a.martin@exemple.fr", f'<img src="{EVIL}/a.png">',
    f"[1]: {EVIL}/def\n\nVoir [1].", f"[![i]({EVIL}/i.png)]({EVIL}/l)", f"[x][r]\n\n[r]: {EVIL}/ref",
])
def test_no_markup_survives_that_could_fetch_or_link(raw):
    text = safe_markdown(raw)
    shown = outside_code(text)
    assert "p://" not in shown and "www." not in shown and "@" not in shown, text
    assert not re.search(r"(?<!\\)(?:<|\]\(|\]:|!\[)", text), text  # nothing unescaped opens a link or an image


def test_citations_bold_and_allowed_sites_are_kept():
    text = safe_markdown("**Le délai est de 15 jours** [1], voir [la fiche](https://www.service-public.fr/F1) "
                         "et https://www.legifrance.gouv.fr/loda [2]. Liste :\n\n1. un\n2. deux")
    assert text.startswith("**Le délai est de 15 jours** [1]")
    assert "[la fiche](https://www.service-public.fr/F1)" in text and "https://www.legifrance.gouv.fr/loda [2]" in text
    assert "1. un\n2. deux" in text
    assert safe_markdown("[x](https://service-public.fr.evil.com/)", ["service-public.fr"]) == \
        "x (`https://service-public.fr.evil.com/`)"
    # A backtick of the document cannot close the code around an address and let it out as text.
    assert "p://" not in outside_code(safe_markdown("un ` puis http://evil.fr/x`y et `"))
    assert "](" not in safe_markdown("[x](http://www.service-public.fr/F1)")  # https only


def test_streamed_tokens_are_escaped():
    # Streamed tokens: escaped, and no address left for the renderer to find once the escapes are resolved.
    streamed = "".join(safe_token(t) for t in ["![x](ht", "tp://a.b) ou www", ".exemple.fr, a.martin@", "ex.fr"])
    assert "\\!\\[x\\](" in streamed and "](" not in streamed.replace("\\]", "")
    assert not re.search(r"https?://|www\.|@\w", streamed.replace("\\", "")), streamed


# ---------------------------------------------------------------------------------------------------- ASGI helpers


def call(app, scope: dict, body: bytes = b"", chunks: int = 1):
    """(status, headers, body, number of body chunks the app read) of one HTTP request to an ASGI app."""
    sent: list[dict] = []
    parts = [body[i::chunks] for i in range(chunks)] if chunks > 1 else [body]
    read = 0

    async def receive():
        nonlocal read
        read += 1
        if read <= len(parts):
            return {"type": "http.request", "body": parts[read - 1], "more_body": read < len(parts)}
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": "/", "headers": [], "scheme": "http", **scope}
    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    headers = {k.decode(): v.decode() for k, v in start["headers"]}
    return start["status"], headers, b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body"), read


def responder(status=200, headers=(), body=b"ok", read_all=False):
    async def app(scope, receive, send):
        if read_all:
            more = True
            while more:
                message = await receive()
                more = message.get("more_body", False)
        await send({"type": "http.response.start", "status": status, "headers": list(headers)})
        await send({"type": "http.response.body", "body": body})
    return app


# ---------------------------------------------------------------------------------------------------- headers


def test_pages_get_a_strict_policy_with_their_inline_script_hashed():
    page = b"<html><head><script>window.theme = {}</script><script src='/assets/a.js'></script></head></html>"
    app = SecurityHeaders(responder(headers=[(b"content-type", b"text/html; charset=utf-8")], body=page))
    status, headers, body, _ = call(app, {})
    policy = headers["content-security-policy"]
    assert body == page and f"'sha256-{inline_script_hashes(page)[0]}'" in policy and len(inline_script_hashes(page)) == 1
    assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy and "https:" not in policy
    assert headers["x-frame-options"] == "DENY" and headers["referrer-policy"] == "same-origin"
    assert "strict-transport-security" not in headers


def test_https_gets_secure_cookies_and_hsts_and_own_policies_are_kept():
    app = SecurityHeaders(responder(headers=[(b"set-cookie", b"access_token=x; HttpOnly; Path=/"),
                                             (b"content-security-policy", b"sandbox")]))
    _, headers, _, _ = call(app, {"scheme": "https"})
    assert headers["set-cookie"].endswith("; Secure") and "max-age" in headers["strict-transport-security"]
    assert headers["content-security-policy"] == "sandbox"
    behind_proxy = SecurityHeaders(responder(headers=[(b"set-cookie", b"a=b")]), policy=HeaderPolicy(secure_cookies=True))
    assert call(behind_proxy, {})[1]["set-cookie"] == "a=b; Secure"


# ---------------------------------------------------------------------------------------------------- body limits


def test_bodies_over_the_limit_are_refused_declared_or_streamed():
    limits = BodyLimits(request_bytes=1000, upload_bytes=2_500_000)
    app = BodyLimit(responder(read_all=True), limits=limits)
    status, _, body, read = call(app, {"method": "POST", "headers": [(b"content-length", b"300000000")]})
    assert status == 413 and read == 0
    assert json.loads(body)["detail"] == "Requête trop volumineuse (300000 ko) : 1 ko au plus."
    status, _, body, read = call(app, {"method": "POST"}, b"x" * 4000, chunks=4)  # chunked, no length
    assert status == 413 and read == 2
    status, _, body, _ = call(app, {"method": "POST", "path": "/project/file",
                                    "headers": [(b"content-length", b"300000000")]})
    assert json.loads(body)["detail"] == "Fichier trop volumineux (300 Mo) : 2,5 Mo au plus."
    assert call(app, {"method": "POST", "path": "/project/file"}, b"x" * 4000)[0] == 200


def test_a_file_a_little_over_the_limit_reaches_the_chat_and_a_huge_one_is_audited():
    from chat_ui.body_limits import ENVELOPE, MIB, dropzone_mb

    # The file picker counts whole megabytes: what it lets through reaches the chat, which refuses it in French.
    assert [dropzone_mb(mb) for mb in (0.3, 1, 2.5, 50, 500)] == [1, 1, 3, 50, 100]
    limits = BodyLimits(request_bytes=1000, upload_bytes=300_000)
    assert limits.limit("POST", "/project/file") == MIB + ENVELOPE
    assert BodyLimits(upload_bytes=500_000_000).limit("POST", "/project/file") == 500_000_000 + ENVELOPE
    refused: list[tuple] = []
    app = BodyLimit(responder(read_all=True), limits=limits,
                    on_refused=lambda scope, message, size, head: refused.append((scope["path"], message, size, head)))
    assert call(app, {"method": "POST", "path": "/project/file"}, b"x" * 400_000)[0] == 200
    assert refused == []
    status, _, _, _ = call(app, {"method": "POST", "path": "/project/file",
                                 "headers": [(b"content-length", b"2000000")]})
    assert status == 413 and refused == [("/project/file", "Fichier trop volumineux (2 Mo) : 0,3 Mo au plus.",
                                          2_000_000, b"")]
    multipart = b'--b\r\nContent-Disposition: form-data; name="file"; filename="gros.pdf"\r\n\r\n' + b"x" * 1_200_000
    assert call(app, {"method": "POST", "path": "/project/file"}, multipart)[0] == 413  # no declared length
    assert refused[-1][2] is None and b'filename="gros.pdf"' in refused[-1][3]


# ---------------------------------------------------------------------------------------------------- sessions


@pytest.fixture
def secret(monkeypatch):
    monkeypatch.setenv("CHAINLIT_AUTH_SECRET", "secret-de-test-" * 4)


def token(identifier: str, **metadata) -> str:
    from chainlit.auth.jwt import create_jwt
    from chainlit.user import User

    return create_jwt(User(identifier=identifier, metadata={"provider": "password", "roles": ["agent"], **metadata}))


def test_sessions_end_at_logout_for_every_process_and_after_their_lifetime(tmp_path, secret):
    path = tmp_path / "revoked.json"
    registry = SessionRegistry(path, SessionPolicy(lifetime_s=3600))
    claims = new_session_claims(now=10_000)
    assert registry.problem(claims, now=10_100) is None
    assert registry.problem({}, now=10_100) and registry.problem(claims, now=10_000 + 3601)  # no sid; too old
    registry.revoke(claims, now=10_200)
    assert "déconnexion" in registry.problem(claims, now=10_300)
    assert "déconnexion" in SessionRegistry(path, SessionPolicy(lifetime_s=3600)).problem(claims, now=10_300)
    app = LoginRequired(responder(), may_upload=lambda u: False, sessions=SessionRegistry(path))
    fresh = new_session_claims()
    assert call(app, {"path": "/user", "headers": [(b"authorization", f"Bearer {token('a', **fresh)}".encode())]})[0] == 200
    for stale in (token("a"), token("a", **claims)):  # no session id; ended session
        assert call(app, {"path": "/user", "headers": [(b"authorization", f"Bearer {stale}".encode())]})[0] == 401


def test_renewal_checks_the_token_it_renews_not_the_cookie(tmp_path, secret):
    registry = SessionRegistry(tmp_path / "revoked.json")
    old = new_session_claims()
    registry.revoke(old)
    app = LoginRequired(responder(), may_upload=lambda u: False, sessions=registry)
    headers = [(b"cookie", f"access_token={token('a', **new_session_claims())}".encode()),
               (b"authorization", f"Bearer {token('a', **old)}".encode())]
    assert call(app, {"method": "POST", "path": "/auth/jwt", "headers": headers})[0] == 401


def test_sharing_and_disabled_routes_are_404_even_logged_in(secret):
    app = LoginRequired(responder(), may_upload=lambda u: False)
    auth = [(b"authorization", f"Bearer {token('a')}".encode())]
    for method, path in (("PUT", "/project/thread/share"), ("GET", "/project/share/abc"), ("POST", "/mcp"),
                         ("POST", "/auth/header")):
        assert call(app, {"method": method, "path": path, "headers": auth})[0] == 404, path


def test_login_throttling_per_account_and_address():
    async def login_app(scope, receive, send):
        message = await receive()
        ok = b"password=bon" in message["body"]
        await send({"type": "http.response.start", "status": 200 if ok else 401, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    throttle = LoginThrottle(ThrottlePolicy(max_per_account=3, max_per_address=5, window_s=600))
    app = LoginRequired(login_app, may_upload=lambda u: False, throttle=throttle)

    def attempt(user, password, address="10.0.0.1"):
        return call(app, {"method": "POST", "path": "/login", "client": (address, 1)},
                    f"username={user}&password={password}".encode())

    assert [attempt("a.martin", "faux")[0] for _ in range(3)] == [401, 401, 401]
    status, headers, body, _ = attempt("a.martin", "bon")
    assert status == 429 and json.loads(body)["detail"].startswith("Trop de tentatives de connexion. Réessayez dans 10 minutes.")
    assert int(headers["retry-after"]) > 500
    assert attempt("b.durand", "bon")[0] == 200  # another account
    assert [attempt(f"u{i}", "faux")[0] for i in range(2)] == [401, 401]  # the address reaches 5 failures
    assert attempt("c.petit", "bon")[0] == 429 and attempt("c.petit", "bon", "10.0.0.2")[0] == 200


# ---------------------------------------------------------------------------------------------------- PDFs


def test_pdf_javascript_and_actions_are_removed(tmp_path):
    import pikepdf

    from chat_ui.pdf_safety import PdfSafetyError, safe_copy, sanitize_pdf

    pdf = pikepdf.new()
    pdf.add_blank_page()
    pdf.Root.OpenAction = pdf.make_indirect(pikepdf.Dictionary(S=pikepdf.Name.JavaScript, JS=pikepdf.String("app.alert(1)")))
    pdf.Root.Names = pikepdf.Dictionary(JavaScript=pikepdf.Dictionary(Names=pikepdf.Array([
        pikepdf.String("x"), pdf.make_indirect(pikepdf.Dictionary(S=pikepdf.Name.JavaScript, JS=pikepdf.String("app.alert(2)")))])))
    pdf.pages[0].obj.AA = pikepdf.Dictionary(O=pikepdf.Dictionary(S=pikepdf.Name.Launch, F=pikepdf.String("calc.exe")))
    pdf.save(tmp_path / "piege.pdf")
    removed = sanitize_pdf(tmp_path / "piege.pdf", tmp_path / "propre.pdf")
    assert "/OpenAction" in removed and "/AA" in removed
    clean = (tmp_path / "propre.pdf").read_bytes()
    assert b"app.alert" not in clean and b"calc.exe" not in clean and b"JavaScript" not in clean
    copy = safe_copy(tmp_path / "piege.pdf", tmp_path / "cache")
    assert copy == safe_copy(tmp_path / "piege.pdf", tmp_path / "cache") and b"app.alert" not in copy.read_bytes()
    (tmp_path / "faux.pdf").write_bytes(b"%PDF-1.4 pas un pdf")
    with pytest.raises(PdfSafetyError, match="faux.pdf"):
        sanitize_pdf(tmp_path / "faux.pdf", tmp_path / "x.pdf")


# ---------------------------------------------------------------------------------------------------- small refusals


def test_a_users_file_not_in_utf8_is_a_french_error_not_a_crash(tmp_path):
    from chat_ui.accounts import AccountError, list_users
    from chat_ui.auth import UserDirectory

    users = tmp_path / "users.yaml"
    users.write_bytes("users:\n  - id: a.martin\n    name: Aliz\xe9e\n".encode("latin-1"))
    with pytest.raises(AccountError, match="UTF-8"):
        list_users(users)
    assert UserDirectory(users).users() == {}  # logs nobody in, no server error


def test_upload_metadata_refuses_fiche_and_reads_one_service_as_one():
    from chat_ui.upload_names import check_metadata

    assert "réservé" in check_metadata("Note", "fiche", ["rh"], ["rh"])
    assert check_metadata("Note", "procedure", "dsi", ["dsi"]) is None
    assert "refusé : rh" in check_metadata("Note", "procedure", "rh", ["dsi"])


def test_too_long_question_message_quotes_the_size():
    from chat_ui.texts import question_too_long

    assert "1\u202f201 caractères (500 au plus)" in question_too_long(1201, 500)


def test_cli_refuses_an_empty_question(tmp_path):
    from chat_helpers import base_env, run_cli

    result = run_cli(["ask", "  ", "--user", "a.martin"], base_env(tmp_path, Path("corpora/users.yaml")))
    assert result.returncode == 2 and "question vide" in result.stdout + result.stderr


def test_compressed_pages_get_their_inline_script_hashed():
    import gzip

    page = b"<html><script>window.a = 1</script></html>"
    app = SecurityHeaders(responder(headers=[(b"content-type", b"text/html"), (b"content-encoding", b"gzip")],
                                    body=gzip.compress(page)))
    assert f"'sha256-{inline_script_hashes(page)[0]}'" in call(app, {})[1]["content-security-policy"]
