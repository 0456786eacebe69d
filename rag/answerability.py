"""Does what the user may see answer the question? A decision learned from data, with three outcomes:

- ``answer``: confident, the extract answers;
- ``uncertain``: « je ne suis pas sûr que ces documents répondent » with the closest passages (and what they say
  instead when the question asks for something they do not give: asked 2022, the documents give 2024);
- ``not_found``: nothing relevant, the closest titles only.

Two logistic regressions shipped as plain JSON in ``rag/models/`` (no pickle): one scores sentences (does this one
hold the answer?), one scores the question from ``rag.evidence`` signals. The operating points (two thresholds on
the question's probability) are chosen on training questions only. ``collectivia eval fit-answerability`` refits
both and prints the calibration (``evals/answerability.py``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Outcome = Literal["answer", "uncertain", "not_found"]
OUTCOMES: tuple[Outcome, ...] = ("answer", "uncertain", "not_found")
OUTCOME_LABELS: dict[str, str] = {"answer": "réponse", "uncertain": "pas sûr", "not_found": "introuvable"}
DEFAULT_MODEL = Path(__file__).with_name("models") / "answerability.json"


@dataclass(frozen=True, slots=True)
class LinearModel:
    """Standardised features → logistic probability."""

    names: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    coef: tuple[float, ...]
    intercept: float

    def logit(self, features: dict[str, float]) -> float:
        z = self.intercept
        for name, mean, scale, coef in zip(self.names, self.mean, self.scale, self.coef):
            z += coef * (float(features.get(name, 0.0)) - mean) / (scale or 1.0)
        return z

    def score(self, features: dict[str, float]) -> float:
        z = max(-30.0, min(30.0, self.logit(features)))
        return 1.0 / (1.0 + math.exp(-z))

    def to_json(self) -> dict:
        return {"names": list(self.names), "mean": list(self.mean), "scale": list(self.scale),
                "coef": list(self.coef), "intercept": self.intercept}

    @classmethod
    def from_json(cls, data: dict) -> "LinearModel":
        return cls(tuple(data["names"]), tuple(map(float, data["mean"])), tuple(map(float, data["scale"])),
                   tuple(map(float, data["coef"])), float(data["intercept"]))


def outcome_at(p: float, answer_threshold: float, not_found_threshold: float) -> Outcome:
    """The outcome of a probability between the two operating points (« not found » never above « answer »)."""
    if p >= answer_threshold:
        return "answer"
    return "not_found" if p < min(not_found_threshold, answer_threshold) else "uncertain"


@dataclass(frozen=True, slots=True)
class Decision:
    outcome: Outcome
    probability: float  # that the passages answer the question


@dataclass(frozen=True, slots=True)
class AnswerabilityModel:
    sentence: LinearModel
    question: LinearModel
    answer_threshold: float  # probability at and above which the answer is given as confident
    not_found_threshold: float  # probability below which nothing relevant is said to be found
    info: dict  # how and on what it was fitted (shown by `collectivia eval fit-answerability`)

    def decide(self, features: dict[str, float], *, answer_threshold: float | None = None,
               not_found_threshold: float | None = None) -> Decision:
        p = self.question.score(features)
        if features.get("lang_en", 0.0) == 0.0 and features.get("cov_union", 1.0) == 0.0:
            # Not one content word of a French question in any passage the user may see: outside what the model
            # was fitted on (1 such question of 304 in training, unanswerable), and nothing to quote.
            return Decision("not_found", p)
        high = self.answer_threshold if answer_threshold is None else answer_threshold
        low = self.not_found_threshold if not_found_threshold is None else not_found_threshold
        outcome = outcome_at(p, high, low)
        if outcome == "answer" and features.get("year_mismatch", 0.0):
            # The question asks for a year that no passage gives, and the passages speak of other years (asked
            # 2025-2026, documents of 2024-2025): a figure of another year is never given as the answer.
            outcome = "uncertain"
        return Decision(outcome, p)

    def to_json(self) -> dict:
        return {"format": 1, "sentence": self.sentence.to_json(), "question": self.question.to_json(),
                "answer_threshold": self.answer_threshold, "not_found_threshold": self.not_found_threshold,
                "info": self.info}

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), ensure_ascii=False, indent=1) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: Path | None = None) -> "AnswerabilityModel":
        path = Path(path or DEFAULT_MODEL)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(LinearModel.from_json(data["sentence"]), LinearModel.from_json(data["question"]),
                       float(data["answer_threshold"]), float(data["not_found_threshold"]), dict(data.get("info", {})))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(
                f"modèle de décision illisible : {path} ({exc}) ; refaites-le avec « collectivia eval "
                "fit-answerability » ou laissez COLLECTIVIA_SEARCH__ANSWERABILITY_MODEL vide") from exc

