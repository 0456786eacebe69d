"""The login guard in front of the whole app: only what the login page needs is public."""

from __future__ import annotations

import chat_helpers  # noqa: F401  (keeps Chainlit's run-time folder out of the repository)

import json

import pytest

from chat_ui.datalayer import request_identifier
from chat_ui.guard import LoginRequired, is_public


@pytest.mark.parametrize("method, path, public", [
    ("GET", "/", True), ("HEAD", "/", True), ("GET", "/login", True), ("GET", "/health", True),
    ("GET", "/auth/config", True), ("GET", "/project/translations", True), ("POST", "/login", True),
    ("GET", "/assets/index.js", True), ("GET", "/public/theme.json", True), ("GET", "/auth/oauth/keycloak", True),
    ("GET", "/auth/oauth/keycloak/callback", True), ("GET", "/favicon", True),
    ("GET", "/user", False), ("GET", "/project/settings", False), ("POST", "/project/threads", False),
    ("GET", "/documents/PROC-1", False), ("POST", "/project/file", False), ("PUT", "/feedback", False),
    ("GET", "/ws/socket.io/", False), ("GET", "/thread/123", False), ("GET", "/public/../auth_secret", False),
    ("POST", "/public/theme.json", False), ("POST", "/auth/jwt", False), ("POST", "/auth/header", False),
    ("GET", "/project/share/1", False), ("POST", "/mcp", False),
])
def test_public_paths(method, path, public):
    assert is_public(method, path) is public


@pytest.fixture
def client(monkeypatch):
    from starlette.testclient import TestClient

    monkeypatch.setenv("CHAINLIT_AUTH_SECRET", "secret-de-test-" * 4)

    async def inner(scope, receive, send):
        body = json.dumps({"who": request_identifier.get()}).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})

    app = LoginRequired(inner, may_upload=lambda user: "document_manager" in user.metadata.get("roles", []))
    return TestClient(app, follow_redirects=False)


def token(identifier: str, roles=("agent",)) -> str:
    from chainlit.auth.jwt import create_jwt
    from chainlit.user import User

    return create_jwt(User(identifier=identifier, metadata={"provider": "password", "roles": list(roles)}))


def test_without_session_only_the_login_page_is_served(client):
    assert client.get("/").status_code == 200
    refused = client.get("/user")
    assert refused.status_code == 401 and refused.json() == {"detail": "Connexion requise."}
    assert client.post("/project/threads", json={}).status_code == 401
    page = client.get("/documents/PROC-1", headers={"accept": "text/html"})
    assert page.status_code == 303 and page.headers["location"] == "/login?next=/documents/PROC-1"
    assert client.get("/user", cookies={"access_token": "pas-un-jeton"}).status_code == 401


def test_session_cookie_or_bearer_token_opens_the_app_and_names_the_user(client):
    response = client.get("/user", cookies={"access_token": token("a.martin")})
    assert response.status_code == 200 and response.json() == {"who": "a.martin"}
    response = client.get("/documents/X", headers={"authorization": "Bearer " + token("b.durand")})
    assert response.json() == {"who": "b.durand"}
    assert request_identifier.get() is None  # reset after the request


def test_uploads_are_refused_to_agents_whatever_the_interface(client):
    agent = client.post("/project/file?session_id=x", cookies={"access_token": token("a.martin")}, content=b"x")
    assert agent.status_code == 403 and "gestionnaires" in agent.json()["detail"]
    manager = client.post("/project/file?session_id=x", content=b"x",
                          cookies={"access_token": token("h.bernard", roles=("agent", "document_manager"))})
    assert manager.status_code == 200


def test_websocket_without_session_is_closed(client):
    from starlette.websockets import WebSocketDisconnect

    with pytest.raises(WebSocketDisconnect):
        with client.websocket_connect("/ws/socket.io/?EIO=4&transport=websocket") as ws:
            ws.receive_text()
