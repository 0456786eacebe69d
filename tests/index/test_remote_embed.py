"""The remote embedders against a local server speaking their APIs: batching, retries, timeouts, errors, the
dimension stored with the index, and the whole CLI (ingest then search) through an OpenAI-compatible server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from fixtures import make_md, write_meta
from mistral_server import closed_port_url
from model_api_server import ModelApiServer, hashed_vector
from index.model_api import RemoteServiceError
from index.remote_embed import MistralEmbedder, OpenAICompatibleEmbedder, approx_tokens

KEY = "test-key"


def make(kind: str, server_url: str, **options):
    options.setdefault("backoff_s", 0.01)
    if kind == "mistral":
        return MistralEmbedder(options.pop("api_key", KEY), endpoint=server_url, **options)
    return OpenAICompatibleEmbedder(server_url, "bge-m3", api_key=options.pop("api_key", KEY), **options)


@pytest.fixture
def server():
    with ModelApiServer(api_key=KEY, dim=48) as s:
        yield s


KINDS = pytest.mark.parametrize("kind", ["mistral", "openai-compatible"])


@KINDS
def test_sends_batches_of_batch_size_and_keeps_the_order(kind, server):
    embedder = make(kind, server.url, batch_size=3, dim=48)
    texts = [f"Article {i} : le congé numéro {i} des agents." for i in range(7)]
    vectors = embedder.embed_documents(texts)
    batches = [r.texts for r in server.requests]
    assert batches == [texts[0:3], texts[3:6], texts[6:7]]
    # The server answers each batch in reverse order: vectors still follow the texts.
    expected = np.array([hashed_vector(t, 48) for t in texts], dtype=np.float32)
    assert np.allclose(vectors, expected, atol=1e-5)
    assert all(r.headers["authorization"] == f"Bearer {KEY}" for r in server.requests)
    assert all(r.path == "/v1/embeddings" for r in server.requests)


@KINDS
def test_dimension_is_learned_from_one_call_when_not_configured(kind, server):
    embedder = make(kind, server.url)
    assert server.requests == []  # nothing is sent before it is needed
    assert embedder.dim == 48 and len(server.requests) == 1
    assert embedder.embed_query("congé").shape == (48,) and len(server.requests) == 2


@KINDS
def test_a_dimension_that_does_not_match_the_model_is_an_error(kind, server):
    with pytest.raises(RemoteServiceError, match="48 dimensions au lieu de 1024.*COLLECTIVIA_EMBEDDER__DIM"):
        make(kind, server.url, dim=1024).embed_query("congé")


@KINDS
def test_retries_after_429_waiting_what_retry_after_asks(kind, server):
    server.fail(429, retry_after=1)
    embedder = make(kind, server.url, dim=48)
    vector = embedder.embed_query("permis de construire")
    assert np.allclose(vector, hashed_vector("permis de construire", 48), atol=1e-5)
    first, second = server.requests
    assert second.at - first.at >= 0.95  # Retry-After: 1, not the 0.01 s backoff


@KINDS
def test_retries_5xx_then_gives_up_with_the_status_in_french(kind, server):
    for _ in range(3):
        server.fail(503)
    embedder = make(kind, server.url, dim=48, max_retries=2)
    with pytest.raises(RemoteServiceError) as caught:
        embedder.embed_query("congé")
    message = str(caught.value)
    assert f"{server.url}/v1/embeddings a répondu 503" in message and "3 tentatives" in message
    assert len(server.requests) == 3


@KINDS
def test_401_is_a_french_error_naming_the_key_setting_without_retrying(kind, server):
    embedder = make(kind, server.url, api_key="wrong-key", dim=48)
    with pytest.raises(RemoteServiceError) as caught:
        embedder.embed_documents(["congé"])
    assert str(caught.value) == (
        f"le service d'embeddings {server.url}/v1/embeddings a répondu 401 : clé d'API refusée "
        "(COLLECTIVIA_EMBEDDER__API_KEY)"
    )
    assert len(server.requests) == 1


@KINDS
def test_a_slow_server_times_out_then_the_retry_succeeds(kind, server):
    server.delay(5)
    embedder = make(kind, server.url, dim=48, timeout_s=1.0, max_retries=1)
    started = time.monotonic()
    assert embedder.embed_query("congé").shape == (48,)
    # Well before the slow answer would have come: the first call was given up after its timeout, then retried.
    assert time.monotonic() - started < 4.5 and len(server.requests) == 2


@KINDS
def test_a_server_that_never_answers_in_time_says_which_setting_to_raise(kind, server):
    server.delay(3)
    embedder = make(kind, server.url, dim=48, timeout_s=0.5, max_retries=0)
    with pytest.raises(RemoteServiceError, match="n'a pas répondu en 0.5 s .*COLLECTIVIA_EMBEDDER__TIMEOUT_S"):
        embedder.embed_query("congé")


@KINDS
def test_an_unreachable_server_names_the_endpoint_setting(kind):
    embedder = make(kind, closed_port_url(), dim=48, max_retries=1)
    with pytest.raises(RemoteServiceError, match="injoignable \\(2 tentatives\\).*COLLECTIVIA_EMBEDDER__ENDPOINT"):
        embedder.embed_query("congé")


def test_requests_per_second_spaces_the_requests(server):
    embedder = make("openai-compatible", server.url, dim=48, batch_size=1, requests_per_s=5)
    started = time.monotonic()
    embedder.embed_documents(["un", "deux", "trois"])
    # Three requests at 5 per second: two waits of 0.2 s at least (a busy machine only makes it longer).
    assert len(server.requests) == 3 and time.monotonic() - started >= 0.38


def test_endpoint_forms_all_reach_the_embeddings_route(server):
    for endpoint in (server.url, server.url + "/", server.url + "/v1", server.url + "/v1/embeddings"):
        OpenAICompatibleEmbedder(endpoint, "m", api_key=KEY, dim=48).embed_query("congé")
    assert [r.path for r in server.requests] == ["/v1/embeddings"] * 4
    MistralEmbedder(KEY, endpoint=server.url + "/v1", dim=48).embed_query("congé")
    assert server.requests[-1].path == "/v1/embeddings"


def test_names_carry_kind_and_model():
    assert MistralEmbedder(KEY, dim=1024).name == "mistral:mistral-embed"
    assert OpenAICompatibleEmbedder("http://localhost:1", "bge-m3", dim=8).name == "openai-compatible:bge-m3"


def test_token_estimate_counts_long_words_as_several_tokens():
    assert approx_tokens("") == 0
    assert approx_tokens("le") == 1 and approx_tokens("anticonstitutionnellement") > 3
    assert approx_tokens("congé, RTT.") == approx_tokens("congé") + approx_tokens("RTT") + 2


def test_wiring_builds_remote_embedders_whose_questions_leave_with_personal_data_masked(server):
    from collectivia.settings import EmbedderSettings, Settings
    from collectivia.wiring import build_embedder

    question = "Mon IBAN FR76 3000 6000 0112 3456 7890 189 pour la paie, écrire à a.martin@val-darnon.fr ?"
    for kind in ("mistral", "openai-compatible"):
        settings = Settings(embedder=EmbedderSettings(kind=kind, endpoint=server.url, model="m", api_key=KEY, dim=48))
        embedder = build_embedder(settings)
        assert embedder.name == f"{kind}:m"
        embedder.embed_query(question)
        (sent,) = server.requests[-1].texts
        assert "3000 6000" not in sent and "a.martin@" not in sent
        assert "[IBAN masqué]" in sent and "[courriel masqué]" in sent and "pour la paie" in sent
    # Documents are indexed as they are written (the deployment guide says so).
    build_embedder(settings).embed_documents(["Contact : a.martin@val-darnon.fr"])
    assert server.requests[-1].texts == ["Contact : a.martin@val-darnon.fr"]


# -- the whole command line through an OpenAI-compatible server ------------------------------------------------------

CLI = [sys.executable, "-m", "collectivia.cli"]


def run(args, env) -> subprocess.CompletedProcess:
    return subprocess.run(CLI + args, env=env, capture_output=True, text=True, timeout=300)


def test_cli_ingest_and_search_through_an_openai_compatible_server(tmp_path, server):
    docs = tmp_path / "docs"
    docs.mkdir()
    write_meta(make_md(docs / "conges.md", title="Congés annuels"), services=["rh"], doc_type="procedure")
    write_meta(make_md(docs / "permis.md", title="Permis de construire", sections=[
        ("Article 1 – Délai", "Le permis de construire d'une maison individuelle est instruit en deux mois."),
    ]), services=["urbanisme"], doc_type="procedure")
    env = {k: v for k, v in os.environ.items() if not k.startswith("COLLECTIVIA_")}
    env.update({
        "COLLECTIVIA_DATA_DIR": str(tmp_path / "data"),
        "COLLECTIVIA_USERS": str(Path(__file__).resolve().parents[1] / "data" / "users.yaml"),
        "COLLECTIVIA_EMBEDDER__KIND": "openai-compatible",
        "COLLECTIVIA_EMBEDDER__ENDPOINT": server.url + "/v1",
        "COLLECTIVIA_EMBEDDER__MODEL": "bge-m3",
        "COLLECTIVIA_EMBEDDER__API_KEY": KEY,
        "COLLECTIVIA_LIMITS__PARSE_WORKERS": "0",
    })
    ingested = run(["ingest", str(docs), "--json"], env)
    assert ingested.returncode == 0, ingested.stderr
    report = json.loads(ingested.stdout)
    assert (report["indexed"], report["failed"]) == (2, [])
    sent = [t for r in server.requests for t in r.texts]
    assert any("quinze jours" in t for t in sent) and any("deux mois" in t for t in sent)

    before = len(server.requests)
    found = run(["search", "délai de dépôt d'une demande de congé", "--user", "rh.agent", "--json"], env)
    assert found.returncode == 0, found.stderr
    hits = json.loads(found.stdout)
    assert hits and hits[0]["doc_id"] == "conges.md"
    assert all(h["services"] == ["rh"] for h in hits)  # the urbanisme document stays out of an RH agent's search
    # What left the server for this search: the word used to learn the dimension (COLLECTIVIA_EMBEDDER__DIM unset),
    # then the question.
    assert [r.texts for r in server.requests[before:]] == [["dimension"], ["délai de dépôt d'une demande de congé"]]

    # The index remembers the embedder: another model on the same data directory is refused.
    other = run(["search", "congé", "--user", "rh.agent"], {**env, "COLLECTIVIA_EMBEDDER__MODEL": "autre-modele"})
    assert other.returncode == 2 and "openai-compatible:bge-m3" in other.stderr

    # The model server fails midway (after the dimension is known): a French error, no traceback, nothing half-done.
    write_meta(make_md(docs / "astreinte.md", title="Astreintes"), services=["rh"], doc_type="procedure")
    server.fail(503).fail(503)  # the first try and its one retry
    failed = run(["ingest", str(docs), "--json"], {**env, "COLLECTIVIA_EMBEDDER__DIM": str(server.dim),
                                                   "COLLECTIVIA_EMBEDDER__MAX_RETRIES": "1"})
    assert failed.returncode == 2, failed.stderr
    assert "Traceback" not in failed.stderr and "relancez la commande" in failed.stderr
    again = run(["search", "délai de dépôt d'une demande de congé", "--user", "rh.agent", "--json"], env)
    assert json.loads(again.stdout)[0]["doc_id"] == "conges.md"  # what was indexed before stays
