"""Who sees which report (deny by default): an administrator every service, a document manager the services they
manage, an agent nothing. A narrower ``--service`` must lie inside the view, or the request is refused, in French,
naming the service."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from index.documents import ALL_AGENTS
from rag.access import User, managed_services


class ReportAccessError(PermissionError):
    """The user may not see this report; the message says why, in French."""


@dataclass(frozen=True, slots=True)
class View:
    """The services a report covers; ``services is None``: every service (an administrator's view)."""

    services: frozenset[str] | None

    def covers(self, services: Iterable[str] | None) -> bool:
        """Whether something asked by agents (or about documents) of these services is in view."""
        if self.services is None:
            return True
        return bool(services) and bool(set(services) & self.services)

    @property
    def label(self) -> str:
        return "tous les services" if self.services is None else ", ".join(sorted(self.services))


def report_view(user: User | None, requested: Iterable[str] | None = None) -> View:
    """The view of ``user``, narrowed to ``requested`` services; raises ``ReportAccessError``."""
    if not isinstance(user, User):
        raise ReportAccessError("aucun utilisateur authentifié : tableau de bord refusé")
    if user.has_role("admin"):
        allowed: frozenset[str] | None = None
    elif user.has_role("document_manager"):
        allowed = managed_services(user) - {ALL_AGENTS}
        if not allowed:
            raise ReportAccessError(f"tableau de bord refusé : {user.id} ne gère aucun service")
    else:
        raise ReportAccessError(f"tableau de bord réservé aux gestionnaires documentaires et aux administrateurs : "
                                f"{user.id} est agent")
    wanted = frozenset(s.strip() for s in requested or () if s and s.strip())
    if not wanted:
        return View(allowed)
    if allowed is not None and not wanted <= allowed:
        outside = ", ".join(f"« {s} »" for s in sorted(wanted - allowed))
        raise ReportAccessError(f"service(s) {outside} hors de votre périmètre (services gérés : "
                                f"{', '.join(sorted(allowed))})")
    return View(wanted)
