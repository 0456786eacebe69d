"""Readers of question sets: project JSONL, BEIR (a tiny generated corpus), the service-public.fr dev set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evals.datasets import (
    NO_SERVICE_USER, Corpus, DatasetError, beir_doc_id, beir_documents, load_dataset, read_beir, read_jsonl,
    read_service_public, service_public_doc_id,
)

ROOT = Path(__file__).resolve().parents[2]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    return path


ROW = {"id": "Q1", "question": "Quel délai pour poser un congé ?", "user": "a.martin", "gold_docs": ["PROC-RH-002"],
       "gold_passage": "quinze jours avant le départ", "short_answer": "15 jours", "expected": "answer",
       "type": "lexical"}


def test_jsonl_reads_every_field(tmp_path):
    path = write_jsonl(tmp_path / "set.jsonl", [ROW, {"id": "Q2", "question": "Le prix du pain ?", "user": "g.girard",
                                                      "gold_docs": [], "gold_passage": None, "short_answer": None,
                                                      "expected": "refuse_not_found", "type": "out_of_corpus"}])
    q1, q2 = read_jsonl(path)
    assert (q1.id, q1.user, q1.gold_docs, q1.gold_passage, q1.short_answer, q1.expected, q1.type) == (
        "Q1", "a.martin", ("PROC-RH-002",), "quinze jours avant le départ", "15 jours", "answer", "lexical")
    assert q1.relevance() == {"PROC-RH-002": 1}
    assert (q2.expected, q2.gold_docs, q2.relevance()) == ("refuse_not_found", (), {})


@pytest.mark.parametrize("bad, message", [
    ({**ROW, "expected": "maybe"}, "expected"),
    ({**ROW, "question": ""}, "question"),
    ({**ROW, "gold_docs": "PROC-RH-002"}, "gold_docs"),
])
def test_jsonl_errors_name_the_line(tmp_path, bad, message):
    path = write_jsonl(tmp_path / "set.jsonl", [ROW | {"id": "Q0"}, bad])
    with pytest.raises(DatasetError, match=rf"set.jsonl:2 .*{message}"):
        read_jsonl(path)


def test_jsonl_duplicate_ids_and_broken_json(tmp_path):
    with pytest.raises(DatasetError, match="double"):
        read_jsonl(write_jsonl(tmp_path / "a.jsonl", [ROW, ROW]))
    (tmp_path / "b.jsonl").write_text('{"id": "Q1",\n', encoding="utf-8")
    with pytest.raises(DatasetError, match="b.jsonl:1 : JSON invalide"):
        read_jsonl(tmp_path / "b.jsonl")


def test_commune_set_loads_with_its_corpus_and_users():
    data = load_dataset("commune")
    assert len(data.questions) == 195 and data.skipped == []
    assert data.corpus.kind == "paths" and data.corpus.path == ROOT / "corpora" / "commune"
    assert {q.expected for q in data.questions} == {"answer", "refuse_not_found", "refuse_no_access"}
    assert all(q.user in data.users for q in data.questions)


def test_unknown_user_is_skipped_and_reported(tmp_path):
    path = write_jsonl(tmp_path / "set.jsonl", [ROW, ROW | {"id": "Q9", "user": "nobody"}])
    data = load_dataset(path, corpus=tmp_path)
    assert [q.id for q in data.questions] == ["Q1"]
    assert data.skipped == [{"id": "Q9", "reason": "utilisateur inconnu 'nobody'"}]


def test_jsonl_without_corpus_is_an_error(tmp_path):
    with pytest.raises(DatasetError, match="--corpus"):
        load_dataset(write_jsonl(tmp_path / "set.jsonl", [ROW]))


# --------------------------------------------------------------------------------------------------------------
# BEIR
# --------------------------------------------------------------------------------------------------------------


def make_beir(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    write_jsonl(folder / "corpus.jsonl", [
        {"_id": "d1", "title": "Congés", "text": "Les congés annuels sont de cinq semaines."},
        {"_id": "d2", "title": "Paie", "text": "La paie est versée le 25 du mois."},
        {"_id": "doc 3?", "title": "", "text": "Le télétravail est possible deux jours par semaine."},
        {"_id": "d4", "title": "Vide", "text": "   "},
    ])
    write_jsonl(folder / "queries.jsonl", [
        {"_id": "q1", "text": "combien de semaines de congés ?"},
        {"_id": "q2", "text": "quand la paie est-elle versée ?"},
        {"_id": "q3", "text": "télétravail ?"},
        {"_id": "q4", "text": "question sans jugement"},
        {"_id": "q5", "text": "document absent"},
    ])
    (folder / "qrels").mkdir(exist_ok=True)
    (folder / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t2\nq2\td1\t1\nq3\tdoc 3?\t1\nq4\td2\t0\nq5\tmissing\t1\n",
        encoding="utf-8")
    return folder


def test_beir_reader(tmp_path):
    folder = make_beir(tmp_path / "tiny")
    questions, skipped = read_beir(folder)
    by_id = {q.id: q for q in questions}
    assert sorted(by_id) == ["q1", "q2", "q3"]  # q4 has no relevant document, q5's is not in the corpus
    assert skipped == [{"id": "q5", "reason": "documents pertinents absents du corpus : missing"}]
    assert by_id["q2"].gold_docs == ("d2", "d1") and by_id["q2"].relevance() == {"d2": 2, "d1": 1}
    assert by_id["q3"].gold_docs == (beir_doc_id("doc 3?"),)
    assert all(q.user == NO_SERVICE_USER and q.expected == "answer" for q in questions)


def test_beir_documents_are_open_to_all(tmp_path):
    docs = list(beir_documents(make_beir(tmp_path / "tiny")))
    assert [d.doc_id for d in docs] == ["d1", "d2", beir_doc_id("doc 3?")]  # the empty one is left out
    assert all(d.meta.services == ("tous",) for d in docs)
    assert docs[0].meta.title == "Congés" and docs[0].parsed.text == "Les congés annuels sont de cinq semaines."
    assert beir_doc_id("doc 3?").startswith("doc_3_-")


def test_beir_dataset_by_folder(tmp_path):
    data = load_dataset(make_beir(tmp_path / "tiny"))
    assert data.corpus.kind == "beir" and data.users[NO_SERVICE_USER].services == frozenset()
    with pytest.raises(DatasetError, match="qrels/dev.tsv"):
        load_dataset(tmp_path / "tiny", split="dev")


# --------------------------------------------------------------------------------------------------------------
# service-public.fr
# --------------------------------------------------------------------------------------------------------------


def make_snapshot(folder: Path, fiches: dict[str, list[str]]) -> Path:
    for fiche_id, audiences in fiches.items():
        for audience in audiences:
            (folder / "data" / audience).mkdir(parents=True, exist_ok=True)
            (folder / "data" / audience / f"{fiche_id}.json").write_text("{}", encoding="utf-8")
    return folder / "data"


def test_service_public_mapping_and_missing_fiches(tmp_path):
    snapshot = make_snapshot(tmp_path, {"F1": ["particuliers"], "F2": ["professionnels"]})
    questions_path = write_jsonl(tmp_path / "questions-dev.jsonl", [
        {"id": "spf-0", "question": "Peut-on … ?", "gold": ["F1"]},
        {"id": "spf-1", "question": "Faut-il … ?", "gold": ["F2"]},
        {"id": "spf-2", "question": "Doit-on … ?", "gold": ["F999"]},
    ])
    questions, skipped = read_service_public(questions_path, snapshot)
    assert [(q.id, q.gold_docs) for q in questions] == [("spf-0", ("SP-F1",)), ("spf-1", ("SP-F2",))]
    assert skipped == [{"id": "spf-2", "reason": "fiche(s) F999 absente(s) de l'instantané"}]
    data = load_dataset(questions_path, corpus=snapshot)
    assert data.corpus == Corpus("service_public", snapshot, with_titles=False)
    assert len(data.questions) == 2 and len(data.skipped) == 1
    assert data.canonical_doc_id("SP-F2-professionnels") == "SP-F2"


def test_copies_of_a_fiche_count_as_the_fiche():
    assert service_public_doc_id("SP-F924-professionnels") == "SP-F924"
    assert service_public_doc_id("SP-F924-associations") == "SP-F924"
    assert service_public_doc_id("SP-F924") == "SP-F924"
    assert service_public_doc_id("DEL-2024-015") == "DEL-2024-015"


SHARED = ROOT.parent / "shared" / "bench" / "service-public"


@pytest.mark.skipif(not (SHARED / "questions-dev.jsonl").is_file(), reason="service-public.fr data absent")
def test_shared_service_public_dev_set():
    data = load_dataset("service-public")
    assert len(data.questions) + len(data.skipped) == 430
    assert all(q.gold_docs[0].startswith("SP-") for q in data.questions)
    assert data.corpus.kind == "service_public" and data.corpus.with_titles is False


def test_corpus_fingerprint_follows_content(tmp_path):
    (tmp_path / "a.md").write_text("un", encoding="utf-8")
    corpus = Corpus("paths", tmp_path)
    before = corpus.fingerprint()
    assert corpus.fingerprint() == before
    (tmp_path / "a.md").write_text("deux", encoding="utf-8")
    assert corpus.fingerprint() != before
