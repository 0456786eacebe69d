"""The one place that turns settings into concrete objects (embedder, store, ingestor, retriever)."""

from __future__ import annotations

import warnings

from collectivia.settings import Settings
from index.embed import Bm25Encoder, E5Embedder, Embedder, SentenceTransformerEmbedder, UseEmbedder
from ingest.parse import ParseOptions
from ingest.pipeline import ChunkingOptions, Ingestor
from index.store import CollectionInfo, EngineTuning, Store, StoreError
from index.edge_store import EdgeStore, IndexBusyError
from index.server_store import ServerStore
from rag.retrieve import HybridRetriever


def build_embedder(settings: Settings) -> Embedder:
    cfg = settings.embedder
    if cfg.kind == "use":
        return UseEmbedder(threads=cfg.threads, batch_size=cfg.batch_size)
    if cfg.kind == "e5":
        return E5Embedder(batch_size=cfg.batch_size)
    if cfg.kind in ("mistral", "openai-compatible"):
        return build_remote_embedder(settings)
    if not cfg.model:
        raise ValueError(
            "COLLECTIVIA_EMBEDDER__KIND=sentence-transformers exige COLLECTIVIA_EMBEDDER__MODEL "
            "(nom d'un modèle présent dans le cache local ou chemin d'un dossier)"
        )
    return SentenceTransformerEmbedder(cfg.model, batch_size=cfg.batch_size, threads=cfg.threads)


def build_remote_embedder(settings: Settings) -> Embedder:
    """The remote embedders (off by default: the text of every chunk and question goes to the service); questions
    leave with their personal data masked."""
    from index.remote_embed import MistralEmbedder, OpenAICompatibleEmbedder
    from rag.personal_data import mask

    cfg = settings.embedder
    key = cfg.api_key.get_secret_value() if cfg.api_key else None
    common = dict(dim=cfg.dim, batch_size=cfg.batch_size, timeout_s=cfg.timeout_s, max_retries=cfg.max_retries,
                  requests_per_s=cfg.requests_per_s, prepare_query=mask)
    if cfg.kind == "mistral":
        if not key:
            raise ValueError("COLLECTIVIA_EMBEDDER__KIND=mistral exige COLLECTIVIA_EMBEDDER__API_KEY")
        return MistralEmbedder(key, model=cfg.model or "mistral-embed", endpoint=cfg.endpoint, **common)
    if not cfg.endpoint or not cfg.model:
        raise ValueError("COLLECTIVIA_EMBEDDER__KIND=openai-compatible exige COLLECTIVIA_EMBEDDER__ENDPOINT et "
                         "COLLECTIVIA_EMBEDDER__MODEL")
    return OpenAICompatibleEmbedder(cfg.endpoint, cfg.model, api_key=key, **common)


def engine_tuning(q) -> EngineTuning:
    """The engine settings a new index is created with (``COLLECTIVIA_QDRANT__EF_CONSTRUCT`` and the others)."""
    return EngineTuning(ef_construct=q.ef_construct, filter_graphs=q.filter_graphs, max_segment_mb=q.max_segment_mb)


def build_store(settings: Settings, embedder: Embedder, *, own: bool = False) -> Store:
    """The index of the settings. The embedded one opens in one process only: while another holds it and lends it
    (``collectivia serve``, see ``index.owner``), a ``RemoteStore`` that sends every call there; ``own=True`` (the
    chat) refuses to borrow it."""
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
            return ServerStore(client, q.collection, info, shards=q.shards, replication_factor=q.replication_factor,
                               tuning=engine_tuning(q))
    try:
        return EdgeStore(settings.qdrant_path, info, engine_tuning(q))
    except StoreError as exc:
        if own:
            raise
        from index.remote_store import connect_owner

        # A chat that has just opened the index starts lending it a moment later.
        busy = isinstance(exc, IndexBusyError)
        remote = connect_owner(settings.qdrant_path, info, wait_s=3.0 if busy else 0.0)
        if remote is None:
            raise
        return remote


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
    if cfg.reranker == "http" and cfg.rerank_endpoint:
        from rag.rerank import HttpReranker

        reranker = HttpReranker(
            cfg.rerank_endpoint, model=cfg.rerank_model, api=cfg.rerank_api,
            api_key=cfg.rerank_api_key.get_secret_value() if cfg.rerank_api_key else None,
            timeout_s=cfg.rerank_timeout_s, max_retries=cfg.rerank_max_retries,
        )
    elif cfg.reranker:
        from rag.rerank import CrossEncoderReranker

        reranker = CrossEncoderReranker(cfg.reranker)
    return HybridRetriever(
        store, embedder, Bm25Encoder(), prefetch=cfg.prefetch, mode=cfg.mode, max_per_doc=cfg.max_per_doc,
        reranker=reranker, rerank_candidates=cfg.rerank_candidates, fusion=cfg.fusion, dense_weight=cfg.dense_weight,
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
