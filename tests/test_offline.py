"""Nothing downloads at run time and nothing phones home: the CLI runs its main paths with every non-loopback
connection refused (and recorded), and telemetry switches are set."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fixtures import make_docx, make_md, make_pdf, make_scanned_pdf, write_meta

GUARD = '''
import os, socket
_log = os.environ["COLLECTIVIA_TEST_NET_LOG"]
_connect = socket.socket.connect

def _guarded(self, address):
    host = address[0] if isinstance(address, tuple) else address
    if isinstance(host, str) and not (host.startswith("127.") or host in ("localhost", "::1") or host.startswith("/")):
        with open(_log, "a") as f:
            f.write(f"{host}\\n")
        raise OSError("network disabled by the offline test")
    return _connect(self, address)

socket.socket.connect = _guarded
_getaddrinfo = socket.getaddrinfo

def _resolve(host, *args, **kwargs):
    if host not in (None, "localhost", "127.0.0.1", "::1") and not str(host).startswith("127."):
        with open(_log, "a") as f:
            f.write(f"dns:{host}\\n")
        raise socket.gaierror("name resolution disabled by the offline test")
    return _getaddrinfo(host, *args, **kwargs)

socket.getaddrinfo = _resolve
'''


@pytest.mark.slow
def test_ingest_search_and_ask_never_touch_the_network(tmp_path):
    guard_dir = tmp_path / "guard"
    guard_dir.mkdir()
    (guard_dir / "sitecustomize.py").write_text(GUARD, encoding="utf-8")
    log = tmp_path / "net.log"
    docs = tmp_path / "docs"
    docs.mkdir()
    write_meta(make_docx(docs / "a.docx"), services=["tous"])  # DOCX classification loads spaCy
    write_meta(make_md(docs / "b.md"), services=["tous"])
    write_meta(make_pdf(docs / "c.pdf"), services=["tous"])
    write_meta(make_scanned_pdf(docs / "d.pdf", ["Le conseil municipal approuve le budget."]), services=["tous"])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COLLECTIVIA_", "HF_", "DO_NOT_TRACK", "SCARF"))}
    env.update({
        "PYTHONPATH": str(guard_dir),
        "COLLECTIVIA_TEST_NET_LOG": str(log),
        "COLLECTIVIA_DATA_DIR": str(tmp_path / "data"),
        "COLLECTIVIA_USERS": str(Path(__file__).parent / "data" / "users.yaml"),
        "HOME": str(tmp_path / "home"),  # no model cache to fall back on
    })
    cli = [sys.executable, "-m", "collectivia.cli"]
    ingest = subprocess.run(cli + ["ingest", str(docs), "--json"], env=env, capture_output=True, text=True, timeout=600)
    assert ingest.returncode == 0, ingest.stderr
    assert json.loads(ingest.stdout)["indexed"] == 4
    for args in (["search", "congés", "--user", "nobody", "--json"], ["ask", "Quel est le délai de dépôt d'un congé ?", "--user", "nobody", "--json"]):
        result = subprocess.run(cli + args, env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
    assert not log.exists(), f"network attempts: {log.read_text()}"


def test_telemetry_switches_are_set_before_libraries_load():
    code = (
        "import collectivia.cli, os, json;"
        "print(json.dumps({k: os.environ.get(k) for k in ('DO_NOT_TRACK','SCARF_NO_ANALYTICS','HF_HUB_OFFLINE',"
        "'TRANSFORMERS_OFFLINE','LANGCHAIN_TRACING_V2','CHAINLIT_TELEMETRY','HF_HUB_DISABLE_TELEMETRY')}))"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("DO_NOT_TRACK", "HF_HUB_OFFLINE", "SCARF_NO_ANALYTICS")}
    values = json.loads(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout)
    assert values == {"DO_NOT_TRACK": "true", "SCARF_NO_ANALYTICS": "true", "HF_HUB_OFFLINE": "1",
                      "TRANSFORMERS_OFFLINE": "1", "LANGCHAIN_TRACING_V2": "false", "CHAINLIT_TELEMETRY": "false",
                      "HF_HUB_DISABLE_TELEMETRY": "1"}
