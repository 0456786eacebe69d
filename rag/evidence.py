"""What the passages a user may see say about a question: sentences ranked by how likely they hold the answer,
and the question-level signals the answerability decision reads.

Everything here is computed from the question and the passages retrieved under the user's access filter, plus
word frequencies of general usage (``rag.question``): nothing from documents the user may not see.

Per sentence: weighted share of the question's words in the sentence and in its context (title, section, the
sentence before), closeness of meaning (embedding cosine, which also carries questions asked in English), whether
it holds a span of the kind asked for (an amount for « combien ça coûte », a date for « quand »), the rank of its
passage. A small learned model (``AnswerabilityModel.sentence``, ``rag.answerability``) turns these into a
score. Encoding sentences is most of the time of an extractive answer: every sentence is scored first with its
passage's closeness of meaning in place of its own, and only the best ``max_sentences`` are encoded and rescored.

Per question: coverage of the question's weighted words by the best passage and by all of them, the weight of the
words found in no passage (« PACS », a typo excepted), key entities (years, numbers, acronyms, proper nouns) found nowhere, best
cosine and its margin, agreement of the meaning and word rankings, the best sentence's score and type match.
"""

from __future__ import annotations

import math
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from rapidfuzz import fuzz, process

from rag.citations import split_sentences
from rag.question import QuestionAnalysis, Term, analyse
from rag.retrieve import ScoredChunk
from rag.spans import Span, find_spans, fold

_WORD = re.compile(r"\w+", re.UNICODE)
MAX_SENTENCES = 6  # sentences encoded per question, the best of a first scoring without encoding (~5 ms each with USE)
MAX_ENCODED_CHARS = 300  # of a sentence, for its closeness of meaning
REMEMBERED_SENTENCES = 8192  # sentence vectors kept (~16 MB with USE)
SENTENCE_FEATURES = ("cov", "ctx_cov", "dense", "rare", "entities", "type_match", "rank", "first", "length",
                     "en_dense")


@dataclass(frozen=True, slots=True)
class Sentence:
    n: int  # number of its source (1-based, order of the sources)
    position: int  # index among the sentences of its source
    text: str
    spans: tuple[Span, ...]  # spans of the asked kind
    features: dict[str, float] = field(hash=False, compare=False)
    score: float = 0.0  # probability that it holds the answer (sentence model)


@dataclass(frozen=True, slots=True)
class Evidence:
    question: QuestionAnalysis
    sentences: tuple[Sentence, ...]  # best first
    features: dict[str, float]
    missing_entities: tuple[str, ...]  # entities of the question that no passage contains
    other_entities: tuple[str, ...]  # what the passages give instead (other years)


def _has(term: Term, ids: set[int], words: Sequence[str]) -> bool:
    if set(term.ids) & ids:
        return True
    if not term.known and len(term.word) >= 5 and words:  # a typo: the closest word of the passage
        match = process.extractOne(term.word, words, scorer=fuzz.ratio, score_cutoff=80)
        return match is not None
    return False


def coverage(q: QuestionAnalysis, ids: set[int], words: Sequence[str], terms: Sequence[Term] | None = None) -> float:
    """Weighted share of the question's terms (or of ``terms``) found in a text's term ids and words."""
    terms = q.terms if terms is None else terms
    total = sum(t.weight for t in terms)
    if total <= 0:
        return 0.0
    return sum(t.weight for t in terms if _has(t, ids, words)) / total


def _with_meaning(words: dict[str, float], cosine: float, en: float) -> dict[str, float]:
    """A sentence's features with a closeness of meaning: its own, or its passage's in the first scoring."""
    return {**words, "dense": cosine, "en_dense": en * cosine}


class Remembered:
    """The last ``size`` vectors by text, thread safe; the vectors are read only (shared between callers)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._vectors: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, text: str) -> np.ndarray | None:
        with self._lock:
            vector = self._vectors.get(text)
            if vector is not None:
                self._vectors.move_to_end(text)
            return vector

    def put(self, text: str, vector: np.ndarray) -> np.ndarray:
        vector.setflags(write=False)
        with self._lock:
            self._vectors[text] = vector
            while len(self._vectors) > self.size:
                self._vectors.popitem(last=False)
        return vector


class EvidenceReader:
    """Reads the sources for a question. ``sentence_model`` scores sentences (``None``: words and meaning only)."""

    def __init__(self, sparse, embedder=None, sentence_model=None, *, max_sentences: int = MAX_SENTENCES) -> None:
        self.sparse = sparse
        self.embedder = embedder
        self.sentence_model = sentence_model
        self.max_sentences = max_sentences
        self._vectors = Remembered(REMEMBERED_SENTENCES)  # by the encoded text of a sentence

    def _ids(self, text: str) -> frozenset[int]:
        return self.sparse.term_ids(text)

    def read(self, question: str, sources: Sequence[ScoredChunk], vector: np.ndarray | None = None) -> Evidence:
        """``vector``: the question's, when retrieval has encoded it already."""
        q = analyse(question, self.sparse)
        en = 1.0 if q.lang == "en" else 0.0
        entities = [fold(e) for e in q.entities]
        rare = sorted(q.terms, key=lambda t: -t.weight)[:2]  # the most decisive words: together in one sentence?
        rare_best = 0.0
        source_ids: list[set[int]] = []
        source_words: list[list[str]] = []
        candidates: list[tuple[int, int, str, tuple[Span, ...], dict[str, float]]] = []  # n, position, text, spans, words
        for n, source in enumerate(sources, start=1):
            head = f"{source.title} {source.section}"
            ids = self._ids(f"{head} {source.text}")
            words = list(dict.fromkeys(_WORD.findall(fold(f"{head} {source.text}"))))
            source_ids.append(ids)
            source_words.append(words)
            head_ids = self._ids(head)
            previous: set[int] = set()
            for position, sentence in enumerate(split_sentences(source.text)):
                if len(_WORD.findall(sentence)) < 4:  # headings and fragments say nothing on their own
                    previous = self._ids(sentence)
                    continue
                s_ids = self._ids(sentence)
                s_words = _WORD.findall(fold(sentence))
                cov = coverage(q, s_ids, s_words)
                ctx = coverage(q, s_ids | head_ids | previous, s_words)
                rare_here = coverage(q, s_ids | head_ids | previous, s_words, rare)
                rare_best = max(rare_best, rare_here)
                spans = tuple(find_spans(sentence, q.answer_type))
                candidates.append((n, position, sentence, spans, self._features(q, n, position, sentence, spans, cov,
                                                                                 ctx, rare_here, entities)))
                previous = s_ids
        # Two stages: every sentence is first scored with its passage's closeness of meaning standing in for its own
        # (known without encoding anything), then only the best ``max_sentences`` are encoded and scored for good.
        shortlist = sorted(
            ((self._score(_with_meaning(c[4], sources[c[0] - 1].cosine, en)), c) for c in candidates),
            key=lambda sc: (-sc[0], sc[1][0], sc[1][1]))[:self.max_sentences]
        candidates = [c for _, c in shortlist]
        dense = self._dense(question, [c[2] for c in candidates], vector)
        sentences = []
        for (n, position, text, spans, words), cosine in zip(candidates, dense):
            features = _with_meaning(words, cosine, en)
            sentences.append(Sentence(n, position, text, spans, features, self._score(features)))
        sentences.sort(key=lambda s: (-s.score, s.n, s.position))
        features, missing, other = self._question_features(q, sources, source_ids, source_words, sentences)
        features["rare_sentence"] = rare_best
        features["rare_first"] = coverage(q, source_ids[0], source_words[0], rare[:1]) if sources else 0.0
        # One sentence with both the question's words and the kind of span it asks for (« combien » → an amount).
        features["cov_type"] = max((x.features["ctx_cov"] * x.features["type_match"] for x in sentences), default=0.0)
        features["rare_type"] = max((x.features["rare"] * x.features["type_match"] for x in sentences), default=0.0)
        return Evidence(q, tuple(sentences), features, missing, other)

    @staticmethod
    def _features(q: QuestionAnalysis, n: int, position: int, text: str, spans: Sequence[Span], cov: float, ctx: float,
                  rare: float, entities: Sequence[str]) -> dict[str, float]:
        """A sentence's features that do not depend on its meaning (see ``_with_meaning``)."""
        folded = fold(text)
        return {"cov": cov, "ctx_cov": ctx, "rare": rare,
                "entities": (sum(e in folded for e in entities) / len(entities)) if entities else 0.5,
                "type_match": 1.0 if spans else (0.5 if q.answer_type is None else 0.0),
                "rank": float(n), "first": 1.0 if position == 0 else 0.0, "length": math.log1p(len(text))}

    def _score(self, features: dict[str, float]) -> float:
        if self.sentence_model is not None:
            return self.sentence_model.score(features)
        return 0.5 * features["ctx_cov"] + 0.5 * features["dense"]

    def _dense(self, question: str, texts: list[str], vector: np.ndarray | None) -> list[float]:
        if self.embedder is None or not texts:
            return [0.0] * len(texts)
        query = np.asarray(self.embedder.embed_query(question) if vector is None else vector, dtype=np.float32)
        # A « sentence » of a table or a list can run for a whole passage: its head carries its meaning, and encoding
        # time grows with length. The passages of a commune come back question after question: their sentences'
        # vectors are kept.
        heads = [t[:MAX_ENCODED_CHARS] for t in texts]
        found = {head: self._vectors.get(head) for head in heads}
        missing = [head for head, vector in found.items() if vector is None]
        if missing:
            for head, vector in zip(missing, np.asarray(self.embedder.embed_documents(missing), dtype=np.float32)):
                found[head] = self._vectors.put(head, vector)
        return [float(np.dot(found[head], query)) for head in heads]

    def _question_features(self, q: QuestionAnalysis, sources: Sequence[ScoredChunk], source_ids, source_words,
                           sentences: Sequence[Sentence]) -> tuple[dict[str, float], tuple[str, ...], tuple[str, ...]]:
        en = 1.0 if q.lang == "en" else 0.0
        covs = [coverage(q, ids, words) for ids, words in zip(source_ids, source_words)]
        union_ids = set().union(*source_ids) if source_ids else set()
        union_words = [w for words in source_words for w in words]
        missing_terms = [t for t in q.terms if not _has(t, union_ids, union_words)]
        texts = fold(" ".join(f"{s.title} {s.section} {s.text}" for s in sources))
        missing_entities = tuple(e for e in q.entities if fold(e) not in texts)
        near = fold(" ".join(s.text for s in sentences[:3]))  # the best sentences must hold them too
        missing_near = [e for e in q.entities if fold(e) not in near]
        years = [e for e in missing_entities if re.fullmatch(r"(?:19|20)\d{2}", e)]
        other = tuple(sorted(set(re.findall(r"\b(?:19|20)\d{2}\b", texts)) - set(q.entities)))[:6] if years else ()
        cosines = [s.cosine for s in sources] or [0.0]
        top_dense = int(np.argmax(cosines)) if sources else -1
        top_words = int(np.argmax(covs)) if covs else -1
        best = sentences[0] if sentences else None
        top3 = [s.score for s in sentences[:3]]
        features = {
            "cov_best": max(covs, default=0.0),
            "cov_first": covs[0] if covs else 0.0,
            "cov_union": coverage(q, union_ids, union_words),
            "missing_max": max((t.weight for t in missing_terms if t.known), default=0.0),
            "missing_share": sum(t.weight for t in missing_terms) / q.total_weight if q.total_weight else 1.0,
            "entities_missing": float(len(missing_entities)),
            "entities_missing_near": float(len(missing_near)),
            "cov_sent_max": max((s.features["ctx_cov"] for s in sentences), default=0.0),
            "cov_sent_words": max((s.features["cov"] for s in sentences), default=0.0),
            "cos1": max(cosines),
            "cos_margin": max(cosines) - (sorted(cosines, reverse=True)[4] if len(cosines) >= 5 else min(cosines)),
            "agree": 1.0 if sources and sources[top_dense].doc_id == sources[top_words].doc_id else 0.0,
            "sent_best": best.score if best else 0.0,
            "sent_top3": sum(top3) / len(top3) if top3 else 0.0,
            "sent_cov": best.features["ctx_cov"] if best else 0.0,
            "sent_dense": max((s.features["dense"] for s in sentences), default=0.0),
            "type_asked": 0.0 if q.answer_type is None else 1.0,
            "type_found": best.features["type_match"] if best else 0.0,
            "lang_en": en,
            "en_cos1": en * max(cosines),
            "n_terms": float(len(q.terms)),
            # Not a signal of the model: read by the decision's guard rail (asked 2026, the passages give 2024).
            "year_mismatch": 1.0 if years and other else 0.0,
        }
        return features, missing_entities, other
