"""Nothing without login: an ASGI middleware in front of the whole Chainlit app.

A request without a valid session token reaches only what the login page needs (the page itself, its scripts,
styles and translations, the login and OpenID Connect routes, the health check). Everything else — the API, the
websocket, the documents, the history — answers 401 (or, for a page opened in the browser, sends to the login
page). The middleware also records who makes each request, for the data layer's ownership checks, and refuses file
uploads to anyone who is not a document manager, whatever the interface shows.
"""

from __future__ import annotations

import json
from typing import Awaitable, Callable
from urllib.parse import quote

from chat_ui.datalayer import request_identifier

Scope = dict
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]

PUBLIC_EXACT = {
    ("GET", "/"), ("HEAD", "/"), ("GET", "/login"), ("GET", "/login/callback"), ("GET", "/health"),
    ("GET", "/favicon"), ("GET", "/logo"), ("GET", "/auth/config"), ("GET", "/project/translations"),
    ("POST", "/login"), ("POST", "/logout"),
}
PUBLIC_PREFIXES = {
    "GET": ("/assets/", "/public/", "/avatars/", "/auth/oauth/"),
}


def is_public(method: str, path: str) -> bool:
    """Whether a request may be served without a session (what the login page and the login itself need)."""
    method = "GET" if method == "HEAD" and path != "/" else method
    if (method, path) in PUBLIC_EXACT:
        return True
    if ".." in path:
        return False
    return path.startswith(PUBLIC_PREFIXES.get(method, ()))


def _token(scope: Scope) -> str | None:
    from starlette.requests import HTTPConnection

    from chainlit.auth.cookie import get_token_from_cookies

    conn = HTTPConnection(scope)
    token = get_token_from_cookies(conn.cookies)
    if not token:
        authorization = conn.headers.get("authorization", "")
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value:
            token = value.strip()
    return token


def session_user(scope: Scope):
    """The Chainlit user of the request's session token (cookie or bearer), or None if absent or invalid."""
    token = _token(scope)
    if not token:
        return None
    try:
        from chainlit.auth.jwt import decode_jwt

        return decode_jwt(token)
    except Exception:
        return None


async def _respond(send: Send, status: int, body: dict | None = None, headers: dict | None = None) -> None:
    payload = json.dumps(body or {}, ensure_ascii=False).encode()
    raw_headers = [(b"content-type", b"application/json; charset=utf-8"), (b"cache-control", b"no-store")]
    raw_headers += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": payload})


class LoginRequired:
    """ASGI middleware: deny by default, for HTTP and websocket alike."""

    def __init__(self, app, *, may_upload: Callable[[object], bool]) -> None:
        self.app = app
        self.may_upload = may_upload

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        method = scope.get("method", "GET") if scope["type"] == "http" else "GET"
        user = session_user(scope)
        if user is None:
            if scope["type"] == "http" and is_public(method, path):
                return await self.app(scope, receive, send)
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 4401})
                return
            accept = dict((k.decode().lower(), v.decode()) for k, v in scope.get("headers", [])).get("accept", "")
            if method == "GET" and "text/html" in accept:
                await _respond(send, 303, {}, {"location": "/login?next=" + quote(path, safe="/")})
                return
            return await _respond(send, 401, {"detail": "Connexion requise."})
        if scope["type"] == "http" and method == "POST" and path == "/project/file" and not self.may_upload(user):
            return await _respond(send, 403, {
                "detail": "Dépôt de fichiers réservé aux gestionnaires de documents de leurs services."
            })
        reset = request_identifier.set(user.identifier)
        try:
            await self.app(scope, receive, send)
        finally:
            request_identifier.reset(reset)
