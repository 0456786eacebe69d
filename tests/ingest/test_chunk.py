"""Structure-aware chunking: section paths, pages, offsets, sizes, overlap and metadata of the chunks."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import pytest

from fixtures import SECTIONS, make_docx, make_html, make_md, make_odt, make_pdf, make_txt
from ingest.chunk import chunk_document
from index.documents import Chunk, Document, DocumentMeta, Element, ParsedDocument
from ingest.parse import parse_file

META = DocumentMeta(title="Congés annuels", doc_type="procedure", services=("rh", "finances"),
                    confidentiality="interne", date="2024-03-12", number="2024-015")


def words(text: str) -> int:
    return len(text.split())


def make_parsed(items: Sequence[tuple], pages: int | None = None) -> ParsedDocument:
    """Elements given as (kind, text[, page[, level]]), joined like the parser does ("\\n\\n" between them)."""
    elements, parts, cursor = [], [], 0
    for item in items:
        kind, text, page, level = (tuple(item) + (None, None))[:4]
        if parts:
            cursor += 2
        elements.append(Element(kind=kind, text=text, start=cursor, end=cursor + len(text), page=page,
                                level=level if kind == "heading" else None))
        parts.append(text)
        cursor += len(text)
    return ParsedDocument(text="\n\n".join(parts), elements=tuple(elements), pages=pages)


def make_document(parsed: ParsedDocument, meta: DocumentMeta = META) -> Document:
    return Document(doc_id="rh/conges", version="v1", meta=meta, parsed=parsed, source="/srv/docs/rh/conges.pdf")


def long_paragraph(first: int, count: int) -> str:
    return " ".join(
        f"Alinéa {i} : l'agent transmet la pièce justificative numéro {i} au service gestionnaire."
        for i in range(first, first + count)
    )


# ----------------------------------------------------------------------------------------------------------------
# Properties every chunking must have
# ----------------------------------------------------------------------------------------------------------------


def assert_offsets(document: Document, chunks: list[Chunk]) -> None:
    text = document.parsed.text
    for chunk in chunks:
        assert 0 <= chunk.start < chunk.end <= len(text), chunk
        assert chunk.text == text[chunk.start : chunk.end]
        assert chunk.text.strip() == chunk.text and chunk.text


def assert_within_one_section(document: Document, chunks: list[Chunk]) -> None:
    """Once a chunk holds body text, no heading follows in it: a chunk never spans two sections."""
    for chunk in chunks:
        seen_body = False
        for element in document.parsed.elements:
            if element.start < chunk.end and element.end > chunk.start:
                if element.kind == "heading":
                    assert not seen_body, f"chunk {chunk.index} crosses the heading {element.text!r}"
                else:
                    seen_body = True


def assert_no_text_lost(document: Document, chunks: list[Chunk]) -> None:
    covered: set[int] = set()
    for chunk in chunks:
        covered.update(range(chunk.start, chunk.end))
    text = document.parsed.text
    lost = [i for i in range(len(text)) if not text[i].isspace() and i not in covered]
    assert not lost, f"text lost: {text[lost[0]:lost[0] + 60]!r}"


def assert_indexes(chunks: list[Chunk]) -> None:
    assert [c.index for c in chunks] == list(range(len(chunks)))


def check_all(document: Document, chunks: list[Chunk], size: int, count: Callable[[str], int]) -> None:
    assert chunks
    assert_offsets(document, chunks)
    assert_within_one_section(document, chunks)
    assert_no_text_lost(document, chunks)
    assert_indexes(chunks)
    for chunk in chunks:
        assert count(chunk.text) <= size, chunk.text


# ----------------------------------------------------------------------------------------------------------------
# Real files
# ----------------------------------------------------------------------------------------------------------------

MAKERS = {"md": make_md, "txt": make_txt, "html": make_html, "docx": make_docx, "odt": make_odt, "pdf": make_pdf}


@pytest.fixture(scope="module")
def parsed_files(tmp_path_factory) -> dict[str, ParsedDocument]:
    folder = tmp_path_factory.mktemp("chunk")
    return {ext: parse_file(maker(folder / f"conges.{ext}")) for ext, maker in MAKERS.items()}


@pytest.mark.parametrize("ext", list(MAKERS))
def test_one_chunk_per_article_with_its_section(parsed_files, hash_embedder, ext: str) -> None:
    document = make_document(parsed_files[ext])
    chunks = chunk_document(document, count_tokens=hash_embedder.count_tokens, size=100, overlap=10)
    check_all(document, chunks, 100, hash_embedder.count_tokens)
    assert [c.section for c in chunks] == [heading for heading, _ in SECTIONS]
    for chunk, (heading, body) in zip(chunks, SECTIONS):
        assert body in chunk.text
        assert heading in chunk.text
        # the other articles' text is not in this chunk
        assert all(other not in chunk.text for _, other in SECTIONS if other != body)
        # the document title is not part of the section path
        assert "Congés annuels" not in chunk.section and "CONGÉS" not in chunk.section


def test_pdf_chunks_carry_their_page(parsed_files, hash_embedder) -> None:
    document = make_document(parsed_files["pdf"])
    chunks = chunk_document(document, count_tokens=hash_embedder.count_tokens, size=100, overlap=0)
    assert [c.pages for c in chunks] == [(1,), (2,), (3,)]
    assert [c.payload()["page"] for c in chunks] == [1, 2, 3]


def test_non_paginated_formats_have_no_pages(parsed_files, hash_embedder) -> None:
    document = make_document(parsed_files["docx"])
    chunks = chunk_document(document, count_tokens=hash_embedder.count_tokens, size=100, overlap=0)
    assert all(c.pages == () for c in chunks)
    assert all(c.payload()["page"] is None for c in chunks)


NESTED_MD = """# Règlement intérieur

## Chapitre 1 – Temps de travail

Le présent chapitre s'applique à tous les agents.

### Article 3 – Horaires

Les horaires sont fixés par arrêté du maire.

### Article 4 – Pauses

Une pause de vingt minutes est accordée après six heures de travail.

## Chapitre 2 – Congés

### Article 5 – Demandes

Les demandes de congé sont écrites et motivées.
"""


def test_nested_headings_give_a_section_path(tmp_path: Path) -> None:
    path = tmp_path / "reglement.md"
    path.write_text(NESTED_MD, encoding="utf-8")
    document = make_document(parse_file(path), DocumentMeta(title="Règlement intérieur", doc_type="autre",
                                                            services=("tous",)))
    chunks = chunk_document(document, count_tokens=words, size=200, overlap=0)
    check_all(document, chunks, 200, words)
    by_body = {
        "Le présent chapitre s'applique à tous les agents.": "Chapitre 1 – Temps de travail",
        "Les horaires sont fixés par arrêté du maire.": "Chapitre 1 – Temps de travail > Article 3 – Horaires",
        "Une pause de vingt minutes est accordée après six heures de travail.":
            "Chapitre 1 – Temps de travail > Article 4 – Pauses",
        "Les demandes de congé sont écrites et motivées.": "Chapitre 2 – Congés > Article 5 – Demandes",
    }
    assert len(chunks) == len(by_body)
    for chunk, (body, section) in zip(chunks, by_body.items()):
        assert body in chunk.text
        assert chunk.section == section
        assert "Règlement intérieur" not in chunk.section


def test_hand_built_nested_levels() -> None:
    parsed = make_parsed([
        ("heading", "Congés annuels", None, 0),
        ("heading", "Chapitre 1", None, 1),
        ("heading", "Article 3", None, 2),
        ("text", "Texte de l'article trois."),
        ("heading", "Article 4", None, 2),
        ("text", "Texte de l'article quatre."),
        ("heading", "Annexe A", None, 1),
        ("text", "Texte de l'annexe."),
    ])
    document = make_document(parsed)
    chunks = chunk_document(document, count_tokens=words, size=50, overlap=0)
    check_all(document, chunks, 50, words)
    assert [c.section for c in chunks] == ["Chapitre 1 > Article 3", "Chapitre 1 > Article 4", "Annexe A"]


def test_title_heading_recognised_whatever_its_case(parsed_files, hash_embedder) -> None:
    # the .txt fixture writes the title in capitals: « CONGÉS ANNUELS »
    parsed = parsed_files["txt"]
    assert parsed.elements[0].text == "CONGÉS ANNUELS"
    chunks = chunk_document(make_document(parsed), count_tokens=hash_embedder.count_tokens, size=100, overlap=0)
    assert all("CONGÉS" not in c.section for c in chunks)


def test_preamble_before_first_article_has_no_section() -> None:
    parsed = make_parsed([
        ("heading", "Congés annuels", None, 0),
        ("text", "Vu le code général de la fonction publique."),
        ("heading", "Article 1 – Objet", None, 1),
        ("text", "La présente procédure fixe les règles."),
    ])
    document = make_document(parsed)
    chunks = chunk_document(document, count_tokens=words, size=50, overlap=0)
    check_all(document, chunks, 50, words)
    assert [c.section for c in chunks] == ["", "Article 1 – Objet"]
    assert "Vu le code général" in chunks[0].text


def test_document_without_text_gives_no_chunk() -> None:
    document = make_document(ParsedDocument(text="", elements=(), pages=1, warnings=("scanné",)))
    assert chunk_document(document, count_tokens=words, size=50, overlap=5) == []


# ----------------------------------------------------------------------------------------------------------------
# Long sections: size and overlap
# ----------------------------------------------------------------------------------------------------------------


def long_document() -> Document:
    return make_document(make_parsed([
        ("heading", "Congés annuels", 1, 0),
        ("heading", "Article 1 – Objet", 1, 1),
        ("text", "La présente procédure fixe les règles de dépôt des congés.", 1),
        ("heading", "Article 2 – Pièces justificatives", 1, 1),
        ("text", long_paragraph(0, 12), 1),
        ("text", long_paragraph(12, 12), 2),
        ("heading", "Article 3 – Validation", 2, 1),
        ("text", "Le chef de service valide la demande sous cinq jours ouvrés.", 2),
    ], pages=2))


def paragraphs_document() -> Document:
    """A long article made of many short paragraphs (12 words each), between two short articles."""
    return make_document(make_parsed([
        ("heading", "Congés annuels", 1, 0),
        ("heading", "Article 1 – Objet", 1, 1),
        ("text", "La présente procédure fixe les règles de dépôt des congés.", 1),
        ("heading", "Article 2 – Pièces justificatives", 1, 1),
        *[("text", long_paragraph(i, 1), 1 if i < 12 else 2) for i in range(24)],
        ("heading", "Article 3 – Validation", 2, 1),
        ("text", "Le chef de service valide la demande sous cinq jours ouvrés.", 2),
    ], pages=2))


def test_long_section_is_split_into_chunks_within_the_size(hash_embedder) -> None:
    document = long_document()
    size = 40
    chunks = chunk_document(document, count_tokens=hash_embedder.count_tokens, size=size, overlap=0)
    check_all(document, chunks, size, hash_embedder.count_tokens)
    long_section = [c for c in chunks if c.section == "Article 2 – Pièces justificatives"]
    assert len(long_section) >= 6  # 24 sentences of 12 words in chunks of at most 40 words
    assert [c.section for c in chunks if "La présente procédure" in c.text] == ["Article 1 – Objet"]
    assert [c.section for c in chunks if "Le chef de service" in c.text] == ["Article 3 – Validation"]
    assert all(c.section == "Article 2 – Pièces justificatives" for c in chunks if "Alinéa" in c.text)
    # the sentences come out in order
    assert [c.start for c in chunks] == sorted(c.start for c in chunks)


def test_no_chunk_is_only_a_heading(hash_embedder) -> None:
    document = long_document()
    chunks = chunk_document(document, count_tokens=hash_embedder.count_tokens, size=40, overlap=0)
    headings = {e.text for e in document.parsed.elements if e.kind == "heading"}
    for chunk in chunks:
        assert set(chunk.text.split("\n\n")) - headings, f"chunk {chunk.index} is only a heading: {chunk.text!r}"


@pytest.mark.parametrize("make", [long_document, paragraphs_document])
def test_no_overlap_means_no_shared_text(hash_embedder, make) -> None:
    document = make()
    chunks = chunk_document(document, count_tokens=hash_embedder.count_tokens, size=40, overlap=0)
    check_all(document, chunks, 40, hash_embedder.count_tokens)
    for previous, chunk in zip(chunks, chunks[1:]):
        assert previous.end <= chunk.start


@pytest.mark.parametrize(
    "overlap",
    [
        pytest.param(
            15,
        ),
        pytest.param(
            30,
        ),
    ],
)
def test_overlap_consecutive_chunks_of_a_section_share_text(hash_embedder, overlap: int) -> None:
    document = paragraphs_document()
    size = 40 if overlap < 30 else 60
    chunks = chunk_document(document, count_tokens=hash_embedder.count_tokens, size=size, overlap=overlap)
    check_all(document, chunks, size, hash_embedder.count_tokens)
    long_section = [c for c in chunks if c.section == "Article 2 – Pièces justificatives"]
    assert len(long_section) >= 3
    for previous, chunk in zip(long_section, long_section[1:]):
        assert chunk.start < previous.end, "consecutive chunks of one section should overlap"
        assert previous.start < chunk.start
    # no overlap across sections
    sections = [c.section for c in chunks]
    for previous, chunk in zip(chunks, chunks[1:]):
        if previous.section != chunk.section:
            assert previous.end <= chunk.start
    assert sections.count("Article 1 – Objet") == 1


def test_overlap_does_not_matter_for_short_sections(parsed_files, hash_embedder) -> None:
    document = make_document(parsed_files["md"])
    with_overlap = chunk_document(document, count_tokens=hash_embedder.count_tokens, size=100, overlap=30)
    without = chunk_document(document, count_tokens=hash_embedder.count_tokens, size=100, overlap=0)
    assert [(c.start, c.end, c.section) for c in with_overlap] == [(c.start, c.end, c.section) for c in without]


def test_size_counted_with_the_given_token_counter() -> None:
    """Sizes are in the embedder's tokens: a counter that counts characters gives smaller chunks."""
    document = long_document()
    by_chars = chunk_document(document, count_tokens=len, size=300, overlap=0)
    check_all(document, by_chars, 300, len)
    by_words = chunk_document(document, count_tokens=words, size=300, overlap=0)
    assert len(by_chars) > len(by_words)


# ----------------------------------------------------------------------------------------------------------------
# Pages of chunks
# ----------------------------------------------------------------------------------------------------------------


def test_chunk_pages_follow_the_pages_of_their_text() -> None:
    p1, p2, p3 = long_paragraph(0, 1), long_paragraph(1, 1), long_paragraph(2, 1)  # 12 words each
    parsed = make_parsed([
        ("heading", "Article 1 – Objet", 1, 1),  # 4 words
        ("text", p1, 1),
        ("text", p2, 2),
        ("text", p3, 3),
    ], pages=3)
    document = make_document(parsed)
    chunks = chunk_document(document, count_tokens=words, size=30, overlap=0)
    check_all(document, chunks, 30, words)
    assert [c.text for c in chunks] == [f"Article 1 – Objet\n\n{p1}\n\n{p2}", p3]
    assert [c.pages for c in chunks] == [(1, 2), (3,)]


def test_short_section_across_a_page_break() -> None:
    parsed = make_parsed([
        ("heading", "Article 1 – Objet", 1, 1),
        ("text", "Première partie du texte.", 1),
        ("text", "Suite du texte sur la page suivante.", 2),
        ("heading", "Article 2 – Délais", 2, 1),
        ("text", "Quinze jours avant le départ.", 2),
    ], pages=2)
    chunks = chunk_document(make_document(parsed), count_tokens=words, size=100, overlap=0)
    assert [c.pages for c in chunks] == [(1, 2), (2,)]
    assert chunks[0].payload()["page"] == 1


# ----------------------------------------------------------------------------------------------------------------
# Metadata and text to embed
# ----------------------------------------------------------------------------------------------------------------


def test_chunks_carry_the_document_metadata(parsed_files, hash_embedder) -> None:
    document = make_document(parsed_files["pdf"])
    chunks = chunk_document(document, count_tokens=hash_embedder.count_tokens, size=100, overlap=0)
    for chunk in chunks:
        assert chunk.meta == META
        assert chunk.doc_id == "rh/conges"
        assert chunk.version == "v1"
        assert chunk.source == "/srv/docs/rh/conges.pdf"
        payload = chunk.payload()
        assert payload["services"] == ["rh", "finances"]
        assert payload["title"] == "Congés annuels"
        assert payload["doc_type"] == "procedure"
        assert payload["date"] == "2024-03-12"
        assert payload["number"] == "2024-015"
        assert payload["chunk_index"] == chunk.index
        assert payload["section"] == chunk.section
        assert payload["text"] == chunk.text
        assert (payload["char_start"], payload["char_end"]) == (chunk.start, chunk.end)
        assert payload["pages"] == list(chunk.pages)


def test_embed_text_starts_with_title_and_section(parsed_files, hash_embedder) -> None:
    document = make_document(parsed_files["md"])
    chunks = chunk_document(document, count_tokens=hash_embedder.count_tokens, size=100, overlap=0,
                            title_in_embedding=True)
    assert chunks[1].embed_text == f"Congés annuels — Article 2 – Délais\n{chunks[1].text}"
    for chunk in chunks:
        assert chunk.embed_text.startswith(f"Congés annuels — {chunk.section}\n")
        assert chunk.embed_text.endswith(chunk.text)


def test_embed_text_without_title_keeps_the_section(parsed_files, hash_embedder) -> None:
    document = make_document(parsed_files["md"])
    chunks = chunk_document(document, count_tokens=hash_embedder.count_tokens, size=100, overlap=0,
                            title_in_embedding=False)
    for chunk in chunks:
        assert chunk.embed_text == f"{chunk.section}\n{chunk.text}"
        assert "Congés annuels —" not in chunk.embed_text


def test_embed_text_is_the_text_without_title_nor_section() -> None:
    document = make_document(make_parsed([("text", "Le conseil municipal approuve le budget."),
                                          ("text", "Adopté à l'unanimité.")]))
    chunks = chunk_document(document, count_tokens=words, size=50, overlap=0, title_in_embedding=False)
    assert len(chunks) == 1
    assert chunks[0].section == ""
    assert chunks[0].embed_text == chunks[0].text == "Le conseil municipal approuve le budget.\n\nAdopté à l'unanimité."


def test_embed_text_with_title_and_no_section() -> None:
    document = make_document(make_parsed([("text", "Le conseil municipal approuve le budget.")]))
    chunks = chunk_document(document, count_tokens=words, size=50, overlap=0, title_in_embedding=True)
    assert chunks[0].embed_text == "Congés annuels\nLe conseil municipal approuve le budget."


def test_chunk_indexes_run_over_the_whole_document(hash_embedder) -> None:
    chunks = chunk_document(long_document(), count_tokens=hash_embedder.count_tokens, size=40, overlap=0)
    assert len(chunks) > 3
    assert_indexes(chunks)
