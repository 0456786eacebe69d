"""Citations: ``[n]`` markers mapped to sources, dangling markers removed, each cited sentence checked for support.

A sentence is supported by a passage when enough of its content words (French stems, stop words left out) occur in
the passage, or when their embeddings are close. Unsupported citations are kept, flagged, for the agent and the
evaluators to see.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Sequence
from urllib.parse import quote

import numpy as np

from index.embed import Bm25Encoder, Embedder
from rag.retrieve import ScoredChunk

MARKER = re.compile(r"\s?\[(\d{1,3})\]")
SENTENCE_END = re.compile(r"(?<=[.!?…»])\s+(?=[A-ZÀ-ÖØ-ÞŒ«\"0-9-])|\n+")
ABBREVIATION = re.compile(r"(?:^|[\s'’])(?:[A-Z]|M|MM|Mme|Mmes|Mlle|Dr|Me|art|Art|al|cf|p|pp|n|no|vol|chap|etc|av|bd|St|Ste)\.$")
LEXICAL_SUPPORT = 0.5
EMBEDDING_SUPPORT = 0.6


@dataclass(frozen=True, slots=True)
class Citation:
    n: int
    doc_id: str
    title: str
    doc_type: str
    services: tuple[str, ...]
    page: int | None
    section: str
    passage: str
    open_url: str
    supported: bool = True

    def to_json(self) -> dict:
        return {
            "n": self.n,
            "doc_id": self.doc_id,
            "title": self.title,
            "doc_type": self.doc_type,
            "page": self.page,
            "section": self.section,
            "services": list(self.services),
            "passage": self.passage,
            "open_url": self.open_url,
            "supported": self.supported,
        }


def open_url(source: ScoredChunk) -> str:
    """Where the agent opens the original: the authorised document route of the chat, at the page."""
    url = f"/documents/{quote(source.doc_id, safe='')}"
    return f"{url}#page={source.page}" if source.page else url


def strip_dangling(text: str, n_sources: int) -> str:
    """Remove markers that point to no source."""
    return MARKER.sub(lambda m: m.group(0) if 1 <= int(m.group(1)) <= n_sources else "", text)


def split_sentences(text: str) -> list[str]:
    """Sentences of a French text; no cut after abbreviations such as « M. », « art. » or « L. »."""
    out: list[str] = []
    for piece in (s.strip() for s in SENTENCE_END.split(text) if s and s.strip()):
        if out and ABBREVIATION.search(out[-1]) and not out[-1].endswith("\n"):
            out[-1] = f"{out[-1]} {piece}"
        else:
            out.append(piece)
    return out


class SupportChecker:
    def __init__(self, sparse: Bm25Encoder, embedder: Embedder | None = None) -> None:
        self.sparse = sparse
        self.embedder = embedder

    def lexical(self, sentence: str, passage: str) -> float:
        terms = set(self.sparse.embed_query(MARKER.sub("", sentence))[0])
        if not terms:
            return 1.0
        return len(terms & self.sparse.term_ids(passage)) / len(terms)

    def supported(self, sentence: str, passage: str) -> bool:
        if self.lexical(sentence, passage) >= LEXICAL_SUPPORT:
            return True
        if self.embedder is None:
            return False
        a = self.embedder.embed_query(MARKER.sub("", sentence))
        b = self.embedder.embed_query(passage)
        return float(np.dot(a, b)) >= EMBEDDING_SUPPORT


PASSAGE_WIDTH = 700  # characters of the source shown around the cited sentence


def passage_around(text: str, sentence: str, checker: "SupportChecker | None" = None,
                   width: int = PASSAGE_WIDTH) -> str:
    """The part of a source from the sentence that cites it (the sentence quoted, or the source sentence that shares
    most of its words) to a sentence end ``width`` characters on; the whole source when it is short."""
    if len(text) <= width:
        return text
    quoted = MARKER.sub("", sentence).strip().strip("«»\"“” ").strip()
    at = text.find(quoted) if quoted else -1
    if at < 0:
        parts = split_sentences(text)
        if not parts or checker is None:
            return text[:width]
        best = max(parts, key=lambda p: checker.lexical(quoted, p))
        at, quoted = text.find(best), best
        if at < 0:
            return text[:width]
    start = at  # the card opens on the cited sentence (the agent reads its first lines), then what follows
    end = min(len(text), at + max(width, len(quoted)))
    if end < len(text):  # end at a sentence end
        boundary = text.rfind(". ", at + len(quoted), end)
        end = boundary + 1 if boundary >= 0 else end
    return ("… " if start > 0 else "") + text[start:end].strip() + (" …" if end < len(text) else "")


def build_citations(
    text: str, sources: Sequence[ScoredChunk], checker: SupportChecker, *, url: Callable[[ScoredChunk], str] = open_url
) -> tuple[str, tuple[Citation, ...]]:
    """Clean the answer's markers and return it with one ``Citation`` per cited source, by source number."""
    text = strip_dangling(text, len(sources))
    unsupported: set[int] = set()
    cited: list[int] = []
    first_sentence: dict[int, str] = {}
    for sentence in split_sentences(text):
        for match in MARKER.finditer(sentence):
            n = int(match.group(1))
            if n not in cited:
                cited.append(n)
                first_sentence[n] = sentence
            if not checker.supported(sentence, sources[n - 1].text):
                unsupported.add(n)
    citations = tuple(
        Citation(
            n=n,
            doc_id=s.doc_id,
            title=s.title,
            doc_type=s.doc_type,
            services=s.services,
            page=s.page,
            section=s.section,
            passage=passage_around(s.text, first_sentence[n], checker),
            open_url=url(s),
            supported=n not in unsupported,
        )
        for n in sorted(cited)
        for s in (sources[n - 1],)
    )
    return text, citations
