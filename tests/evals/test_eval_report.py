"""Files of a run: results.jsonl, summary.json, report.md and PNG charts; rescoring from results.jsonl."""

from __future__ import annotations

import json

from evals.metrics import summarise
from evals.report import CHARTS, read_results, rescore, write_run


def sample_records() -> list[dict]:
    common = {"trace": [], "sources": [], "unsupported": [], "leaks": []}
    return [
        {"id": "q1", "question": "Délai de congé ?", "user": "a.martin", "type": "lexical", "expected": "answer",
         "gold_docs": ["D1"], "gold_passage": "quinze jours", "short_answer": None, "retrieved_docs": ["D1", "D2"],
         "answer": "« quinze jours » [1]", "refused": False, "citations": [{"n": 1, "doc_id": "D1", "passage": "x"}],
         "timings_ms": {"retrieve": 3.0, "first_token": 20.0, "generate": 18.0, "total": 21.0, "candidates": 4.0},
         **common},
        {"id": "q2", "question": "Prix du pain ?", "user": "g.girard", "type": "out_of_corpus",
         "expected": "refuse_not_found", "gold_docs": [], "retrieved_docs": ["D2"], "answer": "Je n'ai trouvé…",
         "refused": True, "citations": [], "timings_ms": {"retrieve": 2.0, "total": 2.5, "candidates": 3.0}, **common},
        {"id": "q3", "question": "Salaire du DGS ?", "user": "g.girard", "type": "confidential_other_service",
         "expected": "refuse_no_access", "gold_docs": ["CONF"], "retrieved_docs": ["D2"], "answer": "…",
         "refused": False, "citations": [{"n": 1, "doc_id": "D2", "passage": "y"}],
         "timings_ms": {"retrieve": 2.0, "total": 30.0, "candidates": 3.0}, **common},
    ]


def test_run_files_are_written_and_readable(tmp_path):
    records = sample_records()
    summary = summarise(records, {"dataset": {"name": "mini", "skipped": 0}, "config": {"name": "test"},
                                  "settings": {"search": {"mode": "hybrid"}}, "llm_model": None})
    written = write_run(tmp_path, records, summary)
    names = sorted(p.name for p in written)
    assert names == sorted(["results.jsonl", "summary.json", "report.md", *CHARTS])
    for chart in CHARTS:
        assert (tmp_path / chart).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [r["id"] for r in read_results(tmp_path)] == ["q1", "q2", "q3"]
    saved = json.loads((tmp_path / "summary.json").read_text(encoding="utf-8"))
    assert saved["retrieval"]["ndcg@10"] == 1.0 and saved["refusals"]["refuse_no_access"] == 0.0
    report = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert report.startswith("# Évaluation — mini · test")
    assert "**0 fuite d'accès**" in report and "![latency.png](latency.png)" in report
    assert "| out_of_corpus | 1 |" in report and "Non exécuté" in report  # judge skipped, and said so


def test_rescore_recomputes_from_results(tmp_path):
    records = sample_records()
    write_run(tmp_path, records, summarise(records, {"dataset": {"name": "mini"}, "config": {"name": "t"}}))
    # a leak written into the results afterwards is found again by rescoring
    lines = [json.loads(x) for x in (tmp_path / "results.jsonl").read_text(encoding="utf-8").splitlines()]
    lines[0]["leaks"] = [{"where": "retrieved", "chunk_id": "c", "doc_id": "CONF", "services": ["dsi"],
                          "doc_services": ["dsi"]}]
    (tmp_path / "results.jsonl").write_text("\n".join(json.dumps(x) for x in lines), encoding="utf-8")
    summary = rescore(tmp_path)
    assert summary["access"]["leaks"] == 1 and summary["dataset"]["name"] == "mini"
    assert "FUITE" in (tmp_path / "report.md").read_text(encoding="utf-8")
