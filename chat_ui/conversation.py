"""The conversation in Chainlit: welcome screen, search scope, streamed answers with their source cards, feedback,
and resuming a past conversation.

Called by the hooks of ``app.py``; the French texts and the rendering are pure modules (``texts``, ``render``,
``scope``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import chainlit as cl
from chainlit.input_widget import MultiSelect, Switch

from chat_ui.backend import BackendError, get_backend
from chat_ui.render import FEEDBACK_ELEMENT, SOURCE_ELEMENT, feedback_props, render_answer
from chat_ui.safe_markdown import safe_token
from chat_ui.scope import DOC_TYPES, REPEALED, SERVICES, doc_type_choices, scope_from_values, service_choices
from chat_ui.privacy_check import checked_question
from chat_ui.reports.dashboard import dashboard_actions
from chat_ui.reports.recorder import record_answer
from chat_ui.session import current_user, manager_actions
from chat_ui.texts import FEEDBACK_TAGS, question_too_long, welcome_markdown
from rag.access import AccessError, User, can_upload, managed_services

logger = logging.getLogger(__name__)

HISTORY_TURNS = 6


async def send_scope_settings(user: User, values: dict[str, Any] | None = None) -> None:
    values = values or {}
    services = service_choices(user)
    widgets = [
        MultiSelect(id=SERVICES, label="Services interrogés", items=services,
                    initial=[s for s in (values.get(SERVICES) or []) if s in services.values()],
                    description="Laissez vide pour chercher dans tous vos documents."),
        MultiSelect(id=DOC_TYPES, label="Types de documents", items=doc_type_choices(),
                    initial=list(values.get(DOC_TYPES) or []),
                    description="Laissez vide pour tous les types."),
        Switch(id=REPEALED, label="Inclure les textes abrogés", initial=bool(values.get(REPEALED)),
               description="Par défaut, les délibérations et procédures abrogées sont écartées."),
    ]
    await cl.ChatSettings(widgets).send()


async def start() -> None:
    user = current_user()
    if user is None:
        await cl.ErrorMessage("Votre compte n'est plus autorisé : reconnectez-vous ou contactez la DSI.").send()
        return
    backend = get_backend()
    backend.start_loading()
    cl.user_session.set("history", [])
    cl.user_session.set("scope_values", {})
    await send_scope_settings(user)
    manages = can_upload(user)
    text = welcome_markdown(user.name, user.services, extractive=backend.extractive,
                            manager_services=managed_services(user), admin=user.has_role("admin"))
    await cl.Message(content=text, actions=(manager_actions() if manages else []) + dashboard_actions(user)).send()


async def resume(thread: dict) -> None:
    user = current_user()
    if user is None:
        await cl.ErrorMessage("Votre compte n'est plus autorisé : reconnectez-vous ou contactez la DSI.").send()
        return
    get_backend().start_loading()
    history: list[tuple[str, str]] = []
    for step in thread.get("steps") or []:
        if step.get("type") == "user_message" and step.get("output"):
            history.append(("user", step["output"]))
        elif step.get("type") == "assistant_message" and (step.get("metadata") or {}).get("collectivia"):
            history.append(("assistant", step.get("output") or ""))
    cl.user_session.set("history", history[-2 * HISTORY_TURNS:])
    metadata = thread.get("metadata") or {}
    values = (metadata.get("chat_settings") if isinstance(metadata, dict) else None) or {}
    cl.user_session.set("scope_values", values)
    await send_scope_settings(user, values)
    if can_upload(user):
        # The buttons go under the last answer (actions are not kept in the history, so nothing piles up there).
        answers = [s for s in thread.get("steps") or [] if s.get("type") == "assistant_message"]
        if answers:
            for action in manager_actions() + dashboard_actions(user):
                await action.send(for_id=answers[-1]["id"])
        else:
            await cl.Message(content="_Gestion documentaire :_", actions=manager_actions()).send()


async def settings_updated(values: dict[str, Any]) -> None:
    user = current_user()
    if user is None:
        return
    cl.user_session.set("scope_values", values)
    scope, problem = scope_from_values(user, values)
    if problem:
        await cl.Message(content=f"_{problem}_").send()


async def reply(message: cl.Message) -> None:
    user = current_user()
    if user is None:
        await cl.ErrorMessage("Votre compte n'est plus autorisé : reconnectez-vous ou contactez la DSI.").send()
        return
    question = (message.content or "").strip()
    if message.elements:
        await cl.Message(content="_Les pièces jointes ne sont pas lues par l'assistant : posez votre question en "
                                 "texte. Pour ajouter un document, utilisez « Ajouter un document »._").send()
    if not question:
        return
    backend = get_backend()
    limit = backend.settings.chat.max_question_chars
    if len(question) > limit:
        await cl.Message(content=question_too_long(len(question), limit)).send()
        return
    if (question := await checked_question(question)) is None:  # personal data: warned, sent masked or not at all
        return
    scope, problem = scope_from_values(user, cl.user_session.get("scope_values") or {})
    if problem:
        await cl.Message(content=f"_{problem}_").send()
    answer_msg = cl.Message(content="", author="Collectivia")
    try:
        await asyncio.to_thread(backend.wait_ready, 300)
    except BackendError as exc:
        await cl.ErrorMessage(f"L'assistant ne peut pas répondre pour l'instant : {exc}").send()
        return
    history = list(cl.user_session.get("history") or [])
    final = await _stream(backend, question, user, history, scope, answer_msg)
    if final is None:
        return
    rendered = render_answer(final, scoped=scope is not None, allowed_hosts=backend.settings.chat.allowed_link_hosts)
    answer_msg.content = rendered.text
    answer_msg.metadata = {"collectivia": {
        "question": question,
        "doc_ids": list(rendered.cited_doc_ids),
        "refused": final.refused,
        "extractive": final.extractive,
        "error": final.error,
        "citations": [c.n for c in final.citations],
        "unsupported": list(final.unsupported),
        "timings_ms": {k: round(v, 1) for k, v in final.timings_ms.items()},
    }}
    await answer_msg.send()
    for card in rendered.sources:
        await cl.CustomElement(name=SOURCE_ELEMENT, props=card, display="inline").send(for_id=answer_msg.id)
    await cl.CustomElement(name=FEEDBACK_ELEMENT, props=feedback_props(answer_msg.id, FEEDBACK_TAGS),
                           display="inline").send(for_id=answer_msg.id)
    await record_answer(user, answer_msg.id, answer_msg.thread_id, question, final, rendered.cited_doc_ids, scope)
    history += [("user", question), ("assistant", final.text)]
    cl.user_session.set("history", history[-2 * HISTORY_TURNS:])
    answers = cl.user_session.get("answers") or {}
    answers[answer_msg.id] = {"question": question, "doc_ids": list(rendered.cited_doc_ids)}
    cl.user_session.set("answers", answers)


async def _stream(backend, question: str, user: User, history, scope, answer_msg: cl.Message):
    """Run the assistant in a thread and stream its tokens into ``answer_msg``; the final ``Answer`` or None."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()

    def work() -> None:
        try:
            for event in backend.assistant.stream(question, user, history, scope=scope):
                loop.call_soon_threadsafe(queue.put_nowait, event)
        except BaseException as exc:  # reported in the chat, never lost
            loop.call_soon_threadsafe(queue.put_nowait, exc)
        finally:
            loop.call_soon_threadsafe(queue.put_nowait, None)

    worker = asyncio.ensure_future(asyncio.to_thread(work))
    final = None
    error: BaseException | None = None
    while True:
        item = await queue.get()
        if item is None:
            break
        if isinstance(item, BaseException):
            error = item
        elif item.kind == "token":
            await answer_msg.stream_token(safe_token(item.token))
        elif item.kind == "answer":
            final = item.answer
    await worker
    if error is not None:
        if isinstance(error, AccessError):
            text = f"Recherche refusée : {error}"
        else:
            logger.exception("échec d'une réponse", exc_info=error)
            text = "Une erreur est survenue pendant la recherche ; réessayez, ou signalez-la à la DSI."
        answer_msg.content = text
        await answer_msg.send()
        return None
    return final


async def save_feedback(action: cl.Action) -> dict:
    """The « avis » action of the feedback card: checked, then stored (Collectivia's table and Chainlit's)."""
    from chainlit.data import get_data_layer

    user = current_user()
    payload = action.payload or {}
    message_id = str(payload.get("message_id") or "")
    value = payload.get("value")
    tags = payload.get("tags") or []
    comment = str(payload.get("comment") or "").strip()
    if user is None:
        return {"ok": False, "error": "Session expirée : reconnectez-vous."}
    if value not in (0, 1) or not message_id:
        return {"ok": False, "error": "Indiquez d'abord si la réponse est utile ou non."}
    if not isinstance(tags, list) or any(t not in FEEDBACK_TAGS for t in tags):
        return {"ok": False, "error": "Étiquette inconnue."}
    if len(comment) > 2000:
        return {"ok": False, "error": "Commentaire trop long (2 000 caractères au plus)."}
    layer = get_data_layer()
    if layer is None:
        return {"ok": False, "error": "L'historique n'est pas activé : avis non enregistré."}
    known = (cl.user_session.get("answers") or {}).get(message_id)
    if known is None:
        step = await layer.get_step(message_id)
        meta = ((step or {}).get("metadata") or {}).get("collectivia") or {}
        known = {"question": meta.get("question", ""), "doc_ids": meta.get("doc_ids", [])}
    try:
        await layer.save_answer_feedback(
            step_id=message_id, user_identifier=user.id, value=int(value), tags=list(dict.fromkeys(tags)),
            comment=comment, question=known.get("question", ""), doc_ids=known.get("doc_ids", []),
        )
    except PermissionError as exc:
        return {"ok": False, "error": str(exc)}
    return {"ok": True}
