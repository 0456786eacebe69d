"""What the chat process holds once: settings, users, and the one embedder / store / assistant / ingestor.

The embedded Qdrant Edge shard can be opened by one process only, and once: every part of the chat (answers,
uploads, the document route) goes through the single ``Backend`` of the process, which also lends the index to
the other commands (``collectivia ingest``, ``search``…) while it holds it (``index.owner``). The models and the
index load in a background thread at start-up, so that the login page is served at once; the first question waits
for them.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any, Mapping

from qdrant_client import models

from chat_ui.audit import AuditLog
from chat_ui.auth import UserDirectory, collectivia_user
from collectivia.settings import Settings
from rag.access import Scope, User, access_filter

logger = logging.getLogger(__name__)


class BackendError(RuntimeError):
    """The index or the models could not be loaded; the message says why, in French."""


class Backend:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.data_dir = Path(settings.data_dir).resolve()
        self.directory = UserDirectory(settings.users)
        self.oidc_login = settings.chat.oidc.enabled
        self.password_login = not self.oidc_login
        self.audit = AuditLog(self.data_dir / "audit" / "documents.jsonl")
        self.uploads_dir = self.data_dir / "uploads"
        self.embedder = None
        self.store = None
        self.assistant = None
        self.ingestor = None
        self.owner = None  # lends the embedded index to the other commands (index.owner)
        self._error: BaseException | None = None
        self._ready = threading.Event()
        self._started = False
        self._start_lock = threading.Lock()

    # -- loading -------------------------------------------------------------------------------------------------
    def start_loading(self) -> None:
        with self._start_lock:
            if self._started:
                return
            self._started = True
        threading.Thread(target=self._load, name="collectivia-load", daemon=True).start()

    def _load(self) -> None:
        from collectivia.wiring import build_assistant, build_embedder, build_ingestor, build_store

        try:
            self.embedder = build_embedder(self.settings)
            self.store = build_store(self.settings, self.embedder, own=True)
            self._lend_index()
            self.assistant = build_assistant(self.settings, self.embedder, self.store)
            self.ingestor = build_ingestor(self.settings, self.embedder, self.store)
            self._settle_uploads()
            self.embedder.embed_query("échauffement")  # first call allocates; not on an agent's time
        except BaseException as exc:  # reported to every request instead of killing the server
            logger.error("chargement de l'index ou des modèles impossible : %s", exc)
            self._error = exc
        finally:
            self._ready.set()

    def wait_ready(self, timeout: float | None = None) -> None:
        self.start_loading()
        if not self._ready.wait(timeout):
            raise BackendError("l'index et les modèles sont encore en cours de chargement ; réessayez dans un instant")
        if self._error is not None:
            raise BackendError(f"l'index ou les modèles n'ont pas pu être chargés : {self._error}")

    @property
    def ready(self) -> bool:
        return self._ready.is_set() and self._error is None

    @property
    def extractive(self) -> bool:
        return not self.settings.llm.enabled

    def _lend_index(self) -> None:
        """While the chat holds the embedded index, ``collectivia ingest``, ``search``… send their calls to it."""
        from index.owner import OwnerServer

        try:
            self.owner = OwnerServer.for_store(self.store)
        except Exception as exc:  # never keeps the chat from answering; the commands then say the index is busy
            logger.error("index non prêté aux autres commandes (%s : %s)", type(exc).__name__, exc)

    def close(self) -> None:
        owner, self.owner = self.owner, None
        if owner is not None:  # first: no command writes into a closing index
            owner.stop()
        if self.store is not None:
            try:
                self.store.close()
            except Exception as exc:  # closing twice, or a server store gone
                logger.warning("fermeture de l'index : %s", exc)

    # -- users ---------------------------------------------------------------------------------------------------
    def user_of(self, identifier: str | None, metadata: Mapping[str, Any] | None) -> User | None:
        return collectivia_user(identifier, metadata, directory=self.directory,
                                password_login=self.password_login, oidc_login=self.oidc_login)

    # -- documents -----------------------------------------------------------------------------------------------
    def document_payload(self, doc_id: str) -> dict[str, Any] | None:
        """The metadata of a live document (its first chunk's payload), or None, whoever may see it: for the
        management dialogs, which check the manage rights (``rag.access.can_manage``) on it."""
        self.wait_ready(timeout=120)
        return payload_of(self.store, doc_id)

    def visible_payload(self, user: User, doc_id: str) -> dict[str, Any] | None:
        """The metadata of a live document that ``user`` may open (repealed ones included), or None: the store
        applies the user's access filter."""
        self.wait_ready(timeout=120)
        return payload_of(self.store, doc_id, access_filter(user, Scope(include_repealed=True)))

    def _settle_uploads(self) -> None:
        """Uploads a crash interrupted: set aside and audited before anyone can upload again."""
        from chat_ui.uploads import DocumentManager

        try:
            DocumentManager(self).settle_interrupted()
        except Exception as exc:  # never keeps the chat from starting; said in the log
            logger.error("dépôts interrompus non traités (%s : %s)", type(exc).__name__, exc)


def payload_of(store, doc_id: str, within: models.Filter | None = None) -> dict[str, Any] | None:
    """The first chunk's payload of a document in ``store`` (within an access filter when given), or None."""
    hit = store.first_chunk(doc_id, filter=within)
    return dict(hit.payload) if hit else None


_backend: Backend | None = None
_backend_lock = threading.Lock()


def configure(settings: Settings) -> Backend:
    global _backend
    with _backend_lock:
        _backend = Backend(settings)
        return _backend


def get_backend() -> Backend:
    global _backend
    with _backend_lock:
        if _backend is None:
            _backend = Backend(Settings())
        return _backend
