"""Citations: dangling markers removed, markers mapped to their sources, unsupported sentences flagged."""

from __future__ import annotations

import numpy as np
import pytest

from rag.citations import (
    EMBEDDING_SUPPORT,
    LEXICAL_SUPPORT,
    Citation,
    SupportChecker,
    build_citations,
    open_url,
    split_sentences,
    strip_dangling,
)
from rag.retrieve import ScoredChunk

CONGES = "Toute demande de congé est déposée au moins quinze jours avant le départ dans l'outil e-RH."
PERMIS = "Le permis de construire est instruit en deux mois à compter du dépôt du dossier complet."
CANTINE = "Le repas de la cantine scolaire coûte trois euros soixante-cinq pour les familles de la commune."


def source(doc_id: str, text: str, *, page: int | None = 1, section: str = "Article 1", title: str = "Titre") -> ScoredChunk:
    return ScoredChunk(
        id=f"id-{doc_id}", score=0.5, relevance=0.7, doc_id=doc_id, title=title, text=text, section=section,
        page=page, pages=(page,) if page else (), services=("rh",), doc_type="procedure", chunk_indexes=(0,),
        payload={},
    )


SOURCES = [
    source("PROC-RH-001", CONGES, page=2, section="Article 2 – Délais", title="Congés annuels"),
    source("DELIB/2024-012 bis", PERMIS, page=7, section="Article 1", title="Délibération permis"),
    source("CANTINE", CANTINE, page=None, section="", title="Tarifs de la cantine"),
]


@pytest.fixture(scope="module")
def checker(bm25, use_embedder) -> SupportChecker:
    return SupportChecker(bm25, use_embedder)


# --------------------------------------------------------------------------------------------------------------
# strip_dangling
# --------------------------------------------------------------------------------------------------------------


def test_strip_dangling_keeps_markers_of_existing_sources_only():
    text = "Un [0] deux [1] trois [2] quatre [3] cinq [4] six [12]."
    assert strip_dangling(text, 3) == "Un deux [1] trois [2] quatre [3] cinq six."
    assert strip_dangling(text, 0) == "Un deux trois quatre cinq six."
    assert strip_dangling("Le délai[4] est court[2].", 3) == "Le délai est court[2]."
    assert strip_dangling("Sans marqueur.", 3) == "Sans marqueur."
    assert strip_dangling("Voir [1][4][3].", 3) == "Voir [1][3]."


# --------------------------------------------------------------------------------------------------------------
# build_citations
# --------------------------------------------------------------------------------------------------------------


def test_markers_map_to_their_sources(checker):
    answer = (
        "La demande de congé est déposée quinze jours avant le départ [1]. "
        "Le permis de construire est instruit en deux mois [2]. "
        "La demande passe par l'outil e-RH [1]."
    )
    text, citations = build_citations(answer, SOURCES, checker)
    assert text == answer
    assert [c.n for c in citations] == [1, 2]  # each source once; the uncited third not listed
    first, second = citations
    assert first == Citation(
        n=1, doc_id="PROC-RH-001", title="Congés annuels", doc_type="procedure", services=("rh",), page=2,
        section="Article 2 – Délais", passage=CONGES, open_url="/documents/PROC-RH-001#page=2", supported=True,
    )
    assert (second.doc_id, second.page, second.section, second.passage) == ("DELIB/2024-012 bis", 7, "Article 1", PERMIS)
    assert second.open_url == "/documents/DELIB%2F2024-012%20bis#page=7"
    assert second.supported
    assert first.to_json() == {
        "n": 1, "doc_id": "PROC-RH-001", "title": "Congés annuels", "doc_type": "procedure", "page": 2,
        "section": "Article 2 – Délais", "services": ["rh"], "passage": CONGES,
        "open_url": "/documents/PROC-RH-001#page=2", "supported": True,
    }


def test_citations_are_listed_once_each_by_number(checker):
    answer = "Le permis est instruit en deux mois [2]. Le congé se demande quinze jours avant [1]. Permis [2]."
    _, citations = build_citations(answer, SOURCES, checker)
    assert [c.n for c in citations] == [1, 2]
    assert len({c.n for c in citations}) == len(citations)


def test_dangling_markers_are_removed_before_mapping(checker):
    answer = "Le repas de la cantine scolaire coûte trois euros soixante-cinq [3] [4]. Rien [0]."
    text, citations = build_citations(answer, SOURCES, checker)
    assert text == "Le repas de la cantine scolaire coûte trois euros soixante-cinq [3]. Rien."
    assert [(c.n, c.doc_id, c.open_url) for c in citations] == [(3, "CANTINE", "/documents/CANTINE")]
    assert build_citations("Rien [1].", [], checker) == ("Rien.", ())


def test_an_unsupported_citation_is_flagged_and_a_supported_one_is_not(checker):
    unsupported = "La cantine scolaire est gratuite pour tous les enfants"
    supported = "Toute demande de congé est déposée quinze jours avant le départ"
    assert checker.lexical(unsupported, PERMIS) < LEXICAL_SUPPORT
    cosine = float(np.dot(checker.embedder.embed_query(unsupported), checker.embedder.embed_query(PERMIS)))
    assert cosine < EMBEDDING_SUPPORT
    assert checker.lexical(supported, CONGES) >= LEXICAL_SUPPORT
    text, citations = build_citations(f"{supported} [1]. {unsupported} [2].", SOURCES, checker)
    assert [(c.n, c.supported) for c in citations] == [(1, True), (2, False)]
    assert text == f"{supported} [1]. {unsupported} [2]."  # flagged, not removed


def test_a_source_cited_by_one_unsupported_sentence_is_flagged(checker):
    answer = "La demande de congé est déposée quinze jours avant le départ [1]. Le maire célèbre les mariages [1]."
    (citation,) = build_citations(answer, SOURCES, checker)[1]
    assert citation.n == 1 and not citation.supported


def test_a_marker_glued_to_a_word_works(checker):
    answer = "Le délai[1] de dépôt d'une demande de congé est de quinze jours avant le départ. Le permis[9] attend."
    text, citations = build_citations(answer, SOURCES, checker)
    assert text == "Le délai[1] de dépôt d'une demande de congé est de quinze jours avant le départ. Le permis attend."
    assert [(c.n, c.doc_id, c.supported) for c in citations] == [(1, "PROC-RH-001", True)]


def test_each_marker_is_checked_against_its_own_sentence(checker):
    # Both sentences cite the permit passage; only the first says what it says. Split on « ? », « ! », « … » and
    # guillemets, the second sentence is judged alone.
    for glue in (". ", " ! ", " ? ", "… ", ". » ", ".\n"):
        first = "Le permis de construire est instruit en deux mois [2]"
        answer = f"{first}{glue}La cantine scolaire coûte trois euros [2]."
        if glue.startswith(". »"):
            answer = f"« {first}. » La cantine scolaire coûte trois euros [2]."
        _, citations = build_citations(answer, SOURCES, checker)
        assert [(c.n, c.supported) for c in citations] == [(2, False)], glue
        _, citations = build_citations(f"{first}{glue}La cantine scolaire coûte trois euros [3].", SOURCES, checker)
        assert [(c.n, c.supported) for c in citations] == [(2, True), (3, True)], glue


# --------------------------------------------------------------------------------------------------------------
# Sentences and support
# --------------------------------------------------------------------------------------------------------------


def test_sentences_split_on_french_punctuation_and_guillemets():
    text = (
        "Quel est le délai ? Deux mois [1]. « Le délai court à compter du dépôt. » Attention ! "
        "Voir l'article 3… 15 jours suffisent.\n- premier point\n\n- second point"
    )
    assert split_sentences(text) == [
        "Quel est le délai ?",
        "Deux mois [1].",
        "« Le délai court à compter du dépôt. »",
        "Attention !",
        "Voir l'article 3…",
        "15 jours suffisent.",
        "- premier point",
        "- second point",
    ]
    # No split inside a sentence, nor before a lowercase word or a non-breaking-space question mark.
    assert split_sentences("Le délai est de 2 mois. soit 60 jours.") == ["Le délai est de 2 mois. soit 60 jours."]
    assert split_sentences("Quel délai\u00a0? Deux mois.") == ["Quel délai\u00a0?", "Deux mois."]
    assert split_sentences("Éventuellement. Également.") == ["Éventuellement.", "Également."]
    assert split_sentences("  \n\n ") == []


class FixedEmbedder:
    """Two texts' cosine set by hand: vectors at a chosen angle."""

    name, dim = "fixed", 2

    def __init__(self, cosine: float) -> None:
        self.cosine = cosine

    def embed_query(self, text: str) -> np.ndarray:
        if text.startswith("PASSAGE"):
            return np.array([1.0, 0.0], dtype=np.float32)
        return np.array([self.cosine, np.sqrt(1 - self.cosine**2)], dtype=np.float32)


def test_support_thresholds(bm25):
    # No shared content word: only the embeddings can support the sentence.
    sentence, passage = "Les vacances se réservent tôt [1]", "PASSAGE permis de construire instruit en deux mois"
    assert SupportChecker(bm25).lexical(sentence, passage) == 0.0
    assert not SupportChecker(bm25).supported(sentence, passage)
    assert SupportChecker(bm25, FixedEmbedder(0.61)).supported(sentence, passage)
    assert not SupportChecker(bm25, FixedEmbedder(0.55)).supported(sentence, passage)
    # Half the content words present is enough; markers are not words.
    checker = SupportChecker(bm25)
    assert checker.lexical("permis cantine [1]", passage) == 0.5 and checker.supported("permis cantine [1]", passage)
    assert checker.lexical("permis cantine mariage [1]", passage) < LEXICAL_SUPPORT
    assert checker.lexical("Mais elle est là [1]", passage) == 1.0  # nothing to check


def test_open_url_quotes_the_id_and_points_at_the_page():
    assert open_url(source("A/B c#d?e", "x", page=3)) == "/documents/A%2FB%20c%23d%3Fe#page=3"
    assert open_url(source("PROC-1", "x", page=None)) == "/documents/PROC-1"


def test_build_citations_accepts_another_url(bm25):
    _, (citation,) = build_citations("Texte du permis [1].", [source("X", "Texte du permis")], SupportChecker(bm25),
                                     url=lambda s: f"https://ged.example/{s.doc_id}")
    assert citation.open_url == "https://ged.example/X"


def test_the_card_passage_opens_on_the_cited_sentence_of_a_long_source():
    from rag.citations import passage_around

    text = "Préambule sans rapport. " * 40 + "Le délai de dépôt est de quinze jours. " + "Suite de la procédure. " * 60
    passage = passage_around(text, "« Le délai de dépôt est de quinze jours. » [1]")
    assert passage.startswith("… Le délai de dépôt est de quinze jours.")
    assert passage.endswith(" …") and len(passage) <= 700 + 4
    assert passage_around("Court texte.", "autre chose") == "Court texte."
