"""Parsing real files of every format through the real parsers, and refusing bad inputs with clear messages."""

from __future__ import annotations

import os
import random
import re
import time
import zipfile
from pathlib import Path
from typing import Callable

import pytest

from fixtures import (
    FONT,
    SECTIONS,
    make_docx,
    make_html,
    make_md,
    make_odt,
    make_pdf,
    make_scanned_pdf,
    make_txt,
    make_zip_bomb,
)
from index.documents import ParsedDocument
from ingest.parse import ParseError, ParseOptions, ocr_available, parse_file

MAKERS: dict[str, Callable[[Path], Path]] = {
    "md": make_md,
    "txt": make_txt,
    "html": make_html,
    "docx": make_docx,
    "odt": make_odt,
    "pdf": make_pdf,
}


@pytest.fixture(scope="module")
def parsed_by_format(tmp_path_factory) -> dict[str, ParsedDocument]:
    folder = tmp_path_factory.mktemp("formats")
    return {ext: parse_file(maker(folder / f"conges.{ext}")) for ext, maker in MAKERS.items()}


def assert_offsets_consistent(parsed: ParsedDocument) -> None:
    previous_end = 0
    for element in parsed.elements:
        assert parsed.text[element.start : element.end] == element.text
        assert element.start >= previous_end  # in reading order, no overlap
        previous_end = element.end


# ----------------------------------------------------------------------------------------------------------------
# Every format
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ext", list(MAKERS))
def test_format_parses_to_text_with_accents(parsed_by_format, ext: str) -> None:
    parsed = parsed_by_format[ext]
    for heading, body in SECTIONS:
        assert heading in parsed.text
        assert body in parsed.text  # whole sentences, accents and apostrophes intact
    assert "Congés annuels" in parsed.text or "CONGÉS ANNUELS" in parsed.text
    assert parsed.warnings == ()
    assert parsed.ocr is False


@pytest.mark.parametrize("ext", list(MAKERS))
def test_format_headings_are_recognised(parsed_by_format, ext: str) -> None:
    parsed = parsed_by_format[ext]
    by_text = {e.text: e for e in parsed.elements}
    for heading, body in SECTIONS:
        assert by_text[heading].kind == "heading", heading
        assert by_text[body].kind == "text", body
    # the article headings are below the document title
    title = parsed.elements[0]
    assert title.kind == "heading"
    assert all(by_text[h].level > title.level for h, _ in SECTIONS)
    # and in reading order
    starts = [by_text[h].start for h, _ in SECTIONS]
    assert starts == sorted(starts)


@pytest.mark.parametrize("ext", list(MAKERS))
def test_format_element_offsets_point_into_text(parsed_by_format, ext: str) -> None:
    parsed = parsed_by_format[ext]
    assert parsed.elements
    assert_offsets_consistent(parsed)
    # nothing of the text lies outside the elements but separators
    covered = set()
    for element in parsed.elements:
        covered.update(range(element.start, element.end))
    assert all(parsed.text[i].isspace() for i in range(len(parsed.text)) if i not in covered)


def test_pdf_pages_of_each_section(parsed_by_format) -> None:
    parsed = parsed_by_format["pdf"]
    assert parsed.pages == 3
    by_text = {e.text: e for e in parsed.elements}
    for page, (heading, body) in enumerate(SECTIONS, start=1):
        assert by_text[heading].page == page
        assert by_text[body].page == page


def test_pdf_on_a_single_page(tmp_path: Path) -> None:
    parsed = parse_file(make_pdf(tmp_path / "une-page.pdf", page_per_section=False))
    assert parsed.pages == 1
    assert {e.page for e in parsed.elements} == {1}
    for heading, body in SECTIONS:
        assert body in parsed.text


def test_non_paginated_formats_have_no_pages(parsed_by_format) -> None:
    for ext in ("md", "txt", "html", "docx", "odt"):
        assert parsed_by_format[ext].pages is None
        assert all(e.page is None for e in parsed_by_format[ext].elements)


def test_running_header_and_footer_are_dropped(tmp_path: Path) -> None:
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont
    from reportlab.pdfgen import canvas

    if "DejaVu" not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(TTFont("DejaVu", FONT))
    footer = "Mairie de Val-d'Arnon — document interne"
    header = "Règlement intérieur des services municipaux"
    bodies = [
        "Le conseil municipal approuve le budget primitif de l'exercice.",
        "La cantine scolaire applique un tarif réduit aux familles nombreuses.",
        "Les horaires d'ouverture de la médiathèque sont étendus le samedi.",
    ]
    path = tmp_path / "pied-de-page.pdf"
    pdf = canvas.Canvas(str(path), pagesize=A4, invariant=1)
    for number, body in enumerate(bodies, start=1):
        pdf.setFont("DejaVu", 9)
        pdf.drawString(72, 810, header)
        pdf.setFont("DejaVu", 12)
        pdf.drawString(72, 700, body)
        pdf.setFont("DejaVu", 9)
        pdf.drawString(72, 40, footer)
        pdf.drawString(500, 40, f"Page {number} / 3")
        pdf.showPage()
    pdf.save()

    parsed = parse_file(path)
    assert parsed.pages == 3
    assert footer not in parsed.text
    assert "Val-d'Arnon" not in parsed.text
    assert header not in parsed.text
    assert "Page 2" not in parsed.text
    by_text = {e.text: e for e in parsed.elements}
    for number, body in enumerate(bodies, start=1):
        assert body in parsed.text
        assert by_text[body].page == number
    assert_offsets_consistent(parsed)


def test_line_present_on_a_single_page_is_kept(tmp_path: Path) -> None:
    """Only lines repeated on several pages are headers/footers; the title on page 1 stays."""
    parsed = parse_file(make_pdf(tmp_path / "titre.pdf", title="Règlement des congés"))
    assert parsed.text.startswith("Règlement des congés")


# ----------------------------------------------------------------------------------------------------------------
# Text encodings
# ----------------------------------------------------------------------------------------------------------------


def test_windows_1252_text_is_decoded(tmp_path: Path) -> None:
    path = tmp_path / "ancien.txt"
    text = "Délibération du conseil municipal\n\nLa rénovation de l'école est approuvée à l'unanimité.\n"
    path.write_bytes(text.encode("cp1252"))
    parsed = parse_file(path)
    assert "Délibération du conseil municipal" in parsed.text
    assert "La rénovation de l'école est approuvée à l'unanimité." in parsed.text


def test_utf8_with_bom_is_decoded(tmp_path: Path) -> None:
    path = tmp_path / "bom.md"
    path.write_bytes("# Délibération\n\nLe maire est chargé de l'exécution.\n".encode("utf-8-sig"))
    parsed = parse_file(path)
    assert parsed.elements[0].text == "Délibération"
    assert "\ufeff" not in parsed.text


def test_undecodable_text_is_refused_mentioning_utf8(tmp_path: Path) -> None:
    path = tmp_path / "illisible.txt"
    path.write_bytes(b"Conseil \x81\x8d\x01\x02\x03\x04\x05\x06 municipal " * 20)
    with pytest.raises(ParseError) as info:
        parse_file(path)
    message = str(info.value)
    assert str(path) in message
    assert "UTF-8" in message


def test_utf16_text_is_refused_mentioning_utf8(tmp_path: Path) -> None:
    path = tmp_path / "unicode.txt"
    path.write_bytes("Délibération du conseil municipal".encode("utf-16"))
    with pytest.raises(ParseError) as info:
        parse_file(path)
    assert str(path) in str(info.value)
    assert "UTF-8" in str(info.value)


# ----------------------------------------------------------------------------------------------------------------
# Scanned PDF
# ----------------------------------------------------------------------------------------------------------------

SCANNED_LINES = [
    "Délibération du conseil municipal",
    "Séance du 12 mars 2024",
    "Objet : tarifs de la cantine scolaire",
]


@pytest.mark.skipif(not ocr_available("fra"), reason="tesseract with French (tesseract-ocr-fra) is not installed")
def test_scanned_pdf_is_ocred(tmp_path: Path) -> None:
    path = make_scanned_pdf(tmp_path / "scan.pdf", SCANNED_LINES)
    parsed = parse_file(path)
    assert parsed.ocr is True
    assert parsed.pages == 1
    assert parsed.warnings == ()
    text = parsed.text.lower()
    assert "conseil municipal" in text
    assert "délibération" in text  # French accents read back by the fra model
    assert "cantine" in text
    assert all(e.page == 1 for e in parsed.elements)
    assert_offsets_consistent(parsed)


def test_scanned_pdf_without_ocr_gives_no_text_and_a_warning(tmp_path: Path) -> None:
    path = make_scanned_pdf(tmp_path / "scan.pdf", SCANNED_LINES)
    parsed = parse_file(path, ParseOptions(ocr=False))
    assert parsed.ocr is False
    assert parsed.text.strip() == ""
    assert parsed.elements == ()
    assert len(parsed.warnings) == 1
    assert str(path) in parsed.warnings[0]
    assert "OCR" in parsed.warnings[0]


def test_scanned_pdf_with_missing_ocr_language_warns(tmp_path: Path) -> None:
    path = make_scanned_pdf(tmp_path / "scan.pdf", SCANNED_LINES)
    parsed = parse_file(path, ParseOptions(ocr_languages="langue_inexistante"))
    assert parsed.ocr is False
    assert parsed.text.strip() == ""
    assert any(str(path) in w and "langue_inexistante" in w for w in parsed.warnings)


# ----------------------------------------------------------------------------------------------------------------
# Bad inputs: ParseError, in French, naming the file
# ----------------------------------------------------------------------------------------------------------------


def _empty(folder: Path) -> Path:
    path = folder / "vide.txt"
    path.write_bytes(b"")
    return path


def _whitespace(folder: Path) -> Path:
    path = folder / "blanc.txt"
    path.write_text("   \n\t\n  \n", encoding="utf-8")
    return path


def _whitespace_md(folder: Path) -> Path:
    path = folder / "blanc.md"
    path.write_text("\n \n", encoding="utf-8")
    return path


def _random_pdf(folder: Path) -> Path:
    path = folder / "corrompu.pdf"
    path.write_bytes(b"%PDF-1.4\n" + random.Random(42).randbytes(20_000))
    return path


def _truncated_pdf(folder: Path) -> Path:
    data = make_pdf(folder / "complet.pdf").read_bytes()
    path = folder / "tronque.pdf"
    path.write_bytes(data[: len(data) // 2])
    return path


def _encrypted_pdf(folder: Path) -> Path:
    return make_pdf(folder / "protege.pdf", encrypt="secret")


def _pdf_as_docx(folder: Path) -> Path:
    return make_pdf(folder / "deguise.docx")


def _text_as_pdf(folder: Path) -> Path:
    path = folder / "texte.pdf"
    path.write_text("Compte rendu du conseil municipal du 12 mars.\n", encoding="utf-8")
    return path


def _docx_as_odt(folder: Path) -> Path:
    return make_docx(folder / "word.odt")


def _odt_as_docx(folder: Path) -> Path:
    return make_odt(folder / "libre.docx")


def _legacy_doc_as_docx(folder: Path) -> Path:
    path = folder / "ancien.docx"
    path.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + random.Random(7).randbytes(4096))
    return path


def _broken_zip_docx(folder: Path) -> Path:
    data = make_docx(folder / "complet.docx").read_bytes()
    path = folder / "casse.docx"
    path.write_bytes(data[:200])
    return path


def _binary_as_txt(folder: Path) -> Path:
    path = folder / "binaire.txt"
    path.write_bytes(b"\x7fELF\x02\x01\x01\x00" + bytes(500))
    return path


def _xlsx(folder: Path) -> Path:
    path = folder / "budget.xlsx"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("xl/workbook.xml", "<workbook/>")
    return path


def _no_extension(folder: Path) -> Path:
    path = folder / "LISEZMOI"
    path.write_text("Bonjour", encoding="utf-8")
    return path


def _missing(folder: Path) -> Path:
    return folder / "absent.pdf"


def _broken_symlink(folder: Path) -> Path:
    path = folder / "lien.pdf"
    os.symlink(folder / "cible-disparue.pdf", path)
    return path


def _directory(folder: Path) -> Path:
    path = folder / "x.pdf"
    path.mkdir()
    return path


BAD_INPUTS = [
    (_empty, ["vide"]),
    (_whitespace, ["espaces"]),
    (_whitespace_md, ["espaces"]),
    (_random_pdf, ["PDF", "corrompu"]),
    (_truncated_pdf, ["PDF", "corrompu"]),
    (_encrypted_pdf, ["mot de passe"]),
    (_pdf_as_docx, ["un PDF", "DOCX", ".pdf"]),
    (_text_as_pdf, ["du texte", "PDF"]),
    (_docx_as_odt, ["OpenDocument", "content.xml"]),
    (_odt_as_docx, ["Word", "word/document.xml"]),
    (_legacy_doc_as_docx, ["ancien document Office", ".doc"]),
    (_broken_zip_docx, ["DOCX", "corrompu"]),
    (_binary_as_txt, ["binaire"]),
    (_xlsx, ["« .xlsx »", "non prise en charge"]),
    (_no_extension, ["non prise en charge"]),
    (_missing, ["introuvable"]),
    (_broken_symlink, ["lien cassé"]),
    (_directory, ["dossier"]),
]


@pytest.mark.parametrize(("make", "expected"), BAD_INPUTS, ids=[m.__name__.strip("_") for m, _ in BAD_INPUTS])
def test_bad_input_is_refused_with_a_clear_message(tmp_path: Path, make, expected: list[str]) -> None:
    path = make(tmp_path)
    with pytest.raises(ParseError) as info:
        parse_file(path)
    message = str(info.value)
    assert message.startswith(str(path) + " : "), message
    for fragment in expected:
        assert fragment in message, (fragment, message)
    assert "Traceback" not in message


@pytest.mark.parametrize("size_mb", [300, 50], ids=["over-unpacked-limit", "under-unpacked-limit"])
def test_zip_bomb_is_refused_before_decompressing(tmp_path: Path, monkeypatch, size_mb: int) -> None:
    """300 MB is over the unpacked limit; 50 MB is under it, but the compression ratio gives it away."""
    path = make_zip_bomb(tmp_path / "bombe.docx", size_mb=size_mb)
    opened: list[str] = []
    real_open = zipfile.ZipFile.open

    def spy_open(self, name, *args, **kwargs):
        opened.append(name if isinstance(name, str) else name.filename)
        return real_open(self, name, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "open", spy_open)
    started = time.perf_counter()
    with pytest.raises(ParseError) as info:
        parse_file(path)
    elapsed = time.perf_counter() - started
    assert elapsed < 2
    assert "word/document.xml" not in opened  # the huge member was never inflated
    message = str(info.value)
    assert str(path) in message
    assert "bombe de décompression" in message


def test_archive_too_big_once_unpacked_is_refused(tmp_path: Path) -> None:
    """Many members, each with a modest ratio, but far too much in total."""
    path = tmp_path / "gros.docx"
    rng = random.Random(3)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("word/document.xml", "<w:document/>")
        for i in range(3):
            archive.writestr(f"word/media/image{i}.bin", rng.randbytes(400_000))
    with pytest.raises(ParseError) as info:
        parse_file(path, ParseOptions(max_unpacked_mb=1))
    assert str(path) in str(info.value)
    assert "limite 1 Mo" in str(info.value)


def test_file_over_the_size_limit_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "long.txt"
    path.write_bytes((b"Le conseil municipal delibere.\n" * 60_000)[:1_600_000])  # 1.6 MB
    with pytest.raises(ParseError) as info:
        parse_file(path, ParseOptions(max_file_mb=1))
    message = str(info.value)
    assert str(path) in message
    assert "trop volumineux" in message
    assert "1.6 Mo" in message  # the size
    assert "limite 1 Mo" in message  # the limit


def test_tiny_size_limit_is_enforced(tmp_path: Path) -> None:
    path = make_txt(tmp_path / "conges.txt")
    path.write_bytes(path.read_bytes() * 8)  # about 3 KB
    with pytest.raises(ParseError) as info:
        parse_file(path, ParseOptions(max_file_mb=0.001))
    assert str(path) in str(info.value)
    assert "limite 0.001 Mo" in str(info.value)
    # the same file under the default limit parses
    assert parse_file(path).elements


def test_size_shown_for_a_small_file_over_a_small_limit_exceeds_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "conges.txt"
    path.write_bytes(b"Conseil municipal. " * 160)  # 3040 bytes
    with pytest.raises(ParseError) as info:
        parse_file(path, ParseOptions(max_file_mb=0.001))
    found = re.search(r"volumineux \(([0-9]+(?:[.,][0-9]+)?)\s*(Mo|Ko|ko|o|octets)", str(info.value))
    assert found, str(info.value)
    shown = float(found.group(1).replace(",", ".")) * {"Mo": 1e6, "Ko": 1e3, "ko": 1e3, "o": 1, "octets": 1}[found.group(2)]
    assert shown > 1000, str(info.value)


def test_text_mentioning_the_pdf_signature_is_still_text(tmp_path: Path) -> None:
    path = tmp_path / "formats.md"
    path.write_text("# Formats acceptés\n\nUn fichier PDF commence par la signature %PDF-1.7 suivie du corps.\n",
                    encoding="utf-8")
    parsed = parse_file(path)
    assert "signature %PDF-1.7" in parsed.text


def test_a_line_repeated_inside_the_body_of_pages_is_kept(tmp_path: Path) -> None:
    """Only lines at the top or bottom of pages count as running headers/footers."""
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    from fixtures import FONT
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont

    if "DejaVu" not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(TTFont("DejaVu", FONT))
    path = tmp_path / "votes.pdf"
    c = canvas.Canvas(str(path), pagesize=A4, invariant=1)
    for page in range(1, 4):
        c.setFont("DejaVu", 11)
        c.drawString(72, 800, f"Délibération numéro {page} relative aux subventions.")
        c.drawString(72, 700, "Adopté à l'unanimité des membres présents.")
        c.drawString(72, 600, f"Le montant de la subvention est fixé à {page}00 euros.")
        c.drawString(72, 40, "Mairie de Val-d'Arnon — registre des délibérations")
        c.showPage()
    c.save()
    parsed = parse_file(path)
    assert parsed.text.count("Adopté à l'unanimité des membres présents.") == 3
    assert "registre des délibérations" not in parsed.text
