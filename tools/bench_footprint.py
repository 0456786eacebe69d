"""Footprint of the embedded index: disk, memory and index time per number of chunks (the sizing of a server).

    python -m tools.bench_footprint [--chunks 10000 100000] [--batch 1000] [--optimize-every 100000] [--queries 200]
                                    [--user-services 3] [--min-available-gb 3] [--json]
    # engine settings the product leaves at their defaults, to measure what a large index needs:
    nice -n 10 python -m tools.bench_footprint --chunks 1000000 --max-segment-mb 256 --ef-construct 32 --filter-graphs none  # loses results: see the docs

For each N, a fresh process writes N synthetic chunks into the embedded Qdrant Edge index (``index.store.EdgeStore``)
in a temporary folder, as the ingestion pipeline does: chunks of real French text cut from ``corpora/_sources``
(~900 characters each), random 512-dimension unit vectors (the size of the bundled USE), French BM25 sparse vectors
(``index.embed.Bm25Encoder``), payloads of ``Chunk.payload()``; batches of ~1000 chunks, each document activated,
``store.optimize()`` every ``--optimize-every`` chunks (as a long ingestion, whose runs each end with one) and once at
the end. It prints the disk usage of the index folder, the peak resident memory of the process (and how much of it
is anonymous: the rest is the index's files mapped, page cache the kernel can take back) and the index time, with a
progress line per optimisation on stderr. A second fresh process then reopens the index and runs filtered hybrid queries: the memory and the
latency of a running assistant serving that index, for a user of 3 of the 7 services (access filter: their services
and "tous"), in hybrid RRF through the product's ``store.query``.

A watchdog in the parent kills a worker when the machine's available memory falls under ``--min-available-gb``
(default 3 GB): an index too large for the machine stops the benchmark, not the other jobs on the machine.
``--max-segment-mb``, ``--ef-construct`` and ``--filter-graphs`` create the index with other engine settings than
the product's (``COLLECTIVIA_QDRANT__*``, ``index.store.EngineTuning``); ``python -m tools.bench_engine`` measures
what they cost in results found on real vectors.

The dense vectors are random, so the embedder's time is left out: add it from ``python -m tools.bench_ingest``
(the bundled USE embeds ~150 chunks of 900 characters per second on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

from index.offline import configure_offline
from tools.footprint_watch import (
    MemoryGuardError, anon_rss_mb, current_rss_mb, disk_usage, peak_rss_mb, progress, run_watched,
)

configure_offline()

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ROOT / "corpora" / "_sources"
DIM = 512  # the bundled USE (use-multilingual-v3)
SERVICES = ["rh", "finances", "urbanisme", "etat-civil", "services-techniques", "dsi", "communication"]
DOC_TYPES = ["deliberation", "procedure", "procedure", "fiche", "charte"]
MB = 1024 * 1024


# -- synthetic French chunks ----------------------------------------------------------------------------------------
class FrenchText:
    """Real French prose, titles and headings of the sample commune's sources, cut into chunk-sized windows."""

    def __init__(self, seed: int) -> None:
        prose, titles, headings = [], [], []
        for path in sorted(SOURCES.rglob("*.md")):
            text = path.read_text(encoding="utf-8")
            if text.startswith("---"):
                front, _, text = text[3:].partition("\n---")
                titles += [m.strip().strip('"') for m in re.findall(r"^title:\s*(.+)$", front, re.M)]
            for line in text.splitlines():
                line = line.strip()
                if line.startswith("## "):
                    headings.append(line[3:].strip())
                elif line and not line.startswith("#"):
                    prose.append(re.sub(r"^(-|\d+\.)\s+", "", line))
        if not prose:
            raise SystemExit(f"no French source text under {SOURCES}")
        self.text = " ".join(prose)
        self.words = self.text.split()
        self.titles = titles or ["Document"]
        self.headings = headings or ["Article 1"]
        self.rng = random.Random(seed)

    def window(self, mean: int = 900, spread: int = 150) -> str:
        """A run of whole words of about ``mean`` characters, from a random place."""
        size = int(min(max(self.rng.gauss(mean, spread), 400), 1400))
        start = self.rng.randrange(0, max(1, len(self.text) - size - 1))
        start = self.text.find(" ", start) + 1
        end = self.text.rfind(" ", start, start + size)
        return self.text[start : end if end > start else start + size]

    def question(self) -> str:
        start = self.rng.randrange(0, len(self.words) - 8)
        return " ".join(self.words[start : start + self.rng.randint(4, 8)])


def synthetic_documents(n: int, text: FrenchText, seed: int):
    """Documents of 4 to 20 chunks, as ``(doc_id, version, [Chunk, ...])``, until ``n`` chunks."""
    from ingest.chunk import embed_text_for
    from index.documents import Chunk, DocumentMeta

    rng = random.Random(seed)
    made = doc = 0
    while made < n:
        size = min(rng.randint(4, 20), n - made)
        doc_type = rng.choice(DOC_TYPES)
        services = ("tous",) if rng.random() < 0.2 else tuple(rng.sample(SERVICES, k=rng.choice([1, 1, 2])))
        meta = DocumentMeta(
            title=rng.choice(text.titles), doc_type=doc_type, services=services,
            confidentiality=rng.choice(["public", "interne", "interne", "confidentiel"]),
            date=f"20{rng.randint(18, 25)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
            number=f"2024-{doc:03d}" if doc_type == "deliberation" else None,
        )
        doc_id, version = f"SYN-{doc:06d}", uuid.UUID(int=rng.getrandbits(128)).hex
        chunks, offset = [], 0
        for index in range(size):
            body, section = text.window(), rng.choice(text.headings)
            page = 1 + index // 3
            chunks.append(Chunk(
                doc_id=doc_id, version=version, index=index, text=body, section=section, pages=(page,),
                start=offset, end=offset + len(body), meta=meta, source=f"/data/sources/{doc_id}.pdf",
                embed_text=embed_text_for(meta.title, section, body),
            ))
            offset += len(body)
        yield doc_id, version, chunks
        made += size
        doc += 1


# -- the two workers (each in a fresh process, so that its peak memory is its own) -----------------------------------
def build_worker(path: Path, n: int, batch: int, seed: int, optimize_every: int, tuning) -> dict:
    from index.embed import Bm25Encoder
    from index.store import CollectionInfo, StoredPoint, point_id
    from index.edge_store import EdgeStore
    text, sparse = FrenchText(seed), Bm25Encoder()
    rng = np.random.default_rng(seed)
    rss_before = current_rss_mb()
    started = time.perf_counter()
    store = EdgeStore(path, CollectionInfo(embedder="use-multilingual-v3", dim=DIM), tuning)
    sparse_s = write_s = optimize_s = 0.0
    chars = chunks_done = 0
    next_optimize = optimize_every or n + 1
    pending: list[tuple[str, str, list]] = []
    steps: list[dict] = []

    def flush() -> None:
        nonlocal sparse_s, write_s, chars, chunks_done
        chunks = [c for _, _, cs in pending for c in cs]
        # One batch of float32 vectors at a time, freed with the batch: the Python side stays flat whatever N.
        vectors = rng.standard_normal((len(chunks), DIM), dtype=np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        t = time.perf_counter()
        bm25 = [sparse.embed_document(c.embed_text) for c in chunks]
        sparse_s += time.perf_counter() - t
        sizes = {doc_id: len(cs) for doc_id, _, cs in pending}
        points = [
            StoredPoint(id=point_id(c.doc_id, c.version, c.index), dense=vectors[i], sparse=bm25[i],
                        payload={**c.payload(), "n_chunks": sizes[c.doc_id]})
            for i, c in enumerate(chunks)
        ]
        t = time.perf_counter()
        store.upsert(points)
        for doc_id, version, _ in pending:
            store.activate(doc_id, version)
        write_s += time.perf_counter() - t
        chars += sum(len(c.text) for c in chunks)
        chunks_done += len(chunks)
        pending.clear()

    def optimize() -> None:
        nonlocal optimize_s
        rss_written = current_rss_mb()
        t = time.perf_counter()
        store.optimize()
        optimize_s += time.perf_counter() - t
        step = {"chunks": chunks_done, "elapsed_s": round(time.perf_counter() - started, 1),
                "optimize_s": round(time.perf_counter() - t, 1), "rss_before_optimize_mb": round(rss_written),
                "rss_after_optimize_mb": round(current_rss_mb()), "anon_after_optimize_mb": round(anon_rss_mb()),
                "peak_rss_mb": round(peak_rss_mb())}
        steps.append(step)
        progress(f"    {chunks_done:>8} chunks at {step['elapsed_s']:7.1f} s: optimize {step['optimize_s']} s, RSS "
                 f"{step['rss_before_optimize_mb']} -> {step['rss_after_optimize_mb']} MB "
                 f"(anonymous {step['anon_after_optimize_mb']} MB), peak {step['peak_rss_mb']} MB")

    for document in synthetic_documents(n, text, seed):
        pending.append(document)
        if sum(len(cs) for _, _, cs in pending) >= batch:
            flush()
            if chunks_done >= next_optimize:
                optimize()
                next_optimize += optimize_every
    if pending:
        flush()
    peak_before_final = peak_rss_mb()
    optimize()
    live = store.count()
    store.close()
    total_s = time.perf_counter() - started
    allocated, apparent = disk_usage(path)
    return {
        "chunks": live,
        "mean_chunk_chars": round(chars / max(chunks_done, 1)),
        "disk_mb": round(allocated / MB, 1),
        "disk_apparent_mb": round(apparent / MB, 1),
        "rss_before_index_mb": round(rss_before),
        "peak_rss_before_optimize_mb": round(peak_before_final),
        "peak_rss_mb": round(peak_rss_mb()),
        "bm25_s": round(sparse_s, 1),
        "write_s": round(write_s, 1),
        "optimize_s": round(optimize_s, 1),
        "final_optimize_s": steps[-1]["optimize_s"],
        "index_s": round(total_s, 1),
        "steps": steps,
    }


def serve_worker(path: Path, queries: int, seed: int, services: int) -> dict:
    from index.embed import Bm25Encoder
    from index.store import CollectionInfo
    from index.edge_store import EdgeStore
    from rag.access import User, access_filter

    text, sparse = FrenchText(seed + 1), Bm25Encoder()
    rng = np.random.default_rng(seed + 1)
    rss_before = current_rss_mb()
    t = time.perf_counter()
    store = EdgeStore(path, CollectionInfo(embedder="use-multilingual-v3", dim=DIM))
    reopen_s = time.perf_counter() - t
    cold, samples, hits = [], [], []
    for i in range(queries + 10):
        # A multi-service user: ``services`` of the 7 services, plus the documents open to all ("tous").
        user = User(id=f"u{i}", name="u", services=frozenset(text.rng.sample(SERVICES, k=services)))
        dense = rng.standard_normal(DIM).astype(np.float32)
        dense /= np.linalg.norm(dense)
        question = text.question()
        t = time.perf_counter()
        found = store.query(filter=access_filter(user), dense=dense, sparse=sparse.embed_query(question), limit=20)
        ms = (time.perf_counter() - t) * 1000
        (cold if i < 10 else samples).append(ms)  # the first 10: cold (freshly opened index), reported apart
        hits.append(len(found))
    store.close()
    ordered = sorted(samples)
    return {
        "reopen_s": round(reopen_s, 2),
        "queries": len(samples),
        "user_services": services,
        "mean_hits": round(statistics.fmean(hits), 1),
        "cold_first_ms": round(cold[0], 2),
        "cold_max_ms": round(max(cold), 2),
        "cold_median_ms": round(statistics.median(cold), 2),
        "query_p50_ms": round(statistics.median(ordered), 2),
        "query_p95_ms": round(ordered[int(0.95 * (len(ordered) - 1))], 2),
        "query_max_ms": round(ordered[-1], 2),
        "serve_rss_before_open_mb": round(rss_before),
        "serve_peak_rss_mb": round(peak_rss_mb()),
    }


def report(f: dict, machine: str) -> None:
    print(f"{f['chunks']:>7} chunks (~{f['mean_chunk_chars']} characters each), embedded Qdrant Edge index{f['setting']}, "
          f"{machine}")
    print(f"  disk      {f['disk_mb']:8.1f} MB on disk ({f['disk_apparent_mb']} MB apparent)")
    print(f"  memory    {f['peak_rss_mb']:8} MB peak while indexing ({f['peak_rss_before_optimize_mb']} MB before the "
          f"final optimize, {f['rss_before_index_mb']} MB before the index, at most {f['build_max_anon_mb']} MB "
          f"anonymous, the rest mapped index files; machine MemAvailable low {f['build_min_available_mb']} MB)")
    print(f"            {f['serve_peak_rss_mb']:8} MB peak serving ({f['serve_rss_before_open_mb']} MB before opening, "
          f"at most {f['serve_max_anon_mb']} MB anonymous)")
    print(f"  time      {f['index_s']:8.1f} s to index (BM25 {f['bm25_s']} s, writes {f['write_s']} s, optimize "
          f"{f['optimize_s']} s in {len(f['steps'])} runs, the last {f['final_optimize_s']} s), embedding excluded; "
          f"reopen {f['reopen_s']} s")
    print(f"  queries   p50 {f['query_p50_ms']} ms, p95 {f['query_p95_ms']} ms, max {f['query_max_ms']} ms over "
          f"{f['queries']} queries (hybrid RRF, access filter of a user of {f['user_services']} services + \"tous\", "
          f"~{f['mean_hits']} hits each, query embedding excluded); the first 10 (cold): first {f['cold_first_ms']} ms, "
          f"median {f['cold_median_ms']} ms, max {f['cold_max_ms']} ms")


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunks", nargs="*", type=int, default=[10_000, 100_000], help="index sizes to measure")
    parser.add_argument("--batch", type=int, default=1000, help="chunks per write batch")
    parser.add_argument("--optimize-every", type=int, default=100_000,
                        help="optimise the index every N chunks written, as successive ingestions do (0: at the end only)")
    parser.add_argument("--queries", type=int, default=200, help="filtered hybrid queries on the reopened index")
    parser.add_argument("--user-services", type=int, default=3, help="services of the querying user (of 7, plus 'tous')")
    parser.add_argument("--min-available-gb", type=float, default=3.0,
                        help="kill a worker when the machine's available memory falls under this (GB)")
    from collectivia.settings import QdrantSettings
    product = QdrantSettings()
    parser.add_argument("--ef-construct", type=int, default=product.ef_construct,
                        help=f"engine setting: HNSW build effort (default: the product's, {product.ef_construct})")
    parser.add_argument("--filter-graphs", choices=["all", "access", "none"], default=product.filter_graphs,
                        help=f"engine setting: fields with graph links per value (default: the product's, {product.filter_graphs})")
    parser.add_argument("--max-segment-mb", type=int, default=product.max_segment_mb,
                        help=f"engine setting: largest segment (default: the product's, {product.max_segment_mb})")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--worker", choices=["build", "serve"], help=argparse.SUPPRESS)
    parser.add_argument("--path", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    from index.store import EngineTuning
    tuning = EngineTuning(ef_construct=args.ef_construct, filter_graphs=args.filter_graphs,
                          max_segment_mb=args.max_segment_mb or None)
    if args.worker == "build":
        print(json.dumps(build_worker(args.path, args.chunks[0], args.batch, args.seed, args.optimize_every, tuning)))
        return []
    if args.worker == "serve":
        print(json.dumps(serve_worker(args.path, args.queries, args.seed, args.user_services)))
        return []

    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    setting = f" ({tuning.describe()})"
    floor = args.min_available_gb * 1024
    engine = [f"--ef-construct={args.ef_construct}", f"--filter-graphs={args.filter_graphs}",
              f"--max-segment-mb={args.max_segment_mb or 0}"]
    results = []
    for n in args.chunks:
        with tempfile.TemporaryDirectory(prefix="collectivia-footprint-") as tmp:
            index = str(Path(tmp) / "qdrant")
            try:
                built = run_watched(["--worker", "build", "--path", index, "--chunks", str(n), "--batch", str(args.batch),
                                     "--optimize-every", str(args.optimize_every), "--seed", str(args.seed), *engine],
                                    ROOT, floor)
                served = run_watched(["--worker", "serve", "--path", index, "--queries", str(args.queries),
                                      "--user-services", str(args.user_services), "--seed", str(args.seed)], ROOT, floor)
            except MemoryGuardError as exc:
                print(f"{n:>7} chunks: {exc}", flush=True)
                continue
        figures = {**built.result, **served.result, "machine": machine, "setting": setting,
                   "build_min_available_mb": round(built.min_available_mb or 0),
                   "build_max_anon_mb": round(built.max_anon_mb), "serve_max_anon_mb": round(served.max_anon_mb)}
        results.append(figures)
        if not args.json:
            report(figures, machine)
    sizes = sorted(results, key=lambda f: f["chunks"])
    if len(sizes) >= 2 and sizes[-1]["chunks"] > sizes[0]["chunks"]:
        small, large = sizes[0], sizes[-1]
        per_chunk_mb = (large["disk_mb"] - small["disk_mb"]) / (large["chunks"] - small["chunks"])
        growth = {"disk_kb_per_chunk": round(per_chunk_mb * 1024, 2), "disk_mb_per_100k_chunks": round(per_chunk_mb * 100_000),
                  "disk_fixed_mb": round(small["disk_mb"] - per_chunk_mb * small["chunks"], 1)}
        for f in results:
            f["growth"] = growth
        if not args.json:
            print(f"growth between {small['chunks']} and {large['chunks']} chunks: {growth['disk_kb_per_chunk']} kB per chunk "
                  f"-> {growth['disk_mb_per_100k_chunks']} MB per 100k chunks, beyond a fixed {growth['disk_fixed_mb']} MB")
    if args.json:
        print(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
