"""The reports' charts as PNG bytes (matplotlib, Agg, French labels), in the style of ``evals/report.py``: one
helper lays out, saves and closes a figure. Nothing is drawn for an empty report (None)."""

from __future__ import annotations

import io

from chat_ui.reports.feedback import FeedbackReport
from chat_ui.reports.gaps import GapsReport


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    plt = _pyplot()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()


def _short(text: str, n: int = 48) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def gaps_trend_chart(report: GapsReport) -> bytes | None:
    """Questions and gaps per week."""
    if not report.weeks:
        return None
    plt = _pyplot()
    weeks = [w for w, _, _ in report.weeks]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.6 * len(weeks) + 2), 3.6))
    xs = range(len(weeks))
    ax.bar([x - 0.2 for x in xs], [q for _, q, _ in report.weeks], 0.4, label="questions")
    ax.bar([x + 0.2 for x in xs], [g for _, _, g in report.weeks], 0.4, label="sans réponse sûre")
    ax.set_xticks(list(xs))
    ax.set_xticklabels([w.split("-")[1] for w in weeks], fontsize=8)
    ax.set_xlabel("semaine")
    ax.set_ylabel("questions")
    ax.set_title(f"Questions et lacunes par semaine — {report.view.label}", fontsize=10)
    ax.set_ylim(0, max(q for _, q, _ in report.weeks) * 1.25 or 1)  # room for the legend above the bars
    ax.legend(fontsize=8, frameon=False, loc="upper left", ncols=2)
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def gaps_topics_chart(report: GapsReport, top: int = 10) -> bytes | None:
    """The most asked topics without a sure answer (shown groups only)."""
    topics = report.topics[:top]
    if not topics:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(topics) + 1.4))
    labels = [_short(t.question or t.key or "(sans mot décisif)") for t in reversed(topics)]
    ax.barh(labels, [t.not_found for t in reversed(topics)], label="introuvable")
    left = [t.not_found for t in reversed(topics)]
    ax.barh(labels, [t.uncertain for t in reversed(topics)], left=left, label="pas sûr")
    left = [a + t.uncertain for a, t in zip(left, reversed(topics))]
    ax.barh(labels, [t.refused for t in reversed(topics)], left=left, label="refusée")
    ax.tick_params(axis="y", labelsize=8)
    ax.set_xlabel("questions")
    ax.set_title("Sujets sans réponse sûre", fontsize=10)
    ax.legend(fontsize=8, frameon=False, loc="lower right")
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)


def feedback_tags_chart(report: FeedbackReport) -> bytes | None:
    """« Pas utile » answers per tag (shown groups only)."""
    if not report.tags:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(report.tags) + 1.4))
    ax.barh([t.tag for t in reversed(report.tags)], [t.count for t in reversed(report.tags)], color="#c0504d")
    ax.set_xlabel("réponses « Pas utile »")
    ax.set_title(f"Réponses jugées « Pas utile », par étiquette — {report.view.label}", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)
