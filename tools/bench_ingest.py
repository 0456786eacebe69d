"""Ingestion benchmark: end-to-end throughput beside the embedder's raw throughput, re-ingestion time, peak memory.

    python -m tools.bench_ingest [PATH ...] [--json]

Indexes PATH (default: corpora/commune) into a fresh temporary index with the configured embedder (the bundled
USE by default), then re-ingests the unchanged files, then embeds the very same chunk texts with the bare embedder
(same batches) to get its raw throughput. Targets (issue #2): end-to-end ≥ 80 % of raw; unchanged re-run ≤ 5 % of
the first run.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

from index.offline import configure_offline

configure_offline()


def _peak_rss_mb(who: int) -> float:
    return resource.getrusage(who).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="*", type=Path, default=[Path("corpora/commune")])
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)

    from collectivia.settings import Settings
    from collectivia.wiring import build_embedder, build_ingestor, build_store
    from ingest.chunk import embed_text_for
    from ingest.pipeline import EMBED_BATCH_CHUNKS

    with tempfile.TemporaryDirectory(prefix="collectivia-bench-") as tmp:
        settings = Settings(data_dir=Path(tmp))
        embedder = build_embedder(settings)
        store = build_store(settings, embedder)
        ingestor = build_ingestor(settings, embedder, store)

        started = time.perf_counter()
        first = ingestor.ingest_paths(args.paths)
        first_s = time.perf_counter() - started
        started = time.perf_counter()
        again = ingestor.ingest_paths(args.paths)
        again_s = time.perf_counter() - started

        hits = store._scroll(store_filter_all(), None)
        texts = [
            embed_text_for(h.payload["title"], h.payload["section"], h.payload["text"], settings.chunk.title_in_embedding)
            for h in sorted(hits, key=lambda h: (h.payload["doc_id"], h.payload["chunk_index"]))
        ]
        started = time.perf_counter()
        for i in range(0, len(texts), EMBED_BATCH_CHUNKS):
            embedder.embed_documents(texts[i : i + EMBED_BATCH_CHUNKS])
        raw_s = time.perf_counter() - started
        store.close()

    e2e = first.chunks_embedded / first_s
    raw = len(texts) / raw_s
    figures = {
        "corpus": [str(p) for p in args.paths],
        "embedder": embedder.name,
        "documents": first.indexed,
        "failed": len(first.failed),
        "chunks": first.chunks_embedded,
        "first_run_s": round(first_s, 2),
        "end_to_end_chunks_per_s": round(e2e, 1),
        "raw_embedding_chunks_per_s": round(raw, 1),
        "end_to_end_over_raw": round(e2e / raw, 3),
        "unchanged_rerun_s": round(again_s, 2),
        "unchanged_rerun_over_first": round(again_s / first_s, 3),
        "unchanged_rerun_embedded": again.chunks_embedded,
        "peak_rss_main_mb": round(_peak_rss_mb(resource.RUSAGE_SELF)),
        "peak_rss_parse_workers_mb": round(_peak_rss_mb(resource.RUSAGE_CHILDREN)),
        "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cores, Python {platform.python_version()}",
        "parse_workers": settings.limits.parse_workers,
    }
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        print(f"Corpus {', '.join(figures['corpus'])}: {figures['documents']} documents, {figures['chunks']} chunks "
              f"({figures['failed']} failed), embedder {figures['embedder']}, {figures['machine']}")
        print(f"  end-to-end       {figures['end_to_end_chunks_per_s']:7.1f} chunks/s  ({figures['first_run_s']} s)")
        print(f"  raw embedding    {figures['raw_embedding_chunks_per_s']:7.1f} chunks/s  "
              f"-> end-to-end is {figures['end_to_end_over_raw']:.0%} of raw (target ≥ 80 %)")
        print(f"  unchanged re-run {figures['unchanged_rerun_s']:7.2f} s  "
              f"-> {figures['unchanged_rerun_over_first']:.1%} of the first run (target ≤ 5 %), "
              f"{figures['unchanged_rerun_embedded']} chunks embedded")
        print(f"  peak memory      {figures['peak_rss_main_mb']} MB (main), {figures['peak_rss_parse_workers_mb']} MB (largest parse worker)")
    return figures


def store_filter_all():
    from qdrant_client import models

    return models.Filter(must=[models.FieldCondition(key="state", match=models.MatchValue(value="live"))])


if __name__ == "__main__":
    main(sys.argv[1:])
