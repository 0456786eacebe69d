"""Fixtures of the browser tests: a small real corpus, users made with the real CLI, a real `collectivia serve` on a
free port, and headless Chromium driven by Playwright (Debian's chromium, never a downloaded browser).

Imported by the test modules that use them (``from chat_fixtures import …``): a ``conftest.py`` here would take the
place of ``tests/conftest.py`` for the other packages' ``from conftest import …``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from chat_helpers import (
    CHARTE_SECTIONS, CHROMIUM, CHROMIUM_ARGS, FICHE_URL, NAMES, PASSWORDS, ROOT, RH_SECTIONS, URBA_SECTIONS,
    ChatServer, base_env, run_cli,
)
from fixtures import make_docx, make_md, make_pdf, write_meta


_INDEXED: dict = {}  # the corpus indexed once per test session (this module is imported once per process)


@pytest.fixture(scope="module")
def chat_corpus(tmp_path_factory):
    """Real files with sidecars, real users (made by `collectivia users add`), indexed by `collectivia ingest`: built
    once per session, then each test module gets its own copy of the users file and the data directory (index,
    history, uploads), since modules upload, replace, withdraw and converse. The files themselves are shared and
    read only."""
    if not _INDEXED:
        _INDEXED.update(_index_corpus(tmp_path_factory.mktemp("chat-indexed")))
    tmp = tmp_path_factory.mktemp("chat")
    users = Path(shutil.copy(_INDEXED["users"], tmp / "users.yaml"))
    data = Path(shutil.copytree(_INDEXED["data"], tmp / "data"))
    return {"docs": _INDEXED["docs"], "users": users, "data": data, "env": base_env(data, users), "tmp": tmp}


def _index_corpus(tmp: Path) -> dict:
    docs = tmp / "docs"
    docs.mkdir()
    write_meta(make_md(docs / "conges.md", title="Congés annuels des agents", sections=RH_SECTIONS),
               id="PROC-CONGES", title="Congés annuels des agents", services=["rh"], doc_type="procedure")
    write_meta(make_pdf(docs / "permis.pdf", title="Instruction du permis de construire", sections=URBA_SECTIONS),
               id="PROC-PERMIS", title="Instruction du permis de construire", services=["urbanisme"],
               doc_type="procedure")
    write_meta(make_docx(docs / "charte.docx", title="Charte de l'IA", sections=CHARTE_SECTIONS),
               id="CHARTE-IA", title="Charte de l'IA", services=["tous"], doc_type="charte")
    users = tmp / "users.yaml"
    data = tmp / "data"
    env = base_env(data, users)
    for user_id, services, roles in (("agent.rh", "rh", "agent"), ("agent.urba", "urbanisme", "agent"),
                                     ("gest.rh", "rh,finances", "document_manager")):
        result = run_cli(["users", "add", user_id, "--name", NAMES[user_id], "--services", services, "--roles", roles,
                          "--password-stdin"], env, input=PASSWORDS[user_id] + "\n")
        assert result.returncode == 0, result.stderr
    result = run_cli(["ingest", str(docs), "--json"], env)
    assert result.returncode == 0, result.stdout + result.stderr
    # A service-public.fr fiche: its source is a URL (as the importer writes it).
    script = f"""
from collectivia.settings import Settings
from collectivia.wiring import build_embedder, build_ingestor, build_store
from index.documents import Document, DocumentMeta, Element, ParsedDocument
s = Settings(); e = build_embedder(s); st = build_store(s, e)
text = "Carte nationale d'identité : la demande se fait en mairie sur rendez-vous."
doc = Document(doc_id="SP-F1234", version="v1", meta=DocumentMeta(title="Carte d'identité", doc_type="fiche",
    services=("tous",), url={FICHE_URL!r}), parsed=ParsedDocument(text=text, elements=(Element("text", text, 0, len(text)),)),
    source={FICHE_URL!r})
r = build_ingestor(s, e, st).ingest_documents([doc]); st.close(); assert r.indexed == 1, r
"""
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300,
                            cwd=ROOT)
    assert result.returncode == 0, result.stderr
    return {"docs": docs, "users": users, "data": data, "env": env, "tmp": tmp}


@pytest.fixture(scope="module")
def chat_server(chat_corpus):
    server = ChatServer(chat_corpus).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser():
    """One Playwright per test module (two sync Playwright instances cannot live in one thread at once)."""
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium absent (apt-get install chromium)")
    with sync_api.sync_playwright() as p:
        instance = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


@pytest.fixture
def context(browser, request):
    ctx = browser.new_context(viewport={"width": 1280, "height": 900}, locale="fr-FR")
    ctx.set_default_timeout(30_000)
    failures = request.session.testsfailed
    yield ctx
    if request.session.testsfailed > failures:  # keep what the browser showed, for the CI log
        folder = Path(tempfile.mkdtemp(prefix="collectivia-failure-"))
        for i, page in enumerate(ctx.pages):
            try:
                page.screenshot(path=str(folder / f"page{i}.png"), full_page=True)
                # CI keeps only the log: what the page showed last, and what the server said.
                print(f"\n--- page {i}, fin du texte affiché ---\n" + page.inner_text("body", timeout=5_000)[-1500:])
            except Exception:
                pass
        server = request.getfixturevalue("chat_server") if "chat_server" in request.fixturenames else None
        if server is not None and server.log.exists():
            print("\n--- journal du serveur, fin ---\n" + "\n".join(server.log.read_text(errors="replace")
                                                               .splitlines()[-60:]))
        print(f"\ncaptures de l'échec : {folder}")
    ctx.close()


@pytest.fixture
def shots(tmp_path):
    """Where the tests' screenshots go (the documentation's come from `python -m tools.screenshots`)."""
    return tmp_path
