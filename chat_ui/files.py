"""The authorised route that opens original documents: ``GET /documents/{doc_id}`` on Chainlit's FastAPI app.

On every request: the session token gives the user, the index gives the document's services, and the user must
belong to one of them (or the document must be open to all agents). Otherwise — unknown document or forbidden
one alike — the answer is the same 404, so that nobody learns a document exists. Documents imported from the web
(service-public.fr fiches, whose source is a URL) redirect to that URL; files are served with headers that keep
the browser from running anything they contain.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from rag.access import User, can_see

router = APIRouter()

NOT_FOUND = "Document introuvable, ou vous n'avez pas le droit de le consulter."

_TYPES = {
    ".pdf": ("application/pdf", "inline"),
    ".txt": ("text/plain; charset=utf-8", "inline"),
    ".md": ("text/plain; charset=utf-8", "inline"),
    ".markdown": ("text/plain; charset=utf-8", "inline"),
    ".html": ("text/html; charset=utf-8", "inline"),
    ".htm": ("text/html; charset=utf-8", "inline"),
    ".docx": ("application/vnd.openxmlformats-officedocument.wordprocessingml.document", "attachment"),
    ".odt": ("application/vnd.oasis.opendocument.text", "attachment"),
}
# HTML and text open in a sandbox: no script, no form, no request anywhere; PDF goes to the browser's viewer, as a
# copy cleaned of JavaScript and active content (``pdf_safety.py``), with a policy that lets only the viewer load it.
_SANDBOX = "sandbox; default-src 'none'; img-src data:; style-src 'unsafe-inline'"
_PDF_POLICY = "default-src 'none'; object-src 'self'; frame-ancestors 'self'"
SAFE_PDF_FOLDER = "pdf-safe"


def _wants_html(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "")


def not_found(request: Request) -> Response:
    if _wants_html(request):
        return HTMLResponse(
            "<!doctype html><html lang=\"fr\"><meta charset=\"utf-8\"><title>Document introuvable</title>"
            f"<body style=\"font-family:system-ui,sans-serif;margin:3rem\"><h1>Document introuvable</h1><p>{NOT_FOUND}</p>"
            "<p><a href=\"/\">Retour à l'assistant</a></p></body></html>",
            status_code=404, headers={"cache-control": "no-store"},
        )
    return JSONResponse({"detail": NOT_FOUND}, status_code=404, headers={"cache-control": "no-store"})


def file_headers(path: Path) -> tuple[str, dict[str, str]]:
    """(media type, headers) of an original file served to an agent."""
    media, disposition = _TYPES.get(path.suffix.lower(), (mimetypes.guess_type(path.name)[0] or
                                                          "application/octet-stream", "attachment"))
    headers = {
        "content-disposition": f"{disposition}; filename*=UTF-8''{quote(path.name)}",
        "x-content-type-options": "nosniff",
        "cache-control": "private, no-store",
        "referrer-policy": "no-referrer",
    }
    headers["content-security-policy"] = _PDF_POLICY if media.startswith("application/pdf") else _SANDBOX
    return media, headers


def current_user(request: Request) -> User | None:
    from chat_ui.backend import get_backend
    from chat_ui.guard import session_user

    cl_user = session_user(request.scope)
    if cl_user is None:
        return None
    return get_backend().user_of(cl_user.identifier, cl_user.metadata)


@router.get("/documents/{doc_id:path}")
async def open_document(doc_id: str, request: Request) -> Response:
    from chat_ui.backend import get_backend

    user = current_user(request)
    if user is None:
        return JSONResponse({"detail": "Connexion requise."}, status_code=401)
    payload = await run_in_threadpool(get_backend().visible_payload, user, doc_id)  # the index filters by access
    if payload is None or not can_see(user, payload.get("services") or ()):
        return not_found(request)
    source = str(payload.get("source") or "")
    if source.startswith(("https://", "http://")):
        return RedirectResponse(source, status_code=302, headers={"cache-control": "no-store"})
    path = Path(source)
    if not source or not path.is_file():
        return not_found(request)
    media, headers = file_headers(path)
    if media == "application/pdf":
        from chat_ui.pdf_safety import PdfSafetyError, safe_copy

        try:
            path = await run_in_threadpool(safe_copy, path, Path(get_backend().settings.data_dir) / SAFE_PDF_FOLDER)
        except (PdfSafetyError, OSError):
            return not_found(request)  # a PDF that cannot be cleaned is not served
    return FileResponse(path, media_type=media, headers=headers)


def install(app) -> None:
    """Put the route before Chainlit's catch-all page route (which would answer first otherwise)."""
    for route in reversed(router.routes):
        app.router.routes.insert(0, route)
