"""Fit the answerability decision (``rag.answerability``) on training questions and print its calibration.

    collectivia eval fit-answerability                      # commune + commune-colloquial (train) → rag/models/
    collectivia eval fit-answerability --check commune-colloquial:test

1. Every training question is asked as its user through the product's retriever (access filter in Qdrant); the
   evidence reader (``rag.evidence``) reads the passages returned.
2. Sentence model: does a sentence hold the answer (it contains the short answer, or most of the gold passage)?
   A logistic regression on the sentence signals of answerable questions.
3. Question model: is the question answerable from what the user may see (``expected == answer``)? A logistic
   regression on the question signals, re-read with the fitted sentence model.
4. Operating points chosen on cross-validated probabilities of the training questions only: ``answer`` at or above
   the threshold where at most ``max_false_answer`` of the unanswerable questions get a confident answer;
   ``not_found`` below the one where at most ``max_false_not_found`` of the answerable ones are said not found.
Questions of a ``test`` split are never used here except by ``--check``, which only reports.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Sequence

from evals.metrics import outcome_table
from evals.text import holds_answer
from rag.answerability import DEFAULT_MODEL, OUTCOMES, AnswerabilityModel, LinearModel, outcome_at
from rag.evidence import SENTENCE_FEATURES, EvidenceReader

QUESTION_FEATURES = ("cov_best", "cov_first", "cov_union", "missing_max", "missing_share", "entities_missing",
                     "entities_missing_near", "cov_sent_max", "cov_sent_words", "rare_sentence", "rare_first", "cov_type", "rare_type",
                     "cos1", "cos_margin", "agree", "sent_best", "sent_top3", "sent_cov", "sent_dense", "type_asked",
                     "type_found", "lang_en", "en_cos1", "n_terms")
DEFAULT_TRAIN = ("commune", "commune-colloquial:train")
QUESTION_C = 0.1  # strong regularisation: ~300 training questions (0.1 vs 1: same CV AUC, steadier on held-out)
SENTENCE_C = 1.0
TRAIN_SENTENCES = 40  # sentences per question the sentence model learns from

Log = Callable[[str], None]


def fit_linear(rows: Sequence[dict[str, float]], labels: Sequence[int], names: Sequence[str], *, c: float = 0.5,
               class_weight: str | None = "balanced") -> LinearModel:
    """A logistic regression (scikit-learn) on standardised features, kept as plain numbers."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    x = np.array([[float(r.get(n, 0.0)) for n in names] for r in rows], dtype=np.float64)
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale == 0] = 1.0
    model = LogisticRegression(C=c, class_weight=class_weight, max_iter=5000)
    model.fit((x - mean) / scale, np.asarray(labels))
    return LinearModel(tuple(names), tuple(float(v) for v in mean), tuple(float(v) for v in scale),
                       tuple(float(v) for v in model.coef_[0]), float(model.intercept_[0]))


@dataclass
class Sample:
    id: str
    dataset: str
    expected: str
    label: int  # 1: answerable from what the user may see
    question: str
    user: object
    chunks: list
    sentences: list  # (features, label)
    features: dict | None = None


def collect(retriever, k: int, datasets: Sequence, *, log: Log) -> list[Sample]:
    """Retrieval and sentence signals for every question of ``datasets`` (each asked as its user)."""
    # The sentence model learns from a wide pool (every sentence a first scoring could shortlist), not only from the
    # few the shipped reader encodes.
    reader = EvidenceReader(retriever.sparse, retriever.embedder, None, max_sentences=TRAIN_SENTENCES)
    samples: list[Sample] = []
    for data in datasets:
        for q in data.questions:
            user = data.users[q.user]
            chunks = retriever.retrieve(q.question, user, k=k)
            evidence = reader.read(q.question, chunks)
            sentences = []
            if q.expected == "answer":
                sentences = [(s.features, int(holds_answer(s.text, q.short_answer, q.gold_passage)))
                             for s in evidence.sentences]
            samples.append(Sample(q.id, data.name, q.expected, int(q.expected == "answer"), q.question, user,
                                  chunks, sentences))
        log(f"[fit] {data.name} : {len(data.questions)} questions lues")
    return samples


def question_features(retriever, sentence_model: LinearModel, samples: Sequence[Sample]) -> None:
    reader = EvidenceReader(retriever.sparse, retriever.embedder, sentence_model)
    for s in samples:
        s.features = reader.read(s.question, s.chunks).features


def cross_validated(retriever, samples: list[Sample], *, folds: int = 5) -> list[float]:
    """Out-of-fold probabilities of the question model. Each fold also fits its own sentence model on its training
    questions only: the sentence scores feed the question's signals, and a sentence model that has seen the held-out
    questions makes their probabilities look surer than they will be on new questions (thresholds chosen on them
    would then let too many unanswerable questions through)."""
    import numpy as np
    from sklearn.model_selection import StratifiedKFold

    labels = [s.label for s in samples]
    out = np.zeros(len(samples))
    for train, test in StratifiedKFold(folds, shuffle=True, random_state=0).split(samples, labels):
        fold = [samples[i] for i in train]
        sentence_model = fit_linear([f for s in fold for f, _ in s.sentences], [y for s in fold for _, y in s.sentences],
                                    SENTENCE_FEATURES, c=SENTENCE_C)
        question_features(retriever, sentence_model, samples)
        model = fit_linear([s.features for s in fold], [s.label for s in fold], QUESTION_FEATURES, c=QUESTION_C)
        for i in test:
            out[i] = model.score(samples[i].features)
    return [float(v) for v in out]


def operating_points(probs: Sequence[float], labels: Sequence[int], *, max_false_answer: float,
                     max_false_not_found: float) -> tuple[float, float]:
    negatives = sorted((p for p, y in zip(probs, labels) if y == 0), reverse=True)
    positives = sorted(p for p, y in zip(probs, labels) if y == 1)
    allowed = int(max_false_answer * len(negatives))  # negatives allowed at or above the answer threshold
    high = (negatives[allowed] + 1e-6) if allowed < len(negatives) else 0.5
    allowed = int(max_false_not_found * len(positives))  # positives allowed below the not-found threshold
    low = positives[allowed] if allowed < len(positives) else 0.5
    high = math.ceil(min(max(high, 0.05), 0.99) * 1e4) / 1e4  # rounded up: the negatives stay below
    return high, round(min(low, high), 4)


def calibration(probs: Sequence[float], labels: Sequence[int], bins: int = 5) -> list[tuple[str, int, float, float]]:
    out = []
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        idx = [i for i, p in enumerate(probs) if lo <= p < hi or (b == bins - 1 and p == 1.0)]
        if idx:
            out.append((f"{lo:.1f}–{hi:.1f}", len(idx), sum(probs[i] for i in idx) / len(idx),
                        sum(labels[i] for i in idx) / len(idx)))
    return out


def describe(title: str, probs, samples, high, low) -> list[str]:
    from sklearn.metrics import roc_auc_score

    labels = [s.label for s in samples]
    lines = [f"{title} ({len(samples)} questions)"]
    if len(set(labels)) == 2:
        lines.append(f"  ROC AUC {roc_auc_score(labels, probs):.3f}")
    lines.append("  calibration (tranche de probabilité : questions, probabilité moyenne, part répondable)")
    for label, n, mean, rate in calibration(probs, labels):
        lines.append(f"    {label} : {n:4d}  {mean:.2f}  {rate:.2f}")
    lines.append(f"  issues (seuils réponse ≥ {high}, introuvable < {low}) par comportement attendu :")
    records = [{"expected": s.expected, "outcome": outcome_at(p, high, low)} for p, s in zip(probs, samples)]
    for expected, row in sorted(outcome_table(records).items()):
        lines.append("    " + f"{expected:17}" + "  ".join(f"{k} {row[k]:3d} ({row[k] / row['n']:.0%})"
                                                             for k in OUTCOMES))
    return lines


def fit(retriever, k: int, train: Sequence, *, check: Sequence = (), max_false_answer: float = 0.05,
        max_false_not_found: float = 0.03, log: Log = print) -> tuple[AnswerabilityModel, list[str]]:
    samples = collect(retriever, k, train, log=log)
    rows = [f for s in samples for f, _ in s.sentences]
    sentence_labels = [y for s in samples for _, y in s.sentences]
    labels = [s.label for s in samples]
    cv = cross_validated(retriever, samples)
    sentence_model = fit_linear(rows, sentence_labels, SENTENCE_FEATURES, c=SENTENCE_C)
    question_features(retriever, sentence_model, samples)
    rows_q = [s.features for s in samples]
    high, low = operating_points(cv, labels, max_false_answer=max_false_answer,
                                 max_false_not_found=max_false_not_found)
    question_model = fit_linear(rows_q, labels, QUESTION_FEATURES, c=QUESTION_C)
    info = {
        "fitted_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "train": [d.name for d in train],
        "questions": len(samples),
        "answerable": sum(labels),
        "sentences": len(rows),
        "sentences_holding_answer": sum(sentence_labels),
        "embedder": retriever.embedder.name,
        "targets": {"max_false_answer": max_false_answer, "max_false_not_found": max_false_not_found},
    }
    model = AnswerabilityModel(sentence_model, question_model, high, low, info)
    lines = describe("Entraînement (probabilités en validation croisée à 5 plis)", cv, samples, high, low)
    lines.append("  poids (variables standardisées) : " + ", ".join(
        f"{n} {c:+.2f}" for n, c in sorted(zip(question_model.names, question_model.coef), key=lambda x: -abs(x[1]))))
    for data in check:
        held = collect(retriever, k, [data], log=log)
        question_features(retriever, sentence_model, held)
        probs = [question_model.score(s.features) for s in held]
        lines += describe(f"Contrôle sur {data.name} (jamais vu à l'ajustement)", probs, held, high, low)
    return model, lines


def parse_spec(spec: str) -> tuple[str, str | None]:
    name, _, split = spec.partition(":")
    return name, split or None


def run_fit(train_specs: Sequence[str] = DEFAULT_TRAIN, check_specs: Sequence[str] = (), *, config=None,
            out: Path = DEFAULT_MODEL, log: Log = print) -> tuple[AnswerabilityModel, list[str]]:
    from collectivia.wiring import build_retriever
    from evals.datasets import load_dataset
    from evals.config import build_settings, load_config
    from evals.indexes import open_index

    cfg = load_config(config)
    settings = build_settings(cfg.overrides)
    train = [load_dataset(n, split=s) for n, s in map(parse_spec, train_specs)]
    check = [load_dataset(n, split=s) for n, s in map(parse_spec, check_specs)]
    if any(q.split == "test" for d in train for q in d.questions):
        raise ValueError("les questions du découpage test ne servent jamais à l'ajustement")
    index = open_index(settings, train[0], log=log)
    try:
        retriever = build_retriever(index.settings, index.embedder, index.store)
        model, lines = fit(retriever, index.settings.search.k, train, check=check, log=log)
    finally:
        index.close()
    model.save(Path(out))
    lines.append(f"modèle écrit dans {out}")
    return model, lines
