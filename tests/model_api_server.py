"""A real local HTTP server speaking the embeddings and rerank APIs of remote model services, deterministic.

Like ``mistral_server.py`` (chat), it is the only kind of stand-in allowed: the code under test reaches it over real
sockets through its real clients (the ``mistralai`` SDK, httpx). Routes:

- ``POST /v1/embeddings`` — Mistral's and OpenAI's shape: ``{"model", "input"|"inputs": [texts]}`` →
  ``{"id", "object": "list", "model", "data": [{"object": "embedding", "index", "embedding"}], "usage"}``;
- ``POST /v1/rerank`` — Cohere/Jina/vLLM/Albert: ``{"model", "query", "documents", "top_n"}`` →
  ``{"results": [{"index", "relevance_score"}]}`` (best first, cut to ``top_n``);
- ``POST /rerank`` — Hugging Face TEI: ``{"query", "texts"}`` → ``[{"index", "score"}]`` (best first).

Vectors are a hashed bag of words (``dim`` dimensions, L2-normalised), so texts sharing words are close and retrieval
through the server is meaningful; rerank scores are the share of the query's words found in each text.

Failures are scripted in order, each consumed by one request: ``server.fail(429, retry_after=1)``,
``server.fail(503)``, ``server.delay(2.0)`` (answers after 2 s). ``server.requests`` records every request (path,
headers, JSON body). With ``api_key`` set, a request without ``Authorization: Bearer <key>`` gets a 401.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

import numpy as np
import pytest

_WORDS = re.compile(r"\w+")


def words(text: str) -> list[str]:
    return _WORDS.findall(text.lower())


def hashed_vector(text: str, dim: int) -> list[float]:
    vector = np.zeros(dim, dtype=np.float64)
    for word in words(text):
        h = int(hashlib.md5(word.encode()).hexdigest(), 16)
        vector[h % dim] += 1.0 if (h >> 8) % 2 else -1.0
    if not vector.any():
        vector[0] = 1.0
    return [float(x) for x in vector / np.linalg.norm(vector)]


def overlap_score(query: str, text: str) -> float:
    asked = set(words(query))
    return len(asked & set(words(text))) / len(asked) if asked else 0.0


@dataclass(frozen=True)
class Recorded:
    path: str
    headers: dict[str, str]
    body: Any
    at: float  # time.monotonic() when it arrived

    @property
    def texts(self) -> list[str]:
        body = self.body if isinstance(self.body, dict) else {}
        found = body.get("input", body.get("inputs", body.get("documents", body.get("texts", []))))
        return [found] if isinstance(found, str) else list(found)


@dataclass(frozen=True)
class _Script:
    status: int = 200
    retry_after: float | None = None
    delay_s: float = 0.0


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "model-api-test-server"
    sys_version = ""
    timeout = 30

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def setup(self) -> None:
        super().setup()
        # Headers and body leave in two writes: without this, Nagle's algorithm and delayed ACKs add ~40 ms to each
        # answer on a kept-alive connection.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        try:
            self.wfile.write(data)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def do_POST(self) -> None:  # noqa: N802
        owner: ModelApiServer = self.server.owner  # type: ignore[attr-defined]
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        path = self.path.split("?")[0]
        request = Recorded(path, {k.lower(): v for k, v in self.headers.items()}, body, time.monotonic())
        owner._record(request)
        if owner.api_key is not None and request.headers.get("authorization") != f"Bearer {owner.api_key}":
            self._json(401, {"object": "error", "message": "Unauthorized", "type": "authentication_error"})
            return
        script = owner._next()
        if script.delay_s and owner._stopping.wait(script.delay_s):
            return
        if script.status != 200:
            headers = {"Retry-After": f"{script.retry_after:g}"} if script.retry_after is not None else {}
            self._json(script.status, {"object": "error", "message": f"scripted {script.status}",
                                       "type": "error", "code": str(script.status)}, headers)
            return
        if not isinstance(body, dict):
            self._json(422, {"detail": "body must be a JSON object"})
            return
        if path == "/v1/embeddings":
            self._embeddings(body)
        elif path == "/v1/rerank":
            self._rerank_cohere(body)
        elif path == "/rerank":
            self._rerank_tei(body)
        else:
            self._json(404, {"detail": f"Not found: {path}"})

    def _embeddings(self, body: dict) -> None:
        owner: ModelApiServer = self.server.owner  # type: ignore[attr-defined]
        texts = body.get("input", body.get("inputs"))
        texts = [texts] if isinstance(texts, str) else texts
        if not isinstance(body.get("model"), str) or not isinstance(texts, list) or not texts:
            self._json(422, {"detail": "model and a non-empty input are required"})
            return
        if any(not isinstance(t, str) or not t for t in texts):
            self._json(422, {"detail": "inputs must be non-empty strings"})
            return
        if owner.max_batch and len(texts) > owner.max_batch:
            self._json(413, {"detail": f"at most {owner.max_batch} inputs"})
            return
        data = [{"object": "embedding", "index": i, "embedding": hashed_vector(t, owner.dim)}
                for i, t in enumerate(texts)]
        if owner.shuffle:
            data.reverse()  # clients must put vectors back in ``index`` order
        tokens = sum(len(words(t)) for t in texts)
        self._json(200, {"id": uuid.uuid4().hex, "object": "list", "model": body["model"], "data": data,
                         "usage": {"prompt_tokens": tokens, "total_tokens": tokens, "completion_tokens": 0}})

    def _rerank_cohere(self, body: dict) -> None:
        documents, query = body.get("documents"), body.get("query")
        if not isinstance(query, str) or not isinstance(documents, list):
            self._json(422, {"detail": "query and documents are required"})
            return
        texts = [d if isinstance(d, str) else d.get("text", "") for d in documents]
        ranked = sorted(range(len(texts)), key=lambda i: (-overlap_score(query, texts[i]), i))
        top_n = body.get("top_n") or len(texts)
        self._json(200, {"id": uuid.uuid4().hex, "model": body.get("model"),
                         "results": [{"index": i, "relevance_score": overlap_score(query, texts[i])}
                                     for i in ranked[:top_n]]})

    def _rerank_tei(self, body: dict) -> None:
        texts, query = body.get("texts"), body.get("query")
        if not isinstance(query, str) or not isinstance(texts, list):
            self._json(422, {"error": "query and texts are required", "error_type": "Validation"})
            return
        ranked = sorted(range(len(texts)), key=lambda i: (-overlap_score(query, texts[i]), i))
        self._json(200, [{"index": i, "score": overlap_score(query, texts[i])} for i in ranked])


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class ModelApiServer:
    """The server on 127.0.0.1 (free port); a context manager."""

    def __init__(self, *, dim: int = 64, api_key: str | None = None, max_batch: int = 0, shuffle: bool = True) -> None:
        self.dim = dim
        self.api_key = api_key
        self.max_batch = max_batch  # > 0: larger batches get HTTP 413
        self.shuffle = shuffle
        self.requests: list[Recorded] = []
        self._queue: list[_Script] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    def fail(self, status: int, *, retry_after: float | None = None) -> "ModelApiServer":
        with self._lock:
            self._queue.append(_Script(status=status, retry_after=retry_after))
        return self

    def delay(self, seconds: float) -> "ModelApiServer":
        with self._lock:
            self._queue.append(_Script(delay_s=seconds))
        return self

    def _next(self) -> _Script:
        with self._lock:
            return self._queue.pop(0) if self._queue else _Script()

    def _record(self, request: Recorded) -> None:
        with self._lock:
            self.requests.append(request)

    @property
    def url(self) -> str:
        assert self._httpd is not None, "server not started"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def start(self) -> "ModelApiServer":
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.owner = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="model-api-test-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is None:
            return
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(5)
        self._httpd = None

    def __enter__(self) -> "ModelApiServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


@pytest.fixture
def model_api() -> Iterator[ModelApiServer]:
    with ModelApiServer() as server:
        yield server
