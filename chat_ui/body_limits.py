"""Request bodies bounded before they are read: the declared length is checked first, then the bytes as they
arrive; past the limit the request is refused (413, in French) without being read whole.

File uploads (``POST /project/file``) may carry as much as the chat's file picker accepts: the whole megabytes
above ``COLLECTIVIA_LIMITS__MAX_FILE_MB`` (``dropzone_mb``: Chainlit counts whole mebibytes, 1 at least, 100 at
most), plus the multipart envelope. A file a little over the limit thus reaches the chat, which refuses it in the
conversation with the French reason (``uploads.DocumentManager.check_file_name``); a body beyond that is refused
here, before it is read, and audited (``on_refused``). Every other request may carry
``COLLECTIVIA_CHAT__MAX_REQUEST_KB``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Awaitable, Callable

Scope = dict
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]

UPLOAD_PATH = "/project/file"
ENVELOPE = 64 * 1024  # multipart boundaries and headers around an uploaded file
MIB = 1024 * 1024
HEAD_BYTES = 4096  # first bytes of a refused upload kept to name its file in the audit log


def dropzone_mb(max_file_mb: float) -> int:
    """Whole megabytes of the chat's file picker (Chainlit's ``max_size_mb``, checked as mebibytes, 1 to 100) for a
    file limit of ``max_file_mb``: the limit rounded up, so that a file a little over it is still received and
    refused with the French reason."""
    return max(1, min(100, math.ceil(max_file_mb)))


@dataclass(frozen=True, slots=True)
class BodyLimits:
    request_bytes: int = 1024 * 1000
    upload_bytes: int = 50 * 1_000_000

    @property
    def upload_route_bytes(self) -> int:
        """The largest file the upload route lets through to the chat (the file picker's limit, not less than the
        file limit itself)."""
        return max(self.upload_bytes, dropzone_mb(self.upload_bytes / 1_000_000) * MIB)

    def limit(self, method: str, path: str) -> int:
        return self.upload_route_bytes + ENVELOPE if method == "POST" and path == UPLOAD_PATH else self.request_bytes

    def message(self, path: str, size: int | None) -> str:
        if path == UPLOAD_PATH:
            what = f" ({_mb(size)})" if size else ""
            return f"Fichier trop volumineux{what} : {_mb(self.upload_bytes)} au plus."
        what = f" ({size // 1000} ko)" if size else ""
        return f"Requête trop volumineuse{what} : {self.request_bytes // 1000} ko au plus."


def _mb(size: int) -> str:
    return f"{size / 1_000_000:.1f}".rstrip("0").rstrip(".").replace(".", ",") + " Mo"


class _TooLarge(Exception):
    pass


async def _refuse(send: Send, message: str) -> None:
    import json

    body = json.dumps({"detail": message}, ensure_ascii=False).encode()
    await send({"type": "http.response.start", "status": 413, "headers": [
        (b"content-type", b"application/json; charset=utf-8"), (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    """ASGI middleware refusing request bodies over the limit, before they are read."""

    def __init__(self, app, *, limits: BodyLimits = BodyLimits(),
                 on_refused: Callable[[Scope, str, int | None, bytes], None] | None = None) -> None:
        self.app = app
        self.limits = limits
        self.on_refused = on_refused  # (scope, French message, size or None, first bytes read): the audit

    async def _refuse(self, scope: Scope, send: Send, size: int | None, head: bytes = b"") -> None:
        message = self.limits.message(scope.get("path", ""), size)
        if self.on_refused is not None:
            try:
                self.on_refused(scope, message, size, head)
            except Exception:  # an audit failure never turns a refusal into a crash
                import logging

                logging.getLogger(__name__).exception("refus de taille non audité")
        await _refuse(send, message)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.limits.limit(scope.get("method", "GET"), scope.get("path", ""))
        declared = dict((k.lower(), v) for k, v in scope.get("headers", [])).get(b"content-length")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                size = -1
            if size < 0 or size > limit:
                return await self._refuse(scope, send, max(size, 0))
        seen = 0
        head = b""
        started = refused = False

        async def counted() -> dict:
            nonlocal seen, refused, head
            message = await receive()
            if message["type"] == "http.request":
                body = message.get("body", b"")
                seen += len(body)
                if len(head) < HEAD_BYTES:
                    head += body[: HEAD_BYTES - len(head)]
                if seen > limit:
                    if not started and not refused:
                        refused = True  # answered now: whatever the app does with the error is dropped
                        await self._refuse(scope, send, None, head)
                    raise _TooLarge()
            return message

        async def watched(message: dict) -> None:
            nonlocal started
            if refused:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except _TooLarge:
            pass
