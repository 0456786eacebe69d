"""Compare two evaluation runs question by question.

    collectivia eval compare RUN_A RUN_B [--resamples 2000] [--seed 0] [--json]

For each per-question metric (retrieval: nDCG@10, recall@1/5/10, MRR@10, hit@5; answers: answer found, citation
precision and recall; behaviour: correct answer-or-refusal), on the questions both runs scored: the mean of A, the
mean of B, the delta B − A and its 95 % confidence interval from a **paired bootstrap** (the same questions resampled
with replacement for both runs, ``resamples`` times, numpy generator seeded with ``seed``: the same inputs always
give the same interval). An interval that excludes 0 is marked as a real difference at that level.

Then the questions that changed outcome: hit@5 (a gold document in the first five or not), correct behaviour
(answered when it should, refused when it should) and answer found, flipped either way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from evals.report import read_results, read_summary

COMPARED = ("ndcg@10", "recall@1", "recall@5", "recall@10", "mrr@10", "hit@5", "answer_found", "citation_precision",
            "citation_recall", "refusal_correct")
FLIPS = ("hit@5", "refusal_correct", "answer_found")


def paired_bootstrap(a: Sequence[float], b: Sequence[float], *, resamples: int = 2000, seed: int = 0,
                     level: float = 0.95) -> dict[str, Any]:
    """Mean delta ``b − a`` over paired values and its percentile bootstrap confidence interval."""
    a_arr, b_arr = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a_arr.shape != b_arr.shape:
        raise ValueError("paired_bootstrap : les deux séries doivent être appariées (même longueur)")
    n = a_arr.size
    if n == 0:
        return {"n": 0, "mean_a": None, "mean_b": None, "delta": None, "ci_low": None, "ci_high": None,
                "significant": False}
    diff = b_arr - a_arr
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, n, size=(resamples, n))].mean(axis=1)
    alpha = (1 - level) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    return {"n": int(n), "mean_a": float(a_arr.mean()), "mean_b": float(b_arr.mean()), "delta": float(diff.mean()),
            "ci_low": float(low), "ci_high": float(high), "significant": bool(low > 0 or high < 0)}


def _value(record: dict, metric: str) -> float | None:
    value = (record.get("metrics") or {}).get(metric)
    if value is None:
        return None
    return float(value)


def compare_records(records_a: list[dict], records_b: list[dict], *, resamples: int = 2000, seed: int = 0,
                    metrics: Sequence[str] = COMPARED) -> dict[str, Any]:
    by_a = {str(r["id"]): r for r in records_a}
    by_b = {str(r["id"]): r for r in records_b}
    common = [qid for qid in by_a if qid in by_b]
    out: dict[str, Any] = {
        "questions": {"a": len(by_a), "b": len(by_b), "common": len(common),
                      "only_a": sorted(set(by_a) - set(by_b))[:50], "only_b": sorted(set(by_b) - set(by_a))[:50]},
        "resamples": resamples, "seed": seed, "metrics": {}, "flips": {},
    }
    for metric in metrics:
        pairs = [(_value(by_a[q], metric), _value(by_b[q], metric)) for q in common]
        pairs = [(x, y) for x, y in pairs if x is not None and y is not None]
        if not pairs:
            continue
        out["metrics"][metric] = paired_bootstrap([p[0] for p in pairs], [p[1] for p in pairs],
                                                  resamples=resamples, seed=seed)
    for metric in FLIPS:
        better, worse = [], []
        for q in common:
            x, y = _value(by_a[q], metric), _value(by_b[q], metric)
            if x is None or y is None or bool(x) == bool(y):
                continue
            item = {"id": q, "type": by_b[q].get("type"), "question": by_b[q].get("question", "")[:120],
                    "a": x, "b": y, "docs_a": (by_a[q].get("retrieved_docs") or [])[:3],
                    "docs_b": (by_b[q].get("retrieved_docs") or [])[:3], "gold": by_b[q].get("gold_docs")}
            (better if y > x else worse).append(item)
        out["flips"][metric] = {"better": better, "worse": worse}
    leaks_a = sum(len(r.get("leaks") or []) for r in records_a)
    leaks_b = sum(len(r.get("leaks") or []) for r in records_b)
    out["leaks"] = {"a": leaks_a, "b": leaks_b}
    return out


def compare_runs(run_a: str | Path, run_b: str | Path, *, resamples: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Compare two run folders (``results.jsonl`` with per-question ``metrics``)."""
    records_a, records_b = read_results(run_a), read_results(run_b)
    out = compare_records(records_a, records_b, resamples=resamples, seed=seed)
    out["a"], out["b"] = _describe(run_a), _describe(run_b)
    if out["a"].get("dataset") != out["b"].get("dataset"):
        out["warning"] = "les deux passages ne portent pas sur le même jeu de questions"
    return out


def _describe(run_dir: str | Path) -> dict:
    try:
        s = read_summary(run_dir)
    except (OSError, ValueError):
        return {"path": str(run_dir)}
    return {"path": str(run_dir), "dataset": (s.get("dataset") or {}).get("name"),
            "config": (s.get("config") or {}).get("name"), "embedder": s.get("embedder"),
            "mode": ((s.get("settings") or {}).get("search") or {}).get("mode"), "generator": s.get("generator")}


def format_comparison(result: dict) -> str:
    a, b = result.get("a", {}), result.get("b", {})
    q = result["questions"]
    lines = [f"A : {a.get('path')} ({a.get('config')}, {a.get('embedder')}, {a.get('mode')})",
             f"B : {b.get('path')} ({b.get('config')}, {b.get('embedder')}, {b.get('mode')})",
             f"Questions communes : {q['common']} (A seul : {len(q['only_a'])}, B seul : {len(q['only_b'])}) ; "
             f"bootstrap apparié, {result['resamples']} tirages, graine {result['seed']}, IC 95 %"]
    if result.get("warning"):
        lines.append(f"ATTENTION : {result['warning']}")
    lines += ["", f"{'mesure':<20}{'n':>5}{'A':>9}{'B':>9}{'B − A':>10}   IC 95 %", "-" * 72]
    for metric, m in result["metrics"].items():
        mark = "  *" if m["significant"] else ""
        lines.append(f"{metric:<20}{m['n']:>5}{m['mean_a']:>9.3f}{m['mean_b']:>9.3f}{m['delta']:>+10.3f}   "
                     f"[{m['ci_low']:+.3f}, {m['ci_high']:+.3f}]{mark}")
    lines += ["(* : l'intervalle exclut 0)", "", f"Fuites d'accès : A {result['leaks']['a']}, B {result['leaks']['b']}"]
    for metric, flips in result["flips"].items():
        if not flips["better"] and not flips["worse"]:
            continue
        lines += ["", f"{metric} — {len(flips['better'])} question(s) gagnée(s) par B, {len(flips['worse'])} perdue(s) :"]
        for sign, items in (("+", flips["better"]), ("-", flips["worse"])):
            for item in items[:25]:
                lines.append(f"  {sign} {item['id']:<14} {item.get('type') or '':<26} {item['question'][:70]}")
            if len(items) > 25:
                lines.append(f"    … et {len(items) - 25} autre(s) (--json pour la liste complète)")
    return "\n".join(lines)
