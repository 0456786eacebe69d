"""The answerability decision as a run saw it: outcomes per expected behaviour (a table of the report) and a
calibration chart (``calibration.png``): probabilities of answerable and unanswerable questions, the ROC curve and
the operating points of the model (thresholds of ``rag.answerability``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

def outcome_lines(summary: dict) -> list[str]:
    table = summary.get("outcomes") or {}
    if not table:
        return []
    lines = ["## Issues de la décision (réponse · pas sûr · introuvable)", "",
             "| attendu | n | réponse | pas sûr | introuvable |", "|---|---:|---:|---:|---:|"]
    for expected, row in sorted(table.items()):
        cells = " | ".join(f"{row[k]} ({row[f'{k}_share']:.0%})" for k in ("answer", "uncertain", "not_found"))
        lines.append(f"| {expected} | {row['n']} | {cells} |")
    first = (summary.get("answers") or {}).get("first_extract_answers")
    if first is not None:
        lines += ["", f"Premier extrait qui contient la réponse (questions à réponse) : {first:.3f}."]
    return lines + [""]


def roc_points(scores: list[float], labels: list[int]) -> list[tuple[float, float]]:
    pos = sum(labels) or 1
    neg = (len(labels) - sum(labels)) or 1
    points = [(0.0, 0.0)]
    tp = fp = 0
    for score, label in sorted(zip(scores, labels), key=lambda x: -x[0]):
        tp += label
        fp += 1 - label
        points.append((fp / neg, tp / pos))
    return points


def calibration_chart(out: Path, summary: dict, records: list[dict], save: Any) -> Path | None:
    """Histogram of probabilities (answerable vs not) with the thresholds, and the ROC curve."""
    scored = [(r["answerability"], int(r.get("expected") == "answer")) for r in records
              if r.get("answerability") is not None and "exception" not in r]
    if len({y for _, y in scored}) < 2:
        return None
    import matplotlib.pyplot as plt

    thresholds = summary.get("answerability_thresholds") or {}
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.2))
    bins = [i / 20 for i in range(21)]
    left.hist([p for p, y in scored if y == 1], bins=bins, alpha=0.6, label="à réponse")
    left.hist([p for p, y in scored if y == 0], bins=bins, alpha=0.6, label="sans réponse (hors corpus, sans accès)")
    for key, label, style in (("answer", "seuil réponse", "-"), ("not_found", "seuil introuvable", "--")):
        if thresholds.get(key) is not None:
            left.axvline(thresholds[key], color="black", linestyle=style, linewidth=1, label=label)
    left.set_xlabel("probabilité que les passages répondent")
    left.set_ylabel("questions")
    left.legend(fontsize=7)
    points = roc_points([p for p, _ in scored], [y for _, y in scored])
    right.plot([x for x, _ in points], [y for _, y in points])
    right.plot([0, 1], [0, 1], color="grey", linewidth=0.5)
    auc = sum((x2 - x1) * (y1 + y2) / 2 for (x1, y1), (x2, y2) in zip(points, points[1:]))
    for key, marker in (("answer", "o"), ("not_found", "s")):
        t = thresholds.get(key)
        if t is not None:
            pos = [p for p, y in scored if y == 1]
            neg = [p for p, y in scored if y == 0]
            right.plot(sum(p >= t for p in neg) / len(neg), sum(p >= t for p in pos) / len(pos), marker,
                       label=f"seuil {key} ({t:.2f})")
    right.set_xlabel("part des questions sans réponse au-dessus du seuil")
    right.set_ylabel("part des questions à réponse au-dessus")
    right.set_title(f"ROC (AUC {auc:.3f})", fontsize=10)
    right.legend(fontsize=7, loc="lower right")
    fig.suptitle("Décision « les passages répondent-ils ? »", fontsize=10)
    return save(fig, out / "calibration.png")
