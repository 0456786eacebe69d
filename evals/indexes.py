"""Evaluation indexes: one per config key and corpus under ``<data_dir>/evals/indexes/``, reused while the key holds."""


from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from evals.datasets import Corpus, Dataset

logger = logging.getLogger(__name__)


INDEX_FORMAT = 1


"""Bump when the way evaluation indexes are built changes: every cached index is rebuilt."""


Log = Callable[[str], None]


def stderr_log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def index_material(settings, corpus: Corpus) -> dict:
    """What decides the content of an index: embedder, chunking, parsing and OCR settings, the corpus, and the
    engine settings it is built with (they change its search graph, so comparing them needs one index each)."""
    from collectivia.wiring import engine_tuning

    limits = settings.limits
    return {
        "format": INDEX_FORMAT,
        "engine": asdict(engine_tuning(settings.qdrant)),
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


def slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in text).strip("-")[:40] or "x"


@dataclass
class OpenIndex:
    settings: Any  # the settings, pointed at the cached index
    embedder: Any
    store: Any
    info: dict

    def close(self) -> None:
        self.store.close()


def open_index(settings, dataset: Dataset, *, log: Log = stderr_log) -> OpenIndex:
    """Open (building it first when needed) the index of ``dataset.corpus`` for ``settings``."""
    from collectivia.wiring import build_embedder, build_ingestor, build_store

    corpus = dataset.corpus
    key = index_key(settings, corpus)
    embedder_label = settings.embedder.kind
    if settings.embedder.kind == "sentence-transformers":
        model = Path(settings.embedder.model or "model")
        embedder_label = "st-" + (model.parent.name if model.name in ("model", "models") else model.name)
    folder = Path(settings.data_dir) / "evals" / "indexes" / f"{slug(corpus.kind)}-{slug(embedder_label)}-{key}"
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
            "machine": machine(),
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


def machine() -> dict:
    return {"platform": platform.platform(), "machine": platform.machine(), "cpus": os.cpu_count(),
            "python": platform.python_version()}
