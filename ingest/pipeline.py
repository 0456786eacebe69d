"""Ingestion: files → metadata → parse (worker process) → chunk → embed → store, idempotent and crash-safe.

- A document's id is stable (``id`` of its metadata, else its path relative to the folder given); its version is a
  hash of its bytes, its metadata and the indexing settings. Unchanged documents are neither parsed nor embedded.
- A new version is written hidden, then activated (old version dropped, new one made visible): no search sees a
  mix of two versions, and a run killed at any point converges on the next run (hidden leftovers are discarded).
- One bad file never stops the batch: it is reported with its reason and nothing already indexed is touched.
- Parsing runs in worker processes (``ingest.isolate``, as for the chat uploads), overlapping with embedding: a
  parser crash, hang or lack of memory fails its file only. ``parse_workers=0`` parses in the calling process.
- Callers never compute versions: the ingestor does (``ingest.versions``), from a file's bytes or, for documents an
  importer built, from the importer's fingerprint or the parsed content, with the metadata and indexing settings.
Library code reports progress through a callback; the CLI draws the progress bar.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

from ingest.chunk import chunk_document
from index.documents import Document, DocumentMeta, MetadataError, ParsedDocument, load_meta, META_SUFFIX, FOLDER_META
from index.embed import Bm25Encoder, Embedder
from index.store import Store, StoredPoint, point_id
from ingest.isolate import MEMORY_MB, IsolationPolicy, parse_isolated, parse_one
from ingest.parse import FORMATS, ParseError, ParseOptions, parse_file
from ingest.versions import document_version, parsed_fingerprint, settings_key

logger = logging.getLogger(__name__)

EMBED_BATCH_CHUNKS = 64


@dataclass(frozen=True, slots=True)
class ChunkingOptions:
    size: int = 200
    overlap: int = 30
    title_in_embedding: bool = True


@dataclass(frozen=True, slots=True)
class Progress:
    files_done: int
    files_total: int
    chunks_embedded: int
    current: str = ""


@dataclass
class IngestReport:
    indexed: int = 0
    unchanged: int = 0
    replaced: int = 0
    pruned: int = 0
    failed: list[dict[str, str]] = field(default_factory=list)
    warnings: list[dict[str, str]] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    chunks_embedded: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed

    def to_dict(self) -> dict:
        data = asdict(self)
        data["seconds"] = round(self.seconds, 3)
        return data


@dataclass(frozen=True, slots=True)
class _Candidate:
    path: Path
    doc_id: str
    meta: DocumentMeta
    version: str


def discover(paths: Sequence[Path], report: IngestReport) -> list[tuple[Path, Path]]:
    """(root, file) of every document under ``paths``; names starting with '_' or '.' are not documents."""
    found: list[tuple[Path, Path]] = []
    for given in paths:
        root = Path(given)
        if root.is_file():
            if _is_document_name(root.name):
                found.append((root.parent, root))
            else:
                _skip(report, root)
            continue
        if not root.is_dir():
            report.failed.append({"path": str(root), "error": f"{root} : chemin introuvable ou illisible"})
            continue
        for dirpath, dirnames, filenames in os.walk(root, onerror=lambda e: report.failed.append(
                {"path": str(e.filename), "error": f"{e.filename} : dossier illisible ({e.strerror})"})):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith(("_", ".")))
            for name in sorted(filenames):
                if name.startswith(("_", ".")) or name.endswith(META_SUFFIX):
                    continue
                path = Path(dirpath) / name
                if _is_document_name(name):
                    found.append((root, path))
                else:
                    _skip(report, path)
    return found


def _is_document_name(name: str) -> bool:
    return Path(name).suffix.lower() in FORMATS and not name.endswith(META_SUFFIX) and name != FOLDER_META


def _skip(report: IngestReport, path: Path) -> None:
    report.skipped.append(
        {"path": str(path), "reason": f"extension « {path.suffix or '(aucune)'} » non prise en charge"}
    )


class Ingestor:
    """Indexes documents into a ``Store`` with an ``Embedder`` and the French BM25 encoder."""

    def __init__(
        self,
        store: Store,
        embedder: Embedder,
        sparse: Bm25Encoder,
        *,
        chunking: ChunkingOptions = ChunkingOptions(),
        parse_options: ParseOptions = ParseOptions(),
        parse_timeout_s: float = 300,
        parse_workers: int = 1,
        parse_memory_mb: float | None = MEMORY_MB,
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.sparse = sparse
        self.chunking = chunking
        self.parse_options = parse_options
        self.parse_timeout_s = parse_timeout_s
        self.parse_workers = parse_workers
        self.parse_memory_mb = parse_memory_mb
        self._settings_key = settings_key(self.embedder.name, chunking, self.sparse.name)

    @property
    def isolation(self) -> IsolationPolicy:
        return IsolationPolicy(self.parse_timeout_s, max(self.parse_workers, 1), self.parse_memory_mb)

    def version_of(self, content: bytes, meta: DocumentMeta) -> str:
        """The version of a document made of ``content`` (a file's bytes, an importer's fingerprint)."""
        return document_version(content, meta, self._settings_key)

    # -- files ----------------------------------------------------------------------------------------------
    def ingest_paths(
        self,
        paths: Sequence[Path],
        *,
        prune: bool = False,
        progress: Callable[[Progress], None] | None = None,
    ) -> IngestReport:
        started = time.perf_counter()
        report = IngestReport()
        found = discover([Path(p) for p in paths], report)
        existing = self.store.documents()
        candidates: list[_Candidate] = []
        seen: dict[str, Path] = {}
        for root, path in found:
            try:
                explicit_id, meta = load_meta(path, root)
                doc_id = explicit_id or path.relative_to(root).as_posix()
                if doc_id in seen:
                    raise MetadataError(f"{path} : identifiant « {doc_id} » déjà utilisé par {seen[doc_id]}")
                seen[doc_id] = path
                size = path.stat().st_size
                if size > self.parse_options.max_file_mb * 1_000_000:
                    # Let the parser's own check report it, without reading a huge file to hash it.
                    version = f"oversize-{size}"
                else:
                    version = self.version_of(path.read_bytes(), meta)
            except MetadataError as exc:
                report.failed.append({"path": str(path), "error": str(exc)})
                continue
            except OSError as exc:
                report.failed.append({"path": str(path), "error": f"{path} : lecture impossible ({exc.strerror or exc})"})
                continue
            old = existing.get(doc_id)
            if old is not None and old.version == version:
                report.unchanged += 1
                continue
            candidates.append(_Candidate(path, doc_id, meta, version))

        total = len(found)
        done = report.unchanged + len(report.failed)

        def tick(current: str) -> None:
            if progress:
                progress(Progress(done, total, report.chunks_embedded, current))

        tick("")
        documents = self._parse_all(candidates, report)
        for batch in _batches(documents, self._count_chunks_hint):
            self._index_batch(batch, existing, report)
            done += len(batch)
            tick(batch[-1][1].source)
        done = total  # files that failed in parsing are done too
        tick("")

        if prune:
            present = {str(path.resolve()) for _, path in found}
            roots = [str(Path(p).resolve()) for p in paths if Path(p).is_dir()]
            for record in existing.values():
                under_root = any(record.source.startswith(r.rstrip("/") + "/") for r in roots)
                if under_root and record.source not in present:
                    self.store.delete_document(record.doc_id)
                    report.pruned += 1
        if report.indexed + report.replaced:
            self.store.optimize()
        report.seconds = time.perf_counter() - started
        return report

    # -- documents already parsed (importers, uploads) --------------------------------------------------------
    def ingest_file(self, path: Path, doc_id: str, meta: DocumentMeta, *,
                    progress: Callable[[Progress], None] | None = None) -> IngestReport:
        """Index one file under ``doc_id`` (the chat uploads), parsed in a worker process whatever ``parse_workers``
        says; an unchanged file is neither parsed nor embedded. ``progress`` is called once parsed, then per batch."""
        path = Path(path)
        started = time.perf_counter()
        version = self.version_of(path.read_bytes(), meta)
        old = self.store.documents().get(doc_id)
        if old is not None and old.version == version:
            return IngestReport(unchanged=1, seconds=time.perf_counter() - started)
        parsed = parse_one(path, self.parse_options, self.isolation)
        if isinstance(parsed, str):
            return IngestReport(failed=[{"path": str(path), "error": parsed}], seconds=time.perf_counter() - started)
        if not parsed.text.strip():
            reason = parsed.warnings[0] if parsed.warnings else f"{path} : aucun texte extrait, rien à indexer"
            return IngestReport(failed=[{"path": str(path), "error": reason}], seconds=time.perf_counter() - started)
        if progress:
            progress(Progress(0, 1, 0, str(path)))
        document = Document(doc_id=doc_id, version=version, meta=meta, parsed=parsed, source=str(path.resolve()))
        report = self._ingest_versioned([document], progress=progress, total=1)
        report.seconds = time.perf_counter() - started
        return report

    def ingest_documents(self, documents: Iterable[Document], *, progress: Callable[[Progress], None] | None = None,
                         total: int = 0) -> IngestReport:
        """Index documents built by an importer; unchanged versions are skipped.

        The ``version`` an importer gives is its fingerprint of what it read (or empty: the parsed content is then
        fingerprinted); the ingestor turns it into the stored version, with the metadata and indexing settings."""
        versioned = (replace(doc, version=self.version_of(doc.version.encode() or parsed_fingerprint(doc.parsed),
                                                          doc.meta)) for doc in documents)
        return self._ingest_versioned(versioned, progress=progress, total=total)

    def _ingest_versioned(self, documents: Iterable[Document], *, progress: Callable[[Progress], None] | None,
                          total: int) -> IngestReport:
        started = time.perf_counter()
        report = IngestReport()
        existing = self.store.documents()
        done = 0

        def fresh() -> Iterator[tuple[_Candidate, Document]]:
            nonlocal done
            for doc in documents:
                old = existing.get(doc.doc_id)
                if old is not None and old.version == doc.version:
                    report.unchanged += 1
                    done += 1
                    continue
                yield _Candidate(Path(doc.source), doc.doc_id, doc.meta, doc.version), doc

        for batch in _batches(fresh(), self._count_chunks_hint):
            self._index_batch(batch, existing, report)
            done += len(batch)
            if progress:
                progress(Progress(done, total, report.chunks_embedded, batch[-1][1].doc_id))
        if report.indexed + report.replaced:
            self.store.optimize()
        report.seconds = time.perf_counter() - started
        return report

    def remove(self, doc_id: str) -> bool:
        if doc_id not in self.store.documents():
            return False
        self.store.delete_document(doc_id)
        return True

    # -- internals ------------------------------------------------------------------------------------------
    @staticmethod
    def _count_chunks_hint(document: Document) -> int:
        return max(1, len(document.parsed.text) // 800)

    def _index_batch(self, batch: list[tuple[_Candidate, Document]], existing: dict, report: IngestReport) -> None:
        """Chunk, embed (one call for the whole batch), then write and activate document by document."""
        per_doc = []
        for candidate, document in batch:
            chunks = chunk_document(
                document,
                count_tokens=self.embedder.count_tokens,
                size=self.chunking.size,
                overlap=self.chunking.overlap,
                title_in_embedding=self.chunking.title_in_embedding,
            )
            if not chunks:
                report.failed.append({"path": document.source, "error": f"{document.source} : aucun texte extrait, rien à indexer"})
                continue
            per_doc.append((candidate, document, chunks))
        texts = [c.embed_text for _, _, chunks in per_doc for c in chunks]
        if not texts:
            return
        dense = self.embedder.embed_documents(texts)
        offset = 0
        for candidate, document, chunks in per_doc:
            points = []
            for i, chunk in enumerate(chunks):
                points.append(
                    StoredPoint(
                        id=point_id(chunk.doc_id, chunk.version, chunk.index),
                        dense=dense[offset + i],
                        sparse=self.sparse.embed_document(chunk.embed_text),
                        payload={**chunk.payload(), "n_chunks": len(chunks)},
                    )
                )
            offset += len(chunks)
            self.store.discard_staged(document.doc_id)
            self.store.upsert(points)
            if not self.store.activate(document.doc_id, document.version):
                report.failed.append({"path": document.source, "error": (
                    f"{document.source} : la nouvelle version a été effacée par une autre indexation en cours avant "
                    "d'être rendue visible ; l'ancienne version reste en place : relancez l'indexation")})
                continue
            report.chunks_embedded += len(chunks)
            if document.doc_id in existing:
                report.replaced += 1
            else:
                report.indexed += 1
            for warning in document.parsed.warnings:
                report.warnings.append({"path": document.source, "warning": warning})

    def _parse_all(self, candidates: list[_Candidate], report: IngestReport) -> Iterator[tuple[_Candidate, Document]]:
        """Parse candidates in order, in worker processes (here with ``parse_workers=0``), yielding documents."""

        def document(candidate: _Candidate, parsed: ParsedDocument) -> tuple[_Candidate, Document] | None:
            if not parsed.text.strip():
                for warning in parsed.warnings:
                    report.warnings.append({"path": str(candidate.path), "warning": warning})
                report.failed.append({
                    "path": str(candidate.path),
                    "error": parsed.warnings[0] if parsed.warnings else f"{candidate.path} : aucun texte extrait, rien à indexer",
                })
                return None
            return candidate, Document(
                doc_id=candidate.doc_id,
                version=candidate.version,
                meta=candidate.meta,
                parsed=parsed,
                source=str(candidate.path.resolve()),
            )

        if self.parse_workers < 1:
            for candidate in candidates:
                try:
                    parsed = parse_file(candidate.path, self.parse_options)
                except ParseError as exc:
                    report.failed.append({"path": str(candidate.path), "error": str(exc)})
                    continue
                item = document(candidate, parsed)
                if item:
                    yield item
            return

        outcomes = parse_isolated([c.path for c in candidates], self.parse_options, self.isolation)
        for candidate, (_, outcome) in zip(candidates, outcomes):
            if isinstance(outcome, str):
                report.failed.append({"path": str(candidate.path), "error": outcome})
                continue
            item = document(candidate, outcome)
            if item:
                yield item


def _batches(
    items: Iterable[tuple[_Candidate, Document]], size_hint: Callable[[Document], int]
) -> Iterator[list[tuple[_Candidate, Document]]]:
    batch: list[tuple[_Candidate, Document]] = []
    chunks = 0
    for item in items:
        batch.append(item)
        chunks += size_hint(item[1])
        if chunks >= EMBED_BATCH_CHUNKS:
            yield batch
            batch, chunks = [], 0
    if batch:
        yield batch

