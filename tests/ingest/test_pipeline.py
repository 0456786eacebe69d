"""Ingestion end to end on real files: idempotence, replacement, pruning, bad input, crash and rerun."""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from qdrant_client import models

from fixtures import (
    make_docx, make_html, make_md, make_odt, make_pdf, make_scanned_pdf, make_txt, make_zip_bomb, write_meta,
)
from ingest import pipeline as pipeline_module
from ingest.pipeline import ChunkingOptions, Ingestor
from index.store import CollectionInfo
from index.edge_store import EdgeStore
MAKERS = {"a.md": make_md, "b.txt": make_txt, "c.html": make_html, "d.docx": make_docx, "e.odt": make_odt, "f.pdf": make_pdf}
ROOT = Path(__file__).resolve().parents[2]


def build_corpus(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "_meta.yaml").write_text("doc_type: procedure\nservices: [rh]\nconfidentiality: interne\n", encoding="utf-8")
    for name, maker in MAKERS.items():
        maker(folder / name, title=f"Procédure {name}")
    write_meta(folder / "f.pdf", id="PROC-PDF", title="Procédure PDF", services=["tous"])
    return folder


def ingestor(store, embedder, bm25, workers: int = 0, **kw) -> Ingestor:
    return Ingestor(store, embedder, bm25, chunking=ChunkingOptions(size=60, overlap=10), parse_workers=workers, **kw)


def texts_of(store, doc_id: str) -> list[str]:
    hits = store.fetch(filter=models.Filter(must=[models.FieldCondition(key="doc_id", match=models.MatchValue(value=doc_id))]))
    return [h.payload["text"] for h in sorted(hits, key=lambda h: h.payload["chunk_index"])]


@pytest.fixture
def corpus(tmp_path) -> Path:
    return build_corpus(tmp_path / "docs")


def test_first_run_indexes_every_format_with_metadata(store, hash_embedder, bm25, corpus):
    report = ingestor(store, hash_embedder, bm25).ingest_paths([corpus])
    assert report.failed == [] and report.indexed == 6
    docs = store.documents()
    assert set(docs) == {"a.md", "b.txt", "c.html", "d.docx", "e.odt", "PROC-PDF"}
    assert docs["PROC-PDF"].services == ("tous",) and docs["a.md"].services == ("rh",)
    assert report.chunks_embedded == store.count()
    pdf_chunks = store.fetch(filter=models.Filter(must=[models.FieldCondition(key="doc_id", match=models.MatchValue(value="PROC-PDF"))]))
    assert sorted({c.payload["page"] for c in pdf_chunks}) == [1, 2, 3]
    assert any(c.payload["section"] == "Article 2 – Délais" for c in pdf_chunks)


def test_rerun_on_unchanged_files_parses_and_embeds_nothing(store, hash_embedder, bm25, corpus, monkeypatch):
    ing = ingestor(store, hash_embedder, bm25)
    ing.ingest_paths([corpus])
    before = store.count()

    def no_parse(*args, **kwargs):
        raise AssertionError("an unchanged file was parsed again")

    monkeypatch.setattr(pipeline_module, "parse_file", no_parse)
    report = ing.ingest_paths([corpus])
    assert (report.indexed, report.unchanged, report.replaced, report.chunks_embedded) == (0, 6, 0, 0)
    assert store.count() == before


def test_changed_file_replaces_all_its_old_chunks(store, hash_embedder, bm25, corpus):
    ing = ingestor(store, hash_embedder, bm25)
    ing.ingest_paths([corpus])
    make_md(corpus / "a.md", title="Procédure a.md", sections=[("Article 1 – Nouveau", "Le télétravail est ouvert deux jours par semaine.")])
    report = ing.ingest_paths([corpus])
    assert (report.replaced, report.unchanged) == (1, 5)
    texts = texts_of(store, "a.md")
    assert len(texts) == 1 and texts[0].endswith("Article 1 – Nouveau\n\nLe télétravail est ouvert deux jours par semaine.")
    assert "congé" not in texts[0]


def test_metadata_change_reindexes_with_the_new_services(store, hash_embedder, bm25, corpus):
    ing = ingestor(store, hash_embedder, bm25)
    ing.ingest_paths([corpus])
    write_meta(corpus / "a.md", services=["urbanisme"])
    report = ing.ingest_paths([corpus])
    assert report.replaced == 1
    assert store.documents()["a.md"].services == ("urbanisme",)


def test_prune_removes_documents_whose_file_is_gone(store, hash_embedder, bm25, corpus):
    ing = ingestor(store, hash_embedder, bm25)
    ing.ingest_paths([corpus])
    (corpus / "b.txt").unlink()
    assert ing.ingest_paths([corpus]).pruned == 0
    assert "b.txt" in store.documents()
    report = ing.ingest_paths([corpus], prune=True)
    assert report.pruned == 1 and "b.txt" not in store.documents()
    assert len(store.documents()) == 5


def test_prune_leaves_documents_of_other_folders_alone(store, hash_embedder, bm25, tmp_path):
    ing = ingestor(store, hash_embedder, bm25)
    one = build_corpus(tmp_path / "one")
    two = tmp_path / "two"
    two.mkdir()
    write_meta(make_md(two / "other.md"), id="OTHER", services=["tous"])
    ing.ingest_paths([one, two])
    report = ing.ingest_paths([one], prune=True)
    assert report.pruned == 0 and "OTHER" in store.documents()


def test_bad_files_are_reported_and_the_batch_goes_on(store, hash_embedder, bm25, corpus):
    ing = ingestor(store, hash_embedder, bm25)
    ing.ingest_paths([corpus])
    kept = texts_of(store, "d.docx")
    (corpus / "empty.txt").write_bytes(b"")
    (corpus / "corrupt.pdf").write_bytes(b"%PDF-1.7\n" + os.urandom(2000))
    make_pdf(corpus / "locked.pdf", encrypt="secret")
    (corpus / "fake.docx").write_bytes((corpus / "f.pdf").read_bytes())
    make_zip_bomb(corpus / "bomb.docx")
    (corpus / "latin.txt").write_bytes(b"\x01\x02\x03\xff\xfe garbage \x81\x8d")
    (corpus / "d.docx").write_bytes(b"PK\x03\x04 this archive was truncated")  # an indexed file gets corrupted
    (corpus / "sheet.xlsx").write_bytes(b"PK\x03\x04")
    (corpus / "_drafts").mkdir()
    (corpus / "_drafts" / "draft.md").write_text("# brouillon", encoding="utf-8")
    started = time.perf_counter()
    report = ing.ingest_paths([corpus, corpus / "missing-folder"])
    assert time.perf_counter() - started < 60
    failed = {Path(f["path"]).name: f["error"] for f in report.failed}
    assert set(failed) == {"empty.txt", "corrupt.pdf", "locked.pdf", "fake.docx", "bomb.docx", "latin.txt", "d.docx", "missing-folder"}
    assert "vide" in failed["empty.txt"]
    assert "mot de passe" in failed["locked.pdf"]
    assert "PDF" in failed["fake.docx"]
    assert "bombe" in failed["bomb.docx"]
    assert "UTF-8" in failed["latin.txt"]
    assert all(name in message for name, message in failed.items())
    assert [s["path"] for s in report.skipped] == [str(corpus / "sheet.xlsx")]
    assert report.unchanged == 5 and not report.ok
    assert texts_of(store, "d.docx") == kept, "an indexed document was lost because its file went bad"
    assert "draft.md" not in store.documents()


def test_document_without_services_is_refused(store, hash_embedder, bm25, tmp_path):
    folder = tmp_path / "nometa"
    folder.mkdir()
    make_md(folder / "x.md")
    report = ingestor(store, hash_embedder, bm25).ingest_paths([folder])
    assert report.indexed == 0 and "services" in report.failed[0]["error"]
    assert store.count() == 0


def test_duplicate_explicit_ids_are_reported(store, hash_embedder, bm25, tmp_path):
    folder = tmp_path / "dup"
    folder.mkdir()
    write_meta(make_md(folder / "x.md"), id="SAME", services=["rh"])
    write_meta(make_txt(folder / "y.txt"), id="SAME", services=["rh"])
    report = ingestor(store, hash_embedder, bm25).ingest_paths([folder])
    assert report.indexed == 1 and "SAME" in report.failed[0]["error"]


def test_scanned_pdf_is_indexed_through_ocr(store, hash_embedder, bm25, tmp_path):
    folder = tmp_path / "scan"
    folder.mkdir()
    write_meta(make_scanned_pdf(folder / "scan.pdf", ["Le conseil municipal approuve", "le règlement du cimetière."]), services=["tous"])
    report = ingestor(store, hash_embedder, bm25).ingest_paths([folder])
    assert report.indexed == 1
    assert "cimeti" in " ".join(texts_of(store, "scan.pdf"))


def test_parsing_in_a_worker_process_gives_the_same_index(store, hash_embedder, bm25, corpus, tmp_path):
    inline = ingestor(store, hash_embedder, bm25, workers=0)
    inline.ingest_paths([corpus])
    expected = {d: texts_of(store, d) for d in store.documents()}
    other = EdgeStore(tmp_path / "other", CollectionInfo(hash_embedder.name, hash_embedder.dim))
    report = ingestor(other, hash_embedder, bm25, workers=1).ingest_paths([corpus])
    assert report.indexed == 6
    assert {d: texts_of(other, d) for d in other.documents()} == expected
    other.close()


def test_a_parse_that_runs_out_of_time_fails_that_file_only(hash_embedder, bm25, corpus, tmp_path):
    store = EdgeStore(tmp_path / "q", CollectionInfo(hash_embedder.name, hash_embedder.dim))
    report = ingestor(store, hash_embedder, bm25, workers=1, parse_timeout_s=0.01).ingest_paths([corpus])
    assert report.failed and all("interrompue" in f["error"] for f in report.failed)
    report = ingestor(store, hash_embedder, bm25, workers=1).ingest_paths([corpus])
    assert report.indexed == 6 - (6 - len(store.documents())) and len(store.documents()) == 6
    store.close()


def test_progress_is_reported_through_the_callback(store, hash_embedder, bm25, corpus):
    seen = []
    ingestor(store, hash_embedder, bm25).ingest_paths([corpus], progress=seen.append)
    assert seen[-1].files_done == seen[-1].files_total == 6
    assert seen[-1].chunks_embedded == store.count()
    assert [p.files_done for p in seen] == sorted(p.files_done for p in seen)


# ------------------------------------------------------------------------------------------------------------
# Killed at any point, a rerun converges to the index a clean run builds.
# ------------------------------------------------------------------------------------------------------------

KILLER = textwrap.dedent(
    """
    import os, signal, sys
    sys.path[:0] = [{tests!r}, {root!r}]
    from fixtures import HashEmbedder
    from index.embed import Bm25Encoder
    from ingest.pipeline import ChunkingOptions, Ingestor
    from index.store import CollectionInfo
    from index.edge_store import EdgeStore


    def ingest(index, corpus, kill_at):
        calls = 0

        class KillingShard:
            '''The real shard; the process is killed (SIGKILL) right after its N-th write.'''
            def __init__(self, shard):
                self._shard = shard
            def update(self, operation):
                nonlocal calls
                self._shard.update(operation)
                calls += 1
                if calls == kill_at:
                    os.kill(os.getpid(), signal.SIGKILL)
            def __getattr__(self, name):
                return getattr(self._shard, name)

        embedder = HashEmbedder()
        store = EdgeStore(index, CollectionInfo(embedder.name, embedder.dim))
        store._shard = KillingShard(store._shard)
        Ingestor(store, embedder, Bm25Encoder(), chunking=ChunkingOptions(size=60, overlap=10),
                 parse_workers=0).ingest_paths([corpus], prune=True)
        store.close()
        return calls


    # Imports and the parsers' own lazy loading are paid once, here (nothing is opened): each run is a new process
    # forked from this one, killed or ending on its own.
    warm = False
    for line in sys.stdin:
        index, corpus, kill_at = line.rstrip("\\n").split("\\t")
        if not warm:
            from pathlib import Path
            from ingest.parse import parse_file
            for path in sorted(Path(corpus).iterdir()):
                try:
                    parse_file(path)
                except Exception:
                    pass
            warm = True
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read)
            code = 0
            try:
                os.write(write, str(ingest(index, corpus, int(kill_at))).encode())
            except BaseException as exc:
                sys.stderr.write(repr(exc) + "\\n")
                code = 1
            os._exit(code)
        os.close(write)
        out = b""
        while chunk := os.read(read, 1024):
            out += chunk
        os.close(read)
        _, status = os.waitpid(pid, 0)
        code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        print(f"{{code}}\\t{{out.decode()}}", flush=True)
    """
)


def _snapshot(store) -> dict:
    hits = store._scroll(models.Filter(), None)  # every point, staged ones included
    return {
        "points": sorted((h.payload["doc_id"], h.payload["version"], h.payload["chunk_index"], h.payload["state"], h.payload["text"]) for h in hits),
    }


@pytest.mark.slow
def test_killed_at_any_write_a_rerun_converges(tmp_path, hash_embedder, bm25):
    script = tmp_path / "killer.py"
    script.write_text(KILLER.format(tests=str(ROOT / "tests"), root=str(ROOT)), encoding="utf-8")
    corpus = build_corpus(tmp_path / "docs")

    errors = tmp_path / "killer.err"
    killer = subprocess.Popen([sys.executable, str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=errors.open("w"), text=True)

    def run(index: Path, kill_at: int) -> tuple[int, str]:
        """Exit code of one ingestion run (-9: killed) and what it printed (its number of writes)."""
        killer.stdin.write(f"{index}\t{corpus}\t{kill_at}\n")
        killer.stdin.flush()
        ready, _, _ = select.select([killer.stdout], [], [], 300)
        line = killer.stdout.readline() if ready else ""
        assert line, "run did not end: " + errors.read_text()
        code, _, out = line.rstrip("\n").partition("\t")
        return int(code), out

    def change_corpus():
        make_md(corpus / "a.md", title="Procédure a.md", sections=[("Article 9 – Modifié", "Nouvelle règle de dépôt des congés.")])
        write_meta(corpus / "c.html", services=["urbanisme"])
        (corpus / "b.txt").unlink()
        write_meta(make_txt(corpus / "g.txt", title="Nouveau"), services=["tous"])

    # DOCX and ODT writers stamp the time: build both corpus states once and copy them, so versions match.
    pristine, changed = tmp_path / "pristine", tmp_path / "changed"
    shutil.copytree(corpus, pristine)
    change_corpus()
    shutil.copytree(corpus, changed)

    def set_corpus(state: Path) -> None:
        shutil.rmtree(corpus)
        shutil.copytree(state, corpus)

    # Reference: the index a clean, uninterrupted run builds (original corpus, then the changed one).
    reference_dir = tmp_path / "reference"
    set_corpus(pristine)
    assert run(reference_dir, 10**9)[0] == 0, errors.read_text()
    pristine_index = tmp_path / "pristine-index"
    shutil.copytree(reference_dir, pristine_index)
    set_corpus(changed)
    code, out = run(reference_dir, 10**9)
    assert code == 0, errors.read_text()
    total = int(out)
    reference = EdgeStore(reference_dir, CollectionInfo(hash_embedder.name, hash_embedder.dim))
    expected = _snapshot(reference)["points"]
    reference.close()
    assert total >= 8 and all(state == "live" for *_, state, _ in expected)

    # Kill the run on the changed corpus right after each of its writes in turn, then run again.
    for kill_at in range(1, total + 1):
        index = tmp_path / f"index-{kill_at}"
        shutil.copytree(pristine_index, index)
        assert run(index, kill_at)[0] == -9, (kill_at, errors.read_text())
        assert run(index, 10**9)[0] == 0, errors.read_text()
        store = EdgeStore(index, CollectionInfo(hash_embedder.name, hash_embedder.dim))
        assert _snapshot(store)["points"] == expected, f"killed after write {kill_at}: the rerun did not converge"
        store.close()
    killer.stdin.close()
    assert killer.wait(timeout=60) == 0
