"""Footprint of the embedded index: disk, memory and index time per number of chunks (the sizing of a server).

    python -m tools.bench_footprint [--chunks 10000 100000] [--batch 1000] [--queries 200] [--json]

For each N, a fresh process writes N synthetic chunks into the embedded Qdrant Edge index (``index.store.EdgeStore``)
in a temporary folder, as the ingestion pipeline does: chunks of real French text cut from ``corpora/_sources``
(~900 characters each), random 512-dimension unit vectors (the size of the bundled USE), French BM25 sparse vectors
(``index.embed.Bm25Encoder``), payloads of ``Chunk.payload()``; batches of ~1000 chunks, each document activated,
then ``store.optimize()``. It prints the disk usage of the index folder, the peak resident memory of the process and
the index time. A second fresh process then reopens the index and runs filtered hybrid queries: the memory and the
latency of a running assistant serving that index.

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
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

from index.offline import configure_offline

configure_offline()

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ROOT / "corpora" / "_sources"
DIM = 512  # the bundled USE (use-multilingual-v3)
SERVICES = ["rh", "finances", "urbanisme", "etat-civil", "services-techniques", "dsi", "communication"]
DOC_TYPES = ["deliberation", "procedure", "procedure", "fiche", "charte"]
MB = 1024 * 1024


# -- measures -------------------------------------------------------------------------------------------------------
def peak_rss_mb() -> float:
    """High-water mark of this process's resident memory (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return peak_rss_mb()


def disk_usage(path: Path) -> tuple[int, int]:
    """(bytes allocated on disk, as ``du`` counts them; apparent size in bytes) of every file under ``path``."""
    allocated = apparent = 0
    for folder, _, files in os.walk(path):
        for name in files:
            st = os.lstat(os.path.join(folder, name))
            allocated += st.st_blocks * 512
            apparent += st.st_size
    return allocated, apparent


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
def build_worker(path: Path, n: int, batch: int, seed: int) -> dict:
    from index.embed import Bm25Encoder
    from index.store import CollectionInfo, StoredPoint, point_id
    from index.edge_store import EdgeStore
    text, sparse = FrenchText(seed), Bm25Encoder()
    rng = np.random.default_rng(seed)
    rss_before = current_rss_mb()
    started = time.perf_counter()
    store = EdgeStore(path, CollectionInfo(embedder="use-multilingual-v3", dim=DIM))
    sparse_s = write_s = 0.0
    chars = chunks_done = 0
    pending: list[tuple[str, str, list]] = []

    def flush() -> None:
        nonlocal sparse_s, write_s, chars, chunks_done
        chunks = [c for _, _, cs in pending for c in cs]
        vectors = rng.standard_normal((len(chunks), DIM)).astype(np.float32)
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

    for document in synthetic_documents(n, text, seed):
        pending.append(document)
        if sum(len(cs) for _, _, cs in pending) >= batch:
            flush()
    if pending:
        flush()
    peak_before_optimize = peak_rss_mb()
    t = time.perf_counter()
    store.optimize()
    optimize_s = time.perf_counter() - t
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
        "peak_rss_before_optimize_mb": round(peak_before_optimize),
        "peak_rss_mb": round(peak_rss_mb()),
        "bm25_s": round(sparse_s, 1),
        "write_s": round(write_s, 1),
        "optimize_s": round(optimize_s, 1),
        "index_s": round(total_s, 1),
    }


def serve_worker(path: Path, queries: int, seed: int) -> dict:
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
    samples = []
    for i in range(queries + 10):
        user = User(id=f"u{i}", name="u", services=frozenset(text.rng.sample(SERVICES, k=text.rng.choice([0, 1, 2]))))
        dense = rng.standard_normal(DIM).astype(np.float32)
        dense /= np.linalg.norm(dense)
        question = text.question()
        t = time.perf_counter()
        store.query(filter=access_filter(user), dense=dense, sparse=sparse.embed_query(question), limit=20)
        if i >= 10:  # warm-up
            samples.append((time.perf_counter() - t) * 1000)
    store.close()
    ordered = sorted(samples)
    return {
        "reopen_s": round(reopen_s, 2),
        "query_p50_ms": round(statistics.median(ordered), 2),
        "query_p95_ms": round(ordered[int(0.95 * (len(ordered) - 1))], 2),
        "serve_rss_before_open_mb": round(rss_before),
        "serve_peak_rss_mb": round(peak_rss_mb()),
    }


def _run_worker(*args: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-m", "tools.bench_footprint", *args], cwd=ROOT, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise SystemExit(f"worker {' '.join(args)} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunks", nargs="*", type=int, default=[10_000, 100_000], help="index sizes to measure")
    parser.add_argument("--batch", type=int, default=1000, help="chunks per write batch")
    parser.add_argument("--queries", type=int, default=200, help="filtered hybrid queries on the reopened index")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--worker", choices=["build", "serve"], help=argparse.SUPPRESS)
    parser.add_argument("--path", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker == "build":
        print(json.dumps(build_worker(args.path, args.chunks[0], args.batch, args.seed)))
        return []
    if args.worker == "serve":
        print(json.dumps(serve_worker(args.path, args.queries, args.seed)))
        return []

    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    results = []
    for n in args.chunks:
        with tempfile.TemporaryDirectory(prefix="collectivia-footprint-") as tmp:
            index = str(Path(tmp) / "qdrant")
            figures = _run_worker("--worker", "build", "--path", index, "--chunks", str(n),
                                  "--batch", str(args.batch), "--seed", str(args.seed))
            figures.update(_run_worker("--worker", "serve", "--path", index, "--queries", str(args.queries),
                                       "--seed", str(args.seed)))
        figures["machine"] = machine
        results.append(figures)
        if not args.json:
            f = figures
            print(f"{f['chunks']:>7} chunks (~{f['mean_chunk_chars']} characters each), embedded Qdrant Edge index, {machine}")
            print(f"  disk      {f['disk_mb']:8.1f} MB on disk ({f['disk_apparent_mb']} MB apparent)")
            print(f"  memory    {f['peak_rss_mb']:8} MB peak while indexing ({f['peak_rss_before_optimize_mb']} MB before "
                  f"optimize, {f['rss_before_index_mb']} MB before the index); "
                  f"{f['serve_peak_rss_mb']} MB peak serving ({f['serve_rss_before_open_mb']} MB before opening)")
            print(f"  time      {f['index_s']:8.1f} s to index (BM25 {f['bm25_s']} s, writes {f['write_s']} s, "
                  f"optimize {f['optimize_s']} s), embedding excluded; reopen {f['reopen_s']} s")
            print(f"  queries   p50 {f['query_p50_ms']} ms, p95 {f['query_p95_ms']} ms "
                  f"(filtered hybrid RRF, query embedding excluded)")
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
