"""The real `collectivia` command, in a subprocess, with the bundled embedder and the embedded Qdrant."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fixtures import make_docx, make_md, make_pdf, write_meta

CLI = [sys.executable, "-m", "collectivia.cli"]


def run(args, env, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(CLI + args, env=env, capture_output=True, text=True, timeout=300, **kw)


@pytest.fixture(scope="module")
def indexed(tmp_path_factory):
    """A folder of real files indexed once by the CLI; yields (folder, env, first report)."""
    tmp = tmp_path_factory.mktemp("cli")
    docs = tmp / "docs"
    docs.mkdir()
    write_meta(make_md(docs / "conges.md", title="Congés annuels"), services=["rh"], doc_type="procedure")
    write_meta(make_pdf(docs / "urba.pdf", title="Instruction des permis", sections=[
        ("Article 1 – Délai", "Le permis de construire d'une maison individuelle est instruit en deux mois."),
    ]), services=["urbanisme"], doc_type="procedure")
    write_meta(make_docx(docs / "charte.docx", title="Charte IA", sections=[
        ("Article 1 – Responsabilité", "L'agent reste responsable des contenus produits avec une IA générative."),
    ]), services=["tous"], doc_type="charte")
    env = {k: v for k, v in os.environ.items() if not k.startswith("COLLECTIVIA_")}
    env["COLLECTIVIA_DATA_DIR"] = str(tmp / "data")
    env["COLLECTIVIA_USERS"] = str(Path(__file__).parent / "data" / "users.yaml")
    result = run(["ingest", str(docs), "--json"], env)
    assert result.returncode == 0, result.stderr
    return docs, env, json.loads(result.stdout)


def test_ingest_json_summary(indexed):
    _, _, report = indexed
    assert set(report) >= {"indexed", "unchanged", "replaced", "pruned", "failed", "chunks_embedded", "seconds"}
    assert (report["indexed"], report["failed"]) == (3, [])
    assert report["chunks_embedded"] >= 3


def test_reingest_is_unchanged_and_exit_code_is_1_on_failure(indexed):
    docs, env, _ = indexed
    again = json.loads(run(["ingest", str(docs), "--json"], env).stdout)
    assert (again["unchanged"], again["chunks_embedded"]) == (3, 0)
    bad = docs.parent / "bad"
    bad.mkdir(exist_ok=True)
    (bad / "vide.txt").write_bytes(b"")
    write_meta(bad / "vide.txt", services=["rh"])
    result = run(["ingest", str(bad), "--json"], env)
    assert result.returncode == 1
    assert json.loads(result.stdout)["failed"][0]["path"].endswith("vide.txt")


def test_search_json_respects_the_users_services(indexed):
    _, env, _ = indexed
    result = run(["search", "délai d'instruction d'un permis de construire", "--user", "urba.agent", "--json"], env)
    assert result.returncode == 0, result.stderr
    hits = json.loads(result.stdout)
    assert hits[0]["doc_id"] == "urba.pdf" and hits[0]["page"] == 1 and hits[0]["section"] == "Article 1 – Délai"
    assert set(hits[0]) == {"doc_id", "title", "services", "doc_type", "page", "section", "score", "text"}
    # The RH agent cannot see the urbanism procedure, whatever the query.
    rh = json.loads(run(["search", "permis de construire maison individuelle", "--user", "rh.agent", "--json"], env).stdout)
    assert all(h["services"] in (["rh"], ["tous"]) for h in rh) and "urba.pdf" not in {h["doc_id"] for h in rh}
    nobody = json.loads(run(["search", "congés", "--user", "nobody", "--json", "-k", "10"], env).stdout)
    assert {h["doc_id"] for h in nobody} == {"charte.docx"}


def test_search_with_an_unknown_user_is_refused_clearly(indexed):
    _, env, _ = indexed
    result = run(["search", "congés", "--user", "intrus"], env)
    assert result.returncode == 2
    assert "intrus" in result.stderr and "rh.agent" in result.stderr


def test_plain_output_for_people(indexed):
    _, env, _ = indexed
    result = run(["search", "IA générative responsable", "--user", "nobody"], env)
    assert result.returncode == 0 and "Charte IA" in result.stdout


def test_another_embedder_on_the_same_index_is_refused_with_advice(indexed):
    _, env, _ = indexed
    result = run(["search", "congés", "--user", "rh.agent"], {**env, "COLLECTIVIA_EMBEDDER__KIND": "e5"})
    assert result.returncode == 2
    assert "use-multilingual-v3" in result.stderr and "COLLECTIVIA_EMBEDDER__KIND" in result.stderr


def test_invalid_setting_names_the_variable(tmp_path):
    env = {**os.environ, "COLLECTIVIA_CHUNK__SIZE": "abc", "COLLECTIVIA_DATA_DIR": str(tmp_path)}
    result = run(["config"], env)
    assert result.returncode == 2 and "chunk" in result.stderr.lower()


def test_config_lists_effective_settings(tmp_path):
    env = {**os.environ, "COLLECTIVIA_QDRANT__URL": "http://qdrant:6333", "COLLECTIVIA_DATA_DIR": str(tmp_path)}
    data = json.loads(run(["config", "--json"], env).stdout)
    assert data["qdrant"]["url"] == "http://qdrant:6333" and data["embedder"]["kind"] == "use"


def test_ask_json_shape_and_extractive_answer(indexed):
    _, env, _ = indexed
    result = run(["ask", "Qui est responsable des contenus produits avec une IA générative ?", "--user", "nobody", "--json"], env)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert {"answer", "refused", "citations", "timings_ms"} <= set(answer)
    assert answer["refused"] is False and answer["extractive"] is True
    assert answer["answer"].startswith("Extraits des documents" if answer["outcome"] == "answer" else "Je ne suis pas sûr")
    citation = answer["citations"][0]
    assert set(citation) == {"n", "doc_id", "title", "page", "section", "services", "passage", "supported"}
    assert citation["doc_id"] == "charte.docx" and f"[{citation['n']}]" in answer["answer"]
    assert answer["timings_ms"]["retrieve"] > 0
    assert answer["outcome"] in ("answer", "uncertain") and 0 <= answer["answerability"] <= 1
    assert answer["extracts"] and answer["extracts"][0] in answer["answer"]


def test_ask_never_answers_confidently_from_what_it_may_not_see(indexed):
    _, env, _ = indexed
    # The only document about building permits belongs to urbanisme.
    answer = json.loads(run(["ask", "Quel est le délai d'instruction d'un permis de construire de maison individuelle ?",
                             "--user", "rh.agent", "--json"], env).stdout)
    # Only « délai » is shared with the RH procedure: never a confident answer, and nothing of urbanisme.
    assert answer["outcome"] in ("not_found", "uncertain") and answer["answerability"] < 0.5, answer
    assert not any(c["doc_id"] == "urba.pdf" for c in answer["citations"])
    assert "urba.pdf" not in json.dumps(answer) and "Instruction des permis" not in answer["answer"]


def test_scope_can_only_narrow(indexed):
    _, env, _ = indexed
    narrowed = json.loads(run(["search", "congés", "--user", "multi.agent", "--service", "finances", "--json"], env).stdout)
    assert narrowed == []  # no finance document in this corpus: RH and "tous" documents are left out
    widened = run(["ask", "permis", "--user", "rh.agent", "--service", "urbanisme"], env)
    assert widened.returncode == 2 and "urbanisme" in widened.stderr
