"""CI gate on the commune set: the whole set through the real pipeline with the project defaults (bundled USE,
hybrid search, extractive answers), on a fresh index: 0 access leaks, and retrieval and refusal metrics not below
the floors of evals/thresholds.json (measured values minus a small margin, documented in the file)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
THRESHOLDS = ROOT / "evals" / "thresholds.json"


@pytest.mark.slow
def test_commune_gate(tmp_path, monkeypatch):
    from evals.datasets import load_dataset
    from evals.metrics import check_thresholds
    from evals.config import build_settings, load_config
    from evals.run import run_dataset

    for name in [k for k in os.environ if k.startswith("COLLECTIVIA_")]:
        monkeypatch.delenv(name)
    thresholds = json.loads(THRESHOLDS.read_text(encoding="utf-8"))
    config = load_config(thresholds["config"])
    settings = build_settings(config.overrides, _env_file=None, data_dir=tmp_path / "data",
                              users=ROOT / "corpora" / "users.yaml")
    result = run_dataset(load_dataset(thresholds["dataset"]), config, tmp_path / "run", settings=settings,
                         log=lambda message: None)
    summary = result.summary
    assert summary["questions"] == 195 and summary["errors"] == 0
    assert summary["access"]["leaks"] == 0, summary["access"]["examples"]
    assert result.exit_code == 0
    failures = check_thresholds(summary, thresholds)
    assert not failures, "sous les seuils de evals/thresholds.json : " + "; ".join(failures)
