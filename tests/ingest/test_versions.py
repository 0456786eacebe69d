"""Versions are computed by the ingestor alone: files, chat uploads and importers' documents are indexed again
exactly when their content, metadata or the indexing settings change."""

from __future__ import annotations

import pytest

from fixtures import make_md, write_meta
from index.documents import Document, DocumentMeta, Element, ParsedDocument, load_meta
from ingest import pipeline as pipeline_module
from ingest.pipeline import ChunkingOptions, Ingestor


def imported(doc_id: str, text: str, fingerprint: str = "") -> Document:
    meta = DocumentMeta(title=f"Fiche {doc_id}", doc_type="fiche", services=("tous",), confidentiality="public")
    parsed = ParsedDocument(text=text, elements=(Element("text", text, 0, len(text)),))
    return Document(doc_id=doc_id, version=fingerprint, meta=meta, parsed=parsed, source=f"https://exemple.fr/{doc_id}")


def ingestor(store, embedder, bm25, size: int = 60) -> Ingestor:
    return Ingestor(store, embedder, bm25, chunking=ChunkingOptions(size=size, overlap=10), parse_workers=0)


def test_imported_documents_without_fingerprint_are_versioned_by_their_text(store, hash_embedder, bm25):
    ing = ingestor(store, hash_embedder, bm25)
    first = ing.ingest_documents([imported("A", "Le marché a lieu le mardi."), imported("B", "La mairie ouvre à 9 h.")])
    assert (first.indexed, first.unchanged) == (2, 0)
    again = ing.ingest_documents([imported("A", "Le marché a lieu le mardi."), imported("B", "La mairie ouvre à 10 h.")])
    assert (again.indexed, again.unchanged, again.replaced) == (0, 1, 1)
    assert store.documents()["A"].version != store.documents()["B"].version


def test_imported_documents_are_indexed_again_when_the_indexing_settings_change(store, hash_embedder, bm25):
    docs = [imported("A", "Le marché a lieu le mardi.", fingerprint="fiche-A-1")]
    assert ingestor(store, hash_embedder, bm25).ingest_documents(docs).indexed == 1
    assert ingestor(store, hash_embedder, bm25).ingest_documents(docs).unchanged == 1
    assert ingestor(store, hash_embedder, bm25, size=80).ingest_documents(docs).replaced == 1


@pytest.mark.slow
def test_a_file_indexed_from_the_chat_is_unchanged_for_collectivia_ingest(store, hash_embedder, bm25, tmp_path,
                                                                          monkeypatch):
    folder = tmp_path / "uploads"
    folder.mkdir()
    path = make_md(folder / "badge.md", title="Badge de parking")
    write_meta(path, id="rh-badge", title="Badge de parking", doc_type="procedure", services=["rh"])
    _, meta = load_meta(path, folder)
    ing = ingestor(store, hash_embedder, bm25)
    report = ing.ingest_file(path, "rh-badge", meta)  # parsed in a worker process
    assert report.indexed == 1 and report.chunks_embedded == store.count() > 0

    def no_parse(*args, **kwargs):
        raise AssertionError("an unchanged file was parsed again")

    monkeypatch.setattr(pipeline_module, "parse_one", no_parse)
    monkeypatch.setattr(pipeline_module, "parse_file", no_parse)
    assert ing.ingest_file(path, "rh-badge", meta).unchanged == 1
    report = ing.ingest_paths([folder])
    assert (report.indexed, report.replaced, report.unchanged) == (0, 0, 1)
