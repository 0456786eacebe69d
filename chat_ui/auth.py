"""Who is logged in: password login against the users file (argon2id hashes), OpenID Connect claims mapped to
services and roles, and the Collectivia ``User`` behind a Chainlit user.

Deny by default: an unknown user, a wrong password, an unmapped group or an unknown provider give nothing. A
password user is looked up again in the users file at every request, so that a removed user or service takes
effect at once; an OpenID Connect user carries the services and roles mapped at login (signed in the session token).

No Chainlit import here: the Chainlit hooks (``app.py``) turn these values into ``cl.User``.
"""

from __future__ import annotations

import asyncio
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Mapping

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from collectivia.settings import OidcSettings
from index.documents import SERVICE_ID
from rag.access import ROLES, User, UsersFileError, load_users

PASSWORD = "password"
OIDC = "oidc"

_hasher = PasswordHasher()  # argon2id with argon2-cffi's defaults, as in corpora/users.yaml
# Password checks run in threads of their own: in the event loop's default pool they would queue behind the answers
# being streamed (each holds a thread for its whole length), and a login could wait a minute on a busy morning.
# Two at a time: argon2 takes 64 MiB and a few dozen milliseconds per check, outside the GIL.
LOGIN_THREADS = 2
_login_pool = ThreadPoolExecutor(max_workers=LOGIN_THREADS, thread_name_prefix="collectivia-login")
_dummy_hash: str | None = None
_dummy_lock = threading.Lock()


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def _dummy() -> str:
    """A hash to verify against when the user is unknown, so that timing does not tell whether a user exists."""
    global _dummy_hash
    with _dummy_lock:
        if _dummy_hash is None:
            _dummy_hash = _hasher.hash("collectivia: utilisateur inconnu")
        return _dummy_hash


def read_users(path: Path) -> dict[str, User]:
    """``rag.access.load_users``, with a French refusal (``UsersFileError``) for a file that is not UTF-8."""
    try:
        return load_users(path)
    except UnicodeDecodeError as exc:
        raise UsersFileError(
            f"{path} : fichier des utilisateurs illisible : il doit être enregistré en UTF-8 (octet "
            f"{exc.object[exc.start:exc.start + 1]!r} à la position {exc.start} ; réenregistrez-le en UTF-8)"
        ) from exc


def check_password(users: Mapping[str, User], user_id: str, password: str) -> User | None:
    """The user when ``password`` matches their argon2 hash; None otherwise (unknown user, no hash, wrong password)."""
    user = users.get((user_id or "").strip())
    stored = user.password_hash if user is not None and user.password_hash else _dummy()
    try:
        ok = _hasher.verify(stored, password or "")
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        ok = False
    if ok and user is not None and user.password_hash:
        return user
    return None


async def check_password_async(users: Mapping[str, User], user_id: str, password: str) -> User | None:
    """``check_password`` from the event loop, in the login threads (never behind the answers' threads)."""
    return await asyncio.get_running_loop().run_in_executor(_login_pool, check_password, users, user_id, password)


class UserDirectory:
    """The users file, read again whenever it changes on disk (modification time and size)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._users: dict[str, User] = {}

    def users(self) -> dict[str, User]:
        try:
            st = os.stat(self.path)
            stamp = (st.st_mtime_ns, st.st_size)
        except OSError:
            stamp = None
        with self._lock:
            if stamp is None:
                self._stamp, self._users = None, {}
            elif stamp != self._stamp:
                try:
                    self._users = read_users(self.path)
                except UsersFileError:
                    self._users = {}  # an invalid file logs nobody in rather than keeping stale rights
                self._stamp = stamp
            return self._users

    def get(self, user_id: str) -> User | None:
        return self.users().get(user_id)


# --------------------------------------------------------------------------------------------------------------
# OpenID Connect
# --------------------------------------------------------------------------------------------------------------


def claim_values(data: Mapping[str, Any], claim: str) -> list[str]:
    """Values of a claim given by name or dotted path (``realm_access.roles``): a list, or one string."""
    node: Any = data
    for part in (claim or "").split("."):
        if not isinstance(node, Mapping) or part not in node:
            return []
        node = node[part]
    if isinstance(node, str):
        return [node]
    if isinstance(node, (list, tuple, set)):
        return [str(v) for v in node if isinstance(v, (str, int))]
    return []


def map_claims(raw: Mapping[str, Any], oidc: OidcSettings) -> tuple[frozenset[str], frozenset[str]]:
    """(services, roles) of an OpenID Connect user: claim values mapped by the settings; unmapped values give
    nothing (deny by default) and every user is an agent."""
    services = {
        oidc.service_map[v] for v in claim_values(raw, oidc.services_claim)
        if v in oidc.service_map and SERVICE_ID.match(oidc.service_map[v])
    }
    roles = {"agent"} | {
        oidc.role_map[v] for v in claim_values(raw, oidc.roles_claim)
        if v in oidc.role_map and oidc.role_map[v] in ROLES
    }
    return frozenset(services), frozenset(roles)


def oidc_display_name(raw: Mapping[str, Any], identifier: str) -> str:
    for key in ("name", "preferred_username"):
        if isinstance(raw.get(key), str) and raw[key].strip():
            return raw[key].strip()
    given, family = raw.get("given_name"), raw.get("family_name") or raw.get("usual_name")
    full = " ".join(x for x in (given, family) if isinstance(x, str) and x.strip())
    return full or identifier


# --------------------------------------------------------------------------------------------------------------
# Chainlit user <-> Collectivia user
# --------------------------------------------------------------------------------------------------------------


def session_metadata(user: User, provider: str) -> dict[str, Any]:
    """What the Chainlit user carries (signed in its session token): never the password hash."""
    return {"provider": provider, "name": user.name, "services": sorted(user.services), "roles": sorted(user.roles)}


def collectivia_user(
    identifier: str | None,
    metadata: Mapping[str, Any] | None,
    *,
    directory: UserDirectory | None,
    password_login: bool,
    oidc_login: bool,
) -> User | None:
    """The Collectivia user behind a logged-in Chainlit user, or None (deny)."""
    if not identifier or not isinstance(metadata, Mapping):
        return None
    provider = metadata.get("provider")
    if provider == PASSWORD and password_login and directory is not None:
        return directory.get(identifier)
    if provider == OIDC and oidc_login:
        services = metadata.get("services") or []
        roles = metadata.get("roles") or []
        if not isinstance(services, list) or not isinstance(roles, list):
            return None
        return User(
            id=identifier,
            name=str(metadata.get("name") or identifier),
            services=frozenset(s for s in services if isinstance(s, str) and SERVICE_ID.match(s)),
            roles=frozenset(r for r in roles if r in ROLES) | {"agent"},
        )
    return None

