"""The owner of the embedded index lends its store to the other commands, over a socket only its own account may use.

A Qdrant Edge shard opens in one process only. While ``collectivia serve`` holds it, ``collectivia ingest``,
``search``, ``ask``… hand their *store calls* to the chat instead (``index.remote_store.RemoteStore``): parsing,
embedding and progress bars stay in the command's process; only ``upsert``, ``query``, ``documents``… cross over, to
the very ``EdgeStore`` instance the chat answers from (its lock makes each call atomic), so the chat sees what the
command indexed at once.

The channel: a Unix domain socket ``owner.sock`` next to the index (``<data_dir>/qdrant/owner.sock``), created under
a 077 umask and set to mode 600, in a data directory that is the chat account's alone; on top of that every
connection is checked with ``SO_PEERCRED`` and one from another account is closed unanswered. Frames are a 4-byte
length then a pickle. Pickle runs code of the sender's choosing when loaded, which is acceptable only because the
other end is the same Unix account (that could run any code as itself anyway); even so, both ends load frames with
an unpickler that rebuilds only the store's own value types and Qdrant's filter models, and the server calls
nothing but the Store protocol's methods (never ``close``: a command closing its store closes its connection).
"""

from __future__ import annotations

import io
import logging
import os
import pickle
import socket
import stat
import struct
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from index.store import Store, StoreError

logger = logging.getLogger(__name__)

SOCKET_NAME = "owner.sock"
STORE_CALLS = frozenset({"upsert", "activate", "discard_staged", "delete_document", "documents", "query", "fetch",
                         "first_chunk", "count", "optimize"})
"""What a client may call: the Store protocol's methods, less ``close`` (tests check it against the protocol)."""
ERRORS = {"StoreError": StoreError, "ValueError": ValueError, "TypeError": TypeError, "KeyError": KeyError}
MAX_FRAME = 512 * 1024 * 1024
_HEADER = struct.Struct("!I")
_PEERCRED = struct.Struct("3i")  # pid, uid, gid
_SAFE = {
    "index.store": {"StoredPoint", "Hit", "DocRecord", "CollectionInfo"},
    "builtins": {"set", "frozenset"},
    "datetime": {"date", "datetime", "time", "timedelta", "timezone"},
}
_QDRANT_MODELS = "qdrant_client.http.models.models"


def socket_path(index_dir: Path) -> Path:
    """Where the owner of the index in ``index_dir`` listens."""
    return Path(index_dir) / SOCKET_NAME


@contextmanager
def short_address(path: Path) -> Iterator[str]:
    """``path`` as an AF_UNIX address: through ``/proc/self/fd`` when it is longer than the 107 bytes allowed."""
    text = str(path)
    if len(os.fsencode(text)) < 100:
        yield text
        return
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{fd}/{path.name}"
    finally:
        os.close(fd)


def peer_ids(conn: socket.socket) -> tuple[int, int]:
    """(pid, uid) of the process at the other end of a Unix socket, as the kernel saw it."""
    pid, uid, _ = _PEERCRED.unpack(conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size))
    return pid, uid


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if name in _SAFE.get(module, ()):
            return super().find_class(module, name)
        if module == _QDRANT_MODELS:  # pydantic data classes and enums of Qdrant's filters
            found = super().find_class(module, name)
            if isinstance(found, type):
                return found
        raise pickle.UnpicklingError(f"type refusé dans un échange avec le détenteur de l'index : {module}.{name}")


def send(conn: socket.socket, value: Any) -> None:
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    conn.sendall(_HEADER.pack(len(data)) + data)


def _exactly(conn: socket.socket, n: int) -> bytes:
    chunks, left = [], n
    while left:
        chunk = conn.recv(min(left, 1 << 20))
        if not chunk:
            raise EOFError("connexion fermée")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def receive(conn: socket.socket) -> Any:
    (size,) = _HEADER.unpack(_exactly(conn, _HEADER.size))
    if size > MAX_FRAME:
        raise pickle.UnpicklingError(f"message de {size} octets refusé (au plus {MAX_FRAME})")
    return _Unpickler(io.BytesIO(_exactly(conn, size))).load()


class OwnerServer:
    """Serves the calls of the other commands to ``store``, on ``socket_path(store.path)``, one thread per client."""

    def __init__(self, store: Store, path: Path) -> None:
        self.store = store
        self.path = Path(path)
        self._listener: socket.socket | None = None
        self._inode: tuple[int, int] | None = None
        self._clients: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._stopped = threading.Event()

    @classmethod
    def for_store(cls, store: Store) -> "OwnerServer | None":
        """Started for an embedded store (a Qdrant server needs none: every process reaches it itself)."""
        from index.edge_store import EdgeStore

        if not isinstance(store, EdgeStore):
            return None
        return cls(store, socket_path(store.path)).start()

    def start(self) -> "OwnerServer":
        self._remove_stale()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with short_address(self.path) as address:
            previous = os.umask(0o077)  # the socket file is never, even for an instant, open to others
            try:
                listener.bind(address)
            finally:
                os.umask(previous)
        os.chmod(self.path, 0o600)
        st = os.lstat(self.path)
        self._inode = (st.st_dev, st.st_ino)
        listener.listen(16)
        self._listener = listener
        threading.Thread(target=self._accept, name="collectivia-owner", daemon=True).start()
        logger.info("index prêté aux autres commandes sur %s", self.path)
        return self

    def _remove_stale(self) -> None:
        """A socket left by a crashed owner: this process holds the shard now, so no one else can be listening."""
        try:
            mode = os.lstat(self.path).st_mode
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(mode):
            raise StoreError(f"{self.path} existe et n'est pas une socket : déplacez ou supprimez ce fichier")
        self.path.unlink()

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                break  # closed by stop()
            pid, uid = peer_ids(conn)
            if uid != os.getuid():
                logger.warning("connexion refusée à l'index : processus %s du compte %s (seul le compte %s est admis)",
                               pid, uid, os.getuid())
                conn.close()
                continue
            with self._lock:
                if self._stopped.is_set():
                    conn.close()
                    break
                self._clients.add(conn)
            threading.Thread(target=self._serve, args=(conn,), name=f"collectivia-owner-{pid}", daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            while True:
                try:
                    request = receive(conn)
                except (EOFError, OSError):
                    return
                except Exception as exc:  # an undecodable or refused frame: answered, then the connection ends
                    send(conn, ("error", "StoreError", f"message refusé par le détenteur de l'index ({exc})"))
                    return
                answer = self._answer(request)
                try:
                    send(conn, answer)
                except (pickle.PicklingError, TypeError, AttributeError) as exc:  # a value that cannot travel
                    send(conn, ("error", "StoreError", f"réponse de l'index intransmissible ({exc})"))
        except OSError:
            return
        finally:
            with self._lock:
                self._clients.discard(conn)
            conn.close()

    def _answer(self, request: Any) -> tuple:
        if request == ("hello",):
            return ("ok", {"info": self.store.info, "pid": os.getpid(), "index": str(self.path.parent)})
        if not (isinstance(request, tuple) and len(request) == 4 and request[0] == "call"
                and isinstance(request[2], tuple) and isinstance(request[3], dict)):
            return ("error", "StoreError", "message refusé par le détenteur de l'index : appel mal formé")
        _, name, args, kwargs = request
        if name not in STORE_CALLS:
            return ("error", "StoreError", f"appel refusé par le détenteur de l'index : « {name} » n'est pas une "
                                           "opération de l'index")
        try:
            return ("ok", getattr(self.store, name)(*args, **kwargs))
        except Exception as exc:
            kind = type(exc).__name__
            if kind in ERRORS:
                return ("error", kind, str(exc))
            return ("error", "StoreError", f"l'index a refusé « {name} » ({kind} : {exc})")

    def stop(self) -> None:
        """Stop listening, end every connection (their commands get a clear error), remove the socket file."""
        with self._lock:
            if self._stopped.is_set():
                return
            self._stopped.set()
            clients, self._clients = list(self._clients), set()
        if self._listener is not None:
            try:
                self._listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._listener.close()
        for conn in clients:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        try:
            st = os.lstat(self.path)
            if (st.st_dev, st.st_ino) == self._inode:
                self.path.unlink()
        except FileNotFoundError:
            pass
