"""Personal data in agents' questions: found with the right offsets, NIR and IBAN checked by their keys, what agents
legitimately ask about left alone, masked before a remote model sees it (the real ``MistralGenerator`` against the
scripted local server), and the committed labelled set held to ≥ 0.95 precision and recall on its test part."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from evals.personal_data import DEFAULT_DATASET, load, score, spans_match
from mistral_server import mistral_server  # noqa: F401 - fixture
from rag.generate import MistralGenerator
from rag.personal_data import CHARTER_RULE, MASKS, Found, find_personal_data, mask, screen, warning
from rag.retrieve import ScoredChunk

ROOT = Path(__file__).resolve().parents[2]

# Keys computed by hand: 97 − (first 13 digits mod 97), 2A → 19 and 2B → 18 for Corsica.
NIR = "1 85 05 78 006 084 91"
NIR_2A = "2 90 12 2A 004 123 67"
NIR_2B = "1761118056042" + "14"
IBAN_FR = "FR76 3000 6000 0112 3456 7890 189"  # the IBAN of French banks' documentation
IBAN_DE = "DE89 3704 0044 0532 0130 00"


def kinds_and_texts(text: str) -> list[tuple[str, str]]:
    return [(f.kind, text[f.start:f.end]) for f in find_personal_data(text)]


@pytest.mark.parametrize("text, expected", [
    (f"l'agent {NIR} a-t-il droit au CET ?", ("nir", NIR)),
    (f"secu {NIR.replace(' ', '')}, arret maladie", ("nir", NIR.replace(" ", ""))),
    (f"numero {NIR.replace(' ', '.')} pour la retraite", ("nir", NIR.replace(" ", "."))),
    (f"agent né en Corse {NIR_2A} : prime ?", ("nir", NIR_2A)),
    (f"insee {NIR_2B} dossier CNRACL", ("nir", NIR_2B)),
    (f"nouvel IBAN {IBAN_FR}, je le saisis ou ?", ("iban", IBAN_FR)),
    (f"{IBAN_FR.replace(' ', '')} pour la subvention", ("iban", IBAN_FR.replace(" ", ""))),
    (f"fournisseur allemand {IBAN_DE} payable ?", ("iban", IBAN_DE)),
    (f"il a écrit {IBAN_FR.lower()} sur la facture", ("iban", IBAN_FR.lower())),
    ("RIB 30006 00001 12345678901 89 à saisir", ("iban", "30006 00001 12345678901 89")),
    ("répondre à jean.dupont@gmail.com ?", ("email", "jean.dupont@gmail.com")),
    ("envoyer à archi.bernard@cabinet.archi-berry.fr.", ("email", "archi.bernard@cabinet.archi-berry.fr")),
    ("rappeler le 06 12 34 56 78 svp", ("phone", "06 12 34 56 78")),
    ("tel 06.12.34.56.78", ("phone", "06.12.34.56.78")),
    ("son portable 0612345678", ("phone", "0612345678")),
    ("joindre le +33 6 12 34 56 78", ("phone", "+33 6 12 34 56 78")),
    ("appel du 0033 7 56 21 34 88 hier", ("phone", "0033 7 56 21 34 88")),
    ("le +33 (0)6 12 98 76 54 du président", ("phone", "+33 (0)6 12 98 76 54")),
    ("prestataire suisse +41 22 345 67 89", ("phone", "+41 22 345 67 89")),
    ("agent né le 3 mars 1985, retraite ?", ("birth_date", "3 mars 1985")),
    ("date de naissance : 03/03/85, catégorie C", ("birth_date", "03/03/85")),
    ("l'usagère, née à Bourges le 1er janvier 1952, demande l'APA", ("birth_date", "1er janvier 1952")),
    ("enfant ne le 14/02/2021 en creche ?", ("birth_date", "14/02/2021")),
    ("ddn 21/11/1963, taux plein ?", ("birth_date", "21/11/1963")),
    ("agente 15/01/1972 (date de naissance) en CLD", ("birth_date", "15/01/1972")),
])
def test_each_kind_is_found_with_its_exact_span(text, expected):
    assert kinds_and_texts(text) == [expected]


def test_offsets_point_into_the_question_in_reading_order():
    text = f"agent {NIR}, né le 4 juillet 1982, tel 06 11 22 33 44, mail p.garnier@gmail.com, rib {IBAN_FR}"
    found = find_personal_data(text)
    assert [f.kind for f in found] == ["nir", "birth_date", "phone", "email", "iban"]
    assert [text[f.start:f.end] for f in found] == [NIR, "4 juillet 1982", "06 11 22 33 44", "p.garnier@gmail.com",
                                                   IBAN_FR]
    assert all(f.checked for f in found)


def wrong_key(number: str) -> str:
    """The same number with its last digit changed (the key no longer matches)."""
    last = number.rstrip()[-1]
    return number[:-1] + str((int(last) + 1) % 10)


@pytest.mark.parametrize("number", [NIR, NIR_2A, IBAN_FR, IBAN_DE, "30006 00001 12345678901 89"])
def test_a_wrong_key_alone_is_not_personal_data(number):
    assert find_personal_data(number) != []
    assert find_personal_data(f"référence {wrong_key(number)} du dossier") == []


@pytest.mark.parametrize("context, number, kind", [
    ("le numéro de sécu", NIR, "nir"), ("NIR", NIR_2A, "nir"),
    ("l'IBAN", IBAN_FR, "iban"), ("le compte bancaire", IBAN_DE, "iban"), ("son RIB", "30006 00001 12345678901 89",
                                                                         "iban"),
])
def test_a_wrong_key_named_by_its_context_is_still_flagged_unchecked(context, number, kind):
    text = f"{context} {wrong_key(number)} est refusé, pourquoi ?"
    (found,) = find_personal_data(text)
    assert (found.kind, found.checked, text[found.start:found.end]) == (kind, False, wrong_key(number))


def test_a_nir_without_its_key_is_flagged_only_when_named():
    assert [(f.kind, f.checked) for f in find_personal_data("num secu 1 85 05 78 006 084, il manque la clé")] \
        == [("nir", False)]
    assert find_personal_data("dossier 1 85 05 78 006 084 à relancer") == []
    (found,) = find_personal_data("1850578006084 clé 91 pour la mutuelle")
    assert (found.kind, found.checked, found.end) == ("nir", True, len("1850578006084 clé 91"))


@pytest.mark.parametrize("text", [
    "que dit la délibération n° 2024-045 sur la cantine ?",
    "l'article L2121-29 du CGCT permet-il au maire de déléguer ?",
    "le cerfa n° 13750*07 c'est pour le permis de construire ?",
    "le SIRET de la commune est 213 601 234 00015 ?", "siret 21360123400015", "siren 213601234",
    "le conseil du 12 mars 2024 a voté quoi ?", "date limite de dépôt : 15/04/2025, on prolonge ?",
    "les agents nés avant le 1er janvier 1961 partent à quel âge ?", "nés après le 31/12/1972 : 64 ans ?",
    "acte de naissance demandé le 3 mars 2025, qui relancer ?", "on ne le savait pas le 12 mars 2024",
    "les personnes nées en 1960 partent à 62 ans ?", "le code postal c'est 18100 ?",
    "le montant de 1 250 000 € dépasse le seuil ?", "prime de 0,5 % du traitement", "loi n° 84-53 du 26 janvier 1984",
    "le 0800 123 456 de la CAF est gratuit ?", "la version 2.4.1.0 du logiciel", "compteur d'eau n° 12345678901",
    "le permis PC 018 205 24 A0012 déposé quand ?", "carte 4970 1012 3456 7890 perdue", "le 3949 ou le 39 49 ?",
    "comment créer une adresse prenom.nom@ pour un agent ?", "le site www.service-public.fr est fiable ?",
    "quelle pièce pour prouver la date de naissance ?", "le BIC BDFEFRPPCCT de la Banque de France",
])
def test_what_agents_legitimately_ask_about_is_not_flagged(text):
    assert find_personal_data(text) == []


def test_mask_replaces_each_datum_and_keeps_the_rest():
    text = f"agent {NIR} né le 3 mars 1985 (06 12 34 56 78, a.b@val-darnon.fr) : virement sur {IBAN_FR} ?"
    masked = mask(text, find_personal_data(text))
    assert masked == (f"agent {MASKS['nir']} né le {MASKS['birth_date']} ({MASKS['phone']}, {MASKS['email']}) : "
                      f"virement sur {MASKS['iban']} ?")
    assert masked == mask(text)  # found again when not given
    assert mask("quel délai pour un congé ?") == "quel délai pour un congé ?"
    assert find_personal_data(masked) == []


def test_warning_names_what_was_found_and_quotes_the_charter():
    text = f"né le 3 mars 1985, iban {IBAN_FR}"
    result = screen(text)
    assert warning([]) == "" and screen("quel délai pour un congé ?").warning == ""
    assert "une date de naissance (« 3 mars 1985 »)" in result.warning and f"un IBAN (« {IBAN_FR} »)" in result.warning
    assert warning(result.found).count("«") == CHARTER_RULE.count("«")  # without the text: nothing quoted but the rule
    assert CHARTER_RULE in result.warning and "point 3.4" in result.warning
    charter = " ".join((ROOT / "corpora" / "_sources" / "charte" / "charte-ia.md").read_text(encoding="utf-8").split())
    for quoted in re.split(r"\s*\[…\]\s*", CHARTER_RULE.strip("«» ").rstrip(" »")):
        assert quoted.strip() in charter, quoted  # the rule is the charter's own words
    assert result.masked == f"né le {MASKS['birth_date']}, iban {MASKS['iban']}"


# --------------------------------------------------------------------------------------------------------------
# Nothing personal reaches a remote model
# --------------------------------------------------------------------------------------------------------------

SECRETS = [NIR, IBAN_FR, "jean.dupont@gmail.com", "06 12 34 56 78", "3 mars 1985", "07 45 12 78 96"]
SOURCE = ScoredChunk(id="c1", score=1.0, relevance=0.9, doc_id="RH-CET", title="Compte épargne-temps",
                     text="Le CET est ouvert à tout agent titulaire ou contractuel après un an de service.",
                     section="", page=None, pages=(), services=("rh",), doc_type="procedure", chunk_indexes=(0,),
                     payload={})


def sent_text(server) -> str:
    return "\n".join(r.raw.decode("utf-8") + json.dumps(r.body, ensure_ascii=False) for r in server.completions)


def test_question_and_history_reach_the_model_masked(mistral_server):
    gen = MistralGenerator(endpoint=mistral_server.base_url, api_key="cle", model="mistral-small-latest",
                           timeout_s=5, max_retries=0)
    question = f"l'agent {NIR} né le 3 mars 1985 (jean.dupont@gmail.com, 06 12 34 56 78) a-t-il droit au CET ?"
    history = [("user", f"virement sur {IBAN_FR} possible ?"), {"role": "assistant", "content": "Oui [1]."},
               ("user", "et rappeler le 07 45 12 78 96 ?"), ("assistant", "Non.")]
    mistral_server.reply("Un agent qui a-t-il droit au CET ?")
    mistral_server.reply("Oui, après un an de service [1].")
    standalone = gen.rewrite(question, history)
    assert "".join(gen.stream(question, [SOURCE], history)) == "Oui, après un an de service [1]."
    rewrite, answer = mistral_server.completions
    sent = sent_text(mistral_server)
    digits = re.sub(r"\D", "", sent)
    for secret in SECRETS:
        assert secret not in sent and secret.lower() not in sent.lower(), secret
    for number in (NIR, IBAN_FR[4:], "0612345678", "0745127896"):
        assert re.sub(r"\D", "", number) not in digits, number
    assert MASKS["nir"] in answer.last_user and MASKS["birth_date"] in answer.last_user
    assert MASKS["iban"] in answer.content(1) and MASKS["phone"] in answer.content(3)
    assert MASKS["email"] in rewrite.last_user and SOURCE.text in answer.last_user  # the sources go as they are
    assert standalone == "Un agent qui a-t-il droit au CET ?"


# --------------------------------------------------------------------------------------------------------------
# The committed labelled set
# --------------------------------------------------------------------------------------------------------------


def test_the_labelled_set_is_large_balanced_and_well_formed():
    rows = load(DEFAULT_DATASET)
    assert len(rows) >= 200 and len({r.id for r in rows}) == len(rows)
    assert {r.split for r in rows} == {"train", "test"} and sum(r.split == "test" for r in rows) >= 80
    positive = sum(bool(r.spans) for r in rows)
    assert 0.4 <= positive / len(rows) <= 0.6
    assert {kind for r in rows for kind, _, _ in r.spans} == set(MASKS)
    for r in rows:
        for kind, start, end in r.spans:
            assert r.question[start:end].strip() == r.question[start:end], (r.id, kind)


def test_detection_on_the_test_part_reaches_095_precision_and_recall():
    scores = score(load(DEFAULT_DATASET, "test"))
    assert scores.overall.gold >= 40
    assert scores.overall.precision >= 0.95 and scores.overall.recall >= 0.95, scores.errors
    for kind, counts in scores.per_kind.items():
        assert counts.gold and counts.recall >= 0.8 and counts.precision >= 0.8, (kind, scores.errors)


def test_span_matching_needs_half_of_the_longer_span_and_the_same_kind():
    assert spans_match((0, 10), (0, 10)) and spans_match((0, 10), (2, 10)) and spans_match((0, 10), (0, 5))
    assert not spans_match((0, 10), (0, 4)) and not spans_match((0, 10), (10, 20))
    rows = load(DEFAULT_DATASET, "train")
    swapped = {"nir": "iban", "iban": "nir", "email": "phone", "phone": "email", "birth_date": "nir"}
    wrong_kind = score(rows, lambda q: [Found(swapped[f.kind], f.start, f.end) for f in find_personal_data(q)])
    assert wrong_kind.overall.found > 0 and wrong_kind.overall.precision == 0 and wrong_kind.overall.recall == 0
    nothing = score(rows, lambda q: [])
    assert nothing.overall.recall == 0 and nothing.overall.precision is None
