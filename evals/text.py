"""Text comparisons of the metrics: normalised containment, and whether a sentence holds a question's answer."""

from __future__ import annotations

import re
import unicodedata

_APOSTROPHES = str.maketrans({"’": "'", "‘": "'", "ʼ": "'", "`": "'", "´": "'", "\u00a0": " ", "\u202f": " ",
                              "«": '"', "»": '"', "“": '"', "”": '"', "–": "-", "—": "-", "‐": "-", "‑": "-"})


def normalise(text: str | None) -> str:
    """Lower case, typographic apostrophes, quotes and dashes made plain, whitespace collapsed (NFC)."""
    if not text:
        return ""
    text = unicodedata.normalize("NFC", text).translate(_APOSTROPHES).lower()
    text = re.sub(r"\s+'\s*|\s*'\s+", "'", text)  # « l' agent » / « l 'agent » (PDF extraction) → « l'agent »
    return " ".join(text.split())


def contains(haystack: str | None, needle: str | None) -> bool:
    n = normalise(needle)
    return bool(n) and n in normalise(haystack)


_TOKENS = re.compile(r"\w+", re.UNICODE)


def holds_answer(sentence: str, short_answer: str | None, gold_passage: str | None) -> bool:
    """A sentence holds the answer: it contains the short answer, or most of the gold passage's words (or the
    gold passage contains it)."""
    if short_answer and contains(sentence, short_answer):
        return True
    if not gold_passage:
        return False
    if contains(gold_passage, sentence) and len(sentence) >= 20:
        return True
    gold = set(_TOKENS.findall(normalise(gold_passage)))
    found = set(_TOKENS.findall(normalise(sentence)))
    return bool(gold) and len(gold & found) / len(gold) >= 0.6
