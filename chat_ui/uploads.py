"""Document management from the chat: add, replace and withdraw documents of one's own services, with an audit trail.

No Chainlit here (the dialogs are in ``upload_dialogs.py``): files in, French outcomes out.

- Rights: a document manager manages the documents whose services are all among their own; an administrator,
  every document. A new document's services are chosen among the manager's own services only.
- A file is checked first (format, size, content matching the extension, archive bombs: ``ingest.parse``), then
  parsed in a separate process (``ingest.isolate``, the pipeline's own policy: a parser crash, a slow file or a lack
  of memory cannot take the chat down), then chunked, embedded and written through the one ``Ingestor`` of the
  process, which computes the version; ingestions run one at a time.
- The originals live under ``<data_dir>/uploads/<document>/<version>/`` with their ``.meta.yaml`` sidecar, so that
  ``/documents/<id>`` can open them and ``collectivia ingest <data_dir>/uploads`` would index the same documents.
  Replaced versions move to ``uploads/_archives``, withdrawn documents to ``uploads/_retires`` (names starting with
  ``_`` are never indexed). A failed upload changes nothing: the previous version stays indexed and served.
- Every attempt (accepted or refused) is written to the audit log.
"""

from __future__ import annotations

import datetime as dt
import secrets
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import yaml

from chat_ui.pdf_safety import PdfSafetyError, removed_note, sanitize_pdf
from chat_ui.upload_recovery import Settled, clear_pending, mark_pending, move_version, settle_interrupted
from chat_ui.upload_names import (DOC_TYPES, check_metadata, folder_of, new_doc_id, safe_filename,  # noqa: F401
                                  sha256_of, slug)
from index.documents import DocumentMeta, META_SUFFIX
from ingest.parse import FORMATS, ParseError, ParseOptions, check_file
from rag.access import can_manage, can_upload, upload_targets


CLEANED = "cleaned"  # key of the audit fields: what the PDF cleaning removed (written into the detail)
UPLOAD_ROUTE_REFUSED = "Dépôt de fichier refusé (HTTP 403) : réservé aux gestionnaires de documents de leurs services."


@dataclass
class Outcome:
    ok: bool
    message: str
    doc_id: str = ""
    title: str = ""
    services: tuple[str, ...] = ()
    chunks: int = 0
    seconds: float = 0.0
    unchanged: bool = False


@dataclass
class Progress:
    """Where an ingestion stands, shared between the worker thread and the dialog that shows it."""

    stage: str = "reçu"
    started: float = field(default_factory=time.monotonic)
    chunks: int = 0

    def set(self, stage: str, chunks: int = 0) -> None:
        self.stage = stage
        self.chunks = chunks or self.chunks

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started


class DocumentManager:
    """Upload, replace, withdraw and list documents, for one process (one store, one ingestion at a time)."""

    def __init__(self, backend) -> None:
        self.backend = backend
        self.root = Path(backend.uploads_dir)
        self._ingest_lock = threading.Lock()

    # -- rights --------------------------------------------------------------------------------------------------
    # The rules are ``rag.access`` (managed_services, can_upload, can_manage, upload_targets); checked again here.
    def allows_file_upload(self, identifier: str, user) -> bool:
        """Whether the upload route may receive a file from this session (document managers only); a refusal (the
        route answers 403) is audited."""
        if user is not None and can_upload(user):
            return True
        self.backend.audit.write(action="upload", outcome="refused", user_id=identifier,
                                 user_name=getattr(user, "name", ""), detail=UPLOAD_ROUTE_REFUSED)
        return False

    def refuse(self, user, action: str, message: str, **fields) -> Outcome:
        """Audit a refusal decided before the manager is reached (a dialog, a button), and return it."""
        return self._refused(action, message, dict(user_id=user.id if user else "",
                                                   user_name=user.name if user else ""), **fields)

    def documents(self, user) -> list:
        """Records of the documents ``user`` may replace or withdraw (imported web pages excluded), by title."""
        self.backend.wait_ready(timeout=120)
        records = self.backend.store.documents().values()
        mine = [r for r in records if can_manage(user, r.services) and not r.source.startswith(("http://", "https://"))]
        return sorted(mine, key=lambda r: (r.title.lower(), r.doc_id))

    # -- checks --------------------------------------------------------------------------------------------------
    def check_file_name(self, name: str, size: int) -> str | None:
        suffix = Path(name or "").suffix.lower()
        if suffix not in FORMATS:
            shown = suffix or "(aucune extension)"
            return (f"Format non pris en charge : « {shown} ». Formats acceptés : PDF, DOCX, ODT, HTML, Markdown (.md) "
                    "et TXT.")
        limit = self.backend.settings.limits.max_file_mb
        if size > limit * 1_000_000:
            return (f"Fichier trop volumineux : {size / 1e6:.3g} Mo pour une limite de {limit:g} Mo. Découpez-le ou "
                    "demandez à la DSI de relever la limite.")
        if size == 0:
            return "Le fichier est vide (0 octet) : rien à indexer."
        return None

    def precheck(self, upload: Path, name: str) -> str | None:
        """The French reason a received file is refused before anything else is asked (format, size, content,
        archive bomb), or None. Parsing itself comes later."""
        size = upload.stat().st_size if upload.exists() else 0
        problem = self.check_file_name(name, size)
        if problem:
            return problem
        staged = self._stage(upload, name)
        try:
            check_file(staged, self._options())
        except ParseError as exc:
            return self._clean_error(str(exc), staged, name)
        finally:
            shutil.rmtree(staged.parent, ignore_errors=True)
        return None

    def _options(self) -> ParseOptions:
        ingestor = self.backend.ingestor
        if ingestor is not None:
            return ingestor.parse_options
        from collectivia.wiring import build_parse_options

        return build_parse_options(self.backend.settings)

    # -- the work ------------------------------------------------------------------------------------------------
    def _stage(self, source: Path, name: str) -> Path:
        staging = self.root / "_staging" / secrets.token_hex(8)
        staging.mkdir(parents=True, exist_ok=True)
        target = staging / safe_filename(name)
        shutil.copyfile(source, target)
        return target

    def _clean_error(self, message: str, path: Path, name: str) -> str:
        return message.replace(str(path.resolve()), f"« {name} »").replace(str(path), f"« {name} »")

    def _index(self, path: Path, doc_id: str, meta: DocumentMeta, name: str, progress: Progress):
        """Parse in a separate process (``ingest.isolate``), then index; returns (report or None, French error or
        None). The ingestor computes the version."""
        backend = self.backend
        backend.wait_ready(timeout=300)
        progress.set("analyse")
        report = backend.ingestor.ingest_file(path, doc_id, meta,
                                              progress=lambda p: progress.set("indexation", p.chunks_embedded))
        if report.failed:
            return None, self._clean_error(report.failed[0]["error"], path, name)
        progress.set("consultable", report.chunks_embedded)
        return report, None

    def _place(self, staged: Path, doc_id: str, meta: DocumentMeta, action: str, audit: dict,
               old_source: str = "") -> Path:
        """Move a checked file to its version folder, with its sidecar and the marker of an upload in progress
        (settled at the next start if the chat dies before the outcome is known); returns its final path."""
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)
        version_dir = self.root / folder_of(doc_id) / stamp
        mark_pending(version_dir, action, {**audit, "doc_id": doc_id}, old_source)
        final = version_dir / staged.name
        shutil.move(str(staged), final)
        shutil.rmtree(staged.parent, ignore_errors=True)
        sidecar = {"id": doc_id, **{k: v for k, v in meta.payload().items() if v not in (None, [], ())}}
        final.with_name(final.name + META_SUFFIX).write_text(
            yaml.safe_dump(sidecar, allow_unicode=True, sort_keys=False), encoding="utf-8"
        )
        return final

    def _archive(self, path: Path, kind: str) -> None:
        """Move an uploaded version folder (never a file outside ``uploads/``) to ``_archives`` or ``_retires``."""
        try:
            path.resolve().relative_to(self.root.resolve())
        except ValueError:
            return
        move_version(self.root, path.parent, kind)

    def settle_interrupted(self) -> list[Settled]:
        """At start-up, once the index is open: set aside and audit the uploads a crash left half-done."""
        def live_source(doc_id: str) -> str | None:
            hit = self.backend.store.first_chunk(doc_id, filter=None)  # the index is open, maybe not yet declared ready
            return str(hit.payload.get("source") or "") or None if hit else None

        with self._ingest_lock:
            return settle_interrupted(self.root, self.backend.audit, live_source,
                                      lambda path: self._archive(path, "_archives"))

    def _write(self, action: str, outcome: str, detail: str, audit: dict, **extra) -> None:
        """One line of the audit log; what the PDF cleaning removed (``audit["cleaned"]``) joins the detail."""
        fields = dict(audit, **extra)
        note = fields.pop(CLEANED, "")
        self.backend.audit.write(action=action, outcome=outcome, detail="; ".join(d for d in (detail, note) if d),
                                 **fields)

    def _refused(self, action: str, message: str, audit: dict, **extra) -> Outcome:
        """Write the refusal to the audit log and return it."""
        self._write(action, "refused", message, audit, **extra)
        return Outcome(False, message)

    def _stage_checked(self, upload: Path, name: str, action: str, audit: dict,
                       progress: Progress) -> tuple[Path | None, Outcome | None]:
        """Copy the upload aside and check its content; a bad file is refused, audited and removed."""
        staged = self._stage(upload, name)
        audit["sha256"] = sha256_of(staged)
        try:
            check_file(staged, self._options())
        except ParseError as exc:
            shutil.rmtree(staged.parent, ignore_errors=True)
            message = self._clean_error(str(exc), staged, name)
            return None, self._refused(action, message, audit)
        if staged.suffix.lower() == ".pdf":  # the original kept and served has nothing left that could run
            cleaned = staged.with_name(staged.stem + ".nettoye.pdf")
            try:
                audit[CLEANED] = removed_note(sanitize_pdf(staged, cleaned, name=name))
                cleaned.replace(staged)
            except PdfSafetyError as exc:
                shutil.rmtree(staged.parent, ignore_errors=True)
                return None, self._refused(action, str(exc), audit)
        progress.set("vérifié")
        return staged, None

    def _place_and_index(self, staged: Path, doc_id: str, meta, name: str, progress: Progress, action: str,
                         audit: dict, old_source: str = ""):
        """Move the checked file to its version folder and index it (under the ingestion lock)."""
        final = self._place(staged, doc_id, meta, action, audit, old_source)
        try:
            report, error = self._index(final, doc_id, meta, name, progress)
        except Exception as exc:  # the store or the models failed: nothing half-done is left visible
            report, error = None, f"« {name} » : indexation impossible ({type(exc).__name__} : {exc})."
        return final, report, error

    def add(self, user, upload: Path, name: str, *, title: str, doc_type: str, services: Sequence[str],
            progress: Progress | None = None) -> Outcome:
        """Index a new document (blocking: run it in a thread)."""
        progress = progress or Progress()
        started = time.monotonic()
        if isinstance(services, str):  # one service: "rh", not "r", "h"
            services = [services] if services else []
        services = list(dict.fromkeys(services or ()))
        audit = dict(user_id=user.id, user_name=user.name, title=title, doc_type=doc_type, services=services,
                     file=name, size=upload.stat().st_size if upload.exists() else None)
        if not can_upload(user):
            return self._refused("upload", "Seuls les gestionnaires de documents peuvent ajouter des documents.", audit)
        problem = self.check_file_name(name, audit["size"] or 0) or check_metadata(
            title, doc_type, services, upload_targets(user))
        if problem:
            return self._refused("upload", problem, audit)
        staged, refusal = self._stage_checked(upload, name, "upload", audit, progress)
        if refusal:
            return refusal
        doc_id = new_doc_id(title, services)
        meta = DocumentMeta(title=title.strip(), doc_type=doc_type, services=tuple(services),
                            date=dt.date.today().isoformat())
        with self._ingest_lock:
            final, report, error = self._place_and_index(staged, doc_id, meta, name, progress, "upload", audit)
            if error:
                shutil.rmtree(final.parent, ignore_errors=True)
                try:
                    final.parent.parent.rmdir()
                except OSError:
                    pass
            else:
                clear_pending(final.parent)
        if error:
            self._write("upload", "failed", error, audit, doc_id=doc_id)
            return Outcome(False, error, doc_id=doc_id, title=title)
        self._write("upload", "ok", f"{report.chunks_embedded} extraits indexés", audit, doc_id=doc_id)
        return Outcome(True, "", doc_id=doc_id, title=meta.title, services=meta.services,
                       chunks=report.chunks_embedded, seconds=time.monotonic() - started)

    def replace(self, user, doc_id: str, upload: Path, name: str, progress: Progress | None = None) -> Outcome:
        """Index a new version of an existing document, keeping its id and metadata (blocking)."""
        progress = progress or Progress()
        started = time.monotonic()
        payload = self.backend.document_payload(doc_id)
        size = upload.stat().st_size if upload.exists() else 0
        audit = dict(user_id=user.id, user_name=user.name, doc_id=doc_id, file=name, size=size)
        if payload is None or not can_manage(user, payload.get("services") or ()):
            return self._refused("replace", "Document introuvable, ou hors de vos services : remplacement refusé.",
                                 audit, services=(payload or {}).get("services") or ())
        meta = DocumentMeta.from_payload(payload)
        audit.update(title=meta.title, doc_type=meta.doc_type, services=meta.services)
        old_source = str(payload.get("source") or "")
        if old_source.startswith(("http://", "https://")):
            return self._refused("replace", "Ce document est importé d'un site public : il se met à jour par l'import, "
                                            "pas depuis le chat.", audit)
        problem = self.check_file_name(name, size)
        if problem:
            return self._refused("replace", problem, audit)
        staged, refusal = self._stage_checked(upload, name, "replace", audit, progress)
        if refusal:
            return refusal
        with self._ingest_lock:
            final, report, error = self._place_and_index(staged, doc_id, meta, name, progress, "replace", audit,
                                                         old_source)
            if error or (report is not None and report.unchanged):
                shutil.rmtree(final.parent, ignore_errors=True)
            else:
                if old_source:
                    self._archive(Path(old_source), "_archives")
                clear_pending(final.parent)
        if error:
            self._write("replace", "failed", error, audit)
            return Outcome(False, error + " La version précédente reste en place.", doc_id=doc_id, title=meta.title)
        if report.unchanged:
            self._write("replace", "unchanged", "fichier identique", audit)
            return Outcome(True, "", doc_id=doc_id, title=meta.title, services=meta.services, unchanged=True)
        self._write("replace", "ok", f"{report.chunks_embedded} extraits indexés", audit)
        return Outcome(True, "", doc_id=doc_id, title=meta.title, services=meta.services,
                       chunks=report.chunks_embedded, seconds=time.monotonic() - started)

    def withdraw(self, user, doc_id: str) -> Outcome:
        """Remove a document from the index (blocking); its uploaded file moves to ``uploads/_retires``."""
        payload = self.backend.document_payload(doc_id)
        audit = dict(user_id=user.id, user_name=user.name, doc_id=doc_id)
        if payload is None or not can_manage(user, payload.get("services") or ()):
            return self._refused("withdraw", "Document introuvable, ou hors de vos services : retrait refusé.",
                                 audit, services=(payload or {}).get("services") or ())
        title = payload.get("title") or doc_id
        services = tuple(payload.get("services") or ())
        with self._ingest_lock:
            self.backend.ingestor.remove(doc_id)
            source = str(payload.get("source") or "")
            if source and not source.startswith(("http://", "https://")):
                self._archive(Path(source), "_retires")
        self.backend.audit.write(action="withdraw", outcome="ok", title=title, doc_type=payload.get("doc_type", ""),
                                 services=services, file=Path(str(payload.get("source") or "")).name, **audit)
        return Outcome(True, "", doc_id=doc_id, title=title, services=services)
