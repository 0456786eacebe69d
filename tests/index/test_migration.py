"""An index built by the previous version (schema 1: BM25 vectors with Qdrant's IDF modifier) opens in this one:
brought to the current schema in place, nothing embedded again, nothing lost, also after a crash mid-way."""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict

import pytest
from qdrant_client import QdrantClient, models

from index.edge_store import EdgeStore
from index.server_store import ServerStore
from index.store import DENSE, KEYWORD_INDEXES, SCHEMA_VERSION, SPARSE, CollectionInfo, StoredPoint, point_id

EVERYONE = models.Filter(must=[models.FieldCondition(key="services", match=models.MatchAny(any=["tous"]))])
TEXTS = [f"Article {i} : le congé annuel, le permis de construire et la cantine scolaire, tarif {i} euros."
         for i in range(40)] + ["Le permis de construire est instruit en deux mois."]


def _points(embedder, bm25) -> list[StoredPoint]:
    return [StoredPoint(point_id(f"D{i // 7}", "v1", i), embedder.embed_documents([t])[0], bm25.embed_document(t),
                        {"doc_id": f"D{i // 7}", "version": "v1", "chunk_index": i, "text": t, "services": ["tous"],
                         "state": "live", "status": "en_vigueur", "doc_type": "procedure"})
            for i, t in enumerate(TEXTS)]


def _old_edge_index(path, info: CollectionInfo, points: list[StoredPoint]) -> None:
    """What the previous version wrote: the same shard, its BM25 vectors under the IDF modifier, schema 1."""
    import qdrant_edge as qe

    path.mkdir(parents=True)
    shard = qe.EdgeShard.create(str(path / "shard"), qe.EdgeConfig(
        vectors={DENSE: qe.EdgeVectorParams(size=info.dim, distance=qe.Distance.Cosine)},
        sparse_vectors={SPARSE: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)},
    ))
    for name in KEYWORD_INDEXES:
        shard.update(qe.UpdateOperation.create_field_index(name, qe.PayloadSchemaType.Keyword))
    shard.update(qe.UpdateOperation.upsert_points([
        qe.Point(p.id, {DENSE: [float(x) for x in p.dense], SPARSE: qe.SparseVector(*p.sparse)}, p.payload)
        for p in points]))
    shard.flush()
    shard.close()
    (path / EdgeStore.INFO_FILE).write_text(json.dumps({**asdict(info), "schema": 1}), encoding="utf-8")


def _ranking(store, embedder, bm25, mode: str) -> list[tuple[str, float]]:
    text = "permis de construire"
    # Prefetches wider than the 41 points: a cut through tied dense scores would drop either of two equal points.
    hits = store.query(filter=EVERYONE, dense=embedder.embed_query(text), sparse=bm25.embed_query(text), limit=100,
                       prefetch=100, mode=mode)
    return sorted(((h.id, round(h.score, 4)) for h in hits), key=lambda x: (-x[1], x[0]))  # ties: any order


@pytest.mark.parametrize("interrupted", [False, True])
def test_an_embedded_index_of_the_previous_schema_is_migrated_in_place(tmp_path, hash_embedder, bm25, interrupted):
    info = CollectionInfo(hash_embedder.name, hash_embedder.dim)
    points = _points(hash_embedder, bm25)
    fresh = EdgeStore(tmp_path / "fresh", info)
    fresh.upsert(points)
    for doc in {p.payload["doc_id"] for p in points}:
        fresh.activate(doc, "v1")
    old = tmp_path / "old"
    _old_edge_index(old, info, points)
    if interrupted:  # a crash after the complete copy was swapped in, before the info file said so
        (old / "shard").rename(old / "shard.schema-old")
        copy = EdgeStore(tmp_path / "copy", info)
        copy.upsert(points)
        for doc in {p.payload["doc_id"] for p in points}:
            copy.activate(doc, "v1")
        copy.close()
        (tmp_path / "copy" / "shard").rename(old / "shard")

    store = EdgeStore(old, info)
    try:
        assert store.count() == len(points)
        assert json.loads((old / EdgeStore.INFO_FILE).read_text())["schema"] == SCHEMA_VERSION
        assert sorted(p.name for p in old.iterdir()) == [EdgeStore.INFO_FILE, "shard"]
        for mode in ("bm25", "dense"):  # the same scores as an index built by this version
            assert _ranking(store, hash_embedder, bm25, mode) == _ranking(fresh, hash_embedder, bm25, mode)
        # RRF over tied ranks may order ties differently; the passages found are the same.
        assert ({i for i, _ in _ranking(store, hash_embedder, bm25, "hybrid")}
                == {i for i, _ in _ranking(fresh, hash_embedder, bm25, "hybrid")})
    finally:
        store.close()
        fresh.close()


def test_a_server_collection_of_the_previous_schema_is_migrated_in_place(hash_embedder, bm25):
    info = CollectionInfo(hash_embedder.name, hash_embedder.dim)
    client = QdrantClient(location=":memory:")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        client.create_collection(
            "c", vectors_config={DENSE: models.VectorParams(size=info.dim, distance=models.Distance.COSINE)},
            sparse_vectors_config={SPARSE: models.SparseVectorParams(modifier=models.Modifier.IDF)},
            metadata={"collectivia": {**asdict(info), "schema": 1}},
        )
        client.upsert("c", points=[models.PointStruct(
            id=p.id, vector={DENSE: list(p.dense), SPARSE: models.SparseVector(indices=list(p.sparse[0]),
                                                                            values=list(p.sparse[1]))},
            payload=p.payload) for p in _points(hash_embedder, bm25)])
        store = ServerStore(client, "c", info)
        config = client.get_collection("c").config
    assert config.params.sparse_vectors[SPARSE].modifier in (None, models.Modifier.NONE)
    assert config.metadata["collectivia"]["schema"] == SCHEMA_VERSION
    assert store.count() == len(TEXTS)
    assert [h.payload["text"] for h in store.query(filter=EVERYONE, dense=None, sparse=bm25.embed_query(
        "instruit en deux mois"), limit=1, mode="bm25")] == [TEXTS[-1]]
