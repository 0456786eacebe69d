"""Everything the browser loads comes from the server itself, in French.

- Chainlit's page links Google Fonts, KaTeX's CSS on a public CDN and an ``og:image`` on a public bucket: the
  served HTML is rewritten (``sovereign_html``) to keep none of them — system fonts, no KaTeX (LaTeX is off), a
  local image — and to say ``lang="fr"``.
- Chainlit's run-time folder (configuration, translations, public files, help page) is written at start-up under
  the data directory (``prepare_app_root``): ``collectivia serve`` works from a clean clone and never writes into
  the code.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from urllib.parse import urlparse

from chat_ui.texts import ASSISTANT_NAME, HELP_MARKDOWN

STATIC = Path(__file__).parent / "static"

_FONT_BLOCK = re.compile(r"<!-- FONT START -->.*?<!-- FONT END -->", re.DOTALL)
_EXTERNAL_LINK = re.compile(r"\s*<link\b[^>]*\bhref=\"https?://[^\"]*\"[^>]*/?>", re.IGNORECASE | re.DOTALL)
_EXTERNAL_META = re.compile(r"(<meta\b[^>]*\bcontent=\")https?://[^\"]*(\"[^>]*>)", re.IGNORECASE)
_EXTERNAL_SCRIPT = re.compile(r"\s*<script\b[^>]*\bsrc=\"https?://[^\"]*\"[^>]*>\s*</script>", re.IGNORECASE)

# Translations of ours, over Chainlit's fr-FR (same keys).
FR_OVERRIDES: dict = {
    "auth": {"login": {
        "title": "Connectez-vous à Collectivia",
        "form": {"email": {"label": "Identifiant", "required": "l'identifiant est obligatoire",
                           "placeholder": "p.nom"}},
        "errors": {"credentialsSignin": "Identifiant ou mot de passe incorrect.",
                   "sessionRequired": "Connectez-vous pour accéder à l'assistant."},
    }},
    "chat": {
        "input": {"placeholder": "Posez votre question sur les documents de la collectivité…"},
        "watermark": "Réponses assistées par IA : vérifiez-les dans les sources citées. N'écrivez aucune donnée "
                     "personnelle.",
        "settings": {"title": "Périmètre de recherche",
                     "customize": "Restreignez la recherche à certains de vos services ou types de documents."},
        "history": {"empty": "Aucune conversation pour l'instant."},
        "fileUpload": {"dragDrop": "Glissez-déposez le fichier ici", "errors": {"failed": "Dépôt du fichier refusé"}},
    },
    "threadHistory": {"sidebar": {"title": "Vos conversations", "empty": "Aucune conversation trouvée."}},
    "navigation": {"header": {"readme": "Aide et charte"}},
}


def sovereign_html(html: str, *, meta_image: str = "/public/logo_light.svg") -> str:
    """Chainlit's page without any address outside the server: no web fonts, no CDN stylesheet or script, a local
    ``og:image``; in French."""
    html = _FONT_BLOCK.sub("<!-- FONT START --><!-- FONT END -->", html)
    html = _EXTERNAL_LINK.sub("", html)
    html = _EXTERNAL_SCRIPT.sub("", html)
    html = re.sub(r'(<meta property="og:image" content=")[^"]*(")', rf"\g<1>{meta_image}\g<2>", html)
    html = _EXTERNAL_META.sub(r"\g<1>/\g<2>", html)
    html = re.sub(r"<html lang=\"[^\"]*\"", '<html lang="fr"', html, count=1)
    return html


def patch_chainlit_html() -> None:
    """Make Chainlit serve ``sovereign_html`` of its page (its catch-all route calls this module-level function)."""
    import chainlit.server as server

    original = server.get_html_template
    if getattr(original, "_collectivia", False):
        return

    def get_html_template(root_path):
        return sovereign_html(original(root_path))

    get_html_template._collectivia = True  # type: ignore[attr-defined]
    server.get_html_template = get_html_template


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(out.get(key, {}), value) if isinstance(value, dict) else value
    return out


def _toml_str(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def chainlit_config(*, public_url: str | None, max_upload_mb: float) -> str:
    """The ``.chainlit/config.toml`` of the chat (Chainlit reads it at import)."""
    from importlib.metadata import version

    __version__ = version("chainlit")
    origin = ""
    if public_url:
        parsed = urlparse(public_url)
        origin = f"{parsed.scheme}://{parsed.netloc}" if parsed.scheme and parsed.netloc else ""
    origins = f"[{_toml_str(origin)}]" if origin else "[]"
    meta_url = _toml_str(public_url or "/")
    return f"""# Written by `collectivia serve` at each start: edit chat_ui/assets.py, not this file.
[project]
# Chainlit 2.12 has no telemetry left; kept off in case a later version brings it back (CHAINLIT_TELEMETRY=false too).
enable_telemetry = false
user_env = []
session_timeout = 3600
user_session_timeout = 43200
cache = false
persist_user_env = false
mask_user_env = true
allow_origins = {origins}

[features]
unsafe_allow_html = false
latex = false
user_message_markdown = true
user_message_autoscroll = true
assistant_message_autoscroll = true
auto_tag_thread = false
edit_message = false
allow_thread_sharing = false
favorites = false

[features.spontaneous_file_upload]
enabled = false
accept = []
max_files = 1
max_size_mb = {max(1, int(max_upload_mb + 0.999))}

[features.audio]
enabled = false

[features.mcp]
enabled = false

[features.mcp.user_servers]
enabled = false
allowed_urls = []

[UI]
name = {_toml_str(ASSISTANT_NAME)}
description = "Assistant documentaire souverain de la collectivité : réponses citées, documents ouverts à la page."
default_theme = "light"
language = "fr-FR"
layout = "default"
default_sidebar_state = "open"
cot = "hidden"
confirm_new_chat = true
alert_style = "modern"
custom_css = "/public/collectivia.css"
custom_meta_url = {meta_url}
custom_meta_image_url = "/public/logo_light.svg"
login_page_image = "/public/login.svg"

[meta]
generated_by = "{__version__}"
"""


def prepare_app_root(root: Path, *, public_url: str | None, max_upload_mb: float) -> Path:
    """Write Chainlit's run-time folder: configuration, French translation, public files, help page."""
    import importlib.util

    root = Path(root)
    (root / ".chainlit" / "translations").mkdir(parents=True, exist_ok=True)
    (root / ".chainlit" / "config.toml").write_text(
        chainlit_config(public_url=public_url, max_upload_mb=max_upload_mb), encoding="utf-8"
    )
    # Located without importing Chainlit, which reads its folder and configuration at import.
    shipped = Path(importlib.util.find_spec("chainlit").origin).parent / "translations"
    fr = json.loads((shipped / "fr-FR.json").read_text(encoding="utf-8"))
    translations = root / ".chainlit" / "translations"
    (translations / "fr-FR.json").write_text(json.dumps(_merge(fr, FR_OVERRIDES), ensure_ascii=False, indent=2),
                                             encoding="utf-8")
    shutil.copyfile(shipped / "en-US.json", translations / "en-US.json")  # Chainlit's last-resort fallback
    public = root / "public"
    if public.exists():
        shutil.rmtree(public)
    shutil.copytree(STATIC / "public", public)
    for name in ("chainlit.md", "chainlit_fr-FR.md"):
        (root / name).write_text(HELP_MARKDOWN, encoding="utf-8")
    (root / ".files").mkdir(exist_ok=True)
    return root
