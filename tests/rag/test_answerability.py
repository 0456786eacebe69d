"""Answers an agent can trust without a language model: what the question asks, which sentence answers it (first),
and the learned decision answer · uncertain · not found — computed only from what the user may see."""

from __future__ import annotations

import json

import pytest

from rag.answerability import DEFAULT_MODEL, AnswerabilityModel, LinearModel
from rag.evidence import EvidenceReader
from rag.generate import EXTRACT_HEADER, UNCERTAIN_HEADER, ExtractiveGenerator, mismatch_notice
from rag.question import analyse, expand, language
from rag.retrieve import ScoredChunk
from rag.spans import answer_type, find_spans, key_entities


def chunk(n: int, text: str, *, title: str = "", section: str = "", services=("tous",), cosine: float = 0.5):
    return ScoredChunk(id=f"c{n}", score=1.0 / n, relevance=0.5, doc_id=f"DOC-{n}", title=title or f"Document {n}",
                       text=text, section=section, page=None, pages=(), services=tuple(services),
                       doc_type="procedure", chunk_indexes=(0,), payload={}, cosine=cosine)


# --------------------------------------------------------------------------------------------------------------
# What the question asks
# --------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("question, kind", [
    ("c'est cb le tarif de la cantine maintenant ?", "amount"),
    ("How much does a 30-year plot cost?", "amount"),
    ("cb de jrs de congés on a par an", "duration"),
    ("how long do I have to declare an accident?", "duration"),
    ("une asso peut emprunter combien de chaises max ?", "count"),
    ("qd est-ce que le gymnase ouvre", "date"),
    ("who validates my leave request?", "person"),
    ("quel formulaire pour une DP", "form"),
    ("je dois faire quoi si je me blesse au boulot", None),
])
def test_the_kind_of_answer_asked_for_as_agents_type(question, kind):
    assert answer_type(question) == kind


def test_spans_of_the_asked_kind():
    sentence = "Le repas coûte 3,20 € depuis le 1er septembre 2024 ; la demande est faite 15 jours avant auprès de M. Paul Renaud."
    assert [s.text for s in find_spans(sentence, "amount")] == ["3,20 €"]
    assert [s.text for s in find_spans(sentence, "date")][0] == "1er septembre 2024"
    assert [s.text for s in find_spans(sentence, "duration")] == ["15 jours"]
    assert "M. Paul Renaud" in [s.text for s in find_spans(sentence, "person")]
    assert find_spans(sentence, None) == []
    debt = "L'encours de la dette au 1er janvier 2023 s'élève à 9 850 000 €, soit 646 € par habitant."
    assert [s.text for s in find_spans(debt, "count")] == ["9 850 000 €", "646 €"]  # a year is not a count


def test_key_entities_are_years_numbers_acronyms_and_proper_nouns_not_everyday_shorthand():
    assert key_entities("montant des subventions aux associations en 2022 ?") == ("2022",)
    assert "PACS" in key_entities("quelles pièces pour enregistrer un PACS en mairie ?")
    assert "Canada" in key_entities("Quel est le prix d'un permis de pêche au Canada ?")
    assert key_entities("cb de jours de RTT pour les ST ?") == ()


def test_shorthand_is_spelled_out_and_filler_words_never_count():
    assert expand("cb de jrs pr les ST") == "cb combien de jrs jours pr pour les ST services techniques"
    assert expand("St-Martin") == "St-Martin"  # a saint, not the technical services
    q = analyse("c'est combien le tarif de la cantine maintenant ?", _bm25())
    assert [t.word for t in q.terms] == ["tarif", "cantine"]  # « c'est combien… maintenant » is how, not what
    q = analyse("je me suis blesse au boulot", _bm25())
    boulot = next(t for t in q.terms if t.word == "boulot")
    assert set(boulot.ids) >= set(_bm25().embed_query("travail")[0])  # found where the documents say « travail »


def test_rare_words_weigh_more_than_common_ones_from_general_usage_not_the_collection():
    q = analyse("pièces pour un PACS à la mairie", _bm25())
    weights = {t.word: t.weight for t in q.terms}
    assert weights["pacs"] > weights["mairie"] > 0
    assert language("how many days of telework can I take per week?") == "en"
    assert language("combien de jours de télétravail par semaine ?") == "fr"


_BM25 = []


def _bm25():
    if not _BM25:
        from index.embed import Bm25Encoder

        _BM25.append(Bm25Encoder())
    return _BM25[0]


# --------------------------------------------------------------------------------------------------------------
# The sentence that answers comes first
# --------------------------------------------------------------------------------------------------------------

CHAIRS = [
    chunk(1, "Le parc de matériel comprend 600 chaises pliantes et 120 tables stockées au centre technique municipal. "
             "Une même association peut emprunter au maximum 30 tables et 200 chaises pour une manifestation.",
          title="Prêt de matériel aux associations"),
    chunk(2, "Les associations déposent leur demande au moins trois semaines avant la manifestation.",
          title="Prêt de matériel aux associations"),
]


def test_the_answering_sentence_comes_first_with_its_span(use_embedder, bm25):
    model = AnswerabilityModel.load()
    reader = EvidenceReader(bm25, use_embedder, model.sentence)
    evidence = reader.read("une asso peut emprunter combien de chaises max ?", CHAIRS)
    plan = ExtractiveGenerator(bm25, use_embedder).plan(evidence, "answer")
    assert plan.extracts[0].text.startswith("Une même association peut emprunter au maximum")
    assert plan.span in ("30 tables", "200 chaises")
    assert plan.header == EXTRACT_HEADER


def test_only_a_shortlist_of_sentences_is_encoded_and_the_answer_stays_in_it(use_embedder, bm25):
    class Counting:  # the embedder, counting what it is asked to encode
        encoded: list[str] = []

        def embed_query(self, text):
            return use_embedder.embed_query(text)

        def embed_documents(self, texts):
            Counting.encoded += list(texts)
            return use_embedder.embed_documents(texts)

    filler = " ".join(f"Le local numéro {i} du centre technique est repeint en {2010 + i} par les agents." for i in range(12))
    sources = [chunk(1, filler, title="Centre technique municipal"), *CHAIRS]
    reader = EvidenceReader(bm25, Counting(), AnswerabilityModel.load().sentence, max_sentences=4)
    evidence = reader.read("une asso peut emprunter combien de chaises max ?", sources)
    assert len(Counting.encoded) == 4 and len(evidence.sentences) == 4
    assert evidence.sentences[0].text.startswith("Une même association peut emprunter au maximum")
    again = reader.read("une asso peut emprunter combien de chaises max ?", sources)
    assert len(Counting.encoded) == 4  # the same passages again: their sentences' vectors were kept
    assert [s.score for s in again.sentences] == [s.score for s in evidence.sentences]


def test_uncertain_says_so_and_what_the_documents_give_instead(use_embedder, bm25):
    sources = [chunk(1, "En 2024, les subventions aux associations s'élèvent à 141 200 € au total, dont 70 000 € "
                        "pour la MJC.", title="Subventions 2024"),
               chunk(2, "En 2023, les subventions aux associations s'élevaient à 133 600 €.", title="Subventions 2023")]
    evidence = EvidenceReader(bm25, use_embedder).read("montant total des subventions aux associations en 2022 ?",
                                                       sources)
    assert evidence.missing_entities == ("2022",)
    assert evidence.other_entities == ("2023", "2024")
    plan = ExtractiveGenerator(bm25, use_embedder).plan(evidence, "uncertain")
    assert plan.header.startswith(UNCERTAIN_HEADER)
    assert "Vous demandez « 2022 » ; les documents trouvés parlent de 2023, 2024." in plan.header
    assert mismatch_notice(evidence) in plan.header


def test_an_english_question_reads_french_passages_by_meaning(use_embedder, bm25):
    sources = [chunk(1, "Le télétravail est accordé dans la limite de deux jours par semaine pour un agent à temps "
                        "complet. Les jours de télétravail sont fixes.", title="Télétravail"),
               chunk(2, "Les congés annuels sont posés dans e-RH Arnon.", title="Congés")]
    evidence = EvidenceReader(bm25, use_embedder, AnswerabilityModel.load().sentence).read(
        "How many days of telework per week can I take?", sources)
    assert evidence.question.lang == "en" and evidence.features["lang_en"] == 1.0
    assert "deux jours par semaine" in evidence.sentences[0].text


# --------------------------------------------------------------------------------------------------------------
# The decision model
# --------------------------------------------------------------------------------------------------------------

def test_the_shipped_model_is_plain_json_fitted_on_training_questions_only():
    data = json.loads(DEFAULT_MODEL.read_text(encoding="utf-8"))
    assert set(data) >= {"sentence", "question", "answer_threshold", "not_found_threshold", "info"}
    assert all(":test" not in name and not name.endswith("-test") for name in data["info"]["train"])
    model = AnswerabilityModel.load()
    assert 0 < model.not_found_threshold <= model.answer_threshold < 1


def test_three_outcomes_from_two_thresholds():
    linear = LinearModel(("x",), (0.0,), (1.0,), (4.0,), 0.0)
    model = AnswerabilityModel(linear, linear, answer_threshold=0.8, not_found_threshold=0.2, info={})
    assert model.decide({"x": 1.0}).outcome == "answer"
    assert model.decide({"x": 0.0}).outcome == "uncertain"
    assert model.decide({"x": -1.0}).outcome == "not_found"
    assert model.decide({"x": 0.0}, answer_threshold=0.4).outcome == "answer"
    assert abs(model.decide({"x": 0.0}).probability - 0.5) < 1e-9


def test_a_broken_model_file_gives_a_french_error(tmp_path):
    path = tmp_path / "m.json"
    path.write_text("{", encoding="utf-8")
    with pytest.raises(ValueError, match="modèle de décision illisible"):
        AnswerabilityModel.load(path)


def test_model_round_trips_through_json(tmp_path):
    model = AnswerabilityModel.load()
    model.save(tmp_path / "copy.json")
    again = AnswerabilityModel.load(tmp_path / "copy.json")
    features = {name: 0.3 for name in model.question.names}
    assert again.decide(features) == model.decide(features)


def test_the_operating_points_follow_the_targets():
    from evals.answerability import operating_points

    probs = [0.1, 0.2, 0.3, 0.4, 0.9] + [0.5, 0.6, 0.8, 0.85, 0.95]
    labels = [0] * 5 + [1] * 5
    high, low = operating_points(probs, labels, max_false_answer=0.0, max_false_not_found=0.0)
    assert high > 0.9 and low == 0.5  # no unanswerable above « answer », no answerable below « not found »


def test_a_french_question_with_none_of_its_words_in_any_passage_is_not_found():
    model = AnswerabilityModel.load()
    confident = {name: 1.0 for name in model.question.names}
    assert model.decide(confident | {"cov_union": 0.0, "lang_en": 0.0}).outcome == "not_found"
    assert model.decide(confident | {"cov_union": 0.0, "lang_en": 1.0}).outcome != "not_found"  # read by meaning


def test_a_figure_of_another_year_is_never_the_confident_answer(use_embedder, bm25):
    meals = [chunk(1, "La cuisine centrale municipale a servi 144 300 repas au cours de l'année scolaire 2023-2024.",
                   title="Rapport de la restauration scolaire 2023-2024")]
    reader = EvidenceReader(bm25, use_embedder, AnswerabilityModel.load().sentence)
    linear = LinearModel(("x",), (0.0,), (1.0,), (4.0,), 0.0)
    sure = AnswerabilityModel(linear, linear, answer_threshold=0.8, not_found_threshold=0.2, info={})
    other_year = reader.read("cb de repas la cuisine centrale a servi en 2024-2025", meals).features
    same_year = reader.read("cb de repas la cuisine centrale a servi en 2023-2024", meals).features
    no_year = reader.read("cb de repas la cuisine centrale sert par an", meals).features
    assert sure.decide(other_year | {"x": 1.0}).outcome == "uncertain"
    assert sure.decide(same_year | {"x": 1.0}).outcome == "answer"
    assert sure.decide(no_year | {"x": 1.0}).outcome == "answer"  # a rule without a year is not a mismatch
