"""No statistic over documents a user may not see may change what that user gets.

A user's results (which passages, in which order, with which scores) must be the same whether or not the
collection also holds documents of other services or staged versions nobody may see yet. Word weights for BM25
therefore cannot come from the collection (Qdrant's IDF modifier counts every point, hidden ones included): they
come from general French usage (``rag.question``), the same for every collection.
"""

from __future__ import annotations

import numpy as np
import pytest

from index.store import StoredPoint, point_id
from rag.access import User
from rag.retrieve import HybridRetriever

AGENT = User("agent-rh", "Agent RH", frozenset({"rh"}))
VISIBLE = {
    "RH-ASTREINTE": ["Les astreintes du week-end donnent droit à une indemnité d'astreinte.",
                     "La prime annuelle est versée en novembre."],
    "RH-PRIME": ["La prime de fin d'année est versée avec le salaire de novembre, prime comprise.",
                 "Une astreinte exceptionnelle se déclare au service."],
    "RH-CONGES": ["Les congés annuels se posent dans le logiciel de gestion du temps."],
}
QUESTION = "prime d'astreinte du week-end"


def _points(embedder, bm25, doc_id: str, texts: list[str], services: list[str], version: str = "v1"):
    out = []
    for i, text in enumerate(texts):
        vector = np.asarray(embedder.embed_documents([text])[0], dtype=np.float32)
        payload = {"doc_id": doc_id, "version": version, "chunk_index": i, "text": text, "services": services,
                   "title": doc_id, "section": "", "source": f"/docs/{doc_id}.md", "doc_type": "procedure",
                   "status": "en_vigueur", "pages": [1], "page": 1}
        out.append(StoredPoint(point_id(doc_id, version, i), vector, bm25.embed_document(text), payload))
    return out


def _results(retriever: HybridRetriever) -> list[tuple[str, float]]:
    return [(c.id, round(c.score, 5)) for c in retriever.candidates(QUESTION, AGENT, limit=10)]


@pytest.mark.parametrize("mode", ["bm25", "hybrid"])
def test_documents_the_user_may_not_see_change_nothing_in_their_results(store, hash_embedder, bm25, mode):
    for doc_id, texts in VISIBLE.items():
        store.upsert(_points(hash_embedder, bm25, doc_id, texts, ["rh"]))
        store.activate(doc_id, "v1")
    retriever = HybridRetriever(store, hash_embedder, bm25, mode=mode)
    before = _results(retriever)
    assert len(before) >= 3 and before[0][1] > 0

    # Another service's documents, full of the question's words, and a staged version nobody may see yet.
    for n in range(30):
        doc_id = f"FIN-{n:02d}"
        store.upsert(_points(hash_embedder, bm25, doc_id, ["Astreinte astreinte du week-end, astreinte de nuit."] * 2,
                             ["finances"]))
        store.activate(doc_id, "v1")
    store.upsert(_points(hash_embedder, bm25, "RH-PRIME", ["prime prime prime astreinte"] * 3, ["rh"], "v2"))

    assert _results(retriever) == before
