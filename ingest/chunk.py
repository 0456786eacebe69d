"""Structure-aware chunking (pure): headings and articles are boundaries; long sections are split by size.

Each chunk carries its section path (``Article 3 > Congés``), its page number(s), its character offsets into
the parsed text and the document metadata. Sizes are counted in tokens of the embedder, through the
``count_tokens`` function it provides; splitting inside a section uses LangChain's recursive splitter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from langchain_text_splitters import RecursiveCharacterTextSplitter

from index.documents import Chunk, Document, Element

SEPARATORS = ["\n\n", "\n", ". ", "; ", ", ", " ", ""]


@dataclass(frozen=True, slots=True)
class _Block:
    section: str
    start: int
    end: int
    body_start: int  # where the text after the block's heading(s) begins


def _normalise(text: str) -> str:
    return " ".join(text.lower().split())


def _blocks(document: Document) -> list[_Block]:
    """Cut the parsed text at headings; a run of headings opens one block with the deepest section path."""
    elements: Sequence[Element] = document.parsed.elements
    title = _normalise(document.meta.title)
    stack: list[tuple[int, str]] = []
    blocks: list[_Block] = []
    block_start: int | None = None
    block_section = ""
    has_body = False
    body_start = 0
    last_end = 0
    for el in elements:
        if el.kind == "heading":
            if block_start is not None and has_body:
                blocks.append(_Block(block_section, block_start, last_end, body_start))
                block_start, has_body = None, False
            level = el.level if el.level is not None else 1
            while stack and stack[-1][0] >= level:
                stack.pop()
            is_doc_title = _normalise(el.text) == title or (level == 0 and not blocks and not stack)
            if not is_doc_title:
                stack.append((level, el.text))
            block_section = " > ".join(text for _, text in stack)
            if block_start is None:
                block_start = el.start
        else:
            if block_start is None:
                block_start = el.start
                block_section = " > ".join(text for _, text in stack)
            if not has_body:
                body_start = el.start
            has_body = True
        last_end = el.end
    if block_start is not None:
        blocks.append(_Block(block_section, block_start, last_end, body_start if has_body else last_end))
    return blocks


def embed_text_for(title: str, section: str, text: str, title_in_embedding: bool = True) -> str:
    """The text embedded for a chunk: its title and section path as a header line, then the passage."""
    header = " — ".join(part for part in (title if title_in_embedding else "", section) if part)
    return f"{header}\n{text}" if header else text


def chunk_document(
    document: Document,
    *,
    count_tokens: Callable[[str], int],
    size: int,
    overlap: int,
    title_in_embedding: bool = True,
) -> list[Chunk]:
    """Split a document into chunks of at most ``size`` tokens (a single over-long sentence may exceed it)."""
    text = document.parsed.text
    pieces: list[tuple[str, int, int]] = []
    for block in _blocks(document):
        block_text = text[block.start : block.end]
        if count_tokens(block_text) <= size:
            pieces.append((block.section, block.start, block.end))
            continue
        # The heading(s) opening the block go with the first piece: split the body to leave room for them.
        heading_tokens = count_tokens(text[block.start : block.body_start]) if block.body_start > block.start else 0
        budget = max(size - heading_tokens, max(size // 2, 1))
        splitter = RecursiveCharacterTextSplitter(
            chunk_size=budget,
            chunk_overlap=min(overlap, budget - 1),
            length_function=count_tokens,
            separators=SEPARATORS,
            keep_separator="end",
            strip_whitespace=True,
        )
        body = text[block.body_start : block.end]
        # Locate each piece ourselves (LangChain's start_index mixes characters with the overlap in tokens).
        located: list[tuple[int, int]] = []
        search_from = 0
        for part in splitter.split_text(body):
            at = body.find(part, search_from)
            if at < 0:  # cannot happen with pieces that are stripped substrings; keep the text rather than lose it
                at = search_from
            located.append((block.body_start + at, block.body_start + at + len(part)))
            search_from = at + 1
        if located:
            located[0] = (block.start, located[0][1])
        pieces.extend((block.section, start, end) for start, end in located)

    chunks: list[Chunk] = []
    elements = document.parsed.elements
    for index, (section, start, end) in enumerate(pieces):
        passage = text[start:end]
        pages = tuple(sorted({el.page for el in elements if el.page is not None and el.start < end and el.end > start}))
        chunks.append(
            Chunk(
                doc_id=document.doc_id,
                version=document.version,
                index=index,
                text=passage,
                section=section,
                pages=pages,
                start=start,
                end=end,
                meta=document.meta,
                source=document.source,
                embed_text=embed_text_for(document.meta.title, section, passage, title_in_embedding),
            )
        )
    return chunks
