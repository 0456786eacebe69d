"""Hardening of the chat's files: uploads interrupted by a crash, refusals that never reach the document manager,
and a data directory readable by the chat's account only."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from chat_ui.audit import AuditLog
from fixtures import make_md
from test_chat_uploads import AGENT, MANAGER, FakeBackend, audit, manager  # noqa: F401  (fixture)

ROOT = Path(__file__).resolve().parents[2]


def _dead_pid() -> int:
    done = subprocess.Popen(["true"])
    done.wait()
    return done.pid


def _published(dm) -> list[Path]:
    """Files under uploads/ that a later `collectivia ingest uploads/` would publish."""
    return [p for p in dm.root.rglob("*") if p.is_file() and not p.relative_to(dm.root).parts[0].startswith("_")]


class Killed(BaseException):
    """Stands for kill -9: no ``except Exception``, no clean-up runs."""


def test_an_upload_killed_while_indexing_is_set_aside_and_audited_at_the_next_start(manager, tmp_path, monkeypatch):
    from chat_ui.uploads import DocumentManager

    note = make_md(tmp_path / "note.md")

    def killed(*args, **kwargs):
        raise Killed()

    monkeypatch.setattr(DocumentManager, "_index", killed)
    with pytest.raises(Killed):
        manager.add(MANAGER, note, "note.md", title="Note", doc_type="procedure", services=["rh"])
    monkeypatch.undo()
    left = _published(manager)
    assert any(p.name == "note.md" for p in left)  # what the crash leaves behind
    for marker in manager.root.rglob(".en-cours.json"):  # the killed process is gone
        entry = json.loads(marker.read_text(encoding="utf-8"))
        marker.write_text(json.dumps({**entry, "pid": _dead_pid()}), encoding="utf-8")

    restarted = DocumentManager(manager.backend)
    settled = restarted.settle_interrupted()
    assert [(s.action, s.outcome) for s in settled] == [("upload", "interrupted")]
    assert _published(restarted) == []
    assert list((restarted.root / "_interrompus").rglob("note.md"))
    entry = audit(manager)[-1]
    assert (entry["action"], entry["outcome"], entry["user"], entry["file"]) == (
        "upload", "interrupted", "h.bernard", "note.md")
    assert "interrompu" in entry["detail"] and entry["doc_id"].startswith("RH-note-")
    assert restarted.settle_interrupted() == []  # settled once


CHILD = textwrap.dedent("""
    import sys, time
    sys.path[:0] = [{tests!r}, {chat_tests!r}]
    from pathlib import Path
    from fixtures import HashEmbedder
    from chat_ui.uploads import DocumentManager
    from test_chat_uploads import FakeBackend, MANAGER

    def slow_index(self, *args, **kwargs):
        print("indexation", flush=True)
        time.sleep(600)

    DocumentManager._index = slow_index
    dm = DocumentManager(FakeBackend(Path({tmp!r}), HashEmbedder()))
    dm.replace(MANAGER, {doc_id!r}, Path({new!r}), "badge-2026.md")
""")


@pytest.mark.slow
def test_a_replacement_killed_mid_indexing_keeps_the_old_version(tmp_path, hash_embedder):
    from chat_ui.uploads import DocumentManager

    backend = FakeBackend(tmp_path, hash_embedder)
    dm = DocumentManager(backend)
    first = make_md(tmp_path / "badge.md", title="Badge", sections=[("Article 1", "Quarante-deux euros de dépôt.")])
    added = dm.add(MANAGER, first, "badge.md", title="Badge", doc_type="procedure", services=["rh"])
    assert added.ok, added.message
    old_source = backend.document_payload(added.doc_id)["source"]
    backend.store.close()
    second = make_md(tmp_path / "badge2.md", title="Badge", sections=[("Article 1", "Cinquante euros de dépôt.")])
    script = CHILD.format(tests=str(ROOT / "tests"), chat_tests=str(ROOT / "tests" / "chat_ui"), tmp=str(tmp_path),
                          doc_id=added.doc_id, new=str(second))
    child = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "indexation"
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()

    backend = FakeBackend(tmp_path, hash_embedder)  # the restart
    try:
        restarted = DocumentManager(backend)
        assert [(s.action, s.outcome) for s in restarted.settle_interrupted()] == [("replace", "interrupted")]
        assert backend.document_payload(added.doc_id)["source"] == old_source and Path(old_source).exists()
        assert [p.name for p in _published(restarted) if not p.name.endswith(".meta.yaml")] == ["badge.md"]
        assert [(e["action"], e["outcome"]) for e in audit(restarted)] == [("upload", "ok"),
                                                                         ("replace", "interrupted")]
    finally:
        backend.store.close()


def test_refusals_before_the_manager_are_audited(manager):
    assert not manager.allows_file_upload("a.martin", AGENT)
    assert not manager.allows_file_upload("parti", None)  # a session whose account was removed
    assert manager.allows_file_upload("h.bernard", MANAGER)
    refusal = manager.refuse(AGENT, "withdraw", "Retrait réservé aux gestionnaires de documents.", doc_id="RH-x")
    assert not refusal.ok
    assert [(e["action"], e["outcome"], e["user"], e["doc_id"]) for e in audit(manager)] == [
        ("upload", "refused", "a.martin", ""), ("upload", "refused", "parti", ""),
        ("withdraw", "refused", "a.martin", "RH-x")]
    assert "403" in audit(manager)[0]["detail"]


def _multipart(name: str, content: bytes) -> bytes:
    return (b"------collectivia\r\nContent-Disposition: form-data; name=\"file\"; filename=\"" + name.encode()
            + b"\"\r\nContent-Type: application/octet-stream\r\n\r\n" + content + b"\r\n------collectivia--\r\n")


@pytest.mark.parametrize("name, content, status, expected", [
    ("vide.md", b"", 500, "vide (0 octet)"),
    ("archive.zip", b"PK\x03\x04", 400, "Format non pris en charge : « .zip »"),
    ("gros.txt", b"a" * 150_000, 400, "Fichier trop volumineux"),
    ("note.md", b"# Note\n", 404, "HTTP 404"),
])
def test_files_refused_by_chainlits_upload_route_are_audited(manager, name, content, status, expected):
    from chat_ui.datalayer import request_identifier
    from chat_ui.upload_audit import UploadRefusalAudit

    body = _multipart(name, content)

    async def chainlit(scope, receive, send):  # reads the body, then refuses it
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    async def scenario():
        request_identifier.set("h.bernard")
        chunks = [body[i:i + 1000] for i in range(0, len(body), 1000)]

        async def receive():
            chunk = chunks.pop(0)
            return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}

        async def send(message):
            pass

        app = UploadRefusalAudit(chainlit, reason=manager.check_file_name, audit=manager.backend.audit)
        await app({"type": "http", "method": "POST", "path": "/project/file"}, receive, send)

    asyncio.run(scenario())
    entry = audit(manager)[-1]
    assert (entry["action"], entry["outcome"], entry["user"], entry["file"]) == ("upload", "refused", "h.bernard", name)
    assert entry["size"] == len(content) and expected in entry["detail"]


def _loose(path: Path) -> list[str]:
    return [f"{p} {oct(stat.S_IMODE(p.lstat().st_mode))}" for p in [path, *path.rglob("*")]
            if not p.is_symlink() and stat.S_IMODE(p.lstat().st_mode) & 0o077]


def test_the_data_directory_is_made_private_at_start_and_new_files_are_created_private(tmp_path):
    data = tmp_path / "data"
    for folder in ("chat", "uploads/RH-note/v1", "audit", "qdrant"):
        (data / folder).mkdir(parents=True)
    for file in ("chat.db", "chat/auth_secret", "uploads/RH-note/v1/note.md", "audit/documents.jsonl",
                 "qdrant/collectivia.json"):
        (data / file).write_text("x\n" if file != "chat.db" else "", encoding="utf-8")
    (data / "chat/auth_secret").write_text("un-secret-de-test-assez-long-pour-etre-accepte-0123456789\n")
    for path in [data, *data.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    users = tmp_path / "users.yaml"
    users.write_text("users: []\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COLLECTIVIA_", "CHAINLIT_"))}
    env.update(COLLECTIVIA_DATA_DIR=str(data), COLLECTIVIA_USERS=str(users))
    script = ("import os; os.umask(0o022)\nfrom chat_ui.serve import prepare\nfrom collectivia.settings import Settings\n"
              "prepare(Settings())\nopen(os.path.join(os.environ['COLLECTIVIA_DATA_DIR'], 'uploads', 'nouveau'), 'w')")
    subprocess.run([sys.executable, "-c", script], env=env, cwd=ROOT, check=True, timeout=120)
    assert _loose(data) == []
    assert stat.S_IMODE(data.stat().st_mode) == 0o700 and (data / "uploads" / "nouveau").exists()

    log = AuditLog(tmp_path / "ailleurs" / "audit" / "documents.jsonl")  # created by the chat at run time
    log.write(action="upload", outcome="refused", user_id="x")
    assert stat.S_IMODE(log.path.stat().st_mode) == 0o600
