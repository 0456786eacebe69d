"""The search scope an agent picks in the chat settings: some of their services, some document types, repealed
texts or not. It can only narrow what the agent may see (``rag.access`` refuses anything wider anyway).

Pure: the widgets' choices and values in, a ``Scope`` (or a French problem) out.
"""

from __future__ import annotations

from typing import Any, Mapping

from chat_ui.texts import DOC_TYPE_LABELS, service_label
from rag.access import Scope, User, visible_services

SERVICES = "services"
DOC_TYPES = "doc_types"
REPEALED = "include_repealed"


def service_choices(user: User) -> dict[str, str]:
    """{label: service id} of what the agent may search: their services, then documents open to all."""
    visible = visible_services(user)
    ordered = sorted(s for s in visible if s in user.services) + sorted(visible - set(user.services))
    return {service_label(s): s for s in ordered}


def doc_type_choices() -> dict[str, str]:
    return {label: value for value, label in DOC_TYPE_LABELS.items()}


def scope_from_values(user: User, values: Mapping[str, Any] | None) -> tuple[Scope | None, str | None]:
    """(scope, problem): None for the whole of what the agent may see; an empty choice means « all »."""
    values = values or {}
    visible = visible_services(user)
    chosen = [s for s in (values.get(SERVICES) or []) if s in visible]
    services = frozenset(chosen) if chosen and set(chosen) != visible else None
    types = [t for t in (values.get(DOC_TYPES) or []) if t in DOC_TYPE_LABELS]
    doc_types = frozenset(types) if types and set(types) != set(DOC_TYPE_LABELS) else None
    repealed = bool(values.get(REPEALED))
    if values.get(SERVICES) and not chosen:
        return None, "Aucun des services choisis ne vous est accessible : la recherche porte sur tous vos documents."
    if services is None and doc_types is None and not repealed:
        return None, None
    return Scope(services=services, doc_types=doc_types, include_repealed=repealed), None
