"""Remote embedders, off by default: the text to embed leaves the server (every chunk at indexing, every question).

- ``MistralEmbedder``: Mistral's API (``mistral-embed``) through the official ``mistralai`` SDK.
- ``OpenAICompatibleEmbedder``: any server speaking ``POST /v1/embeddings`` (vLLM, TEI, Ollama, Albert API…), httpx.

Both satisfy ``index.embed.Embedder``: requests of at most ``batch_size`` texts, retries with backoff on
429/5xx/timeouts honouring ``Retry-After`` (``index.model_api``), an optional request rate, French errors quoting the URL
and the HTTP status. The dimension is the configured one, or learned from one call at first use; the name
(``mistral:mistral-embed``, ``openai-compatible:<model>``) and the dimension are stored with the index, which refuses
to be opened with another embedder.

Token counts: the chunker measures chunks in embedder tokens, but the remote tokenizer is not available offline.
``approx_tokens`` estimates them: each word counts one token per started group of four characters, each other sign
one token. On French text it runs slightly above Mistral's and BPE tokenizers, so chunks stay within
``COLLECTIVIA_CHUNK__SIZE`` of real tokens.
"""

from __future__ import annotations

import math
import re
from typing import Callable, Sequence

import numpy as np

from index.embed import normalised
from index.offline import configure_offline
from index.model_api import Failure, RemoteCaller, RemoteServiceError, SettingNames, api_url, bearer, post_json, short

configure_offline()

NAMES = SettingNames(
    endpoint="COLLECTIVIA_EMBEDDER__ENDPOINT",
    api_key="COLLECTIVIA_EMBEDDER__API_KEY",
    model="COLLECTIVIA_EMBEDDER__MODEL",
    timeout="COLLECTIVIA_EMBEDDER__TIMEOUT_S",
    batch="COLLECTIVIA_EMBEDDER__BATCH_SIZE",
)
SERVICE = "le service d'embeddings"
MISTRAL_ENDPOINT = "https://api.mistral.ai"
_PIECES = re.compile(r"\w+|[^\w\s]")


def approx_tokens(text: str) -> int:
    """Tokens of ``text`` for a remote model, estimated (see the module's docstring)."""
    return sum(math.ceil(len(p) / 4) if p[0].isalnum() or p[0] == "_" else 1 for p in _PIECES.findall(text))


class _RemoteEmbedder:
    """Batching, dimension and vector checks shared by the remote embedders; ``_request`` is the one API call."""

    name: str
    caller: RemoteCaller

    def __init__(self, *, name: str, model: str, url: str, dim: int | None, batch_size: int, timeout_s: float,
                 max_retries: int, requests_per_s: float | None, backoff_s: float,
                 prepare_query: Callable[[str], str] | None) -> None:
        self.name = name
        self.model = model
        self.caller = RemoteCaller(service=SERVICE, url=url, names=NAMES, timeout_s=timeout_s,
                                   max_retries=max_retries, requests_per_s=requests_per_s, backoff_s=backoff_s)
        self._dim = dim
        self._batch = max(1, batch_size)
        # What a question becomes before it leaves the server (the wiring masks personal data: rag.personal_data).
        self._prepare_query = prepare_query

    @property
    def dim(self) -> int:
        if self._dim is None:  # learned once, from the model itself
            self._dim = int(self._call(["dimension"]).shape[1])
        return self._dim

    def _call(self, texts: list[str]) -> np.ndarray:
        # Servers refuse empty inputs; a blank text is embedded as a full stop (it carries no meaning either way).
        vectors = self.caller.call(lambda: self._request([t if t.strip() else "." for t in texts]))
        if len(vectors) != len(texts):
            raise RemoteServiceError(
                f"{SERVICE} {self.caller.url} a renvoyé {len(vectors)} vecteurs pour {len(texts)} textes"
            )
        try:
            array = np.asarray(vectors, dtype=np.float32)
        except ValueError:
            raise RemoteServiceError(
                f"{SERVICE} {self.caller.url} a renvoyé des vecteurs de tailles différentes") from None
        if array.ndim != 2 or not array.shape[1]:
            raise RemoteServiceError(f"{SERVICE} {self.caller.url} a renvoyé des vecteurs vides")
        if self._dim is not None and array.shape[1] != self._dim:
            raise RemoteServiceError(
                f"{SERVICE} {self.caller.url} a renvoyé des vecteurs de {array.shape[1]} dimensions au lieu de "
                f"{self._dim} (COLLECTIVIA_EMBEDDER__DIM, ou l'index a été construit avec un autre modèle)"
            )
        return array

    def _request(self, texts: list[str]) -> list[list[float]]:
        raise NotImplementedError

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = [self._call(list(texts[i : i + self._batch])) for i in range(0, len(texts), self._batch)]
        return normalised(np.concatenate(out))

    def embed_query(self, text: str) -> np.ndarray:
        if self._prepare_query is not None:
            text = self._prepare_query(text)
        return normalised(self._call([text]))[0]

    def count_tokens(self, text: str) -> int:
        return approx_tokens(text)


def _ordered(data: object) -> list[list[float]]:
    """The ``embedding`` of each item of an OpenAI/Mistral ``data`` list, in ``index`` order."""
    if not isinstance(data, list) or not all(isinstance(d, dict) and "embedding" in d for d in data):
        raise Failure(200, "pas de liste « data » d'objets « embedding » : " + short(repr(data), 80))
    def position(pair: tuple[int, dict]) -> int:
        index = pair[1].get("index")
        return index if isinstance(index, int) else pair[0]

    return [item["embedding"] for _, item in sorted(enumerate(data), key=position)]


class OpenAICompatibleEmbedder(_RemoteEmbedder):
    """``POST {endpoint}/v1/embeddings`` (``{endpoint}/embeddings`` when the endpoint ends with ``/v1``, as is when it
    ends with ``/embeddings``), body ``{"model", "input": [texts]}``, answer ``{"data": [{"index", "embedding"}]}``."""

    def __init__(
        self,
        endpoint: str,
        model: str,
        *,
        api_key: str | None = None,
        dim: int | None = None,
        batch_size: int = 32,
        timeout_s: float = 30.0,
        max_retries: int = 3,
        requests_per_s: float | None = None,
        backoff_s: float = 0.5,
        prepare_query: Callable[[str], str] | None = None,
    ) -> None:
        import httpx

        super().__init__(name=f"openai-compatible:{model}", model=model, url=api_url(endpoint, "embeddings"), dim=dim,
                         batch_size=batch_size, timeout_s=timeout_s, max_retries=max_retries,
                         requests_per_s=requests_per_s, backoff_s=backoff_s, prepare_query=prepare_query)
        self._client = httpx.Client(headers=bearer(api_key), timeout=timeout_s)

    def _request(self, texts: list[str]) -> list[list[float]]:
        body = post_json(self._client, self.caller.url, {"model": self.model, "input": texts},
                         timeout_s=self.caller.timeout_s)
        return _ordered(body.get("data") if isinstance(body, dict) else body)

    def close(self) -> None:
        self._client.close()


class MistralEmbedder(_RemoteEmbedder):
    """Mistral's embeddings API through the official SDK (``client.embeddings.create(model=…, inputs=[…])``).

    ``endpoint`` is the server's base URL (``https://api.mistral.ai`` by default; a trailing ``/v1`` is accepted): the
    SDK adds ``/v1/embeddings``. The SDK's own retries are left off; ``index.model_api`` retries, as for every remote
    service, so that the settings mean the same everywhere."""

    def __init__(
        self,
        api_key: str,
        *,
        model: str = "mistral-embed",
        endpoint: str | None = None,
        dim: int | None = None,
        batch_size: int = 32,
        timeout_s: float = 30.0,
        max_retries: int = 3,
        requests_per_s: float | None = None,
        backoff_s: float = 0.5,
        prepare_query: Callable[[str], str] | None = None,
    ) -> None:
        from mistralai.client import Mistral

        base = (endpoint or MISTRAL_ENDPOINT).strip().rstrip("/")
        base = base[: -len("/v1")] if base.endswith("/v1") else base
        super().__init__(name=f"mistral:{model}", model=model, url=f"{base}/v1/embeddings", dim=dim,
                         batch_size=batch_size, timeout_s=timeout_s, max_retries=max_retries,
                         requests_per_s=requests_per_s, backoff_s=backoff_s, prepare_query=prepare_query)
        self._client = Mistral(api_key=api_key, server_url=base, timeout_ms=int(timeout_s * 1000))

    def _request(self, texts: list[str]) -> list[list[float]]:
        import httpx2
        from mistralai.client import errors

        try:
            response = self._client.embeddings.create(model=self.model, inputs=texts)
        except errors.MistralError as exc:
            from index.model_api import retry_after

            raise Failure(exc.status_code, _mistral_detail(exc.body), retry_after(dict(exc.headers))) from None
        except httpx2.TimeoutException as exc:
            raise Failure(None, type(exc).__name__, timeout=True) from None
        except (httpx2.TransportError, errors.NoResponseError) as exc:
            raise Failure(None, str(exc) or type(exc).__name__) from None
        except errors.ResponseValidationError as exc:
            raise Failure(200, "réponse inattendue : " + short(str(exc), 120)) from None
        data = [{"index": d.index, "embedding": d.embedding} for d in response.data if d.embedding is not None]
        return _ordered(data)

    def close(self) -> None:
        client = getattr(self._client, "sdk_configuration", None)
        http = getattr(client, "client", None)
        if http is not None:
            http.close()


def _mistral_detail(body: str) -> str:
    import json

    try:
        data = json.loads(body)
    except (TypeError, ValueError):
        return body or ""
    if isinstance(data, dict):
        return str(data.get("message") or data.get("detail") or data)
    return str(data)
