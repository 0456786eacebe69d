"""The one place that turns settings into concrete objects (embedder, store, ingestor, retriever)."""

from __future__ import annotations

import warnings

from collectivia.settings import Settings
from ingest.embed import Bm25Encoder, E5Embedder, Embedder, SentenceTransformerEmbedder, UseEmbedder
from ingest.parse import ParseOptions
from ingest.pipeline import ChunkingOptions, Ingestor
from ingest.store import CollectionInfo, EdgeStore, ServerStore, Store
from rag.retrieve import HybridRetriever


def build_embedder(settings: Settings) -> Embedder:
    cfg = settings.embedder
    if cfg.kind == "use":
        return UseEmbedder(threads=cfg.threads, batch_size=cfg.batch_size)
    if cfg.kind == "e5":
        return E5Embedder(batch_size=cfg.batch_size)
    if not cfg.model:
        raise ValueError(
            "COLLECTIVIA_EMBEDDER__KIND=sentence-transformers exige COLLECTIVIA_EMBEDDER__MODEL "
            "(nom d'un modèle présent dans le cache local ou chemin d'un dossier)"
        )
    return SentenceTransformerEmbedder(cfg.model, batch_size=cfg.batch_size, threads=cfg.threads)


def build_store(settings: Settings, embedder: Embedder) -> Store:
    info = CollectionInfo(embedder=embedder.name, dim=embedder.dim)
    q = settings.qdrant
    if q.url:
        from qdrant_client import QdrantClient

        if q.url == ":memory:":
            client = QdrantClient(location=":memory:")
        else:
            client = QdrantClient(
                url=q.url, api_key=q.api_key.get_secret_value() if q.api_key else None, timeout=q.timeout_s
            )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # local mode's note about payload indexes
            return ServerStore(client, q.collection, info, shards=q.shards, replication_factor=q.replication_factor)
    return EdgeStore(settings.qdrant_path, info)


def build_parse_options(settings: Settings) -> ParseOptions:
    return ParseOptions(
        max_file_mb=settings.limits.max_file_mb,
        max_unpacked_mb=settings.limits.max_unpacked_mb,
        max_compression_ratio=settings.limits.max_compression_ratio,
        ocr=settings.ocr.enabled,
        ocr_languages=settings.ocr.languages,
    )


def build_ingestor(settings: Settings, embedder: Embedder, store: Store) -> Ingestor:
    return Ingestor(
        store,
        embedder,
        Bm25Encoder(),
        chunking=ChunkingOptions(
            size=settings.chunk.size, overlap=settings.chunk.overlap,
            title_in_embedding=settings.chunk.title_in_embedding,
        ),
        parse_options=build_parse_options(settings),
        parse_timeout_s=settings.limits.parse_timeout_s,
        parse_workers=settings.limits.parse_workers,
    )


def build_retriever(settings: Settings, embedder: Embedder, store: Store) -> HybridRetriever:
    cfg = settings.search
    reranker = None
    if cfg.reranker:
        from rag.retrieve import CrossEncoderReranker

        reranker = CrossEncoderReranker(cfg.reranker)
    return HybridRetriever(
        store, embedder, Bm25Encoder(), prefetch=cfg.prefetch, mode=cfg.mode, max_per_doc=cfg.max_per_doc,
        reranker=reranker, rerank_candidates=cfg.rerank_candidates,
    )


def build_answerability(settings: Settings):
    from rag.answerability import AnswerabilityModel

    return AnswerabilityModel.load(settings.search.answerability_model)


def build_generator(settings: Settings, sparse: Bm25Encoder, embedder: Embedder | None = None, sentence_model=None):
    from rag.generate import ExtractiveGenerator, MistralGenerator

    llm = settings.llm
    if not llm.enabled:
        return ExtractiveGenerator(sparse, embedder, sentence_model=sentence_model)
    return MistralGenerator(
        endpoint=llm.base_url,
        api_key=llm.api_key.get_secret_value() if llm.api_key else None,
        model=llm.model,
        temperature=llm.temperature,
        max_tokens=llm.max_tokens,
        timeout_s=llm.timeout_s,
        max_retries=llm.max_retries,
    )


def build_assistant(settings: Settings, embedder: Embedder, store: Store):
    from rag.assistant import Assistant
    from rag.citations import SupportChecker

    retriever = build_retriever(settings, embedder, store)
    model = build_answerability(settings)
    return Assistant(
        retriever,
        build_generator(settings, retriever.sparse, embedder, model.sentence),
        SupportChecker(retriever.sparse, embedder),
        k=settings.search.k,
        model=model,
        answer_threshold=settings.search.answer_threshold,
        not_found_threshold=settings.search.not_found_threshold,
        rewrite_followups=settings.llm.rewrite_followups,
    )
