"""A real local HTTP server speaking Mistral's chat-completions API, scripted and deterministic.

The only stand-in of the project: the code under test talks to it over real sockets through its real client
(LangChain's ``ChatMistralAI`` over httpx). ``POST /v1/chat/completions`` answers like Mistral's API does:

- without ``"stream": true``: one JSON ``chat.completion`` object (``choices[0].message.content``, ``usage``);
- with ``"stream": true``: ``text/event-stream`` sent with chunked transfer encoding, one ``data: {chunk}`` event per
  token (``object: "chat.completion.chunk"``, ``choices[0].delta.content``), the first delta carrying the role, a
  last chunk with an empty delta, the ``finish_reason`` and the ``usage``, then ``data: [DONE]``.

Replies are taken in order from a queue filled by the test:

    server.reply("Le délai est de quinze jours [1].")        # text (split into several tokens when streamed)
    server.error(429)                                         # HTTP error with Mistral's JSON error body
    server.delay(3, "trop tard")                              # answers after 3 s (client timeouts)
    server.disconnect()                                       # closes the connection before any response
    server.drop_mid_stream("Le délai est de", after=2)        # headers and 2 tokens, then the connection is cut

An empty queue answers HTTP 500 with a message saying so (and counts it in ``unscripted``), so a test never hangs.
Every request is recorded (method, path, headers, JSON body) in ``server.requests``.

Use ``with MistralServer() as server:`` or the ``mistral_server`` pytest fixture (import it into the test module);
``server.base_url`` is ``http://127.0.0.1:PORT/v1``. ``closed_port_url()`` gives the URL of a port nobody listens on.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator, Sequence

import pytest

COMPLETIONS_PATH = "/v1/chat/completions"

# Bodies of Mistral's API errors (https://docs.mistral.ai/api/): {"object": "error", "message", "type", "param", "code"}.
_ERRORS = {
    400: ("invalid_request_error", "Invalid request"),
    401: ("authentication_error", "Unauthorized"),
    403: ("permission_error", "Forbidden"),
    404: ("invalid_request_error", "Invalid model"),
    422: ("invalid_request_error", "Invalid request body"),
    429: ("rate_limited", "Requests rate limit exceeded"),
    500: ("internal_server_error", "Internal server error"),
    502: ("bad_gateway", "Bad gateway"),
    503: ("service_unavailable", "Service unavailable"),
}


def split_tokens(text: str) -> list[str]:
    """Deterministic "tokens": the text cut before each word (the pieces join back to the text exactly)."""
    return [piece for piece in re.split(r"(?<=\s)(?=\S)", text) if piece] or [text]


@dataclass(frozen=True)
class Reply:
    """One scripted reply. ``kind``: text, error, disconnect or drop; ``delay_s`` waits before answering."""

    kind: str
    text: str = ""
    tokens: tuple[str, ...] | None = None
    status: int = 200
    body: Any = None
    delay_s: float = 0.0
    after: int = 0  # drop: tokens sent before the connection is cut
    clean: bool = False  # drop: end the body properly instead of cutting the connection (no final chunk, no [DONE])
    finish_reason: str = "stop"
    usage: dict[str, int] | None = None

    def stream_tokens(self) -> list[str]:
        return list(self.tokens) if self.tokens is not None else split_tokens(self.text)


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    raw: bytes
    body: Any  # decoded JSON, or None when the body was not JSON
    reply: str = ""  # kind of the reply it got ("unscripted" when the queue was empty)

    @property
    def stream(self) -> bool:
        return bool(isinstance(self.body, dict) and self.body.get("stream"))

    @property
    def messages(self) -> list[dict]:
        return list(self.body.get("messages", [])) if isinstance(self.body, dict) else []

    @property
    def roles(self) -> list[str]:
        return [m.get("role") for m in self.messages]

    def content(self, index: int) -> str:
        """Text of message ``index`` (string content, or the text parts of a list content)."""
        content = self.messages[index].get("content")
        if isinstance(content, list):
            return "".join(part.get("text", "") for part in content if isinstance(part, dict))
        return content or ""

    @property
    def system(self) -> str:
        return self.content(0) if self.messages and self.roles[0] == "system" else ""

    @property
    def last_user(self) -> str:
        users = [i for i, role in enumerate(self.roles) if role == "user"]
        return self.content(users[-1]) if users else ""

    @property
    def text(self) -> str:
        """Every message's text, joined (to search the whole prompt)."""
        return "\n".join(self.content(i) for i in range(len(self.messages)))

    @property
    def authorization(self) -> str:
        return self.headers.get("authorization", "")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: "MistralServer"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive and chunked transfer encoding, as Mistral's API behind its proxy
    server_version = "mistral-test-server"
    sys_version = ""
    timeout = 30  # idle keep-alive connections end by themselves

    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    def setup(self) -> None:
        super().setup()
        self.server.owner._track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.owner._track(self.connection, add=False)

    # -- helpers ---------------------------------------------------------------------------------------------
    def _json(self, status: int, payload: Any) -> None:
        data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _event(self, payload: Any) -> None:
        data = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
        self._chunk(f"data: {data}\n\n".encode("utf-8"))

    def _cut(self) -> None:
        """Close the connection abruptly (no terminating chunk, no further bytes)."""
        self.close_connection = True
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    # -- routes ----------------------------------------------------------------------------------------------
    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        self._read_and_record()
        self._json(404, {"object": "error", "message": "Not found", "type": "invalid_request_error",
                         "param": None, "code": None})

    def do_POST(self) -> None:  # noqa: N802 - stdlib naming
        owner = self.server.owner
        recorded = self._read_and_record()
        if self.path.split("?")[0] != COMPLETIONS_PATH:
            recorded.reply = "not_found"
            self._json(404, {"object": "error", "message": f"Not found: {self.path}",
                             "type": "invalid_request_error", "param": None, "code": None})
            return
        if owner.api_key is not None and recorded.authorization != f"Bearer {owner.api_key}":
            recorded.reply = "unauthorized"
            self._json(401, {"message": "Unauthorized", "request_id": uuid.uuid4().hex})
            return
        problem = _invalid(recorded.body)
        if problem:
            recorded.reply = "invalid"
            self._json(422, {"object": "error", "message": problem, "type": "invalid_request_error",
                             "param": None, "code": None})
            return
        reply = owner._next()
        recorded.reply = reply.kind if reply is not None else "unscripted"
        if reply is None:
            self._json(500, {"object": "error", "message": "mistral_server: no scripted reply left",
                             "type": "internal_server_error", "param": None, "code": None})
            return
        if reply.delay_s and owner._stopping.wait(reply.delay_s):
            self._cut()
            return
        try:
            self._answer(reply, recorded)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout) before the reply
            self.close_connection = True

    def _read_and_record(self) -> RecordedRequest:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        recorded = RecordedRequest(
            method=self.command,
            path=self.path,
            headers={k.lower(): v for k, v in self.headers.items()},
            raw=raw,
            body=body,
        )
        self.server.owner._record(recorded)
        return recorded

    def _answer(self, reply: Reply, request: RecordedRequest) -> None:
        owner = self.server.owner
        body = request.body
        model = body.get("model", "")
        if reply.kind == "disconnect":
            self._cut()
            return
        if reply.kind == "error":
            kind, message = _ERRORS.get(reply.status, ("error", "Error"))
            payload = reply.body if reply.body is not None else {
                "object": "error", "message": message, "type": kind, "param": None, "code": str(reply.status)}
            self._json(reply.status, payload)
            return
        completion_id = uuid.uuid4().hex
        created = int(time.time())
        tokens = reply.stream_tokens()
        usage = reply.usage or owner.usage_for(request, tokens)
        if not request.stream:
            if reply.kind == "drop":
                self._cut()
                return
            self._json(200, {
                "id": completion_id,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(tokens),
                                                     "tool_calls": None},
                             "finish_reason": reply.finish_reason}],
                "usage": usage,
            })
            return

        def chunk(delta: dict, finish_reason: str | None = None, **extra: Any) -> dict:
            return {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}], **extra}

        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self._event(chunk({"role": "assistant", "content": ""}))
        for i, token in enumerate(tokens):
            if reply.kind == "drop" and i >= reply.after:
                break
            self._event(chunk({"content": token}))
            if owner.token_interval_s:
                time.sleep(owner.token_interval_s)
        if reply.kind == "drop":
            if reply.clean:
                self._chunk(b"")
            else:
                self._cut()
            return
        self._event(chunk({"content": ""}, reply.finish_reason, usage=usage))
        self._event("[DONE]")
        self._chunk(b"")  # terminating chunk: the body is complete


def _invalid(body: Any) -> str:
    """What Mistral's API would reject with HTTP 422 (the essentials only)."""
    if not isinstance(body, dict):
        return "Request body must be a JSON object"
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "Field 'model' is required"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "Field 'messages' must be a non-empty list"
    for message in messages:
        if not isinstance(message, dict) or message.get("role") not in ("system", "user", "assistant", "tool"):
            return f"Invalid message: {message!r}"
    if "temperature" in body and not (isinstance(body["temperature"], (int, float)) and 0 <= body["temperature"] <= 1.5):
        return "Field 'temperature' out of range"
    return ""


class MistralServer:
    """The scripted server; a context manager that starts it on 127.0.0.1 (free port) and stops it."""

    def __init__(self, *, api_key: str | None = None, token_interval_s: float = 0.0) -> None:
        self.api_key = api_key  # when set, requests without ``Authorization: Bearer <api_key>`` get a 401
        self.token_interval_s = token_interval_s
        self.requests: list[RecordedRequest] = []
        self._queue: list[Reply] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- script ----------------------------------------------------------------------------------------------
    def reply(self, text: str, *, tokens: Sequence[str] | None = None, usage: dict[str, int] | None = None,
              finish_reason: str = "stop", delay_s: float = 0.0) -> "MistralServer":
        if tokens is not None and "".join(tokens) != text:
            raise ValueError("tokens must join to the text")
        return self._push(Reply("text", text=text, tokens=tuple(tokens) if tokens is not None else None,
                                usage=usage, finish_reason=finish_reason, delay_s=delay_s))

    def error(self, status: int, body: Any = None, *, delay_s: float = 0.0) -> "MistralServer":
        return self._push(Reply("error", status=status, body=body, delay_s=delay_s))

    def delay(self, seconds: float, text: str = "Réponse tardive.") -> "MistralServer":
        return self.reply(text, delay_s=seconds)

    def disconnect(self) -> "MistralServer":
        """The connection is closed after the request is read, before any byte of response."""
        return self._push(Reply("disconnect"))

    def drop_mid_stream(self, text: str, *, after: int = 2, clean: bool = False) -> "MistralServer":
        """Streamed: the headers and the first ``after`` tokens of ``text``, then the connection is cut (``clean``:
        the body ends properly instead, but without the final chunk and ``[DONE]``, as a proxy that gives up)."""
        return self._push(Reply("drop", text=text, after=after, clean=clean))

    def _push(self, reply: Reply) -> "MistralServer":
        with self._lock:
            self._queue.append(reply)
        return self

    def _next(self) -> Reply | None:
        with self._lock:
            return self._queue.pop(0) if self._queue else None

    @property
    def pending(self) -> int:
        """Scripted replies not used yet."""
        with self._lock:
            return len(self._queue)

    @property
    def unscripted(self) -> int:
        return sum(1 for r in self.completions if r.reply == "unscripted")

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    @property
    def completions(self) -> list[RecordedRequest]:
        """The recorded requests to the chat-completions route."""
        with self._lock:
            return [r for r in self.requests if r.path.split("?")[0] == COMPLETIONS_PATH]

    def usage_for(self, request: RecordedRequest, tokens: Sequence[str]) -> dict[str, int]:
        """Deterministic token counts: words of the prompt, tokens of the reply."""
        prompt = len(request.text.split())
        completion = len(tokens)
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    # -- lifecycle -------------------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def _track(self, connection: socket.socket, *, add: bool) -> None:
        with self._lock:
            (self._connections.add if add else self._connections.discard)(connection)

    def start(self) -> "MistralServer":
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.owner = self
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="mistral-test-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is None:
            return
        self._stopping.set()
        self._httpd.shutdown()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:  # idle keep-alive connections of clients still alive
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(5)
        self._httpd = None

    def __enter__(self) -> "MistralServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def closed_port_url() -> str:
    """The base URL of a local port nobody listens on (connections are refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


@pytest.fixture
def mistral_server() -> Iterator[MistralServer]:
    """A started scripted server (import this fixture into a test module to use it)."""
    with MistralServer() as server:
        yield server
