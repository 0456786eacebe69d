"""A fiche's xml-js nodes → elements and text (see the package docstring for what becomes text)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from index.documents import Element, ParsedDocument
from ingest.service_public.reader import (
    _IGNORED, _attr, _child, _clean, _elements, _inline, _kids, _title,
)

FORMAT_VERSION = 1
"""Bump when the text produced from a fiche changes: every fiche is then re-indexed."""

_BOXES = {"ANoter": "À noter", "ASavoir": "À savoir", "Attention": "Attention", "Rappel": "Rappel"}
_SECTIONED = ("Situation", "Chapitre", "SousChapitre", "Cas")
_SERVICE_KINDS = ("ServiceEnLigne", "ServiceEnLigneAlternatif")


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
