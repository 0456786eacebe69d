"""A fiche → an already parsed ``Document``; the import of a whole snapshot into an ``Ingestor``."""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
import time
import zlib
from dataclasses import replace
from typing import Any, Callable, Iterator

from index.documents import ALL_AGENTS, Document, DocumentMeta
from ingest.service_public.reader import (
    AUDIENCES, DOC_PREFIX, URL_SEGMENTS, Fiche, FicheError, FicheSkipped, _root, iter_fiches, scan_fiches,
)
from ingest.service_public.render import FORMAT_VERSION, _assemble, _render, _strip_title, title_pattern


def fiche_url(fiche_id: str, audience: str) -> str:
    return f"https://www.service-public.fr/{URL_SEGMENTS.get(audience, audience)}/vosdroits/{fiche_id}"


def fiche_version(data: Any, audience: str, with_titles: bool) -> str:
    """The fingerprint of what a fiche's document is made of; the ``Ingestor`` turns it into the stored version."""
    digest = hashlib.sha256()
    digest.update(json.dumps(data, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode())
    digest.update(json.dumps([audience, with_titles, FORMAT_VERSION]).encode())
    return digest.hexdigest()[:32]


def fiche_to_document(fiche_id: str, audience: str, data: Any, *, with_titles: bool = True) -> Document:
    """One fiche as an already parsed ``Document`` (id ``SP-<ID>``, public, for every agent).

    Raises ``FicheSkipped`` (with its ``reason``) for a fiche without text of its own, and ``FicheError`` for
    data that is not a fiche. With ``with_titles=False`` the fiche's title appears nowhere in the text and the
    metadata title is « Fiche <ID> » (see the module docstring).
    """
    root = _root(data, fiche_id)
    rendered = _render(fiche_id, audience, root)
    if not rendered.has_body:
        raise FicheSkipped(
            fiche_id,
            f"fiche de navigation ({rendered.kind or 'type inconnu'}) sans texte propre : "
            "seulement des liens vers d'autres fiches",
        )
    items = rendered.items
    if not with_titles:
        items = [item for item in items if not (item[0] == "heading" and item[2] == 0)]
        pattern = title_pattern(rendered.title) if rendered.title else None
        if pattern is not None:
            items = _strip_title(items, pattern)
    parsed = _assemble(items)
    if not parsed.text.strip():
        raise FicheSkipped(fiche_id, "aucun texte une fois le titre retiré")
    url = fiche_url(fiche_id, audience)
    meta = DocumentMeta(
        title=(rendered.title or f"Fiche {fiche_id}") if with_titles else f"Fiche {fiche_id}",
        doc_type="fiche",
        services=(ALL_AGENTS,),
        confidentiality="public",
        date=rendered.date,
        status="en_vigueur",
        url=url,
    )
    return Document(
        doc_id=DOC_PREFIX + fiche_id,
        version=fiche_version(data, audience, with_titles),
        meta=meta,
        parsed=parsed,
        source=url,
    )


# --------------------------------------------------------------------------------------------------------------
# Import
# --------------------------------------------------------------------------------------------------------------


def import_service_public(
    path: str | os.PathLike,
    ingestor,
    *,
    with_titles: bool = True,
    limit: int | None = None,
    progress: Callable | None = None,
):
    """Import the fiches under ``path`` (tarball, folder or file) into ``ingestor``'s store.

    Navigation fiches and the copies of a fiche published under several audiences with the same text go to
    ``skipped`` (``{"path": "<ID>", "reason": ...}``); unreadable files to ``failed`` (``{"path": ..., "error":
    ...}``), without stopping the batch. A second run on the same data finds every fiche unchanged. ``limit`` caps
    the number of fiche files read. Returns the ``IngestReport`` of ``collectivia ingest``.

    Copies of one fiche are resolved the same way whatever the order of the files: the copy of the first audience
    in ``AUDIENCES`` order (particuliers, professionnels, associations) is ``SP-<ID>``; another copy is dropped
    when its text is the same, else indexed as ``SP-<ID>-<audience>``. For that, the member list is read once
    before the fiches (about a second for the whole archive) and the copies of a fiche wait for each other.
    """
    from ingest.pipeline import IngestReport, Progress  # here: the pipeline loads the file parsers

    started = time.perf_counter()
    skipped: list[dict[str, str]] = []
    failed: list[dict[str, str]] = []
    try:
        copies = scan_fiches(path)
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        report = IngestReport(failed=[{"path": str(path), "error": f"{path} : archive illisible ou introuvable ({exc})"}])
        report.seconds = time.perf_counter() - started
        return report
    total = sum(len(v) for v in copies.values())
    if limit is not None:
        total = min(total, limit)

    def on_error(error: FicheError, source: str) -> None:
        failed.append({"path": source, "error": str(error)})

    # Copies of a fiche published under several audiences, waiting for the others: id → [(audience, document)].
    waiting: dict[str, list[tuple[str, Document | None]]] = {}

    def resolve(fiche_id: str, arrived: list[tuple[str, Document | None]]) -> Iterator[Document]:
        order = {audience: rank for rank, audience in enumerate(AUDIENCES)}
        texts: dict[str, str] = {}  # text hash → doc id
        primary = True
        for audience, document in sorted(arrived, key=lambda x: order.get(x[0], len(order))):
            if document is None:  # skipped or failed: already reported
                continue
            text_hash = hashlib.sha256(document.parsed.text.encode()).hexdigest()
            if text_hash in texts:
                skipped.append({
                    "path": fiche_id,
                    "reason": f"copie identique publiée pour les {audience} : déjà importée comme {texts[text_hash]}",
                })
                continue
            if not primary:
                document = replace(document, doc_id=f"{document.doc_id}-{audience}")
            primary = False
            texts[text_hash] = document.doc_id
            yield document

    def converted(fiche: Fiche) -> Document | None:
        try:
            return fiche_to_document(fiche.fiche_id, fiche.audience, fiche.data, with_titles=with_titles)
        except FicheSkipped as exc:
            skipped.append({"path": fiche.fiche_id, "reason": exc.reason})
        except FicheError as exc:
            failed.append({"path": fiche.source, "error": f"{fiche.source} : {exc}"})
        except Exception as exc:  # unexpected shape of a fiche: that fiche only
            failed.append({"path": fiche.source,
                           "error": f"{fiche.source} : conversion impossible ({type(exc).__name__} : {exc})"})
        return None

    def documents() -> Iterator[Document]:
        read = 0
        fiches = iter_fiches(path, on_error=on_error)
        try:
            for fiche in fiches:
                if limit is not None and read >= limit:
                    break
                read += 1
                document = converted(fiche)
                expected = len(copies.get(fiche.fiche_id, ())) or 1
                if expected > 1:
                    arrived = waiting.setdefault(fiche.fiche_id, [])
                    arrived.append((fiche.audience, document))
                    if len(arrived) < expected:
                        continue
                    out = list(resolve(fiche.fiche_id, waiting.pop(fiche.fiche_id)))
                else:
                    out = [document] if document is not None else []
                yield from out  # the ingestor folds its settings into each fiche's version
        except FicheError as exc:  # the archive itself broke: report it, keep what was indexed
            failed.append({"path": str(path), "error": str(exc)})
        finally:
            fiches.close()
        for fiche_id in list(waiting):  # copies whose siblings were not read (limit, unreadable file)
            yield from resolve(fiche_id, waiting.pop(fiche_id))

    def on_progress(p) -> None:  # fiches skipped or failed are done too
        progress(replace(p, files_done=min(total, p.files_done + len(skipped) + len(failed))))

    report = ingestor.ingest_documents(documents(), progress=on_progress if progress else None, total=total)
    if progress is not None:
        progress(Progress(total, total, report.chunks_embedded, ""))
    report.skipped.extend(skipped)
    report.failed.extend(failed)
    report.seconds = time.perf_counter() - started
    return report
