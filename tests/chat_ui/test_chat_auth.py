"""Login: argon2 passwords against the users file, OpenID Connect claims mapped to services and roles (deny by
default), and the Collectivia user behind a session."""

from __future__ import annotations

import os
import time

import pytest

from chat_ui.auth import (
    OIDC, PASSWORD, UserDirectory, check_password, claim_values, collectivia_user, hash_password,
    map_claims, oidc_display_name, session_metadata,
)
from collectivia.settings import OidcSettings
from rag.access import User


@pytest.fixture(scope="module")
def users():
    return {
        "a.martin": User("a.martin", "Alice Martin", frozenset({"rh"}), frozenset({"agent"}), hash_password("bonjour-alice-123")),
        "sans.mdp": User("sans.mdp", "Sans Mot de passe", frozenset({"rh"})),
    }


def test_password_matches_only_the_right_user(users):
    assert check_password(users, "a.martin", "bonjour-alice-123").id == "a.martin"
    assert check_password(users, " a.martin ", "bonjour-alice-123").id == "a.martin"
    assert check_password(users, "a.martin", "mauvais") is None
    assert check_password(users, "a.martin", "") is None
    assert check_password(users, "inconnu", "bonjour-alice-123") is None
    assert check_password(users, "sans.mdp", "") is None  # no hash: no password login at all


def test_a_login_does_not_wait_behind_answers_holding_every_thread(users):
    """Answers run in the event loop's default threads (one per answer, for its whole length); with all of them
    busy, a password check still runs, in threads of its own."""
    import asyncio
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from chat_ui.auth import check_password_async

    release = threading.Event()
    started = threading.Semaphore(0)

    def answer() -> None:  # an answer being streamed: holds its thread until released
        started.release()
        release.wait(120)

    async def scenario():
        loop = asyncio.get_running_loop()
        loop.set_default_executor(ThreadPoolExecutor(max_workers=2))
        answers = [asyncio.ensure_future(asyncio.to_thread(answer)) for _ in range(4)]  # 2 running, 2 queued
        running = 0
        while running < 2:  # both threads of the pool are held
            running += started.acquire(timeout=0)
            await asyncio.sleep(0.01)
        try:
            user = await asyncio.wait_for(check_password_async(users, "a.martin", "bonjour-alice-123"), 60)
            refused = await asyncio.wait_for(check_password_async(users, "a.martin", "mauvais"), 60)
            still_blocked = not release.is_set() and not any(a.done() for a in answers)
        finally:
            release.set()
            await asyncio.gather(*answers)
        return user, refused, still_blocked

    user, refused, still_blocked = asyncio.run(scenario())
    assert user is not None and user.id == "a.martin" and refused is None
    assert still_blocked  # the logins returned while every answer thread was still held


def test_demo_users_file_hashes_are_argon2id_and_verify():
    from pathlib import Path

    from rag.access import load_users

    demo = load_users(Path(__file__).resolve().parents[2] / "corpora" / "users.yaml")
    assert demo["a.martin"].password_hash.startswith("$argon2id$")
    assert check_password(demo, "a.martin", "demo-a.martin").id == "a.martin"
    assert check_password(demo, "a.martin", "demo-b.durand") is None


def test_directory_reads_the_file_again_when_it_changes(tmp_path):
    path = tmp_path / "users.yaml"
    path.write_text("users:\n  - {id: a, name: A, services: [rh]}\n", encoding="utf-8")
    directory = UserDirectory(path)
    assert directory.get("a").services == {"rh"}
    time.sleep(0.01)
    path.write_text("users:\n  - {id: a, name: A, services: [urbanisme]}\n  - {id: b, name: B}\n", encoding="utf-8")
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10_000_000))
    assert directory.get("a").services == {"urbanisme"} and directory.get("b") is not None
    path.write_text("users: [pas valide", encoding="utf-8")
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 20_000_000))
    assert directory.get("a") is None  # an unreadable file logs nobody in
    path.unlink()
    assert directory.users() == {}


OIDC_SETTINGS = OidcSettings(
    enabled=True, services_claim="groups",
    service_map={"/mairie/rh": "rh", "/mairie/urbanisme": "urbanisme", "/mairie/tous": "tous", "/x": "Pas Valide"},
    roles_claim="realm_access.roles",
    role_map={"collectivia-gestionnaire": "document_manager", "collectivia-admin": "admin", "bidon": "superuser"},
)


def test_claims_are_mapped_to_services_and_roles_deny_by_default():
    raw = {"groups": ["/mairie/rh", "/mairie/inconnu", "/x"], "realm_access": {"roles": ["collectivia-gestionnaire",
                                                                                        "offline_access", "bidon"]}}
    services, roles = map_claims(raw, OIDC_SETTINGS)
    assert services == {"rh"}  # unmapped and invalid values give nothing
    assert roles == {"agent", "document_manager"}  # every user is an agent; an unknown role is ignored
    assert map_claims({}, OIDC_SETTINGS) == (frozenset(), frozenset({"agent"}))
    assert map_claims({"groups": "/mairie/urbanisme"}, OIDC_SETTINGS)[0] == {"urbanisme"}  # one value, as a string
    assert map_claims({"groups": {"not": "a list"}}, OIDC_SETTINGS)[0] == frozenset()


def test_claim_values_follow_dotted_paths():
    data = {"a": {"b": ["x", 1]}, "c": "y"}
    assert claim_values(data, "a.b") == ["x", "1"]
    assert claim_values(data, "c") == ["y"]
    assert claim_values(data, "a.z") == [] and claim_values(data, "") == []


def test_display_name_from_claims():
    assert oidc_display_name({"name": "Alice Martin"}, "a@x") == "Alice Martin"
    assert oidc_display_name({"given_name": "Alice", "usual_name": "Martin"}, "a@x") == "Alice Martin"
    assert oidc_display_name({}, "a@x") == "a@x"


def test_session_user_is_looked_up_again_for_password_logins(tmp_path, users):
    path = tmp_path / "users.yaml"
    path.write_text("users:\n  - {id: a.martin, name: Alice, services: [rh], roles: [agent, document_manager]}\n",
                    encoding="utf-8")
    directory = UserDirectory(path)
    metadata = session_metadata(users["a.martin"], PASSWORD)
    assert "password_hash" not in metadata and metadata["services"] == ["rh"]
    user = collectivia_user("a.martin", metadata, directory=directory, password_login=True, oidc_login=False)
    assert user.roles == {"agent", "document_manager"}  # from the file, not from the token
    assert collectivia_user("b.durand", metadata, directory=directory, password_login=True, oidc_login=False) is None
    assert collectivia_user("a.martin", metadata, directory=directory, password_login=False, oidc_login=True) is None


def test_session_user_of_openid_connect_comes_from_its_signed_metadata():
    user = User("alice@commune.fr", "Alice", frozenset({"rh"}), frozenset({"agent", "admin"}))
    metadata = session_metadata(user, OIDC)
    again = collectivia_user("alice@commune.fr", metadata, directory=None, password_login=False, oidc_login=True)
    assert (again.services, again.roles) == ({"rh"}, {"agent", "admin"})
    assert collectivia_user("alice@commune.fr", metadata, directory=None, password_login=True, oidc_login=False) is None
    forged = {**metadata, "services": ["rh", "Pas Valide"], "roles": ["agent", "superuser"]}
    cleaned = collectivia_user("alice@commune.fr", forged, directory=None, password_login=False, oidc_login=True)
    assert (cleaned.services, cleaned.roles) == ({"rh"}, {"agent"})
    assert collectivia_user("alice@commune.fr", {"provider": "github"}, directory=None, password_login=True,
                            oidc_login=True) is None
    assert collectivia_user(None, metadata, directory=None, password_login=True, oidc_login=True) is None
