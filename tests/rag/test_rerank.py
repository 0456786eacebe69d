"""The rerank service client against a local server speaking the Cohere/vLLM/Albert and TEI rerank APIs, and inside
the retriever: it reorders what the user may see, and only that is sent."""

from __future__ import annotations

import logging

import pytest

from fixtures import HashEmbedder, make_md, write_meta
from model_api_server import ModelApiServer, overlap_score
from index.edge_store import EdgeStore
from index.model_api import RemoteServiceError
from index.store import CollectionInfo
from ingest.pipeline import ChunkingOptions, Ingestor
from rag.access import User
from rag.rerank import HttpReranker, parse_scores
from rag.retrieve import HybridRetriever

KEY = "rerank-key"
QUESTION = "inscription cantine scolaire"
PASSAGES = [
    "Le congé annuel des agents est de vingt-cinq jours.",
    "La cantine scolaire accueille les enfants inscrits.",
    "L'inscription à la cantine scolaire se fait en mairie.",
]


@pytest.fixture
def server():
    with ModelApiServer(api_key=KEY) as s:
        yield s


def test_cohere_shape_request_and_scores_in_passage_order(server):
    reranker = HttpReranker(server.url, model="bge-reranker-v2-m3", api_key=KEY)
    scores = reranker.scores(QUESTION, PASSAGES)
    assert scores == [overlap_score(QUESTION, p) for p in PASSAGES]  # put back in passage order
    (request,) = server.requests
    assert request.path == "/v1/rerank" and request.headers["authorization"] == f"Bearer {KEY}"
    assert request.body == {"model": "bge-reranker-v2-m3", "query": QUESTION, "documents": PASSAGES, "top_n": 3}


def test_personal_data_in_the_question_is_masked_before_it_leaves(server):
    HttpReranker(server.url, api_key=KEY).scores("cantine pour mon fils, mon tél. 06 12 34 56 78", PASSAGES)
    sent = server.requests[0].body["query"]
    assert "06 12 34 56 78" not in sent and "[téléphone masqué]" in sent and sent.startswith("cantine pour mon fils")


def test_tei_shape_request_and_answer(server):
    reranker = HttpReranker(server.url + "/rerank", api="tei", api_key=KEY)
    scores = reranker.scores(QUESTION, PASSAGES)
    assert max(range(3), key=lambda i: scores[i]) == 2
    (request,) = server.requests
    assert request.path == "/rerank" and request.body["texts"] == PASSAGES and request.body["query"] == QUESTION


def test_every_answer_shape_is_read_and_left_out_passages_score_lowest():
    cohere = {"results": [{"index": 2, "relevance_score": 0.9}, {"index": 0, "relevance_score": 0.4}]}
    assert parse_scores(cohere, 3) == [0.4, -0.6, 0.9]  # index 1 cut by top_n: below every returned score
    assert parse_scores([{"index": 1, "score": 2.0}, {"index": 0, "score": 1.0}], 2) == [1.0, 2.0]  # TEI
    assert parse_scores({"data": [{"index": 0, "score": 0.3}]}, 1) == [0.3]  # Albert API's older answer


def test_a_refused_key_is_a_french_error_naming_the_setting(server):
    reranker = HttpReranker(server.url, api_key="wrong")
    with pytest.raises(RemoteServiceError) as caught:
        reranker.scores(QUESTION, PASSAGES)
    assert str(caught.value) == (f"le service de reclassement {server.url}/v1/rerank a répondu 401 : clé d'API refusée "
                                 "(COLLECTIVIA_SEARCH__RERANK_API_KEY)")


def test_retries_after_429_then_scores(server):
    server.fail(429, retry_after=0.3)
    scores = HttpReranker(server.url, api_key=KEY, backoff_s=0.01).scores(QUESTION, PASSAGES)
    assert scores[2] == 1.0 and len(server.requests) == 2
    assert server.requests[1].at - server.requests[0].at >= 0.28


def test_an_unavailable_service_keeps_the_retrieval_order_and_warns(server, caplog):
    for _ in range(2):
        server.fail(503)
    reranker = HttpReranker(server.url, api_key=KEY, max_retries=1, backoff_s=0.01)
    with caplog.at_level(logging.WARNING, logger="rag.rerank"):
        scores = reranker.scores(QUESTION, PASSAGES)
    assert list(scores) == sorted(scores, reverse=True)  # first passage first, as retrieval ranked them
    assert "a répondu 503" in caplog.text and len(server.requests) == 2


def test_a_slow_service_times_out_into_the_retrieval_order(server):
    server.delay(3)
    scores = HttpReranker(server.url, api_key=KEY, timeout_s=0.3, max_retries=0).scores(QUESTION, PASSAGES)
    assert list(scores) == sorted(scores, reverse=True)


# -- inside the retriever -------------------------------------------------------------------------------------------

DOCS = [
    ("conges.md", "Congés annuels", ["rh"], [("Article 1", "Le congé annuel des agents est de vingt-cinq jours.")]),
    ("cantine.md", "Cantine", ["tous"], [
        ("Article 1", "La cantine scolaire accueille les enfants de la commune le midi."),
        ("Article 2", "L'inscription à la cantine scolaire se fait en mairie avant la rentrée."),
    ]),
    ("prive.md", "Dossier privé", ["direction"], [("Article 1", "Inscription cantine scolaire des enfants du maire.")]),
]


@pytest.fixture
def index(tmp_path, bm25):
    embedder = HashEmbedder()
    store = EdgeStore(tmp_path / "qdrant", CollectionInfo(embedder.name, embedder.dim))
    folder = tmp_path / "docs"
    folder.mkdir()
    for name, title, services, sections in DOCS:
        write_meta(make_md(folder / name, title=title, sections=sections), services=services, id=name)
    report = Ingestor(store, embedder, bm25, chunking=ChunkingOptions(size=20, overlap=2),
                      parse_workers=0).ingest_paths([folder])
    assert report.failed == []
    yield store, embedder
    store.close()


def test_the_service_reorders_hits_and_only_sees_what_the_user_may_see(index, bm25, server):
    store, embedder = index
    agent = User("agent", "Agent", frozenset({"rh"}))
    plain = HybridRetriever(store, embedder, bm25, max_per_doc=5)
    reranked = HybridRetriever(store, embedder, bm25, max_per_doc=5, rerank_candidates=20,
                               reranker=HttpReranker(server.url, api_key=KEY))
    question = "inscription cantine scolaire"
    after = reranked.retrieve(question, agent, k=5)
    (request,) = server.requests
    # Only the passages the agent may see were sent: the « direction » document stayed on the server.
    candidates = plain.candidates(question, agent, limit=20)
    assert request.body["documents"] == [c.text for c in candidates]
    assert not any("maire" in text for text in request.body["documents"])
    # Passages come in the service's order.
    expected = sorted(candidates, key=lambda c: -overlap_score(question, c.text))
    assert after[0].id == expected[0].id and "inscription" in expected[0].text.lower()
    assert after[0].score == overlap_score(question, expected[0].text)  # the service's score
    assert [p.score for p in after] == sorted((p.score for p in after), reverse=True)


def test_wiring_builds_the_http_reranker_from_settings(server, bm25):
    from collectivia.settings import SearchSettings, Settings
    from collectivia.wiring import build_retriever

    settings = Settings(search=SearchSettings(reranker="http", rerank_endpoint=server.url, rerank_api_key=KEY,
                                              rerank_model="m", rerank_timeout_s=4))
    retriever = build_retriever(settings, HashEmbedder(), store=None)
    assert isinstance(retriever.reranker, HttpReranker)
    assert retriever.reranker.caller.url == f"{server.url}/v1/rerank" and retriever.reranker.caller.timeout_s == 4
    assert retriever.reranker.scores(QUESTION, PASSAGES)[2] == 1.0
