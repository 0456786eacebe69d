"""The one recipe of a document's version, used by the ``Ingestor`` only.

A version is a hash of what the document is made of (a file's bytes, or an importer's fingerprint of what it read,
or else the parsed content itself), of its metadata and of the indexing settings (embedder, chunking, sparse
encoder): change any of them and the document is indexed again; change none and a rerun finds it « inchangé ».
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict

from index.documents import DocumentMeta, ParsedDocument

SCHEME = 1  # bump to re-index everything after a change of what is stored


def settings_key(embedder: str, chunking: object, sparse: str) -> bytes:
    """The indexing settings a version depends on (``chunking``: a dataclass of chunking options)."""
    return json.dumps([embedder, asdict(chunking), sparse, SCHEME], sort_keys=True).encode()


def document_version(content: bytes, meta: DocumentMeta, settings: bytes) -> str:
    digest = hashlib.sha256()
    digest.update(content)
    digest.update(json.dumps(meta.payload(), sort_keys=True, ensure_ascii=False).encode())
    digest.update(settings)
    return digest.hexdigest()[:32]


def parsed_fingerprint(parsed: ParsedDocument) -> bytes:
    """What a parsed document is made of, for importers that have no fingerprint of their own."""
    elements = [[e.kind, e.start, e.end, e.page, e.level] for e in parsed.elements]
    return json.dumps([parsed.text, elements, parsed.pages, parsed.ocr], ensure_ascii=False).encode()
