"""OpenID Connect end to end: a local identity provider (authorisation, token and userinfo endpoints), the chat with
COLLECTIVIA_CHAT__OIDC__ENABLED and Chainlit's generic provider, headless Chromium clicking « Continuer avec … »."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlparse

import pytest

from chat_fixtures import browser, chat_corpus, context  # noqa: F401 (fixtures)
from chat_helpers import ChatServer, fetch, free_port, run_cli, session_cookie

pytestmark = pytest.mark.slow

USERINFO = {
    "email": "ulysse@commune.fr", "name": "Ulysse Sso", "groups": ["/mairie/urbanisme", "/mairie/inconnu"],
    "realm_access": {"roles": ["collectivia-gestionnaire", "offline_access"]},
}


class Provider(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass

    def _json(self, data: dict, status: int = 200) -> None:
        body = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        url = urlparse(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path == "/auth":  # the agent « logs in » at once
            self.send_response(302)
            self.send_header("location", query["redirect_uri"] + "?" + urlencode({"code": "code-1", "state": query["state"]}))
            self.end_headers()
        elif url.path == "/userinfo" and self.headers.get("authorization") == "Bearer jeton-1":
            self._json(USERINFO)
        else:
            self._json({"error": "not found"}, 404)

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
        if self.path == "/token" and form.get("code") == "code-1" and form.get("client_secret") == "secret-1":
            self._json({"access_token": "jeton-1", "token_type": "Bearer"})
        else:
            self._json({"error": "invalid_grant"}, 400)


@pytest.fixture(scope="module")
def oidc_server(chat_corpus):
    provider = ThreadingHTTPServer(("127.0.0.1", free_port()), Provider)
    threading.Thread(target=provider.serve_forever, daemon=True).start()
    idp = f"http://127.0.0.1:{provider.server_address[1]}"
    corpus = dict(chat_corpus)  # this module's own copy of the indexed corpus
    env = dict(chat_corpus["env"])
    env.update({
        "COLLECTIVIA_CHAT__OIDC__ENABLED": "true",
        "COLLECTIVIA_CHAT__OIDC__SERVICES_CLAIM": "groups",
        "COLLECTIVIA_CHAT__OIDC__SERVICE_MAP": json.dumps({"/mairie/urbanisme": "urbanisme", "/mairie/rh": "rh"}),
        "COLLECTIVIA_CHAT__OIDC__ROLES_CLAIM": "realm_access.roles",
        "COLLECTIVIA_CHAT__OIDC__ROLE_MAP": json.dumps({"collectivia-gestionnaire": "document_manager"}),
        "OAUTH_GENERIC_NAME": "sso", "OAUTH_GENERIC_CLIENT_ID": "collectivia",
        "OAUTH_GENERIC_CLIENT_SECRET": "secret-1", "OAUTH_GENERIC_AUTH_URL": idp + "/auth",
        "OAUTH_GENERIC_TOKEN_URL": idp + "/token", "OAUTH_GENERIC_USER_INFO_URL": idp + "/userinfo",
        "OAUTH_GENERIC_SCOPES": "openid profile email", "OAUTH_GENERIC_USER_IDENTIFIER": "email",
    })
    corpus["env"] = env
    server = ChatServer(corpus).start()
    yield server
    server.stop()
    provider.shutdown()


def test_openid_connect_login_maps_groups_and_roles(oidc_server, context):
    page = context.new_page()
    page.goto(oidc_server.url + "/")
    assert page.locator("#password").count() == 0  # no password login when OpenID Connect is on
    page.get_by_role("button", name="sso").click()
    page.wait_for_selector("text=Bonjour Ulysse Sso")
    text = page.inner_text("body")
    assert "Urbanisme et aménagement (urbanisme)" in text and "Ressources humaines (rh)" not in text
    assert page.get_by_role("button", name="Ajouter un document").count() == 1  # mapped role
    cookie = session_cookie(context)
    assert fetch(oidc_server.url + "/documents/PROC-PERMIS", cookie=cookie)[0] == 200
    assert fetch(oidc_server.url + "/documents/PROC-CONGES", cookie=cookie)[0] == 404  # unmapped: denied


def test_refuses_to_start_without_the_provider_settings(chat_corpus, tmp_path):
    env = dict(chat_corpus["env"], COLLECTIVIA_DATA_DIR=str(tmp_path / "data"), COLLECTIVIA_CHAT__OIDC__ENABLED="true")
    result = run_cli(["serve", "--port", str(free_port())], env)
    assert result.returncode == 2 and "OAUTH_GENERIC_CLIENT_ID" in result.stderr
    env.update({v: "x" for v in ("OAUTH_GENERIC_CLIENT_ID", "OAUTH_GENERIC_CLIENT_SECRET", "OAUTH_GENERIC_AUTH_URL",
                                 "OAUTH_GENERIC_TOKEN_URL", "OAUTH_GENERIC_USER_INFO_URL", "OAUTH_GENERIC_SCOPES")})
    env["OAUTH_GENERIC_NAME"] = "keycloak"  # Chainlit's own Keycloak provider would answer instead
    result = run_cli(["serve", "--port", str(free_port())], env)
    assert result.returncode == 2 and "OAUTH_GENERIC_NAME=keycloak" in result.stderr
