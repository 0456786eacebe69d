"""What every Chainlit dialog reads from the session: its Collectivia user, and the document-management buttons.

Imported by ``conversation.py`` and ``upload_dialogs.py`` (which import nothing of each other).
"""

from __future__ import annotations

import chainlit as cl

from chat_ui.backend import get_backend
from rag.access import User

MANAGE_ADD = "Ajouter un document"
MANAGE_LIST = "Mes documents"


def current_user() -> User | None:
    """The Collectivia user of this session, looked up again at each call (a removed right applies at once)."""
    cl_user = cl.user_session.get("user")
    if cl_user is None:
        return None
    return get_backend().user_of(cl_user.identifier, cl_user.metadata)


def manager_actions() -> list[cl.Action]:
    """The buttons of a document manager: add a document, list (replace, withdraw) theirs."""
    return [
        cl.Action(name=MANAGE_ADD, payload={}, label="Ajouter un document", icon="file-plus",
                  tooltip="Déposer un fichier et le rendre consultable par les agents de vos services"),
        cl.Action(name=MANAGE_LIST, payload={}, label="Gérer mes documents", icon="folder-open",
                  tooltip="Lister, remplacer ou retirer les documents de vos services"),
    ]
