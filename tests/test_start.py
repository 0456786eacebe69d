"""The README's first command, ``./collectivia.sh start``, indexes the sample corpora and serves the chat."""

import os
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from chat_ui.process import free_port

ROOT = Path(__file__).resolve().parents[1]



def _get(url: str):
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as error:
        return error.code, ""


@pytest.mark.slow
def test_start_indexes_the_corpora_then_serves_the_login_page(tmp_path):
    port = free_port()
    env = {**os.environ, "COLLECTIVIA_DATA_DIR": str(tmp_path / "data"), "COLLECTIVIA_CHAT__PORT": str(port)}
    env.pop("COLLECTIVIA_USERS", None)
    log = (tmp_path / "start.log").open("w+", encoding="utf-8")
    process = subprocess.Popen(["./collectivia.sh", "start"], cwd=ROOT, env=env, stdout=log,
                               stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 600
        status, page = None, ""
        while time.monotonic() < deadline:
            assert process.poll() is None, "start stopped:\n" + (tmp_path / "start.log").read_text()[-3000:]
            try:
                status, page = _get(f"http://127.0.0.1:{port}/")
                if status == 200:
                    break
            except OSError:
                pass
            time.sleep(0.5)
        assert status == 200 and 'id="root"' in page and 'lang="fr"' in page
        output = (tmp_path / "start.log").read_text(encoding="utf-8")
        # The whole sample commune was indexed before the chat opened, nothing failed.
        assert re.search(r"indexés\s*│\s*79\b", output) and re.search(r"en échec\s*│\s*0\b", output), output[-3000:]
        assert "Chat on http://localhost:" in output
        assert (tmp_path / "data" / "qdrant").is_dir()
        # Nothing but the login page without a session.
        assert _get(f"http://127.0.0.1:{port}/project/threads")[0] in (401, 403, 405)
        assert _get(f"http://127.0.0.1:{port}/health")[0] == 200
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        log.close()
