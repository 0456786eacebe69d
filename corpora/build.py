#!/usr/bin/env python3
"""Render the readable sources of the sample commune into the corpus Collectivia ingests.

Every document is one Markdown file with a YAML front matter under ``corpora/_sources/<collection>/``
(see ``corpora/_sources/FORMAT.md``). This script renders each one into the format named by its
``format`` key (pdf | scan | docx | odt | html | md | txt) at ``<out>/<output>.<ext>`` and writes the
sidecar ``<out>/<output>.<ext>.meta.yaml`` (the front matter less ``format`` and ``output``).

Usage::

    python corpora/build.py [--sources corpora/_sources] [--out corpora/commune] [--only ID ...] [--check]

* Files and folders whose names start with ``_`` or ``.``, files whose name is upper-case (``BIBLE.md``,
  ``FORMAT.md``) and files whose front matter has no ``id`` are not documents and are skipped.
* The output is deterministic: rebuilding the same sources gives the same bytes (fixed PDF dates and ids,
  fixed zip timestamps), so the rendered corpus can be committed and checked.
* A build removes the orphan outputs (files under ``--out`` that no source produces); it never touches a
  file outside ``--out``. With ``--only`` nothing is removed.
* ``--check`` renders into a temporary folder and exits 1 if a committed output is missing, differs from a
  fresh rendering, or is orphaned.

The renderers carry the body text faithfully (same words and characters as the Markdown body: no smart
quotes, no hyphenation; lines are wrapped only at spaces), because the evaluation checks that passages
quoted from the sources appear in the parsed documents.
"""

from __future__ import annotations

import argparse
import datetime as dt
import html
import io
import os
import random
import re
import sys
import tempfile
import zipfile
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SOURCES = REPO_ROOT / "corpora" / "_sources"
DEFAULT_OUT = REPO_ROOT / "corpora" / "commune"

COMMUNE = "Commune de Val-d'Arnon"
GENERATOR = "Collectivia corpora/build.py"

#: format -> extension of the rendered file
FORMATS: dict[str, str] = {
    "pdf": ".pdf",
    "scan": ".pdf",
    "docx": ".docx",
    "odt": ".odt",
    "html": ".html",
    "md": ".md",
    "txt": ".txt",
}
META_SUFFIX = ".meta.yaml"
#: extensions a build may delete when it finds them orphaned under --out
_REMOVABLE_SUFFIXES = tuple(sorted(set(FORMATS.values()))) + (META_SUFFIX,)

#: order of the sidecar keys (the others follow, sorted)
KEY_ORDER = (
    "id",
    "title",
    "doc_type",
    "services",
    "confidentiality",
    "date",
    "number",
    "status",
    "url",
    "supersedes",
)
_NOT_IN_SIDECAR = ("format", "output")
#: what index/documents.py accepts in a sidecar (it refuses any other key), and the documented values
_ALLOWED_KEYS = frozenset(KEY_ORDER) | frozenset(_NOT_IN_SIDECAR)
_ENUMS = {
    "doc_type": ("deliberation", "procedure", "charte", "fiche", "autre"),
    "confidentiality": ("public", "interne", "confidentiel"),
    "status": ("en_vigueur", "abroge"),
}
_SERVICE_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_DOC_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,199}$")

#: fallback date for the document metadata when the front matter has none
_DEFAULT_DATE = dt.date(2024, 1, 1)

FONT_DIRS = (
    Path("/usr/share/fonts/truetype/dejavu"),
    Path("/usr/share/fonts/dejavu"),
    Path("/usr/local/share/fonts/dejavu"),
)


class SourceError(Exception):
    """A source that cannot be read or rendered."""


# --------------------------------------------------------------------------------------------------
# Sources
# --------------------------------------------------------------------------------------------------

_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?)\n(?:---|\.\.\.)[ \t]*(?:\n|\Z)", re.DOTALL)


@dataclass
class Block:
    """One block of the body: a heading (h1..h3), a paragraph (p) or a list (ul / ol)."""

    kind: str
    text: str = ""
    #: list items as (marker, text): marker is "-" for bullets, the number ("1", "2"...) for steps
    items: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class Source:
    path: Path
    meta: dict[str, Any]
    body: str

    @property
    def id(self) -> str:
        return str(self.meta["id"])

    @property
    def format(self) -> str:
        return str(self.meta["format"])

    @property
    def ext(self) -> str:
        return FORMATS[self.format]

    @property
    def relpath(self) -> str:
        """Path of the rendered file under --out (posix)."""
        output = str(self.meta["output"]).strip().strip("/")
        if output.lower().endswith(self.ext):
            output = output[: -len(self.ext)]
        return output + self.ext

    @property
    def title(self) -> str:
        return str(self.meta.get("title") or self.heading_title or self.id)

    @property
    def heading_title(self) -> str | None:
        for block in self.blocks:
            if block.kind == "h1":
                return block.text
        return None

    @property
    def date(self) -> dt.date:
        value = self.meta.get("date")
        if isinstance(value, dt.datetime):
            return value.date()
        if isinstance(value, dt.date):
            return value
        if isinstance(value, str):
            try:
                return dt.date.fromisoformat(value.strip())
            except ValueError:
                pass
        return _DEFAULT_DATE

    @property
    def timestamp(self) -> dt.datetime:
        """Fixed, deterministic timestamp used for the document metadata (noon of the document date)."""
        return dt.datetime.combine(self.date, dt.time(12, 0, 0))

    @property
    def blocks(self) -> list[Block]:
        cached = getattr(self, "_blocks", None)
        if cached is None:
            cached = parse_body(self.body)
            # the title heading is rendered in every format, even when the body does not repeat it
            if not any(b.kind == "h1" for b in cached):
                cached.insert(0, Block("h1", str(self.meta.get("title") or self.id)))
            self._blocks = cached
        return cached

    @property
    def running_header(self) -> str:
        """The line printed at the top of every page. It names the document as well as the commune: a bare
        "Commune de Val-d'Arnon" would equal a line of many bodies, and the ingestion drops lines repeated
        on several pages (running headers), which would then drop the body's line too."""
        if self.meta.get("doc_type") == "deliberation" and self.meta.get("number"):
            return f"{COMMUNE} – Délibération n° {self.meta['number']}"
        return f"{COMMUNE} – Réf. {self.id}"

    def sidecar(self) -> dict[str, Any]:
        meta = {k: v for k, v in self.meta.items() if k not in _NOT_IN_SIDECAR}
        ordered = {k: meta[k] for k in KEY_ORDER if k in meta}
        ordered.update({k: meta[k] for k in sorted(meta, key=str) if k not in ordered})
        return _iso_dates(ordered)


def _iso_dates(value: Any) -> Any:
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _iso_dates(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_iso_dates(v) for v in value]
    return value


def split_front_matter(text: str) -> tuple[dict[str, Any] | None, str]:
    """Return (front matter, body); the front matter is None when the file has none."""
    text = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    match = _FRONT_MATTER.match(text)
    if not match:
        return None, text
    meta = yaml.safe_load(match.group(1))
    if meta is None:
        meta = {}
    if not isinstance(meta, dict):
        raise SourceError("the front matter is not a YAML mapping")
    return meta, text[match.end():]


def _is_candidate(path: Path, root: Path) -> bool:
    rel = path.relative_to(root)
    if any(part.startswith(("_", ".")) for part in rel.parts):
        return False
    stem = path.stem
    if stem.isupper():  # BIBLE.md, FORMAT.md, README.md ...
        return False
    return path.suffix.lower() == ".md"


def discover(sources_dir: Path) -> tuple[list[Source], list[str]]:
    """Read every document under sources_dir, sorted by path. Returns (sources, errors)."""
    sources: list[Source] = []
    errors: list[str] = []
    if not sources_dir.is_dir():
        return sources, [f"{sources_dir}: not a directory"]
    paths = sorted(
        (p for p in sources_dir.rglob("*.md") if p.is_file() and _is_candidate(p, sources_dir)),
        key=lambda p: p.relative_to(sources_dir).as_posix(),
    )
    for path in paths:
        label = path.relative_to(sources_dir).as_posix()
        try:
            meta, body = split_front_matter(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, yaml.YAMLError, SourceError) as exc:
            errors.append(f"{label}: cannot read the front matter: {exc}")
            continue
        if not meta or meta.get("id") in (None, ""):
            continue  # not a document (notes, bible...)
        problems = _validate(meta)
        if problems:
            errors.append(f"{label}: " + "; ".join(problems))
            continue
        sources.append(Source(path=path, meta=meta, body=body))

    # duplicates
    by_id: dict[str, Source] = {}
    by_out: dict[str, Source] = {}
    unique: list[Source] = []
    for src in sources:
        label = src.path.relative_to(sources_dir).as_posix()
        if src.id in by_id:
            errors.append(f"{label}: duplicate id {src.id!r} (also in {by_id[src.id].path.name})")
            continue
        if src.relpath in by_out:
            errors.append(f"{label}: output {src.relpath!r} also produced by {by_out[src.relpath].id}")
            continue
        by_id[src.id] = src
        by_out[src.relpath] = src
        unique.append(src)
    return unique, errors


def _validate(meta: dict[str, Any]) -> list[str]:
    problems = []
    for key in ("id", "title", "format", "output"):
        if meta.get(key) in (None, ""):
            problems.append(f"missing {key!r}")
    unknown = sorted(str(k) for k in meta if k not in _ALLOWED_KEYS)
    if unknown:
        problems.append(f"unknown key(s) {', '.join(unknown)} (the ingestion refuses them; allowed: "
                        f"{', '.join(KEY_ORDER + _NOT_IN_SIDECAR)})")
    if meta.get("id") not in (None, "") and not _DOC_ID.match(str(meta["id"])):
        problems.append(f"invalid id {meta['id']!r} (letters, digits, . _ / -)")
    for key, allowed in _ENUMS.items():
        if key in meta and meta[key] not in allowed:
            problems.append(f"{key} {meta[key]!r} is not one of {', '.join(allowed)}")
    if "services" not in meta:
        problems.append("missing 'services' (the ingestion refuses a document without services: use [tous] "
                        "for every agent)")
    else:
        services = meta["services"]
        services = [services] if isinstance(services, str) else services
        if not isinstance(services, list) or not services:
            problems.append("services must be a non-empty list of service ids (or [tous])")
        else:
            bad = [str(x) for x in services if not isinstance(x, str) or not _SERVICE_ID.match(x)]
            if bad:
                problems.append(f"invalid service id(s) {', '.join(bad)} (lower-case ASCII slugs)")
            elif "tous" in services and len(services) > 1:
                problems.append("services: 'tous' cannot be combined with other services")
    for key in ("supersedes",):
        if key in meta and not (isinstance(meta[key], list) and all(isinstance(x, str) for x in meta[key])):
            problems.append(f"{key} must be a list of document ids")
    fmt = meta.get("format")
    if fmt is not None and fmt not in FORMATS:
        problems.append(f"unknown format {fmt!r} (expected one of {', '.join(FORMATS)})")
    output = meta.get("output")
    if output not in (None, ""):
        out = str(output).strip()
        parts = out.replace("\\", "/").split("/")
        if out.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", out) or ".." in parts or "" in parts[:-1]:
            problems.append(f"output {out!r} must be a relative path under the output folder")
        elif any(p.startswith((".", "_")) for p in parts):
            problems.append(f"output {out!r}: names starting with . or _ are never ingested")
    return problems


_HEADING = re.compile(r"^(#{1,6})[ \t]+(.*?)[ \t]*#*[ \t]*$")
_BULLET = re.compile(r"^[ \t]*[-*+][ \t]+(.*)$")
_NUMBERED = re.compile(r"^[ \t]*(\d+)[.)][ \t]+(.*)$")


def parse_body(body: str) -> list[Block]:
    """Parse the restricted Markdown of FORMAT.md into blocks.

    Lines of one paragraph (or of one list item) are joined with a single space; consecutive list items
    of the same kind form one list, even when blank lines separate them.
    """
    blocks: list[Block] = []
    para: list[str] = []
    current_list: Block | None = None
    in_fence = False
    prev_blank = True

    def flush_para() -> None:
        if para:
            blocks.append(Block("p", " ".join(para)))
            para.clear()

    for raw in body.split("\n"):
        line = raw.rstrip()
        if line.lstrip().startswith("```"):
            in_fence = not in_fence  # not expected in sources: keep the fenced lines as plain text
            continue
        if not line.strip():
            flush_para()
            prev_blank = True
            continue
        heading = None if (in_fence or raw[:1] in (" ", "\t")) else _HEADING.match(line)
        bullet = None if in_fence else _BULLET.match(line)
        numbered = None if in_fence else _NUMBERED.match(line)
        if heading and heading.group(2).strip():
            flush_para()
            current_list = None
            level = min(len(heading.group(1)), 3)
            blocks.append(Block(f"h{level}", heading.group(2).strip()))
        elif bullet or numbered:
            flush_para()
            if bullet:
                kind, marker, text = "ul", "-", bullet.group(1)
            else:
                kind, marker, text = "ol", numbered.group(1), numbered.group(2)
            if current_list is None or current_list.kind != kind or blocks[-1] is not current_list:
                current_list = Block(kind)
                blocks.append(current_list)
            current_list.items.append((marker, text.strip()))
        elif (current_list is not None and blocks[-1] is current_list and not para
              and (not prev_blank or raw[:1] in (" ", "\t"))):
            # continuation line of the last list item (indented, or right below it)
            marker, text = current_list.items[-1]
            current_list.items[-1] = (marker, f"{text} {line.strip()}")
        else:
            if not para:
                current_list = None
            para.append(line.strip())
        prev_blank = False
    flush_para()
    return blocks


# --------------------------------------------------------------------------------------------------
# Fonts
# --------------------------------------------------------------------------------------------------


def _font_file(name: str) -> Path:
    for folder in FONT_DIRS:
        candidate = folder / name
        if candidate.is_file():
            return candidate
    try:  # matplotlib bundles DejaVu Sans
        import matplotlib

        candidate = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / name
        if candidate.is_file():
            return candidate
    except Exception:  # pragma: no cover - matplotlib missing
        pass
    raise SourceError(f"font {name} not found (install fonts-dejavu-core)")


_RL_FONTS_REGISTERED = False


def _register_reportlab_fonts() -> None:
    global _RL_FONTS_REGISTERED
    if _RL_FONTS_REGISTERED:
        return
    from reportlab.lib.fonts import addMapping
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont

    pdfmetrics.registerFont(TTFont("DejaVuSans", str(_font_file("DejaVuSans.ttf"))))
    pdfmetrics.registerFont(TTFont("DejaVuSans-Bold", str(_font_file("DejaVuSans-Bold.ttf"))))
    addMapping("DejaVuSans", 0, 0, "DejaVuSans")
    addMapping("DejaVuSans", 1, 0, "DejaVuSans-Bold")
    addMapping("DejaVuSans", 0, 1, "DejaVuSans")
    addMapping("DejaVuSans", 1, 1, "DejaVuSans-Bold")
    _RL_FONTS_REGISTERED = True


# --------------------------------------------------------------------------------------------------
# Renderers: each returns the bytes of the rendered file
# --------------------------------------------------------------------------------------------------


def render_pdf(src: Source) -> bytes:
    from reportlab.lib.enums import TA_LEFT
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
    from reportlab.lib.units import cm
    from reportlab.pdfgen import canvas as rl_canvas
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer

    _register_reportlab_fonts()
    base = getSampleStyleSheet()
    common = dict(fontName="DejaVuSans", alignment=TA_LEFT, splitLongWords=0, hyphenationLang="",
                  embeddedHyphenation=0, uriWasteReduce=0)
    styles = {
        "h1": ParagraphStyle("DocTitle", parent=base["Title"], **{**common, "fontName": "DejaVuSans-Bold"},
                             fontSize=16, leading=21, spaceBefore=0, spaceAfter=14, keepWithNext=1),
        "h2": ParagraphStyle("Heading2", parent=base["Heading2"], **{**common, "fontName": "DejaVuSans-Bold"},
                             fontSize=13, leading=17, spaceBefore=12, spaceAfter=6, keepWithNext=1),
        "h3": ParagraphStyle("Heading3", parent=base["Heading3"], **{**common, "fontName": "DejaVuSans-Bold"},
                             fontSize=11.5, leading=15, spaceBefore=9, spaceAfter=4, keepWithNext=1),
        "p": ParagraphStyle("BodyText", parent=base["BodyText"], **common, fontSize=10.5, leading=14.5,
                            spaceBefore=0, spaceAfter=7),
    }
    # List labels are written inline ("• text", "2. text") and the wrapped lines of an item start under its
    # label (no hanging indent): pdfminer then keeps each item, label included, in one text box; with a
    # hanging indent it splits the first line from the following ones.
    styles["ul"] = ParagraphStyle("Bullet", parent=styles["p"], leftIndent=12, spaceAfter=3)
    styles["ol"] = ParagraphStyle("Numbered", parent=styles["p"], leftIndent=12, spaceAfter=3)

    story: list[Any] = []
    for block in src.blocks:
        if block.kind in ("ul", "ol"):
            for marker, text in block.items:
                label = "\u2022" if block.kind == "ul" else f"{marker}."
                story.append(Paragraph(f"{label} {_rl_escape(text)}", styles[block.kind]))
            story.append(Spacer(1, 4))
        else:
            story.append(Paragraph(_rl_escape(block.text), styles[block.kind]))

    header = src.running_header

    class NumberedCanvas(rl_canvas.Canvas):
        """Defers the pages so that the footer can say "Page n / N"."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._pages: list[dict[str, Any]] = []

        def showPage(self) -> None:  # noqa: N802 - reportlab API
            self._pages.append(dict(self.__dict__))
            self._startPage()

        def save(self) -> None:
            total = len(self._pages)
            for state in self._pages:
                self.__dict__.update(state)
                self._decorate(total)
                super().showPage()
            super().save()

        def _decorate(self, total: int) -> None:
            width, height = A4
            self.saveState()
            self.setFont("DejaVuSans", 8.5)
            self.setFillGray(0.3)
            self.drawString(2.2 * cm, height - 1.5 * cm, header)
            self.setStrokeGray(0.6)
            self.setLineWidth(0.5)
            self.line(2.2 * cm, height - 1.65 * cm, width - 2.2 * cm, height - 1.65 * cm)
            self.drawCentredString(width / 2, 1.2 * cm, f"Page {self._pageNumber} / {total}")
            self.restoreState()

    buf = io.BytesIO()
    template = SimpleDocTemplate(
        buf,
        pagesize=A4,
        leftMargin=2.2 * cm,
        rightMargin=2.2 * cm,
        topMargin=2.4 * cm,
        bottomMargin=2.2 * cm,
        title=src.title,
        author=COMMUNE,
        subject=src.id,
        creator=GENERATOR,
        producer=GENERATOR,
        lang="fr-FR",
        invariant=1,
    )
    # invariant=1 fixes the ids; SOURCE_DATE_EPOCH makes reportlab stamp the document date (instead of
    # 2000-01-01, or of whatever the caller's environment says)
    saved = os.environ.get("SOURCE_DATE_EPOCH")
    os.environ["SOURCE_DATE_EPOCH"] = str(int(src.timestamp.replace(tzinfo=dt.timezone.utc).timestamp()))
    try:
        template.build(story, canvasmaker=NumberedCanvas)
    finally:
        if saved is None:
            del os.environ["SOURCE_DATE_EPOCH"]
        else:
            os.environ["SOURCE_DATE_EPOCH"] = saved
    return buf.getvalue()


def _rl_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# -- scan -------------------------------------------------------------------------------------------

SCAN_DPI = 150
SCAN_BODY_PT = 12.0  # body text size; headings are larger
# "realism" kept mild so that tesseract reads the pages back: faint dust, a slight skew, a soft focus
SCAN_SPECKS = 200
SCAN_SPECK_GRAY = (170, 225)
SCAN_MAX_SKEW = 0.35  # degrees
SCAN_BLUR = 0.4
_SCAN_SIZE = (1240, 1754)  # A4 at 150 dpi
_SCAN_MARGIN_X = 150
_SCAN_TOP = 165
_SCAN_BOTTOM = 170


def _scan_fonts() -> dict[str, Any]:
    from PIL import ImageFont

    regular = str(_font_file("DejaVuSans.ttf"))
    bold = str(_font_file("DejaVuSans-Bold.ttf"))
    px = SCAN_DPI / 72.0
    return {
        "h1": ImageFont.truetype(bold, round((SCAN_BODY_PT + 4) * px)),
        "h2": ImageFont.truetype(bold, round((SCAN_BODY_PT + 1.5) * px)),
        "h3": ImageFont.truetype(bold, round((SCAN_BODY_PT + 0.5) * px)),
        "p": ImageFont.truetype(regular, round(SCAN_BODY_PT * px)),
        "small": ImageFont.truetype(regular, round(9 * px)),
    }


def _wrap(text: str, font: Any, width: float) -> list[str]:
    """Wrap text at spaces only (a word wider than the line stays whole)."""
    # French typography: never start a line with ; : ! ? » nor end one with «
    units: list[str] = []
    for word in text.split(" "):
        if units and (word in (";", ":", "!", "?", "»") or units[-1] == "«"):
            units[-1] = f"{units[-1]} {word}"
        else:
            units.append(word)
    lines: list[str] = []
    current = ""
    for word in units:
        candidate = word if not current else f"{current} {word}"
        if current and font.getlength(candidate) > width:
            lines.append(current)
            current = word
        else:
            current = candidate
    if current or not lines:
        lines.append(current)
    return lines


def render_scan(src: Source) -> bytes:
    from PIL import Image, ImageDraw, ImageFilter

    fonts = _scan_fonts()
    width, height = _SCAN_SIZE
    text_width = width - 2 * _SCAN_MARGIN_X
    bottom = height - _SCAN_BOTTOM

    # layout: a list of pages, each a list of (x, y, text, font key)
    pages: list[list[tuple[float, int, str, str]]] = [[]]
    y = _SCAN_TOP

    def line_height(key: str) -> int:
        return round(fonts[key].size * 1.45)

    p_height = line_height("p")

    def new_page() -> None:
        nonlocal y
        pages.append([])
        y = _SCAN_TOP

    def place(x: int, lines: list[str], key: str, space_before: int, label: tuple[int, str] | None = None,
              keep_lines: int = 1) -> None:
        """Place wrapped lines at x; keep_lines lines of p height must fit below the first one."""
        nonlocal y
        if pages[-1]:
            y += space_before
            if y + line_height(key) + (keep_lines - 1) * p_height > bottom:
                new_page()
        for i, text in enumerate(lines):
            if y + line_height(key) > bottom:
                new_page()
            if i == 0 and label is not None:
                pages[-1].append((label[0], y, label[1], key))
            pages[-1].append((x, y, text, key))
            y += line_height(key)

    for block in src.blocks:
        if block.kind in ("h1", "h2", "h3"):
            space = {"h1": 0, "h2": p_height, "h3": round(p_height * 0.7)}[block.kind]
            lines = _wrap(block.text, fonts[block.kind], text_width)
            place(_SCAN_MARGIN_X, lines, block.kind, space, keep_lines=len(lines) + 2)
            if block.kind == "h1":
                y += round(p_height * 0.5)
        elif block.kind == "p":
            place(_SCAN_MARGIN_X, _wrap(block.text, fonts["p"], text_width), "p", round(p_height * 0.45))
        else:
            indent = 44 if block.kind == "ul" else 52
            for i, (marker, text) in enumerate(block.items):
                label = "\u2022" if block.kind == "ul" else f"{marker}."
                place(_SCAN_MARGIN_X + indent, _wrap(text, fonts["p"], text_width - indent), "p",
                      round(p_height * (0.45 if i == 0 else 0.15)), label=(_SCAN_MARGIN_X + 8, label))

    total = len(pages)
    rng = random.Random(zlib.crc32(src.id.encode("utf-8")))
    images = []
    for number, items in enumerate(pages, start=1):
        paper = 250 - rng.randint(0, 3)
        image = Image.new("L", _SCAN_SIZE, paper)
        draw = ImageDraw.Draw(image)
        draw.text((_SCAN_MARGIN_X, 95), src.running_header, font=fonts["small"], fill=60)
        draw.line((_SCAN_MARGIN_X, 130, width - _SCAN_MARGIN_X, 130), fill=110, width=2)
        for x, ly, text, key in items:
            draw.text((x, ly), text, font=fonts[key], fill=18)
        footer = f"{number} / {total}"
        draw.text(((width - fonts["small"].getlength(footer)) / 2, height - 110), footer, font=fonts["small"], fill=60)
        # a little realism: dust specks, a slight skew and a soft focus
        for _ in range(SCAN_SPECKS):
            sx, sy = rng.randrange(width), rng.randrange(height)
            draw.point((sx, sy), fill=rng.randint(*SCAN_SPECK_GRAY))
        angle = rng.uniform(-SCAN_MAX_SKEW, SCAN_MAX_SKEW)
        image = image.rotate(angle, resample=Image.Resampling.BICUBIC, fillcolor=paper)
        image = image.filter(ImageFilter.GaussianBlur(SCAN_BLUR))
        images.append(image)

    stamp = src.timestamp.timetuple()
    buf = io.BytesIO()
    images[0].save(
        buf,
        "PDF",
        save_all=True,
        append_images=images[1:],
        resolution=float(SCAN_DPI),
        quality=82,
        title=src.title,
        author=COMMUNE,
        subject=src.id,
        creator="Numérisation — copieur mairie",
        producer=GENERATOR,
        creationDate=stamp,
        modDate=stamp,
    )
    return buf.getvalue()


# -- docx -------------------------------------------------------------------------------------------


def render_docx(src: Source) -> bytes:
    from docx import Document
    from docx.oxml import OxmlElement
    from docx.oxml.ns import qn

    document = Document()
    props = document.core_properties
    props.title = src.title
    props.author = COMMUNE
    props.last_modified_by = COMMUNE
    props.subject = src.id
    props.identifier = src.id
    props.language = "fr-FR"
    props.comments = ""
    props.keywords = ""
    props.category = str(src.meta.get("doc_type") or "")
    props.revision = 1
    props.created = src.timestamp
    props.modified = src.timestamp
    props.last_printed = src.timestamp

    section = document.sections[0]
    section.header.paragraphs[0].text = src.running_header
    footer = section.footer.paragraphs[0]
    footer.alignment = 1  # centre
    footer.add_run("Page ")
    _docx_field(footer, "PAGE", OxmlElement, qn)
    footer.add_run(" / ")
    _docx_field(footer, "NUMPAGES", OxmlElement, qn)

    numbering = document.part.numbering_part.element
    list_number = document.styles["List Number"]
    style_num = list_number.element.pPr.numPr.numId.val if list_number.element.pPr is not None and \
        list_number.element.pPr.numPr is not None else None
    abstract_id = None
    if style_num is not None:
        for num in numbering.num_lst:
            if num.numId == style_num:
                abstract_id = num.abstractNumId.val

    for block in src.blocks:
        if block.kind in ("h1", "h2", "h3"):
            document.add_heading(block.text, level=int(block.kind[1]))
        elif block.kind == "p":
            document.add_paragraph(block.text)
        elif block.kind == "ul":
            for _, text in block.items:
                document.add_paragraph(text, style="List Bullet")
        else:
            num_id = None
            if abstract_id is not None:  # every numbered list restarts at its first number
                num = numbering.add_num(abstract_id)
                start = int(block.items[0][0]) if block.items and block.items[0][0].isdigit() else 1
                num.add_lvlOverride(ilvl=0).add_startOverride(start)
                num_id = num.numId
            for _, text in block.items:
                paragraph = document.add_paragraph(text, style="List Number")
                if num_id is not None:
                    num_pr = paragraph._p.get_or_add_pPr().get_or_add_numPr()
                    num_pr.get_or_add_ilvl().val = 0
                    num_pr.get_or_add_numId().val = num_id

    buf = io.BytesIO()
    document.save(buf)
    return _normalize_zip(buf.getvalue())


def _docx_field(paragraph: Any, instruction: str, OxmlElement: Any, qn: Any) -> None:  # noqa: N803
    fld = OxmlElement("w:fldSimple")
    fld.set(qn("w:instr"), instruction)
    run = OxmlElement("w:r")
    text = OxmlElement("w:t")
    text.text = "1"
    run.append(text)
    fld.append(run)
    paragraph._p.append(fld)


# -- odt --------------------------------------------------------------------------------------------


def render_odt(src: Source) -> bytes:
    from odf import dc, meta, teletype
    from odf.opendocument import OpenDocumentText
    from odf.style import (
        Footer,
        Header,
        ListLevelProperties,
        MasterPage,
        PageLayout,
        PageLayoutProperties,
        ParagraphProperties,
        Style,
        TextProperties,
    )
    from odf.text import (
        H,
        List,
        ListItem,
        ListLevelStyleBullet,
        ListLevelStyleNumber,
        ListStyle,
        P,
        PageCount,
        PageNumber,
    )

    # odfpy keeps the namespaces met so far in a class-level dict and declares all of them on every root:
    # start each document from a clean slate, or its bytes would depend on what was rendered before it
    from odf.element import Element as OdfElement

    OdfElement.namespaces.clear()
    doc = OpenDocumentText()
    doc.meta.addElement(dc.Title(text=src.title))
    doc.meta.addElement(dc.Subject(text=src.id))
    doc.meta.addElement(dc.Language(text="fr-FR"))
    doc.meta.addElement(dc.Creator(text=COMMUNE))
    doc.meta.addElement(meta.InitialCreator(text=COMMUNE))
    doc.meta.addElement(meta.CreationDate(text=src.timestamp.isoformat()))
    doc.meta.addElement(dc.Date(text=src.timestamp.isoformat()))

    standard = Style(name="Standard", family="paragraph")
    standard.addElement(TextProperties(fontname="DejaVu Sans", fontsize="11pt", language="fr", country="FR"))
    doc.styles.addElement(standard)
    body_style = Style(name="Text_20_body", displayname="Text body", family="paragraph", parentstylename="Standard")
    body_style.addElement(ParagraphProperties(margintop="0cm", marginbottom="0.21cm"))
    doc.styles.addElement(body_style)
    heading = Style(name="Heading", family="paragraph", parentstylename="Standard", nextstylename="Text_20_body")
    heading.addElement(ParagraphProperties(margintop="0.42cm", marginbottom="0.21cm", keepwithnext="always"))
    heading.addElement(TextProperties(fontweight="bold"))
    doc.styles.addElement(heading)
    heading_styles = {}
    for level, size in ((1, "16pt"), (2, "13pt"), (3, "12pt")):
        st = Style(name=f"Heading_20_{level}", displayname=f"Heading {level}", family="paragraph",
                   parentstylename="Heading", nextstylename="Text_20_body", defaultoutlinelevel=str(level))
        st.addElement(TextProperties(fontsize=size, fontweight="bold"))
        doc.styles.addElement(st)
        heading_styles[level] = st
    list_para = Style(name="List_20_Contents", displayname="List Contents", family="paragraph",
                      parentstylename="Standard")
    list_para.addElement(ParagraphProperties(margintop="0cm", marginbottom="0.1cm"))
    doc.styles.addElement(list_para)

    bullets = ListStyle(name="List_20_Bullet", displayname="List Bullet")
    lvl = ListLevelStyleBullet(level=1, bulletchar="\u2022")
    lvl.addElement(ListLevelProperties(spacebefore="0.4cm", minlabelwidth="0.5cm"))
    bullets.addElement(lvl)
    doc.styles.addElement(bullets)
    numbers = ListStyle(name="List_20_Number", displayname="List Number")
    lvl = ListLevelStyleNumber(level=1, numformat="1", numsuffix=".")
    lvl.addElement(ListLevelProperties(spacebefore="0.4cm", minlabelwidth="0.6cm"))
    numbers.addElement(lvl)
    doc.styles.addElement(numbers)

    layout = PageLayout(name="pm1")
    layout.addElement(PageLayoutProperties(pagewidth="21cm", pageheight="29.7cm", printorientation="portrait",
                                           margintop="2cm", marginbottom="2cm", marginleft="2.2cm",
                                           marginright="2.2cm"))
    doc.automaticstyles.addElement(layout)
    master = MasterPage(name="Standard", pagelayoutname=layout)
    header = Header()
    header.addElement(P(stylename=standard, text=src.running_header))
    master.addElement(header)
    footer = Footer()
    footer_p = P(stylename=standard, text="Page ")
    footer_p.addElement(PageNumber(selectpage="current", text="1"))
    footer_p.addText(" / ")
    footer_p.addElement(PageCount(text="1"))
    footer.addElement(footer_p)
    master.addElement(footer)
    doc.masterstyles.addElement(master)

    for block in src.blocks:
        if block.kind in ("h1", "h2", "h3"):
            level = int(block.kind[1])
            element = H(outlinelevel=level, stylename=heading_styles[level])
            teletype.addTextToElement(element, block.text)
            doc.text.addElement(element)
        elif block.kind == "p":
            element = P(stylename=body_style)
            teletype.addTextToElement(element, block.text)
            doc.text.addElement(element)
        else:
            attrs: dict[str, Any] = {"stylename": bullets if block.kind == "ul" else numbers}
            lst = List(**attrs)
            for marker, text in block.items:
                item = ListItem()
                if block.kind == "ol" and lst.childNodes == [] and marker.isdigit() and marker != "1":
                    item = ListItem(startvalue=int(marker))
                para = P(stylename=list_para)
                teletype.addTextToElement(para, text)
                item.addElement(para)
                lst.addElement(item)
            doc.text.addElement(lst)

    buf = io.BytesIO()
    doc.save(buf)
    return _normalize_zip(buf.getvalue(), stored_first="mimetype")


# -- html / md / txt --------------------------------------------------------------------------------

_HTML_CSS = """body { font-family: "DejaVu Sans", Arial, sans-serif; max-width: 46em; margin: 2em auto; \
padding: 0 1em; line-height: 1.5; color: #1a1a1a; }
header { color: #555; border-bottom: 1px solid #ccc; margin-bottom: 1.5em; }
h1 { font-size: 1.6em; } h2 { font-size: 1.3em; } h3 { font-size: 1.1em; }"""


def render_html(src: Source) -> bytes:
    esc = lambda s: html.escape(s, quote=False)  # noqa: E731
    out = [
        "<!DOCTYPE html>",
        '<html lang="fr">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(src.title)}</title>",
        f'<meta name="author" content="{html.escape(COMMUNE)}">',
        f'<meta name="generator" content="{html.escape(GENERATOR)}">',
        f"<style>\n{_HTML_CSS}\n</style>",
        "</head>",
        "<body>",
        f"<header><p>{esc(src.running_header)}</p></header>",
        "<main>",
    ]
    for block in src.blocks:
        if block.kind in ("h1", "h2", "h3"):
            out.append(f"<{block.kind}>{esc(block.text)}</{block.kind}>")
        elif block.kind == "p":
            out.append(f"<p>{esc(block.text)}</p>")
        else:
            tag = block.kind
            start = ""
            if tag == "ol" and block.items and block.items[0][0].isdigit() and block.items[0][0] != "1":
                start = f' start="{int(block.items[0][0])}"'
            out.append(f"<{tag}{start}>")
            out.extend(f"<li>{esc(text)}</li>" for _, text in block.items)
            out.append(f"</{tag}>")
    out += ["</main>", "</body>", "</html>", ""]
    return "\n".join(out).encode("utf-8")


def render_md(src: Source) -> bytes:
    return (src.body.strip("\n") + "\n").encode("utf-8")


def render_txt(src: Source) -> bytes:
    """Plain text: every heading and paragraph on its own line, blank lines between blocks, lists as "- " /
    "1. " lines. Headings are neither underlined nor upper-cased: the text parser (unstructured) glues an
    underline to its heading ("Titre =====") and upper-casing would change the quoted characters."""
    out: list[str] = []
    for block in src.blocks:
        if out:
            out.append("")
        if block.kind in ("h1", "h2", "h3", "p"):
            out.append(block.text)
        else:
            out += [f"- {t}" if block.kind == "ul" else f"{m}. {t}" for m, t in block.items]
    return ("\n".join(out) + "\n").encode("utf-8")


RENDERERS = {
    "pdf": render_pdf,
    "scan": render_scan,
    "docx": render_docx,
    "odt": render_odt,
    "html": render_html,
    "md": render_md,
    "txt": render_txt,
}


def render_sidecar(src: Source) -> bytes:
    return yaml.safe_dump(src.sidecar(), allow_unicode=True, sort_keys=False, default_flow_style=False,
                          width=1000).encode("utf-8")


# -- zip normalisation ------------------------------------------------------------------------------

_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def _normalize_zip(data: bytes, stored_first: str | None = None) -> bytes:
    """Rewrite a zip with fixed timestamps and attributes, so that identical content gives identical bytes."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as zin, zipfile.ZipFile(out, "w") as zout:
        infos = zin.infolist()
        if stored_first:
            infos = sorted(infos, key=lambda i: i.filename != stored_first)
        for info in infos:
            blob = zin.read(info.filename)
            new = zipfile.ZipInfo(info.filename, date_time=_ZIP_EPOCH)
            new.create_system = 0
            new.external_attr = 0
            if info.filename == stored_first:
                new.compress_type = zipfile.ZIP_STORED
                zout.writestr(new, blob)
            else:
                new.compress_type = zipfile.ZIP_DEFLATED
                zout.writestr(new, blob, compresslevel=6)
    return out.getvalue()


# --------------------------------------------------------------------------------------------------
# Build / check
# --------------------------------------------------------------------------------------------------


def render(src: Source) -> dict[str, bytes]:
    """Return {relative path under out: bytes} for a source (the document and its sidecar)."""
    try:
        data = RENDERERS[src.format](src)
    except SourceError:
        raise
    except Exception as exc:  # a renderer failure is reported against its source
        raise SourceError(f"{type(exc).__name__}: {exc}") from exc
    return {src.relpath: data, src.relpath + META_SUFFIX: render_sidecar(src)}


def _write_if_changed(path: Path, data: bytes) -> bool:
    if path.is_file() and not path.is_symlink() and path.read_bytes() == data:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return True


def _existing_files(out: Path) -> list[str]:
    """Files under out (posix, relative), skipping hidden files and folders."""
    if not out.is_dir():
        return []
    files = []
    for path in out.rglob("*"):
        rel = path.relative_to(out)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if path.is_file() or path.is_symlink():
            files.append(rel.as_posix())
    return sorted(files)


def _safe_out(out: Path, sources: Path) -> str | None:
    """Why removing orphans from out would be unsafe, or None."""
    out_r, src_r = out.resolve(), sources.resolve()
    if out_r == src_r or out_r in src_r.parents:
        return f"the output folder {out} contains the sources {sources}"
    if out_r == REPO_ROOT or out_r in REPO_ROOT.parents or out_r == Path(out_r.anchor):
        return f"the output folder {out} is the repository or one of its parents"
    if (out_r / ".git").exists():
        return f"the output folder {out} is a git repository"
    return None


def _select(sources: list[Source], only: Sequence[str] | None) -> tuple[list[Source], list[str]]:
    if not only:
        return sources, []
    wanted = list(dict.fromkeys(only))
    known = {s.id for s in sources}
    unknown = [w for w in wanted if w not in known]
    return [s for s in sources if s.id in set(wanted)], [f"--only {w}: no source with this id" for w in unknown]


def build(sources_dir: Path, out: Path, only: Sequence[str] | None = None, *, quiet: bool = False,
          remove_orphans: bool = True) -> int:
    """Render the sources into out. Returns the exit status (0 ok, 1 errors)."""
    log = (lambda *a: None) if quiet else (lambda *a: print(*a))
    sources, errors = discover(sources_dir)
    selected, unknown = _select(sources, only)
    errors += unknown

    out.mkdir(parents=True, exist_ok=True)
    expected: set[str] = set()
    formats: Counter[str] = Counter()
    written = unchanged = 0
    failed: set[str] = set()
    for src in selected:
        try:
            files = render(src)
        except SourceError as exc:
            errors.append(f"{src.path.relative_to(sources_dir).as_posix()} ({src.id}): {exc}")
            failed.add(src.id)
            continue
        for rel, data in files.items():
            expected.add(rel)
            if _write_if_changed(out / rel, data):
                written += 1
            else:
                unchanged += 1
        formats[src.format] += 1

    removed: list[str] = []
    if remove_orphans and not only:
        why = _safe_out(out, sources_dir)
        if errors:
            log("orphan removal skipped because of the errors below")
        elif why:
            log(f"orphan removal skipped: {why}")
        else:
            for src in sources:  # outputs of every known source are not orphans
                expected.update((src.relpath, src.relpath + META_SUFFIX))
            for rel in _existing_files(out):
                if rel in expected:
                    continue
                if not rel.endswith(_REMOVABLE_SUFFIXES):
                    log(f"left in place (not a build output): {rel}")
                    continue
                (out / rel).unlink()
                removed.append(rel)
            _remove_empty_dirs(out)

    summary = ", ".join(f"{fmt}: {formats[fmt]}" for fmt in FORMATS if formats[fmt]) or "none"
    log(f"{sum(formats.values())} document(s) rendered into {out} ({summary}); "
        f"{written} file(s) written, {unchanged} unchanged, {len(removed)} orphan(s) removed")
    for rel in removed:
        log(f"  removed orphan: {rel}")
    if errors:
        print(f"{len(errors)} error(s):", file=sys.stderr)
        for err in errors:
            print(f"  {err}", file=sys.stderr)
        return 1
    return 0


def _remove_empty_dirs(root: Path) -> None:
    for path in sorted((p for p in root.rglob("*") if p.is_dir() and not p.is_symlink()),
                       key=lambda p: len(p.parts), reverse=True):
        rel = path.relative_to(root)
        if any(part.startswith(".") for part in rel.parts):
            continue
        try:
            path.rmdir()  # only succeeds when empty
        except OSError:
            pass


def check(sources_dir: Path, out: Path, only: Sequence[str] | None = None) -> int:
    """Render into a temporary folder and compare with out. Returns 1 on any difference."""
    with tempfile.TemporaryDirectory(prefix="collectivia-corpus-") as tmp:
        status = build(sources_dir, Path(tmp), only, quiet=True, remove_orphans=False)
        fresh = set(_existing_files(Path(tmp)))
        missing, differ = [], []
        for rel in sorted(fresh):
            target = out / rel
            if not target.is_file():
                missing.append(rel)
            elif target.read_bytes() != (Path(tmp) / rel).read_bytes():
                differ.append(rel)
    orphans: list[str] = []
    sources, discover_errors = discover(sources_dir)
    if not only and not discover_errors:  # an invalid source would make its outputs look orphaned
        known = {s.relpath for s in sources} | {s.relpath + META_SUFFIX for s in sources}
        orphans = [rel for rel in _existing_files(out) if rel not in known]
    for label, items in (("missing", missing), ("differs", differ), ("orphan", orphans)):
        for rel in items:
            print(f"{label}: {out / rel}")
    if status != 0:
        print("some sources could not be rendered (run the build to see the errors)", file=sys.stderr)
        return 1
    if missing or differ or orphans:
        print(f"corpus out of date: {len(missing)} missing, {len(differ)} differ, {len(orphans)} orphan(s); "
              f"run: python corpora/build.py", file=sys.stderr)
        return 1
    print(f"corpus up to date ({len(fresh)} file(s) checked in {out})")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sources", type=Path, default=DEFAULT_SOURCES, help="folder of the Markdown sources")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder of the rendered corpus")
    parser.add_argument("--only", nargs="+", metavar="ID", help="render only these document ids")
    parser.add_argument("--check", action="store_true",
                        help="do not write: exit 1 if the rendered corpus is missing, out of date or orphaned")
    args = parser.parse_args(argv)
    if args.check:
        return check(args.sources, args.out, args.only)
    return build(args.sources, args.out, args.only)


if __name__ == "__main__":
    sys.exit(main())
