"""The chat's « Tableau de bord »: a button offered to document managers and administrators only, opening one
message with the three reports of the last 30 days (French tables) and their charts.

Refused server-side to anyone else — an agent who sends the action by hand gets a French refusal, and the refusal
is written to the audit log (``audit/documents.jsonl``, action ``report``). Openings are audited too.
"""

from __future__ import annotations

import asyncio
import logging

import chainlit as cl

from chat_ui.backend import BackendError, get_backend
from chat_ui.datalayer import database_url
from chat_ui.reports import charts
from chat_ui.reports.access import ReportAccessError, report_view
from chat_ui.reports.build import make_report, parse_since
from chat_ui.reports.markdown import documents_markdown, feedback_markdown, gaps_markdown
from chat_ui.session import current_user
from rag.access import User

logger = logging.getLogger(__name__)

OPEN = "Tableau de bord"
PERIOD = "30d"


def dashboard_actions(user: User | None) -> list[cl.Action]:
    """The dashboard button, for a manager or an administrator; nothing for an agent."""
    try:
        report_view(user)
    except ReportAccessError:
        return []
    return [cl.Action(name=OPEN, payload={}, label="Tableau de bord", icon="chart-column",
                      tooltip="Questions sans réponse, avis « Pas utile » et documents de vos services (30 jours)")]


async def open_dashboard() -> None:
    user = current_user()
    backend = get_backend()
    try:
        view = report_view(user)
    except ReportAccessError as exc:
        backend.audit.write(action="report", outcome="refused", user_id=user.id if user else "",
                            user_name=user.name if user else "", detail=str(exc))
        await cl.ErrorMessage(f"Tableau de bord refusé : {exc}").send()
        return
    try:
        await asyncio.to_thread(backend.wait_ready, 300)
        records = await asyncio.to_thread(backend.store.documents)
    except BackendError as exc:
        await cl.ErrorMessage(f"Le tableau de bord ne peut pas être affiché pour l'instant : {exc}").send()
        return
    settings = backend.settings
    url = database_url(settings.chat.database_url, settings.data_dir)
    since = parse_since(PERIOD)
    gaps = await make_report("gaps", view, url, records, settings.reports, since)
    feedback = await make_report("feedback", view, url, records, settings.reports, since)
    documents = await make_report("documents", view, url, records, settings.reports, since)
    pictures = await asyncio.to_thread(lambda: [
        ("lacunes-par-semaine.png", charts.gaps_trend_chart(gaps)),
        ("sujets-sans-reponse.png", charts.gaps_topics_chart(gaps)),
        ("avis-pas-utiles.png", charts.feedback_tags_chart(feedback)),
    ])
    backend.audit.write(action="report", outcome="ok", user_id=user.id, user_name=user.name,
                        services=view.services or (), detail=f"tableau de bord, {PERIOD}")
    text = "\n\n".join([
        f"## Tableau de bord — {view.label}",
        f"_Comptes seulement, jamais de nom d'agent ; un groupe de moins de {settings.reports.min_group} questions "
        "n'est pas affiché. Questions et commentaires sont masqués de leurs données personnelles._",
        gaps_markdown(gaps), feedback_markdown(feedback), documents_markdown(documents),
    ])
    elements = [cl.Image(name=name, content=png, display="inline", mime="image/png", size="large")
                for name, png in pictures if png]
    await cl.Message(content=text, author="Collectivia", elements=elements).send()
