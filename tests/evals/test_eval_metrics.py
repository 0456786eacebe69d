"""Metrics: ranx retrieval scores on a hand-computed example, citations, refusals, leaks, footprint."""

from __future__ import annotations

import math

import pytest

from evals.metrics import (
    answer_scores, contains, find_leaks, footprint, normalise, percentiles, retrieval_scores, summarise,
)
from rag.access import User

ALICE = User(id="a.martin", name="Alice", services=frozenset({"rh"}))
NOBODY = User(id="g.girard", name="Gaëlle", services=frozenset())


def rec(qid, gold, ranked, **extra):
    return {"id": qid, "expected": "answer", "type": "t", "gold_docs": gold, "retrieved_docs": ranked, **extra}


def test_ranx_scores_match_a_hand_computed_example():
    records = [
        rec("q1", ["d1"], ["d2", "d1", "d3"]),                 # gold at rank 2
        rec("q2", ["d1", "d2"], ["d1", "x", "d2"]),            # two gold, ranks 1 and 3
        rec("q3", ["d9"], []),                                 # nothing retrieved
        rec("q4", ["d1"], [f"x{i}" for i in range(10)] + ["d1"]),  # gold at rank 11: beyond every cut-off
        {"id": "q5", "expected": "refuse_not_found", "gold_docs": [], "retrieved_docs": ["d1"]},  # not scored
    ]
    scores = retrieval_scores(records)
    assert set(scores) == {"q1", "q2", "q3", "q4"}
    q1, q2, q3, q4 = (scores[q] for q in ("q1", "q2", "q3", "q4"))
    assert (q1["recall@1"], q1["recall@5"], q1["mrr@10"], q1["hit@5"]) == (0.0, 1.0, 0.5, 1.0)
    assert q1["ndcg@10"] == pytest.approx(1 / math.log2(3))
    assert (q2["recall@1"], q2["recall@5"], q2["mrr@10"]) == (0.5, 1.0, 1.0)
    assert q2["ndcg@10"] == pytest.approx((1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3)))
    assert all(v == 0.0 for v in q3.values()) and all(v == 0.0 for v in q4.values())


def test_graded_relevance_is_used_for_ndcg():
    # ranx's nDCG uses the grade as gain: DCG = 1/log2(2) + 2/log2(3), ideal = 2/log2(2) + 1/log2(3)
    graded = rec("q", ["d1", "d2"], ["d2", "d1"], grades={"d1": 2, "d2": 1})
    expected = (1 + 2 / math.log2(3)) / (2 + 1 / math.log2(3))
    assert retrieval_scores([graded])["q"]["ndcg@10"] == pytest.approx(expected)
    assert retrieval_scores([rec("q", ["d1", "d2"], ["d2", "d1"])])["q"]["ndcg@10"] == pytest.approx(1.0)


def test_ties_keep_the_recorded_order():
    # ranx sorts by score: the recorded order must survive (scores are derived from ranks).
    scores = retrieval_scores([rec("q", ["b"], ["a", "b", "c"])])
    assert scores["q"]["mrr@10"] == 0.5


def test_citation_and_answer_metrics():
    record = rec("q", ["D1", "D2"], ["D1"], gold_passage="quinze jours avant le départ", short_answer="15 jours",
                 answer="Extraits : « Toute demande est déposée au moins quinze jours avant le départ. » [1]",
                 citations=[{"n": 1, "doc_id": "D1", "passage": "…"}, {"n": 2, "doc_id": "X", "passage": "…"}],
                 unsupported=[2], refused=False)
    m = answer_scores(record)
    assert m["citation_precision"] == 0.5 and m["citation_recall"] == 0.5
    assert m["answer_found"] is True and m["refusal_correct"] is True and m["unsupported_citations"] == 1
    assert answer_scores(record | {"citations": [], "answer": "rien"})["citation_precision"] is None
    assert answer_scores(record | {"citations": [], "answer": "rien"})["answer_found"] is False
    # the short answer or the gold passage found in a cited passage counts too
    cited = record | {"answer": "Voir [1].", "citations": [{"n": 1, "doc_id": "D1", "passage": "Délai : 15  JOURS."}]}
    assert answer_scores(cited)["answer_found"] is True
    assert answer_scores(record | {"refused": True})["refusal_correct"] is False


def test_copies_count_through_canonical_ids():
    record = rec("q", ["SP-F1"], [], citations=[{"n": 1, "doc_id": "SP-F1-professionnels",
                                                 "canonical_doc_id": "SP-F1", "passage": ""}], answer="")
    assert answer_scores(record)["citation_precision"] == 1.0


def test_refusal_metrics():
    not_found = {"id": "q", "expected": "refuse_not_found", "gold_docs": [], "refused": True}
    assert answer_scores(not_found)["refusal_correct"] is True
    assert answer_scores(not_found | {"refused": False})["refusal_correct"] is False
    no_access = {"id": "q", "expected": "refuse_no_access", "gold_docs": ["CONF-RH-1"], "refused": True,
                 "retrieved": [{"doc_id": "PROC-1"}], "trace": [], "citations": []}
    assert answer_scores(no_access)["refusal_correct"] is True
    touched = no_access | {"retrieved": [{"doc_id": "CONF-RH-1"}]}
    assert answer_scores(touched)["refusal_correct"] is False and answer_scores(touched)["gold_touched"] is True
    cited = no_access | {"citations": [{"n": 1, "doc_id": "CONF-RH-1", "passage": ""}]}
    assert answer_scores(cited)["refusal_correct"] is False
    assert answer_scores(no_access | {"refused": False})["refusal_correct"] is False


def test_normalisation():
    assert normalise("L’agent  dépose\u00a0sa DEMANDE") == "l'agent dépose sa demande"
    assert contains("Le congé de l' agent", "congé de l’agent")
    assert not contains("texte", "") and not contains(None, "x")


def test_leak_detection_catches_a_planted_leak():
    chunks = [
        ("retrieved", "c1", "PROC-RH-1", ["rh"]),
        ("retrieved", "c2", "CHARTE", ["tous"]),
        ("citation", "[1]", "CONF-URBA", ["urbanisme"]),        # planted: Alice is not in urbanisme
        ("trace", "c3", "PROC-RH-2", None),                     # services from the store
    ]
    leaks = find_leaks(ALICE, chunks, {"PROC-RH-2": ("rh",), "CONF-URBA": ("urbanisme",)})
    assert [(x["where"], x["doc_id"]) for x in leaks] == [("citation", "CONF-URBA")]
    # a payload that says "tous" while the stored document is confidential to another service is a leak too
    assert len(find_leaks(ALICE, [("source", "c4", "CONF-DSI", ["tous"])], {"CONF-DSI": ("dsi",)})) == 1
    # unknown services: deny by default
    assert len(find_leaks(NOBODY, [("trace", "c5", "UNKNOWN", None)], {})) == 1
    assert find_leaks(NOBODY, [("retrieved", "c2", "CHARTE", ["tous"])], {"CHARTE": ("tous",)}) == []


def test_summary_counts_leaks_and_groups_by_type():
    base = {"refused": False, "citations": [], "trace": [], "sources": [], "timings_ms": {"total": 10.0}}
    records = [
        rec("q1", ["D1"], ["D1"], type="lexical", **base, leaks=[]),
        rec("q2", ["D2"], ["X", "D2"], type="paraphrase", **base,
            leaks=[{"where": "retrieved", "chunk_id": "c", "doc_id": "X", "services": ["dsi"], "doc_services": ["dsi"]}]),
        {"id": "q3", "expected": "refuse_not_found", "type": "out_of_corpus", "gold_docs": [], "refused": True,
         "retrieved_docs": [], "leaks": [], "timings_ms": {"total": 30.0}},
    ]
    s = summarise(records, {"llm_model": None})
    assert s["access"] == {"leaks": 1, "questions_with_leaks": 1, "ok": False, "examples": s["access"]["examples"]}
    assert s["retrieval"]["n"] == 2 and s["retrieval"]["recall@1"] == 0.5
    assert s["by_type"]["paraphrase"]["retrieval"]["mrr@10"] == 0.5
    assert s["refusals"]["refuse_not_found"] == 1.0 and s["refusals"]["refuse_no_access"] is None
    assert s["latency_ms"]["total"]["p50_ms"] == 10.0 and s["footprint"]["llm"] is False
    assert s["judge_scores"]["skipped"] is True


def test_percentiles():
    p = percentiles([1.0, 2.0, 3.0, 4.0, None])
    assert (p["n"], p["p50_ms"], p["max_ms"]) == (4, 2.5, 4.0)
    assert percentiles([])["p50_ms"] is None


def test_footprint_with_ecologits_offline():
    fp = footprint("mistral-small-latest", 300, 2.0)
    assert fp["energy_kwh"] > 0 and fp["gwp_kgco2eq"] > 0 and fp["model"] == "mistral-small-latest"
    unknown = footprint("no-such-model", 300, 2.0)
    assert unknown["energy_kwh"] is None and "error" in unknown


def test_thresholds_gate():
    from evals.metrics import check_thresholds

    summary = {"retrieval": {"ndcg@10": 0.80}, "refusals": {"refuse_not_found": 0.3}, "access": {"leaks": 0}}
    assert check_thresholds(summary, {"min": {"retrieval.ndcg@10": 0.78}, "max": {"access.leaks": 0}}) == []
    failures = check_thresholds(summary | {"access": {"leaks": 2}},
                                {"min": {"retrieval.ndcg@10": 0.85, "answers.missing": 0.1}, "max": {"access.leaks": 0}})
    assert failures == ["retrieval.ndcg@10 = 0.8 < 0.85", "answers.missing = None < 0.1", "access.leaks = 2 > 0"]


def test_outcomes_per_expected_behaviour_and_the_first_extract():
    records = [
        rec("a1", ["D1"], ["D1"], outcome="answer", refused=False, short_answer="200 chaises",
            gold_passage="au maximum 30 tables et 200 chaises", answer="…",
            extracts=["Une association peut emprunter au maximum 30 tables et 200 chaises.", "Le parc compte 600 chaises."]),
        rec("a2", ["D1"], ["D1"], outcome="uncertain", refused=False, short_answer="200 chaises",
            gold_passage="au maximum 30 tables et 200 chaises", answer="…",
            extracts=["Le parc compte 600 chaises.", "Une association peut emprunter au maximum 30 tables et 200 chaises."]),
        {"id": "n1", "expected": "refuse_not_found", "gold_docs": [], "retrieved_docs": [], "outcome": "not_found",
         "refused": True},
        {"id": "n2", "expected": "refuse_not_found", "gold_docs": [], "retrieved_docs": [], "outcome": "uncertain",
         "refused": False},
    ]
    summary = summarise(records)
    assert summary["outcomes"]["answer"] | {} == {"n": 2, "answer": 1, "uncertain": 1, "not_found": 0,
                                                  "answer_share": 0.5, "uncertain_share": 0.5, "not_found_share": 0.0}
    assert summary["outcomes"]["refuse_not_found"]["not_found"] == 1
    assert summary["answers"]["first_extract_answers"] == 0.5  # the answer came first once, second once
    assert summary["answers"]["answer_found"] == 1.0  # in the reply both times
    assert summary["refusals"]["refuse_not_found"] == 0.5  # « uncertain » is not a refusal
