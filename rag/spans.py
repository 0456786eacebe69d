"""What a question asks for, and the spans of a sentence that can answer it. Pure: regular expressions only.

    answer_type("c'est cb le tarif de la cantine ?")   → "amount"
    find_spans("Le repas coûte 3,20 € par enfant.", "amount") → [Span(15, 21, "amount", "3,20 €")]

Types: ``amount`` (euros, percentages), ``count`` (a number of things), ``duration`` (jours, mois, heures…),
``date`` (a day, a month and year, a year), ``person`` (M./Mme + name, a role or a service), ``form`` (a form, a
Cerfa, a tool), ``place`` and ``None`` (yes/no, how-to: any sentence may answer). French and English questions.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

AnswerType = str  # "amount" | "count" | "duration" | "date" | "person" | "form" | "place"


def fold(text: str) -> str:
    """Lower case without accents (« Délai » → « delai »), typographic apostrophes made plain."""
    text = unicodedata.normalize("NFKD", text.replace("’", "'").replace("\u00a0", " ").replace("\u202f", " "))
    return _MARKS.sub("", text).lower()


_MARKS = re.compile("[\u0300-\u036f]")


# Question cues, tried in order on the folded question: the first that matches gives the type.
_CUES: tuple[tuple[str, str], ...] = (
    ("duration", r"\b(combien|cb|cbn|how (?:many|much)) (?:de |d')?(?:temps|jours?|jrs?|mois|semaines?|ans|annees?|heures?|"
                 r"minutes?|days?|weeks?|months?|years?|hours?)\b|\bhow long\b|\bduree\b|\bdelai|\bpendant combien\b|"
                 r"\bsous combien\b|\bdans quel delai\b|\bpreavis\b|\bprevenance\b|\banciennete\b"),
    ("amount", r"\b(tarif|prix|cout|coute|coutent|montant|combien (?:ca )?(?:coute|paye|rembourse)|somme|"
               r"plafond|indemni|allocation|taux|budget|subvention|€|euros?|how much (?:is|does|do|are|money)|"
               r"cost|price|fee|rate|amount|salaire|prime|paie|rembours|frais|loyer|redevance)"),
    ("count", r"\b(combien|cb|cbn|how many|nombre|nb)\b"),
    ("date", r"\b(quand|qd|qand|a partir de quand|jusqu'?a quand|depuis quand|quelle date|date|when|what date|"
             r"quel jour|which day|what day|en quelle annee|quelle annee|echeance|avant le)\b"),
    ("person", r"\b(qui|who|whom|a qui|aupres de qui|quel service|which service|quel interlocuteur|"
               r"contact(?:er)?|referent|responsable|signe|signataire|valide|nom du|nom de la|name of)\b"),
    ("form", r"\b(formulaire|cerfa|imprime|form|quel (?:logiciel|outil)|which (?:tool|software)|modele|"
             r"quelle application|what (?:tool|software|app))\b"),
    ("place", r"\b(ou (?:est|se|faut|dois|doit|deposer|envoyer|trouver)|where|quelle adresse|quel lieu|"
              r"quelle salle|dans quelle salle)\b"),
)


def answer_type(question: str) -> AnswerType | None:
    """The kind of span the question asks for, or None (yes/no, how-to, open questions)."""
    q = fold(question)
    for kind, cue in _CUES:
        if re.search(cue, q):
            return kind
    return None


_NUM = r"\d{1,3}(?:[ \u00a0\u202f.]\d{3})+(?:,\d+)?|\d+(?:[.,]\d+)?"
_MONTHS = (r"janvier|fevrier|février|mars|avril|mai|juin|juillet|aout|août|septembre|octobre|novembre|decembre|"
           r"décembre|january|february|march|april|may|june|july|august|september|october|november|december")
_UNITS_TIME = (r"jours?(?: (?:ouvr[ée]s|calendaires|francs))?|semaines?|mois|ans|années?|annees?|heures?|h|minutes?|"
               r"min|trimestres?|days?|weeks?|months?|years?|hours?")

_PATTERNS: dict[str, re.Pattern[str]] = {
    "amount": re.compile(rf"(?:{_NUM})\s?(?:€|euros?|EUR|%|pour ?cent|k€|M€)(?:\s?(?:HT|TTC))?"
                         rf"|€\s?(?:{_NUM})", re.IGNORECASE),
    "duration": re.compile(rf"\b(?:{_NUM}|un|une|deux|trois|quatre|cinq|six|sept|huit|neuf|dix|douze|quinze|"
                           rf"vingt|trente|quarante|soixante)\s(?:{_UNITS_TIME})\b|\b\d{{1,2}} ?h ?\d{{2}}\b",
                           re.IGNORECASE),
    "date": re.compile(rf"\b(?:1er|\d{{1,2}})\s(?:{_MONTHS})(?:\s\d{{4}})?\b|\b(?:{_MONTHS})\s\d{{4}}\b"
                       r"|\b\d{4}-\d{2}-\d{2}\b|\b\d{1,2}/\d{1,2}/\d{2,4}\b|\b(?:19|20)\d{2}\b", re.IGNORECASE),
    # A year is not a count (« en 2023 s'élève… »).
    "count": re.compile(rf"\b(?!(?:19|20)\d{{2}}\b)(?:{_NUM})\b(?!\s?(?:€|euros?|%))(?:\s(?:[a-zà-ÿ'’-]{{3,}}))?|\b(?:un|une|deux|trois|quatre|cinq|six|sept|huit|"
                        r"neuf|dix|douze|quinze|vingt|trente|cent)\b", re.IGNORECASE),
    "person": re.compile(r"\b(?:M\.|Mme|Mmes|MM\.|Mlle|Dr|Me)\s+[A-ZÀ-Ý][\w'’-]+(?:[\s-][A-ZÀ-Ý][\w'’-]+)*"
                         r"|\b(?:le|la|au|du|à la|auprès du|auprès de la)\s(?:DRH|DGS|DSI|DPO|maire|adjoint\w*|"
                         r"directeur\w*|directrice\w*|responsable\w*|chef\w*|service\w*|référent\w*|comptable|"
                         r"régisseur\w*|secrétariat|gestionnaire\w*|agent\w*|conseil\w*|président\w*|préfet\w*)"
                         r"(?:\s[\w'’-]+){0,4}"),
    "form": re.compile(r"\b(?:cerfa|formulaire|imprimé|modèle|fiche|logiciel|outil|application|plateforme|"
                       r"GLPI|e-RH|Civil Net|BlueMind|Messagerie Arnon)\b[^.;:]{0,60}", re.IGNORECASE),
    "place": re.compile(r"\b(?:salle|mairie|hôtel de ville|accueil|bureau|rue|place|route|avenue|bâtiment|"
                        r"centre|gymnase|cimetière|école|site|local|guichet)\b[^.;:,]{0,50}", re.IGNORECASE),
}


@dataclass(frozen=True, slots=True)
class Span:
    start: int
    end: int
    kind: str
    text: str


def find_spans(sentence: str, kind: AnswerType | None) -> list[Span]:
    """Spans of ``sentence`` of the asked kind (an amount also answers a count-like « combien »)."""
    if kind is None:
        return []
    kinds = (kind, "amount") if kind == "count" else (kind,)
    out: list[Span] = []
    for k in kinds:
        pattern = _PATTERNS.get(k)
        if pattern is None:
            continue
        for m in pattern.finditer(sentence):
            text = m.group(0).strip()
            if text:
                start = m.start() + (len(m.group(0)) - len(m.group(0).lstrip()))
                out.append(Span(start, start + len(text), k, text))
    out.sort(key=lambda s: (s.start, -(s.end - s.start)))
    kept: list[Span] = []
    for span in out:  # no overlaps: the first and longest wins
        if not kept or span.start >= kept[-1].end:
            kept.append(span)
    return kept


_YEAR = re.compile(r"\b(?:19|20)\d{2}\b")
_ACRONYM = re.compile(r"\b[A-Z][A-Z0-9]{1,7}s?\b")
_NUMBER = re.compile(r"\b\d+(?:[.,]\d+)?\b")


def key_entities(question: str) -> tuple[str, ...]:
    """Years, numbers and acronyms of a question: decisive terms a passage must contain to answer it."""
    found: list[str] = []
    found += _YEAR.findall(question)
    found += [n for n in _NUMBER.findall(question) if not _YEAR.fullmatch(n)]
    found += [a for a in _ACRONYM.findall(question) if a.rstrip("s") not in _COMMON_ACRONYMS]
    # Proper nouns: a capitalised word that does not open the question (« au Canada », « la MJC »).
    for match in _PROPER.finditer(question):
        word = match.group(0)
        before = question[: match.start()].rstrip()
        if before and before[-1] not in ".!?:«\"" and word.upper() not in _COMMON_ACRONYMS and word not in found:
            found.append(word)
    return tuple(dict.fromkeys(found))


_PROPER = re.compile(r"\b[A-ZÀ-Ý][a-zà-ÿ]{2,}(?:-[A-ZÀ-Ý][a-zà-ÿ]+)*\b")


# Acronyms an agent types for words any document of the commune speaks of (they are not decisive terms).
_COMMON_ACRONYMS = frozenset({"RH", "DRH", "ST", "CM", "DGS", "DSI", "OK", "IA", "AI", "PDF", "HT", "TTC", "N", "I",
                              "A", "B", "C", "FAQ", "RTT", "CET", "SVP", "STP", "MDP", "PC", "DP", "CU", "BC", "NB", "CB", "QD",
                              "JE", "IL", "ON", "UN", "LE", "LA", "LES", "DES"})
