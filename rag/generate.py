"""Answer generation behind one ``Generator`` protocol.

- ``MistralGenerator``: LangChain's ``ChatMistralAI``, against Mistral's API or any server speaking the same chat API
  (vLLM, llama.cpp server, Ollama) at a configurable endpoint; tokens stream.
- ``ExtractiveGenerator``: no LLM (the embedded default): the sentences of the top sources that best answer the
  question, each with its citation, labelled as extracts rather than generated text.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field
from typing import Iterator, Protocol, Sequence

import httpx
from langchain_core.messages import AIMessageChunk

from ingest.embed import Bm25Encoder
from rag.citations import split_sentences
from rag.prompts import ANSWER_PROMPT, REWRITE_PROMPT, format_sources, history_messages
from rag.retrieve import ScoredChunk

logger = logging.getLogger(__name__)

EXTRACT_HEADER = "Extraits des documents (réponse non générée, à vérifier dans les sources) :"


class GenerationError(RuntimeError):
    """The chat model failed; ``str(error)`` is a French message for the agent."""


class IncompleteAnswer(RuntimeError):
    """The model's stream ended without its final chunk."""


@dataclass
class Usage:
    """Token counts of the last call, when the server reports them."""

    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    calls: int = 0
    extra: dict = field(default_factory=dict)


class Generator(Protocol):
    name: str
    extractive: bool
    usage: Usage

    def stream(self, question: str, sources: Sequence[ScoredChunk], history: Sequence = ()) -> Iterator[str]:
        """Tokens of the answer, citing sources as [1], [2]…; raises ``GenerationError``."""
        ...

    def rewrite(self, question: str, history: Sequence) -> str:
        """A standalone version of a follow-up question (or the question itself)."""
        ...


def _french_error(exc: Exception, endpoint: str) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return "Le modèle de langue n'a pas répondu à temps."
    if isinstance(exc, httpx.HTTPStatusError):
        code = exc.response.status_code
        if code in (401, 403):
            return "Le modèle de langue a refusé l'accès (clé d'API invalide ou absente)."
        if code == 429:
            return "Le modèle de langue est surchargé (trop de requêtes) ; réessayez dans un instant."
        if code >= 500:
            return f"Le modèle de langue est en erreur (code {code})."
        return f"Le modèle de langue a refusé la requête (code {code})."
    if isinstance(exc, httpx.RequestError):
        return f"Le modèle de langue est injoignable ({endpoint})."
    return f"Le modèle de langue a échoué ({type(exc).__name__})."


class MistralGenerator:
    extractive = False

    def __init__(
        self,
        *,
        endpoint: str,
        api_key: str | None,
        model: str,
        temperature: float = 0.1,
        max_tokens: int = 800,
        timeout_s: float = 60,
        max_retries: int = 2,
    ) -> None:
        from langchain_mistralai import ChatMistralAI

        self.name = f"mistral:{model}"
        self.model = model
        self.endpoint = endpoint
        self.usage = Usage()
        self.max_retries = max_retries
        self.retry_wait_s = 0.5
        # Retries are ours (see _chunks): the client's own only wraps the creation of a lazy stream.
        self._chat = ChatMistralAI(
            endpoint=endpoint,
            api_key=api_key or "none",
            model=model,
            temperature=temperature,
            max_tokens=max_tokens,
            timeout=max(1, round(timeout_s)),
            max_retries=0,
            streaming=True,
        )

    def _chunks(self, messages) -> Iterator:
        """The model's stream; a refused or dropped connection before the first token is retried
        ``max_retries`` times (HTTP errors are answers, not retried); a stream that stops without the model's
        final chunk is an error, not an answer."""
        attempt = 0
        while True:
            started = False
            finish_reason = None
            try:
                for chunk in self._chat.stream(messages):
                    started = True
                    finish_reason = chunk.response_metadata.get("finish_reason") or finish_reason
                    yield chunk
            except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError) as exc:
                # Connection refused or dropped: worth another try. A timeout is not (it would double the wait).
                if started or attempt >= self.max_retries:
                    raise
                attempt += 1
                logger.info("chat model unreachable (%r), retry %d/%d", exc, attempt, self.max_retries)
                time.sleep(self.retry_wait_s * attempt)
                continue
            if finish_reason is None:
                raise IncompleteAnswer("La réponse du modèle de langue a été interrompue avant la fin.")
            if finish_reason == "length":
                yield AIMessageChunk(content=" […] (réponse tronquée : limite de longueur atteinte)")
            return

    def stream(self, question: str, sources: Sequence[ScoredChunk], history: Sequence = ()) -> Iterator[str]:
        messages = ANSWER_PROMPT.format_messages(
            sources=format_sources(sources), question=question, history=history_messages(history)
        )
        self.usage = Usage(calls=1)
        received = False
        try:
            for chunk in self._chunks(messages):
                usage = getattr(chunk, "usage_metadata", None)
                if usage:
                    self.usage.prompt_tokens = usage.get("input_tokens")
                    self.usage.completion_tokens = usage.get("output_tokens")
                if chunk.content:
                    received = True
                    yield str(chunk.content)
        except GeneratorExit:
            raise
        except IncompleteAnswer as exc:
            raise GenerationError(str(exc)) from exc
        except Exception as exc:  # httpx, SSE decoding…
            logger.warning("chat model failure: %r", exc)
            if received and isinstance(exc, (httpx.TransportError, httpx.StreamError)):
                raise GenerationError("Le modèle de langue a coupé la connexion pendant la réponse.") from exc
            raise GenerationError(_french_error(exc, self.endpoint)) from exc

    def rewrite(self, question: str, history: Sequence) -> str:
        if not history:
            return question
        messages = REWRITE_PROMPT.format_messages(question=question, history=history_messages(history))
        try:
            rewritten = "".join(str(c.content) for c in self._chunks(messages)).strip().strip("«»\"").strip()
        except Exception as exc:  # the original question still works, only less well
            logger.warning("question rewriting failed, using the question as asked: %r", exc)
            return question
        return rewritten or question


_WORD = re.compile(r"\w+", re.UNICODE)


class ExtractiveGenerator:
    """Answers with the best sentences of the sources, quoted and cited, without any language model."""

    name = "extractive"
    extractive = True

    def __init__(self, sparse: Bm25Encoder, embedder=None, *, max_sentences: int = 3, per_source: int = 2,
                 candidates: int = 24) -> None:
        self.sparse = sparse
        self.embedder = embedder
        self.candidates = candidates
        self.max_sentences = max_sentences
        self.per_source = per_source
        self.usage = Usage()

    def select(self, question: str, sources: Sequence[ScoredChunk]) -> list[tuple[int, int, str]]:
        """(source number, position, sentence) of the sentences that best answer the question: the share of the
        question's terms they contain, then (for the best candidates) the closeness of their meaning."""
        terms = set(self.sparse.embed_query(question)[0])
        scored: list[tuple[float, int, int, str]] = []
        for n, source in enumerate(sources, start=1):
            for position, sentence in enumerate(split_sentences(source.text)):
                if len(_WORD.findall(sentence)) < 4:
                    continue  # headings and fragments say nothing on their own
                words = set(self.sparse.embed_document(sentence)[0])
                overlap = len(terms & words) / max(len(terms), 1)
                # Earlier sources rank higher at equal overlap; long sentences are slightly penalised.
                score = overlap - 0.02 * (n - 1) - 0.001 * max(len(sentence) - 300, 0)
                scored.append((score, n, position, sentence))
        scored.sort(key=lambda x: x[0], reverse=True)
        if self.embedder is not None and scored:
            head = scored[: self.candidates]
            vectors = self.embedder.embed_documents([s for *_, s in head])
            query = self.embedder.embed_query(question)
            head = [(0.5 * score + 0.5 * float(vector @ query), n, pos, s)
                    for (score, n, pos, s), vector in zip(head, vectors)]
            scored = sorted(head, key=lambda x: x[0], reverse=True)
        chosen: list[tuple[int, int, str]] = []
        per_source: dict[int, int] = {}
        for score, n, position, sentence in scored:
            if score <= 0 and chosen:
                break
            if per_source.get(n, 0) >= self.per_source:
                continue
            chosen.append((n, position, sentence))
            per_source[n] = per_source.get(n, 0) + 1
            if len(chosen) >= self.max_sentences:
                break
        return sorted(chosen)

    def stream(self, question: str, sources: Sequence[ScoredChunk], history: Sequence = ()) -> Iterator[str]:
        chosen = self.select(question, sources)  # before the first token, so that its timing is honest
        yield EXTRACT_HEADER
        for n, _, sentence in chosen:
            yield f"\n\n« {sentence} » [{n}]"

    def rewrite(self, question: str, history: Sequence) -> str:
        return question
