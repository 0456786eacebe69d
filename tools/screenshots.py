"""Screenshots of the chat's main screens for the documentation (docs/screenshots/).

    python -m tools.screenshots [--data-dir DIR] [--out docs/screenshots]

Works on a copy of the index of ``DIR`` (``COLLECTIVIA_DATA_DIR`` by default, the sample commune indexed by
``collectivia ingest corpora/``): the real data directory is never touched. Starts ``collectivia serve`` on a free
port with the demo users (``corpora/users.yaml``), then drives Debian's Chromium headless with Playwright: login,
welcome, answer with its sources, search scope, document upload, documents of a manager.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from chat_ui.process import free_port, stop

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
NOTE = """# Note de service : badge d'accès au parking

## Article 1 – Remise du badge

Le badge d'accès au parking souterrain de l'hôtel de ville est remis par le service des finances contre un dépôt de
garantie de quarante euros, restitué au départ de l'agent.

## Article 2 – Perte

En cas de perte, l'agent le signale sous quarante-huit heures ; le dépôt de garantie est alors conservé.
"""



def _ask(page, question: str) -> None:
    before = page.locator("[data-testid=feedback]").count()
    page.fill("#chat-input", question)
    page.keyboard.press("Enter")
    page.wait_for_function("n => document.querySelectorAll('[data-testid=feedback]').length > n", arg=before,
                           timeout=120_000)
    page.wait_for_timeout(800)


def take(data_dir: Path, out: Path) -> list[Path]:
    from playwright.sync_api import sync_playwright

    tmp = Path(tempfile.mkdtemp(prefix="collectivia-shots-"))
    shutil.copytree(data_dir / "qdrant", tmp / "data" / "qdrant")
    port = free_port()
    env = {**os.environ, "COLLECTIVIA_DATA_DIR": str(tmp / "data"),
           "COLLECTIVIA_USERS": str(ROOT / "corpora" / "users.yaml")}
    server = subprocess.Popen([sys.executable, "-m", "collectivia.cli", "serve", "--port", str(port)], env=env,
                              cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    out.mkdir(parents=True, exist_ok=True)
    saved: list[Path] = []
    try:
        for _ in range(240):
            try:
                urllib.request.urlopen(base + "/health", timeout=1)
                break
            except OSError:
                time.sleep(0.5)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 860}, locale="fr-FR")
            page.set_default_timeout(60_000)

            def shot(name: str) -> None:
                path = out / name
                page.screenshot(path=str(path))
                saved.append(path)

            page.goto(base + "/")
            page.wait_for_selector("#email")
            page.wait_for_timeout(500)
            shot("login.png")
            page.fill("#email", "h.bernard")
            page.fill("#password", "demo-h.bernard")
            page.click("button[type=submit]")
            page.wait_for_selector("text=Bonjour Hélène Bernard")
            page.set_viewport_size({"width": 1280, "height": 1420})  # the whole welcome screen
            page.wait_for_timeout(800)
            shot("welcome.png")
            page.set_viewport_size({"width": 1280, "height": 860})

            question = "Combien de jours de congés annuels a un agent à temps plein ?"
            _ask(page, question)
            page.get_by_text(question).last.evaluate("el => el.scrollIntoView({block: 'start'})")
            page.wait_for_timeout(400)
            shot("answer.png")
            page.locator("[data-testid=feedback]").last.scroll_into_view_if_needed()
            page.locator("[data-testid=feedback]").last.get_by_role("button", name="Pas utile").click()
            page.locator("[data-testid=feedback]").last.get_by_role("button", name="incomplet").click()
            page.locator("[data-testid=feedback]").last.get_by_label("Commentaire").fill(
                "Il manque le cas des agents à temps partiel.")
            page.wait_for_timeout(300)
            shot("feedback.png")

            page.click("#chat-settings-open-modal")
            page.wait_for_timeout(800)
            shot("scope.png")
            page.keyboard.press("Escape")

            note = tmp / "Note badge parking.md"
            note.write_text(NOTE, encoding="utf-8")
            page.get_by_role("button", name="Ajouter un document").last.click()
            page.get_by_role("button", name="Parcourir les fichiers").last.wait_for()
            page.wait_for_timeout(300)
            page.locator("input[type=file]").last.set_input_files(str(note))
            form = page.locator("[data-testid=document-form]").last
            form.wait_for()
            form.locator("input[name=title]").fill("Badge d'accès au parking")
            form.locator("input[name=services][value='finances']").check()
            form.scroll_into_view_if_needed()
            page.wait_for_timeout(300)
            shot("upload-form.png")
            form.get_by_role("button", name="Indexer le document").click()
            page.wait_for_selector("text=est consultable dès maintenant", timeout=180_000)
            page.wait_for_timeout(500)
            shot("upload.png")

            page.get_by_role("button", name="Gérer mes documents").last.click()
            documents = page.locator("[data-testid=documents]").last
            documents.wait_for()
            page.wait_for_timeout(800)
            page.get_by_text("Documents que vous gérez").last.evaluate("el => el.scrollIntoView({block: 'start'})")
            page.wait_for_timeout(400)
            shot("documents.png")
            browser.close()
    finally:
        stop(server)
        shutil.rmtree(tmp, ignore_errors=True)
    return saved


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Captures d'écran du chat pour la documentation.")
    parser.add_argument("--data-dir", type=Path, default=None, help="Dossier de données indexé (défaut : COLLECTIVIA_DATA_DIR).")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots", help="Dossier des captures.")
    args = parser.parse_args(argv)
    from collectivia.settings import Settings

    data_dir = (args.data_dir or Settings().data_dir).resolve()
    if not (data_dir / "qdrant").is_dir():
        print(f"aucun index dans {data_dir} : lancez d'abord « collectivia ingest corpora/ »", file=sys.stderr)
        return 2
    for path in take(data_dir, args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
