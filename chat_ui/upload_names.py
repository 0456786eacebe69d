"""Names, ids and metadata checks of the documents managed from the chat (pure functions, no Chainlit, no index)."""

from __future__ import annotations

import hashlib
import re
import secrets
import unicodedata
from pathlib import Path
from typing import Iterable, Sequence

from index.documents import ALL_AGENTS, DOC_ID, SERVICE_ID

DOC_TYPES = ("deliberation", "procedure", "charte", "fiche", "autre")


def safe_filename(name: str) -> str:
    """An ASCII file name that keeps the extension: « Note de service n°3 (2025).PDF » -> « Note-de-service-n3-2025.pdf »."""
    name = Path(name or "document").name
    stem, suffix = Path(name).stem, Path(name).suffix.lower()
    ascii_stem = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode()
    ascii_stem = re.sub(r"[^A-Za-z0-9.-]+", "-", ascii_stem).strip("-._")[:100] or "document"
    suffix = re.sub(r"[^a-z0-9.]", "", suffix)[:12]
    return ascii_stem + suffix


def slug(text: str, limit: int = 48) -> str:
    ascii_text = unicodedata.normalize("NFKD", text or "").encode("ascii", "ignore").decode().lower()
    return re.sub(r"[^a-z0-9]+", "-", ascii_text).strip("-")[:limit].strip("-") or "document"


def new_doc_id(title: str, services: Sequence[str]) -> str:
    prefix = services[0].upper() if len(services) == 1 and services[0] != ALL_AGENTS else "DOC"
    doc_id = f"{prefix}-{slug(title)}-{secrets.token_hex(3)}"
    assert DOC_ID.match(doc_id), doc_id
    return doc_id


def folder_of(doc_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", doc_id.replace("/", "__"))


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_metadata(title: str, doc_type: str, services: Iterable[str], allowed: Iterable[str]) -> str | None:
    """The French reason a new document's metadata is refused, or None."""
    title = (title or "").strip()
    services = list(dict.fromkeys([services] if isinstance(services, str) else services or ()))
    allowed = set(allowed)
    if not title:
        return "Le titre est obligatoire."
    if len(title) > 200 or "\n" in title:
        return "Le titre doit tenir sur une ligne de 200 caractères au plus."
    if doc_type not in DOC_TYPES:
        return f"Type de document inconnu : « {doc_type} »."
    if doc_type == "fiche":  # a fiche opens its service-public.fr page: only the importer makes them
        return "Le type « fiche » est réservé aux fiches importées de service-public.fr : choisissez un autre type."
    if not services:
        return "Choisissez au moins un service qui pourra consulter le document."
    outside = [s for s in services if s not in allowed or not SERVICE_ID.match(s)]
    if outside:
        return ("Vous ne pouvez publier que pour vos propres services ; refusé : " + ", ".join(outside) + ".")
    if ALL_AGENTS in services and len(services) > 1:
        return "« Tous les agents » ne se combine pas avec d'autres services."
    return None
