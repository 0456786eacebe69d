"""An agent's own data in the chat: the « Supprimer toutes mes conversations » button (with a confirmation), and the
automatic purge of what is older than the retention while ``collectivia serve`` runs.

The deletion goes through ``retention.delete_conversations`` (the agent's conversations only, with their messages,
cards and feedback) and is audited in ``audit/privacy.jsonl`` with its counts, never a question.
Called by the hooks of ``app.py``.
"""

from __future__ import annotations

import asyncio
import logging

import chainlit as cl

from chat_ui.backend import get_backend
from chat_ui.history_db import database_url
from chat_ui.privacy_audit import PrivacyAudit, privacy_log_path
from chat_ui.retention import ROW_COUNTS, ErasureReport, PurgeReport, delete_conversations, purge_periodically
from chat_ui.session import current_user

logger = logging.getLogger(__name__)

DELETE_ALL = "Supprimer mes conversations"
CONFIRM = "Confirmer la suppression de mes conversations"
CANCEL = "Annuler la suppression de mes conversations"
_PENDING = "my_data_confirmation"  # the confirmation message of this session, while it waits for an answer


def _url() -> str:
    settings = get_backend().settings
    return database_url(settings.chat.database_url, settings.data_dir)


def _audit() -> PrivacyAudit:
    return PrivacyAudit(privacy_log_path(get_backend().settings.data_dir))


def delete_action() -> cl.Action:
    return cl.Action(name=DELETE_ALL, payload={}, label="Supprimer toutes mes conversations", icon="trash-2",
                     tooltip="Effacer définitivement l'historique de vos conversations et vos avis")


async def offer(thread: dict | None = None) -> None:
    """The button, under the welcome message of a new conversation or the last message of a resumed one."""
    if thread is not None:
        steps = [s for s in thread.get("steps") or [] if "message" in str(s.get("type"))]
        for_id = steps[-1]["id"] if steps else None
    else:
        messages = cl.chat_context.get()
        for_id = messages[-1].id if messages else None
    if for_id:
        await delete_action().send(for_id=str(for_id))


def done_text(report: ErasureReport) -> str:
    c = report.counts
    if not c.threads and not c.answer_feedback:
        return "_Vous n'aviez aucune conversation enregistrée : rien à supprimer._"
    return (f"**Historique vidé : {c.threads} conversation(s) supprimée(s)**, celle-ci comprise, avec leurs {c.steps} "
            f"messages et {c.feedbacks + c.answer_feedback} avis. Elles ne figurent plus dans l'historique (rechargez "
            "la page pour mettre la liste à jour) ; votre prochaine question ouvrira une nouvelle conversation.")


async def ask_confirmation(action: cl.Action) -> None:
    """The first click: a confirmation message with its two buttons (a second click replaces the first one's)."""
    if current_user() is None:
        await cl.ErrorMessage("Votre compte n'est plus autorisé : reconnectez-vous ou contactez la DSI.").send()
        return
    await _settle("_Demande remplacée par la suivante._")
    message = cl.Message(
        content="**Supprimer toutes vos conversations ?** Leurs messages, leurs sources et vos avis seront effacés "
                "définitivement, y compris cette conversation. Les conversations des autres agents ne sont pas "
                "concernées.",
        author="Collectivia",
        actions=[cl.Action(name=CONFIRM, payload={}, label="Oui, tout supprimer", icon="trash-2"),
                 cl.Action(name=CANCEL, payload={}, label="Annuler", icon="x")])
    await message.send()
    cl.user_session.set(_PENDING, message)


async def _settle(content: str) -> None:
    """The waiting confirmation, if any, loses its buttons and says how it ended."""
    message = cl.user_session.get(_PENDING)
    if message is None:
        return
    cl.user_session.set(_PENDING, None)
    await message.remove_actions()
    message.actions = []
    message.content = content
    await message.update()


async def cancel(action: cl.Action) -> None:
    user = current_user()
    await _settle("Suppression annulée : vos conversations sont conservées.")
    if user is not None:
        _audit().write(action="delete_own", by=user.id, subject=user.id, outcome="cancelled")


async def delete_all(action: cl.Action) -> None:
    """The confirmation: delete every conversation of the agent of this session, and theirs only."""
    user = current_user()
    if user is None:
        await cl.ErrorMessage("Votre compte n'est plus autorisé : reconnectez-vous ou contactez la DSI.").send()
        return
    await _settle("Suppression confirmée.")
    try:
        report = await delete_conversations(_url(), user.id)
    except Exception as exc:  # the database is unreachable: said, audited, nothing half-announced
        logger.error("suppression des conversations de %s impossible : %s", user.id, exc)
        _audit().write(action="delete_own", by=user.id, subject=user.id, outcome="failed", detail=type(exc).__name__)
        await cl.ErrorMessage("La suppression n'a pas pu être faite (base de l'historique indisponible) : "
                              "réessayez plus tard ou contactez la DSI.").send()
        return
    # This conversation is gone too: what the session writes from now on waits for the agent's next message,
    # which starts a new conversation of theirs.
    cl.context.session.has_first_interaction = False
    cl.user_session.set("history", [])
    _audit().write(action="delete_own", by=user.id, subject=user.id,
                   counts={k: v for k, v in report.to_dict().items() if k != "identifier"})
    await cl.Message(content=done_text(report), author="Collectivia").send()


# -- automatic purge -------------------------------------------------------------------------------------------------

_purges: asyncio.Task | None = None


def _purged(outcome: PurgeReport | BaseException) -> None:
    audit = _audit()
    if isinstance(outcome, BaseException):
        logger.error("purge automatique de l'historique impossible : %s : %s", type(outcome).__name__, outcome)
        audit.write(action="purge", by="serve", outcome="failed", detail=type(outcome).__name__)
        return
    data = outcome.to_dict()
    logger.info("purge automatique de l'historique : %s conversations supprimées", data["threads"])
    audit.write(action="purge", by="serve",
                counts={k: data[k] for k in ROW_COUNTS},
                detail=f"retention_days={outcome.retention_days} cutoff={outcome.cutoff}")


def start_automatic_purge() -> None:
    """At start-up, then once a day (``retention.PURGE_EVERY_S``); nothing when the retention is 0 (kept forever)."""
    global _purges
    days = get_backend().settings.chat.retention_days
    if days == 0 or _purges is not None:
        return
    _purges = asyncio.get_running_loop().create_task(purge_periodically(_url(), days, _purged),
                                                     name="collectivia-purge")


def stop_automatic_purge() -> None:
    global _purges
    if _purges is not None:
        _purges.cancel()
        _purges = None
