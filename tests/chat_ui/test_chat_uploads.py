"""Document management behind the chat dialogs: rights, checks with French messages, originals kept, audit log."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from chat_ui.audit import AuditLog
from chat_ui.backend import Backend
from chat_ui.uploads import DocumentManager, Progress, check_metadata, folder_of, new_doc_id, safe_filename
from collectivia.settings import LimitSettings, Settings
from fixtures import make_md, make_pdf, make_zip_bomb
from rag.access import User

AGENT = User("a.martin", "Alice", frozenset({"rh"}))
MANAGER = User("h.bernard", "Hélène", frozenset({"rh", "finances"}), frozenset({"agent", "document_manager"}))
OTHER_MANAGER = User("i.lambert", "Igor", frozenset({"urbanisme"}), frozenset({"agent", "document_manager"}))
ADMIN = User("admin", "Admin", frozenset(), frozenset({"agent", "admin"}))


class FakeBackend:
    """What DocumentManager needs of the chat's Backend, on a small Edge index with the hash embedder."""

    document_payload = Backend.document_payload

    def __init__(self, tmp: Path, embedder) -> None:
        from index.embed import Bm25Encoder
        from ingest.parse import ParseOptions
        from ingest.pipeline import Ingestor
        from index.store import CollectionInfo
        from index.edge_store import EdgeStore
        self.settings = Settings(data_dir=tmp / "data", limits=LimitSettings(max_file_mb=0.1, parse_workers=0))
        self.uploads_dir = tmp / "data" / "uploads"
        self.audit = AuditLog(tmp / "data" / "audit" / "documents.jsonl")
        self.store = EdgeStore(tmp / "data" / "qdrant", CollectionInfo(embedder.name, embedder.dim))
        self.ingestor = Ingestor(self.store, embedder, Bm25Encoder(), parse_options=ParseOptions(max_file_mb=0.1))

    def wait_ready(self, timeout=None) -> None:
        return None


@pytest.fixture
def manager(tmp_path, hash_embedder):
    backend = FakeBackend(tmp_path, hash_embedder)
    yield DocumentManager(backend)
    backend.store.close()


def audit(dm) -> list[dict]:
    return dm.backend.audit.entries()


@pytest.mark.parametrize("title, doc_type, services, message", [
    ("", "procedure", ["rh"], "titre est obligatoire"),
    ("x" * 201, "procedure", ["rh"], "200 caractères"),
    ("Note", "secret", ["rh"], "Type de document inconnu"),
    ("Note", "procedure", [], "au moins un service"),
    ("Note", "procedure", ["rh", "urbanisme"], "refusé : urbanisme"),
    ("Note", "procedure", ["tous", "rh"], "ne se combine pas"),
])
def test_metadata_is_checked_against_the_managers_services(title, doc_type, services, message):
    assert message in check_metadata(title, doc_type, services, ["rh", "finances", "tous"])
    assert check_metadata("Note", "procedure", ["rh"], ["rh"]) is None


def test_names_and_ids():
    assert safe_filename("Note de service n°3 (2025).PDF") == "Note-de-service-n3-2025.pdf"
    assert safe_filename("../../etc/passwd") == "passwd"
    assert safe_filename(".cache") == "cache"
    doc_id = new_doc_id("Congés d'été 2025", ["rh"])
    assert doc_id.startswith("RH-conges-d-ete-2025-") and len(doc_id.rsplit("-", 1)[1]) == 6
    assert new_doc_id("Note", ["rh", "finances"]).startswith("DOC-note-")
    assert folder_of("procedures/rh/conges.pdf") == "procedures__rh__conges.pdf"


def test_bad_files_are_refused_in_french_before_anything_is_asked(manager, tmp_path):
    cases = {
        "archive.zip": (b"PK\x03\x04", "Format non pris en charge : « .zip »"),
        "gros.txt": (b"a" * 150_000, "Fichier trop volumineux"),
        "vide.md": (b"", "vide"),
        "faux.pdf": (b"ceci est du texte", "pas un fichier PDF"),
        "faux.docx": (b"ceci est du texte", "pas un fichier DOCX"),
    }
    for name, (content, expected) in cases.items():
        path = tmp_path / ("upload-" + name)
        path.write_bytes(content)
        message = manager.precheck(path, name)
        assert message and expected in message, (name, message)
        assert str(tmp_path) not in message and "_staging" not in message
    bomb = make_zip_bomb(tmp_path / "bombe.docx", size_mb=30)
    assert "bombe de décompression" in manager.precheck(bomb, "bombe.docx")
    assert not list((manager.root / "_staging").iterdir())


def test_agents_and_foreign_services_are_refused_and_audited(manager, tmp_path):
    note = make_md(tmp_path / "note.md")
    outcome = manager.add(AGENT, note, "note.md", title="Note", doc_type="procedure", services=["rh"])
    assert not outcome.ok and "gestionnaires" in outcome.message
    outcome = manager.add(MANAGER, note, "note.md", title="Note", doc_type="procedure", services=["urbanisme"])
    assert not outcome.ok and "vos propres services" in outcome.message
    assert [(e["action"], e["outcome"], e["user"]) for e in audit(manager)] == [
        ("upload", "refused", "a.martin"), ("upload", "refused", "h.bernard")]
    assert manager.backend.store.documents() == {}


@pytest.mark.slow
@pytest.mark.slow
def test_add_replace_withdraw_keeps_originals_and_writes_the_audit_log(manager, tmp_path):
    first = make_md(tmp_path / "badge.md", title="Badge", sections=[
        ("Article 1", "Le badge de parking est remis contre un dépôt de quarante-deux euros.")])
    progress = Progress()
    added = manager.add(MANAGER, first, "Badge parking.md", title="Badge de parking", doc_type="procedure",
                        services=["finances"], progress=progress)
    assert added.ok, added.message
    assert progress.stage == "consultable" and added.chunks >= 1
    payload = manager.backend.document_payload(added.doc_id)
    source = Path(payload["source"])
    assert payload["services"] == ["finances"] and payload["title"] == "Badge de parking"
    assert source.name == "Badge-parking.md" and manager.root in source.parents
    sidecar = yaml.safe_load(source.with_name(source.name + ".meta.yaml").read_text(encoding="utf-8"))
    assert sidecar["id"] == added.doc_id and sidecar["services"] == ["finances"]
    assert [r.doc_id for r in manager.documents(MANAGER)] == [added.doc_id]
    assert manager.documents(OTHER_MANAGER) == []

    # Another service's manager cannot replace or withdraw it.
    assert not manager.replace(OTHER_MANAGER, added.doc_id, first, "badge.md").ok
    assert not manager.withdraw(OTHER_MANAGER, added.doc_id).ok

    # A corrupt new version changes nothing: a PDF that cannot be cleaned is refused before it is indexed...
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(b"%PDF-1.4\n broken \n%%EOF")
    refused = manager.replace(MANAGER, added.doc_id, broken, "broken.pdf")
    assert not refused.ok and "« broken.pdf »" in refused.message and "corrompu" in refused.message
    assert str(tmp_path) not in refused.message
    assert manager.backend.document_payload(added.doc_id)["source"] == str(source)
    # ... and a clean PDF without any text fails at indexing without touching the previous version.
    import pikepdf

    blank = pikepdf.new()
    blank.add_blank_page()
    blank.save(tmp_path / "blanc.pdf")
    failed = manager.replace(MANAGER, added.doc_id, tmp_path / "blanc.pdf", "blanc.pdf")
    assert not failed.ok and "précédente reste en place" in failed.message, failed.message
    assert manager.backend.document_payload(added.doc_id)["source"] == str(source)

    # Same file again: nothing to do; a new version replaces the old one, which is archived.
    assert manager.replace(MANAGER, added.doc_id, first, "badge.md").unchanged
    second = make_md(tmp_path / "badge2.md", title="Badge", sections=[
        ("Article 1", "Le badge de parking est remis contre un dépôt de cinquante euros.")])
    replaced = manager.replace(MANAGER, added.doc_id, second, "badge-2026.md")
    assert replaced.ok and not replaced.unchanged
    new_source = Path(manager.backend.document_payload(added.doc_id)["source"])
    assert new_source.name == "badge-2026.md" and not source.exists()
    assert list((manager.root / "_archives").rglob("Badge-parking.md"))

    withdrawn = manager.withdraw(MANAGER, added.doc_id)
    assert withdrawn.ok and manager.backend.document_payload(added.doc_id) is None
    assert not new_source.exists() and list((manager.root / "_retires").rglob("badge-2026.md"))
    assert [(e["action"], e["outcome"]) for e in audit(manager)] == [
        ("upload", "ok"), ("replace", "refused"), ("withdraw", "refused"), ("replace", "refused"),
        ("replace", "failed"), ("replace", "unchanged"), ("replace", "ok"), ("withdraw", "ok")]
    entry = audit(manager)[0]
    assert entry["services"] == ["finances"] and entry["sha256"] and entry["file"] == "Badge parking.md"


@pytest.mark.slow
def test_a_file_that_fails_to_parse_leaves_nothing_behind(manager, tmp_path):
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(b"%PDF-1.4\n broken \n%%EOF")
    outcome = manager.add(MANAGER, broken, "broken.pdf", title="Cassé", doc_type="procedure", services=["rh"])
    assert not outcome.ok and "« broken.pdf »" in outcome.message and "corrompu" in outcome.message
    assert manager.backend.store.documents() == {}
    assert [p.name for p in manager.root.iterdir() if not p.name.startswith("_")] == []
    assert audit(manager)[-1]["outcome"] == "refused"  # a PDF that cannot be cleaned is not indexed


def pdf_with_javascript(path: Path) -> Path:
    import pikepdf

    make_pdf(path, title="Permis de construire", sections=[("Article 1", "Le permis est instruit en deux mois.")])
    with pikepdf.open(path, allow_overwriting_input=True) as pdf:
        pdf.Root.OpenAction = pdf.make_indirect(pikepdf.Dictionary(
            S=pikepdf.Name.JavaScript, JS=pikepdf.String("app.alert('pdf-js-ran');")))
        pdf.save(path)
    assert b"app.alert" in path.read_bytes()
    return path


@pytest.mark.slow
def test_an_uploaded_pdf_is_kept_without_its_javascript_and_the_cleaning_is_audited(manager, tmp_path):
    import pikepdf

    upload = pdf_with_javascript(tmp_path / "upload-permis.pdf")
    added = manager.add(MANAGER, upload, "Permis.pdf", title="Permis de construire", doc_type="procedure",
                        services="rh")  # one service given as a string: "rh", not "r" and "h"
    assert added.ok, added.message
    assert added.services == ("rh",)
    stored = Path(manager.backend.document_payload(added.doc_id)["source"])
    assert stored.name == "Permis.pdf" and b"app.alert" not in stored.read_bytes()
    with pikepdf.open(stored) as pdf:
        assert "/OpenAction" not in pdf.Root and len(pdf.pages) >= 1
    entry = audit(manager)[-1]
    assert (entry["action"], entry["outcome"], entry["services"]) == ("upload", "ok", ["rh"])
    assert "extraits indexés" in entry["detail"] and "/OpenAction" in entry["detail"], entry["detail"]
    assert not list((manager.root / "_staging").glob("*/*"))
    # The same PDF again is the same cleaned file: nothing to re-index.
    assert manager.replace(MANAGER, added.doc_id, upload, "Permis.pdf").unchanged


def test_one_service_given_as_a_string_is_not_split_into_letters(manager, tmp_path):
    note = make_md(tmp_path / "note.md")
    outcome = manager.add(MANAGER, note, "note.md", title="Note", doc_type="procedure", services="urbanisme")
    assert not outcome.ok and "refusé : urbanisme" in outcome.message, outcome.message
    assert audit(manager)[-1]["services"] == ["urbanisme"]
