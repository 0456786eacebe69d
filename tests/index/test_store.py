"""One contract for every Store: Qdrant Edge (embedded) and a Qdrant server through qdrant-client (in memory)."""

from __future__ import annotations

import warnings

import pytest
from qdrant_client import QdrantClient, models

from index.store import KEYWORD_INDEXES, CollectionInfo, EngineTuning, StoredPoint, StoreError, point_id
from index.edge_store import EdgeStore
from index.server_store import ServerStore
EVERYONE = models.Filter(must=[models.FieldCondition(key="services", match=models.MatchAny(any=["rh", "tous", "urbanisme"]))])


def _points(embedder, bm25, doc_id: str, version: str, texts: list[str], services=("rh",), **extra) -> list[StoredPoint]:
    dense = embedder.embed_documents(texts)
    return [
        StoredPoint(
            id=point_id(doc_id, version, i),
            dense=dense[i],
            sparse=bm25.embed_document(t),
            payload={"doc_id": doc_id, "version": version, "chunk_index": i, "text": t, "services": list(services),
                     "title": f"Titre {doc_id}", "source": f"/docs/{doc_id}", "doc_type": "procedure",
                     "status": "en_vigueur", **extra},
        )
        for i, t in enumerate(texts)
    ]


def _index(store, embedder, bm25, doc_id, version, texts, **kw):
    store.upsert(_points(embedder, bm25, doc_id, version, texts, **kw))
    store.activate(doc_id, version)


def _search(store, embedder, bm25, text, flt=EVERYONE, mode="hybrid", limit=10):
    return store.query(filter=flt, dense=embedder.embed_query(text), sparse=bm25.embed_query(text), limit=limit, mode=mode)


TEXTS = [
    "Le congé annuel d'un agent est de vingt-cinq jours ouvrés.",
    "Le permis de construire est instruit en deux mois.",
    "La cantine scolaire coûte trois euros soixante-cinq.",
]


class TestStoreContract:
    def test_staged_points_are_invisible_until_activated(self, store, hash_embedder, bm25):
        store.upsert(_points(hash_embedder, bm25, "d1", "v1", TEXTS))
        assert store.count() == 0
        assert _search(store, hash_embedder, bm25, "congé annuel") == []
        assert store.documents() == {}
        store.activate("d1", "v1")
        assert store.count() == 3
        assert set(store.documents()) == {"d1"}

    def test_hybrid_dense_and_bm25_find_the_matching_chunk(self, store, hash_embedder, bm25):
        _index(store, hash_embedder, bm25, "d1", "v1", TEXTS)
        for mode in ("hybrid", "dense", "bm25"):
            hits = _search(store, hash_embedder, bm25, "congé annuel agent", mode=mode)
            assert hits, mode
            assert hits[0].payload["text"] == TEXTS[0], mode

    def test_french_bm25_matches_inflected_and_unaccented_forms(self, store, hash_embedder, bm25):
        _index(store, hash_embedder, bm25, "d1", "v1", TEXTS)
        hits = _search(store, hash_embedder, bm25, "conges annuels", mode="bm25")
        assert [h.payload["text"] for h in hits] == [TEXTS[0]]

    def test_filter_is_applied_inside_the_query(self, store, hash_embedder, bm25):
        _index(store, hash_embedder, bm25, "rh-doc", "v1", TEXTS[:1], services=("rh",))
        _index(store, hash_embedder, bm25, "urba-doc", "v1", TEXTS[:1], services=("urbanisme",))
        only_urba = models.Filter(must=[models.FieldCondition(key="services", match=models.MatchAny(any=["urbanisme"]))])
        for mode in ("hybrid", "dense", "bm25"):
            hits = _search(store, hash_embedder, bm25, TEXTS[0], flt=only_urba, mode=mode, limit=1)
            assert [h.payload["doc_id"] for h in hits] == ["urba-doc"], mode

    def test_query_without_filter_is_refused(self, store, hash_embedder, bm25):
        _index(store, hash_embedder, bm25, "d1", "v1", TEXTS)
        with pytest.raises(StoreError):
            store.query(filter=None, dense=hash_embedder.embed_query("x"), sparse=bm25.embed_query("x"), limit=3)

    def test_activate_replaces_every_chunk_of_the_old_version(self, store, hash_embedder, bm25):
        _index(store, hash_embedder, bm25, "d1", "v1", TEXTS)
        _index(store, hash_embedder, bm25, "d1", "v2", ["Nouvelle version unique du document."])
        hits = store.fetch(filter=models.Filter(must=[models.FieldCondition(key="doc_id", match=models.MatchValue(value="d1"))]))
        assert {h.payload["version"] for h in hits} == {"v2"}
        assert store.count() == 1
        assert store.documents()["d1"].version == "v2"

    def test_a_new_version_stays_hidden_while_being_written(self, store, hash_embedder, bm25):
        _index(store, hash_embedder, bm25, "d1", "v1", TEXTS)
        store.upsert(_points(hash_embedder, bm25, "d1", "v2", ["Texte de la version deux."]))
        versions = {h.payload["version"] for h in _search(store, hash_embedder, bm25, "version deux texte")}
        assert versions == {"v1"}

    def test_discard_staged_removes_leftovers_only(self, store, hash_embedder, bm25):
        _index(store, hash_embedder, bm25, "d1", "v1", TEXTS)
        store.upsert(_points(hash_embedder, bm25, "d2", "v1", TEXTS[:2]))
        assert store.discard_staged() == 2
        assert store.count() == 3
        assert store.activate("d2", "v1") is False  # nothing left to activate
        assert set(store.documents()) == {"d1"}

    def test_activating_a_version_another_writer_discarded_keeps_the_old_one(self, store, hash_embedder, bm25):
        _index(store, hash_embedder, bm25, "d1", "v1", TEXTS)
        store.upsert(_points(hash_embedder, bm25, "d1", "v2", TEXTS[:2]))
        store.discard_staged()  # another writer's clean-up, between this writer's upsert and activate
        assert store.activate("d1", "v2") is False
        assert store.documents()["d1"].version == "v1"
        assert store.count() == 3

    def test_delete_document(self, store, hash_embedder, bm25):
        _index(store, hash_embedder, bm25, "d1", "v1", TEXTS)
        _index(store, hash_embedder, bm25, "d2", "v1", TEXTS)
        store.delete_document("d1")
        assert set(store.documents()) == {"d2"}
        assert store.count() == 3

    def test_documents_lists_one_record_per_live_document(self, store, hash_embedder, bm25):
        _index(store, hash_embedder, bm25, "d1", "v1", TEXTS, services=("rh", "finances"))
        record = store.documents()["d1"]
        assert (record.version, record.title, record.services, record.source) == ("v1", "Titre d1", ("rh", "finances"), "/docs/d1")

    def test_payload_filters_on_indexed_fields(self, store, hash_embedder, bm25):
        _index(store, hash_embedder, bm25, "d1", "v1", TEXTS, services=("rh",))
        _index(store, hash_embedder, bm25, "d2", "v1", TEXTS[:1], services=("tous",), status="abroge")
        not_repealed = models.Filter(
            must=[models.FieldCondition(key="services", match=models.MatchAny(any=["rh", "tous"]))],
            must_not=[models.FieldCondition(key="status", match=models.MatchValue(value="abroge"))],
        )
        assert {h.payload["doc_id"] for h in _search(store, hash_embedder, bm25, TEXTS[0], flt=not_repealed)} == {"d1"}
        assert store.count(models.Filter(must=[models.FieldCondition(key="doc_id", match=models.MatchValue(value="d2"))])) == 1

    def test_first_chunk_is_the_live_first_chunk_of_the_document_within_the_filter(self, store, hash_embedder, bm25):
        _index(store, hash_embedder, bm25, "d1", "v1", TEXTS, services=("rh",))
        _index(store, hash_embedder, bm25, "d1", "v2", TEXTS[1:], services=("rh",))
        store.upsert(_points(hash_embedder, bm25, "d1", "v3", ["Version en cours d'écriture."]))  # staged: unseen
        _index(store, hash_embedder, bm25, "old", "v1", TEXTS[:2], services=("rh",), status="abroge")
        hit = store.first_chunk("d1", filter=None)
        assert (hit.payload["version"], hit.payload["chunk_index"], hit.payload["text"]) == ("v2", 0, TEXTS[1])
        rh_in_force = models.Filter(must=[models.FieldCondition(key="services", match=models.MatchAny(any=["rh", "tous"]))],
                                    must_not=[models.FieldCondition(key="status", match=models.MatchValue(value="abroge"))])
        urbanisme = models.Filter(must=[models.FieldCondition(key="services", match=models.MatchAny(any=["urbanisme"]))])
        assert store.first_chunk("d1", filter=rh_in_force).payload["doc_id"] == "d1"
        assert store.first_chunk("d1", filter=urbanisme) is None  # outside the filter: as if it did not exist
        assert store.first_chunk("old", filter=rh_in_force) is None
        assert store.first_chunk("old", filter=None).payload["text"] == TEXTS[0]
        assert store.first_chunk("absent", filter=None) is None
        store.delete_document("d1")
        assert store.first_chunk("d1", filter=None) is None

    def test_many_points_scroll_past_one_page(self, store, hash_embedder, bm25):
        texts = [f"Paragraphe numéro {i} du règlement intérieur." for i in range(1100)]
        _index(store, hash_embedder, bm25, "big", "v1", texts)
        assert store.count() == 1100
        neighbours = store.fetch(filter=models.Filter(must=[models.FieldCondition(key="doc_id", match=models.MatchValue(value="big"))]), limit=2000)
        assert len(neighbours) == 1100


class TestCollectionIdentity:
    def test_reopening_with_another_embedder_is_an_error_that_says_what_to_do(self, store_kind, tmp_path):
        first = CollectionInfo("use-multilingual-v3", 512)
        if store_kind == "edge":
            EdgeStore(tmp_path / "q", first).close()
            with pytest.raises(StoreError, match="use-multilingual-v3.*réindexez|COLLECTIVIA_EMBEDDER"):
                EdgeStore(tmp_path / "q", CollectionInfo("st:all-MiniLM-L6-v2", 384))
        else:
            client = QdrantClient(location=":memory:")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                ServerStore(client, "c", first)
                with pytest.raises(StoreError, match="use-multilingual-v3"):
                    ServerStore(client, "c", CollectionInfo("st:all-MiniLM-L6-v2", 384))

    def test_reopening_keeps_the_data(self, store_kind, tmp_path, hash_embedder, bm25):
        info = CollectionInfo(hash_embedder.name, hash_embedder.dim)
        if store_kind == "server":
            client = QdrantClient(location=":memory:")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                s = ServerStore(client, "c", info)
                _index(s, hash_embedder, bm25, "d1", "v1", TEXTS)
                assert ServerStore(client, "c", info).count() == 3
            return
        s = EdgeStore(tmp_path / "q", info)
        _index(s, hash_embedder, bm25, "d1", "v1", TEXTS)
        s.close()
        reopened = EdgeStore(tmp_path / "q", info)
        assert reopened.count() == 3
        assert _search(reopened, hash_embedder, bm25, "permis de construire")[0].payload["text"] == TEXTS[1]
        reopened.close()

    def test_server_collection_honours_shards_and_replication(self):
        class RecordingClient(QdrantClient):
            """The real client; records what collection creation asked the server for (local mode has no shards)."""

            created: dict = {}

            def create_collection(self, collection_name, **kwargs):
                RecordingClient.created = kwargs
                return super().create_collection(collection_name, **kwargs)

        client = RecordingClient(location=":memory:")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            ServerStore(client, "c", CollectionInfo("h", 8), shards=3, replication_factor=2)
        assert (RecordingClient.created["shard_number"], RecordingClient.created["replication_factor"]) == (3, 2)
        params = client.get_collection("c").config.params
        assert params.sparse_vectors["bm25"].modifier is None  # no collection-wide IDF (hidden documents would count)
        assert params.vectors["dense"].size == 8

    def test_engine_settings_shape_a_new_embedded_index_and_an_existing_one_keeps_its_own(self, tmp_path):
        import json

        light = EngineTuning(ef_construct=40, filter_graphs="none", max_segment_mb=64)
        EdgeStore(tmp_path / "q", CollectionInfo("h", 8), light).close()
        config = json.loads((tmp_path / "q" / "shard" / "edge_config.json").read_text())
        assert config["hnsw_config"]["ef_construct"] == 40 and config["optimizers"]["max_segment_size"] == 64 * 1024
        reopened = EdgeStore(tmp_path / "q", CollectionInfo("h", 8))  # the default settings: the index keeps its own
        schema = reopened._shard.info().payload_schema
        assert not any(schema[name].params.enable_hnsw for name in ("services", "doc_type", "doc_id", "state"))
        reopened.close()
        assert json.loads((tmp_path / "q" / "shard" / "edge_config.json").read_text())["hnsw_config"]["ef_construct"] == 40
        # The default: links per value on every indexed field (the engine's); "access": only where a search filters
        # selectively (the access filter, a type).
        for folder, tuning, expected in (("all", EngineTuning(), set(KEYWORD_INDEXES) | {"chunk_index"}),
                                         ("access", EngineTuning(filter_graphs="access"), {"services", "doc_type"})):
            store = EdgeStore(tmp_path / folder, CollectionInfo("h", 8), tuning)
            schema = store._shard.info().payload_schema
            assert {name for name, index in schema.items() if index.params.enable_hnsw} == expected
            store.close()

    def test_engine_settings_reach_a_new_server_collection(self):
        class RecordingClient(QdrantClient):
            """The real client; local mode keeps no engine settings, so record what creation asked the server for."""
            created: dict = {}
            indexes: dict = {}

            def create_collection(self, collection_name, **kwargs):
                RecordingClient.created = kwargs
                return super().create_collection(collection_name, **kwargs)

            def create_payload_index(self, collection_name, field_name, field_schema=None, **kwargs):
                RecordingClient.indexes[field_name] = field_schema
                return super().create_payload_index(collection_name, field_name, field_schema, **kwargs)

        client = RecordingClient(location=":memory:")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            ServerStore(client, "c", CollectionInfo("h", 8),
                        tuning=EngineTuning(ef_construct=48, filter_graphs="access", max_segment_mb=128))
        created = RecordingClient.created
        assert created["hnsw_config"].ef_construct == 48 and created["optimizers_config"].max_segment_size == 128 * 1024
        graphs = {name for name, schema in RecordingClient.indexes.items() if schema.enable_hnsw}
        assert graphs == {"services", "doc_type"} and set(RecordingClient.indexes) >= {"doc_id", "state", "chunk_index"}

    def test_a_foreign_server_collection_is_not_reused(self):
        client = QdrantClient(location=":memory:")
        client.create_collection("theirs", vectors_config=models.VectorParams(size=4, distance=models.Distance.COSINE))
        with pytest.raises(StoreError, match="COLLECTIVIA_QDRANT__COLLECTION"):
            ServerStore(client, "theirs", CollectionInfo("h", 4))


def test_a_second_process_opening_the_embedded_index_gets_a_clear_error(tmp_path):
    import subprocess
    import sys

    info = CollectionInfo("h", 8)
    first = EdgeStore(tmp_path / "q", info)
    code = (
        "import sys; from pathlib import Path; from index.store import CollectionInfo, StoreError; from index.edge_store import EdgeStore\n"
        "try:\n    EdgeStore(Path(sys.argv[1]), CollectionInfo('h', 8))\n"
        "except StoreError as e:\n    print(e); sys.exit(3)\n"
    )
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path / "q")], capture_output=True, text=True, timeout=60)
    first.close()
    assert result.returncode == 3, result.stderr
    assert "déjà ouvert par un autre processus" in result.stdout and "COLLECTIVIA_QDRANT__URL" in result.stdout
