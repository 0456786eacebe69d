"""The assistant: an agent's question in, a grounded and cited ``Answer`` out, never using a document the agent may
not see.

    question ─▶ (standalone rewrite, when an LLM is configured and there is history)
             ─▶ retrieval with the user's access filter inside Qdrant
             ─▶ evidence read from those passages only, and a learned decision (``rag.answerability``):
                answer · uncertain · not_found
             ─▶ not_found: say so without calling any model, show the closest titles
             ─▶ generation (LLM, or extracts, the answering sentence first) ─▶ citations checked ─▶ Answer

Personal data in the question (``rag.personal_data``) is reported in ``Answer.personal_data``; retrieval and the
extracts use the question locally as typed, a remote model only ever receives it masked (``rag.generate``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Iterator, Literal, Sequence

from rag.access import Scope, User
from rag.answerability import AnswerabilityModel, Decision, Outcome
from rag.citations import Citation, SupportChecker, build_citations
from rag.evidence import Evidence, EvidenceReader
from rag.generate import GenerationError, Generator
from rag.personal_data import Found, find_personal_data
from rag.prompts import NOT_FOUND_SENTENCE
from rag.retrieve import HybridRetriever, ScoredChunk

NO_SOURCE_MESSAGE = "Je n'ai trouvé aucune source pertinente dans les documents auxquels vous avez accès."
FALLBACK_MIN_RELEVANCE = 0.30  # without a decision model: the best passage's relevance below which nothing is found


@dataclass(frozen=True, slots=True)
class TraceItem:
    chunk_id: str
    doc_id: str
    score: float
    relevance: float


@dataclass(frozen=True, slots=True)
class Answer:
    question: str
    text: str
    citations: tuple[Citation, ...]
    refused: bool
    sources: tuple[ScoredChunk, ...] = ()
    outcome: Outcome = "answer"
    probability: float | None = None  # that the passages answer the question (decision model)
    answer_span: str | None = None  # the amount, date, duration, name… of the first extract that answers
    extracts: tuple[str, ...] = ()  # sentences quoted by the extractive answer, best first
    missing: tuple[str, ...] = ()  # years, numbers, acronyms of the question that no passage contains
    refusal_reason: Literal["not_found", "model_not_found", None] = None
    error: str | None = None  # French message when the model failed
    extractive: bool = False
    standalone_question: str | None = None
    closest_titles: tuple[str, ...] = ()
    trace: tuple[TraceItem, ...] = ()
    timings_ms: dict[str, float] = field(default_factory=dict)
    usage: dict[str, int | None] = field(default_factory=dict)
    generator: str = ""
    personal_data: tuple[Found, ...] = ()  # in the question as typed (masked before any remote model sees it)

    @property
    def unsupported(self) -> tuple[int, ...]:
        return tuple(c.n for c in self.citations if not c.supported)

    def to_json(self) -> dict:
        return {
            "answer": self.text,
            "outcome": self.outcome,
            "answerability": None if self.probability is None else round(self.probability, 4),
            "answer_span": self.answer_span,
            "extracts": list(self.extracts),
            "missing": list(self.missing),
            "refused": self.refused,
            "refusal_reason": self.refusal_reason,
            "error": self.error,
            "extractive": self.extractive,
            "citations": [c.to_json() for c in self.citations],
            "unsupported_citations": list(self.unsupported),
            "closest_titles": list(self.closest_titles),
            "standalone_question": self.standalone_question,
            "trace": [
                {"chunk_id": t.chunk_id, "doc_id": t.doc_id, "score": round(t.score, 6), "relevance": round(t.relevance, 4)}
                for t in self.trace
            ],
            "timings_ms": {k: round(v, 1) for k, v in self.timings_ms.items()},
            "usage": self.usage,
            "personal_data": [f.to_json() for f in self.personal_data],
        }


@dataclass(frozen=True, slots=True)
class Event:
    """What ``Assistant.stream`` yields: the sources first, then tokens, then the final answer."""

    kind: Literal["sources", "token", "answer"]
    sources: tuple[ScoredChunk, ...] = ()
    token: str = ""
    answer: Answer | None = None


class Assistant:
    def __init__(
        self,
        retriever: HybridRetriever,
        generator: Generator,
        checker: SupportChecker,
        *,
        k: int = 5,
        reader: EvidenceReader | None = None,
        model: AnswerabilityModel | None = None,
        answer_threshold: float | None = None,
        not_found_threshold: float | None = None,
        rewrite_followups: bool = True,
    ) -> None:
        self.retriever = retriever
        self.generator = generator
        self.checker = checker
        self.k = k
        self.model = model
        self.reader = reader or EvidenceReader(retriever.sparse, retriever.embedder,
                                               model.sentence if model else None)
        self.answer_threshold = answer_threshold
        self.not_found_threshold = not_found_threshold
        self.rewrite_followups = rewrite_followups

    def decide(self, question: str, retrieved: Sequence[ScoredChunk], vector=None) -> tuple[Evidence, Decision]:
        """Evidence from the passages the user may see, and the decision on it (``vector``: the question's)."""
        evidence = self.reader.read(question, retrieved, vector)
        if self.model is None:
            best = max((c.relevance for c in retrieved), default=0.0)
            return evidence, Decision("answer" if best >= FALLBACK_MIN_RELEVANCE else "not_found", best)
        return evidence, self.model.decide(evidence.features, answer_threshold=self.answer_threshold,
                                           not_found_threshold=self.not_found_threshold)

    def answer(self, question: str, user: User, history: Sequence = (), *, scope: Scope | None = None) -> Answer:
        final = None
        for event in self.stream(question, user, history, scope=scope):
            if event.kind == "answer":
                final = event.answer
        assert final is not None
        return final

    def stream(
        self, question: str, user: User, history: Sequence = (), *, scope: Scope | None = None
    ) -> Iterator[Event]:
        if not isinstance(user, User):
            raise TypeError("Assistant.stream exige un utilisateur authentifié (rag.access.User)")
        timings: dict[str, float] = {}
        started = time.perf_counter()

        standalone = question
        if history and self.rewrite_followups and not self.generator.extractive:
            t = time.perf_counter()
            standalone = self.generator.rewrite(question, history)
            timings["rewrite"] = (time.perf_counter() - t) * 1000

        t = time.perf_counter()
        # Encoded once, for retrieval and for the evidence reader; never kept beyond this answer.
        vector = self.retriever.embedder.embed_query(standalone)
        retrieved = self.retriever.retrieve(standalone, user, k=self.k, scope=scope, vector=vector)
        timings["retrieve"] = (time.perf_counter() - t) * 1000
        trace = tuple(TraceItem(c.id, c.doc_id, c.score, c.relevance) for c in retrieved)
        t = time.perf_counter()
        evidence, decision = (self.decide(standalone, retrieved, vector) if retrieved
                              else (None, Decision("not_found", 0.0)))
        timings["decide"] = (time.perf_counter() - t) * 1000
        sources = tuple(retrieved) if decision.outcome != "not_found" else ()
        common = dict(question=question, standalone_question=standalone if standalone != question else None,
                      trace=trace, generator=self.generator.name, extractive=self.generator.extractive,
                      probability=decision.probability, personal_data=tuple(find_personal_data(question)),
                      missing=evidence.missing_entities if evidence is not None else ())

        if not sources:
            titles = tuple(dict.fromkeys(c.title for c in sorted(retrieved, key=lambda c: -c.relevance)))[:3]
            text = NO_SOURCE_MESSAGE
            if titles:
                text += " Documents les plus proches : " + " ; ".join(f"« {t} »" for t in titles) + "."
            timings["total"] = (time.perf_counter() - started) * 1000
            yield Event("sources")
            yield Event("token", token=text)
            yield Event("answer", answer=Answer(text=text, citations=(), refused=True, refusal_reason="not_found",
                                                outcome="not_found", closest_titles=titles, timings_ms=timings,
                                                **common))
            return

        yield Event("sources", sources=sources)
        t = time.perf_counter()
        parts: list[str] = []
        error = None
        plan = None
        try:
            plan = self.generator.plan(evidence, decision.outcome) if self.generator.extractive else None
            tokens = self.generator.tell(plan) if plan is not None else self.generator.stream(standalone, sources,
                                                                                             history)
            for token in tokens:
                if not parts:
                    timings["first_token"] = (time.perf_counter() - started) * 1000
                parts.append(token)
                yield Event("token", token=token)
        except GenerationError as exc:
            error = str(exc)
            message = (("\n\n" if parts else "") + f"{error} Voici les sources trouvées, à consulter directement :")
            parts.append(message)
            yield Event("token", token=message)
        timings["generate"] = (time.perf_counter() - t) * 1000

        raw = "".join(parts)
        text, citations = build_citations(raw, sources, self.checker) if error is None else (raw, ())
        # The model's « not in the sources » sentence is a refusal, whatever else it wrote around it.
        model_refused = error is None and not self.generator.extractive and NOT_FOUND_SENTENCE in text
        extracts = tuple(e.text for e in plan.extracts) if plan is not None else ()
        span = plan.span if plan is not None else None
        timings["total"] = (time.perf_counter() - started) * 1000
        usage = {"prompt_tokens": self.generator.usage.prompt_tokens,
                 "completion_tokens": self.generator.usage.completion_tokens}
        yield Event("answer", answer=Answer(
            text=text,
            citations=citations,
            refused=model_refused,
            refusal_reason="model_not_found" if model_refused else None,
            outcome="not_found" if model_refused else decision.outcome,
            answer_span=span,
            extracts=extracts,
            error=error,
            sources=sources,
            timings_ms=timings,
            usage=usage,
            **common,
        ))
