"""The Store of a command run while the chat holds the embedded index: every call goes to the chat's own store.

See ``index.owner`` for the channel (a Unix socket of the same account only). Nothing is lost when the chat stops
in the middle of a command: an ingestion writes each document hidden, then makes it visible in one call, and skips
what is already indexed, so running the command again completes it.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path
from typing import Any, Sequence

from qdrant_client import models

from index.owner import ERRORS, peer_ids, receive, send, short_address, socket_path
from index.store import CollectionInfo, DocRecord, Hit, Mode, StoredPoint, StoreError

HELLO_TIMEOUT_S = 10.0


class OwnerAbsent(Exception):
    """No process listens on the owner socket (never started, or left by a crashed chat)."""


class RemoteStore:
    """A ``Store`` whose calls run in the process that holds the index (``collectivia serve``)."""

    def __init__(self, path: Path, info: CollectionInfo) -> None:
        self.path = Path(path)
        self.info = info
        self.owner_pid: int | None = None
        self._lock = threading.Lock()
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.settimeout(HELLO_TIMEOUT_S)
        try:
            with short_address(self.path) as address:
                conn.connect(address)
        except (FileNotFoundError, ConnectionRefusedError, NotADirectoryError) as exc:
            conn.close()
            raise OwnerAbsent(str(exc)) from exc
        except OSError as exc:
            conn.close()
            raise StoreError(f"la socket du chat qui détient l'index ({self.path}) est inaccessible ({exc})") from exc
        _, uid = peer_ids(conn)
        if uid != os.getuid():
            conn.close()
            raise StoreError(f"la socket {self.path} est tenue par le compte {uid}, pas par celui de cette commande "
                             f"({os.getuid()}) : refusée. Lancez la commande sous le compte du chat.")
        self._conn: socket.socket | None = conn
        hello = self._exchange(("hello",))
        conn.settimeout(None)  # an optimisation of a large index may take minutes
        self.owner_pid = hello["pid"]
        try:
            info.check_compatible(hello["info"], hello["index"])
        except StoreError:
            self.close()
            raise

    # -- the channel -----------------------------------------------------------------------------------------
    def _exchange(self, request: tuple) -> Any:
        with self._lock:
            if self._conn is None:
                raise StoreError(f"connexion à l'index fermée ({self.path})")
            try:
                send(self._conn, request)
                reply = receive(self._conn)
            except (OSError, EOFError) as exc:
                self._drop()
                pid = f" (PID {self.owner_pid})" if self.owner_pid else ""
                raise StoreError(
                    f"le serveur Collectivia qui détient l'index{pid} ne répond plus ({exc}) : rien n'est perdu, "
                    "relancez la commande (ce qui est déjà indexé est conservé et sauté) une fois le chat "
                    f"redémarré ou arrêté. Socket : {self.path}"
                ) from exc
        if reply[0] == "ok":
            return reply[1]
        raise ERRORS.get(reply[1], StoreError)(reply[2])

    def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        return self._exchange(("call", name, args, kwargs))

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None

    # -- the Store protocol ----------------------------------------------------------------------------------
    def upsert(self, points: Sequence[StoredPoint]) -> None:
        self._call("upsert", [
            StoredPoint(str(p.id), [float(x) for x in p.dense], _sparse(p.sparse), dict(p.payload)) for p in points
        ])

    def activate(self, doc_id: str, version: str) -> bool:
        return self._call("activate", doc_id, version)

    def discard_staged(self, doc_id: str | None = None) -> int:
        return self._call("discard_staged", doc_id)

    def delete_document(self, doc_id: str) -> None:
        self._call("delete_document", doc_id)

    def documents(self) -> dict[str, DocRecord]:
        return self._call("documents")

    def query(
        self,
        *,
        filter: models.Filter,
        dense: Sequence[float] | None,
        sparse: tuple[Sequence[int], Sequence[float]] | None,
        limit: int,
        prefetch: int = 40,
        mode: Mode = "hybrid",
        with_dense: bool = False,
    ) -> list[Hit]:
        return self._call("query", filter=filter, dense=None if dense is None else [float(x) for x in dense],
                          sparse=None if sparse is None else _sparse(sparse), limit=int(limit),
                          prefetch=int(prefetch), mode=mode, with_dense=with_dense)

    def fetch(self, *, filter: models.Filter, limit: int = 100) -> list[Hit]:
        return self._call("fetch", filter=filter, limit=int(limit))

    def first_chunk(self, doc_id: str, *, filter: models.Filter | None) -> Hit | None:
        return self._call("first_chunk", doc_id, filter=filter)

    def count(self, filter: models.Filter | None = None) -> int:
        return self._call("count", filter)

    def optimize(self) -> None:
        self._call("optimize")

    def close(self) -> None:
        """Close this command's connection; the index stays open in the chat."""
        with self._lock:
            self._drop()


def _sparse(sparse: tuple[Sequence[int], Sequence[float]]) -> tuple[list[int], list[float]]:
    return [int(i) for i in sparse[0]], [float(v) for v in sparse[1]]


def connect_owner(index_dir: Path, info: CollectionInfo, *, wait_s: float = 0.0) -> RemoteStore | None:
    """The store of the process that holds the index in ``index_dir``, or None when none answers within ``wait_s``
    (a chat that has just opened the index starts listening a moment later)."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return RemoteStore(socket_path(index_dir), info)
        except OwnerAbsent:
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.2)
