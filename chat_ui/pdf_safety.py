"""PDFs without anything that runs: JavaScript, automatic actions, launch and form-submission actions, embedded
files (pikepdf).

A PDF may carry JavaScript (``/OpenAction``, ``/AA`` additional actions, the ``/JavaScript`` name tree, ``/JS``
actions of links and form fields), actions that open a program or a file (``/Launch``, ``/GoToE``), that send
data (``/SubmitForm``, ``/ImportData``), rich media, XFA forms, and embedded files. The browser's viewer runs some
of it when an agent opens the document. ``sanitize_pdf`` writes a copy without any of them — text, pages, images,
fonts and plain links (``/URI``, ``/GoTo``) are kept — and ``files.py`` serves only such copies.

Uploads call ``sanitize_pdf`` on the staged file before it is placed and indexed (``uploads.py``), so that the
kept original is already clean; a PDF that cannot be cleaned is refused, and what was removed is audited.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

ACTIVE_ACTIONS = frozenset({"/JavaScript", "/Launch", "/SubmitForm", "/ImportData", "/ResetForm", "/GoToE",
                            "/RichMediaExecute", "/Rendition", "/Sound", "/Movie", "/Hide", "/SetOCGState"})
ALWAYS_REMOVED = ("/OpenAction", "/AA", "/JS", "/JavaScript", "/EmbeddedFiles", "/XFA", "/RichMedia",
                  "/EmbeddedFile")


class PdfSafetyError(ValueError):
    """The PDF cannot be read, hence cannot be cleaned; the message says so in French."""


def _first_visit(obj, seen: set) -> bool:
    """False for an indirect object already cleaned (objects refer to each other, in cycles too)."""
    if obj.is_indirect:
        if obj.objgen in seen:
            return False
        seen.add(obj.objgen)
    return True


def _clean(obj, seen: set, removed: list[str]) -> None:
    import pikepdf

    if not isinstance(obj, (pikepdf.Stream, pikepdf.Dictionary, pikepdf.Array)) or not _first_visit(obj, seen):
        return
    if isinstance(obj, pikepdf.Stream):
        _clean_dict(obj.stream_dict, seen, removed)
    elif isinstance(obj, pikepdf.Dictionary):
        _clean_dict(obj, seen, removed)
    else:
        for item in obj:
            _clean(item, seen, removed)


def _is_active(value) -> bool:
    import pikepdf

    return isinstance(value, pikepdf.Dictionary) and str(value.get("/S", "")) in ACTIVE_ACTIONS


def _clean_dict(obj, seen: set, removed: list[str]) -> None:
    import pikepdf

    for key in list(obj.keys()):
        if key in ALWAYS_REMOVED:
            del obj[key]
            removed.append(key)
        elif key in ("/A", "/Next") and (_is_active(obj[key]) or isinstance(obj[key], pikepdf.Array)
                                         and any(_is_active(a) for a in obj[key])):
            del obj[key]
            removed.append(f"{key} {obj.get('/S', '')}".strip())
    if str(obj.get("/Subtype", "")) in ("/FileAttachment", "/RichMedia", "/Screen", "/Movie", "/Sound"):
        obj["/Subtype"] = pikepdf.Name("/Text")  # a harmless note in place of the attachment or media
        for key in ("/FS", "/RichMediaContent", "/RichMediaSettings"):
            if key in obj:
                del obj[key]
        removed.append("annotation")
    if "/S" in obj and str(obj.get("/S")) in ACTIVE_ACTIONS:
        obj["/S"] = pikepdf.Name("/GoTo")  # an action reachable another way: made inert
        obj["/D"] = pikepdf.Array([])
        removed.append("action")
    for key in list(obj.keys()):
        if key not in ("/Parent", "/P"):
            _clean(obj[key], seen, removed)


def sanitize_pdf(source: Path, target: Path, name: str | None = None) -> list[str]:
    """Write to ``target`` a copy of the PDF ``source`` without JavaScript, automatic or active actions, embedded
    files or XFA; the list says what was removed (empty: the copy is the same document). The same file gives the
    same bytes (a re-uploaded PDF is recognised as unchanged). Raises ``PdfSafetyError``, naming the file ``name``
    (by default the name of ``source``)."""
    import pikepdf

    removed: list[str] = []
    try:
        with pikepdf.open(source) as pdf:
            seen: set = set()
            _clean(pdf.trailer, seen, removed)
            for obj in pdf.objects:  # objects not reachable from the trailer too
                _clean(obj, seen, removed)
            target.parent.mkdir(parents=True, exist_ok=True)
            pdf.save(target, deterministic_id=True)
    except pikepdf.PdfError as exc:
        shown = name or Path(source).name
        raise PdfSafetyError(f"« {shown} » : PDF illisible ou corrompu, impossible de le nettoyer "
                             f"({str(exc).replace(str(source), shown)}).") from exc
    return removed


def removed_note(removed: list[str]) -> str:
    """What ``sanitize_pdf`` removed, in French for the audit log ("" when nothing was)."""
    if not removed:
        return ""
    counts: dict[str, int] = {}
    for item in removed:
        counts[item] = counts.get(item, 0) + 1
    shown = ", ".join(f"{item} ×{n}" if n > 1 else item for item, n in counts.items())
    return f"PDF nettoyé avant indexation, contenu actif retiré : {shown}"


def safe_copy(source: Path, cache: Path) -> Path:
    """A cleaned copy of ``source`` in ``cache`` (made once per version of the file). Raises ``PdfSafetyError``."""
    st = os.stat(source)
    key = hashlib.sha256(f"{Path(source).resolve()}|{st.st_mtime_ns}|{st.st_size}".encode()).hexdigest()[:32]
    target = cache / f"{key}.pdf"
    if target.is_file():
        return target
    cache.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(prefix=".", suffix=".pdf", dir=cache)
    os.close(fd)
    try:
        sanitize_pdf(Path(source), Path(tmp))
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target
