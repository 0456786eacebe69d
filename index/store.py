"""Vector store behind one ``Store`` protocol, on one collection schema, with two implementations:

- ``EdgeStore``: Qdrant Edge, the Qdrant engine in-process (``qdrant-edge-py``), the embedded default;
- ``ServerStore``: a Qdrant server or cluster through ``qdrant-client`` (tested against its in-memory mode).

Schema: named vectors ``dense`` (cosine) and ``bm25`` (sparse: BM25 term frequencies, no IDF modifier: Qdrant's IDF
counts every point of the collection, documents a user may not see included, so query terms are weighted by general
usage instead, see ``rag.question.bm25_query``); payload of ``Chunk.payload()`` plus
``state``; keyword indexes on ``services``, ``doc_id``, ``doc_type``, ``status``, ``version``.

Filters are Qdrant's own models (``qdrant_client.models.Filter``), passed through; the Edge store converts them to
its twin classes. Every query requires a filter and only ever sees ``live`` points: a new version of a document is
written hidden (``state: staged``) and made visible by ``activate``, which drops the old version first, so that no
search sees a mix of two versions.
"""

from __future__ import annotations

import uuid
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, Sequence, runtime_checkable

from qdrant_client import models

SCHEMA_VERSION = 2  # 2: no IDF modifier on the BM25 vectors
MIGRATES_FROM = (1,)
"""Schemas an index is brought from to ``SCHEMA_VERSION`` in place when opened, without embedding anything again:
schema 1 differs only by the IDF modifier of its BM25 vectors."""
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

    def migrates(self, stored: "CollectionInfo") -> bool:
        """Whether an index of ``stored`` is brought to this schema in place (same embedder, an older schema listed in
        ``MIGRATES_FROM``); otherwise ``check_compatible`` says what to do."""
        return (stored.schema in MIGRATES_FROM and stored.schema != self.schema
                and (stored.embedder, stored.dim) == (self.embedder, self.dim))

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
class EngineTuning:
    """How the engine builds its search structures, fixed when an index is created (an existing index keeps its own;
    a new one takes the settings' values). Measured in ``docs/deployment.md``.

    - ``ef_construct``: candidates weighed per link while building the dense graph (HNSW); lower builds faster, at
      some cost in recall of the dense search;
    - ``filter_graphs``: which indexed payload fields also get graph links per value, which keep the dense search
      from losing results under a selective filter such as the access filter: ``all`` (the engine's default), or
      ``access`` (only ``services`` and ``doc_type``, the fields a search filters on selectively: builds ~1/3
      faster, finds ~0.01 less of the exact top 10), or ``none`` (loses most results under a one-service filter);
    - ``max_segment_mb``: the largest segment the optimiser builds (None: the engine's choice); smaller segments are
      rebuilt faster as the index grows."""

    ef_construct: int = 100
    filter_graphs: Literal["all", "access", "none"] = "all"
    max_segment_mb: int | None = None

    M = 16  # links per node, the engine's default
    FULL_SCAN_KB = 10_000  # under this many kB of vectors a (filtered) search reads them all: the engine's default

    ACCESS_FIELDS = ("services", "doc_type")

    def graph_on(self, field_name: str) -> bool:
        """Whether the payload index of ``field_name`` gets its own graph links."""
        return self.filter_graphs == "all" or (self.filter_graphs == "access" and field_name in self.ACCESS_FIELDS)

    def describe(self) -> str:
        segment = f"{self.max_segment_mb} Mo" if self.max_segment_mb else "au choix du moteur"
        graphs = {"all": "tous les champs indexés", "access": "services et type", "none": "aucun"}[self.filter_graphs]
        return f"ef_construct {self.ef_construct}, liens par valeur de filtre : {graphs}, segment max {segment}"


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
    date: str | None = None  # AAAA-MM-JJ, from the metadata (None: undated)


def point_id(doc_id: str, version: str, index: int) -> str:
    return str(uuid.uuid5(NAMESPACE, f"{doc_id}\x1f{version}\x1f{index}"))


@runtime_checkable
class Store(Protocol):
    info: CollectionInfo

    def upsert(self, points: Sequence[StoredPoint]) -> None:
        """Write points hidden from searches (``state: staged``) until ``activate``."""
        ...

    def activate(self, doc_id: str, version: str) -> bool:
        """Drop every other version of ``doc_id``, then make ``version`` visible; False (and nothing dropped) when no
        point of ``version`` is there any more (another writer discarded it)."""
        ...

    def discard_staged(self, doc_id: str | None = None) -> int:
        """Delete hidden points (of one document, or all): leftovers of an interrupted run. All of them only where no
        other writer can be at work (the embedded index, when its one owner opens it)."""
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

    def first_chunk(self, doc_id: str, *, filter: models.Filter | None) -> Hit | None:
        """The live first chunk of ``doc_id`` (its payload holds the document's metadata), or None. ``filter`` is
        required: a user's access filter for what they may open, ``None`` only for management and start-up
        lookups (the caller then checks the manage rights itself)."""
        ...

    def count(self, filter: models.Filter | None = None) -> int:
        """Live points, optionally matching a filter."""
        ...

    def optimize(self) -> None: ...

    def close(self) -> None: ...


LIVE = {"state": "live"}
STAGED = {"state": "staged"}
# A keyword rather than a boolean: Qdrant Edge 0.9 does not match boolean payload values.
STAGED_CONDITION = models.FieldCondition(key="state", match=models.MatchValue(value="staged"))


def live_filter(filter: models.Filter | None) -> models.Filter:
    live = models.FieldCondition(key="state", match=models.MatchValue(value="live"))
    return models.Filter(must=[live] if filter is None else [live, filter])


def doc_condition(doc_id: str) -> models.FieldCondition:
    return models.FieldCondition(key="doc_id", match=models.MatchValue(value=doc_id))


def version_condition(version: str) -> models.FieldCondition:
    return models.FieldCondition(key="version", match=models.MatchValue(value=version))


FIRST_CHUNKS = models.Filter(must=[models.FieldCondition(key="chunk_index", match=models.MatchValue(value=0))])


def first_chunk_filter(doc_id: str, filter: models.Filter | None) -> models.Filter:
    """The first chunk of ``doc_id``, within ``filter`` when given."""
    must: list[models.Condition] = [doc_condition(doc_id), FIRST_CHUNKS]
    return models.Filter(must=must if filter is None else [*must, filter])
RECORD_FIELDS = ["doc_id", "version", "source", "title", "services", "doc_type", "status", "date"]


def dense_of(vector: Any) -> list[float] | None:
    if isinstance(vector, dict) and DENSE in vector:
        return list(vector[DENSE])
    return None


def record_of(payload: dict[str, Any]) -> DocRecord:
    return DocRecord(
        doc_id=payload["doc_id"],
        version=payload["version"],
        source=payload.get("source", ""),
        title=payload.get("title", ""),
        services=tuple(payload.get("services") or ()),
        doc_type=payload.get("doc_type", ""),
        status=payload.get("status", ""),
        date=payload.get("date") or None,
    )


class PagedReads:
    """What both stores build on two primitives of their engine: ``_page`` (one page of a scroll) gives every hit of a
    filter, the live documents, a filtered fetch, a document's first chunk; ``_search`` (one query, already scoped)
    gives ``query`` with its guard (no access filter, no search) and its choice of stages. Filters passed to the
    primitives are complete (the public methods add the ``live`` condition)."""

    def _search(self, scope: models.Filter, stages: list[tuple[str, Any]], *, limit: int, prefetch: int,
                 with_dense: bool) -> list[Any]:
        """Points (``id``, ``score``, ``payload``, ``vector``) of one stage, or of several fused with RRF."""
        raise NotImplementedError

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
        stages: list[tuple[str, Any]] = []
        if mode in ("hybrid", "dense") and dense is not None:
            stages.append((DENSE, [float(x) for x in dense]))
        if mode in ("hybrid", "bm25") and sparse is not None and len(sparse[0]):
            stages.append((SPARSE, (list(sparse[0]), list(sparse[1]))))
        if not stages:
            return []
        points = self._search(live_filter(filter), stages, limit=limit, prefetch=prefetch, with_dense=with_dense)
        return [Hit(str(p.id), float(p.score), dict(p.payload or {}), dense_of(p.vector)) for p in points]

    def _page(self, filter: models.Filter, size: int, offset: Any, fields: list[str] | bool) -> tuple[list, Any]:
        raise NotImplementedError

    def _scroll(self, filter: models.Filter, limit: int | None, fields: list[str] | bool = True) -> list[Hit]:
        hits: list[Hit] = []
        offset = None
        size = 1000 if limit is None else min(limit, 1000)
        with self._reading():
            while True:
                records, offset = self._page(filter, size, offset, fields)
                hits.extend(Hit(str(r.id), 0.0, dict(r.payload or {})) for r in records)
                if offset is None or (limit is not None and len(hits) >= limit):
                    break
        return hits if limit is None else hits[:limit]

    def _reading(self) -> AbstractContextManager:
        """Held over all the pages of one scroll (the embedded store: its lock, so that no write lands between)."""
        return nullcontext()

    def documents(self) -> dict[str, DocRecord]:
        return {h.payload["doc_id"]: record_of(h.payload) for h in self._scroll(live_filter(FIRST_CHUNKS), None, RECORD_FIELDS)}

    def fetch(self, *, filter: models.Filter, limit: int = 100) -> list[Hit]:
        return self._scroll(live_filter(filter), limit)

    def first_chunk(self, doc_id: str, *, filter: models.Filter | None) -> Hit | None:
        hits = self._scroll(live_filter(first_chunk_filter(doc_id, filter)), 1)
        return hits[0] if hits else None

