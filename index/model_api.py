"""Calls to a remote model API (embeddings, reranking): URLs, timeouts, retries with backoff, French errors.

Only used when an administrator chooses a remote embedder or reranker (off by default). A call is retried on
HTTP 408/409/425/429/5xx, timeouts and refused connections, waiting what the server asks in ``Retry-After`` (at
most ``max_wait_s``) or an exponential backoff; other statuses (401, 403, 404, 422…) fail at once, with a French
message that names the service, its URL, the HTTP status and the setting to look at.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Callable, Mapping, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

RETRYABLE = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


class RemoteServiceError(ValueError):
    """A remote model service failed or refused the request; the message is French and quotes the URL and status.

    A ``ValueError`` so that the command line prints it as a configuration problem rather than a traceback."""

    def __init__(self, message: str, *, status: int | None = None, retryable: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable


class Failure(Exception):
    """One failed attempt, as the client saw it: an HTTP status (``None``: timeout or no connection)."""

    def __init__(self, status: int | None, detail: str = "", retry_after_s: float | None = None, *,
                 timeout: bool = False) -> None:
        super().__init__(status, detail)
        self.status = status
        self.detail = detail
        self.retry_after_s = retry_after_s
        self.timeout = timeout


@dataclass(frozen=True, slots=True)
class SettingNames:
    """The environment variables an error message points to."""

    endpoint: str
    api_key: str
    model: str
    timeout: str
    batch: str = ""


def api_url(endpoint: str, route: str) -> str:
    """The URL of ``route`` (``embeddings``, ``rerank``) under ``endpoint``: used as is when it already ends with
    ``/route``, ``endpoint + /route`` when it ends with ``/v1``, else ``endpoint + /v1/route``."""
    base = endpoint.strip().rstrip("/")
    if base.endswith("/" + route):
        return base
    if base.endswith("/v1"):
        return f"{base}/{route}"
    return f"{base}/v1/{route}"


def retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds asked by ``Retry-After`` (seconds or HTTP date) or ``retry-after-ms``; ``None`` when absent."""
    if not headers:
        return None
    lowered = {k.lower(): v for k, v in headers.items()}
    value = lowered.get("retry-after-ms")
    if value:
        try:
            return max(float(value) / 1000.0, 0.0)
        except ValueError:
            pass
    value = lowered.get("retry-after")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
        return max((when - when.now(when.tzinfo)).total_seconds(), 0.0)
    except (TypeError, ValueError):
        return None


def short(text: str, limit: int = 200) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class RemoteCaller:
    """Runs one request with the retry policy, the optional rate limit and the French error messages."""

    def __init__(
        self,
        *,
        service: str,
        url: str,
        names: SettingNames,
        timeout_s: float = 30.0,
        max_retries: int = 3,
        backoff_s: float = 0.5,
        max_wait_s: float = 60.0,
        requests_per_s: float | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.service = service  # e.g. « le service d'embeddings »
        self.url = url
        self.names = names
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_wait_s = max_wait_s
        self.min_interval_s = 1.0 / requests_per_s if requests_per_s else 0.0
        self._sleep = sleep
        self._clock = clock
        self._lock = threading.Lock()
        self._next_slot = 0.0
        self.attempts = 0  # attempts made by the last call (for tests and logs)

    def _throttle(self) -> None:
        if not self.min_interval_s:
            return
        with self._lock:
            now = self._clock()
            wait = self._next_slot - now
            self._next_slot = max(now, self._next_slot) + self.min_interval_s
        if wait > 0:
            self._sleep(wait)

    def call(self, send: Callable[[], T]) -> T:
        """``send()`` once, then again after each retryable ``Failure``, at most ``max_retries`` more times."""
        self.attempts = 0
        while True:
            self._throttle()
            self.attempts += 1
            try:
                return send()
            except Failure as failure:
                retryable = failure.status is None or failure.status in RETRYABLE
                if not retryable or self.attempts > self.max_retries:
                    raise self.error(failure) from None
                wait = failure.retry_after_s
                if wait is None:
                    wait = self.backoff_s * (2 ** (self.attempts - 1))
                wait = min(wait, self.max_wait_s)
                log.warning("%s %s : %s ; nouvel essai dans %.1f s", self.service, self.url,
                            failure.status or failure.detail, wait)
                self._sleep(wait)

    def error(self, failure: Failure) -> RemoteServiceError:
        """The French message for a failure that is not (or no longer) retried."""
        head = f"{self.service} {self.url}"
        tries = f"{self.attempts} tentative{'s' if self.attempts > 1 else ''}"
        detail = f" ({short(failure.detail)})" if failure.detail else ""
        status = failure.status
        n = self.names
        if status is None and failure.timeout:
            message = f"{head} n'a pas répondu en {self.timeout_s:g} s ({tries} ; délai : {n.timeout})"
        elif status is None:
            message = f"{head} est injoignable ({tries}){detail} ; vérifiez {n.endpoint}"
        elif status < 400:
            message = f"{head} a renvoyé une réponse inattendue{detail}"
        elif status in (401, 403):
            message = f"{head} a répondu {status} : clé d'API refusée ({n.api_key})"
        elif status == 404:
            message = f"{head} a répondu 404 : adresse ou modèle inconnu{detail} ; vérifiez {n.endpoint} et {n.model}"
        elif status == 413:
            hint = f" ; baissez {n.batch}" if n.batch else ""
            message = f"{head} a répondu 413 : requête trop volumineuse{hint}"
        elif status == 429:
            hint = f" ou baissez {n.batch}" if n.batch else ""
            message = (f"{head} a répondu 429 : trop de requêtes, limite de débit atteinte ({tries}) ; "
                       f"réessayez plus tard{hint}")
        elif status >= 500:
            message = f"{head} a répondu {status} : service indisponible ({tries}){detail}"
        else:
            message = f"{head} a répondu {status} : requête refusée{detail} ; vérifiez {n.model}"
        return RemoteServiceError(message, status=status, retryable=status is None or status in RETRYABLE)


def bearer(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def post_json(client, url: str, body: dict, *, timeout_s: float):
    """POST ``body`` with an httpx client; the decoded JSON, or a ``Failure``."""
    import httpx

    try:
        response = client.post(url, json=body, timeout=timeout_s)
    except httpx.TimeoutException as exc:
        raise Failure(None, type(exc).__name__, timeout=True) from None
    except httpx.TransportError as exc:
        raise Failure(None, str(exc) or type(exc).__name__) from None
    if response.status_code >= 400:
        raise Failure(response.status_code, _error_text(response), retry_after(response.headers))
    try:
        return response.json()
    except ValueError:
        raise Failure(response.status_code, "réponse qui n'est pas du JSON : " + short(response.text, 80)) from None


def _error_text(response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text
    if isinstance(body, dict):
        for key in ("message", "detail", "error"):
            value = body.get(key)
            if isinstance(value, dict):
                value = value.get("message") or value
            if value:
                return str(value)
    return str(body)
