"""Settings of the remote embedders and reranker: invalid combinations are refused with a French message naming the
variable, and `collectivia config` reports them without calling any server."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from pydantic import ValidationError

from collectivia.settings import EmbedderSettings, SearchSettings
from model_api_server import ModelApiServer


def refused(settings_class, **values) -> str:
    with pytest.raises(ValidationError) as caught:
        settings_class(**values)
    return str(caught.value)


def test_remote_embedders_are_off_by_default():
    assert EmbedderSettings().kind == "use" and SearchSettings().reranker is None


def test_mistral_needs_an_api_key():
    assert "COLLECTIVIA_EMBEDDER__KIND=mistral exige COLLECTIVIA_EMBEDDER__API_KEY" in refused(
        EmbedderSettings, kind="mistral")
    assert EmbedderSettings(kind="mistral", api_key="k").endpoint is None  # Mistral's API by default


def test_openai_compatible_needs_an_endpoint_and_a_model():
    assert "exige COLLECTIVIA_EMBEDDER__ENDPOINT" in refused(EmbedderSettings, kind="openai-compatible", model="m")
    assert "exige COLLECTIVIA_EMBEDDER__MODEL" in refused(
        EmbedderSettings, kind="openai-compatible", endpoint="http://localhost:8080")


@pytest.mark.parametrize("url", ["ftp://serveur/v1", "localhost:8080", "https://"])
def test_an_endpoint_that_is_not_an_http_url_is_quoted(url):
    message = refused(EmbedderSettings, kind="openai-compatible", model="m", endpoint=url)
    assert "COLLECTIVIA_EMBEDDER__ENDPOINT doit être une URL http(s)" in message and repr(url) in message


@pytest.mark.parametrize("url", ["http://api.example.fr/v1", "http://8.8.8.8:8080"])
def test_plain_http_to_another_network_is_refused(url):
    message = refused(EmbedderSettings, kind="openai-compatible", model="m", endpoint=url)
    assert f"COLLECTIVIA_EMBEDDER__ENDPOINT={url!r} : https est exigé" in message


@pytest.mark.parametrize("url", ["https://albert.api.etalab.gouv.fr/v1", "http://localhost:8080", "http://127.0.0.1:1",
                                 "http://10.1.2.3/v1", "http://192.168.0.7:8000", "http://tei:80", "http://[::1]:9"])
def test_https_anywhere_and_http_on_this_machine_or_the_private_network(url):
    assert EmbedderSettings(kind="openai-compatible", model="m", endpoint=url).endpoint == url


def test_remote_settings_with_a_local_embedder_are_a_mistake():
    message = refused(EmbedderSettings, kind="use", endpoint="https://api.mistral.ai")
    assert "COLLECTIVIA_EMBEDDER__ENDPOINT ne sert qu'aux embedders distants" in message


def test_http_reranker_needs_its_endpoint_and_the_endpoint_needs_reranker_http():
    assert "COLLECTIVIA_SEARCH__RERANKER=http exige COLLECTIVIA_SEARCH__RERANK_ENDPOINT" in refused(
        SearchSettings, reranker="http")
    assert "COLLECTIVIA_SEARCH__RERANK_ENDPOINT ne sert qu'avec COLLECTIVIA_SEARCH__RERANKER=http" in refused(
        SearchSettings, rerank_endpoint="http://localhost:8080")
    assert "https est exigé" in refused(SearchSettings, reranker="http", rerank_endpoint="http://rerank.example.fr")
    assert SearchSettings(reranker="http", rerank_endpoint="http://tei:80/rerank", rerank_api="tei").rerank_api == "tei"


def _config(env_extra: dict[str, str], tmp_path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COLLECTIVIA_")}
    env.update({"COLLECTIVIA_DATA_DIR": str(tmp_path), **env_extra})
    return subprocess.run([sys.executable, "-m", "collectivia.cli", "config", "--json"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)


def test_config_reports_an_invalid_combination_and_calls_no_server(tmp_path):
    with ModelApiServer() as server:
        url = server.url
        bad = _config({"COLLECTIVIA_EMBEDDER__KIND": "mistral", "COLLECTIVIA_EMBEDDER__ENDPOINT": server.url}, tmp_path)
        good = _config({"COLLECTIVIA_EMBEDDER__KIND": "openai-compatible", "COLLECTIVIA_EMBEDDER__MODEL": "bge-m3",
                        "COLLECTIVIA_EMBEDDER__ENDPOINT": server.url, "COLLECTIVIA_EMBEDDER__API_KEY": "secret-key",
                        "COLLECTIVIA_SEARCH__RERANKER": "http", "COLLECTIVIA_SEARCH__RERANK_ENDPOINT": server.url},
                       tmp_path)
        assert server.requests == []
    assert bad.returncode == 2 and "COLLECTIVIA_EMBEDDER__API_KEY" in " ".join(bad.stderr.split())
    clear = _config({"COLLECTIVIA_EMBEDDER__KIND": "mistral", "COLLECTIVIA_EMBEDDER__API_KEY": "secret-key",
                     "COLLECTIVIA_EMBEDDER__ENDPOINT": "http://embeddings.example.fr"}, tmp_path)
    said = " ".join(clear.stderr.split())  # the console wraps long lines
    assert clear.returncode == 2 and "https est exigé" in said and "secret-key" not in said
    assert good.returncode == 0, good.stderr
    shown = json.loads(good.stdout)
    assert shown["embedder"]["kind"] == "openai-compatible" and shown["search"]["rerank_endpoint"] == url
    assert "secret-key" not in good.stdout  # the key is masked
