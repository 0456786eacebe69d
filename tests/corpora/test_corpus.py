"""The sample commune and its question set hold together: every file parses, every document declares services,
every gold document exists, every gold passage is in its document, and the expected behaviours match access."""

from __future__ import annotations

import json
import multiprocessing
import subprocess
import sys
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest
from rapidfuzz import fuzz

from index.documents import load_meta
from ingest.parse import parse_file
from ingest.pipeline import IngestReport, discover
from rag.access import can_see, load_users

ROOT = Path(__file__).resolve().parents[2]
COMMUNE = ROOT / "corpora" / "commune"
QUESTIONS = ROOT / "evals" / "datasets" / "commune.jsonl"
COLLOQUIAL = ROOT / "evals" / "datasets" / "commune-colloquial.jsonl"
USERS = ROOT / "corpora" / "users.yaml"


def _norm(text: str) -> str:
    return " ".join(text.replace("’", "'").split())


@pytest.fixture(scope="module")
def documents() -> dict[str, dict]:
    """doc id -> {meta, text, path, ocr}: every file of the commune, through the real parsers."""
    report = IngestReport()
    found = discover([COMMUNE], report)
    assert not report.failed and not report.skipped
    out = {}
    # Two processes, as the ingestion's parse workers: OCR of the scanned PDFs dominates.
    with ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("spawn")) as pool:
        parsed_files = pool.map(parse_file, [path for _, path in found])
        for (root, path), parsed in zip(found, parsed_files):
            doc_id, meta = load_meta(path, root)
            assert parsed.text.strip(), path
            out[doc_id] = {"meta": meta, "text": _norm(parsed.text), "path": path, "ocr": parsed.ocr}
    return out


@pytest.fixture(scope="module")
def questions() -> list[dict]:
    return [json.loads(line) for line in QUESTIONS.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="module")
def colloquial() -> list[dict]:
    return [json.loads(line) for line in COLLOQUIAL.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="module")
def every_question(questions, colloquial) -> list[dict]:
    return questions + colloquial


@pytest.fixture(scope="module")
def users():
    return load_users(USERS)


def test_corpus_size_and_variety(documents):
    types = Counter(d["meta"].doc_type for d in documents.values())
    assert types["deliberation"] >= 40 and types["procedure"] >= 25 and types["charte"] >= 1
    services = {s for d in documents.values() for s in d["meta"].services} - {"tous"}
    assert len(services) >= 6
    formats = Counter(d["path"].suffix for d in documents.values())
    assert set(formats) >= {".pdf", ".docx", ".odt", ".html", ".md", ".txt"}
    assert sum(d["ocr"] for d in documents.values()) >= 2, "the two scanned PDFs must go through OCR"
    assert any(d["meta"].status == "abroge" for d in documents.values())
    assert any(d["meta"].confidentiality == "confidentiel" and d["meta"].services != ("tous",) for d in documents.values())


def test_every_document_declares_services(documents):
    assert all(d["meta"].services for d in documents.values())


def test_superseded_documents_point_to_existing_ones(documents):
    for doc_id, d in documents.items():
        for old in d["meta"].supersedes:
            assert old in documents, (doc_id, old)
            assert documents[old]["meta"].status == "abroge", (doc_id, old)


def test_deliberation_numbers_are_unique_and_match_ids(documents):
    numbers = [d["meta"].number for d in documents.values() if d["meta"].doc_type == "deliberation"]
    assert len(numbers) == len(set(numbers))
    for doc_id, d in documents.items():
        if d["meta"].doc_type == "deliberation":
            assert doc_id == f"DEL-{d['meta'].number}"


def test_question_set_shape(questions):
    assert len(questions) >= 150
    assert len({q["id"] for q in questions}) == len(questions)
    expected = Counter(q["expected"] for q in questions)
    assert expected["refuse_no_access"] >= 20 and expected["refuse_not_found"] >= 20
    types = Counter(q["type"] for q in questions)
    assert set(types) == {"lexical", "paraphrase", "numbers_dates", "multi_doc", "superseded_trap", "out_of_corpus",
                          "confidential_other_service"}


def test_the_colloquial_set_shape_and_split(colloquial, questions):
    assert len(colloquial) >= 200 and len({q["id"] for q in colloquial}) == len(colloquial)
    assert not {q["id"] for q in colloquial} & {q["id"] for q in questions}
    assert not {q["question"] for q in colloquial} & {q["question"] for q in questions}
    expected = Counter(q["expected"] for q in colloquial)
    assert expected["refuse_not_found"] + expected["refuse_no_access"] >= 50 and expected["refuse_no_access"] >= 30
    assert sum(q["type"] == "near_miss" for q in colloquial) >= 20
    assert sum(q["lang"] == "en" for q in colloquial) >= 10
    splits = Counter((q["split"], q["expected"]) for q in colloquial)
    for kind in ("answer", "refuse_not_found", "refuse_no_access"):  # every behaviour on both sides of the split
        assert splits[("train", kind)] >= 10 and splits[("test", kind)] >= 10


def test_every_gold_document_exists_and_every_passage_is_in_it(every_question, documents):
    for q in every_question:
        if q["expected"] == "refuse_not_found":
            assert q["gold_docs"] == [] and q["gold_passage"] is None, q["id"]
            continue
        assert q["gold_docs"], q["id"]
        for doc_id in q["gold_docs"]:
            assert doc_id in documents, (q["id"], doc_id)
        doc = documents[q["gold_docs"][0]]
        passage = _norm(q["gold_passage"])
        if doc["ocr"]:  # tesseract may misread a dash or a superscript
            assert fuzz.partial_ratio(passage, doc["text"]) >= 90, (q["id"], passage)
        else:
            assert passage in doc["text"], (q["id"], passage)


def test_expected_behaviour_matches_access(every_question, documents, users):
    for q in every_question:
        user = users[q["user"]]
        visible = [can_see(user, documents[d]["meta"].services) for d in q["gold_docs"]]
        if q["expected"] == "answer":
            assert all(visible), (q["id"], q["user"], q["gold_docs"])
            assert all(documents[d]["meta"].status == "en_vigueur" for d in q["gold_docs"][:1]), q["id"]
        elif q["expected"] == "refuse_no_access":
            assert not any(visible), (q["id"], q["user"], q["gold_docs"])


def test_superseded_traps_ask_for_the_version_in_force(questions, documents):
    traps = [q for q in questions if q["type"] == "superseded_trap"]
    assert len(traps) >= 8
    for q in traps:
        assert documents[q["gold_docs"][0]]["meta"].supersedes, q["id"]


def test_demo_users_and_their_passwords(users):
    from argon2 import PasswordHasher

    assert len(users) >= 8
    assert any(len(u.services) >= 2 and "document_manager" not in u.roles for u in users.values())
    assert any(not u.services for u in users.values())
    assert any("admin" in u.roles for u in users.values())
    hasher = PasswordHasher()
    for user in users.values():
        assert user.password_hash and user.password_hash.startswith("$argon2id$")
        assert hasher.verify(user.password_hash, f"demo-{user.id}")


def test_committed_files_are_what_the_sources_build():
    result = subprocess.run([sys.executable, str(ROOT / "corpora" / "build.py"), "--check"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
