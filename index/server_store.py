"""A collection on a Qdrant server or cluster through ``qdrant-client`` (tested against its in-memory mode)."""

from __future__ import annotations

from dataclasses import asdict, replace
from typing import Any, Sequence

from qdrant_client import models

from index.store import (  # noqa: E501
    PagedReads,
    CollectionInfo, DENSE, EngineTuning, KEYWORD_INDEXES, LIVE, RRF_K, SPARSE, STAGED,
    STAGED_CONDITION, StoreError,
    StoredPoint, doc_condition, live_filter, version_condition,
)




class ServerStore(PagedReads):
    """A collection on a Qdrant server or cluster; the collection metadata holds the embedder's name and size."""

    def __init__(
        self,
        client: Any,
        collection: str,
        info: CollectionInfo,
        *,
        shards: int = 1,
        replication_factor: int = 1,
        tuning: EngineTuning = EngineTuning(),
    ) -> None:
        self._client = client
        self.collection = collection
        self.info = info
        if client.collection_exists(collection):
            stored = (client.get_collection(collection).config.metadata or {}).get("collectivia")
            if stored is None:
                raise StoreError(
                    f"la collection Qdrant « {collection} » existe mais n'a pas été créée par Collectivia : "
                    "choisissez un autre nom (COLLECTIVIA_QDRANT__COLLECTION)"
                )
            stored_info = CollectionInfo(**stored)
            if info.migrates(stored_info):
                # Schema 1 → 2: drop the BM25 IDF modifier (a setting of the collection; the vectors stay).
                stored_info = replace(stored_info, schema=info.schema)
                client.update_collection(
                    collection,
                    sparse_vectors_config={SPARSE: models.SparseVectorParams(modifier=models.Modifier.NONE)},
                    metadata={"collectivia": asdict(stored_info)},
                )
            info.check_compatible(stored_info, f"« {collection} »")
        else:
            client.create_collection(
                collection,
                vectors_config={DENSE: models.VectorParams(size=info.dim, distance=models.Distance.COSINE)},
                sparse_vectors_config={SPARSE: models.SparseVectorParams()},  # no IDF: see index.store
                shard_number=shards,
                replication_factor=replication_factor,
                hnsw_config=models.HnswConfigDiff(m=tuning.M, ef_construct=tuning.ef_construct,
                                                  full_scan_threshold=tuning.FULL_SCAN_KB),
                optimizers_config=(models.OptimizersConfigDiff(max_segment_size=tuning.max_segment_mb * 1024)
                                   if tuning.max_segment_mb else None),
                metadata={"collectivia": asdict(info)},
            )
            for name in KEYWORD_INDEXES:
                client.create_payload_index(collection, name, models.KeywordIndexParams(
                    type=models.KeywordIndexType.KEYWORD, enable_hnsw=tuning.graph_on(name)))
            client.create_payload_index(collection, "chunk_index", models.IntegerIndexParams(
                type=models.IntegerIndexType.INTEGER, lookup=True, range=True, enable_hnsw=tuning.graph_on("chunk_index")))

    def upsert(self, points: Sequence[StoredPoint]) -> None:
        self._client.upsert(
            self.collection,
            points=[
                models.PointStruct(
                    id=p.id,
                    vector={
                        DENSE: [float(x) for x in p.dense],
                        SPARSE: models.SparseVector(indices=list(p.sparse[0]), values=list(p.sparse[1])),
                    },
                    payload={**p.payload, **STAGED},
                )
                for p in points
            ],
            wait=True,
        )

    def activate(self, doc_id: str, version: str) -> bool:
        new = models.Filter(must=[doc_condition(doc_id), version_condition(version)])
        if not self._client.count(self.collection, count_filter=new, exact=True).count:
            return False  # the new version vanished (another writer discarded it): keep the old one
        self._client.delete(
            self.collection,
            points_selector=models.FilterSelector(filter=models.Filter(must=[doc_condition(doc_id)], must_not=[version_condition(version)])),
            wait=True,
        )
        self._client.set_payload(
            self.collection,
            payload=LIVE,
            points=new,
            wait=True,
        )
        return True

    def discard_staged(self, doc_id: str | None = None) -> int:
        staged = models.Filter(
            must=[STAGED_CONDITION] + ([doc_condition(doc_id)] if doc_id else [])
        )
        n = self._client.count(self.collection, count_filter=staged, exact=True).count
        if n:
            self._client.delete(self.collection, points_selector=models.FilterSelector(filter=staged), wait=True)
        return n

    def delete_document(self, doc_id: str) -> None:
        self._client.delete(
            self.collection, points_selector=models.FilterSelector(filter=models.Filter(must=[doc_condition(doc_id)])), wait=True
        )

    def _page(self, filter: models.Filter, size: int, offset: Any, fields: list[str] | bool) -> tuple[list, Any]:
        return self._client.scroll(self.collection, scroll_filter=filter, limit=size, offset=offset, with_payload=fields)

    def count(self, filter: models.Filter | None = None) -> int:
        return self._client.count(self.collection, count_filter=live_filter(filter), exact=True).count

    def _search(self, scope: models.Filter, stages: list[tuple[str, Any]], *, limit: int, prefetch: int,
                with_dense: bool) -> list[Any]:
        queries = [(vector if using == DENSE else models.SparseVector(indices=vector[0], values=vector[1]), using)
                   for using, vector in stages]
        vectors = [DENSE] if with_dense else False
        if len(queries) == 1:
            (query, using), = queries
            return self._client.query_points(self.collection, query=query, using=using, query_filter=scope,
                                             limit=limit, with_payload=True, with_vectors=vectors).points
        return self._client.query_points(
            self.collection,
            prefetch=[models.Prefetch(query=q, using=using, filter=scope, limit=prefetch) for q, using in queries],
            query=models.RrfQuery(rrf=models.Rrf(k=RRF_K)),
            query_filter=scope,
            limit=limit,
            with_payload=True,
            with_vectors=vectors,
        ).points

    def optimize(self) -> None:
        """The server optimises on its own."""

    def close(self) -> None:
        self._client.close()
