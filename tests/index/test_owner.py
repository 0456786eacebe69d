"""The index lent by its owner: a RemoteStore behaves as every Store, over a socket of the same account only; a dead
owner gives a clear French error and loses nothing. Real Qdrant Edge shards, real sockets, real processes."""

from __future__ import annotations

import os
import pickle
import shutil
import signal
import stat
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import test_store  # the Store contract suite, run here against a RemoteStore
from index.edge_store import EdgeStore
from index.owner import STORE_CALLS, OwnerServer, socket_path
from index.remote_store import RemoteStore, connect_owner
from index.store import CollectionInfo, Store, StoreError

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def owned(hash_embedder, tmp_path):
    """An embedded store lent on its socket, as ``collectivia serve`` does."""
    store = EdgeStore(tmp_path / "qdrant", CollectionInfo(hash_embedder.name, hash_embedder.dim))
    server = OwnerServer.for_store(store)
    yield store, server
    server.stop()
    store.close()


class TestRemoteStoreContract(test_store.TestStoreContract):
    @pytest.fixture
    def store(self, owned, hash_embedder):
        remote = connect_owner(owned[0].path, CollectionInfo(hash_embedder.name, hash_embedder.dim))
        assert isinstance(remote, RemoteStore)
        yield remote
        remote.close()


def test_remote_store_offers_every_operation_of_the_store_protocol(owned, hash_embedder):
    remote = connect_owner(owned[0].path, CollectionInfo(hash_embedder.name, hash_embedder.dim))
    methods = {name for name in dir(Store) if not name.startswith("_") and callable(getattr(Store, name))}
    assert methods - {"close"} <= STORE_CALLS
    assert all(callable(getattr(remote, name, None)) for name in methods)
    assert isinstance(remote, Store)


def test_writes_through_the_socket_are_seen_at_once_by_the_owner(owned, hash_embedder, bm25):
    store, _ = owned
    remote = connect_owner(store.path, CollectionInfo(hash_embedder.name, hash_embedder.dim))
    test_store._index(remote, hash_embedder, bm25, "d1", "v1", test_store.TEXTS)
    remote.close()  # closes the connection only: the owner's index stays open
    assert set(store.documents()) == {"d1"}
    assert test_store._search(store, hash_embedder, bm25, "permis de construire")[0].payload["text"] == test_store.TEXTS[1]


def test_another_embedder_is_refused_with_the_index_message(owned):
    with pytest.raises(StoreError, match="hash-64.*COLLECTIVIA_EMBEDDER"):
        connect_owner(owned[0].path, CollectionInfo("use-multilingual-v3", 512))


def test_socket_is_private_and_a_stale_one_is_replaced(hash_embedder, tmp_path):
    info = CollectionInfo(hash_embedder.name, hash_embedder.dim)
    path = socket_path(tmp_path / "qdrant")
    path.parent.mkdir()
    import socket

    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))  # left by a crashed chat: nobody listens on it
    stale.close()
    assert connect_owner(tmp_path / "qdrant", info) is None
    store = EdgeStore(tmp_path / "qdrant", info)
    server = OwnerServer.for_store(store)
    try:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600 and stat.S_ISSOCK(os.stat(path).st_mode)
        assert connect_owner(tmp_path / "qdrant", info).count() == 0
    finally:
        server.stop()
        store.close()
    assert not path.exists()


def test_only_store_operations_are_served(owned, hash_embedder, tmp_path):
    remote = connect_owner(owned[0].path, CollectionInfo(hash_embedder.name, hash_embedder.dim))
    for name in ("close", "_scroll", "__class__"):
        with pytest.raises(StoreError, match=f"« {name} » n'est pas une opération"):
            remote._call(name)
    assert remote.count() == 0  # the owner's index is still open
    # A frame that would run a command when loaded is refused before anything runs.
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    data = pickle.dumps(("call", "count", (Evil(),), {}))
    with remote._lock:
        remote._conn.sendall(struct.pack("!I", len(data)) + data)
        from index.owner import receive

        reply = receive(remote._conn)
    assert reply[0] == "error" and "type refusé" in reply[2] and "system" in reply[2]
    assert not marker.exists()


PEER = """
import pickle, socket, struct, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
data = pickle.dumps(("hello",))
s.settimeout(10)
try:
    s.sendall(struct.pack("!I", len(data)) + data)
    print("answered" if s.recv(4) else "closed")
except (BrokenPipeError, ConnectionResetError):
    print("closed")
"""


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root and setpriv")
def test_another_account_is_refused_even_if_the_socket_were_left_open(hash_embedder):
    folder = Path(tempfile.mkdtemp(prefix="collectivia-owner-", dir="/tmp"))
    try:
        os.chmod(folder, 0o755)  # a mistake of the administrator: the folder and the socket open to all
        store = EdgeStore(folder / "qdrant", CollectionInfo(hash_embedder.name, hash_embedder.dim))
        server = OwnerServer.for_store(store)
        os.chmod(folder / "qdrant", 0o755)
        os.chmod(socket_path(folder / "qdrant"), 0o777)
        python = "/usr/bin/python3"
        argv = [python, "-I", "-c", PEER, str(socket_path(folder / "qdrant"))]
        same = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        other = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", *argv],
                               capture_output=True, text=True, timeout=30)
        server.stop()
        store.close()
        assert same.stdout.strip() == "answered", same.stderr
        assert other.stdout.strip() == "closed", other.stderr
    finally:
        shutil.rmtree(folder, ignore_errors=True)


HOLDER = """
import sys, time
from pathlib import Path
from index.store import CollectionInfo
from index.edge_store import EdgeStore
from index.owner import OwnerServer
store = EdgeStore(Path(sys.argv[1]), CollectionInfo(sys.argv[2], int(sys.argv[3])))
if sys.argv[4] == "lend":
    OwnerServer.for_store(store)
print("ready", flush=True)
time.sleep(600)
"""


def _holder(path: Path, embedder, mode: str) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-c", HOLDER, str(path), embedder.name, str(embedder.dim), mode],
                               cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "ready", process.stderr.read()
    return process


def _settings(tmp_path):
    from collectivia.settings import Settings

    return Settings(_env_file=None, data_dir=tmp_path / "data", qdrant={"url": None})


def test_a_dead_owner_gives_a_french_error_and_loses_nothing(tmp_path, hash_embedder, bm25):
    from collectivia.wiring import build_store

    settings = _settings(tmp_path)
    EdgeStore(settings.qdrant_path, CollectionInfo(hash_embedder.name, hash_embedder.dim)).close()
    holder = _holder(settings.qdrant_path, hash_embedder, "lend")
    try:
        remote = build_store(settings, hash_embedder)  # the shard is held: the calls go to its owner
        assert isinstance(remote, RemoteStore) and remote.owner_pid == holder.pid
        test_store._index(remote, hash_embedder, bm25, "d1", "v1", test_store.TEXTS)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with pytest.raises(StoreError, match=f"le serveur Collectivia qui détient l'index \\(PID {holder.pid}\\) ne "
                                         "répond plus.*relancez la commande"):
        remote.documents()
    reopened = build_store(settings, hash_embedder)  # the stale socket is no obstacle once the owner is gone
    try:
        assert isinstance(reopened, EdgeStore)
        assert set(reopened.documents()) == {"d1"} and reopened.count() == 3
    finally:
        reopened.close()


def test_a_holder_that_does_not_lend_the_index_keeps_the_clear_error(tmp_path, hash_embedder):
    from collectivia.wiring import build_store

    settings = _settings(tmp_path)
    holder = _holder(settings.qdrant_path, hash_embedder, "keep")
    try:
        with pytest.raises(StoreError, match="déjà ouvert par un autre processus"):
            build_store(settings, hash_embedder)
    finally:
        holder.kill()
        holder.wait()
