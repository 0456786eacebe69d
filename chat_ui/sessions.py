"""Login sessions that end: an id and a start time in every session token, revocation at logout, an absolute
lifetime, and throttling of failed logins.

Chainlit's session token is a signed JWT that ``POST /auth/jwt`` renews from itself, and ``/logout`` only clears
the cookie: a copied token would stay valid for ever. Collectivia adds two claims to the user carried in the token
(``sid``, a random session id, and ``auth_time``, the login time, both kept by renewals since they travel in the
signed user) and the guard (``guard.py``) refuses a token

- without them (issued before this version, or forged without the secret: impossible to sign anyway),
- older than ``COLLECTIVIA_CHAT__SESSION_HOURS`` since the login, whatever its renewals,
- whose session was ended by ``POST /logout`` (the list of ended sessions is kept in a file of the data directory,
  until their lifetime is over, so that it survives a restart and is shared by replicas on one data directory).

Failed logins are counted per account and per client address over a window; past the limit, logins of that
account (or from that address) are refused — even with the right password — until the window has passed.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

SID = "sid"
AUTH_TIME = "auth_time"


def new_session_claims(now: float | None = None) -> dict[str, Any]:
    """The claims of a new login, to merge into the metadata of the Chainlit user."""
    return {SID: secrets.token_urlsafe(18), AUTH_TIME: int(now if now is not None else time.time())}


@dataclass(frozen=True, slots=True)
class SessionPolicy:
    lifetime_s: float = 12 * 3600


class SessionRegistry:
    """Which session tokens are still valid. Ended sessions are kept in ``path`` (JSON: session id -> expiry)."""

    def __init__(self, path: Path | None, policy: SessionPolicy = SessionPolicy()) -> None:
        self.path = Path(path) if path else None
        self.policy = policy
        self._lock = threading.Lock()
        self._revoked: dict[str, float] = {}
        self._stamp: tuple[int, int] | None = None

    def _reload(self) -> None:
        if self.path is None:
            return
        try:
            st = os.stat(self.path)
        except OSError:
            self._stamp, self._revoked = None, {}
            return
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp == self._stamp:
            return
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            self._revoked = {str(k): float(v) for k, v in data.items()} if isinstance(data, dict) else {}
        except (OSError, ValueError):
            self._revoked = {}
        self._stamp = stamp

    def problem(self, metadata: Mapping[str, Any] | None, now: float | None = None) -> str | None:
        """Why the session of a token (its user's metadata) is no longer valid, or None when it is."""
        now = time.time() if now is None else now
        metadata = metadata if isinstance(metadata, Mapping) else {}
        sid, started = metadata.get(SID), metadata.get(AUTH_TIME)
        if not isinstance(sid, str) or not sid or not isinstance(started, (int, float)):
            return "Session sans identifiant : reconnectez-vous."
        if now - started > self.policy.lifetime_s or started > now + 300:
            return "Session expirée : reconnectez-vous."
        with self._lock:
            self._reload()
            if sid in self._revoked:
                return "Session terminée (déconnexion) : reconnectez-vous."
        return None

    def revoke(self, metadata: Mapping[str, Any] | None, now: float | None = None) -> None:
        """End the session of a token: it is refused from now on, here and in every process sharing the file."""
        now = time.time() if now is None else now
        sid, started = (metadata or {}).get(SID), (metadata or {}).get(AUTH_TIME)
        if not isinstance(sid, str) or not sid:
            return
        expiry = (started if isinstance(started, (int, float)) else now) + self.policy.lifetime_s
        with self._lock:
            self._reload()
            self._revoked = {k: v for k, v in self._revoked.items() if v > now}
            self._revoked[sid] = expiry
            self._save()

    def _save(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(self._revoked, handle)
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        st = os.stat(self.path)
        self._stamp = (st.st_mtime_ns, st.st_size)


@dataclass(frozen=True, slots=True)
class ThrottlePolicy:
    max_per_account: int = 5
    max_per_address: int = 20
    window_s: float = 15 * 60


@dataclass(slots=True)
class LoginThrottle:
    """Failed logins per account and per client address, over a sliding window (in memory, per process)."""

    policy: ThrottlePolicy = ThrottlePolicy()
    _failures: dict[tuple[str, str], deque] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _recent(self, key: tuple[str, str], now: float) -> deque:
        times = self._failures.get(key)
        if times is None:
            return deque()
        while times and times[0] <= now - self.policy.window_s:
            times.popleft()
        if not times:
            del self._failures[key]
        return times

    def retry_after(self, account: str, address: str, now: float | None = None) -> float:
        """Seconds before a login of ``account`` from ``address`` is accepted again; 0 when it may be tried."""
        now = time.monotonic() if now is None else now
        wait = 0.0
        with self._lock:
            for key, limit in ((("account", account.strip().lower()), self.policy.max_per_account),
                               (("address", address), self.policy.max_per_address)):
                times = self._recent(key, now)
                if len(times) >= limit:
                    wait = max(wait, times[-limit] + self.policy.window_s - now)
        return max(0.0, wait)

    def failed(self, account: str, address: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            for key in (("account", account.strip().lower()), ("address", address)):
                self._recent(key, now)
                self._failures.setdefault(key, deque(maxlen=1000)).append(now)

    def succeeded(self, account: str) -> None:
        with self._lock:
            self._failures.pop(("account", account.strip().lower()), None)


def throttled_message(wait_s: float) -> str:
    minutes = max(1, math.ceil(wait_s / 60))
    return (f"Trop de tentatives de connexion. Réessayez dans {minutes} minute{'s' if minutes > 1 else ''}. "
            "En cas d'oubli du mot de passe, contactez la DSI.")
