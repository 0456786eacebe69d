"""Nothing without login: an ASGI middleware in front of the whole Chainlit app.

A request without a valid session token reaches only what the login page needs (the page itself, its scripts,
styles and translations, the login and OpenID Connect routes, the health check). Everything else — the API, the
websocket, the documents, the history — answers 401 (or, for a page opened in the browser, sends to the login
page). The middleware also records who makes each request, for the data layer's ownership checks, and refuses file
uploads to anyone who is not a document manager, whatever the interface shows.

With a session registry (``sessions.py``), a token whose session was ended at logout, or is older than the
session lifetime, counts as no session, and ``POST /auth/jwt`` only renews a valid session given as bearer. With a
login throttle, failed logins are counted and, past the limit, refused with a French message (429). Chainlit's
routes that would share or read a conversation across users (thread sharing), and those of features that are off
(MCP, header login), answer 404 whatever the session.
"""

from __future__ import annotations

import json
from typing import Awaitable, Callable
from urllib.parse import parse_qs, quote

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


# Off in Collectivia, whatever the session: thread sharing (it would open a conversation to any agent), MCP, header login.
DISABLED_EXACT = {("PUT", "/project/thread/share"), ("POST", "/mcp"), ("DELETE", "/mcp"), ("POST", "/auth/header")}
DISABLED_PREFIXES = ("/project/share/",)
LOGIN_BODY_LIMIT = 16 * 1024


def is_disabled(method: str, path: str) -> bool:
    return (method, path) in DISABLED_EXACT or path.startswith(DISABLED_PREFIXES)


def is_public(method: str, path: str) -> bool:
    """Whether a request may be served without a session (what the login page and the login itself need)."""
    method = "GET" if method == "HEAD" and path != "/" else method
    if (method, path) in PUBLIC_EXACT:
        return True
    if ".." in path:
        return False
    return path.startswith(PUBLIC_PREFIXES.get(method, ()))


def _token(scope: Scope, bearer_only: bool = False) -> str | None:
    from starlette.requests import HTTPConnection

    from chainlit.auth.cookie import get_token_from_cookies

    conn = HTTPConnection(scope)
    token = None if bearer_only else get_token_from_cookies(conn.cookies)
    if not token:
        authorization = conn.headers.get("authorization", "")
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value:
            token = value.strip()
    return token


def session_user(scope: Scope, bearer_only: bool = False):
    """The Chainlit user of the request's session token (cookie or bearer), or None if absent or invalid."""
    token = _token(scope, bearer_only)
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

    def __init__(self, app, *, may_upload: Callable[[object], bool], sessions=None, throttle=None) -> None:
        self.app = app
        self.may_upload = may_upload
        self.sessions = sessions  # sessions.SessionRegistry, or None: any validly signed token is a session
        self.throttle = throttle  # sessions.LoginThrottle, or None: no throttling

    def user(self, scope: Scope, bearer_only: bool = False):
        """The Chainlit user of a request whose session is valid, or None."""
        user = session_user(scope, bearer_only)
        if user is not None and self.sessions is not None and self.sessions.problem(user.metadata):
            return None
        return user

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        method = scope.get("method", "GET") if scope["type"] == "http" else "GET"
        if scope["type"] == "http" and is_disabled(method, path):
            return await _respond(send, 404, {"detail": "Fonction désactivée dans Collectivia."})
        # A renewal renews the token it is given (bearer), never the one of the cookie.
        user = self.user(scope, bearer_only=scope["type"] == "http" and path == "/auth/jwt")
        if scope["type"] == "http" and method == "POST" and path == "/logout" and user is not None:
            if self.sessions is not None:
                self.sessions.revoke(user.metadata)
        if scope["type"] == "http" and method == "POST" and path == "/login" and self.throttle is not None:
            return await self._login(scope, receive, send)
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

    async def _login(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A password login, counted: refused while its account or address has failed too often."""
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > LOGIN_BODY_LIMIT:
                return await _respond(send, 413, {"detail": "Requête de connexion trop volumineuse."})
        try:
            form = parse_qs(body.decode("utf-8"))
        except UnicodeDecodeError:
            form = {}
        account = (form.get("username") or [""])[0]
        address = (scope.get("client") or ("?", 0))[0]
        wait = self.throttle.retry_after(account, address)
        if wait > 0:
            from chat_ui.sessions import throttled_message

            return await _respond(send, 429, {"detail": throttled_message(wait)},
                                  {"retry-after": str(int(wait) + 1)})
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        status = 0

        async def watch(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        await self.app(scope, replay, watch)
        if status == 200:
            self.throttle.succeeded(account)
        elif status in (401, 403):
            self.throttle.failed(account, address)
