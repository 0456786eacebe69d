"""Retrieval under access control: a ``User`` is a required argument of every search.

The question is embedded once (dense + French BM25) and sent to the store with the user's access filter, which the
store places inside every query. The dense and the BM25 rankings are fused by ``fuse_scores`` (each list's scores
scaled by its own range, 0.4 × meaning + 0.6 × words by default), or by RRF inside Qdrant (``fusion="rrf"``). Then,
outside Qdrant but only on what it returned:
optional reranking (``rag.rerank``: a local CrossEncoder or a rerank service), at most N passages per document with
adjacent chunks merged, and a relevance score (meaning and words shared with the question) that decides whether anything
relevant was found.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal, Sequence

import numpy as np

from index.embed import Bm25Encoder, Embedder
from index.store import Hit, Mode, Store
from rag.access import Scope, User, access_filter
from rag.question import bm25_query
from rag.rerank import Reranker


@dataclass(frozen=True, slots=True)
class ScoredChunk:
    id: str
    score: float  # fusion (RRF) or reranker score: an order, not a relevance
    relevance: float  # see ``relevance``: how well the chunk matches the question, in [0, 1]
    doc_id: str
    title: str
    text: str
    section: str
    page: int | None
    pages: tuple[int, ...]
    services: tuple[str, ...]
    doc_type: str
    chunk_indexes: tuple[int, ...]
    payload: dict[str, Any] = field(hash=False, compare=False, repr=False)
    cosine: float = 0.0  # cosine between the question and the chunk (dense embeddings)

    @classmethod
    def from_hit(cls, hit: Hit, relevance: float, cosine: float = 0.0) -> "ScoredChunk":
        p = hit.payload
        pages = tuple(p.get("pages") or ())
        return cls(
            id=hit.id,
            score=hit.score,
            relevance=relevance,
            doc_id=p["doc_id"],
            title=p.get("title", ""),
            text=p.get("text", ""),
            section=p.get("section", ""),
            page=p.get("page"),
            pages=pages,
            services=tuple(p.get("services") or ()),
            doc_type=p.get("doc_type", ""),
            chunk_indexes=(int(p.get("chunk_index", 0)),),
            payload=p,
            cosine=cosine,
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


Fusion = Literal["score", "rrf"]

TIE_MARGIN = 10
"""Chunks fetched beyond the limit, so that ties at the cut are broken by id rather than by the engine's order."""


def _merge(chunks: list[ScoredChunk]) -> ScoredChunk:
    """One passage from adjacent chunks of a document (in document order); best score and relevance kept."""
    ordered = sorted(chunks, key=lambda c: c.chunk_indexes[0])
    text = ordered[0].text
    end = ordered[0].payload.get("char_end")
    for chunk in ordered[1:]:
        start = chunk.payload.get("char_start")
        if end is not None and start is not None and start < end:  # overlapping chunks: drop the repeated part
            overlap = end - start
            text += chunk.text[overlap:] if overlap < len(chunk.text) else ""
        else:
            text += "\n\n" + chunk.text
        end = chunk.payload.get("char_end")
    best = max(chunks, key=lambda c: c.score)
    pages = tuple(sorted({p for c in chunks for p in c.pages}))
    return replace(
        best,
        text=text,
        page=best.page if best.page is not None else (pages[0] if pages else None),  # open where the best match is
        pages=pages,
        section=ordered[0].section,
        relevance=max(c.relevance for c in chunks),
        cosine=max(c.cosine for c in chunks),
        chunk_indexes=tuple(i for c in ordered for i in c.chunk_indexes),
    )


def diversify(chunks: Sequence[ScoredChunk], *, k: int, max_per_doc: int) -> list[ScoredChunk]:
    """Keep the best ``k`` passages, at most ``max_per_doc`` per document, adjacent chunks of a document merged."""
    kept: list[list[ScoredChunk]] = []  # groups of adjacent chunks, in rank order of their best member
    per_doc: dict[str, int] = {}
    for chunk in chunks:
        index = chunk.chunk_indexes[0]
        touching = [g for g in kept if g[0].doc_id == chunk.doc_id and any(abs(c.chunk_indexes[0] - index) == 1 for c in g)]
        if touching:
            # A neighbour joins its passage without using a new slot; if it bridges two passages, they become one.
            first = touching[0]
            first.append(chunk)
            for other in touching[1:]:
                first.extend(other)
                kept.remove(other)
                per_doc[chunk.doc_id] -= 1
            continue
        if per_doc.get(chunk.doc_id, 0) >= max_per_doc or len(kept) >= k:
            continue
        kept.append([chunk])
        per_doc[chunk.doc_id] = per_doc.get(chunk.doc_id, 0) + 1
    return [_merge(g) if len(g) > 1 else g[0] for g in kept]


def fuse_scores(dense: Sequence[Hit], words: Sequence[Hit], dense_weight: float) -> list[Hit]:
    """One ranking from a dense and a BM25 ranking of chunks: each list's scores scaled to [0, 1] by its own minimum
    and maximum, then ``dense_weight`` × meaning + (1 − ``dense_weight``) × words; a chunk absent from a list gets 0
    there. Both lists come from the user's filtered queries, so no hidden document shapes the scaling. Ties by id."""

    def scaled(hits: Sequence[Hit]) -> dict[str, float]:
        if not hits:
            return {}
        low, high = min(h.score for h in hits), max(h.score for h in hits)
        return {h.id: (h.score - low) / (high - low) if high > low else 1.0 for h in hits}

    meaning, matched = scaled(dense), scaled(words)
    by_id = {h.id: h for h in (*words, *dense)}  # the dense hit (with its vector) wins
    fused = [replace(h, score=dense_weight * meaning.get(i, 0.0) + (1 - dense_weight) * matched.get(i, 0.0))
             for i, h in by_id.items()]
    return sorted(fused, key=lambda h: (-h.score, h.id))


class HybridRetriever:
    """Dense and BM25 rankings under the user's access filter, fused (weighted scores by default, or RRF inside
    Qdrant)."""

    def __init__(
        self,
        store: Store,
        embedder: Embedder,
        sparse: Bm25Encoder,
        *,
        prefetch: int = 40,
        mode: Mode = "hybrid",
        max_per_doc: int = 2,
        reranker: Reranker | None = None,
        rerank_candidates: int = 20,
        fusion: Fusion = "score",
        dense_weight: float = 0.4,
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.sparse = sparse
        self.prefetch = prefetch
        self.mode = mode
        self.max_per_doc = max_per_doc
        self.reranker = reranker
        self.rerank_candidates = rerank_candidates
        self.fusion = fusion
        self.dense_weight = dense_weight

    def candidates(self, question: str, user: User, *, limit: int, scope: Scope | None = None,
                   vector: np.ndarray | None = None) -> list[ScoredChunk]:
        """Raw ranked chunks from Qdrant (no reranking, no per-document cap), each with its relevance. ``vector``: the
        question's, when the caller has encoded it already."""
        query_filter = access_filter(user, scope)  # raises without a real user
        dense = self.embedder.embed_query(question) if vector is None else vector
        # Words are matched with the agents' shorthand spelled out (« cb », « mdp », « ST »…), each weighted by its
        # rarity in general French, never by the collection (hidden documents would weigh in); meaning reads the
        # question as typed.
        words = bm25_query(question, self.sparse)
        sparse = words if self.mode != "dense" else None
        depth = max(self.prefetch, limit + TIE_MARGIN)
        if self.mode == "hybrid" and self.fusion == "score":
            hits = fuse_scores(
                self.store.query(filter=query_filter, dense=dense, sparse=None, limit=depth, prefetch=depth,
                                 mode="dense", with_dense=True),
                self.store.query(filter=query_filter, dense=None, sparse=words, limit=depth, prefetch=depth,
                                 mode="bm25", with_dense=True),
                self.dense_weight,
            )
        else:
            hits = self.store.query(
                filter=query_filter,
                dense=dense if self.mode != "bm25" else None,
                sparse=sparse,
                limit=limit + TIE_MARGIN,
                prefetch=depth,
                mode=self.mode,
                with_dense=True,
            )
        # Equal scores are frequent (RRF gives 1/61 to every first of one list): the engine orders them as its
        # segments come, so identical runs could differ. Ties go by chunk id, the cut comes after.
        hits = sorted(hits, key=lambda h: (-h.score, h.id))[:limit]
        query = np.asarray(dense, dtype=np.float32)
        terms = set(words[0])
        out = []
        for h in hits:
            cosine = float(np.dot(query, np.asarray(h.dense, dtype=np.float32))) if h.dense is not None else 0.0
            out.append(ScoredChunk.from_hit(h, self.relevance(cosine, terms, h), cosine))
        return out

    def relevance(self, cosine: float, terms: set[int], hit: Hit) -> float:
        """Half the cosine between question and chunk, half the share of the question's terms (French stems, stop
        words left out) found in the chunk's title, section and text: a rough closeness shown in traces and used to
        order closest titles. Whether the passages answer is decided by ``rag.answerability``."""
        p = hit.payload
        if terms:
            found = self.sparse.term_ids(f"{p.get('title', '')} {p.get('section', '')} {p.get('text', '')}")
            coverage = len(terms & found) / len(terms)
        else:
            coverage = 0.0
        return 0.5 * max(cosine, 0.0) + 0.5 * coverage

    def retrieve(self, question: str, user: User, *, k: int = 5, scope: Scope | None = None,
                 vector: np.ndarray | None = None) -> list[ScoredChunk]:
        pool = max(k * 4, self.rerank_candidates if self.reranker else 0)
        chunks = self.candidates(question, user, limit=pool, scope=scope, vector=vector)
        if self.reranker is not None and chunks:
            head = chunks[: self.rerank_candidates]
            scores = self.reranker.scores(question, [c.text for c in head])
            head = sorted((replace(c, score=float(s)) for c, s in zip(head, scores)), key=lambda c: c.score, reverse=True)
            # The rest keeps its order below the reranked head, on the reranker's scale (scores must stay comparable
            # when passages are merged).
            floor = head[-1].score
            tail = [replace(c, score=floor - 1.0 - i) for i, c in enumerate(chunks[self.rerank_candidates :])]
            chunks = head + tail
        return diversify(chunks, k=k, max_per_doc=self.max_per_doc)
