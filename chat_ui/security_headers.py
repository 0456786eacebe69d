"""Security headers on every response of the chat: a strict Content-Security-Policy, no framing, no referrer,
no MIME sniffing, HSTS and ``Secure`` cookies over HTTPS.

The policy allows the server itself only: scripts, styles, images, fonts, connections (the websocket included) and
forms. What Chainlit's frontend needs beyond that, checked with the real browser (``test_chat_security.py``):

- its one inline ``<script>`` (theme and transports): allowed by its SHA-256 hash, computed on the served page;
- ``'unsafe-eval'``: Chainlit compiles the custom elements (``public/elements/*.jsx``: source and feedback cards)
  in the browser and runs them with ``new Function`` — they are served by the chat itself, never from a document;
- inline styles (``'unsafe-inline'`` for styles only: React and its components set ``style`` attributes);
- ``data:`` and ``blob:`` images (icons, previews).

A response that already has its own policy (documents served by ``files.py``, in a sandbox) keeps it.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import re
from dataclasses import dataclass
from typing import Awaitable, Callable

Scope = dict
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]

_INLINE_SCRIPT = re.compile(rb"<script(?![^>]*\bsrc=)[^>]*>(.*?)</script>", re.DOTALL | re.IGNORECASE)
HSTS = "max-age=31536000; includeSubDomains"


def content_security_policy(script_hashes: tuple[str, ...] = ()) -> str:
    scripts = " ".join(["'self'", "'unsafe-eval'", *(f"'sha256-{h}'" for h in script_hashes)])
    return "; ".join([
        "default-src 'self'",
        f"script-src {scripts}",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data: blob:",
        "font-src 'self' data:",
        "media-src 'self' blob:",
        "connect-src 'self'",
        "frame-src 'self'",
        "worker-src 'self' blob:",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ])


def inline_script_hashes(html: bytes) -> tuple[str, ...]:
    return tuple(dict.fromkeys(base64.b64encode(hashlib.sha256(m.group(1)).digest()).decode()
                               for m in _INLINE_SCRIPT.finditer(html)))


@dataclass(frozen=True, slots=True)
class HeaderPolicy:
    secure_cookies: bool = False  # the chat is served over HTTPS behind a proxy that does not say so


class SecurityHeaders:
    """ASGI middleware adding the security headers to every HTTP response."""

    def __init__(self, app, *, policy: HeaderPolicy = HeaderPolicy()) -> None:
        self.app = app
        self.policy = policy

    def https(self, scope: Scope) -> bool:
        return self.policy.secure_cookies or scope.get("scheme") == "https"

    def headers(self, raw: list[tuple[bytes, bytes]], scope: Scope, script_hashes: tuple[str, ...]) -> list:
        https = self.https(scope)
        names = {k.lower() for k, _ in raw}
        out = []
        for key, value in raw:
            if key.lower() == b"set-cookie" and https and b"secure" not in value.lower().replace(b" ", b"").split(b";"):
                value += b"; Secure"
            out.append((key, value))
        extra = {
            b"content-security-policy": content_security_policy(script_hashes).encode(),
            b"x-frame-options": b"DENY",
            b"x-content-type-options": b"nosniff",
            b"referrer-policy": b"same-origin",
            b"cross-origin-opener-policy": b"same-origin",
            b"permissions-policy": b"camera=(), microphone=(), geolocation=(), payment=()",
        }
        if https:
            extra[b"strict-transport-security"] = HSTS.encode()
        out += [(k, v) for k, v in extra.items() if k not in names]
        return out

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start: dict | None = None
        body = b""

        async def wrapped(message: dict) -> None:
            nonlocal start, body
            if message["type"] == "http.response.start":
                content_type = dict((k.lower(), v) for k, v in message.get("headers", [])).get(b"content-type", b"")
                if content_type.startswith(b"text/html"):
                    start = message  # held until the page is complete: its inline scripts are hashed
                    return
                message = dict(message, headers=self.headers(list(message.get("headers", [])), scope, ()))
                return await send(message)
            if message["type"] == "http.response.body" and start is not None:
                body += message.get("body", b"")
                if message.get("more_body", False):
                    return
                encoding = dict((k.lower(), v) for k, v in start.get("headers", [])).get(b"content-encoding", b"")
                page = gzip.decompress(body) if encoding.strip().lower() == b"gzip" else body  # Chainlit's GZip
                headers = self.headers(list(start.get("headers", [])), scope, inline_script_hashes(page))
                await send(dict(start, headers=headers))
                start = None
                return await send({"type": "http.response.body", "body": body, "more_body": False})
            await send(message)

        await self.app(scope, receive, wrapped)
