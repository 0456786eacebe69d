"""An Answer rendered for the chat: text with its [n] markers and notices, one card per cited source."""

from __future__ import annotations

from rag.assistant import Answer
from rag.citations import Citation
from rag.retrieve import ScoredChunk

from chat_ui.render import chunk_card, document_url, feedback_props, render_answer


def citation(n: int, **kw) -> Citation:
    base = dict(n=n, doc_id=f"PROC-{n}", title=f"Procédure {n}", doc_type="procedure", services=("rh",), page=3,
                section="Article 2 – Délais", passage="Toute demande est déposée quinze jours avant le départ.",
                open_url=f"/documents/PROC-{n}#page=3", supported=True)
    base.update(kw)
    return Citation(**base)


def chunk(doc_id: str = "DEL/2024 015", page: int | None = 2) -> ScoredChunk:
    return ScoredChunk(id="c1", score=1.0, relevance=0.9, doc_id=doc_id, title="Délibération 2024-015", text="Texte.",
                       section="", page=page, pages=(page,) if page else (), services=("tous",),
                       doc_type="deliberation", chunk_indexes=(0,), payload={})


def test_cited_sources_become_cards_with_everything_the_agent_needs():
    answer = Answer(question="q", text="Le délai est de quinze jours [1]. Voir aussi [2].",
                    citations=(citation(1), citation(2, doc_type="fiche", page=None, services=("tous",),
                                                      open_url="/documents/SP-F1")), refused=False)
    rendered = render_answer(answer)
    assert rendered.text.startswith("Le délai est de quinze jours [1].")
    assert "Réponse assistée par IA" in rendered.text
    extractive = render_answer(Answer(question="q", text="« Extrait » [1]", citations=(citation(1),), refused=False,
                                      extractive=True))
    assert "Extraits choisis automatiquement" in extractive.text
    first, second = rendered.sources
    assert first == {
        "n": 1, "doc_id": "PROC-1", "title": "Procédure 1", "type": "Procédure", "services": ["Ressources humaines (rh)"],
        "page": 3, "section": "Article 2 – Délais", "passage": "Toute demande est déposée quinze jours avant le départ.",
        "url": "/documents/PROC-1#page=3", "link_label": "Ouvrir le document à la page 3", "supported": True,
        "warning": "",
    }
    assert second["type"] == "Fiche service-public.fr" and second["link_label"] == "Ouvrir la fiche sur service-public.fr"
    assert second["services"] == ["Documents ouverts à tous les agents"]
    assert rendered.cited_doc_ids == ("PROC-1", "PROC-2")


def test_unsupported_citations_are_flagged_in_the_text_and_on_the_card():
    answer = Answer(question="q", text="A [1]. B [2].", citations=(citation(1), citation(2, supported=False)),
                    refused=False)
    rendered = render_answer(answer)
    assert "Vérifiez la citation [2]" in rendered.text
    assert rendered.sources[1]["warning"] and not rendered.sources[0]["warning"]


def test_long_passages_are_trimmed_on_a_word():
    long = "mot " * 600
    card = render_answer(Answer(question="q", text="x [1]", citations=(citation(1, passage=long),),
                                refused=False)).sources[0]
    assert len(card["passage"]) <= 1205 and card["passage"].endswith(" …")


def test_refusal_has_no_card_and_says_what_to_do():
    answer = Answer(question="q", text="Je n'ai trouvé aucune source pertinente.", citations=(), refused=True,
                    refusal_reason="not_found", closest_titles=("Congés",))
    plain, scoped = render_answer(answer), render_answer(answer, scoped=True)
    assert plain.sources == () and "Reformulez" in plain.text
    assert "élargissez le périmètre" in scoped.text


def test_model_failure_shows_the_sources_found():
    answer = Answer(question="q", text="Le modèle ne répond pas. Voici les sources trouvées :", citations=(),
                    refused=False, error="Le modèle ne répond pas.", sources=(chunk(),))
    rendered = render_answer(answer)
    assert [c["doc_id"] for c in rendered.sources] == ["DEL/2024 015"]
    assert rendered.sources[0]["url"] == "/documents/DEL%2F2024%20015#page=2"


def test_answer_without_citation_is_marked():
    rendered = render_answer(Answer(question="q", text="Une phrase.", citations=(), refused=False))
    assert rendered.sources == () and "sans source citée" in rendered.text


def test_document_urls_quote_ids_and_add_the_page():
    assert document_url("A/B C", None) == "/documents/A%2FB%20C"
    assert document_url("X", 7) == "/documents/X#page=7"
    assert chunk_card(4, chunk(page=None))["link_label"] == "Ouvrir le document"


def test_feedback_card_starts_empty():
    props = feedback_props("msg-1", ("hallucination", "incomplet"))
    assert props == {"message_id": "msg-1", "tags": ["hallucination", "incomplet"], "value": None, "selected": [],
                     "comment": "", "sent": False}


def test_the_answering_span_is_in_bold_in_the_first_extract_only():
    text = ("Extraits des documents (réponse non générée, à vérifier dans les sources) :\n\n"
            "« Une association peut emprunter au maximum 200 chaises. » [1]\n\n« Le parc compte 200 chaises. » [1]")
    answer = Answer(question="q", text=text, citations=(citation(1),), refused=False, extractive=True,
                    outcome="answer", answer_span="200 chaises")
    rendered = render_answer(answer)
    assert rendered.text.count("**200 chaises**") == 1
    assert rendered.text.index("**200 chaises**") < rendered.text.index("Le parc compte")
    assert "ne semblent pas y répondre" not in rendered.text


def test_each_outcome_reads_differently():
    uncertain = render_answer(Answer(question="q", text="Je ne suis pas sûr… « Le parc compte 600 chaises. » [1]",
                                     citations=(citation(1),), refused=False, extractive=True, outcome="uncertain"))
    confident = render_answer(Answer(question="q", text="Extraits… « Le parc compte 600 chaises. » [1]",
                                     citations=(citation(1),), refused=False, extractive=True, outcome="answer"))
    not_found = render_answer(Answer(question="q", text="Je n'ai trouvé aucune source pertinente.", citations=(),
                                     refused=True, refusal_reason="not_found", outcome="not_found"))
    assert "ne semblent pas y répondre directement" in uncertain.text and uncertain.sources
    assert "Extraits choisis automatiquement" in confident.text
    assert "Extraits choisis automatiquement" not in uncertain.text
    assert not_found.sources == () and "Reformulez" in not_found.text


def test_memory_is_released_at_most_once_per_interval():
    from chat_ui.memory import MIN_INTERVAL_S, release_memory

    assert release_memory(now=1e9) is True
    assert release_memory(now=1e9 + MIN_INTERVAL_S / 2) is False  # a burst of ends trims once
    assert release_memory(now=1e9 + MIN_INTERVAL_S + 1) is True
