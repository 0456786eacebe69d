"""Run a question set through the real pipeline, as each question's user, and record what happened.

    collectivia eval run --dataset commune [--config evals/configs/bm25.yaml] [--out DIR]

1. **Settings.** A config file (``evals/configs/*.yaml``) holds overrides of ``Settings`` as a nested dict
   (``{search: {mode: bm25}, embedder: {kind: e5}}``), applied with ``Settings(**overrides)`` so that they are
   merged over the environment (``COLLECTIVIA_*``, ``.env``). Two optional sections are not settings: ``judge``
   (an LLM judge, see ``Judge``) and ``eval`` (``depth``: chunks fetched for the retrieval metrics).
2. **Index.** Built for the config in ``<data_dir>/evals/indexes/<corpus>-<embedder>-<key>/``, where ``key`` hashes
   the settings that change the index (embedder kind and model, chunking, parsing and OCR options) and the corpus
   content; a later run with the same key reuses it. ``search.*`` and ``llm.*`` do not change the index: a BM25,
   a dense and a hybrid run of one embedder share it.
3. **Questions.** For each question: ``Assistant.answer(question, user)`` (the product's path: retrieval with the
   access filter, relevance threshold, generation, citations), and a deeper ranked list for the retrieval metrics
   (``HybridRetriever.candidates(question, user, limit=depth)``, the same fused query as the answer's, deduplicated
   by document). Every retrieved, traced, source or cited chunk is checked against the user's rights with
   ``rag.access.can_see`` (its payload's services and its document's services in the store): any other is a leak.
4. **Output** (``evals.report``): ``results.jsonl`` (one record per question), ``summary.json``, ``report.md`` and
   PNG charts. A run with a leak exits with code 1.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from evals.config import EvalConfig, build_settings
from evals.datasets import Dataset, Question
from evals.indexes import Log, machine, open_index, slug, stderr_log
from evals.judge import JUDGE_PROMPT, Judge

logger = logging.getLogger(__name__)


logger = logging.getLogger(__name__)


def _chunk_json(chunk) -> dict:
    return {"chunk_id": chunk.id, "doc_id": chunk.doc_id, "score": round(float(chunk.score), 6),
            "relevance": round(float(chunk.relevance), 4), "services": list(chunk.services)}


def ranked_documents(chunks: list[dict], canonical: Callable[[str], str]) -> list[dict]:
    """Documents in the rank order of their best chunk (deduplicated, ids mapped by ``canonical``)."""
    seen: dict[str, dict] = {}
    for chunk in chunks:
        doc = canonical(chunk["doc_id"])
        if doc not in seen:
            seen[doc] = {"doc_id": doc, "score": chunk["score"], "rank": len(seen) + 1}
    return list(seen.values())


def answer_question(assistant, question: Question, user, *, depth: int, canonical: Callable[[str], str],
                    doc_services: dict[str, tuple[str, ...]], judge: Judge | None = None,
                    llm_model: str | None = None) -> dict:
    """One question through the pipeline: the record written to ``results.jsonl`` (before metrics)."""
    from evals.metrics import find_leaks, footprint

    record: dict[str, Any] = {
        "id": question.id, "question": question.question, "user": question.user, "type": question.type,
        "expected": question.expected, "gold_docs": list(question.gold_docs),
        "gold_passage": question.gold_passage, "short_answer": question.short_answer,
    }
    if question.grades:
        record["grades"] = dict(question.grades)
    retriever = assistant.retriever
    started = time.perf_counter()
    if getattr(retriever, "reranker", None) is not None:
        chunks = retriever.retrieve(question.question, user, k=max(10, depth // 2))
        record["ranking"] = "retrieve"
    else:
        chunks = retriever.candidates(question.question, user, limit=depth)
        record["ranking"] = "candidates"
    candidates_ms = (time.perf_counter() - started) * 1000
    record["retrieved"] = [_chunk_json(c) for c in chunks]
    record["retrieved_docs"] = [d["doc_id"] for d in ranked_documents(record["retrieved"], canonical)]

    answer = assistant.answer(question.question, user)
    record["answer"] = answer.text
    record["refused"] = bool(answer.refused)
    record["refusal_reason"] = answer.refusal_reason
    record["outcome"] = answer.outcome
    record["answerability"] = answer.probability
    record["answer_span"] = answer.answer_span
    record["extracts"] = list(answer.extracts)
    record["error"] = answer.error
    record["generator"] = answer.generator
    record["sources"] = [{**_chunk_json(s), "text": s.text} for s in answer.sources]  # what the answer was drawn from
    record["source_docs"] = [d["doc_id"] for d in ranked_documents(record["sources"], canonical)]
    record["trace"] = [{"chunk_id": t.chunk_id, "doc_id": t.doc_id, "score": round(t.score, 6),
                        "relevance": round(t.relevance, 4)} for t in answer.trace]
    record["citations"] = [{"n": c.n, "doc_id": c.doc_id, "canonical_doc_id": canonical(c.doc_id),
                            "services": list(c.services), "supported": c.supported, "passage": c.passage}
                           for c in answer.citations]
    record["unsupported"] = list(answer.unsupported)
    timings = {k: round(v, 2) for k, v in answer.timings_ms.items()}
    timings["candidates"] = round(candidates_ms, 2)
    record["timings_ms"] = timings
    record["usage"] = dict(answer.usage)

    # Access: every chunk the user was shown or that reached the model, checked against their services.
    services_by_chunk = {c["chunk_id"]: c["services"] for c in record["retrieved"] + record["sources"]}
    checked = [("retrieved", c["chunk_id"], c["doc_id"], c["services"]) for c in record["retrieved"]]
    checked += [("source", c["chunk_id"], c["doc_id"], c["services"]) for c in record["sources"]]
    checked += [("trace", t["chunk_id"], t["doc_id"], services_by_chunk.get(t["chunk_id"])) for t in record["trace"]]
    checked += [("citation", f"[{c['n']}]", c["doc_id"], c["services"]) for c in record["citations"]]
    record["leaks"] = find_leaks(user, checked, doc_services)

    generate_ms = answer.timings_ms.get("generate")
    completion = answer.usage.get("completion_tokens") if answer.usage else None
    if not getattr(assistant.generator, "extractive", True) and completion and llm_model:
        record["footprint"] = footprint(llm_model, int(completion), (generate_ms or 0) / 1000)
    if judge is not None and question.expected == "answer" and not answer.refused and not answer.error:
        t = time.perf_counter()
        record["judge"] = judge.judge(question.question, answer.text, [c["passage"] for c in record["citations"]],
                                      question.short_answer or question.gold_passage)
        record["timings_ms"]["judge"] = round((time.perf_counter() - t) * 1000, 2)
    return record


@dataclass
class RunResult:
    out_dir: Path
    summary: dict
    records: list[dict]

    @property
    def leaks(self) -> int:
        return int(self.summary["access"]["leaks"])

    @property
    def exit_code(self) -> int:
        return 1 if self.leaks else 0


def run_dataset(
    dataset: Dataset,
    config: EvalConfig | None = None,
    out_dir: str | Path | None = None,
    *,
    settings=None,
    limit: int | None = None,
    depth: int | None = None,
    log: Log = stderr_log,
) -> RunResult:
    """Run every question of ``dataset`` (or the first ``limit``) with ``config``; write the run under ``out_dir``."""
    from collectivia.wiring import build_assistant
    from evals.metrics import summarise
    from evals.report import write_run

    config = config or EvalConfig()
    settings = settings if settings is not None else build_settings(config.overrides)
    if out_dir is None:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        out_dir = Path(settings.data_dir) / "evals" / "runs" / f"{slug(dataset.name)}-{slug(config.name)}-{stamp}"
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    index = open_index(settings, dataset, log=log)
    try:
        store_docs = index.store.documents()
        doc_services = {doc_id: tuple(r.services) for doc_id, r in store_docs.items()}
        indexed = {dataset.canonical_doc_id(d) for d in store_docs}
        questions, skipped = _questions_in_index(dataset, indexed)
        if limit is not None:
            questions = questions[:limit]
        assistant = build_assistant(index.settings, index.embedder, index.store)
        depth = depth or config.depth or max(index.settings.search.prefetch, 10)
        judge = Judge(config.judge) if config.judge else None
        llm = index.settings.llm
        records: list[dict] = []
        started = time.perf_counter()
        log(f"[eval] {dataset.name} : {len(questions)} questions, configuration {config.name} "
            f"(recherche {index.settings.search.mode}, embedder {index.embedder.name}, générateur "
            f"{assistant.generator.name})")
        last = started
        for position, question in enumerate(questions, start=1):
            user = dataset.users[question.user]
            try:
                record = answer_question(assistant, question, user, depth=depth, canonical=dataset.canonical_doc_id,
                                         doc_services=doc_services, judge=judge,
                                         llm_model=llm.model if llm.enabled else None)
            except Exception as exc:  # one failing question is recorded, the run goes on
                logger.exception("question %s", question.id)
                record = {"id": question.id, "question": question.question, "user": question.user,
                          "type": question.type, "expected": question.expected, "gold_docs": list(question.gold_docs),
                          "exception": f"{type(exc).__name__}: {exc}", "retrieved": [], "retrieved_docs": [],
                          "sources": [], "trace": [], "citations": [], "leaks": [], "refused": False,
                          "timings_ms": {}, "usage": {}}
            records.append(record)
            if time.perf_counter() - last >= 20 or position == len(questions):
                last = time.perf_counter()
                log(f"[eval]   {position}/{len(questions)} questions ({last - started:.0f} s)")
        if judge is not None:
            judge.close()
        run_seconds = time.perf_counter() - started
        meta = {
            "dataset": dataset.describe() | {"skipped_questions": dataset.skipped + skipped,
                                             "skipped": len(dataset.skipped) + len(skipped),
                                             "questions": len(questions)},
            "config": {"name": config.name, "path": config.path, "description": config.description,
                       "overrides": config.overrides},
            "settings": _settings_json(index.settings),
            "index": index.info,
            "embedder": index.embedder.name,
            "generator": assistant.generator.name,
            "answerability_thresholds": _thresholds(assistant),
            "llm_model": llm.model if llm.enabled else None,
            "judge": ({"model": config.judge.model, "endpoint": config.judge.endpoint, "prompt": JUDGE_PROMPT}
                      if config.judge else None),
            "depth": depth,
            "limit": limit,
            "run_seconds": round(run_seconds, 1),
            "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "machine": machine(),
            "command": " ".join(sys.argv) if sys.argv and "collectivia" in sys.argv[0] else None,
        }
    finally:
        index.close()
    summary = summarise(records, meta)
    write_run(out_dir, records, summary)
    log(f"[eval] résultats dans {out_dir}")
    return RunResult(out_dir, summary, records)


def _questions_in_index(dataset: Dataset, indexed: set[str]) -> tuple[list[Question], list[dict[str, str]]]:
    """Skip (and report) questions to answer whose gold documents are all missing from the index, for public
    sets (their gold ids come from elsewhere); for project sets this is only a warning (a broken set)."""
    kept: list[Question] = []
    skipped: list[dict[str, str]] = []
    for q in dataset.questions:
        if q.expected == "answer" and q.gold_docs and not (set(q.gold_docs) & indexed):
            if dataset.corpus.kind in ("service_public", "beir"):
                skipped.append({"id": q.id, "reason": f"document(s) de référence non indexé(s) : {', '.join(q.gold_docs)}"})
                continue
            logger.warning("question %s : document(s) de référence absent(s) de l'index : %s", q.id, q.gold_docs)
        kept.append(q)
    return kept, skipped


def _thresholds(assistant) -> dict:
    """The decision's operating points in force for this run (the model's, or the settings' overrides)."""
    model = getattr(assistant, "model", None)
    if model is None:
        return {}
    return {"answer": assistant.answer_threshold if assistant.answer_threshold is not None else model.answer_threshold,
            "not_found": (assistant.not_found_threshold if assistant.not_found_threshold is not None
                          else model.not_found_threshold),
            "model": model.info}


def _settings_json(settings) -> dict:
    data = json.loads(settings.model_dump_json())
    for section in ("qdrant", "llm"):  # secrets are never written
        if isinstance(data.get(section), dict) and data[section].get("api_key"):
            data[section]["api_key"] = "***"
    data.get("chat", {}).pop("auth_secret", None)
    return data

