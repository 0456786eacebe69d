"""Load and fault benchmark of the chat: N agents asking questions over Chainlit's real websocket while a document
manager uploads documents, then a chat killed (kill -9) in the middle of an upload and restarted.

    python tools/bench_load.py [--data-dir DIR] [--agents 20] [--seconds 300] [--uploads 3] [--json]

Not a test and not installed (``tools/`` is outside the packages). Loopback only (127.0.0.1), bounded in time and
count. Works on a copy of the data directory (``--data-dir``: an indexed one, e.g. after ``collectivia ingest
corpora/``; without it, ``corpora/commune`` is indexed into a temporary folder first), with the demo users of
``corpora/users.yaml`` (password ``demo-<id>``) and the questions of ``evals/datasets/commune.jsonl``. Prints:
answers, errors, history writes lost (every question sent and every answer received looked up in ``chat.db``
afterwards, with its feedback card), answer p50/p95 (question sent → answer complete), the server's memory (RSS, with
its child processes) at rest before the run, at its peak and 30 s after, and what the restart after a kill -9 during
an upload did with the interrupted file.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import random
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import psutil
import socketio

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from chat_ui.process import free_port, stop  # noqa: E402

HOST = "127.0.0.1"
ANSWER_TIMEOUT_S = 120.0
UPLOAD_TIMEOUT_S = 300.0


def rss_mb(pid: int) -> float:
    try:
        proc = psutil.Process(pid)
        return sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)]) / 1e6
    except psutil.NoSuchProcess:
        return 0.0


class Server:
    def __init__(self, data: Path) -> None:
        self.data, self.port = data, free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self, timeout_s: float = 180) -> "Server":
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CHAINLIT_", "OAUTH_"))}  # settings kept
        env.update(COLLECTIVIA_DATA_DIR=str(self.data), COLLECTIVIA_USERS=str(ROOT / "corpora" / "users.yaml"),
                   COLLECTIVIA_LIMITS__PARSE_WORKERS="0")
        self.log = open(self.data.parent / "serve.log", "a")
        self.process = subprocess.Popen([sys.executable, "-m", "collectivia.cli", "serve", "--host", HOST, "--port",
                                         str(self.port)], env=env, cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"collectivia serve s'est arrêté (code {self.process.returncode})")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.3)
        raise RuntimeError("collectivia serve ne répond pas")


class Session:
    """One browser tab: logged in, connected to the websocket, answering the server's questions (asks)."""

    def __init__(self, url: str, user: str) -> None:
        self.url, self.user, self.session_id = url, user, str(uuid.uuid4())
        self.http = httpx.AsyncClient(base_url=url, timeout=60)
        self.sio = socketio.AsyncClient(reconnection=False)
        self.events: asyncio.Queue = asyncio.Queue()
        self.on_ask = None
        for event in ("new_message", "update_message", "task_end", "element", "stream_start"):
            self.sio.on(event, self._recorder(event))
        self.sio.on("ask", self._ask)

    def _recorder(self, event):
        async def record(data=None):
            await self.events.put((event, data))
        return record

    async def _ask(self, data):
        return await self.on_ask(data) if self.on_ask else None

    async def open(self) -> None:
        answer = await self.http.post("/login", data={"username": self.user, "password": f"demo-{self.user}"})
        answer.raise_for_status()
        cookie = "; ".join(f"{k}={v}" for k, v in self.http.cookies.items())
        await self.sio.connect(self.url, socketio_path="/ws/socket.io", transports=["websocket"], wait_timeout=60,
                               headers={"Cookie": cookie},
                               auth={"sessionId": self.session_id, "clientType": "webapp", "userEnv": "{}"})
        await self.sio.emit("connection_successful")
        await self.wait(lambda e, d: e == "new_message" and "Bonjour" in (d or {}).get("output", ""), 120)

    async def wait(self, match, timeout: float):
        deadline = time.monotonic() + timeout
        while True:
            event, data = await asyncio.wait_for(self.events.get(), max(0.01, deadline - time.monotonic()))
            if match(event, data):
                return data

    async def ask(self, question: str) -> tuple[str, str | None, bool]:
        """Send a question; (question id, answer id or None, error) once the answer is complete."""
        step_id = str(uuid.uuid4())
        now = dt.datetime.now(dt.timezone.utc).isoformat().replace("+00:00", "Z")
        await self.sio.emit("client_message", {"message": {
            "id": step_id, "threadId": "", "name": self.user, "type": "user_message", "output": question,
            "createdAt": now}, "fileReferences": None})
        answer_id, error = None, False
        deadline = time.monotonic() + ANSWER_TIMEOUT_S
        while True:
            event, data = await asyncio.wait_for(self.events.get(), max(0.01, deadline - time.monotonic()))
            if event in ("new_message", "update_message") and data.get("type") == "assistant_message":
                error = error or bool(data.get("isError"))
                if (data.get("metadata") or {}).get("collectivia"):
                    answer_id = data["id"]
            if event == "task_end" and answer_id:
                return step_id, answer_id, error
            if event == "task_end" and error:
                return step_id, None, True

    async def close(self) -> None:
        try:
            await self.sio.disconnect()
        finally:
            await self.http.aclose()


async def upload(url: str, manager: str, path: Path, title: str, done_marker: str = "consultable dès maintenant",
                 started: asyncio.Event | None = None, session: Session | None = None) -> bool:
    """Add a document through the chat's dialog, as the browser does; True once it is searchable."""
    own = session is None
    if own:
        session = Session(url, manager)
        await session.open()

    async def answer_ask(data):
        spec = data["spec"]
        if spec["type"] == "file":
            parent = data["msg"].get("parentId") or data["msg"]["id"]
            files = {"file": (path.name, path.read_bytes(), "text/markdown")}
            response = await session.http.post("/project/file", params={"session_id": session.session_id,
                                                                        "ask_parent_id": parent}, files=files)
            response.raise_for_status()
            return [response.json()]
        if started is not None:
            started.set()
        return {"submitted": True, "title": title, "doc_type": "procedure", "services": ["rh"]}

    session.on_ask = answer_ask
    try:
        response = await session.http.post("/project/action", json={"sessionId": session.session_id, "action": {
            "name": "Ajouter un document", "payload": {}, "id": str(uuid.uuid4())}})
        response.raise_for_status()
        await session.wait(lambda e, d: e in ("new_message", "update_message")
                           and done_marker in (d or {}).get("output", ""), UPLOAD_TIMEOUT_S)
        return True
    finally:
        if own:
            await session.close()


def questions() -> list[tuple[str, str]]:
    rows = [json.loads(line) for line in (ROOT / "evals" / "datasets" / "commune.jsonl").read_text().splitlines()]
    return [(r["user"], r["question"]) for r in rows if r.get("user")]


async def load(server: Server, agents: int, seconds: float, uploads: int, docs: Path, think: float = 0.0) -> dict:
    pool = questions()
    results: list[dict] = []
    errors: list[str] = []
    peak = [rss_mb(server.process.pid)]
    sessions = []
    for i in range(agents):  # logins one by one (argon2 costs ~0.1 s of CPU each), before the clock starts
        session = Session(server.url, pool[i % len(pool)][0])
        try:
            await session.open()
        except Exception as exc:  # a session that cannot even open counts as an error
            errors.append(f"{session.user}: connexion {type(exc).__name__} : {exc}")
            await session.close()
            session = None
        sessions.append(session)
    desk = Session(server.url, "h.bernard")  # the document manager, logged in before the clock starts too
    await desk.open()
    stop_at = time.monotonic() + seconds

    async def agent(i: int) -> None:
        session = sessions[i]
        if session is None:
            return
        user = session.user
        mine = [q for u, q in pool if u == user]
        try:
            n = 0
            while time.monotonic() < stop_at:
                question = mine[(i + n) % len(mine)]
                n += 1
                started = time.perf_counter()
                try:
                    step_id, answer_id, error = await session.ask(question)
                except (asyncio.TimeoutError, socketio.exceptions.SocketIOError) as exc:
                    errors.append(f"{user}: {type(exc).__name__}")
                    continue
                results.append({"user": user, "question_id": step_id, "answer_id": answer_id, "error": error,
                                "seconds": time.perf_counter() - started})
                if think:  # an agent reads the answer before the next question: think/2 to 3·think/2 seconds
                    await asyncio.sleep(think * (0.5 + random.random()))
        except Exception as exc:
            errors.append(f"{user}: {type(exc).__name__} : {exc}")
        finally:
            await session.close()

    async def manager() -> list[bool]:
        done = []
        for k in range(uploads):
            if time.monotonic() > stop_at:
                break
            path = docs / f"note-{k}.md"
            path.write_text(f"# Note de charge {k}\n\nLa permanence numéro {k} du service des ressources humaines "
                            f"est assurée le jeudi de {8 + k} heures à midi.\n", encoding="utf-8")
            done.append(await upload(server.url, "h.bernard", path, f"Note de charge {k}", session=desk))
            await asyncio.sleep(max(1.0, seconds / (uploads + 1)))
        return done

    async def sample() -> None:
        while time.monotonic() < stop_at + 5:
            peak.append(rss_mb(server.process.pid))
            await asyncio.sleep(0.5)

    sampler = asyncio.ensure_future(sample())
    outcome = await asyncio.gather(manager(), *(agent(i) for i in range(agents)), return_exceptions=True)
    await sampler
    await desk.close()
    uploaded = outcome[0] if isinstance(outcome[0], list) else []
    if not isinstance(outcome[0], list):
        errors.append(f"gestionnaire : {outcome[0]!r}")
    return {"results": results, "errors": errors, "uploads_ok": sum(uploaded), "uploads": len(uploaded),
            "rss_peak_mb": max(peak)}


def lost_writes(db: Path, results: list[dict]) -> list[str]:
    """Questions and answers sent or received but missing from the history (with the answer's feedback card)."""
    with sqlite3.connect(db) as conn:
        steps = {row[0] for row in conn.execute('SELECT "id" FROM steps')}
        carded = {row[0] for row in conn.execute('SELECT "forId" FROM elements')}
    lost = []
    for r in results:
        if r["question_id"] not in steps:
            lost.append(f"question {r['question_id']}")
        if r["answer_id"] and r["answer_id"] not in steps:
            lost.append(f"réponse {r['answer_id']}")
        elif r["answer_id"] and r["answer_id"] not in carded:
            lost.append(f"carte de {r['answer_id']}")
    return lost


async def killed_upload(server: Server, docs: Path) -> dict:
    """Start an upload, kill -9 the chat while it indexes, restart it: the orphan is set aside and audited."""
    path = docs / "interrompu.md"
    path.write_text("# Note interrompue\n\n" + "Le service reçoit le public le mardi matin. " * 4000, encoding="utf-8")
    started = asyncio.Event()
    task = asyncio.ensure_future(upload(server.url, "h.bernard", path, "Note interrompue", started=started))
    await asyncio.wait_for(started.wait(), 120)
    uploads = server.data / "uploads"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not list(uploads.glob("RH-note-interrompue-*/*/.en-cours.json")):
        await asyncio.sleep(0.05)
    os.kill(server.process.pid, signal.SIGKILL)
    server.process.wait()
    task.cancel()
    left = [str(p.relative_to(uploads)) for p in uploads.glob("RH-note-interrompue-*/*/interrompu.md")]
    server.start()
    audit = server.data / "audit" / "documents.jsonl"
    deadline, entry = time.monotonic() + 180, None
    while time.monotonic() < deadline and entry is None:
        lines = [json.loads(x) for x in audit.read_text().splitlines()] if audit.exists() else []
        entry = next((e for e in lines if e["outcome"] == "interrupted"), None)
        await asyncio.sleep(0.5)
    after = [str(p.relative_to(uploads)) for p in uploads.glob("RH-note-interrompue-*/*/interrompu.md")]
    aside = [str(p.relative_to(uploads)) for p in uploads.glob("_interrompus/**/interrompu.md")]
    return {"left_by_kill": left, "left_after_restart": after, "set_aside": aside,
            "audited": bool(entry), "audit_detail": (entry or {}).get("detail", "")}


def prepare_data(given: Path | None, tmp: Path) -> Path:
    data = tmp / "data"
    if given:
        shutil.copytree(given, data, ignore=shutil.ignore_patterns("chat.db*", "chat"))
        return data
    env = {**os.environ, "COLLECTIVIA_DATA_DIR": str(data)}
    subprocess.run([sys.executable, "-m", "collectivia.cli", "ingest", str(ROOT / "corpora" / "commune")], env=env,
                   cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return data


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[q - 1] if len(values) >= 2 else (values[0] if values else 0.0)


async def main_async(args) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="collectivia-bench-"))
    try:
        data = prepare_data(args.data_dir, tmp)
        docs = tmp / "docs"
        docs.mkdir()
        server = Server(data).start()
        warm = Session(server.url, "a.martin")  # models and index loaded, first answer given: "at rest"
        await warm.open()
        await warm.ask("Combien de jours de congés annuels ?")
        await warm.close()
        await asyncio.sleep(5)
        rss_start = rss_mb(server.process.pid)
        run = await load(server, args.agents, args.seconds, args.uploads, docs, args.think)
        await asyncio.sleep(30)
        rss_after = rss_mb(server.process.pid)
        fault = await killed_upload(server, docs)
        stop(server.process)
        seconds = sorted(r["seconds"] for r in run["results"] if r["answer_id"])
        lost = lost_writes(data / "chat.db", run["results"])
        return {
            "agents": args.agents, "seconds": args.seconds, "questions": len(run["results"]),
            "answers": len(seconds), "errors": run["errors"] + [f"réponse en erreur : {r['question_id']}" for r in
                                                               run["results"] if r["error"] or not r["answer_id"]],
            "lost_history_writes": lost, "answer_p50_s": percentile(seconds, 50), "answer_p95_s": percentile(seconds, 95),
            "uploads": f"{run['uploads_ok']}/{run['uploads']}", "rss_start_mb": rss_start,
            "rss_peak_mb": run["rss_peak_mb"], "rss_after_mb": rss_after, "kill_during_upload": fault,
            "machine": f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}",
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Charge et pannes du chat Collectivia (boucle locale uniquement).")
    parser.add_argument("--data-dir", type=Path, default=None, help="Dossier de données indexé (copié, pas modifié).")
    parser.add_argument("--agents", type=int, default=20, help="Agents simultanés (1 à 100).")
    parser.add_argument("--seconds", type=float, default=300, help="Durée de la charge (10 à 1800 s).")
    parser.add_argument("--uploads", type=int, default=3, help="Documents ajoutés pendant la charge (0 à 20).")
    parser.add_argument("--think", type=float, default=0.0, help="Pause moyenne d'un agent entre deux questions, en "
                        "secondes (0 : à la chaîne, le pire cas ; 10 : un agent qui lit la réponse).")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    args.agents = max(1, min(100, args.agents))
    args.seconds = max(10.0, min(1800.0, args.seconds))
    args.uploads = max(0, min(20, args.uploads))
    out = asyncio.run(main_async(args))
    if args.json:
        print(json.dumps(out, indent=2, ensure_ascii=False))
    else:
        fault = out["kill_during_upload"]
        print(f"{out['agents']} agents, {out['seconds']:.0f} s, think {args.think:g} s — {out['machine']}")
        print(f"  questions {out['questions']}, answers {out['answers']}, errors {len(out['errors'])}, "
              f"lost history writes {len(out['lost_history_writes'])}, uploads {out['uploads']}")
        print(f"  answer p50 {out['answer_p50_s']:.2f} s, p95 {out['answer_p95_s']:.2f} s")
        print(f"  RSS start {out['rss_start_mb']:.0f} MB, peak {out['rss_peak_mb']:.0f} MB, 30 s after "
              f"{out['rss_after_mb']:.0f} MB ({100 * (out['rss_after_mb'] / out['rss_start_mb'] - 1):+.1f} %)")
        print(f"  kill -9 during an upload: left {len(fault['left_by_kill'])} file(s) in uploads/, after restart "
              f"{len(fault['left_after_restart'])}, set aside {len(fault['set_aside'])}, audited {fault['audited']}")
        for line in (out["errors"] + out["lost_history_writes"])[:10]:
            print("   ", line)
    return 0 if not out["errors"] and not out["lost_history_writes"] else 1


if __name__ == "__main__":
    sys.exit(main())
