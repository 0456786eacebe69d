"""Personal data typed into a question: found, masked, and the agent warned (charte d'usage de l'IA, point 3.4).

    screen(question) ─▶ Screening(found, masked, warning)     # the one call a caller needs
    find_personal_data(text) ─▶ [Found(kind, start, end, checked)]
    mask(text, found) ─▶ « … [IBAN masqué] … »
    warning(found, text) ─▶ French message quoting the charter's rule ("" when nothing was found)

Kinds: ``nir`` (numéro de sécurité sociale), ``iban``, ``email``, ``phone``, ``birth_date``. Pure, no dependency.

Choices (a DPO's reading of the charter, which forbids any personal data in a prompt):
- NIR and IBAN are found by their keys: a NIR (15 characters, Corsica 2A/2B, spaces, dots or dashes anywhere) whose
  key is 97 − (first 13 digits mod 97), an IBAN (known country, its exact length, in groups or not) that passes the
  ISO 13616 mod-97 check. A number of the right shape whose key is wrong, or a NIR typed without its key (13
  characters), is still flagged, with ``checked=False``, but only when the words around it say what it is (« sécu »,
  « NIR », « IBAN », « RIB », « compte »…): a typo in a real number is still a personal datum, while a long
  reference number with no such word is not.
- A French RIB (bank, branch, account, key) is the domestic form of an IBAN: kind ``iban``, checked by its key.
- Every phone number is personal data, the mairie's switchboard included: the charter names « numéros de
  téléphone » without exception, and nothing in a typed question says whose number it is; 08 numbers (numéros
  verts, surtaxés) are services, never a person's line, and are not flagged. Every e-mail address is flagged.
- A date is a birth date only when a birth cue precedes it closely (« né le », « née à Bourges le », « date de
  naissance : », « ddn ») and the cue is not a category (« nés avant le 1er janvier 1961 »). A year alone (« né en
  1985 ») is not flagged.
- Not flagged: deliberation, article, cerfa, SIRET/SIREN, postal codes, amounts, dates without a birth cue.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Kind = Literal["nir", "iban", "email", "phone", "birth_date"]
KINDS: tuple[Kind, ...] = ("nir", "iban", "email", "phone", "birth_date")

MASKS: dict[str, str] = {
    "nir": "[NIR masqué]",
    "iban": "[IBAN masqué]",
    "email": "[courriel masqué]",
    "phone": "[téléphone masqué]",
    "birth_date": "[date de naissance masquée]",
}
LABELS: dict[str, str] = {
    "nir": "un numéro de sécurité sociale",
    "iban": "un IBAN",
    "email": "une adresse électronique",
    "phone": "un numéro de téléphone",
    "birth_date": "une date de naissance",
}
CHARTER_RULE = ("« Aucune donnée personnelle ne doit être saisie dans un prompt. […] L'agent formule sa question "
                "de façon générale ou remplace les éléments identifiants par des mentions neutres, par exemple « un "
                "agent de catégorie C » ou « un administré ». »")
CHARTER = "la charte d'usage de l'intelligence artificielle générative de la commune (point 3.4)"


@dataclass(frozen=True, slots=True)
class Found:
    kind: Kind
    start: int
    end: int
    checked: bool = True  # False: a NIR or IBAN of the right shape whose key is wrong or absent (flagged by context)

    def to_json(self) -> dict:
        return {"kind": self.kind, "start": self.start, "end": self.end, "checked": self.checked}


@dataclass(frozen=True, slots=True)
class Screening:
    text: str
    found: tuple[Found, ...]
    masked: str  # the text to store or to send to a remote model
    warning: str  # for the agent; "" when nothing was found (quotes the values: show it, never store it)


# -- keys -------------------------------------------------------------------------------------------------------

IBAN_LENGTHS = {
    "AD": 24, "AT": 20, "BE": 16, "BG": 22, "CH": 21, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "EE": 20, "ES": 24,
    "FI": 18, "FR": 27, "GB": 22, "GR": 27, "HR": 21, "HU": 28, "IE": 22, "IS": 26, "IT": 27, "LI": 21, "LT": 20,
    "LU": 20, "LV": 21, "MC": 27, "MT": 31, "NL": 18, "NO": 15, "PL": 28, "PT": 25, "RO": 24, "SE": 24, "SI": 19,
    "SK": 24, "SM": 27,
}


def iban_ok(compact: str) -> bool:
    """ISO 13616: the country and check digits moved to the end, letters as 10–35, the number mod 97 is 1."""
    compact = compact.upper()
    if len(compact) != IBAN_LENGTHS.get(compact[:2], -1) or not compact[2:4].isdigit():
        return False
    digits = "".join(str(int(c, 36)) for c in compact[4:] + compact[:4])
    return int(digits) % 97 == 1


def nir_key(first13: str) -> int:
    """97 − (n mod 97), Corsica's 2A and 2B counted as 19 and 18."""
    n = first13.upper().replace("2A", "19", 1).replace("2B", "18", 1) if first13[5:7].upper() in ("2A", "2B") \
        else first13
    return 97 - int(n) % 97


_NIR13 = re.compile(r"[1-478]\d{2}(?:0[1-9]|1[0-2]|20|3\d|4[0-2]|[5-9]\d)(?:\d{2}|2[AB])\d{6}", re.I)


def nir_ok(compact: str) -> bool:
    return len(compact) == 15 and bool(_NIR13.fullmatch(compact[:13])) and compact[13:].isdigit() \
        and int(compact[13:]) == nir_key(compact[:13])


# -- context ----------------------------------------------------------------------------------------------------

_NIR_CONTEXT = re.compile(r"s[ée]cu|\bnir\b|insee|immatricul|vitale|\bn°\s*ss\b|\bnum(?:[ée]ro)?\s*ss\b", re.I)
_IBAN_CONTEXT = re.compile(r"iban|\brib\b|\bbic\b|virement|compte|bancaire|banque|pr[ée]l[èe]vement", re.I)


def _near(pattern: re.Pattern, text: str, start: int, end: int) -> bool:
    return bool(pattern.search(text[max(0, start - 60):start]) or pattern.search(text[end:end + 25]))


# -- finders ----------------------------------------------------------------------------------------------------

_SEP = " .-"


def _walk(text: str, i: int, accept, limit: int) -> tuple[str, list[int]]:
    """Characters accepted from ``i`` on, one separator (space, dot, dash) allowed between them: the compact string
    and the end offset after each character."""
    compact, ends = "", []
    while i < len(text) and len(compact) < limit:
        j = i + 1 if text[i] in _SEP else i
        if j < len(text) and accept(compact, text[j]):
            compact += text[j]
            ends.append(j + 1)
            i = j + 1
        else:
            break
    return compact, ends


def _continues(text: str, end: int) -> bool:
    """The number goes on after ``end`` (a digit, or a separator then a digit)."""
    nxt = text[end:end + 2]
    return bool(nxt) and (nxt[0].isalnum() or (len(nxt) == 2 and nxt[0] in _SEP and nxt[1].isdigit()))


def _starts_mid_number(text: str, start: int) -> bool:
    before = text[max(0, start - 2):start]
    return bool(before) and (before[-1].isalnum() or before[-1] == "+" or
                             (len(before) == 2 and before[0].isdigit() and before[1] in _SEP))


_IBAN_START = re.compile(r"(?<![A-Za-z0-9])([A-Za-z]{2}) ?(\d{2})")


def _ibans(text: str) -> list[Found]:
    found = []
    for m in _IBAN_START.finditer(text):
        country = m.group(1)
        length = IBAN_LENGTHS.get(country.upper())
        if length is None or (" " in m.group(0) and not country.isupper()):
            continue
        compact, ends = _walk(text, m.end(), lambda _, c: c.isascii() and c.isalnum(), length - 4)
        if len(compact) < length - 4:
            continue
        end = ends[-1]
        if end < len(text) and text[end].isalnum():
            continue
        checked = iban_ok(country + m.group(2) + compact)
        if checked or _near(_IBAN_CONTEXT, text, m.start(), end):
            found.append(Found("iban", m.start(), end, checked))
    return found


_RIB = re.compile(r"(?<![\w.,-])(\d{5})[ .\-]?(\d{5})[ .\-]?([0-9A-Za-z]{11})[ .\-]?(\d{2})(?![\w-])")
_RIB_LETTERS = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "12345678912345678923456789")


def rib_ok(bank: str, branch: str, account: str, key: str) -> bool:
    """The French RIB key (the domestic form of a French IBAN): 97 − ((89·bank + 15·branch + 3·account) mod 97)."""
    account = account.upper().translate(_RIB_LETTERS)
    return int(key) == 97 - (89 * int(bank) + 15 * int(branch) + 3 * int(account)) % 97


def _ribs(text: str) -> list[Found]:
    found = []
    for m in _RIB.finditer(text):
        checked = rib_ok(*m.groups())
        if checked or _near(_IBAN_CONTEXT, text, m.start(), m.end()):
            found.append(Found("iban", m.start(), m.end(), checked))
    return found


def _nir_char(compact: str, c: str) -> bool:
    if c.isdigit():
        return True
    return len(compact) == 6 and compact[5] == "2" and c in "ABab"  # Corsica: 2A, 2B


_KEY_AFTER = re.compile(r"[ .\-]*(?:\(|cl[ée]\s*:?\s*)?(\d{2})\)?(?!\d)", re.I)


def _nirs(text: str) -> list[Found]:
    found = []
    for m in re.finditer(r"[1-478]", text):
        start = m.start()
        if _starts_mid_number(text, start):
            continue
        compact, ends = _walk(text, start, _nir_char, 15)
        if len(compact) < 13 or not _NIR13.fullmatch(compact[:13]):
            continue
        if len(compact) == 15 and not _continues(text, ends[-1]):
            end, checked = ends[-1], nir_ok(compact)
        else:
            key = _KEY_AFTER.match(text, ends[12])
            if len(compact) == 13 and key:  # « 1850375123456 clé 78 »
                end, checked = key.end(), int(key.group(1)) == nir_key(compact)
            elif len(compact) == 13 and not _continues(text, ends[12]):
                end, checked = ends[12], False
            else:
                continue
        if checked or _near(_NIR_CONTEXT, text, start, end):
            found.append(Found("nir", start, end, checked))
    return found


_EMAIL = re.compile(r"(?<![\w.+-])[\w.%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}(?![\w-])")

_PHONE = re.compile(  # 08 numbers are services (numéros verts, surtaxés), never a person's line
    r"(?:(?:(?:\+|00) ?33|\(\+33\)) ?(?:\(0\) ?)?[1-79]|\b0[1-79])(?:[ .\-]?\d){8}"  # 06…, +33 6…, (+33) 6…
    r"|(?:\+|\b00) ?(?!33)[1-9]\d{0,2}(?:[ .\-]?\(?\d\)?){7,12}"  # other countries, with their prefix
)


_DATE_THEN_NUMBER = re.compile(r"\d{2}([. \-])\d{2}\1(?:19|20)\d{2}")  # « le 06.12.2024 10 agents »


def _phones(text: str) -> list[Found]:
    found = []
    for m in _PHONE.finditer(text):
        start, end = m.start(), m.end()
        if _starts_mid_number(text, start) or _continues(text, end) or _DATE_THEN_NUMBER.match(m.group()):
            continue
        found.append(Found("phone", start, end))
    return found


_MONTHS = (r"janv(?:ier|\.)?|f[ée]vr?(?:ier|\.)?|mars|avr(?:il|\.)?|mai|juin|juil(?:let|\.)?|ao[uû]t|"
           r"sept(?:embre|\.)?|oct(?:obre|\.)?|nov(?:embre|\.)?|d[ée]c(?:embre|\.)?")
_DATE = re.compile(
    r"\b(?:(?:[12]\d|3[01]|0?[1-9])([/.\- ])(?:1[0-2]|0?[1-9])\1(?:\d{4}|\d{2})"  # 03/03/85, 3.3.1985, 03 03 85
    r"|(?:1 ?er|[12]\d|3[01]|0?[1-9]) ?(?:" + _MONTHS + r") ?(?:\d{4}|\d{2})"  # 1er mars 1985, 3 mars 85
    r"|(?:19|20)\d{2}-(?:1[0-2]|0[1-9])-(?:[12]\d|3[01]|0[1-9]))(?!\d)",  # 1985-03-03
    re.I)
_BORN = re.compile(r"\bn[ée]e?s? ?\(e\)|\bnée?s?\b|\bnees?\b", re.I)  # « né », « née », « né(e) », « nee »
_BORN_NO_ACCENT = re.compile(  # « ne le », « ne a Bourges le »: the negation « ne » is never followed by a date
    r"\bnes? (?:(?:a|à) [\w'\-]+(?:[ \-][\w'\-]+){0,3} )?le ?$", re.I)
_BIRTH_LABEL = re.compile(r"naiss\w*|\bd\.?d\.?n\b", re.I)  # « date de naissance : », « ddn »
_LABEL_GAP = re.compile(r"[\s:=,.\-]*(?:(?:est|etait|était) )?(?:(?:le|du) )?", re.I)
_CATEGORY = re.compile(r"avant|apr[èe]s|entre|depuis|partir|jusqu|\bdu\b|ou plus|plus de|moins de", re.I)
_GAP_STOP = re.compile(r"[\d?!;]|\.\s")
_LABEL_AFTER = re.compile(r"\s*[(,]?\s*(?:date de naiss\w*|d\.?d\.?n\b|de naissance)", re.I)


def _is_birth_date(text: str, start: int, end: int) -> bool:
    before = text[max(0, start - 45):start]
    born = list(_BORN.finditer(before))
    if born:
        gap = before[born[-1].end():]
        if not _GAP_STOP.search(gap) and not _CATEGORY.search(gap):
            return True
    if _BORN_NO_ACCENT.search(before):
        return True
    label = list(_BIRTH_LABEL.finditer(before))
    if label and _LABEL_GAP.fullmatch(before[label[-1].end():]):
        return True
    return bool(_LABEL_AFTER.match(text, end))


def _birth_dates(text: str) -> list[Found]:
    return [Found("birth_date", m.start(), m.end()) for m in _DATE.finditer(text) if _is_birth_date(text, *m.span())]


# -- the API ----------------------------------------------------------------------------------------------------

_PRIORITY = {"iban": 0, "nir": 1, "email": 2, "phone": 3, "birth_date": 4}


def find_personal_data(text: str) -> list[Found]:
    """The personal data of ``text``, in reading order, spans not overlapping (IBAN > NIR > e-mail > phone > date)."""
    emails = [Found("email", m.start(), m.end()) for m in _EMAIL.finditer(text)]
    candidates = _ibans(text) + _ribs(text) + _nirs(text) + emails + _phones(text) + _birth_dates(text)
    kept: list[Found] = []
    for f in sorted(candidates, key=lambda f: (_PRIORITY[f.kind], f.start)):
        if all(f.end <= k.start or f.start >= k.end for k in kept):
            kept.append(f)
    return sorted(kept, key=lambda f: f.start)


def mask(text: str, found: list[Found] | tuple[Found, ...] | None = None) -> str:
    """``text`` with each personal datum replaced by « [IBAN masqué] »… (found again when ``found`` is None)."""
    if found is None:
        found = find_personal_data(text)
    out, last = [], 0
    for f in sorted(found, key=lambda f: f.start):
        out += [text[last:f.start], MASKS[f.kind]]
        last = f.end
    return "".join(out) + text[last:]


def warning(found: list[Found] | tuple[Found, ...], text: str | None = None) -> str:
    """The French warning for the agent, naming what was found (quoting it when ``text`` is given), with the
    charter's rule; "" when nothing was found."""
    if not found:
        return ""
    items = []
    for f in sorted(found, key=lambda f: f.start):
        label = LABELS[f.kind]
        if text is not None:
            label += f" (« {text[f.start:f.end]} »)"
        if label not in items:
            items.append(label)
    what = ", ".join(items[:-1]) + " et " + items[-1] if len(items) > 1 else items[0]
    return (f"Attention : votre question semble contenir des données personnelles : {what}. Selon {CHARTER}, "
            f"{CHARTER_RULE} Ces éléments sont masqués avant tout envoi à un modèle de langue externe ; "
            "reformulez votre question sans eux.")


def screen(text: str) -> Screening:
    """Everything a caller needs about one question: what was found, the masked text, the warning."""
    found = tuple(find_personal_data(text))
    return Screening(text, found, mask(text, found), warning(found, text))
