from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from index.offline import configure_offline  # noqa: E402

configure_offline()

from fixtures import HashEmbedder  # noqa: E402


@pytest.fixture(scope="session")
def hash_embedder() -> HashEmbedder:
    return HashEmbedder()


@pytest.fixture(scope="session")
def use_embedder():
    from index.embed import UseEmbedder

    return UseEmbedder(threads=2)


@pytest.fixture(scope="session")
def bm25():
    from index.embed import Bm25Encoder

    return Bm25Encoder()


def make_store(kind: str, info, tmp_path: Path):
    from index.edge_store import EdgeStore
    from index.server_store import ServerStore
    if kind == "edge":
        return EdgeStore(tmp_path / "qdrant", info)
    from qdrant_client import QdrantClient

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return ServerStore(QdrantClient(location=":memory:"), "test", info)


@pytest.fixture(params=["edge", "server"])
def store_kind(request) -> str:
    return request.param


@pytest.fixture
def store(store_kind, hash_embedder, tmp_path):
    from index.store import CollectionInfo
    s = make_store(store_kind, CollectionInfo(hash_embedder.name, hash_embedder.dim), tmp_path)
    yield s
    s.close()


@pytest.fixture
def cli_env(tmp_path) -> dict[str, str]:
    """Environment for running the real CLI in a subprocess on a fresh data directory."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COLLECTIVIA_")}
    env["COLLECTIVIA_DATA_DIR"] = str(tmp_path / "data")
    env["COLLECTIVIA_USERS"] = str(ROOT / "tests" / "data" / "users.yaml")
    return env
