"""The document-management dialogs of the chat: add a document (file, then title, type and services), see it
progress until it is searchable, list the documents of one's services, replace or withdraw one.

Every dialog checks the user's rights again on the server (``uploads.DocumentManager``): the buttons are only a
convenience of the interface.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from pathlib import Path
from typing import Callable

import chainlit as cl

from chat_ui.backend import get_backend
from chat_ui.body_limits import dropzone_mb
from chat_ui.safe_markdown import safe_markdown as md
from chat_ui.session import current_user, manager_actions
from chat_ui.texts import DOC_TYPE_LABELS, UPLOAD_FORMATS_LABEL, join_fr, service_label
from chat_ui.uploads import DocumentManager, Outcome, Progress
from rag.access import can_manage, can_upload, managed_services, upload_targets

logger = logging.getLogger(__name__)

ASK_TIMEOUT_S = 900
LIST_LIMIT = 300
STEP_LABELS = (
    ("reçu", "Fichier reçu"),
    ("vérifié", "Format, taille et contenu vérifiés"),
    ("analyse", "Lecture du document (texte, titres, pages)"),
    ("indexation", "Découpage en extraits, calcul des vecteurs et indexation"),
    ("consultable", "Consultable par les agents"),
)

_manager: DocumentManager | None = None
_manager_lock = threading.Lock()


def manager() -> DocumentManager:
    global _manager
    with _manager_lock:
        if _manager is None or _manager.backend is not get_backend():
            _manager = DocumentManager(get_backend())
        return _manager


def progress_markdown(title: str, progress: Progress) -> str:
    """The live checklist of an ingestion (pure)."""
    order = [key for key, _ in STEP_LABELS]
    current = order.index(progress.stage) if progress.stage in order else 0
    lines = [f"**{md(title)}** — {progress.elapsed:.0f} s"]
    for i, (key, label) in enumerate(STEP_LABELS):
        if i < current or progress.stage == "consultable":
            mark = "✓"
        elif i == current:
            mark = "…"
        else:
            mark = "○"
        extra = f" ({progress.chunks} extraits)" if key == "indexation" and progress.chunks else ""
        lines.append(f"- {mark} {label}{extra}")
    return "\n".join(lines)


def outcome_markdown(outcome: Outcome, *, verb: str) -> str:
    if not outcome.ok:
        return f"✗ **{verb} refusé** — {md(outcome.message)}\n\nRien n'a été modifié dans l'index."
    if outcome.unchanged:
        return (f"Le fichier est identique à la version déjà indexée de « {md(outcome.title)} » : rien n'a changé.")
    services = join_fr([service_label(s) for s in outcome.services])
    return (f"✓ **« {md(outcome.title)} »** est consultable dès maintenant par les agents : {services} "
            f"({outcome.chunks} extraits, {outcome.seconds:.0f} s).\n\nIdentifiant : `{outcome.doc_id}`. "
            "Posez une question pour le vérifier.")


async def _with_progress(title: str, job: Callable[[Progress], Outcome]) -> Outcome:
    progress = Progress()
    message = cl.Message(content=progress_markdown(title, progress))
    await message.send()
    task = asyncio.ensure_future(asyncio.to_thread(job, progress))
    shown = ""
    while not task.done():
        await asyncio.wait({task}, timeout=0.8)
        text = progress_markdown(title, progress)
        if text != shown:
            message.content = shown = text
            await message.update()
    try:
        outcome = task.result()
    except Exception as exc:  # never leave the agent without an answer
        logger.exception("échec de l'ingestion")
        outcome = Outcome(False, f"erreur inattendue ({type(exc).__name__}) ; signalez-la à la DSI.")
    if outcome.ok:
        progress.set("consultable")
    message.content = progress_markdown(title, progress) if outcome.ok else f"**{md(title)}** — interrompu"
    await message.update()
    return outcome


def _dropzone_mb() -> int:
    # Chainlit's file picker counts whole megabytes (100 at most); the upload route lets as much through.
    return dropzone_mb(get_backend().settings.limits.max_file_mb)


async def _ask_file(text: str):
    files = await cl.AskFileMessage(
        content=text, accept=["*/*"], max_size_mb=_dropzone_mb(), max_files=1, timeout=ASK_TIMEOUT_S,
    ).send()
    return files[0] if files else None


def dialog(func):
    """Run a dialog inside a « run » step, as Chainlit runs ``on_message``: the messages it asks (files, forms) then
    have a parent, which Chainlit needs to accept the answer (an uploaded file is checked against its question)."""
    import functools

    @functools.wraps(func)
    async def wrapper(*args, **kwargs):
        try:
            async with cl.Step(name="on_message", type="run"):
                return await func(*args, **kwargs)
        finally:
            await cl.context.emitter.task_end()  # answering a question marks the session busy again

    return wrapper


@dialog
async def add_document() -> None:
    user = current_user()
    dm = manager()
    if not can_upload(user):
        refusal = dm.refuse(user, "upload", "L'ajout de documents est réservé aux gestionnaires de documents de leurs "
                                            "services.")
        await cl.Message(content=f"✗ {refusal.message}").send()
        return
    limit = get_backend().settings.limits.max_file_mb
    upload = await _ask_file(f"Déposez le document à ajouter ({UPLOAD_FORMATS_LABEL}, {limit:g} Mo au plus). "
                             "Il sera consultable par les agents des services que vous choisirez.")
    if upload is None:
        await cl.Message(content="Ajout annulé : aucun fichier reçu.").send()
        return
    problem = await asyncio.to_thread(dm.precheck, Path(upload.path), upload.name)
    if problem:
        dm.refuse(user, "upload", problem, file=upload.name, size=upload.size)
        await cl.Message(content=f"✗ **Ajout refusé** — {md(problem)}\n\nRien n'a été modifié dans l'index.",
                         actions=manager_actions()).send()
        return
    services = upload_targets(user)
    form = cl.CustomElement(name="FicheDocument", display="inline", props={
        "file_name": upload.name,
        "title": Path(upload.name).stem.replace("_", " ").strip(),
        "doc_types": [{"value": k, "label": v} for k, v in DOC_TYPE_LABELS.items() if k != "fiche"],
        "doc_type": "procedure",
        "services": [{"value": s, "label": service_label(s)} for s in services],
        # One service: chosen for them; several: the manager ticks them (no document is published by default).
        "selected_services": services if len(services) == 1 else [],
    })
    ask = cl.AskElementMessage(content="Décrivez le document : titre, type et services qui pourront le consulter.",
                               element=form, timeout=ASK_TIMEOUT_S)
    answer = await ask.send()
    submitted = bool(answer and answer.get("submitted"))
    ask.content = ("Document décrit : « " + md(str(answer.get("title", ""))) + " »." if submitted
                   else "Description annulée.")
    await ask.update()
    if not submitted:
        await cl.Message(content="Ajout annulé.").send()
        return
    title = str(answer.get("title") or "").strip()
    doc_type = str(answer.get("doc_type") or "")
    chosen = answer.get("services") or []
    chosen = [chosen] if isinstance(chosen, str) else [s for s in chosen if isinstance(s, str)]  # "dsi", not d, s, i
    outcome = await _with_progress(
        f"Ajout de « {title or upload.name} »",
        lambda p: dm.add(user, Path(upload.path), upload.name, title=title, doc_type=doc_type, services=chosen,
                         progress=p),
    )
    await cl.Message(content=outcome_markdown(outcome, verb="Ajout"), actions=manager_actions()).send()


async def list_documents() -> None:
    user = current_user()
    dm = manager()
    if not can_upload(user):
        await cl.Message(content="✗ La gestion des documents est réservée aux gestionnaires de documents.").send()
        return
    records = await asyncio.to_thread(dm.documents, user)
    rows = [{
        "doc_id": r.doc_id, "title": r.title or r.doc_id, "type": DOC_TYPE_LABELS.get(r.doc_type, r.doc_type),
        "services": [service_label(s) for s in r.services], "status": r.status,
    } for r in records[:LIST_LIMIT]]
    if user.has_role("admin"):
        scope = "tous les services"
    else:
        scope = "les services " + join_fr(sorted(managed_services(user)))
    element = cl.CustomElement(name="Documents", display="inline", props={
        "documents": rows, "total": len(records), "truncated": len(records) > LIST_LIMIT, "withdrawn": [],
    })
    await cl.Message(content=f"**Documents que vous gérez** ({len(records)}, {scope}) : remplacez un document par "
                             "une nouvelle version ou retirez-le de l'assistant.", elements=[element]).send()


@dialog
async def _replace_flow(user, doc_id: str) -> None:
    dm = manager()
    payload = await asyncio.to_thread(get_backend().document_payload, doc_id)
    if payload is None or not can_manage(user, payload.get("services") or ()):
        refusal = dm.refuse(user, "replace", "Document introuvable, ou hors de vos services : remplacement refusé.",
                            doc_id=doc_id, services=(payload or {}).get("services") or ())
        await cl.Message(content=f"✗ {refusal.message}").send()
        return
    title = payload.get("title") or doc_id
    upload = await _ask_file(f"Déposez la nouvelle version de « {md(title)} » ({UPLOAD_FORMATS_LABEL}). Elle remplacera "
                             "l'actuelle dans les réponses, avec le même titre et les mêmes services.")
    if upload is None:
        await cl.Message(content="Remplacement annulé : aucun fichier reçu.").send()
        return
    outcome = await _with_progress(f"Remplacement de « {title} »",
                                   lambda p: dm.replace(user, doc_id, Path(upload.path), upload.name, progress=p))
    await cl.Message(content=outcome_markdown(outcome, verb="Remplacement"), actions=manager_actions()).send()


async def replace_document(action: cl.Action) -> dict:
    user = current_user()
    doc_id = str((action.payload or {}).get("doc_id") or "")
    if not can_upload(user):
        refusal = manager().refuse(user, "replace", "Remplacement réservé aux gestionnaires de documents.",
                                   doc_id=doc_id)
        return {"ok": False, "error": refusal.message}
    # The dialog waits for a file: it runs on its own, and the button gets its answer at once.
    asyncio.ensure_future(_replace_flow(user, doc_id))
    return {"ok": True}


async def withdraw_document(action: cl.Action) -> dict:
    user = current_user()
    dm = manager()
    doc_id = str((action.payload or {}).get("doc_id") or "")
    if not can_upload(user):
        refusal = dm.refuse(user, "withdraw", "Retrait réservé aux gestionnaires de documents.", doc_id=doc_id)
        return {"ok": False, "error": refusal.message}
    outcome = await asyncio.to_thread(dm.withdraw, user, doc_id)
    if outcome.ok:
        await cl.Message(content=f"✓ **« {md(outcome.title)} »** (`{outcome.doc_id}`) a été retiré : il n'apparaît plus "
                                 "dans les réponses. Le fichier est conservé dans les archives du serveur.").send()
        return {"ok": True}
    return {"ok": False, "error": outcome.message}
