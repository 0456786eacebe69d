"""Retrieval under access control: a ``User`` is a required argument of every search.

The question is embedded once (dense + French BM25) and sent to the store with the user's access filter, which the
store places inside every prefetch and the fusion query.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from ingest.embed import Bm25Encoder, Embedder
from ingest.store import Hit, Mode, Store
from rag.access import Scope, User, access_filter


@dataclass(frozen=True, slots=True)
class ScoredChunk:
    id: str
    score: float
    doc_id: str
    title: str
    text: str
    section: str
    page: int | None
    services: tuple[str, ...]
    doc_type: str
    payload: dict[str, Any] = field(hash=False, compare=False, repr=False)

    @classmethod
    def from_hit(cls, hit: Hit) -> "ScoredChunk":
        p = hit.payload
        return cls(
            id=hit.id,
            score=hit.score,
            doc_id=p["doc_id"],
            title=p.get("title", ""),
            text=p.get("text", ""),
            section=p.get("section", ""),
            page=p.get("page"),
            services=tuple(p.get("services") or ()),
            doc_type=p.get("doc_type", ""),
            payload=p,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "doc_id": self.doc_id,
            "title": self.title,
            "services": list(self.services),
            "doc_type": self.doc_type,
            "page": self.page,
            "section": self.section,
            "score": round(self.score, 6),
            "text": self.text,
        }


class Retriever(Protocol):
    def retrieve(self, question: str, user: User, *, k: int, scope: Scope | None = None) -> list[ScoredChunk]: ...


class HybridRetriever:
    """Dense + BM25 prefetches fused with RRF inside Qdrant, filtered by the user's access."""

    def __init__(self, store: Store, embedder: Embedder, sparse: Bm25Encoder, *, prefetch: int = 40,
                 mode: Mode = "hybrid") -> None:
        self.store = store
        self.embedder = embedder
        self.sparse = sparse
        self.prefetch = prefetch
        self.mode = mode

    def retrieve(self, question: str, user: User, *, k: int = 5, scope: Scope | None = None) -> list[ScoredChunk]:
        query_filter = access_filter(user, scope)  # raises without a real user
        dense = self.embedder.embed_query(question) if self.mode != "bm25" else None
        sparse = self.sparse.embed_query(question) if self.mode != "dense" else None
        hits = self.store.query(
            filter=query_filter, dense=dense, sparse=sparse, limit=k, prefetch=max(self.prefetch, k), mode=self.mode
        )
        return [ScoredChunk.from_hit(h) for h in hits]
