"""Helpers of the browser tests: log in, ask a question and wait for the answer, watch the websocket."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.error
import tempfile
import urllib.request
from pathlib import Path

from chat_ui.process import free_port, stop

# Chainlit reads its folder at import: tests that import it must not write into the repository. Every test module
# of this folder that imports Chainlit imports this module first.
os.environ.setdefault("CHAINLIT_APP_ROOT", tempfile.mkdtemp(prefix="collectivia-chainlit-"))

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "collectivia.cli"]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]

PASSWORDS = {
    "agent.rh": "motdepasse-agent-rh",
    "agent.urba": "motdepasse-agent-urba",
    "gest.rh": "motdepasse-gestionnaire",
}
NAMES = {"agent.rh": "Agnès Rh", "agent.urba": "Ulysse Urba", "gest.rh": "Gaston Gestion"}

RH_SECTIONS = [
    ("Article 1 – Dépôt", "Toute demande de congé annuel est déposée au moins quinze jours avant le départ dans l'outil e-RH."),
    ("Article 2 – Validation", "Le chef de service valide la demande de congé sous cinq jours ouvrés ; le silence ne vaut pas accord."),
]
URBA_SECTIONS = [
    ("Article 1 – Dépôt du permis", "Le dossier de permis de construire est déposé en mairie en quatre exemplaires."),
    ("Article 2 – Délai d'instruction", "Le permis de construire d'une maison individuelle est instruit en deux mois."),
    ("Article 3 – Affichage", "Le bénéficiaire affiche le permis de construire sur le terrain pendant deux mois."),
]
CHARTE_SECTIONS = [
    ("Article 1 – Responsabilité", "L'agent reste responsable des contenus produits avec une intelligence artificielle générative."),
]
FICHE_URL = "https://www.service-public.fr/particuliers/vosdroits/F1234"



def base_env(data_dir: Path, users: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COLLECTIVIA_", "CHAINLIT_", "OAUTH_"))}
    env.update({
        "COLLECTIVIA_DATA_DIR": str(data_dir),
        "COLLECTIVIA_USERS": str(users),
        "COLLECTIVIA_LIMITS__MAX_FILE_MB": "0.3",
        "COLLECTIVIA_LIMITS__PARSE_WORKERS": "0",
    })
    return env


def run_cli(args, env, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(CLI + list(args), env=env, capture_output=True, text=True, timeout=300, cwd=ROOT, **kw)


class ChatServer:
    def __init__(self, corpus: dict) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data = corpus["data"]
        self.env = dict(corpus["env"])
        self.log = corpus["tmp"] / "serve.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> "ChatServer":
        handle = open(self.log, "w")
        self.process = subprocess.Popen(CLI + ["serve", "--port", str(self.port)], env=self.env, cwd=ROOT,
                                        stdout=handle, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("collectivia serve s'est arrêté :\n" + self.log.read_text())
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as r:
                    if r.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.3)
        raise RuntimeError("collectivia serve ne répond pas :\n" + self.log.read_text())

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            stop(self.process)



ANSWER_CARDS = "[data-testid=feedback], [data-testid=feedback-sent]"


def login(page, base_url: str, user_id: str) -> None:
    page.goto(base_url + "/")
    page.fill("#email", user_id)
    page.fill("#password", PASSWORDS[user_id])
    page.click("button[type=submit]")
    page.wait_for_selector(f"text=Bonjour {NAMES[user_id]}")
    page.wait_for_selector("#chat-input:not([disabled])")


def ask(page, question: str, timeout: float = 90_000) -> None:
    """Send a question and wait until its answer is complete (each answer ends with a feedback card)."""
    before = page.locator(ANSWER_CARDS).count()
    page.wait_for_selector("#chat-input:not([disabled])")
    page.fill("#chat-input", question)
    page.keyboard.press("Enter")
    page.wait_for_function(
        "([sel, n]) => document.querySelectorAll(sel).length > n", arg=[ANSWER_CARDS, before], timeout=timeout
    )


def press(button, attempts: int = 5) -> None:
    """Click a toggle of a custom element until it shows pressed (the element may still be mounting)."""
    for _ in range(attempts):
        button.click()
        try:
            button.page.wait_for_function("el => el.getAttribute('aria-pressed') === 'true'",
                                          arg=button.element_handle(timeout=5_000), timeout=2_000)
            return
        except Exception:
            continue
    raise AssertionError("le bouton ne s'est pas enfoncé")


def click_action(page, button, *, attempts: int = 3, timeout: float = 120_000) -> None:
    """Click a Chainlit action button and wait for the server's answer to it (``POST /project/action``), which must
    succeed. A click that sent nothing within 10 s (the button re-rendered under the pointer as the page settled:
    seen on loaded CI machines) is clicked again; a request that fails or hangs is the server's fault and fails."""
    is_action = lambda r: r.method == "POST" and r.url.endswith("/project/action")  # noqa: E731
    sent: list = []
    answered: list = []
    on_request = lambda r: sent.append(r) if is_action(r) else None  # noqa: E731
    on_response = lambda r: answered.append(r) if is_action(r.request) else None  # noqa: E731
    page.on("request", on_request)
    page.on("response", on_response)
    def arrives(seen: list, ms: float) -> bool:
        for _ in range(int(ms / 200)):
            if seen:
                break
            page.wait_for_timeout(200)  # lets the page's events come in
        return bool(seen)

    try:
        for _ in range(attempts):
            button.click()
            if arrives(sent, 10_000):
                break
        assert sent, "le clic n'a envoyé aucune requête au serveur"
        assert arrives(answered, timeout), "le serveur n'a pas répondu à l'action"
        assert answered[0].status == 200, (answered[0].status, answered[0].text())
    finally:
        page.remove_listener("request", on_request)
        page.remove_listener("response", on_response)


def record_socket(page) -> list[str]:
    """Collect what the server pushes to the page (websocket frames and socket.io polling responses)."""
    frames: list[str] = []

    def on_ws(ws) -> None:
        ws.on("framereceived", lambda payload: frames.append(payload if isinstance(payload, str) else str(payload)))

    def on_response(response) -> None:
        if "/ws/socket.io" in response.url:
            try:
                frames.append(response.text())
            except Exception:
                pass

    page.on("websocket", on_ws)
    page.on("response", on_response)
    return frames


def streamed(frames: list[str]) -> bool:
    return any(re.search(r'"stream_start"|"stream_token"', f) for f in frames)


def fetch(url: str, *, method: str = "GET", cookie: str | None = None, headers: dict | None = None,
          data: bytes | None = None):
    """(status, headers, body) of a request, without following redirects."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    request = urllib.request.Request(url, method=method, data=data, headers=dict(headers or {}))
    if cookie:
        request.add_header("Cookie", cookie)
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def session_cookie(context) -> str:
    """The session cookie of a logged-in browser context, as a Cookie header."""
    return "; ".join(f"{c['name']}={c['value']}" for c in context.cookies() if c["name"].startswith("access_token"))
