"""Topics of questions: a short key per question, near-identical keys merged, and the most typical question of a group.

- ``topic_key``: the two most decisive content words of the question (``rag.question.analyse``: shorthand spelled
  out, filler and stop words dropped, weights from general French usage, accents folded), lightly stemmed and
  sorted: « cb de jrs de congés je peux reporter ? » and « report des congés : combien de jours ? » both give
  « cong report ». Computed once, when the answer is logged (about 0.3 ms), and stored with the question.
- ``merge_keys``: keys that differ by one letter in a word of five letters or more — one letter missing, added or
  replaced, or two neighbours swapped (« teletravail » / « teletravial ») — are one topic; a one-word key joins the
  largest two-word topic that holds the same word. Candidates are found through one-deletion variants of each word, so
  merging is linear in the number of distinct keys, not quadratic.
- ``typical``: the representative question of a group — the wording asked most often, then the one that holds the
  most of the group's frequent words, then the shortest.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from functools import lru_cache
from typing import Iterable, Sequence

from rag.question import SHORTHAND, analyse
from rag.spans import fold

NO_TOPIC = ""  # a question without any decisive word (« ??? », « bonjour »)
_ENDINGS = ("ements", "ement", "ations", "ation", "ees", "ee", "es", "er", "ez", "e", "s", "x")
_WORD = re.compile(r"[a-z0-9]+")


@lru_cache(maxsize=1)
def _sparse():
    from index.embed import Bm25Encoder  # stop words and stems of the index's own French analyser

    return Bm25Encoder()


def stem(word: str) -> str:
    """A light French stem: plural and common endings cut while four letters remain (« reporter » → « report »); of
    a hyphenated word, its longest part (« demi-journée » → « journ », as typed « demi journée »)."""
    word = max(reversed(fold(word).split("-")), key=len)
    for ending in _ENDINGS:
        if word.endswith(ending) and len(word) - len(ending) >= 4:
            return word[: -len(ending)]
    return word


def topic_key(question: str, sparse=None) -> str:
    """The topic key of a question: its two most decisive content words, stemmed, sorted, space-separated."""
    analysis = analyse(question, sparse or _sparse())
    words: list[str] = []
    for term in sorted(analysis.terms, key=lambda t: -t.weight):
        spelled = SHORTHAND.get(term.word, term.word)
        word = stem(spelled if " " not in spelled else term.word)
        if word and word not in words:
            words.append(word)
        if len(words) == 2:
            break
    return " ".join(sorted(words))


def _variants(word: str) -> set[str]:
    if len(word) < 5:
        return {word}
    return {word} | {word[:i] + word[i + 1:] for i in range(len(word))}


def merge_keys(counts: dict[str, int]) -> dict[str, str]:
    """Each key → the key of the topic it belongs to (the most asked key of its cluster)."""
    canonical: list[tuple[str, ...]] = []
    by_variant: dict[str, set[int]] = defaultdict(set)
    out: dict[str, str] = {}
    for key, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        words = tuple(key.split())
        if not words:
            out[key] = key
            continue
        pools = [set().union(*(by_variant.get(v, set()) for v in _variants(w))) for w in words]
        candidates = set.intersection(*pools)
        same_size = sorted(c for c in candidates if len(canonical[c]) == len(words))
        if same_size:
            out[key] = " ".join(canonical[same_size[0]])  # ids grow with rank: the first is the most asked
            continue
        if len(words) == 1 and candidates:
            out[key] = " ".join(canonical[min(candidates)])
            continue
        out[key] = key
        index = len(canonical)
        canonical.append(words)
        for w in words:
            for v in _variants(w):
                by_variant[v].add(index)
    return out


def typical(questions: Sequence[str], key: str) -> str:
    """The most typical question of a group (see the module's docstring); "" for an empty group."""
    if not questions:
        return ""
    wordings: Counter[str] = Counter()
    first_seen: dict[str, str] = {}
    for q, n in Counter(questions).items():  # each distinct text folded once
        folded = " ".join(fold(q).split())
        wordings[folded] += n
        first_seen.setdefault(folded, q.strip())
    stems = {text: set(_stems(text)) for text in wordings}
    frequent: Counter[str] = Counter()
    for text, n in wordings.items():
        for w in stems[text]:
            frequent[w] += n
    key_words = set(key.split())

    def score(text: str) -> tuple:
        own = stems[text]
        return (wordings[text], len(key_words & own), sum(frequent[s] for s in own) / (1 + len(own)), -len(text))

    best = max(wordings, key=score)
    return first_seen[best]


def _stems(text: str) -> Iterable[str]:
    return (stem(w) for w in _WORD.findall(text) if len(w) > 2)
