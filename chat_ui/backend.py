"""What the chat process holds once: settings, users, and the one embedder / store / assistant / ingestor.

The embedded Qdrant Edge shard can be opened by one process only, and once: every part of the chat (answers,
uploads, the document route) goes through the single ``Backend`` of the process. The models and the index load in
a background thread at start-up, so that the login page is served at once; the first question waits for them.
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
from rag.access import User

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
            self.store = build_store(self.settings, self.embedder)
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

    def close(self) -> None:
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
        """The metadata of a live document (its first chunk's payload), or None."""
        self.wait_ready(timeout=120)
        return payload_of(self.store, doc_id)

    def _settle_uploads(self) -> None:
        """Uploads a crash interrupted: set aside and audited before anyone can upload again."""
        from chat_ui.uploads import DocumentManager

        try:
            DocumentManager(self).settle_interrupted()
        except Exception as exc:  # never keeps the chat from starting; said in the log
            logger.error("dépôts interrompus non traités (%s : %s)", type(exc).__name__, exc)


def payload_of(store, doc_id: str) -> dict[str, Any] | None:
    """The first chunk's payload of a document in ``store``, or None."""
    hits = store.fetch(
        filter=models.Filter(must=[
            models.FieldCondition(key="doc_id", match=models.MatchValue(value=doc_id)),
            models.FieldCondition(key="chunk_index", match=models.MatchValue(value=0)),
        ]),
        limit=1,
    )
    return dict(hits[0].payload) if hits else None


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
