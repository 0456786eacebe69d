"""The reports as French Markdown for the chat's dashboard. Every text typed by an agent (questions, comments) or
read from a document (titles) goes through ``cell``: nothing in it can form a link, an image or a table border."""

from __future__ import annotations

import re

from chat_ui.reports.documents import DocumentsReport
from chat_ui.reports.feedback import FeedbackReport
from chat_ui.reports.gaps import GapsReport
from chat_ui.safe_markdown import safe_token

_MARKUP = re.compile(r"([|*_#~])")


def cell(text: str, limit: int = 160) -> str:
    flat = " ".join(str(text or "").split())
    if len(flat) > limit:
        flat = flat[: limit - 1] + "…"
    return _MARKUP.sub(r"\\\1", safe_token(flat))


def _since(report) -> str:
    return f"depuis le {report.since.strftime('%d/%m/%Y')}" if report.since else "depuis le début"


def _hidden(n: int, what: str, k: int) -> str:
    if not n:
        return ""
    return f"\n_{n} {what} de moins de {k} questions non affiché(s), pour que personne ne soit reconnaissable._\n"


def gaps_markdown(r: GapsReport) -> str:
    lines = [f"### Questions sans réponse sûre — {cell(r.view.label)}",
             f"{r.gaps} question(s) sans réponse sûre sur {r.questions} {_since(r)} "
             "(introuvable, réponse incertaine ou refus).", ""]
    if r.topics:
        lines += ["| Sujet (question type) | Questions | Introuvables | Incertaines | Refusées | Dernières semaines |",
                  "|---|---:|---:|---:|---:|---|"]
        for t in r.topics:
            trend = " ".join(f"{w.split('-')[1]}:{n}" for w, n in t.weeks[-4:])
            lines.append(f"| {cell(t.question or t.key or '(sans mot décisif)')} | {t.count} | {t.not_found} | "
                         f"{t.uncertain} | {t.refused} | {trend} |")
    else:
        lines.append(f"_Aucun sujet posé au moins {r.min_group} fois._")
    return "\n".join(lines) + _hidden(r.hidden_topics, "sujet(s)", r.min_group)


def feedback_markdown(r: FeedbackReport) -> str:
    lines = [f"### Réponses jugées « Pas utile » — {cell(r.view.label)}",
             f"{r.not_useful} réponse(s) « Pas utile » sur {r.opinions} avis {_since(r)}.", ""]
    if r.tags:
        lines += ["| Étiquette | Réponses | Commentaires (masqués) |", "|---|---:|---|"]
        for t in r.tags:
            comments = " · ".join(f"« {cell(c, 120)} »" for c in t.comments[:3]) or "—"
            lines.append(f"| {cell(t.tag)} | {t.count} | {comments} |")
    if r.documents:
        lines += ["", "| Document cité dans des réponses « Pas utile » | Réponses |", "|---|---:|"]
        lines += [f"| {cell(d.title or d.doc_id)} ({cell(d.doc_id)}) | {d.count} |" for d in r.documents]
    if not r.tags and not r.documents:
        lines.append(f"_Aucun groupe d'au moins {r.min_group} réponses._")
    return "\n".join(lines) + _hidden(r.hidden_groups, "groupe(s)", r.min_group)


def documents_markdown(r: DocumentsReport) -> str:
    lines = [f"### Documents — {cell(r.view.label)}", ""]
    titles = {"most_cited": f"Les plus cités ({_since(r)})",
              "never_cited": f"Jamais cités depuis {r.uncited_days} jours",
              "old_cited": f"Cités mais datés de plus de {r.old_document_days} jours",
              "repealed_reached": "Textes abrogés encore consultés (« inclure les textes abrogés »)"}
    for attr, _ in r.SECTIONS:
        items = getattr(r, attr)
        lines.append(f"**{titles[attr]}**")
        if not items:
            lines += ["_Aucun._", ""]
            continue
        lines += ["| Document | Services | Date | Citations |", "|---|---|---|---:|"]
        lines += [f"| {cell(d.title or d.doc_id)} ({cell(d.doc_id)}) | {cell(', '.join(d.services))} | "
                  f"{d.date or '—'} | {d.count} |" for d in items[:15]]
        if len(items) > 15:
            lines.append(f"| … et {len(items) - 15} autre(s) | | | |")
        lines.append("")
    return "\n".join(lines) + _hidden(r.hidden_lines, "ligne(s)", r.min_group)
