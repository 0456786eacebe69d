"""Core values of ingestion: document metadata, parsed documents and chunks.

Metadata comes from a sidecar ``<file>.meta.yaml`` (or ``<stem>.meta.yaml``) or a folder-level ``_meta.yaml``;
the sidecar wins field by field. A document without ``services`` is refused: deny by default.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

DocType = Literal["deliberation", "procedure", "charte", "fiche", "autre"]
Status = Literal["en_vigueur", "abroge"]
Confidentiality = Literal["public", "interne", "confidentiel"]

ALL_AGENTS = "tous"
"""Service id meaning 'every agent of the authority'."""

SERVICE_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
DOC_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,199}$")


class MetadataError(ValueError):
    """Metadata of a document is missing or invalid; the message names the file and the field."""


class _MetaModel(BaseModel):
    """Validation schema of the metadata files (all optional here, completeness is checked after merging)."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = None
    title: str | None = None
    doc_type: DocType | None = None
    services: list[str] | None = None
    confidentiality: Confidentiality | None = None
    date: dt.date | None = None
    number: str | None = None
    status: Status | None = None
    url: str | None = None
    supersedes: list[str] | None = None

    @field_validator("services", mode="before")
    @classmethod
    def _services_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [value]
        return value

    @field_validator("services")
    @classmethod
    def _service_ids(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("la liste est vide : indiquez au moins un service, ou « tous »")
        for service in value:
            if not SERVICE_ID.match(service):
                raise ValueError(
                    f"identifiant de service invalide {service!r} : minuscules ASCII, chiffres, « - » ou « _ » "
                    "(par exemple « etat-civil », pas « État-Civil »)"
                )
        return value

    @field_validator("number", mode="before")
    @classmethod
    def _number_as_text(cls, value: Any) -> Any:
        return None if value is None else str(value)

    @field_validator("id")
    @classmethod
    def _doc_id(cls, value: str | None) -> str | None:
        if value is not None and not DOC_ID.match(value):
            raise ValueError(f"identifiant de document invalide {value!r} : lettres, chiffres, « . _ / - »")
        return value


@dataclass(frozen=True, slots=True)
class DocumentMeta:
    title: str
    doc_type: str
    services: tuple[str, ...]
    confidentiality: str = "interne"
    date: str | None = None
    number: str | None = None
    status: str = "en_vigueur"
    url: str | None = None
    supersedes: tuple[str, ...] = ()

    def payload(self) -> dict[str, Any]:
        data = asdict(self)
        data["services"] = list(self.services)
        data["supersedes"] = list(self.supersedes)
        return data

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> "DocumentMeta":
        return cls(
            title=payload["title"],
            doc_type=payload["doc_type"],
            services=tuple(payload["services"]),
            confidentiality=payload.get("confidentiality", "interne"),
            date=payload.get("date"),
            number=payload.get("number"),
            status=payload.get("status", "en_vigueur"),
            url=payload.get("url"),
            supersedes=tuple(payload.get("supersedes") or ()),
        )


@dataclass(frozen=True, slots=True)
class Element:
    """One structural element of a parsed document, with its offsets in ``ParsedDocument.text``."""

    kind: str  # "heading" | "text" | "list" | "table"
    text: str
    start: int
    end: int
    page: int | None = None
    level: int | None = None  # heading depth, 0 = top


@dataclass(frozen=True, slots=True)
class ParsedDocument:
    text: str
    elements: tuple[Element, ...]
    pages: int | None = None
    ocr: bool = False
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Document:
    """A document ready to chunk: its stable id, version hash, metadata and parsed content."""

    doc_id: str
    version: str
    meta: DocumentMeta
    parsed: ParsedDocument
    source: str  # where the original lives (absolute path or URL)


@dataclass(frozen=True, slots=True)
class Chunk:
    doc_id: str
    version: str
    index: int
    text: str
    section: str
    pages: tuple[int, ...]
    start: int
    end: int
    meta: DocumentMeta
    source: str
    embed_text: str = field(default="", compare=False)

    def payload(self) -> dict[str, Any]:
        return {
            **self.meta.payload(),
            "doc_id": self.doc_id,
            "version": self.version,
            "chunk_index": self.index,
            "text": self.text,
            "section": self.section,
            "pages": list(self.pages),
            "page": self.pages[0] if self.pages else None,
            "char_start": self.start,
            "char_end": self.end,
            "source": self.source,
        }


# --------------------------------------------------------------------------------------------------------------
# Metadata files
# --------------------------------------------------------------------------------------------------------------

META_SUFFIX = ".meta.yaml"
FOLDER_META = "_meta.yaml"


def sidecar_paths(path: Path) -> list[Path]:
    """Sidecar candidates of a document, most specific first: ``a.pdf.meta.yaml`` then ``a.meta.yaml``."""
    return [path.with_name(path.name + META_SUFFIX), path.with_name(path.stem + META_SUFFIX)]


def _read_meta_file(path: Path) -> dict[str, Any]:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise MetadataError(f"{path} : fichier de métadonnées illisible ({exc})") from exc
    except yaml.YAMLError as exc:
        raise MetadataError(f"{path} : YAML invalide ({exc})") from exc
    except ValueError as exc:  # e.g. an impossible unquoted date such as 2024-13-45
        raise MetadataError(f"{path} : valeur invalide ({exc}) ; les dates s'écrivent AAAA-MM-JJ") from exc
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise MetadataError(f"{path} : le fichier doit contenir un dictionnaire « clé: valeur »")
    try:
        model = _MetaModel.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"champ « {'.'.join(str(p) for p in err['loc'])} » : {err['msg']}"
            + (f" (valeur {err['input']!r})" if "input" in err and not isinstance(err["input"], dict) else "")
            for err in exc.errors()
        )
        raise MetadataError(f"{path} : {problems}") from exc
    return model.model_dump(exclude_none=True)


def load_meta(path: Path, root: Path | None = None) -> tuple[str | None, DocumentMeta]:
    """Merge the folder ``_meta.yaml`` files (from ``root`` down to the file's folder, inner ones winning) and the
    sidecar, which wins over all of them.

    Returns the explicit document id (or None) and the validated metadata. Raises ``MetadataError``.
    """
    merged: dict[str, Any] = {}
    sources: list[Path] = []
    folders = [path.parent]
    if root is not None:
        try:
            relative = path.parent.relative_to(root)
        except ValueError:
            relative = None
        if relative is not None:
            folders = [root.joinpath(*relative.parts[:i]) for i in range(len(relative.parts) + 1)]
    for folder_meta in (folder / FOLDER_META for folder in folders):
        if not folder_meta.is_file():
            continue
        folder_data = _read_meta_file(folder_meta)
        if "id" in folder_data:
            raise MetadataError(f"{folder_meta} : champ « id » interdit dans un {FOLDER_META} (il est propre à un fichier)")
        merged.update(folder_data)
        sources.append(folder_meta)
    for sidecar in sidecar_paths(path):
        if sidecar.is_file():
            data = _read_meta_file(sidecar)
            merged.update(data)
            sources.append(sidecar)
            break
    where = ", ".join(str(s) for s in sources) or f"aucun fichier {path.name}{META_SUFFIX} ni {FOLDER_META}"
    if "services" not in merged:
        raise MetadataError(
            f"{path} : champ « services » absent ({where}). Accès refusé par défaut : déclarez les services "
            f"autorisés dans {path.name}{META_SUFFIX} (par exemple « services: [rh] » ou « services: [tous] »)."
        )
    if ALL_AGENTS in merged["services"] and len(merged["services"]) > 1:
        raise MetadataError(
            f"{path} : champ « services » : « tous » ne se combine pas avec d'autres services "
            f"(valeur {merged['services']!r})"
        )
    title = merged.get("title") or path.stem.replace("_", " ").replace("-", " ").strip()
    date = merged.get("date")
    meta = DocumentMeta(
        title=title,
        doc_type=merged.get("doc_type", "autre"),
        services=tuple(merged["services"]),
        confidentiality=merged.get("confidentiality", "interne"),
        date=date.isoformat() if date else None,
        number=merged.get("number"),
        status=merged.get("status", "en_vigueur"),
        url=merged.get("url"),
        supersedes=tuple(merged.get("supersedes", ())),
    )
    return merged.get("id"), meta
