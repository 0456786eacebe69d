"""Retrieval and extractive-answer latency.

    python -m tools.bench_retrieval [--sizes 10000 100000] [--queries 200] [--json]

1. The sample commune (corpora/commune, indexed into a temporary folder): every question of
   evals/datasets/commune.jsonl and commune-colloquial.jsonl asked as its user — retrieval latency (query embedding with the bundled USE, BM25,
   dense and BM25 queries with the access filter inside Qdrant, score fusion, relevance, per-document cap) and the extractive answer's
   time to first token and total time (retrieval, evidence read from the passages, answerability decision,
   extract).
2. Synthetic indexes of N chunks (512-dim unit vectors, BM25 vectors of French text built from the corpus'
   vocabulary, services drawn among 8): the same retrieval path with real question texts and random users.

Targets (issue #4, this 2-core machine): retrieval p95 ≤ 50 ms at 100k chunks; extractive first token ≤ 150 ms.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from index.offline import configure_offline

configure_offline()

ROOT = Path(__file__).resolve().parents[1]
SERVICES = ["rh", "finances", "urbanisme", "etat-civil", "services-techniques", "dsi", "communication", "tous"]


def percentiles(samples_ms: list[float]) -> dict[str, float]:
    ordered = sorted(samples_ms)
    pick = lambda q: ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]  # noqa: E731
    return {"p50_ms": round(statistics.median(ordered), 2), "p95_ms": round(pick(0.95), 2), "n": len(ordered)}


def bench_commune(settings, embedder, questions, users) -> dict:
    from collectivia.wiring import build_assistant, build_ingestor, build_store

    store = build_store(settings, embedder)
    report = build_ingestor(settings, embedder, store).ingest_paths([ROOT / "corpora" / "commune"])
    assistant = build_assistant(settings, embedder, store)
    for q in questions[:5]:  # warm-up
        assistant.answer(q["question"], users[q["user"]])
    retrieval, first_token, total = [], [], []
    for q in questions:
        user = users[q["user"]]
        t = time.perf_counter()
        assistant.retriever.retrieve(q["question"], user, k=settings.search.k)
        retrieval.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        first = None
        for event in assistant.stream(q["question"], user):
            if event.kind == "token" and first is None:
                first = (time.perf_counter() - t) * 1000
        total.append((time.perf_counter() - t) * 1000)
        first_token.append(first)
    store.close()
    return {
        "chunks": report.chunks_embedded,
        "retrieval": percentiles(retrieval),
        "extractive_first_token": percentiles(first_token),
        "extractive_total": percentiles(total),
    }


def synthetic_index(path: Path, n: int, embedder, sparse, vocabulary: list[str], seed: int = 7):
    from index.store import CollectionInfo, StoredPoint, point_id
    from index.edge_store import EdgeStore
    rng = np.random.default_rng(seed)
    pyrng = random.Random(seed)
    store = EdgeStore(path, CollectionInfo(embedder.name, embedder.dim))
    batch = 2000
    started = time.perf_counter()
    for start in range(0, n, batch):
        size = min(batch, n - start)
        vectors = rng.standard_normal((size, embedder.dim)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        points = []
        for i in range(size):
            index = start + i
            doc = f"SYN-{index // 10}"
            text = " ".join(pyrng.choices(vocabulary, k=140))
            services = ["tous"] if pyrng.random() < 0.2 else pyrng.sample(SERVICES[:-1], k=pyrng.choice([1, 1, 2]))
            points.append(StoredPoint(
                id=point_id(doc, "v1", index % 10),
                dense=vectors[i],
                sparse=sparse.embed_document(text),
                payload={"doc_id": doc, "version": "v1", "chunk_index": index % 10, "text": text, "title": doc,
                         "section": "", "services": services, "doc_type": "procedure", "status": "en_vigueur",
                         "pages": [], "page": None, "source": doc},
            ))
        store.upsert(points)
        for d in sorted({p.payload["doc_id"] for p in points}):
            store.activate(d, "v1")
    store.optimize()
    return store, time.perf_counter() - started


def bench_synthetic(n: int, embedder, questions, queries: int) -> dict:
    from index.embed import Bm25Encoder
    from rag.access import User
    from rag.retrieve import HybridRetriever

    sparse = Bm25Encoder()
    vocabulary = sorted({w for q in questions for w in q["question"].split() if len(w) > 3})
    corpus_words = (ROOT / "corpora" / "_sources" / "BIBLE.md").read_text(encoding="utf-8").split()
    vocabulary += [w.strip(".,;:()«»") for w in corpus_words if len(w) > 3][:3000]
    with tempfile.TemporaryDirectory(prefix="collectivia-bench-") as tmp:
        store, build_s = synthetic_index(Path(tmp) / "q", n, embedder, sparse, vocabulary)
        retriever = HybridRetriever(store, embedder, sparse)
        pyrng = random.Random(11)
        samples = []
        for i in range(queries + 5):
            q = questions[i % len(questions)]["question"]
            user = User(id=f"u{i}", name="u", services=frozenset(pyrng.sample(SERVICES[:-1], k=pyrng.choice([0, 1, 2]))))
            t = time.perf_counter()
            retriever.retrieve(q, user, k=5)
            if i >= 5:  # warm-up
                samples.append((time.perf_counter() - t) * 1000)
        store.close()
    return {"chunks": n, "build_s": round(build_s, 1), "retrieval": percentiles(samples)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="*", type=int, default=[10_000, 100_000])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    from collectivia.settings import Settings
    from collectivia.wiring import build_embedder
    from rag.access import load_users

    questions = [json.loads(line) for name in ("commune.jsonl", "commune-colloquial.jsonl")
                 for line in (ROOT / "evals" / "datasets" / name).read_text(encoding="utf-8").splitlines() if line.strip()]
    users = load_users(ROOT / "corpora" / "users.yaml")
    with tempfile.TemporaryDirectory(prefix="collectivia-bench-") as tmp:
        settings = Settings(data_dir=Path(tmp), users=ROOT / "corpora" / "users.yaml")
        embedder = build_embedder(settings)
        results = {"embedder": embedder.name, "commune": bench_commune(settings, embedder, questions, users)}
    results["synthetic"] = [bench_synthetic(n, embedder, questions, args.queries) for n in args.sizes]
    if args.json:
        print(json.dumps(results, indent=2))
        return results
    c = results["commune"]
    print(f"Embedder {results['embedder']}; latencies over real questions (query embedding included)")
    print(f"  commune ({c['chunks']} chunks, {c['retrieval']['n']} questions): retrieval p50 {c['retrieval']['p50_ms']} ms, "
          f"p95 {c['retrieval']['p95_ms']} ms")
    print(f"  extractive answer: first token p50 {c['extractive_first_token']['p50_ms']} ms, "
          f"p95 {c['extractive_first_token']['p95_ms']} ms (target ≤ 150 ms); whole answer p95 {c['extractive_total']['p95_ms']} ms")
    for s in results["synthetic"]:
        print(f"  synthetic {s['chunks']:>7} chunks (built in {s['build_s']} s): retrieval p50 {s['retrieval']['p50_ms']} ms, "
              f"p95 {s['retrieval']['p95_ms']} ms (target at 100k ≤ 50 ms)")
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
