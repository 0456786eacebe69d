"""``collectivia serve``: prepare Chainlit's folder, the secret and the database, then run the chat with uvicorn.

Order matters: Chainlit reads its folder (``CHAINLIT_APP_ROOT``) and configuration when it is first imported, so
everything is written before the first ``import chainlit``. Headless: no browser is opened.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import sys
from pathlib import Path

from chat_ui.assets import patch_chainlit_html, prepare_app_root
from chat_ui.datalayer import HistoryDatabaseError, database_url, ensure_schema
from chat_ui.history_db import DAMAGED_EXIT_CODE
from chat_ui.permissions import private_umask, tighten
from collectivia.settings import Settings
from index.offline import configure_offline

BUILT_IN_PROVIDERS = ("github", "google", "azure-ad", "azure-ad-hybrid", "okta", "auth0", "descope", "aws-cognito",
                      "gitlab", "keycloak")
OIDC_VARIABLES = ("OAUTH_GENERIC_CLIENT_ID", "OAUTH_GENERIC_CLIENT_SECRET", "OAUTH_GENERIC_AUTH_URL",
                  "OAUTH_GENERIC_TOKEN_URL", "OAUTH_GENERIC_USER_INFO_URL", "OAUTH_GENERIC_SCOPES")


class ServeError(RuntimeError):
    """The chat cannot start; the message says why and what to do, in French; ``code`` is the exit status."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


def auth_secret(settings: Settings, folder: Path) -> str:
    """The secret signing session tokens: the setting, or one generated once and kept (mode 600) in ``folder``."""
    if settings.chat.auth_secret is not None and settings.chat.auth_secret.get_secret_value():
        return settings.chat.auth_secret.get_secret_value()
    path = folder / "auth_secret"
    if path.exists():
        value = path.read_text(encoding="utf-8").strip()
        if value:
            return value
    folder.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(value + "\n")
    return value


def check_login_setup(settings: Settings) -> None:
    if settings.chat.oidc.enabled:
        missing = [v for v in OIDC_VARIABLES if not os.environ.get(v)]
        if missing:
            raise ServeError(
                "COLLECTIVIA_CHAT__OIDC__ENABLED=true mais le fournisseur OpenID Connect n'est pas configuré : "
                f"variables manquantes {', '.join(missing)} (voir docs/chat.md)"
            )
        name = os.environ.get("OAUTH_GENERIC_NAME", "generic")
        if name in BUILT_IN_PROVIDERS:
            raise ServeError(
                f"OAUTH_GENERIC_NAME={name} est le nom d'un fournisseur intégré à Chainlit, qui prendrait la place du "
                "fournisseur OpenID Connect générique : choisissez un autre nom (par exemple « sso » ou « proconnect ») "
                "et déclarez l'adresse de retour …/auth/oauth/<nom>/callback chez le fournisseur"
            )
    elif not Path(settings.users).is_file():
        raise ServeError(
            f"fichier des utilisateurs introuvable : {settings.users} (réglez COLLECTIVIA_USERS, créez des comptes "
            "avec « collectivia users add », ou activez OpenID Connect)"
        )


def check_port(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ServeError(f"impossible d'écouter sur {host}:{port} ({exc.strerror}) : port déjà utilisé ? "
                             "Choisissez-en un autre avec --port") from exc


def prepare(settings: Settings) -> Path:
    """Write Chainlit's folder under the data directory, set its environment, create the history tables."""
    if "chainlit" in sys.modules:
        raise ServeError("Chainlit a été importé avant la préparation du chat : lancez le chat par « collectivia serve »")
    configure_offline()
    data_dir = Path(settings.data_dir).resolve()
    private_umask()  # everything written from now on is the chat account's alone
    os.environ["CHAINLIT_APP_ROOT"] = str(data_dir / "chat")
    root = prepare_app_root(data_dir / "chat", public_url=os.environ.get("CHAINLIT_URL"),
                            max_upload_mb=settings.limits.max_file_mb)
    os.environ["CHAINLIT_AUTH_SECRET"] = auth_secret(settings, root)
    os.environ.setdefault("CHAINLIT_TELEMETRY", "false")
    try:
        asyncio.run(ensure_schema(database_url(settings.chat.database_url, data_dir)))
    except HistoryDatabaseError as exc:
        raise ServeError(str(exc), code=DAMAGED_EXIT_CODE if exc.damaged else 2) from None
    tighten(data_dir)  # what older versions, a backup or copied files left readable by others
    if "chainlit" in sys.modules:  # would have read another folder
        raise ServeError("Chainlit a été importé pendant la préparation du chat (erreur de programmation)")
    return root


def build_app(settings: Settings):
    """The ASGI app: Chainlit's, with the document route, the login guard and the sovereign page."""
    from chat_ui import backend as backend_module

    backend = backend_module.configure(settings)
    from chainlit.config import config

    config.run.headless = True
    config.run.host = settings.chat.host
    config.run.port = settings.chat.port
    from chainlit.server import app

    import chat_ui.app as hooks  # registers the hooks on Chainlit's config
    from chainlit.auth import ensure_jwt_secret, require_login
    from chat_ui import files
    from chat_ui import edge
    from chat_ui.guard import LoginRequired

    config.run.module_name = hooks.__file__
    ensure_jwt_secret()
    if not require_login():
        raise ServeError("aucune méthode de connexion active : le chat ne démarre pas sans authentification")
    patch_chainlit_html()
    files.install(app)

    from chat_ui.uploads import DocumentManager

    documents = DocumentManager(backend)

    def may_upload(cl_user) -> bool:  # a refusal (403) is audited
        return documents.allows_file_upload(cl_user.identifier, backend.user_of(cl_user.identifier, cl_user.metadata))

    from chat_ui.upload_audit import UploadRefusalAudit

    app.add_middleware(UploadRefusalAudit, reason=documents.check_file_name, audit=backend.audit)  # inside the guard
    app.add_middleware(LoginRequired, may_upload=may_upload, **edge.guard_options(settings))
    edge.install(app, settings, audit=backend.audit)
    return app


def run(settings: Settings) -> None:
    """Start the chat and serve until interrupted."""
    import uvicorn

    check_login_setup(settings)
    check_port(settings.chat.host, settings.chat.port)
    prepare(settings)
    app = build_app(settings)
    login = "OpenID Connect" if settings.chat.oidc.enabled else f"mot de passe ({settings.users})"
    shown = "localhost" if settings.chat.host in ("127.0.0.1", "0.0.0.0") else settings.chat.host
    print(f"Collectivia : chat sur http://{shown}:{settings.chat.port} — connexion par {login}, "
          f"données dans {Path(settings.data_dir).resolve()}", file=sys.stderr, flush=True)
    config = uvicorn.Config(app, host=settings.chat.host, port=settings.chat.port, log_level="warning",
                            ws="auto", ws_per_message_deflate=True, proxy_headers=True)
    try:
        asyncio.run(uvicorn.Server(config).serve())
    finally:  # also when the shutdown hooks did not run: the owner socket removed, the index flushed
        from chat_ui.backend import get_backend

        get_backend().close()
