"""Editing the users file (``collectivia users …``): add a user, change a password, list users.

The file is rewritten atomically (temporary file in the same folder, then rename), keeps its leading comment block
and its permissions, and is validated by the same loader as the chat (``rag.access.load_users``) before it
replaces the old one. Passwords are stored as argon2id hashes only.
"""

from __future__ import annotations

import os
import re
import stat
import tempfile
from pathlib import Path
from typing import Iterable

import yaml

from chat_ui.auth import hash_password, read_users
from index.documents import SERVICE_ID
from rag.access import ROLES, User, UsersFileError

USER_ID = re.compile(r"^[a-z0-9][a-z0-9._@-]{0,63}$")
MIN_PASSWORD = 12


class AccountError(ValueError):
    """A users-file operation cannot be done; the message says why, in French."""


def split_values(values: Iterable[str] | None) -> list[str]:
    """``["rh,finances", "dsi"]`` -> ``["rh", "finances", "dsi"]`` (order kept, duplicates dropped)."""
    out: list[str] = []
    for value in values or ():
        for part in str(value).split(","):
            part = part.strip()
            if part and part not in out:
                out.append(part)
    return out


def check_password_strength(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"mot de passe trop court : {MIN_PASSWORD} caractères au moins")
    if password.strip() != password:
        raise AccountError("le mot de passe ne doit ni commencer ni finir par un espace")


def _read(path: Path) -> tuple[str, list[dict]]:
    """(leading comment block, raw user entries) of the file; an absent file is empty."""
    if not path.exists():
        return "", []
    read_users(path)  # refuse to edit a file the chat could not read
    text = path.read_text(encoding="utf-8")
    header = []
    for line in text.splitlines():
        if line.startswith("#") or (not line.strip() and header):
            header.append(line)
        else:
            break
    raw = yaml.safe_load(text) or {}
    return "\n".join(header).rstrip(), list(raw.get("users") or [])


def _write(path: Path, header: str, entries: list[dict]) -> None:
    body = yaml.safe_dump({"users": entries}, allow_unicode=True, sort_keys=False, width=120)
    content = (header + "\n" if header else "") + body
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = stat.S_IMODE(path.stat().st_mode) if path.exists() else 0o600
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        try:
            read_users(Path(tmp))
        except UsersFileError as exc:
            raise AccountError(str(exc).replace(tmp, str(path))) from exc
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def add_user(path: Path, user_id: str, *, name: str, services: Iterable[str], roles: Iterable[str],
             password: str) -> User:
    path = Path(path)
    if not USER_ID.match(user_id):
        raise AccountError(f"identifiant invalide {user_id!r} : minuscules ASCII, chiffres, « . _ @ - » (ex. a.martin)")
    services = split_values(services)
    roles = split_values(roles) or ["agent"]
    for service in services:
        if not SERVICE_ID.match(service):
            raise AccountError(f"identifiant de service invalide {service!r} (minuscules ASCII, chiffres, - ou _)")
    for role in roles:
        if role not in ROLES:
            raise AccountError(f"rôle inconnu {role!r} (rôles possibles : {', '.join(ROLES)})")
    if "agent" not in roles:
        roles.insert(0, "agent")
    if not name.strip():
        raise AccountError("le nom affiché est vide")
    check_password_strength(password)
    try:
        header, entries = _read(path)
    except UsersFileError as exc:
        raise AccountError(str(exc)) from exc
    if any(e.get("id") == user_id for e in entries):
        raise AccountError(f"l'utilisateur {user_id} existe déjà (changez son mot de passe avec « collectivia users passwd {user_id} »)")
    entries.append({"id": user_id, "name": name.strip(), "services": services, "roles": roles,
                    "password_hash": hash_password(password)})
    _write(path, header, entries)
    return read_users(path)[user_id]


def set_password(path: Path, user_id: str, password: str) -> None:
    path = Path(path)
    check_password_strength(password)
    try:
        header, entries = _read(path)
    except UsersFileError as exc:
        raise AccountError(str(exc)) from exc
    for entry in entries:
        if entry.get("id") == user_id:
            entry["password_hash"] = hash_password(password)
            break
    else:
        raise AccountError(f"utilisateur inconnu : {user_id} (fichier {path})")
    _write(path, header, entries)


def remove_user(path: Path, user_id: str) -> None:
    """Remove an account from the users file (the agent can no longer log in); the rest of the file is kept."""
    path = Path(path)
    try:
        header, entries = _read(path)
    except UsersFileError as exc:
        raise AccountError(str(exc)) from exc
    kept = [entry for entry in entries if entry.get("id") != user_id]
    if len(kept) == len(entries):
        raise AccountError(f"utilisateur inconnu : {user_id} (fichier {path})")
    _write(path, header, kept)


def list_users(path: Path) -> list[dict]:
    """Users without their hashes: id, name, services, roles, whether a password is set."""
    try:
        users = read_users(Path(path))
    except UsersFileError as exc:
        raise AccountError(str(exc)) from exc
    return [
        {"id": u.id, "name": u.name, "services": sorted(u.services), "roles": sorted(u.roles),
         "password": bool(u.password_hash)}
        for u in users.values()
    ]
