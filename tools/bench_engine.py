"""What the engine settings cost and give on real vectors: build time, disk, and the recall of the filtered dense search.

    python -m tools.bench_engine [--source DIR] [--configs 100:all 100:access ...] [--questions 200] [--json]

``--source`` is an embedded index built by the product (default: the service-public.fr index of the evaluations,
``data/evals/indexes/service_public-*``, 75,019 chunks of real USE vectors). For each configuration
(``ef_construct:filter_graphs``, e.g. ``100:access``), a fresh index is created with those settings (``index.store.EngineTuning``, as
``COLLECTIVIA_QDRANT__EF_CONSTRUCT`` / ``__FILTER_GRAPHS`` would), every point of the source is copied into it (its
vectors as they are, nothing embedded again) and the index is optimised, as an ingestion ends. The documents are
spread over 7 services (10 % stay open to all, ``tous``), so that the access filter is as selective as in a
département: a user of 1 service sees ~23 % of the chunks, a user of 3 ~49 %.

Then the dev questions of the source (``questions-dev.jsonl`` next to the benchmark data), embedded by the bundled
USE, query the index through the product's ``store.query`` (dense, the access filter inside) for a user of 1 service
and one of 3: recall@10 and @20 against the exact search (every visible vector compared, same filter), and the
latency of the dense search and of the product's hybrid query (both filtered, query embedding excluded).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SERVICES = ("rh", "urbanisme", "finances", "etat-civil", "enfance", "voirie", "culture")
PROFILES = {"1 service": frozenset(SERVICES[:1]), "3 services": frozenset(SERVICES[1:4])}


def service_of(doc_id: str, open_share: float) -> str:
    """A stable service per document (10 % open to all by default)."""
    h = int(hashlib.sha256(doc_id.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    if h < open_share:
        return "tous"
    return SERVICES[int(h * 1_000_003) % len(SERVICES)]


def default_source() -> Path | None:
    found = sorted((ROOT / "data" / "evals" / "indexes").glob("service_public-use-*/qdrant"))
    return found[0] if found else None


def build(source: Path, target: Path, tuning, open_share: float) -> dict:
    import qdrant_edge as qe
    from index.edge_store import EdgeStore
    from index.store import CollectionInfo

    info = CollectionInfo(**json.loads((source / EdgeStore.INFO_FILE).read_text(encoding="utf-8")))
    reader = qe.EdgeShard.load(str(source / "shard"))
    store = EdgeStore(target, info, tuning)
    started = time.perf_counter()
    copied, offset = 0, None
    try:
        while True:
            records, offset = reader.scroll(qe.ScrollRequest(offset=offset, limit=1000, with_payload=True,
                                                             with_vector=True))
            points = []
            for r in records:
                payload = dict(r.payload)
                payload["services"] = [service_of(str(payload.get("doc_id")), open_share)]
                points.append(qe.Point(r.id, r.vector, payload))
            if points:
                store._shard.update(qe.UpdateOperation.upsert_points(points))  # as they are: already live
                copied += len(points)
            if offset is None:
                break
    finally:
        reader.close()
    written = time.perf_counter() - started
    t = time.perf_counter()
    store.optimize()
    optimize_s = time.perf_counter() - t
    return {"store": store, "info": info, "points": copied, "write_s": round(written, 1),
            "optimize_s": round(optimize_s, 1)}


def disk_mb(path: Path) -> float:
    return sum(f.stat().st_blocks * 512 for f in path.rglob("*") if f.is_file()) / 1e6


def measure(store, vectors: list, sparse: list, k: int = 20) -> dict:
    import qdrant_edge as qe
    from index.edge_store import _edge_filter
    from index.store import DENSE, live_filter
    from rag.access import User, access_filter

    out: dict = {}
    for label, services in PROFILES.items():
        flt = access_filter(User(id="bench", name="bench", services=services))
        exact_filter = _edge_filter(live_filter(flt))
        r10 = r20 = 0.0
        dense_ms, hybrid_ms = [], []
        for v, sp in zip(vectors, sparse):
            t = time.perf_counter()
            got = store.query(filter=flt, dense=v, sparse=None, limit=k, mode="dense")
            dense_ms.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            store.query(filter=flt, dense=v, sparse=sp, limit=k, mode="hybrid")
            hybrid_ms.append((time.perf_counter() - t) * 1000)
            exact = store._shard.query(qe.QueryRequest(
                limit=k, query=qe.Query.Nearest([float(x) for x in v], using=DENSE), filter=exact_filter,
                with_payload=False, params=qe.SearchParams(exact=True)))
            truth = [str(p.id) for p in exact]
            ids = [h.id for h in got]
            r10 += len(set(ids[:10]) & set(truth[:10])) / max(1, len(truth[:10]))
            r20 += len(set(ids) & set(truth)) / max(1, len(truth))
        q = statistics.quantiles
        out[label] = {"recall@10": round(r10 / len(vectors), 4), "recall@20": round(r20 / len(vectors), 4),
                      "dense_p50_ms": round(statistics.median(dense_ms), 2),
                      "dense_p95_ms": round(q(dense_ms, n=20)[18], 2),
                      "hybrid_p50_ms": round(statistics.median(hybrid_ms), 2),
                      "hybrid_p95_ms": round(q(hybrid_ms, n=20)[18], 2)}
    return out


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, default=default_source(), help="an embedded index built by the product")
    parser.add_argument("--questions-file", type=Path,
                        default=ROOT.parent / "shared" / "bench" / "service-public" / "questions-dev.jsonl")
    parser.add_argument("--questions", type=int, default=200, help="questions asked (the first N)")
    parser.add_argument("--configs", nargs="+", default=["100:all", "100:access", "32:access", "100:none"],
                        help="engine settings to compare, ef_construct:filter_graphs (on: services and doc_type, the product's; "
                        "all: every indexed field, the engine's default; off: none)")
    parser.add_argument("--open-share", type=float, default=0.10, help="share of documents open to all (tous)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.source is None or not (args.source / "shard").is_dir():
        parser.error("aucun index source : construisez celui de service-public.fr (collectivia eval run --dataset "
                     "service-public …) ou donnez --source")
    from collectivia.settings import Settings
    from collectivia.wiring import build_embedder
    from index.embed import Bm25Encoder
    from index.store import EngineTuning
    from rag.question import bm25_query

    questions = [json.loads(line)["question"] for line in args.questions_file.read_text(encoding="utf-8").splitlines()
                 if line.strip()][:args.questions]
    embedder = build_embedder(Settings(_env_file=None))
    vectors = [embedder.embed_query(q) for q in questions]
    encoder = Bm25Encoder()
    sparse = [bm25_query(q, encoder) for q in questions]
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    results = []
    for config in args.configs:
        ef, graphs = config.split(":")
        tuning = EngineTuning(ef_construct=int(ef), filter_graphs=graphs)
        tmp = Path(tempfile.mkdtemp(prefix="collectivia-engine-"))
        try:
            built = build(args.source, tmp / "qdrant", tuning, args.open_share)
            figures = measure(built["store"], vectors, sparse)
            built["store"].close()
            row = {"config": config, "setting": tuning.describe(), "points": built["points"],
                   "write_s": built["write_s"], "optimize_s": built["optimize_s"],
                   "disk_mb": round(disk_mb(tmp), 1), "questions": len(questions), "machine": machine,
                   "profiles": figures}
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        results.append(row)
        if not args.json:
            print(f"{config:>8}  {row['setting']}: {row['points']} points, copy {row['write_s']} s, optimize "
                  f"{row['optimize_s']} s, disk {row['disk_mb']} MB", flush=True)
            for label, f in figures.items():
                print(f"          {label:<10} recall@10 {f['recall@10']:.4f}  recall@20 {f['recall@20']:.4f}  "
                      f"dense p50/p95 {f['dense_p50_ms']}/{f['dense_p95_ms']} ms  hybrid p50/p95 "
                      f"{f['hybrid_p50_ms']}/{f['hybrid_p95_ms']} ms", flush=True)
    if args.json:
        print(json.dumps(results, ensure_ascii=False, indent=2))
    else:
        print(f"{len(questions)} questions of {args.questions_file.name}, source {args.source}, {machine}")
    return results


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
