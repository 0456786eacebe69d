"""Uploads interrupted by a crash: marked while they are indexed, set aside and audited at the next start.

An upload (or a replacement) writes a marker (``.en-cours.json``) into its version folder *before* the file is moved
there, and removes it once the outcome is known. A chat killed while indexing (``kill -9``, power cut, out of memory)
leaves the marker behind. At start-up, once the index is open, each marked folder is settled:

- the index already serves that very file (the kill came after indexing): the marker goes, the outcome is audited
  ``ok`` (and a replaced version is archived, as it would have been);
- otherwise nothing of it was published: the folder moves to ``uploads/_interrompus/`` (names starting with ``_``
  are never indexed, so a later ``collectivia ingest`` of ``uploads/`` cannot publish it) and the attempt is audited
  with the outcome ``interrupted`` (« interrompu »). The previous version of a replaced document stays in place.

A version folder without a marker that the index does not serve (left by a version without markers) is set aside
the same way. ``uploads/_staging`` (copies being checked) is emptied. A marker written by another host (several
replicas sharing a folder) or by a process still alive is left alone.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from index.documents import META_SUFFIX

logger = logging.getLogger(__name__)

MARKER = ".en-cours.json"
SET_ASIDE = "_interrompus"
INTERRUPTED = ("Dépôt interrompu : le chat s'est arrêté pendant l'indexation. Rien n'a été publié ; le fichier est "
               "mis de côté dans uploads/_interrompus/{folder}.")


@dataclass(frozen=True, slots=True)
class Settled:
    """What start-up did with one interrupted upload."""

    doc_id: str
    action: str
    outcome: str  # "interrupted" or "ok"
    folder: Path


def mark_pending(version_dir: Path, action: str, audit: dict, old_source: str = "") -> None:
    """Write the marker of an upload about to be indexed (before its file lands in ``version_dir``)."""
    version_dir.mkdir(parents=True, exist_ok=True)
    entry = {"action": action, "audit": audit, "old_source": old_source, "host": socket.gethostname(),
             "pid": os.getpid()}
    fd = os.open(version_dir / MARKER, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(entry, handle, ensure_ascii=False)


def clear_pending(version_dir: Path) -> None:
    try:
        (version_dir / MARKER).unlink()
    except FileNotFoundError:
        pass


def _alive_here(entry: dict) -> bool:
    """Whether the marker's process may still be working on it (another host, or a live process here)."""
    if entry.get("host") != socket.gethostname():
        return True
    pid = entry.get("pid")
    if pid == os.getpid():
        return True  # an upload of this very process, started while the index was loading
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _document_file(version_dir: Path) -> Path | None:
    files = [p for p in version_dir.iterdir() if p.is_file() and not p.name.startswith(".")
             and not p.name.endswith(META_SUFFIX)]
    return files[0] if files else None


def move_version(root: Path, version_dir: Path, kind: str) -> Path:
    """Move a version folder (``<root>/<document>/<version>``) to ``<root>/<kind>/<document>/<version>`` (``kind``:
    ``_archives``, ``_retires``, ``_interrompus``), removing the document's folder once empty; returns the target."""
    target = Path(root) / kind / version_dir.parent.name / version_dir.name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(version_dir), target)
    try:
        version_dir.parent.rmdir()
    except OSError:
        pass
    return target


def settle_interrupted(root: Path, audit_log, live_source: Callable[[str], str | None],
                       archive: Callable[[Path], None]) -> list[Settled]:
    """Settle the uploads a crash left half-done under ``root`` (see the module's docstring); audited one by one.

    ``live_source(doc_id)`` is the source path the index serves for a document (None: not indexed); ``archive(path)``
    moves a replaced version to ``_archives``."""
    root = Path(root)
    if not root.is_dir():
        return []
    shutil.rmtree(root / "_staging", ignore_errors=True)
    settled: list[Settled] = []
    for doc_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("_")):
        for version_dir in sorted(p for p in doc_dir.iterdir() if p.is_dir()):
            marker = version_dir / MARKER
            entry: dict = {}
            if marker.exists():
                try:
                    entry = json.loads(marker.read_text(encoding="utf-8"))
                except ValueError:
                    entry = {}
                if entry and _alive_here(entry):
                    continue
            audit = dict(entry.get("audit") or {})
            document = _document_file(version_dir)
            doc_id = audit.get("doc_id") or _sidecar_id(document) or doc_dir.name
            source = live_source(doc_id)
            if document is not None and source and Path(source).resolve() == document.resolve():
                if marker.exists():  # indexed before the kill: finish what the upload would have done
                    clear_pending(version_dir)
                    if entry.get("old_source"):
                        archive(Path(entry["old_source"]))
                    audit_log.write(action=entry.get("action", "upload"), outcome="ok",
                                    detail="indexé avant l'arrêt du chat ; confirmé au redémarrage",
                                    **_audit_fields(audit, doc_id))
                    settled.append(Settled(doc_id, entry.get("action", "upload"), "ok", version_dir))
                continue
            clear_pending(version_dir)
            target = move_version(root, version_dir, SET_ASIDE)
            action = entry.get("action", "upload")
            fields = _audit_fields(audit, doc_id)
            if document is not None and not fields.get("file"):
                fields["file"] = document.name
            audit_log.write(action=action, outcome="interrupted",
                            detail=INTERRUPTED.format(folder=f"{target.parent.name}/{target.name}"), **fields)
            logger.warning("dépôt interrompu de %s mis de côté dans %s", doc_id, target)
            settled.append(Settled(doc_id, action, "interrupted", target))
    return settled


def _sidecar_id(document: Path | None) -> str:
    if document is None:
        return ""
    sidecar = document.with_name(document.name + META_SUFFIX)
    try:
        import yaml

        return str((yaml.safe_load(sidecar.read_text(encoding="utf-8")) or {}).get("id") or "")
    except (OSError, ValueError, AttributeError):
        return ""


_AUDIT_KEYS = ("user_id", "user_name", "title", "doc_type", "services", "file", "size", "sha256")


def _audit_fields(audit: dict, doc_id: str) -> dict:
    fields = {k: audit[k] for k in _AUDIT_KEYS if k in audit and audit[k] is not None}
    fields.setdefault("user_id", "")
    fields["doc_id"] = doc_id
    return fields
