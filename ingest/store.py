"""Vector store behind one ``Store`` protocol, on one collection schema, with two implementations:

- ``EdgeStore``: Qdrant Edge, the Qdrant engine in-process (``qdrant-edge-py``), the embedded default;
- ``ServerStore``: a Qdrant server or cluster through ``qdrant-client`` (tested against its in-memory mode).

Schema: named vectors ``dense`` (cosine) and ``bm25`` (sparse, IDF modifier); payload of ``Chunk.payload()`` plus
``state``; keyword indexes on ``services``, ``doc_id``, ``doc_type``, ``status``, ``version``.

Filters are Qdrant's own models (``qdrant_client.models.Filter``), passed through; the Edge store converts them to
its twin classes. Every query requires a filter and only ever sees ``live`` points: a new version of a document is
written hidden (``state: staged``) and made visible by ``activate``, which drops the old version first, so that no
search sees a mix of two versions.
"""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, Sequence, runtime_checkable

from qdrant_client import models

SCHEMA_VERSION = 1
DENSE = "dense"
SPARSE = "bm25"
KEYWORD_INDEXES = ("services", "doc_id", "doc_type", "status", "version", "state")
NAMESPACE = uuid.UUID("6f1c8f0e-4e0b-4d8e-9a51-2f7f3c1e0a11")
Mode = Literal["hybrid", "dense", "bm25"]
RRF_K = 60


class StoreError(RuntimeError):
    """The index cannot be used as configured; the message says what to do."""


@dataclass(frozen=True, slots=True)
class CollectionInfo:
    embedder: str
    dim: int
    sparse: str = "bm25-french"
    schema: int = SCHEMA_VERSION

    def check_compatible(self, stored: "CollectionInfo", where: str) -> None:
        if stored.schema != self.schema:
            raise StoreError(
                f"l'index {where} a le schéma {stored.schema}, cette version attend {self.schema} : "
                "réindexez dans un nouveau dossier de données (COLLECTIVIA_DATA_DIR) ou une nouvelle collection"
            )
        if (stored.embedder, stored.dim) != (self.embedder, self.dim):
            raise StoreError(
                f"l'index {where} a été construit avec l'embedder « {stored.embedder} » ({stored.dim} dimensions), "
                f"mais l'embedder configuré est « {self.embedder} » ({self.dim} dimensions). Reprenez le même "
                "embedder (COLLECTIVIA_EMBEDDER__KIND / __MODEL), ou réindexez dans un nouvel index : autre "
                "COLLECTIVIA_DATA_DIR, autre COLLECTIVIA_QDRANT__COLLECTION, ou supprimez l'index existant."
            )


@dataclass(frozen=True, slots=True)
class StoredPoint:
    id: str
    dense: Sequence[float]
    sparse: tuple[Sequence[int], Sequence[float]]
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Hit:
    id: str
    score: float
    payload: dict[str, Any] = field(hash=False)
    dense: Sequence[float] | None = field(default=None, hash=False, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class DocRecord:
    doc_id: str
    version: str
    source: str
    title: str
    services: tuple[str, ...]
    doc_type: str
    status: str


def point_id(doc_id: str, version: str, index: int) -> str:
    return str(uuid.uuid5(NAMESPACE, f"{doc_id}\x1f{version}\x1f{index}"))


@runtime_checkable
class Store(Protocol):
    info: CollectionInfo

    def upsert(self, points: Sequence[StoredPoint]) -> None:
        """Write points hidden from searches (``state: staged``) until ``activate``."""
        ...

    def activate(self, doc_id: str, version: str) -> None:
        """Drop every other version of ``doc_id``, then make ``version`` visible."""
        ...

    def discard_staged(self, doc_id: str | None = None) -> int:
        """Delete hidden points (of one document, or all): leftovers of an interrupted run."""
        ...

    def delete_document(self, doc_id: str) -> None: ...

    def documents(self) -> dict[str, DocRecord]:
        """Live documents, by id."""
        ...

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
        """Hybrid (RRF of dense and BM25 prefetches), dense or BM25 query; ``filter`` sits inside every stage.
        ``with_dense`` returns each hit's dense vector too (to measure relevance)."""
        ...

    def fetch(self, *, filter: models.Filter, limit: int = 100) -> list[Hit]:
        """Live points matching a filter (no scoring), e.g. the neighbours of a chunk."""
        ...

    def count(self, filter: models.Filter | None = None) -> int:
        """Live points, optionally matching a filter."""
        ...

    def optimize(self) -> None: ...

    def close(self) -> None: ...


LIVE = {"state": "live"}
STAGED = {"state": "staged"}
# A keyword rather than a boolean: Qdrant Edge 0.9 does not match boolean payload values.
_STAGED_CONDITION = models.FieldCondition(key="state", match=models.MatchValue(value="staged"))


def _live(filter: models.Filter | None) -> models.Filter:
    live = models.FieldCondition(key="state", match=models.MatchValue(value="live"))
    return models.Filter(must=[live] if filter is None else [live, filter])


def _doc(doc_id: str) -> models.FieldCondition:
    return models.FieldCondition(key="doc_id", match=models.MatchValue(value=doc_id))


def _version(version: str) -> models.FieldCondition:
    return models.FieldCondition(key="version", match=models.MatchValue(value=version))


_FIRST_CHUNKS = models.Filter(must=[models.FieldCondition(key="chunk_index", match=models.MatchValue(value=0))])
_RECORD_FIELDS = ["doc_id", "version", "source", "title", "services", "doc_type", "status"]


def _dense_of(vector: Any) -> list[float] | None:
    if isinstance(vector, dict) and DENSE in vector:
        return list(vector[DENSE])
    return None


def _record(payload: dict[str, Any]) -> DocRecord:
    return DocRecord(
        doc_id=payload["doc_id"],
        version=payload["version"],
        source=payload.get("source", ""),
        title=payload.get("title", ""),
        services=tuple(payload.get("services") or ()),
        doc_type=payload.get("doc_type", ""),
        status=payload.get("status", ""),
    )


# --------------------------------------------------------------------------------------------------------------
# Qdrant Edge (embedded)
# --------------------------------------------------------------------------------------------------------------


def _edge_condition(condition: Any) -> Any:
    import qdrant_edge as qe

    if isinstance(condition, models.Filter):
        return _edge_filter(condition)
    if isinstance(condition, models.FieldCondition):
        match = condition.match
        if isinstance(match, models.MatchValue):
            edge_match = qe.MatchValue(match.value)
        elif isinstance(match, models.MatchAny):
            edge_match = qe.MatchAny(list(match.any))
        elif isinstance(match, models.MatchExcept):
            edge_match = qe.MatchExcept(list(match.except_))
        else:
            raise StoreError(f"condition de filtre non prise en charge par le stockage embarqué : {condition!r}")
        return qe.FieldCondition(condition.key, match=edge_match)
    if isinstance(condition, models.IsEmptyCondition):
        return qe.IsEmptyCondition(condition.is_empty.key)
    if isinstance(condition, models.HasIdCondition):
        return qe.HasIdCondition([str(i) for i in condition.has_id])
    raise StoreError(f"condition de filtre non prise en charge par le stockage embarqué : {condition!r}")


def _edge_filter(filter: models.Filter) -> Any:
    import qdrant_edge as qe

    def conv(items: Any) -> list | None:
        if items is None:
            return None
        items = items if isinstance(items, list) else [items]
        return [_edge_condition(c) for c in items]

    if filter.min_should is not None:
        raise StoreError("min_should n'est pas pris en charge par le stockage embarqué")
    return qe.Filter(must=conv(filter.must), should=conv(filter.should), must_not=conv(filter.must_not))


class EdgeStore:
    """The embedded default: a Qdrant Edge shard under the data directory."""

    INFO_FILE = "collectivia.json"

    def __init__(self, path: Path, info: CollectionInfo) -> None:
        import qdrant_edge as qe

        self._qe = qe
        self.path = Path(path)
        self.info = info
        self._lock = threading.RLock()
        shard_dir = self.path / "shard"
        info_file = self.path / self.INFO_FILE
        if info_file.is_file():
            stored = CollectionInfo(**json.loads(info_file.read_text(encoding="utf-8")))
            info.check_compatible(stored, str(self.path))
            try:
                self._shard = qe.EdgeShard.load(str(shard_dir))
            except Exception as exc:
                if "WouldBlock" in str(exc) or "lock" in str(exc).lower():
                    raise StoreError(
                        f"l'index embarqué {self.path} est déjà ouvert par un autre processus (le chat « collectivia "
                        "serve » ou une autre indexation ?). Un seul processus peut l'ouvrir à la fois : arrêtez "
                        "l'autre, indexez depuis le chat, ou utilisez un serveur Qdrant (COLLECTIVIA_QDRANT__URL)."
                    ) from exc
                raise StoreError(f"l'index embarqué {self.path} ne s'ouvre pas ({exc})") from exc
        else:
            if shard_dir.exists() and any(shard_dir.iterdir()):
                raise StoreError(
                    f"{shard_dir} contient un index sans fichier {self.INFO_FILE} : déplacez ou supprimez ce dossier"
                )
            self.path.mkdir(parents=True, exist_ok=True)
            config = qe.EdgeConfig(
                vectors={DENSE: qe.EdgeVectorParams(size=info.dim, distance=qe.Distance.Cosine)},
                sparse_vectors={SPARSE: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)},
            )
            self._shard = qe.EdgeShard.create(str(shard_dir), config)
            for name in KEYWORD_INDEXES:
                self._shard.update(qe.UpdateOperation.create_field_index(name, qe.PayloadSchemaType.Keyword))
            self._shard.update(qe.UpdateOperation.create_field_index("chunk_index", qe.PayloadSchemaType.Integer))
            tmp = info_file.with_suffix(".tmp")
            tmp.write_text(json.dumps(asdict(info), indent=2), encoding="utf-8")
            tmp.replace(info_file)

    # -- writing ---------------------------------------------------------------------------------------------
    def upsert(self, points: Sequence[StoredPoint]) -> None:
        qe = self._qe
        edge_points = [
            qe.Point(
                p.id,
                {DENSE: [float(x) for x in p.dense], SPARSE: qe.SparseVector(list(p.sparse[0]), list(p.sparse[1]))},
                {**p.payload, **STAGED},
            )
            for p in points
        ]
        with self._lock:
            self._shard.update(qe.UpdateOperation.upsert_points(edge_points))

    def activate(self, doc_id: str, version: str) -> None:
        qe = self._qe
        old = models.Filter(must=[_doc(doc_id)], must_not=[_version(version)])
        new = models.Filter(must=[_doc(doc_id), _version(version)])
        with self._lock:
            self._shard.update(qe.UpdateOperation.delete_points_by_filter(_edge_filter(old)))
            self._shard.update(qe.UpdateOperation.set_payload_by_filter(_edge_filter(new), LIVE))
            # No flush here: the write-ahead log makes each update durable; flush() runs on close.

    def discard_staged(self, doc_id: str | None = None) -> int:
        qe = self._qe
        staged = models.Filter(
            must=[_STAGED_CONDITION] + ([_doc(doc_id)] if doc_id else [])
        )
        with self._lock:
            n = self._shard.count(qe.CountRequest(exact=True, filter=_edge_filter(staged)))
            if n:
                self._shard.update(qe.UpdateOperation.delete_points_by_filter(_edge_filter(staged)))
        return n

    def delete_document(self, doc_id: str) -> None:
        with self._lock:
            self._shard.update(
                self._qe.UpdateOperation.delete_points_by_filter(_edge_filter(models.Filter(must=[_doc(doc_id)])))
            )
            self._shard.flush()

    # -- reading ---------------------------------------------------------------------------------------------
    def _scroll(self, filter: models.Filter, limit: int | None, fields: list[str] | bool = True) -> list[Hit]:
        qe = self._qe
        hits: list[Hit] = []
        offset = None
        page = 1000 if limit is None else min(limit, 1000)
        with self._lock:
            while True:
                records, offset = self._shard.scroll(
                    qe.ScrollRequest(offset=offset, limit=page, filter=_edge_filter(filter), with_payload=fields)
                )
                hits.extend(Hit(str(r.id), 0.0, dict(r.payload or {})) for r in records)
                if offset is None or (limit is not None and len(hits) >= limit):
                    break
        return hits if limit is None else hits[:limit]

    def documents(self) -> dict[str, DocRecord]:
        return {h.payload["doc_id"]: _record(h.payload) for h in self._scroll(_live(_FIRST_CHUNKS), None, _RECORD_FIELDS)}

    def fetch(self, *, filter: models.Filter, limit: int = 100) -> list[Hit]:
        return self._scroll(_live(filter), limit)

    def count(self, filter: models.Filter | None = None) -> int:
        with self._lock:
            return self._shard.count(self._qe.CountRequest(exact=True, filter=_edge_filter(_live(filter))))

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
        if filter is None:
            raise StoreError("requête refusée : aucun filtre d'accès (une recherche exige un utilisateur)")
        qe = self._qe
        scope = _edge_filter(_live(filter))
        stages = []
        if mode in ("hybrid", "dense") and dense is not None:
            stages.append(qe.Query.Nearest([float(x) for x in dense], using=DENSE))
        if mode in ("hybrid", "bm25") and sparse is not None and len(sparse[0]):
            stages.append(qe.Query.Nearest(qe.SparseVector(list(sparse[0]), list(sparse[1])), using=SPARSE))
        if not stages:
            return []
        if len(stages) == 1:
            request = qe.QueryRequest(limit=limit, query=stages[0], filter=scope, with_payload=True,
                                      with_vector=[DENSE] if with_dense else False)
        else:
            request = qe.QueryRequest(
                limit=limit,
                prefetches=[qe.Prefetch(limit=prefetch, query=q, filter=scope) for q in stages],
                query=qe.Fusion.Rrf(k=RRF_K),
                filter=scope,
                with_payload=True,
                with_vector=[DENSE] if with_dense else False,
            )
        with self._lock:
            points = self._shard.query(request)
        return [Hit(str(p.id), float(p.score), dict(p.payload or {}), _dense_of(p.vector)) for p in points]

    def optimize(self) -> None:
        with self._lock:
            self._shard.optimize()

    def close(self) -> None:
        with self._lock:
            if self._shard is not None:
                self._shard.flush()
                self._shard.close()
                self._shard = None


# --------------------------------------------------------------------------------------------------------------
# Qdrant server / cluster (qdrant-client)
# --------------------------------------------------------------------------------------------------------------


class ServerStore:
    """A collection on a Qdrant server or cluster; the collection metadata holds the embedder's name and size."""

    def __init__(
        self,
        client: Any,
        collection: str,
        info: CollectionInfo,
        *,
        shards: int = 1,
        replication_factor: int = 1,
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
            info.check_compatible(CollectionInfo(**stored), f"« {collection} »")
        else:
            client.create_collection(
                collection,
                vectors_config={DENSE: models.VectorParams(size=info.dim, distance=models.Distance.COSINE)},
                sparse_vectors_config={SPARSE: models.SparseVectorParams(modifier=models.Modifier.IDF)},
                shard_number=shards,
                replication_factor=replication_factor,
                metadata={"collectivia": asdict(info)},
            )
            for name in KEYWORD_INDEXES:
                client.create_payload_index(collection, name, models.PayloadSchemaType.KEYWORD)
            client.create_payload_index(collection, "chunk_index", models.PayloadSchemaType.INTEGER)

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

    def activate(self, doc_id: str, version: str) -> None:
        self._client.delete(
            self.collection,
            points_selector=models.FilterSelector(filter=models.Filter(must=[_doc(doc_id)], must_not=[_version(version)])),
            wait=True,
        )
        self._client.set_payload(
            self.collection,
            payload=LIVE,
            points=models.Filter(must=[_doc(doc_id), _version(version)]),
            wait=True,
        )

    def discard_staged(self, doc_id: str | None = None) -> int:
        staged = models.Filter(
            must=[_STAGED_CONDITION] + ([_doc(doc_id)] if doc_id else [])
        )
        n = self._client.count(self.collection, count_filter=staged, exact=True).count
        if n:
            self._client.delete(self.collection, points_selector=models.FilterSelector(filter=staged), wait=True)
        return n

    def delete_document(self, doc_id: str) -> None:
        self._client.delete(
            self.collection, points_selector=models.FilterSelector(filter=models.Filter(must=[_doc(doc_id)])), wait=True
        )

    def _scroll(self, filter: models.Filter, limit: int | None, fields: list[str] | bool = True) -> list[Hit]:
        hits: list[Hit] = []
        offset = None
        page = 1000 if limit is None else min(limit, 1000)
        while True:
            records, offset = self._client.scroll(
                self.collection, scroll_filter=filter, limit=page, offset=offset, with_payload=fields
            )
            hits.extend(Hit(str(r.id), 0.0, dict(r.payload or {})) for r in records)
            if offset is None or (limit is not None and len(hits) >= limit):
                break
        return hits if limit is None else hits[:limit]

    def documents(self) -> dict[str, DocRecord]:
        return {h.payload["doc_id"]: _record(h.payload) for h in self._scroll(_live(_FIRST_CHUNKS), None, _RECORD_FIELDS)}

    def fetch(self, *, filter: models.Filter, limit: int = 100) -> list[Hit]:
        return self._scroll(_live(filter), limit)

    def count(self, filter: models.Filter | None = None) -> int:
        return self._client.count(self.collection, count_filter=_live(filter), exact=True).count

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
        if filter is None:
            raise StoreError("requête refusée : aucun filtre d'accès (une recherche exige un utilisateur)")
        scope = _live(filter)
        stages: list[tuple[Any, str]] = []
        if mode in ("hybrid", "dense") and dense is not None:
            stages.append(([float(x) for x in dense], DENSE))
        if mode in ("hybrid", "bm25") and sparse is not None and len(sparse[0]):
            stages.append((models.SparseVector(indices=list(sparse[0]), values=list(sparse[1])), SPARSE))
        if not stages:
            return []
        if len(stages) == 1:
            response = self._client.query_points(
                self.collection, query=stages[0][0], using=stages[0][1], query_filter=scope, limit=limit,
                with_payload=True, with_vectors=[DENSE] if with_dense else False,
            )
        else:
            response = self._client.query_points(
                self.collection,
                prefetch=[models.Prefetch(query=q, using=using, filter=scope, limit=prefetch) for q, using in stages],
                query=models.RrfQuery(rrf=models.Rrf(k=RRF_K)),
                query_filter=scope,
                limit=limit,
                with_payload=True,
                with_vectors=[DENSE] if with_dense else False,
            )
        return [Hit(str(p.id), float(p.score), dict(p.payload or {}), _dense_of(p.vector)) for p in response.points]

    def optimize(self) -> None:
        """The server optimises on its own."""

    def close(self) -> None:
        self._client.close()
