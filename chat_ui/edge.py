"""What stands between the network and Chainlit, built from the settings: the login guard's sessions and
throttling, the body limits, the security headers, and French refusals instead of server errors.

Order of the layers (outermost first): security headers (every response has them, refusals included), body
limits (nothing oversized is read), the login guard (``guard.py``), then Chainlit.
"""

from __future__ import annotations

from pathlib import Path

from collectivia.settings import Settings

REVOKED_FILE = "revoked_sessions.json"


def guard_options(settings: Settings) -> dict:
    """Keyword arguments of ``LoginRequired``: the session registry and the login throttle of the settings."""
    from chat_ui.sessions import LoginThrottle, SessionPolicy, SessionRegistry, ThrottlePolicy

    chat = settings.chat
    registry = SessionRegistry(Path(settings.data_dir).resolve() / "chat" / REVOKED_FILE,
                               SessionPolicy(lifetime_s=chat.session_hours * 3600))
    throttle = LoginThrottle(ThrottlePolicy(max_per_account=chat.login_max_failures,
                                            max_per_address=chat.login_max_failures_per_address,
                                            window_s=chat.login_window_minutes * 60))
    return {"sessions": registry, "throttle": throttle}


def upload_size_audit(audit):
    """``BodyLimit``'s ``on_refused``: an upload refused for its size (413, before the guard and Chainlit see it) is
    written to the audit log like every other refused upload — for a signed-in session (a request without one would
    have been refused anyway)."""
    from chat_ui.body_limits import UPLOAD_PATH
    from chat_ui.guard import session_user
    from chat_ui.upload_audit import file_part

    def on_refused(scope: dict, message: str, size: int | None, head: bytes) -> None:
        if scope.get("path") != UPLOAD_PATH:
            return
        user = session_user(scope)
        if user is None:
            return
        name, _ = file_part(head, 0)
        audit.write(action="upload", outcome="refused", user_id=user.identifier, file=name, size=size,
                    detail=message)

    return on_refused


def install(app, settings: Settings, *, audit=None) -> None:
    """Add the outer layers (call after the guard's ``add_middleware``) and the error handlers; ``audit`` (the
    documents' audit log) records the uploads refused for their size."""
    from fastapi.responses import JSONResponse

    from chat_ui.body_limits import BodyLimit, BodyLimits
    from chat_ui.security_headers import HeaderPolicy, SecurityHeaders

    from fastapi.exception_handlers import http_exception_handler
    from starlette.exceptions import HTTPException

    def refusal(exc: PermissionError):
        return JSONResponse({"detail": f"Action refusée : {exc}" if str(exc) else "Action refusée."}, status_code=403)

    async def forbidden(request, exc: PermissionError):
        # The data layer refuses to touch another user's conversation: a refusal, not a server error.
        return refusal(exc)

    async def http_error(request, exc: HTTPException):
        # Chainlit turns any error of the data layer into a 500 (PUT /feedback…): a refusal stays a refusal.
        if exc.status_code == 500 and isinstance(exc.__cause__, PermissionError):
            return refusal(exc.__cause__)
        return await http_exception_handler(request, exc)

    app.add_exception_handler(PermissionError, forbidden)
    app.add_exception_handler(HTTPException, http_error)
    limits = BodyLimits(request_bytes=settings.chat.max_request_kb * 1000,
                        upload_bytes=int(settings.limits.max_file_mb * 1_000_000))
    app.add_middleware(BodyLimit, limits=limits, on_refused=upload_size_audit(audit) if audit is not None else None)
    app.add_middleware(SecurityHeaders, policy=HeaderPolicy(secure_cookies=settings.chat.secure_cookies))
