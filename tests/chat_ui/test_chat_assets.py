"""Sovereign and French: the page Chainlit serves keeps no outside address, the run-time folder is complete."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import tomli

from chat_ui.assets import FR_OVERRIDES, chainlit_config, prepare_app_root, sovereign_html

CHAINLIT = Path(importlib.util.find_spec("chainlit").origin).parent


def external_urls(html: str) -> list[str]:
    """Absolute http(s) addresses the page would make the browser load or announce."""
    return re.findall(r"(?:href|src|content)=\"(https?://[^\"]+)\"", html, re.IGNORECASE)


def test_chainlit_page_has_no_outside_address_once_rewritten():
    original = (CHAINLIT / "frontend" / "dist" / "index.html").read_text(encoding="utf-8")
    assert any("fonts.googleapis.com" in u for u in external_urls(original))  # what Chainlit ships
    assert any("cdn.jsdelivr.net" in u for u in external_urls(original))
    page = sovereign_html(original.replace(
        "<!-- TAG INJECTION PLACEHOLDER -->",
        '<meta property="og:image" content="https://chainlit-cloud.s3.eu-west-3.amazonaws.com/logo/x.png">'
        '<meta property="og:url" content="https://github.com/Chainlit/chainlit">'))
    assert external_urls(page) == []
    assert "googleapis" not in page and "gstatic" not in page and "katex" not in page
    assert '<meta property="og:image" content="/public/logo_light.svg">' in page
    assert '<html lang="fr"' in page
    assert '/assets/index-' in page  # the application itself is still there


def test_config_forces_french_no_latex_no_spontaneous_upload():
    config = tomli.loads(chainlit_config(public_url="https://assistant.commune.fr/chat", max_upload_mb=50))
    assert config["UI"]["language"] == "fr-FR"
    assert config["features"]["latex"] is False
    assert config["features"]["spontaneous_file_upload"]["enabled"] is False
    assert config["features"]["unsafe_allow_html"] is False
    assert config["features"]["allow_thread_sharing"] is False
    assert config["features"]["mcp"]["enabled"] is False
    assert config["project"]["allow_origins"] == ["https://assistant.commune.fr"]
    assert config["project"]["enable_telemetry"] is False
    assert not any(str(v).startswith("http") for v in config["UI"].values() if v != "https://assistant.commune.fr/chat")
    assert tomli.loads(chainlit_config(public_url=None, max_upload_mb=1))["project"]["allow_origins"] == []


def test_prepared_folder_has_french_translation_public_files_and_help(tmp_path):
    root = prepare_app_root(tmp_path / "chat", public_url=None, max_upload_mb=50)
    fr = json.loads((root / ".chainlit" / "translations" / "fr-FR.json").read_text(encoding="utf-8"))
    en = json.loads((CHAINLIT / "translations" / "en-US.json").read_text(encoding="utf-8"))
    assert fr["auth"]["login"]["form"]["email"]["label"] == "Identifiant"
    assert fr["common"]["actions"]["cancel"] == "Annuler"  # Chainlit's own French is kept

    def keys(tree, prefix=""):
        for key, value in tree.items():
            yield from keys(value, f"{prefix}{key}.") if isinstance(value, dict) else [f"{prefix}{key}"]

    assert set(keys(FR_OVERRIDES)) <= set(keys(en)), "clé de traduction inconnue de Chainlit"
    for name in ("theme.json", "collectivia.css", "logo_light.svg", "logo_dark.svg", "favicon.svg", "login.svg",
                 "elements/Source.jsx", "elements/Avis.jsx", "elements/FicheDocument.jsx", "elements/Documents.jsx"):
        assert (root / "public" / name).is_file(), name
    theme = json.loads((root / "public" / "theme.json").read_text())
    assert theme["custom_fonts"] == [] and "system-ui" in theme["variables"]["light"]["--font-sans"]
    for path in (root / "public").rglob("*"):
        if path.is_file() and path.suffix in (".css", ".jsx", ".json"):
            assert "http://" not in path.read_text() and "https://" not in path.read_text(), path
    assert "charte" in (root / "chainlit_fr-FR.md").read_text(encoding="utf-8").lower()
    again = prepare_app_root(tmp_path / "chat", public_url=None, max_upload_mb=50)  # idempotent
    assert again == root
