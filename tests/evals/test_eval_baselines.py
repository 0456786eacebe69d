"""Baselines tables (evals/baselines.py) built from run folders written by the real report code."""

from __future__ import annotations

import pytest

from evals.baselines import command, load_summaries, main, render, update_doc
from evals.metrics import summarise
from evals.report import write_run


def record(qid: str, expected: str, retrieved: list[str], refused: bool, retrieve_ms: float) -> dict:
    return {"id": qid, "question": "?", "user": "a.martin", "type": "lexical", "expected": expected,
            "gold_docs": ["D1"] if expected == "answer" else [], "gold_passage": None, "short_answer": None,
            "retrieved_docs": retrieved, "answer": "…", "refused": refused, "citations": [], "trace": [],
            "sources": [], "unsupported": [], "leaks": [],
            "timings_ms": {"retrieve": retrieve_ms, "total": retrieve_ms + 1, "candidates": retrieve_ms}}


def write_line(out, config: str, first: list[str], refused: bool, index: dict) -> None:
    records = [record("q1", "answer", first, False, 4.0), record("q2", "answer", ["D2", "D3", "D1"], False, 6.0),
               record("q3", "refuse_not_found", ["D2"], refused, 5.0)]
    summary = summarise(records, {"dataset": {"name": "commune"}, "config": {"name": config}, "index": index})
    write_run(out / f"commune-{config}", records, summary)


@pytest.fixture
def runs(tmp_path):
    index = {"documents": 79, "chunks": 967, "build_seconds": 23.3, "chunks_per_second": 41.4}
    write_line(tmp_path, "use-hybrid", ["D2", "D1"], True, index)  # q1 at rank 2
    write_line(tmp_path, "e5-dense", ["D1"], False, index | {"build_seconds": 600.0, "resumed_documents": 12})
    return tmp_path


def test_tables_from_two_runs(runs):
    summaries = load_summaries(runs, "commune")
    assert sorted(summaries) == ["e5-dense", "use-hybrid"]
    block = render("commune", summaries)
    rows = {line.split(" | ")[0] + " | " + line.split(" | ")[1]: line for line in block.splitlines()
            if line.startswith("| ") and " | " in line}
    default = rows["| USE multilingual v3 (bundled) — **default** | hybrid"]
    # recall@1 0.0 (q1 at rank 2, q2 at rank 3), refusal accuracy 1.0, retrieval p50 5 ms
    assert "| 0.000 | 1.000 | 1.000 |" in default and "| 1.000 | 1.000 | 0 | 5 / 6 |" in default
    assert f"`{command('commune', 'use-hybrid')}`" in default
    assert "--out runs/commune-use-hybrid`" in default
    assert "| not run |" in rows["| all-MiniLM-L6-v2 | bm25"]
    assert "Best line (nDCG@10): **e5-dense**" in block
    assert "Difference with the default use-hybrid: nDCG@10 +" in block
    assert "With the default embedder, hybrid is the best of the three modes." in block
    assert "| USE multilingual v3 (bundled) | 79 | 967 | 23 s | 41.4 |" in block
    assert "10.0 min (resumed: 12 documents indexed before, not counted)" in block
    assert block.startswith("3 questions, 2 of them scored for retrieval.")


def test_doc_blocks_are_replaced(runs, tmp_path):
    doc = tmp_path / "baselines.md"
    doc.write_text("# B\n\n<!-- baselines:commune -->\nold\n<!-- /baselines:commune -->\n\nfin\n", encoding="utf-8")
    assert main(["--datasets", "commune", "--out", str(runs), "--doc", str(doc)]) == 0
    text = doc.read_text(encoding="utf-8")
    assert "old" not in text and text.endswith("<!-- /baselines:commune -->\n\nfin\n")
    assert "**e5-dense**" in text
    with pytest.raises(ValueError, match="markers"):
        update_doc("# rien", "service-public", "x")


def test_a_mode_better_than_the_default_is_named(runs):
    index = {"documents": 79, "chunks": 967, "build_seconds": 23.3, "chunks_per_second": 41.4}
    write_line(runs, "use-bm25", ["D1"], True, index)
    block = render("commune", load_summaries(runs, "commune"))
    assert "With the default embedder, the best mode is **use-bm25**: nDCG@10 +" in block
