"""A question as agents type it, made readable: shorthand expanded, content words weighted, language told.

Agents write « cb de jours de tt ? », « mdp oublié », « je me suis blessé au boulot ». Three things follow:

- ``expand``: the shorthand and spoken words of a town hall (« cb » → combien, « mdp » → mot de passe, « boulot » →
  travail, « ST » → services techniques) are spelled out next to what the agent typed, for retrieval and matching.
- ``analyse``: the question's content words, each with its French BM25 term ids (stems, accents folded) and a
  weight that says how decisive it is. The weight comes from the word's frequency in general French or English
  (``wordfreq``, shipped in its package), never from the collection: no statistic over documents the user may not
  see can change it. « combien », « maintenant » weigh little; « PACS », « CNAS », « astreinte » weigh much.
- ``bm25_query``: the BM25 query vector, each content word weighted that way. Qdrant's IDF modifier would count every
  point of the collection, documents the user may not see included; these weights are the same for every collection.
- the language: a question in English is answered from French documents by meaning, not by shared words.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from rag.spans import AnswerType, answer_type, fold, key_entities

# Shorthand and spoken words of agents (folded forms) → what they stand for. Kept next to the word as typed.
SHORTHAND: dict[str, str] = {
    "cb": "combien", "cbn": "combien", "cmb": "combien", "qd": "quand", "qand": "quand", "mdp": "mot de passe",
    "pwd": "password", "asso": "association", "assos": "associations", "st": "services techniques",
    "tps": "temps", "dispo": "disponible", "dispos": "disponibles", "pr": "pour", "ds": "dans", "bcp": "beaucoup",
    "jrs": "jours", "jr": "jour", "hrs": "heures", "rdv": "rendez-vous", "delib": "deliberation",
    "delibs": "deliberations", "del": "deliberation", "cm": "conseil municipal", "pc": "permis de construire",
    "dp": "declaration prealable", "cu": "certificat d'urbanisme", "bc": "bon de commande", "qqn": "quelqu'un",
    "qqch": "quelque chose", "nb": "nombre", "max": "maximum", "mini": "minimum", "infos": "informations",
    "info": "information", "doc": "document", "docs": "documents", "appli": "application", "ordi": "ordinateur",
    "pb": "probleme", "pbs": "problemes", "resp": "responsable", "boulot": "travail", "taf": "travail",
    "bosser": "travailler", "bosse": "travaille", "gamin": "enfant", "gamins": "enfants", "gosse": "enfant",
    "gosses": "enfants", "bagnole": "voiture", "perso": "personnel", "pro": "professionnel", "aprem": "apres-midi",
    "dej": "dejeuner", "resto": "restaurant", "fric": "argent", "km": "kilometres",
    "mail": "courriel", "mails": "courriels", "exo": "exoneration", "ec": "etat civil",
    "urba": "urbanisme", "compta": "comptabilite", "teletaf": "teletravail", "ttv": "teletravail", "vacances": "conges", "vac": "conges",
    "ado": "adolescent", "subv": "subvention", "subvs": "subventions",
    "ptit": "petit", "ptite": "petite", "ya": "il y a", "y'a": "il y a", "chui": "je suis", "jsuis": "je suis",
    "pk": "pourquoi", "pq": "pourquoi", "koi": "quoi", "kel": "quel", "kelle": "quelle",
}

# Words that say how a question is asked, not what it is about (spoken French and English): never decisive, never
# expected in a document. « c'est combien le tarif maintenant » is about « tarif ».
FILLER = frozenset("""
si combien quand comment pourquoi quel quelle quels quelles quoi qui ou est-ce faut falloir dois doit doivent peux peut
peuvent pouvoir possible possibles savoir sais sait voudrais veux veut aimerais besoin faire fait fais font exactement
maintenant actuellement aujourd'hui encore toujours deja svp stp merci bonjour salut alors bon bref truc trucs machin
chose choses ca cela ceci c'est y'a ya il-y-a estce max maximum minimum mini vraiment bien juste quelqu'un quelque
what when who whom how which where why can could should must does do did is are was the much many long there need
of per to for in on at by with from about my me i we our you your it its be been a an and or if get got take have has
""".split())
_TOKEN = re.compile(r"[\w'’-]+|[€%]", re.UNICODE)
_EN_WORDS = frozenset("the a an is are do does what when who how which where can i my we our of to for in on with "
                      "at it be should must much many long there this that have has will would".split())
_FR_WORDS = frozenset("le la les un une des est et de du en je tu il on nous vous quel quelle quels quelles pour "
                      "dans sur avec qui que quoi comment combien quand ou au aux ce ca c'est mon ma mes faut "
                      "dois peut peux".split())


def spelled(token: str) -> str | None:
    """What a shorthand word stands for (« cb » → « combien »), or None. A shorthand of one or two letters counts
    only as typed in lower or upper case (« ST » yes, « St-Martin » no)."""
    key = fold(token).strip("?!.,;:()«»\"")
    if key in SHORTHAND and not (len(key) <= 2 and token.strip("?!.,;:") not in (key, key.upper())):
        return SHORTHAND[key]
    return None


def expand(question: str) -> str:
    """The question with the spelled-out form after each shorthand word (« cb de jrs » → « cb combien de jrs
    jours »); unchanged when there is none."""
    out: list[str] = []
    for token in question.split():
        out.append(token)
        if (form := spelled(token)) is not None:
            out.append(form)
    return " ".join(out)


def language(question: str) -> str:
    """« en » when the question reads as English, else « fr »."""
    words = [fold(w) for w in _TOKEN.findall(question)]
    en = sum(w in _EN_WORDS for w in words)
    fr = sum(w in _FR_WORDS for w in words)
    return "en" if en >= 2 and en > fr else "fr"


@lru_cache(maxsize=50_000)
def zipf(word: str, lang: str) -> float:
    """Frequency of a word in general usage on the Zipf scale (0: unknown, 7: « de »)."""
    from wordfreq import zipf_frequency

    return zipf_frequency(word, lang)


@dataclass(frozen=True, slots=True)
class Term:
    word: str  # as typed (folded)
    ids: tuple[int, ...]  # French BM25 term ids (stemmed, accents folded); empty for a stop word
    weight: float  # how decisive: high for rare words
    known: bool  # in the general vocabulary (else a typo, a name or a rare acronym)


@dataclass(frozen=True, slots=True)
class QuestionAnalysis:
    text: str  # as asked
    expanded: str  # shorthand spelled out (what retrieval reads)
    lang: str
    answer_type: AnswerType | None
    terms: tuple[Term, ...]
    entities: tuple[str, ...]  # years, numbers, acronyms

    @property
    def total_weight(self) -> float:
        return sum(t.weight for t in self.terms)


def weight(word: str, lang: str) -> tuple[float, bool]:
    """A word's weight: 8 − Zipf frequency, floored at 0.5 (≈ an IDF over general usage); unknown words 4."""
    z = max(zipf(word, lang), zipf(word, "fr") if lang != "fr" else 0.0)
    if z <= 0:
        return 4.0, False
    return max(0.5, 8.0 - z), True


@lru_cache(maxsize=256)
def analyse(question: str, sparse) -> QuestionAnalysis:
    """Content words of ``question`` (stop words dropped by the French BM25 analyser, filler words too), weighted.
    A shorthand word and its one-word spelling are one term, found when either is (« vacances » or « congés »);
    a shorthand for several words gives those words (« mdp » → mot, passe). Cached: retrieval (``bm25_query``)
    and the evidence reader read the same question."""
    expanded = expand(question)
    lang = language(question)
    terms: dict[tuple[int, ...], Term] = {}

    def add(word: str, also: str | None = None) -> None:
        ids = set(sparse.embed_query(word)[0])
        if also:
            ids |= set(sparse.embed_query(also)[0])
        key = tuple(sorted(ids))
        if not key or key in terms:
            return
        w, known = weight(also or word, lang)
        terms[key] = Term(word, key, w, known)

    for token in _TOKEN.findall(question):
        word = fold(token).strip("'-")
        if len(word) < 2 or word in FILLER or word.split("'")[-1] in FILLER:
            continue  # how it is asked, not what about
        form = spelled(token)
        if form is None:
            add(word)
            continue
        words = [w for w in (fold(x) for x in _TOKEN.findall(form)) if w not in FILLER and len(w) > 1]
        if len(words) == 1:
            add(word, words[0])
        else:
            for w in words:
                add(w)
    spelled_out = " ".join(spelled(t) or t for t in question.split())
    return QuestionAnalysis(question, expanded, lang, answer_type(spelled_out), tuple(terms.values()),
                            key_entities(question))


def bm25_query(question: str, sparse) -> tuple[list[int], list[float]]:
    """The BM25 query vector of ``question``: the term ids of its content words (shorthand spelled out, filler words
    left out), each weighted by ``weight`` (general usage, never the collection; the highest when words share a
    stem). Empty when the question has no content word."""
    weights: dict[int, float] = {}
    for term in analyse(question, sparse).terms:
        for i in term.ids:
            weights[i] = max(weights.get(i, 0.0), term.weight)
    ids = sorted(weights)
    return ids, [weights[i] for i in ids]
