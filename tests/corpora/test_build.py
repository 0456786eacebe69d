"""corpora/build.py: renders the Markdown sources of the sample commune into every format, deterministically."""

from __future__ import annotations

import importlib.util
import re
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def _load_build():
    spec = importlib.util.spec_from_file_location("collectivia_corpora_build", ROOT / "corpora" / "build.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


build = _load_build()

FORMATS = ("pdf", "scan", "docx", "odt", "html", "md", "txt")
EXT = {"pdf": "pdf", "scan": "pdf", "docx": "docx", "odt": "odt", "html": "html", "md": "md", "txt": "txt"}

SENTENCE = ("Le prix du repas est fixé à 3,45 € pour les élèves de l'école « Les Tilleuls » ; "
            "la délibération n° 2023-041 est abrogée.")
STEP = "Déposer le dossier à l'accueil de l'hôtel de ville avant le 15 août."

BODY = f"""# Tarifs de la restauration scolaire

Le conseil municipal de Val-d'Arnon, réuni le 27 juin 2024, a délibéré. {SENTENCE}

## Article 1 – Objet

La présente délibération fixe les tarifs applicables à compter du 1er septembre 2024 (coût < 5 € & plus).

### Tranches de quotient familial

- Tranche A : quotient inférieur à 600 €.
- Tranche B : quotient supérieur à 600 €,
  repas à 2,50 €.

## Article 2 – Inscription

1. Remplir le formulaire sur www.val-darnon.fr.
2. {STEP}

Œuvre, cœur, garçon, naïf, ÉTÉ.
"""


def _source(fmt: str) -> str:
    return f"""---
id: DEL-TEST-{fmt.upper()}
title: "Tarifs de la restauration scolaire ({fmt})"
doc_type: deliberation
services: [finances]
confidentiality: public
date: 2024-06-27
number: "2024-015"
status: en_vigueur
supersedes: [DEL-2023-041]
format: {fmt}
output: deliberations/test-{fmt}
---
{BODY}"""


def _write_sources(root: Path) -> Path:
    sources = root / "sources"
    (sources / "deliberations").mkdir(parents=True)
    for fmt in FORMATS:
        (sources / "deliberations" / f"{fmt}.md").write_text(_source(fmt), encoding="utf-8")
    # not documents: a bible, a private folder, a note without front matter id
    (sources / "BIBLE.md").write_text("# Bible\n\nid: nope\n", encoding="utf-8")
    (sources / "_drafts").mkdir()
    (sources / "_drafts" / "draft.md").write_text(_source("txt").replace("DEL-TEST-TXT", "DRAFT"), encoding="utf-8")
    (sources / "deliberations" / "notes.md").write_text("---\ntitle: notes\n---\nNot a document.\n", encoding="utf-8")
    return sources


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("corpus")
    sources = _write_sources(root)
    out = root / "out"
    assert build.main(["--sources", str(sources), "--out", str(out)]) == 0
    return sources, out


def _out(out: Path, fmt: str) -> Path:
    return out / "deliberations" / f"test-{fmt}.{EXT[fmt]}"


def _norm(text: str) -> str:
    return " ".join(text.split())


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_every_format_and_sidecar(corpus):
    _, out = corpus
    for fmt in FORMATS:
        path = _out(out, fmt)
        assert path.is_file() and path.stat().st_size > 0, path
        sidecar = path.with_name(path.name + ".meta.yaml")
        text = sidecar.read_text(encoding="utf-8")
        meta = yaml.safe_load(text)
        assert list(meta)[:2] == ["id", "title"]
        assert meta == {
            "id": f"DEL-TEST-{fmt.upper()}",
            "title": f"Tarifs de la restauration scolaire ({fmt})",
            "doc_type": "deliberation",
            "services": ["finances"],
            "confidentiality": "public",
            "date": "2024-06-27",  # an ISO string, not a date object
            "number": "2024-015",
            "status": "en_vigueur",
            "supersedes": ["DEL-2023-041"],
        }
        assert "\\u" not in text  # allow_unicode
    # only the documents were rendered: 7 documents + 7 sidecars
    assert len(_files(out)) == 2 * len(FORMATS)


def test_sidecar_accepted_by_ingestion(corpus):
    documents = pytest.importorskip("index.documents")
    _, out = corpus
    doc_id, meta = documents.load_meta(_out(out, "pdf"))
    assert doc_id == "DEL-TEST-PDF"
    assert meta.services == ("finances",) and meta.date == "2024-06-27" and meta.number == "2024-015"


def test_pdf_text_layer(corpus):
    from pdfminer.high_level import extract_text

    _, out = corpus
    text = extract_text(str(_out(out, "pdf")))
    flat = _norm(text)
    assert SENTENCE in flat
    assert STEP in flat
    assert "Œuvre, cœur, garçon, naïf, ÉTÉ." in flat
    assert "coût < 5 € & plus" in flat  # escaped for reportlab, rendered as is
    assert "Article 1 – Objet" in flat and "Tranches de quotient familial" in flat
    assert "Tranche B : quotient supérieur à 600 €, repas à 2,50 €." in flat  # continuation line joined
    assert "Commune de Val-d'Arnon – Délibération n° 2024-015" in flat and re.search(r"Page 1 / 1", flat)
    data = _out(out, "pdf").read_bytes()
    assert b"DejaVuSans" in data


def test_scan_is_image_only(corpus):
    from pdfminer.high_level import extract_text
    from pypdf import PdfReader

    _, out = corpus
    path = _out(out, "scan")
    assert extract_text(str(path)).strip() == ""
    reader = PdfReader(str(path))
    assert len(reader.pages) >= 1
    for page in reader.pages:
        assert len(page.images) == 1
        assert "/Font" not in (page.get("/Resources") or {})
        width, height = float(page.mediabox.width), float(page.mediabox.height)
        assert abs(width - 595) < 2 and abs(height - 842) < 2  # A4
    image = reader.pages[0].images[0].image
    assert image.size == (1240, 1754)  # 150 dpi


def test_docx_styles(corpus):
    import docx

    _, out = corpus
    document = docx.Document(str(_out(out, "docx")))
    styles = [(p.style.name, p.text) for p in document.paragraphs]
    assert ("Heading 1", "Tarifs de la restauration scolaire") in styles
    assert ("Heading 2", "Article 1 – Objet") in styles
    assert ("Heading 3", "Tranches de quotient familial") in styles
    assert ("List Bullet", "Tranche A : quotient inférieur à 600 €.") in styles
    assert ("List Number", STEP) in styles
    assert any(SENTENCE in text for _, text in styles)
    assert document.core_properties.title == "Tarifs de la restauration scolaire (docx)"


def test_odt_headings(corpus):
    from odf import opendocument, teletype
    from odf.text import H, List, P

    _, out = corpus
    path = _out(out, "odt")
    with zipfile.ZipFile(path) as z:
        assert z.infolist()[0].filename == "mimetype"
        assert z.read("mimetype") == b"application/vnd.oasis.opendocument.text"
        assert b"<text:h" in z.read("content.xml")
    document = opendocument.load(str(path))
    headings = {(int(h.getAttribute("outlinelevel")), teletype.extractText(h)) for h in document.getElementsByType(H)}
    assert {(1, "Tarifs de la restauration scolaire"), (2, "Article 1 – Objet"),
            (3, "Tranches de quotient familial")} <= headings
    assert len(document.getElementsByType(List)) == 2
    paragraphs = [teletype.extractText(p) for p in document.getElementsByType(P)]
    assert any(SENTENCE in p for p in paragraphs) and STEP in paragraphs


def test_html_md_txt(corpus):
    sources, out = corpus
    page = _out(out, "html").read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and '<html lang="fr">' in page and '<meta charset="utf-8">' in page
    assert "<title>Tarifs de la restauration scolaire (html)</title>" in page
    assert "<h1>Tarifs de la restauration scolaire</h1>" in page and "<h2>Article 1 – Objet</h2>" in page
    assert "<h3>Tranches de quotient familial</h3>" in page and "<ul>" in page and "<ol>" in page
    assert f"<li>{STEP}</li>" in page
    assert "coût &lt; 5 € &amp; plus" in page
    assert not re.search(r"""(src|href)=|<link|<script""", page)  # no external asset

    md = _out(out, "md").read_text(encoding="utf-8")
    assert md == BODY and not md.startswith("---")

    txt = _out(out, "txt").read_text(encoding="utf-8")
    lines = txt.splitlines()
    assert lines[:2] == ["Tarifs de la restauration scolaire", ""]  # headings on their own lines
    assert "Article 1 – Objet" in lines and "Tranches de quotient familial" in lines
    assert "- Tranche B : quotient supérieur à 600 €, repas à 2,50 €." in lines
    assert f"2. {STEP}" in lines
    assert SENTENCE in _norm(txt)


def test_rebuild_is_identical(corpus, tmp_path, monkeypatch):
    sources, out = corpus
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "12345")  # the caller's environment does not leak into the PDFs
    again = tmp_path / "again"
    assert build.build(sources, again, quiet=True) == 0
    first, second = _files(out), _files(again)
    assert first.keys() == second.keys()
    for name in first:
        assert first[name] == second[name], f"{name} differs between two builds"
    # and a build over an up-to-date corpus rewrites nothing
    assert build.check(sources, out) == 0


def test_orphans_removed_and_check(corpus, tmp_path):
    sources, out = corpus
    target = tmp_path / "out"
    assert build.build(sources, target, quiet=True) == 0
    (target / "old").mkdir()
    (target / "old" / "gone.pdf").write_bytes(b"%PDF-1.4 orphan")
    (target / "old" / "gone.pdf.meta.yaml").write_text("id: GONE\n", encoding="utf-8")
    (target / "deliberations" / "test-md.md").write_text("changed\n", encoding="utf-8")
    (target / "deliberations" / "test-txt.txt").unlink()
    outside = tmp_path / "outside.pdf"
    outside.write_bytes(b"%PDF-1.4 not mine")

    assert build.check(sources, target) == 1

    assert build.build(sources, target, quiet=True) == 0
    assert not (target / "old").exists()  # orphans and their empty folder removed
    assert (target / "deliberations" / "test-txt.txt").is_file()
    assert _files(target) == _files(out)
    assert outside.read_bytes() == b"%PDF-1.4 not mine"
    assert build.check(sources, target) == 0


def test_only_and_invalid_sources(corpus, tmp_path):
    sources, _ = corpus
    target = tmp_path / "only"
    assert build.main(["--sources", str(sources), "--out", str(target), "--only", "DEL-TEST-HTML"]) == 0
    assert sorted(_files(target)) == ["deliberations/test-html.html", "deliberations/test-html.html.meta.yaml"]
    assert build.main(["--sources", str(sources), "--out", str(target), "--only", "NOPE"]) == 1

    bad = tmp_path / "bad"
    (bad / "x").mkdir(parents=True)
    (bad / "x" / "ok.md").write_text(_source("txt"), encoding="utf-8")
    (bad / "x" / "bad.md").write_text(_source("txt").replace("format: txt", "format: rtf")
                                      .replace("DEL-TEST-TXT", "BAD"), encoding="utf-8")
    (bad / "x" / "z-dup.md").write_text(_source("md").replace("DEL-TEST-MD", "DEL-TEST-TXT"), encoding="utf-8")
    target = tmp_path / "bad-out"
    assert build.build(bad, target, quiet=True) == 1
    assert (target / "deliberations" / "test-txt.txt").is_file()  # the valid source is still rendered


def test_parse_body():
    blocks = build.parse_body("# T\n\nune ligne\nsuite\n\n- a\n  b\n- c\n\n1. un\n\n2. deux\n\nfin\n")
    assert [(b.kind, b.text, b.items) for b in blocks] == [
        ("h1", "T", []),
        ("p", "une ligne suite", []),
        ("ul", "", [("-", "a b"), ("-", "c")]),
        ("ol", "", [("1", "un"), ("2", "deux")]),
        ("p", "fin", []),
    ]
