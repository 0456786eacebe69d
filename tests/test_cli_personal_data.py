"""`collectivia ask` reports the personal data typed in the question: a `personal_data` field in JSON, a French
warning quoting the charter in the text output. The real command in a subprocess, on an empty embedded index (what
is found does not depend on the documents)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

CLI = [sys.executable, "-m", "collectivia.cli"]
QUESTION = "l'agent 1 85 05 78 006 084 91 né le 3 mars 1985 (tel 06 12 34 56 78) a-t-il droit au CET ?"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli-personal-data")
    env = {k: v for k, v in os.environ.items() if not k.startswith("COLLECTIVIA_")}
    env["COLLECTIVIA_DATA_DIR"] = str(tmp / "data")
    env["COLLECTIVIA_USERS"] = str(Path(__file__).parent / "data" / "users.yaml")
    return env


def ask(env, *args) -> subprocess.CompletedProcess:
    return subprocess.run(CLI + ["ask", *args, "--user", "rh.agent"], env=env, capture_output=True, text=True,
                          timeout=300)


def test_ask_json_lists_the_personal_data_of_the_question(env):
    result = ask(env, QUESTION, "--json")
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)["personal_data"]
    assert [(f["kind"], QUESTION[f["start"]:f["end"]]) for f in found] == [
        ("nir", "1 85 05 78 006 084 91"), ("birth_date", "3 mars 1985"), ("phone", "06 12 34 56 78")]
    assert "Attention" not in result.stdout + result.stderr  # JSON output: the field, no warning text


def test_ask_warns_in_french_with_the_charter_rule(env):
    result = ask(env, QUESTION)
    assert result.returncode == 0, result.stderr
    warning = " ".join(result.stderr.split())
    assert warning.startswith("Attention : votre question semble contenir des données personnelles")
    assert "un numéro de sécurité sociale (« 1 85 05 78 006 084 91 »)" in warning and "point 3.4" in warning
    assert "Aucune donnée personnelle ne doit être saisie dans un prompt." in warning
