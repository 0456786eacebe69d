"""Chainlit hooks of the Collectivia chat, and nothing else: each hook hands over to the module that does the work.

Started by ``collectivia serve`` (``chat_ui/serve.py``), which prepares Chainlit's folder, the database and the
secret first.
"""

from __future__ import annotations

import asyncio
import os
from typing import Dict, Optional

import chainlit as cl

from chat_ui import conversation, my_data, session, upload_dialogs
from chat_ui.auth import OIDC, PASSWORD, check_password_async, map_claims, oidc_display_name, session_metadata
from chat_ui.backend import get_backend
from chat_ui.datalayer import database_url, make_data_layer
from chat_ui.memory import release_memory
from chat_ui.reports import dashboard
from chat_ui.sessions import new_session_claims
from rag.access import User

backend = get_backend()
settings = backend.settings


@cl.data_layer
def data_layer():
    return make_data_layer(database_url(settings.chat.database_url, settings.data_dir))


if backend.password_login:

    @cl.password_auth_callback
    async def password_login(username: str, password: str) -> Optional[cl.User]:
        user = await check_password_async(backend.directory.users(), username, password)  # own threads
        if user is None:
            return None
        metadata = {**session_metadata(user, PASSWORD), **new_session_claims()}  # session id and login time
        return cl.User(identifier=user.id, display_name=user.name, metadata=metadata)

else:

    @cl.oauth_callback
    async def oidc_login(provider_id: str, token: str, raw_user_data: Dict[str, str], default_user: cl.User,
                         id_token: Optional[str] = None) -> Optional[cl.User]:
        if provider_id != os.environ.get("OAUTH_GENERIC_NAME", "generic") or not default_user.identifier:
            return None  # only the configured OpenID Connect provider, never another OAuth provider
        services, roles = map_claims(raw_user_data, settings.chat.oidc)
        name = oidc_display_name(raw_user_data, default_user.identifier)
        user = User(id=default_user.identifier, name=name, services=services, roles=roles)
        metadata = {**session_metadata(user, OIDC), **new_session_claims()}  # session id and login time
        return cl.User(identifier=user.id, display_name=name, metadata=metadata)


@cl.on_app_startup
async def startup() -> None:
    backend.start_loading()
    my_data.start_automatic_purge()  # the history older than the retention: now, then daily


@cl.on_app_shutdown
async def shutdown() -> None:
    my_data.stop_automatic_purge()
    backend.close()


@cl.on_chat_start
async def chat_start() -> None:
    await conversation.start()
    await my_data.offer()  # « Supprimer toutes mes conversations », under the welcome


@cl.on_chat_end
async def chat_end() -> None:
    # The conversation is over: its memory goes back to the system (chat_ui/memory.py), off the event loop.
    await asyncio.get_running_loop().run_in_executor(None, release_memory)


@cl.on_chat_resume
async def chat_resume(thread) -> None:
    await conversation.resume(thread)
    await my_data.offer(thread)


@cl.on_settings_update
async def settings_update(values) -> None:
    await conversation.settings_updated(values)


@cl.on_message
async def message(msg: cl.Message) -> None:
    await conversation.reply(msg)


@cl.action_callback("avis")
async def feedback(action: cl.Action):
    return await conversation.save_feedback(action)


@cl.action_callback(session.MANAGE_ADD)
async def add_document(action: cl.Action):
    # The dialog waits for a file and a form: it runs on its own, and the button gets its answer at once.
    asyncio.ensure_future(upload_dialogs.add_document())


@cl.action_callback(session.MANAGE_LIST)
async def list_documents(action: cl.Action):
    await upload_dialogs.list_documents()


@cl.action_callback("Remplacer un document")
async def replace_document(action: cl.Action):
    return await upload_dialogs.replace_document(action)


@cl.action_callback("Retirer un document")
async def withdraw_document(action: cl.Action):
    return await upload_dialogs.withdraw_document(action)


@cl.action_callback(my_data.DELETE_ALL)
async def delete_my_conversations(action: cl.Action):
    await my_data.ask_confirmation(action)


@cl.action_callback(my_data.CONFIRM)
async def confirm_delete_my_conversations(action: cl.Action):
    await my_data.delete_all(action)


@cl.action_callback(my_data.CANCEL)
async def cancel_delete_my_conversations(action: cl.Action):
    await my_data.cancel(action)


@cl.action_callback(dashboard.OPEN)
async def open_dashboard(action: cl.Action):
    await dashboard.open_dashboard()  # refused (and audited) for an agent
