"""Rerankers: score passages against the question to reorder what retrieval found (off by default).

A reranker only reorders hits the retriever already returned under the user's access filter: it never sees a
document the user may not see. Two kinds:

- ``CrossEncoderReranker``: a sentence-transformers CrossEncoder from a local folder or the local cache (offline).
- ``HttpReranker``: a ``/v1/rerank`` service. The question and the text of the retrieved passages leave the server.
  ``api="cohere"`` (Cohere, Jina, vLLM, Albert API): ``{"model", "query", "documents", "top_n"}`` →
  ``{"results": [{"index", "relevance_score"}]}``; ``api="tei"`` (Hugging Face Text Embeddings Inference):
  ``{"query", "texts"}`` → ``[{"index", "score"}]``. Either answer shape is accepted (and ``{"data": [...]}``).
  Personal data typed in the question is masked first (``rag.personal_data``); the passages are sent as indexed.
  Retries as every remote call (``index.model_api``). When the service stays unavailable (timeouts, 429, 5xx after the
  retries) the passages keep the retrieval order and a warning is logged, so questions are still answered; a
  refusal of the request itself (401, 403, 404, 422) is an error, which an administrator must fix.
"""

from __future__ import annotations

import logging
from typing import Literal, Protocol, Sequence

from index.model_api import Failure, RemoteCaller, RemoteServiceError, SettingNames, api_url, bearer, post_json, short
from rag.personal_data import mask

log = logging.getLogger(__name__)

NAMES = SettingNames(
    endpoint="COLLECTIVIA_SEARCH__RERANK_ENDPOINT",
    api_key="COLLECTIVIA_SEARCH__RERANK_API_KEY",
    model="COLLECTIVIA_SEARCH__RERANK_MODEL",
    timeout="COLLECTIVIA_SEARCH__RERANK_TIMEOUT_S",
)
SERVICE = "le service de reclassement"


class Reranker(Protocol):
    def scores(self, question: str, passages: Sequence[str]) -> Sequence[float]: ...


class CrossEncoderReranker:
    """A sentence-transformers CrossEncoder, loaded from a local folder or the local cache (offline)."""

    def __init__(self, model: str, *, device: str = "cpu") -> None:
        from sentence_transformers import CrossEncoder

        try:
            self._model = CrossEncoder(model, device=device)
        except OSError as exc:
            raise ValueError(
                f"reranker introuvable hors ligne : {model!r} ({exc}) ; indiquez un dossier local dans "
                "COLLECTIVIA_SEARCH__RERANKER ou laissez-le vide"
            ) from exc

    def scores(self, question: str, passages: Sequence[str]) -> Sequence[float]:
        return [float(s) for s in self._model.predict([(question, p) for p in passages])]


class HttpReranker:
    """A rerank endpoint (``{endpoint}/v1/rerank``; as is when the endpoint ends with ``/rerank``, e.g. TEI's)."""

    def __init__(
        self,
        endpoint: str,
        *,
        model: str | None = None,
        api_key: str | None = None,
        api: Literal["cohere", "tei"] = "cohere",
        timeout_s: float = 10.0,
        max_retries: int = 2,
        backoff_s: float = 0.5,
    ) -> None:
        import httpx

        self.model = model
        self.api = api
        self.caller = RemoteCaller(service=SERVICE, url=api_url(endpoint, "rerank"), names=NAMES,
                                   timeout_s=timeout_s, max_retries=max_retries, backoff_s=backoff_s,
                                   max_wait_s=max(timeout_s, 5.0))
        self._client = httpx.Client(headers=bearer(api_key), timeout=timeout_s)

    def _body(self, question: str, passages: list[str]) -> dict:
        if self.api == "tei":
            return {"query": question, "texts": passages, "truncate": True}
        body: dict = {"query": question, "documents": passages, "top_n": len(passages)}
        if self.model:
            body["model"] = self.model
        return body

    def _request(self, question: str, passages: list[str]) -> list[float]:
        answer = post_json(self._client, self.caller.url, self._body(question, passages),
                           timeout_s=self.caller.timeout_s)
        return parse_scores(answer, len(passages))

    def scores(self, question: str, passages: Sequence[str]) -> Sequence[float]:
        passages = list(passages)
        if not passages:
            return []
        question = mask(question)  # personal data typed in the question stays on the server
        try:
            return self.caller.call(lambda: self._request(question, passages))
        except RemoteServiceError as exc:
            if not exc.retryable:
                raise
            # Unavailable: the retrieval order (descending scores) is kept rather than failing the question.
            log.warning("%s ; les passages gardent l'ordre de la recherche", exc)
            return [float(len(passages) - i) for i in range(len(passages))]

    def close(self) -> None:
        self._client.close()


def parse_scores(answer: object, count: int) -> list[float]:
    """One score per passage, in the passages' order, from any of the accepted answer shapes; passages the service
    left out (``top_n``) score below every returned one."""
    items = answer
    if isinstance(answer, dict):
        items = answer.get("results", answer.get("data"))
    if not isinstance(items, list):
        raise Failure(200, "réponse sans liste de résultats : " + short(repr(answer), 80))
    scores: dict[int, float] = {}
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("index"), int):
            raise Failure(200, "résultat sans « index » : " + short(repr(item), 80))
        score = item.get("relevance_score", item.get("score"))
        if not isinstance(score, (int, float)) or not 0 <= item["index"] < count:
            raise Failure(200, "résultat sans score ou d'index hors limites : " + short(repr(item), 80))
        scores[item["index"]] = float(score)
    floor = min(scores.values(), default=0.0) - 1.0
    return [scores.get(i, floor) for i in range(count)]
