"""Real files of every supported format, made on the fly, and deterministic fakes."""

from __future__ import annotations

import hashlib
import io
import re
import zipfile
from pathlib import Path
from typing import Sequence

import numpy as np
import yaml

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"

SECTIONS = [
    ("Article 1 – Objet", "La présente procédure fixe les règles de dépôt des congés annuels des agents de la commune."),
    ("Article 2 – Délais", "Toute demande de congé est déposée au moins quinze jours avant le départ dans l'outil e-RH."),
    ("Article 3 – Validation", "Le chef de service valide la demande sous cinq jours ouvrés ; le silence ne vaut pas accord."),
]


def write_meta(path: Path, **meta) -> Path:
    sidecar = path.with_name(path.name + ".meta.yaml")
    sidecar.write_text(yaml.safe_dump(meta, allow_unicode=True, sort_keys=True), encoding="utf-8")
    return sidecar


def make_md(path: Path, title: str = "Congés annuels", sections=SECTIONS) -> Path:
    body = "\n\n".join(f"## {h}\n\n{t}" for h, t in sections)
    path.write_text(f"# {title}\n\n{body}\n", encoding="utf-8")
    return path


def make_txt(path: Path, title: str = "Congés annuels", sections=SECTIONS) -> Path:
    body = "\n\n".join(f"{h}\n\n{t}" for h, t in sections)
    path.write_text(f"{title.upper()}\n\n{body}\n", encoding="utf-8")
    return path


def make_html(path: Path, title: str = "Congés annuels", sections=SECTIONS) -> Path:
    body = "".join(f"<h2>{h}</h2><p>{t}</p>" for h, t in sections)
    path.write_text(
        f'<!doctype html><html lang="fr"><head><meta charset="utf-8"><title>{title}</title></head>'
        f"<body><h1>{title}</h1>{body}</body></html>",
        encoding="utf-8",
    )
    return path


def make_docx(path: Path, title: str = "Congés annuels", sections=SECTIONS) -> Path:
    from docx import Document

    doc = Document()
    doc.add_heading(title, 1)
    for heading, text in sections:
        doc.add_heading(heading, 2)
        doc.add_paragraph(text)
    doc.save(str(path))
    return path


def make_odt(path: Path, title: str = "Congés annuels", sections=SECTIONS) -> Path:
    from odf.opendocument import OpenDocumentText
    from odf.text import H, P

    doc = OpenDocumentText()
    doc.text.addElement(H(outlinelevel=1, text=title))
    for heading, text in sections:
        doc.text.addElement(H(outlinelevel=2, text=heading))
        doc.text.addElement(P(text=text))
    doc.save(str(path))
    return path


def _pdf_styles():
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont

    if "DejaVu" not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(TTFont("DejaVu", FONT))
    styles = getSampleStyleSheet()
    for name in ("Title", "Heading2", "BodyText"):
        styles[name].fontName = "DejaVu"
    return styles


def make_pdf(path: Path, title: str = "Congés annuels", sections=SECTIONS, *, page_per_section: bool = True,
             encrypt: str | None = None) -> Path:
    """A PDF with a text layer; one section per page by default (so page numbers can be checked)."""
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.pdfencrypt import StandardEncryption
    from reportlab.platypus import PageBreak, Paragraph, SimpleDocTemplate

    styles = _pdf_styles()
    story = [Paragraph(title, styles["Title"])]
    for i, (heading, text) in enumerate(sections):
        if page_per_section and i:
            story.append(PageBreak())
        story += [Paragraph(heading, styles["Heading2"]), Paragraph(text, styles["BodyText"])]
    kwargs = {"encrypt": StandardEncryption(encrypt, canPrint=0)} if encrypt else {}
    SimpleDocTemplate(str(path), pagesize=A4, invariant=1, **kwargs).build(story)
    return path


def make_scanned_pdf(path: Path, lines: Sequence[str]) -> Path:
    """An image-only PDF (no text layer), as a scanner makes it."""
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("L", (1240, 1754), 255)
    draw = ImageDraw.Draw(image)
    font = ImageFont.truetype(FONT, 34)
    y = 150
    for line in lines:
        draw.text((120, y), line, font=font, fill=0)
        y += 70
    image.save(str(path), "PDF", resolution=150)
    return path


def make_zip_bomb(path: Path, member: str = "word/document.xml", size_mb: int = 300) -> Path:
    """A DOCX-looking archive whose single member expands to ``size_mb`` MB of zeros."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        with archive.open(member, "w", force_zip64=True) as handle:
            block = b"\0" * 1_000_000
            for _ in range(size_mb):
                handle.write(block)
    return path


class HashEmbedder:
    """Deterministic bag-of-words embedder for tests: words hashed into 64 dimensions, L2-normalised."""

    name = "hash-64"
    dim = 64

    def _vector(self, text: str) -> np.ndarray:
        vector = np.zeros(self.dim, dtype=np.float32)
        for word in re.findall(r"\w+", text.lower()):
            h = int(hashlib.md5(word.encode()).hexdigest(), 16)
            vector[h % self.dim] += 1.0 if (h >> 8) % 2 else -1.0
        if not vector.any():
            vector[0] = 1.0
        return vector / np.linalg.norm(vector)

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        return np.stack([self._vector(t) for t in texts]) if texts else np.zeros((0, self.dim), np.float32)

    def embed_query(self, text: str) -> np.ndarray:
        return self._vector(text)

    def count_tokens(self, text: str) -> int:
        return len(text.split())


def bytes_io(data: bytes) -> io.BytesIO:
    return io.BytesIO(data)
