"""Uploads refused by Chainlit's own file route, written to the audit log like every other refusal.

A file travels to ``POST /project/file`` (Chainlit) before Collectivia sees it. Chainlit refuses some files there —
an empty file (it answers 500), a type or size outside the question's limits (400), an unknown session (404) — and
the manager only sees « Dépôt du fichier refusé ». This ASGI middleware, inside the login guard (which audits its own
403), watches the answer of that route and audits each refusal with the file name and size read from the
multipart body as it streams by (nothing is buffered), and the French reason when it can be told.
"""

from __future__ import annotations

import re
from typing import Callable

from chat_ui.datalayer import request_identifier

_FILENAME = re.compile(rb'filename="([^"\r\n]*)"')


class UploadRefusalAudit:
    """ASGI middleware: audit every failed ``POST /project/file``."""

    def __init__(self, app, *, reason: Callable[[str, int], str | None], audit) -> None:
        self.app = app
        self.reason = reason  # DocumentManager.check_file_name: the French reason a (name, size) is refused
        self.audit = audit

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST" or scope.get("path") != "/project/file":
            return await self.app(scope, receive, send)
        seen = {"head": b"", "total": 0, "status": 200}

        async def watched_receive():
            message = await receive()
            if message.get("type") == "http.request":
                body = message.get("body", b"")
                if len(seen["head"]) < 4096:
                    seen["head"] += body[: 4096 - len(seen["head"])]
                seen["total"] += len(body)
            return message

        async def watched_send(message):
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
            await send(message)

        await self.app(scope, watched_receive, watched_send)
        if seen["status"] >= 400:
            self._write(seen["head"], seen["total"], seen["status"])

    def _write(self, head: bytes, total: int, status: int) -> None:
        name, size = file_part(head, total)
        detail = (self.reason(name, size) if name and size is not None else None) or (
            f"Dépôt refusé par la route de fichiers du chat (HTTP {status}) avant toute vérification de Collectivia.")
        self.audit.write(action="upload", outcome="refused", user_id=request_identifier.get() or "", file=name,
                         size=size, detail=detail)


def file_part(head: bytes, total: int) -> tuple[str, int | None]:
    """(file name, file size) of a one-file multipart body, from its first bytes and its total length."""
    match = _FILENAME.search(head)
    if not match:
        return "", None
    name = match.group(1).decode("utf-8", "replace")
    boundary = head.split(b"\r\n", 1)[0]
    start = head.find(b"\r\n\r\n", match.end())
    if not boundary.startswith(b"--") or start < 0:
        return name, None
    closing = len(b"\r\n" + boundary + b"--\r\n")
    return name, max(0, total - (start + 4) - closing)
