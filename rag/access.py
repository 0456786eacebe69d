"""Who may see and manage what: users, their services, and the Qdrant filter built from them (deny by default).

The filter is a ``qdrant_client.models.Filter`` that the store puts inside every prefetch and query. A user sees
the documents of any of their services and the documents marked ``tous``; a user without a service sees only the
latter. Repealed documents (``status: abroge``) are left out unless asked for. A per-question scope can only
narrow that set, never widen it. Service ids match exactly: ``RH`` or ``état-civil`` are not ``rh`` or
``etat-civil``.

Manage rights sit here too: an agent manages nothing, a document manager the documents whose services are all
among their own, an administrator every document (and may publish to ``tous``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator
from qdrant_client import models

from index.documents import ALL_AGENTS, SERVICE_ID

ROLES = ("agent", "document_manager", "admin")


class AccessError(PermissionError):
    """A request asks for more than the user may see."""


class UsersFileError(ValueError):
    """The users file is missing or invalid; the message names the file, the user and the field."""


@dataclass(frozen=True, slots=True)
class User:
    id: str
    name: str
    services: frozenset[str] = frozenset()
    roles: frozenset[str] = frozenset({"agent"})
    password_hash: str | None = field(default=None, repr=False, compare=False)

    def has_role(self, role: str) -> bool:
        return role in self.roles or "admin" in self.roles


@dataclass(frozen=True, slots=True)
class Scope:
    """An optional narrowing of one question: some of the user's services and/or some doc types."""

    services: frozenset[str] | None = None
    doc_types: frozenset[str] | None = None
    include_repealed: bool = False


def visible_services(user: User) -> frozenset[str]:
    return frozenset(user.services) | {ALL_AGENTS}


def access_filter(user: User, scope: Scope | None = None) -> models.Filter:
    """The Qdrant filter of what ``user`` may retrieve, narrowed by ``scope``."""
    if not isinstance(user, User):
        raise AccessError("aucun utilisateur authentifié : recherche refusée")
    allowed = visible_services(user)
    scope = scope or Scope()
    if scope.services is not None:
        outside = set(scope.services) - allowed
        if outside:
            raise AccessError(
                f"périmètre refusé : {user.id} n'appartient pas au(x) service(s) {sorted(outside)} "
                f"(services autorisés : {sorted(allowed)})"
            )
        allowed = frozenset(scope.services)
    must: list[models.Condition] = [
        models.FieldCondition(key="services", match=models.MatchAny(any=sorted(allowed)))
    ]
    if scope.doc_types:
        must.append(models.FieldCondition(key="doc_type", match=models.MatchAny(any=sorted(scope.doc_types))))
    must_not: list[models.Condition] = []
    if not scope.include_repealed:
        must_not.append(models.FieldCondition(key="status", match=models.MatchValue(value="abroge")))
    return models.Filter(must=must, must_not=must_not or None)


def can_see(user: User, services: Iterable[str]) -> bool:
    """Whether a document with these services is visible to ``user`` (for checks outside Qdrant: files, evals)."""
    return bool(set(services) & visible_services(user))


# --------------------------------------------------------------------------------------------------------------
# Manage rights: who may add, replace and withdraw documents (deny by default)
# --------------------------------------------------------------------------------------------------------------


def managed_services(user: User | None, all_services: Iterable[str] = ()) -> frozenset[str]:
    """Services whose documents ``user`` may add, replace and withdraw: none for an agent, their own for a document
    manager, every service (those given, and documents open to all) for an administrator."""
    if not isinstance(user, User):
        return frozenset()
    if user.has_role("admin"):
        return frozenset(user.services) | frozenset(all_services) | {ALL_AGENTS}
    if user.has_role("document_manager"):
        return frozenset(user.services)
    return frozenset()


def can_upload(user: User | None) -> bool:
    """Whether ``user`` may add documents at all (and open the document-management dialogs)."""
    return bool(managed_services(user))


def can_manage(user: User | None, doc_services: Iterable[str]) -> bool:
    """Whether ``user`` may replace or withdraw a document with these services: an administrator, any document; a
    document manager, a document whose services are all among their own; nobody, a document without services."""
    if not isinstance(user, User):
        return False
    if user.has_role("admin"):
        return True
    services = set(doc_services or ())
    return bool(services) and services <= managed_services(user)


def upload_targets(user: User | None) -> list[str]:
    """Services a new document may be published to: the manager's own, and « tous » for an administrator only."""
    if not can_upload(user):
        return []
    own = sorted(s for s in user.services if s != ALL_AGENTS)
    return own + ([ALL_AGENTS] if user.has_role("admin") else [])


# --------------------------------------------------------------------------------------------------------------
# Users file
# --------------------------------------------------------------------------------------------------------------


class _UserModel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    name: str
    services: list[str] = []
    roles: list[str] = ["agent"]
    password_hash: str | None = None

    @field_validator("services", "roles", mode="before")
    @classmethod
    def _one_as_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value  # « services: dsi » is one service, not d, s, i

    @field_validator("services")
    @classmethod
    def _services(cls, value: list[str]) -> list[str]:
        for service in value:
            if not SERVICE_ID.match(service):
                raise ValueError(f"identifiant de service invalide {service!r} (minuscules ASCII, chiffres, - ou _)")
        return value

    @field_validator("roles")
    @classmethod
    def _roles(cls, value: list[str]) -> list[str]:
        for role in value:
            if role not in ROLES:
                raise ValueError(f"rôle inconnu {role!r} (rôles possibles : {', '.join(ROLES)})")
        return value


def load_users(path: Path) -> dict[str, User]:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise UsersFileError(
            f"fichier des utilisateurs introuvable : {path} (réglez COLLECTIVIA_USERS ou créez-le avec "
            "« collectivia users add »)"
        ) from exc
    except (OSError, yaml.YAMLError) as exc:
        raise UsersFileError(f"{path} : fichier des utilisateurs illisible ({exc})") from exc
    raw = {} if raw is None else raw
    entries = raw.get("users") or [] if isinstance(raw, dict) else None
    if not isinstance(entries, list):
        raise UsersFileError(f"{path} : attendu « users: » suivi d'une liste d'utilisateurs")
    users: dict[str, User] = {}
    for position, entry in enumerate(entries, start=1):
        try:
            model = _UserModel.model_validate(entry)
        except ValidationError as exc:
            who = entry.get("id", f"n° {position}") if isinstance(entry, dict) else f"n° {position}"
            problems = "; ".join(f"champ « {'.'.join(map(str, e['loc']))} » : {e['msg']}" for e in exc.errors())
            raise UsersFileError(f"{path} : utilisateur {who} : {problems}") from exc
        if model.id in users:
            raise UsersFileError(f"{path} : utilisateur {model.id} défini deux fois")
        users[model.id] = User(
            id=model.id,
            name=model.name,
            services=frozenset(model.services),
            roles=frozenset(model.roles),
            password_hash=model.password_hash,
        )
    return users


def get_user(users: dict[str, User], user_id: str) -> User:
    try:
        return users[user_id]
    except KeyError:
        known = ", ".join(sorted(users)) or "aucun"
        raise AccessError(f"utilisateur inconnu : {user_id!r} (utilisateurs connus : {known})") from None
