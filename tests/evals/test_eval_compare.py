"""Comparison of two runs: paired bootstrap (deterministic with its seed), deltas, questions that flipped."""

from __future__ import annotations

import json

import numpy as np

from evals.compare import compare_records, compare_runs, format_comparison, paired_bootstrap


def test_bootstrap_is_deterministic_with_its_seed():
    rng = np.random.default_rng(1)
    a, b = rng.random(50), rng.random(50)
    first = paired_bootstrap(a, b, resamples=2000, seed=7)
    assert paired_bootstrap(a, b, resamples=2000, seed=7) == first
    assert paired_bootstrap(a, b, resamples=2000, seed=8) != first
    assert first["delta"] == np.mean(b - a) and first["n"] == 50
    assert first["ci_low"] <= first["delta"] <= first["ci_high"]


def test_a_clearly_better_run_has_a_positive_interval():
    a = [0.0] * 40 + [1.0] * 10
    b = [1.0] * 45 + [0.0] * 5
    result = paired_bootstrap(a, b, resamples=2000, seed=0)
    assert result["ci_low"] > 0 and result["significant"]
    same = paired_bootstrap(a, a, resamples=2000, seed=0)
    assert (same["delta"], same["ci_low"], same["ci_high"], same["significant"]) == (0.0, 0.0, 0.0, False)


def records(hits: list[int], refusals: list[bool]) -> list[dict]:
    out = []
    for i, (hit, ok) in enumerate(zip(hits, refusals)):
        out.append({"id": f"q{i}", "type": "lexical", "question": f"question {i}", "gold_docs": ["D"],
                    "retrieved_docs": ["D"] if hit else ["X"], "leaks": [],
                    "metrics": {"hit@5": float(hit), "ndcg@10": float(hit), "refusal_correct": ok,
                                "citation_precision": None}})
    return out


def test_flips_are_listed_both_ways():
    a = records([1, 0, 0, 1], [True, True, False, True])
    b = records([1, 1, 1, 0], [True, False, True, True])
    result = compare_records(a, b, resamples=500, seed=0)
    assert [x["id"] for x in result["flips"]["hit@5"]["better"]] == ["q1", "q2"]
    assert [x["id"] for x in result["flips"]["hit@5"]["worse"]] == ["q3"]
    assert [x["id"] for x in result["flips"]["refusal_correct"]["worse"]] == ["q1"]
    assert result["metrics"]["hit@5"]["delta"] == 0.25
    assert "citation_precision" not in result["metrics"]  # no question has it in both runs


def test_compare_run_folders_and_text(tmp_path):
    summary = {"dataset": {"name": "commune"}, "config": {"name": "x"}, "access": {"ok": True, "leaks": 0},
               "retrieval": {"n": 0}, "by_type": {}, "latency_ms": {}, "answers": {}, "refusals": {}}
    a, b = records([0] * 30 + [1] * 10, [True] * 40), records([1] * 38 + [0] * 2, [True] * 40)
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    for name, recs in (("a", a), ("b", b)):
        (tmp_path / name / "results.jsonl").write_text("\n".join(json.dumps(r) for r in recs), encoding="utf-8")
        (tmp_path / name / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    result = compare_runs(tmp_path / "a", tmp_path / "b")
    assert result["metrics"]["hit@5"]["ci_low"] > 0 and result["resamples"] == 2000
    text = format_comparison(result)
    assert "hit@5" in text and "*" in text and "+ q0" in text and "- q38" in text
