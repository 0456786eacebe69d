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

from index.embed import Bm25Encoder
from rag.evidence import Evidence, EvidenceReader
from rag.personal_data import mask
from rag.prompts import ANSWER_PROMPT, REWRITE_PROMPT, format_sources, history_messages
from rag.retrieve import ScoredChunk
from rag.spans import fold

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


def _masked_history(history: Sequence) -> list[tuple[str, str]]:
    """The conversation as sent to the model: personal data masked in every turn (``rag.personal_data``)."""
    return [(role, mask(content)) for role, content in history_messages(history)]


class MistralGenerator:
    """The question and the history leave the machine with their personal data masked (« [IBAN masqué] »…); the
    sources are the commune's documents and go as they are."""

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
            sources=format_sources(sources), question=mask(question), history=_masked_history(history)
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
        messages = REWRITE_PROMPT.format_messages(question=mask(question), history=_masked_history(history))
        try:
            rewritten = "".join(str(c.content) for c in self._chunks(messages)).strip().strip("«»\"").strip()
        except Exception as exc:  # the original question still works, only less well
            logger.warning("question rewriting failed, using the question as asked: %r", exc)
            return question
        return rewritten or question


UNCERTAIN_HEADER = ("Je ne suis pas sûr que ces documents répondent à votre question. Voici les passages les plus "
                    "proches, à vérifier :")


@dataclass(frozen=True, slots=True)
class Extract:
    n: int  # source number
    text: str
    span: str | None  # what answers in it (an amount, a date…), when the question asks for such a thing


@dataclass(frozen=True, slots=True)
class ExtractPlan:
    header: str
    extracts: tuple[Extract, ...]

    @property
    def span(self) -> str | None:
        return self.extracts[0].span if self.extracts else None


def _best_span(sentence, terms) -> str | None:
    """The span of the asked kind nearest to the question's words in the sentence (the first when none is)."""
    if not sentence.spans:
        return None
    folded = fold(sentence.text)
    anchors = [m.start() for t in terms for m in re.finditer(re.escape(t.word[:5]), folded)] if terms else []
    if not anchors:
        return sentence.spans[0].text
    return min(sentence.spans, key=lambda sp: min(abs(sp.start - a) for a in anchors)).text


def mismatch_notice(evidence: Evidence) -> str:
    """What the passages give instead of what the question asks (« vous demandez 2022 ; … 2024 »)."""
    missing = evidence.missing_entities
    if not missing:
        return ""
    asked = ", ".join(f"« {m} »" for m in missing)
    if evidence.other_entities:
        return f" Vous demandez {asked} ; les documents trouvés parlent de {', '.join(evidence.other_entities)}."
    return f" {asked[0].upper()}{asked[1:]} n'apparaît dans aucun des documents trouvés."


class ExtractiveGenerator:
    """Answers with the sentences of the sources most likely to hold the answer (``rag.evidence``), the best first,
    quoted and cited, without any language model."""

    name = "extractive"
    extractive = True

    def __init__(self, sparse: Bm25Encoder, embedder=None, *, max_sentences: int = 3, per_source: int = 2,
                 sentence_model=None) -> None:
        self.sparse = sparse
        self.embedder = embedder
        self.sentence_model = sentence_model
        self.max_sentences = max_sentences
        self.per_source = per_source
        self.usage = Usage()

    def plan(self, evidence: Evidence, outcome: str = "answer") -> ExtractPlan:
        chosen: list[Extract] = []
        per_source: dict[int, int] = {}
        best = evidence.sentences[0].score if evidence.sentences else 0.0
        for sentence in evidence.sentences:
            if chosen and sentence.score < 0.5 * best:
                break
            if per_source.get(sentence.n, 0) >= self.per_source or any(sentence.text == c.text for c in chosen):
                continue
            span = _best_span(sentence, evidence.question.terms)
            chosen.append(Extract(sentence.n, sentence.text, span))
            per_source[sentence.n] = per_source.get(sentence.n, 0) + 1
            if len(chosen) >= self.max_sentences:
                break
        header = EXTRACT_HEADER if outcome == "answer" else UNCERTAIN_HEADER + mismatch_notice(evidence)
        return ExtractPlan(header, tuple(chosen))

    def tell(self, plan: ExtractPlan) -> Iterator[str]:
        yield plan.header
        for extract in plan.extracts:
            yield f"\n\n« {extract.text} » [{extract.n}]"

    def stream(self, question: str, sources: Sequence[ScoredChunk], history: Sequence = ()) -> Iterator[str]:
        reader = EvidenceReader(self.sparse, self.embedder, self.sentence_model)
        plan = self.plan(reader.read(question, sources))  # before the first token, so that its timing is honest
        yield from self.tell(plan)

    def rewrite(self, question: str, history: Sequence) -> str:
        return question
