"""Metrics of an evaluation run, per question and aggregated (run level and per question type).

- **Retrieval** (questions to answer that have gold documents): recall@1/5/10, MRR@10, nDCG@10 and hit@5 of the
  ranked documents (``retrieved_docs``: the retriever's candidates deduplicated by document), computed with
  ``ranx`` against the gold documents (graded when the set grades them).
- **Answers**: citation precision (share of cited sources whose document is gold) and recall (share of gold
  documents cited), for questions to answer; *answer found*: the gold passage or the short answer occurs in the
  answer or in its cited passages (case, whitespace and apostrophes normalised); refusal accuracy on
  ``refuse_not_found`` (refused) and ``refuse_no_access`` (refused, and no retrieved, traced or cited chunk from a
  gold document); false refusals on questions to answer; unsupported citations (``Answer.unsupported``).
- **Access**: a leak is a retrieved, traced, source or cited chunk whose services the asking user may not see
  (``rag.access.can_see``, on the chunk's payload and on its document's services in the store). Must be 0.
- **Cost**: latency p50/p95 per stage; with an LLM, tokens and EcoLogits' energy and emissions per answer.
- **Judge** (optional): mean faithfulness and correctness.
"""

from __future__ import annotations

import math
import warnings
from collections import defaultdict
from typing import Any, Iterable, Sequence

import numpy as np

from evals.text import contains, holds_answer, normalise  # noqa: F401 - re-exported
from rag.access import User, can_see

RANX_METRICS = {  # our name -> ranx's
    "recall@1": "recall@1",
    "recall@5": "recall@5",
    "recall@10": "recall@10",
    "mrr@10": "mrr@10",
    "ndcg@10": "ndcg@10",
    "hit@5": "hit_rate@5",
}
RETRIEVAL_METRICS = tuple(RANX_METRICS)
ANSWER_METRICS = ("citation_precision", "citation_recall", "answer_found", "refusal_correct")
STAGES = ("candidates", "retrieve", "decide", "first_token", "generate", "total", "rewrite", "judge")
NO_DOC = "__no_document__"


# --------------------------------------------------------------------------------------------------------------
# Access
# --------------------------------------------------------------------------------------------------------------


def find_leaks(
    user: User,
    chunks: Iterable[tuple[str, str, str, Sequence[str] | None]],
    doc_services: dict[str, Sequence[str]] | None = None,
) -> list[dict]:
    """Chunks outside ``user``'s scope, from ``(where, chunk_id, doc_id, services)`` tuples.

    A chunk leaks when its own services (its payload) or its document's services in the store (``doc_services``)
    are not visible to the user. A chunk whose services are unknown on both counts is a leak too (deny by default).
    """
    leaks: list[dict] = []
    doc_services = doc_services or {}
    for where, chunk_id, doc_id, services in chunks:
        stored = doc_services.get(doc_id)
        verdicts = [can_see(user, s) for s in (services, stored) if s is not None]
        if not verdicts or not all(verdicts):
            leaks.append({"where": where, "chunk_id": chunk_id, "doc_id": doc_id,
                          "services": list(services) if services is not None else None,
                          "doc_services": list(stored) if stored is not None else None})
    return leaks


# --------------------------------------------------------------------------------------------------------------
# Retrieval (ranx)
# --------------------------------------------------------------------------------------------------------------


def _retrieval_scored(record: dict) -> bool:
    return record.get("expected", "answer") == "answer" and bool(record.get("gold_docs")) and "exception" not in record


def retrieval_scores(records: Sequence[dict]) -> dict[str, dict[str, float]]:
    """Per-question retrieval metrics ``{question id: {metric: value}}`` computed by ranx."""
    from ranx import Qrels, Run, evaluate

    scored = [r for r in records if _retrieval_scored(r)]
    if not scored:
        return {}
    qrels_dict: dict[str, dict[str, int]] = {}
    run_dict: dict[str, dict[str, float]] = {}
    for r in scored:
        qid = str(r["id"])
        grades = r.get("grades") or {doc: 1 for doc in r["gold_docs"]}
        qrels_dict[qid] = {doc: int(g) for doc, g in grades.items() if int(g) > 0}
        docs = list(dict.fromkeys(r.get("retrieved_docs") or []))
        # Scores that keep the recorded order exactly (ranx sorts by score; ties would reorder).
        run_dict[qid] = {doc: float(len(docs) - rank) for rank, doc in enumerate(docs)} or {NO_DOC: 0.0}
    qrels, run = Qrels(qrels_dict), Run(run_dict)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        evaluate(qrels, run, list(RANX_METRICS.values()), make_comparable=True, save_results_in_run=True)
    out: dict[str, dict[str, float]] = {str(r["id"]): {} for r in scored}
    for ours, theirs in RANX_METRICS.items():
        for qid, value in run.scores[theirs].items():
            out[qid][ours] = float(value)
    return out


# --------------------------------------------------------------------------------------------------------------
# Answers
# --------------------------------------------------------------------------------------------------------------


def answer_scores(record: dict) -> dict[str, Any]:
    """Per-question answer metrics (``None`` where a metric does not apply to the question)."""
    expected = record.get("expected", "answer")
    gold = set(record.get("gold_docs") or [])
    citations = record.get("citations") or []
    cited_docs = [c.get("canonical_doc_id") or c["doc_id"] for c in citations]
    refused = bool(record.get("refused"))
    out: dict[str, Any] = {"refused": refused, "citations": len(citations),
                           "unsupported_citations": len(record.get("unsupported") or []),
                           "leaks": len(record.get("leaks") or [])}
    if "exception" in record:
        out.update({"citation_precision": None, "citation_recall": None, "answer_found": None,
                    "refusal_correct": False, "gold_passage_in_sources": None})
        return out
    if expected == "answer":
        out["citation_precision"] = (sum(d in gold for d in cited_docs) / len(cited_docs)) if (cited_docs and gold) else None
        out["citation_recall"] = (len(gold & set(cited_docs)) / len(gold)) if gold else None
        references = [x for x in (record.get("gold_passage"), record.get("short_answer")) if x]
        if references:
            texts = [record.get("answer") or ""] + [c.get("passage") or "" for c in citations]
            # The short answer or the gold passage in what the agent reads (answer, cited passages), or a sentence
            # of the answer holding most of the gold passage's words (PDF extraction and cuts change a few).
            out["answer_found"] = (any(contains(t, ref) for t in texts for ref in references)
                                   or any(holds_answer(x, None, record.get("gold_passage"))
                                          for x in record.get("extracts") or []))
        else:
            out["answer_found"] = None
        passage = record.get("gold_passage")
        out["gold_passage_in_sources"] = (
            any(contains(s, passage) for s in _source_texts(record)) if passage else None)
        out["refusal_correct"] = not refused
        extracts = record.get("extracts") or []
        out["first_extract_answers"] = (holds_answer(extracts[0], record.get("short_answer"), record.get("gold_passage"))
                                        if extracts and references else None)
    else:
        out["citation_precision"] = out["citation_recall"] = out["answer_found"] = None
        out["gold_passage_in_sources"] = None
        if expected == "refuse_no_access":
            touched = {c.get("doc_id") for c in record.get("retrieved") or []}
            touched |= {t.get("doc_id") for t in record.get("trace") or []}
            touched |= {c.get("doc_id") for c in record.get("sources") or []}
            touched |= set(cited_docs) | {c.get("doc_id") for c in citations}
            out["gold_touched"] = bool(gold & touched)
            out["refusal_correct"] = refused and not out["gold_touched"]
        else:
            out["refusal_correct"] = refused
    return out


def outcome_table(records: Sequence[dict]) -> dict[str, dict[str, Any]]:
    """Outcomes (answer, uncertain, not_found) per expected behaviour: counts and shares."""
    table: dict[str, dict[str, Any]] = {}
    for r in records:
        if "exception" in r:
            continue
        row = table.setdefault(r.get("expected", "answer"), {"n": 0, "answer": 0, "uncertain": 0, "not_found": 0})
        row["n"] += 1
        outcome = r.get("outcome") or ("not_found" if r.get("refused") else "answer")
        row[outcome] = row.get(outcome, 0) + 1
    for row in table.values():
        for k in ("answer", "uncertain", "not_found"):
            row[f"{k}_share"] = round(row[k] / row["n"], 4) if row["n"] else None
    return table


def _source_texts(record: dict) -> list[str]:
    return [c.get("passage") or "" for c in record.get("citations") or []] + [record.get("answer") or ""] + [
        s.get("text") or "" for s in record.get("sources") or []]


# --------------------------------------------------------------------------------------------------------------
# Cost and footprint
# --------------------------------------------------------------------------------------------------------------


def percentiles(values: Iterable[float | None]) -> dict[str, float | int | None]:
    data = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=float)
    if data.size == 0:
        return {"n": 0, "p50_ms": None, "p95_ms": None, "mean_ms": None, "max_ms": None}
    return {"n": int(data.size), "p50_ms": round(float(np.percentile(data, 50)), 2),
            "p95_ms": round(float(np.percentile(data, 95)), 2), "mean_ms": round(float(data.mean()), 2),
            "max_ms": round(float(data.max()), 2)}


def _value(impact: Any) -> tuple[float | None, float | None, float | None]:
    """(mean, min, max) of an EcoLogits impact value (a number or a range)."""
    if impact is None:
        return None, None, None
    value = getattr(impact, "value", impact)
    low, high = getattr(value, "min", None), getattr(value, "max", None)
    if low is not None and high is not None:
        return (float(low) + float(high)) / 2, float(low), float(high)
    return float(value), float(value), float(value)


def footprint(model: str, output_tokens: int, latency_s: float, *, provider: str = "mistralai",
              zone: str = "FRA") -> dict:
    """Estimated energy (kWh) and emissions (kgCO2eq) of one answer, with EcoLogits (offline)."""
    try:
        from ecologits.tracers.utils import llm_impacts

        impacts = llm_impacts(provider=provider, model_name=model, output_token_count=int(output_tokens),
                              request_latency=max(float(latency_s), 1e-3), electricity_mix_zone=zone)
    except Exception as exc:  # an unknown model or provider must not stop the run
        return {"model": model, "provider": provider, "zone": zone, "error": f"{type(exc).__name__}: {exc}"}
    energy, energy_min, energy_max = _value(getattr(impacts, "energy", None))
    gwp, gwp_min, gwp_max = _value(getattr(impacts, "gwp", None))
    out = {"model": model, "provider": provider, "zone": zone, "output_tokens": int(output_tokens),
           "energy_kwh": energy, "energy_kwh_range": [energy_min, energy_max],
           "gwp_kgco2eq": gwp, "gwp_kgco2eq_range": [gwp_min, gwp_max]}
    errors = getattr(impacts, "errors", None)
    if energy is None:
        out["error"] = "; ".join(getattr(e, "message", str(e)) for e in errors or []) or "modèle inconnu d'EcoLogits"
    return out


# --------------------------------------------------------------------------------------------------------------
# Summary
# --------------------------------------------------------------------------------------------------------------


def _mean(values: Iterable[Any], digits: int | None = 4) -> tuple[float | None, int]:
    data = [float(v) for v in values if v is not None]
    if not data:
        return None, 0
    mean = sum(data) / len(data)
    return (round(mean, digits) if digits is not None else mean), len(data)


def score_records(records: list[dict]) -> list[dict]:
    """Add ``metrics`` (retrieval and answer metrics) to every record, in place; returns the records."""
    retrieval = retrieval_scores(records)
    for r in records:
        metrics = dict(retrieval.get(str(r["id"]), {}))
        metrics.update(answer_scores(r))
        r["metrics"] = metrics
    return records


def _aggregate(records: list[dict]) -> dict:
    out: dict[str, Any] = {"questions": len(records)}
    retrieval = [r["metrics"] for r in records if "ndcg@10" in r["metrics"]]
    out["retrieval"] = {"n": len(retrieval)}
    for name in RETRIEVAL_METRICS:
        out["retrieval"][name] = _mean(m[name] for m in retrieval)[0]
    answers: dict[str, Any] = {}
    for name in ("citation_precision", "citation_recall", "answer_found", "gold_passage_in_sources",
                 "first_extract_answers"):
        value, n = _mean(r["metrics"].get(name) for r in records)
        answers[name] = value
        answers[f"{name}_n"] = n
    to_answer = [r for r in records if r.get("expected") == "answer"]
    answers["answered_rate"] = _mean(not r["metrics"]["refused"] for r in to_answer)[0]
    answers["false_refusal_rate"] = _mean(r["metrics"]["refused"] for r in to_answer)[0]
    cites = sum(r["metrics"]["citations"] for r in records)
    unsupported = sum(r["metrics"]["unsupported_citations"] for r in records)
    answers["citations"] = cites
    answers["unsupported_citations"] = unsupported
    answers["unsupported_share"] = round(unsupported / cites, 4) if cites else None
    out["answers"] = answers
    refusals: dict[str, Any] = {}
    for kind in ("refuse_not_found", "refuse_no_access"):
        group = [r for r in records if r.get("expected") == kind]
        refusals[kind] = _mean(r["metrics"]["refusal_correct"] for r in group)[0]
        refusals[f"{kind}_n"] = len(group)
    refuse = [r for r in records if r.get("expected") in ("refuse_not_found", "refuse_no_access")]
    refusals["accuracy"] = _mean(r["metrics"]["refusal_correct"] for r in refuse)[0]
    refusals["accuracy_n"] = len(refuse)
    refusals["overall_correct_behaviour"] = _mean(r["metrics"]["refusal_correct"] for r in records)[0]
    out["refusals"] = refusals
    return out


def summarise(records: list[dict], meta: dict | None = None) -> dict:
    """Scores every record (``score_records``) and returns the run summary (``summary.json``)."""
    score_records(records)
    summary: dict[str, Any] = dict(meta or {})
    overall = _aggregate(records)
    summary["questions"] = len(records)
    summary["errors"] = sum("exception" in r for r in records)
    summary["retrieval"] = overall["retrieval"]
    summary["answers"] = overall["answers"]
    summary["refusals"] = overall["refusals"]
    summary["outcomes"] = outcome_table(records)
    by_type: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        by_type[r.get("type") or "default"].append(r)
    summary["by_type"] = {}
    for kind in sorted(by_type):
        agg = _aggregate(by_type[kind])
        summary["by_type"][kind] = {
            "questions": agg["questions"],
            "expected": sorted({r.get("expected") for r in by_type[kind]}),
            "retrieval": agg["retrieval"],
            "answer_found": agg["answers"]["answer_found"],
            "citation_precision": agg["answers"]["citation_precision"],
            "citation_recall": agg["answers"]["citation_recall"],
            "refusal_correct": agg["refusals"]["overall_correct_behaviour"],
        }
    leaks = [dict(leak, question=r["id"], user=r.get("user")) for r in records for leak in r.get("leaks") or []]
    summary["access"] = {"leaks": len(leaks), "questions_with_leaks": len({leak["question"] for leak in leaks}),
                         "examples": leaks[:20], "ok": not leaks}
    summary["latency_ms"] = {stage: percentiles((r.get("timings_ms") or {}).get(stage) for r in records)
                             for stage in STAGES}
    summary["latency_ms"] = {k: v for k, v in summary["latency_ms"].items() if v["n"]}
    summary["footprint"] = _footprint_summary(records, (meta or {}).get("llm_model"))
    summary["judge_scores"] = _judge_summary(records, (meta or {}).get("judge"))
    return summary


def _footprint_summary(records: list[dict], model: str | None) -> dict:
    if not model:
        return {"llm": False, "note": "aucun LLM : réponses extractives, pas de jetons ni d'empreinte de génération"}
    prints = [r["footprint"] for r in records if r.get("footprint")]
    usage = [r.get("usage") or {} for r in records]
    completion = [u.get("completion_tokens") for u in usage if u.get("completion_tokens") is not None]
    prompt = [u.get("prompt_tokens") for u in usage if u.get("prompt_tokens") is not None]
    energy = [p["energy_kwh"] for p in prints if p.get("energy_kwh") is not None]
    gwp = [p["gwp_kgco2eq"] for p in prints if p.get("gwp_kgco2eq") is not None]
    errors = sorted({p["error"] for p in prints if p.get("error")})
    return {
        "llm": True, "model": model, "method": "EcoLogits llm_impacts (provider mistralai, electricity mix FRA)",
        "answers_generated": len(completion),
        "prompt_tokens_mean": _mean(prompt)[0], "completion_tokens_mean": _mean(completion)[0],
        "prompt_tokens_total": int(sum(prompt)), "completion_tokens_total": int(sum(completion)),
        "energy_kwh_per_answer": _mean(energy, None)[0],
        "gwp_kgco2eq_per_answer": _mean(gwp, None)[0],
        "energy_kwh_total": float(sum(energy)) if energy else None,
        "gwp_kgco2eq_total": float(sum(gwp)) if gwp else None,
        "errors": errors,
    }


def _judge_summary(records: list[dict], judge: dict | None) -> dict:
    if not judge:
        return {"skipped": True, "reason": "aucun modèle juge configuré (section judge du fichier de configuration)"}
    judged = [r["judge"] for r in records if r.get("judge")]
    return {
        "skipped": False, "model": judge.get("model"), "endpoint": judge.get("endpoint"),
        "judged": len(judged), "errors": sum(bool(j.get("error")) for j in judged),
        "faithfulness": _mean(j.get("faithfulness") for j in judged)[0],
        "correctness": _mean(j.get("correctness") for j in judged)[0],
    }


# --------------------------------------------------------------------------------------------------------------
# Thresholds (regression gate)
# --------------------------------------------------------------------------------------------------------------


def lookup(summary: dict, dotted: str) -> Any:
    """``summary["retrieval"]["ndcg@10"]`` for ``"retrieval.ndcg@10"``."""
    value: Any = summary
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def check_thresholds(summary: dict, thresholds: dict) -> list[str]:
    """Failures of a run against ``evals/thresholds.json`` (``min``: floors, ``max``: ceilings); empty when it passes."""
    failures: list[str] = []
    for key, floor in (thresholds.get("min") or {}).items():
        value = lookup(summary, key)
        if value is None or float(value) < float(floor):
            failures.append(f"{key} = {value} < {floor}")
    for key, ceiling in (thresholds.get("max") or {}).items():
        value = lookup(summary, key)
        if value is None or float(value) > float(ceiling):
            failures.append(f"{key} = {value} > {ceiling}")
    return failures
