"""`collectivia eval run` end to end on a tiny corpus: the real pipeline (bundled USE, embedded Qdrant), the index
cache, the access-leak detector against a deliberately broken access filter, an LLM and an LLM judge behind a local
server speaking Mistral's API, and the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from evals.datasets import load_dataset
from evals.config import EvalConfig, JudgeConfig, build_settings, load_config
from evals.indexes import index_key
from evals.judge import Judge
from evals.run import run_dataset
from fixtures import make_md, write_meta
from mistral_server import mistral_server  # noqa: F401 - fixture

ROOT = Path(__file__).resolve().parents[2]
USERS = ROOT / "tests" / "data" / "users.yaml"

QUESTIONS = [
    {"id": "Q1", "question": "Combien de jours avant le départ déposer une demande de congé ?", "user": "rh.agent",
     "gold_docs": ["PROC-RH-1"], "gold_passage": "au moins quinze jours avant le départ", "short_answer": "15 jours",
     "expected": "answer", "type": "lexical"},
    {"id": "Q2", "question": "Quel est le délai d'instruction d'un permis de construire ?", "user": "urba.agent",
     "gold_docs": ["PROC-URBA-1"], "gold_passage": "instruit en deux mois", "short_answer": "deux mois",
     "expected": "answer", "type": "lexical"},
    {"id": "Q3", "question": "Quel est le délai d'instruction d'un permis de construire ?", "user": "rh.agent",
     "gold_docs": ["PROC-URBA-1"], "gold_passage": None, "short_answer": None, "expected": "refuse_no_access",
     "type": "confidential_other_service"},
    {"id": "Q4", "question": "Quelle est la recette de la tarte tatin ?", "user": "nobody", "gold_docs": [],
     "gold_passage": None, "short_answer": None, "expected": "refuse_not_found", "type": "out_of_corpus"},
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A corpus of three documents (rh, urbanisme, tous), its question set and a data directory."""
    tmp = tmp_path_factory.mktemp("eval")
    docs = tmp / "docs"
    docs.mkdir()
    write_meta(make_md(docs / "conges.md", title="Congés annuels"), id="PROC-RH-1", services=["rh"],
               doc_type="procedure")
    write_meta(make_md(docs / "permis.md", title="Instruction des permis", sections=[
        ("Article 1 – Délai", "Le permis de construire d'une maison individuelle est instruit en deux mois."),
        ("Article 2 – Pièces", "Le dossier comprend le plan de situation et le plan de masse."),
    ]), id="PROC-URBA-1", services=["urbanisme"], doc_type="procedure", confidentiality="confidentiel")
    write_meta(make_md(docs / "charte.md", title="Charte IA", sections=[
        ("Article 1 – Responsabilité", "L'agent reste responsable des contenus produits avec une IA générative."),
    ]), id="CHARTE-IA", services=["tous"], doc_type="charte")
    questions = tmp / "tiny.jsonl"
    questions.write_text("\n".join(json.dumps(q, ensure_ascii=False) for q in QUESTIONS) + "\n", encoding="utf-8")
    return {"docs": docs, "questions": questions, "data": tmp / "data", "tmp": tmp}


def settings_for(tiny, **overrides):
    base = {"data_dir": tiny["data"], "users": USERS, "llm": {"endpoint": None, "api_key": None},
            "limits": {"parse_workers": 0}}
    return build_settings(base, **overrides)


def test_cli_run_writes_every_file_and_passes(tiny):
    env = {k: v for k, v in os.environ.items() if not k.startswith("COLLECTIVIA_")}
    env |= {"COLLECTIVIA_DATA_DIR": str(tiny["data"]), "COLLECTIVIA_USERS": str(USERS),
            "COLLECTIVIA_LIMITS__PARSE_WORKERS": "0"}
    out = tiny["tmp"] / "run-cli"
    result = subprocess.run(
        [sys.executable, "-m", "collectivia.cli", "eval", "run", "--dataset", str(tiny["questions"]),
         "--corpus", str(tiny["docs"]), "--users", str(USERS), "--config", "use-hybrid", "--out", str(out), "--json"],
        env=env, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["access"]["leaks"] == 0 and summary["questions"] == 4
    assert {p.name for p in out.iterdir()} >= {"results.jsonl", "summary.json", "report.md", "scores_by_type.png",
                                               "latency.png"}
    records = {r["id"]: r for r in map(json.loads, (out / "results.jsonl").read_text(encoding="utf-8").splitlines())}
    q1 = records["Q1"]
    assert q1["retrieved_docs"][0] == "PROC-RH-1" and q1["metrics"]["recall@1"] == 1.0
    assert all(set(c) >= {"chunk_id", "doc_id", "score", "services"} for c in q1["retrieved"])
    assert q1["answer"] and q1["citations"] and set(q1["timings_ms"]) >= {"retrieve", "total", "candidates"}
    # « gold passage in sources » reads the passages the answer was drawn from, not only what it quoted
    assert all(s["text"] for s in q1["sources"]) and q1["metrics"]["gold_passage_in_sources"] is True
    # the RH agent never gets the urbanism document, whatever the question
    assert "PROC-URBA-1" not in records["Q3"]["retrieved_docs"]
    assert all(d in ("CHARTE-IA",) for d in records["Q4"]["retrieved_docs"])
    full = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert full["index"]["documents"] == 3 and full["footprint"]["llm"] is False
    assert full["judge_scores"]["skipped"] is True
    # the decision: an outcome per question, the distribution per expected behaviour, the calibration chart
    assert all(r["outcome"] in ("answer", "uncertain", "not_found") for r in records.values())
    assert all(0 <= r["answerability"] <= 1 for r in records.values())
    assert records["Q4"]["outcome"] == "not_found" and records["Q1"]["outcome"] != "not_found"
    assert sum(row["n"] for row in full["outcomes"].values()) == 4
    assert 0 < full["answerability_thresholds"]["not_found"] <= full["answerability_thresholds"]["answer"] < 1
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "Issues de la décision" in report and (out / "calibration.png").is_file()


def test_index_is_cached_by_settings_and_corpus(tiny):
    dataset = load_dataset(tiny["questions"], corpus=tiny["docs"], users=USERS)
    bm25 = load_config("use-bm25")
    run_dataset(dataset, bm25, tiny["tmp"] / "bm25", settings=settings_for(tiny, **bm25.overrides), log=lambda m: None)
    dense = load_config("use-dense")
    again = run_dataset(dataset, dense, tiny["tmp"] / "dense", settings=settings_for(tiny, **dense.overrides),
                        log=lambda m: None)
    assert again.summary["index"]["reused"] is True  # search.mode does not change the index
    assert again.summary["settings"]["search"]["mode"] == "dense"
    s = settings_for(tiny)
    assert index_key(s, dataset.corpus) != index_key(settings_for(tiny, chunk={"size": 100}), dataset.corpus)
    assert index_key(s, dataset.corpus) != index_key(settings_for(tiny, embedder={"kind": "e5"}), dataset.corpus)
    assert index_key(s, dataset.corpus) == index_key(settings_for(tiny, search={"k": 3}), dataset.corpus)
    # The engine settings shape the search graph: comparing them needs an index each.
    assert index_key(s, dataset.corpus) != index_key(settings_for(tiny, qdrant={"ef_construct": 32}), dataset.corpus)


def test_a_broken_access_filter_is_caught_as_a_leak(tiny, monkeypatch):
    """Plant a leak: the retriever's access filter lets everything through. The run must see it and fail."""
    import rag.retrieve
    from qdrant_client import models

    monkeypatch.setattr(rag.retrieve, "access_filter", lambda user, scope=None: models.Filter(must_not=[
        models.FieldCondition(key="status", match=models.MatchValue(value="abroge"))]))
    dataset = load_dataset(tiny["questions"], corpus=tiny["docs"], users=USERS)
    result = run_dataset(dataset, EvalConfig(), tiny["tmp"] / "leaky", settings=settings_for(tiny), log=lambda m: None)
    assert result.leaks > 0 and result.exit_code == 1
    leaked = {(leak["question"], leak["doc_id"]) for leak in result.summary["access"]["examples"]}
    assert ("Q3", "PROC-URBA-1") in leaked
    assert result.summary["refusals"]["refuse_no_access"] == 0.0  # the gold document was retrieved
    assert "FUITE" in (tiny["tmp"] / "leaky" / "report.md").read_text(encoding="utf-8")


def test_llm_answers_have_tokens_footprint_and_judge(tiny, mistral_server):  # noqa: F811 - fixture
    mistral_server.reply("Toute demande de congé est déposée au moins quinze jours avant le départ [1].",
                         usage={"prompt_tokens": 420, "completion_tokens": 18, "total_tokens": 438})
    mistral_server.reply('{"faithfulness": 1, "correctness": 0.5, "rationale": "Fidèle, partielle."}')
    config = EvalConfig(name="llm", overrides={"llm": {"endpoint": mistral_server.base_url, "api_key": "k",
                                                       "model": "mistral-small-latest", "max_retries": 0}},
                        judge=JudgeConfig(endpoint=mistral_server.base_url, model="juge-test", max_retries=0))
    dataset = load_dataset(tiny["questions"], corpus=tiny["docs"], users=USERS)
    result = run_dataset(dataset, config, tiny["tmp"] / "llm", settings=settings_for(tiny, **config.overrides),
                         limit=1, log=lambda m: None)
    record = result.records[0]
    assert record["usage"] == {"prompt_tokens": 420, "completion_tokens": 18}
    assert record["footprint"]["model"] == "mistral-small-latest" and record["footprint"]["energy_kwh"] > 0
    assert record["judge"] == {"faithfulness": 1.0, "correctness": 0.5, "rationale": "Fidèle, partielle."}
    s = result.summary
    assert s["footprint"]["llm"] and s["footprint"]["completion_tokens_mean"] == 18
    assert s["judge_scores"]["faithfulness"] == 1.0 and s["judge"]["model"] == "juge-test"
    judge_request = mistral_server.requests[-1]
    assert judge_request.body["model"] == "juge-test" and "fidélité" in judge_request.system
    report = (tiny["tmp"] / "llm" / "report.md").read_text(encoding="utf-8")
    assert "mistral-small-latest" in report and "juge-test" in report


def test_judge_errors_are_recorded_not_raised(mistral_server):  # noqa: F811 - fixture
    mistral_server.error(500)
    judge = Judge(JudgeConfig(endpoint=mistral_server.base_url, model="m", max_retries=0))
    verdict = judge.judge("q", "r", [], None)
    assert verdict["faithfulness"] is None and "500" in verdict["error"]


def test_configs_are_settings_overrides():
    for path in sorted((ROOT / "evals" / "configs").glob("*.yaml")):
        config = load_config(path)
        build_settings(config.overrides)  # every shipped config is valid Settings
    minilm = load_config("minilm-hybrid")
    assert Path(minilm.overrides["embedder"]["model"]).is_dir()
    assert load_config("e5-bm25").overrides == {"embedder": {"kind": "e5"}, "search": {"mode": "bm25"}}
    with pytest.raises(ValueError, match="introuvable"):
        load_config("no-such-config")
