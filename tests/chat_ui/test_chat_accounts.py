"""`collectivia users add|passwd|list`: the users file edited atomically, argon2id hashes, validation in French."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from chat_ui.accounts import AccountError, add_user, list_users, set_password, split_values
from chat_ui.auth import check_password
from rag.access import load_users

ROOT = Path(__file__).resolve().parents[2]
HEADER = "# Utilisateurs de la commune.\n# Ne pas diffuser.\n"


@pytest.fixture
def users_file(tmp_path):
    path = tmp_path / "users.yaml"
    path.write_text(HEADER + "users:\n  - {id: a.martin, name: Alice Martin, services: [rh], roles: [agent]}\n",
                    encoding="utf-8")
    os.chmod(path, 0o640)
    return path


def test_add_user_hashes_the_password_and_keeps_the_file_header_and_mode(users_file):
    user = add_user(users_file, "b.durand", name="Bruno Durand", services=["urbanisme,finances"],
                    roles=["document_manager"], password="un-mot-de-passe-long")
    assert (user.services, user.roles) == ({"urbanisme", "finances"}, {"agent", "document_manager"})
    text = users_file.read_text(encoding="utf-8")
    assert text.startswith(HEADER) and "un-mot-de-passe-long" not in text
    assert stat.S_IMODE(users_file.stat().st_mode) == 0o640
    users = load_users(users_file)
    assert users["b.durand"].password_hash.startswith("$argon2id$")
    assert check_password(users, "b.durand", "un-mot-de-passe-long").id == "b.durand"
    assert set(users) == {"a.martin", "b.durand"}
    assert not [p for p in users_file.parent.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("kwargs, message", [
    (dict(user_id="a.martin"), "existe déjà"),
    (dict(user_id="Bad Id"), "identifiant invalide"),
    (dict(services=["État-Civil"]), "identifiant de service invalide"),
    (dict(roles=["superuser"]), "rôle inconnu"),
    (dict(password="court"), "trop court"),
    (dict(name="  "), "nom affiché est vide"),
])
def test_add_user_refuses_bad_values_and_leaves_the_file_alone(users_file, kwargs, message):
    before = users_file.read_bytes()
    args = dict(user_id="c.petit", name="Chloé Petit", services=["etat-civil"], roles=["agent"],
                password="un-mot-de-passe-long")
    args.update(kwargs)
    with pytest.raises(AccountError, match=message):
        add_user(users_file, args.pop("user_id"), **args)
    assert users_file.read_bytes() == before


def test_new_file_is_created_private(tmp_path):
    path = tmp_path / "sub" / "users.yaml"
    add_user(path, "admin", name="Admin", services=[], roles=["admin"], password="un-mot-de-passe-long")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_users(path)["admin"].roles == {"agent", "admin"}


def test_passwd_and_list(users_file):
    set_password(users_file, "a.martin", "nouveau-mot-de-passe")
    assert check_password(load_users(users_file), "a.martin", "nouveau-mot-de-passe")
    with pytest.raises(AccountError, match="utilisateur inconnu"):
        set_password(users_file, "personne", "nouveau-mot-de-passe")
    rows = list_users(users_file)
    assert rows == [{"id": "a.martin", "name": "Alice Martin", "services": ["rh"], "roles": ["agent"], "password": True}]
    assert "hash" not in json.dumps(rows)


def test_split_values():
    assert split_values(["rh, finances", "rh", " dsi "]) == ["rh", "finances", "dsi"]
    assert split_values(None) == []


@pytest.mark.slow  # runs the CLI several times (several seconds)
def test_cli_users_commands(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("COLLECTIVIA_")}
    env["COLLECTIVIA_USERS"] = str(tmp_path / "users.yaml")
    env["COLLECTIVIA_DATA_DIR"] = str(tmp_path / "data")

    def cli(*args, stdin=None):
        return subprocess.run([sys.executable, "-m", "collectivia.cli", *args], env=env, input=stdin,
                              capture_output=True, text=True, timeout=120, cwd=ROOT)

    added = cli("users", "add", "e.roux", "--name", "Emma Roux", "--services", "communication", "--password-stdin",
                stdin="mot-de-passe-emma\n")
    assert added.returncode == 0, added.stderr
    assert "e.roux" in added.stdout
    again = cli("users", "add", "e.roux", "--name", "Emma", "--password-stdin", stdin="mot-de-passe-emma\n")
    assert again.returncode == 2 and "existe déjà" in again.stderr
    changed = cli("users", "passwd", "e.roux", "--password-stdin", stdin="autre-mot-de-passe\n")
    assert changed.returncode == 0, changed.stderr
    listed = cli("users", "list", "--json")
    assert json.loads(listed.stdout) == [{"id": "e.roux", "name": "Emma Roux", "services": ["communication"],
                                          "roles": ["agent"], "password": True}]
    assert check_password(load_users(tmp_path / "users.yaml"), "e.roux", "autre-mot-de-passe")
    assert yaml.safe_load((tmp_path / "users.yaml").read_text())["users"][0]["password_hash"].startswith("$argon2id$")
    removed = cli("users", "remove", "e.roux")
    assert removed.returncode == 0 and "users forget e.roux" in removed.stdout
    assert cli("users", "list", "--json").stdout.strip() == "[]"
    assert load_users(tmp_path / "users.yaml") == {}  # no login any more
    unknown = cli("users", "remove", "e.roux")
    assert unknown.returncode == 2 and "utilisateur inconnu : e.roux" in unknown.stderr
    help_text = cli("--help").stdout
    assert " serve " in help_text and " users " in help_text
