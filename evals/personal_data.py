"""Precision and recall of the personal-data detection (``rag.personal_data``) on a labelled question set.

Dataset (``evals/datasets/personal-data.jsonl``): one question a line, ``{id, question, split: train|test,
personal_data: [{kind, start, end}]}``; an empty list means no personal data.

Span level: a found span matches a gold span of the same kind when they are equal or when their overlap covers at
least half of the longer of the two (``|A ∩ B| ≥ 0.5 · max(|A|, |B|)``); each gold span is matched at most once.
Precision = matched found spans / found spans; recall = matched gold spans / gold spans, per kind and overall.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from rag.personal_data import KINDS, find_personal_data

DEFAULT_DATASET = Path(__file__).resolve().parent / "datasets" / "personal-data.jsonl"
MIN_OVERLAP = 0.5


class PersonalDataError(ValueError):
    """The dataset cannot be read; the message is French and names the file and line."""


@dataclass(frozen=True, slots=True)
class Labelled:
    id: str
    question: str
    split: str
    spans: tuple[tuple[str, int, int], ...]


@dataclass(slots=True)
class Counts:
    found: int = 0
    gold: int = 0
    matched_found: int = 0
    matched_gold: int = 0

    @property
    def precision(self) -> float | None:
        return self.matched_found / self.found if self.found else None

    @property
    def recall(self) -> float | None:
        return self.matched_gold / self.gold if self.gold else None

    def to_json(self) -> dict:
        r = lambda v: None if v is None else round(v, 4)  # noqa: E731
        return {"precision": r(self.precision), "recall": r(self.recall), "found": self.found, "gold": self.gold,
                "true_positives": self.matched_found}


@dataclass(slots=True)
class Scores:
    questions: int = 0
    per_kind: dict[str, Counts] = field(default_factory=lambda: {k: Counts() for k in KINDS})
    overall: Counts = field(default_factory=Counts)
    errors: list[dict] = field(default_factory=list)  # missed and wrongly found spans, for reading

    def to_json(self) -> dict:
        return {"questions": self.questions, "overall": self.overall.to_json(),
                "per_kind": {k: c.to_json() for k, c in self.per_kind.items()}, "errors": self.errors}


def load(path: Path | str = DEFAULT_DATASET, split: str | None = None) -> list[Labelled]:
    path = Path(path)
    if not path.is_file():
        raise PersonalDataError(f"Jeu de questions introuvable : « {path} ».")
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
            spans = tuple((s["kind"], int(s["start"]), int(s["end"])) for s in raw["personal_data"])
            row = Labelled(str(raw["id"]), raw["question"], raw.get("split", "test"), spans)
        except (ValueError, KeyError, TypeError) as exc:
            raise PersonalDataError(f"{path}:{number} : ligne illisible ({exc!r}) : « {line[:80]} »") from exc
        bad = [s for s in spans if s[0] not in KINDS or not 0 <= s[1] < s[2] <= len(row.question)]
        if bad:
            raise PersonalDataError(f"{path}:{number} : annotation invalide « {bad[0]} » (types : {', '.join(KINDS)})")
        rows.append(row)
    if split is not None:
        splits = {r.split for r in rows}
        if split not in splits:
            raise PersonalDataError(f"Découpage inconnu : « {split} » (disponibles : {', '.join(sorted(splits))}).")
        rows = [r for r in rows if r.split == split]
    return rows


def spans_match(a: tuple[int, int], b: tuple[int, int]) -> bool:
    overlap = min(a[1], b[1]) - max(a[0], b[0])
    return a == b or overlap >= MIN_OVERLAP * max(a[1] - a[0], b[1] - b[0])


def score(rows: list[Labelled], detect=find_personal_data) -> Scores:
    scores = Scores(questions=len(rows))
    for row in rows:
        found = [(f.kind, f.start, f.end) for f in detect(row.question)]
        used: set[int] = set()
        matched_found = 0
        for kind, start, end in found:
            hit = next((i for i, g in enumerate(row.spans)
                        if i not in used and g[0] == kind and spans_match((start, end), (g[1], g[2]))), None)
            counts = scores.per_kind[kind]
            counts.found += 1
            if hit is None:
                scores.errors.append({"id": row.id, "error": "faux positif", "kind": kind,
                                      "text": row.question[start:end], "question": row.question})
                continue
            used.add(hit)
            counts.matched_found += 1
            matched_found += 1
        for i, (kind, start, end) in enumerate(row.spans):
            scores.per_kind[kind].gold += 1
            if i in used:
                scores.per_kind[kind].matched_gold += 1
            else:
                scores.errors.append({"id": row.id, "error": "manqué", "kind": kind,
                                      "text": row.question[start:end], "question": row.question})
        scores.overall.found += len(found)
        scores.overall.gold += len(row.spans)
        scores.overall.matched_found += matched_found
        scores.overall.matched_gold += len(used)
    return scores


def format_scores(scores: Scores, title: str) -> str:
    fmt = lambda v: "   —" if v is None else f"{v:.3f}"  # noqa: E731
    lines = [title, f"{'type':12} {'précision':>9} {'rappel':>7} {'trouvés':>8} {'attendus':>9}"]
    for kind, c in [*scores.per_kind.items(), ("ensemble", scores.overall)]:
        lines.append(f"{kind:12} {fmt(c.precision):>9} {fmt(c.recall):>7} {c.found:>8} {c.gold:>9}")
    for e in scores.errors[:20]:
        lines.append(f"  {e['id']} {e['error']} ({e['kind']}) : « {e['text']} »")
    return "\n".join(lines)
