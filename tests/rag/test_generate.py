"""Answer generation: the real ``MistralGenerator`` (LangChain's ``ChatMistralAI`` over real HTTP) against the scripted
local server, and the ``ExtractiveGenerator``."""

from __future__ import annotations

import re
import time

import pytest

from mistral_server import MistralServer, closed_port_url, mistral_server, split_tokens  # noqa: F401 - fixture
from rag.citations import split_sentences
from rag.generate import EXTRACT_HEADER, ExtractiveGenerator, GenerationError, MistralGenerator
from rag.prompts import SYSTEM_PROMPT
from rag.retrieve import ScoredChunk

MODEL = "mistral-small-latest"
API_KEY = "cle-de-test-123"


def chunk(n: int, text: str, *, title: str = "", section: str = "", page: int | None = None,
          services=("tous",), doc_type: str = "procedure", **payload) -> ScoredChunk:
    return ScoredChunk(
        id=f"chunk-{n}", score=1.0 / n, relevance=0.8, doc_id=f"DOC-{n}", title=title or f"Document {n}", text=text,
        section=section, page=page, pages=(page,) if page else (), services=tuple(services), doc_type=doc_type,
        chunk_indexes=(0,), payload=dict(payload),
    )


SOURCES = [
    chunk(1, "Toute demande de congé est déposée au moins quinze jours avant le départ dans l'outil e-RH.",
          title="Congés annuels", section="Article 2 – Délais", page=2, services=("rh",)),
    chunk(2, "Le chef de service valide la demande sous cinq jours ouvrés ; le silence ne vaut pas accord.",
          title="Validation des congés", section="Article 3 – Validation", doc_type="charte"),
    chunk(3, "Les horaires d'ouverture de la mairie sont de 8 h 30 à 17 h.", title="Horaires 2019",
          status="abroge", date="2019-01-01"),
]
QUESTION = "Quel est le délai pour déposer une demande de congé ?"


def generator(server_or_url, **overrides) -> MistralGenerator:
    url = server_or_url if isinstance(server_or_url, str) else server_or_url.base_url
    options = dict(endpoint=url, api_key=API_KEY, model=MODEL, temperature=0.1, max_tokens=321, timeout_s=5,
                   max_retries=2)
    options.update(overrides)
    return MistralGenerator(**options)


def source_elements(text: str) -> dict[int, str]:
    """The ``<source n="…">`` elements of a prompt: number → content."""
    return {int(n): body for n, body in re.findall(r'<source n="(\d+)"[^>]*>\n(.*?)\n</source>', text, re.S)}


# --------------------------------------------------------------------------------------------------------------
# Streaming and the request sent
# --------------------------------------------------------------------------------------------------------------


def test_streamed_tokens_arrive_in_order_and_join_to_the_reply(mistral_server):
    reply = "Le délai est de quinze jours avant le départ [1]. Le chef de service valide sous cinq jours [2]."
    mistral_server.reply(reply, usage={"prompt_tokens": 412, "completion_tokens": 27, "total_tokens": 439})
    gen = generator(mistral_server)
    tokens = list(gen.stream(QUESTION, SOURCES))
    assert tokens == split_tokens(reply) and len(tokens) > 5
    assert "".join(tokens) == reply
    assert (gen.usage.prompt_tokens, gen.usage.completion_tokens, gen.usage.calls) == (412, 27, 1)
    assert gen.name == f"mistral:{MODEL}" and gen.extractive is False
    assert len(mistral_server.completions) == 1 and mistral_server.completions[0].stream


def test_tokens_are_yielded_as_they_arrive():
    """The first token reaches the caller before the server has finished sending the reply."""
    server = MistralServer(token_interval_s=0.15).start()
    try:
        server.reply("un deux trois quatre cinq six")
        started = time.perf_counter()
        stream = generator(server).stream(QUESTION, SOURCES)
        first = next(stream)
        first_at = time.perf_counter() - started
        rest = list(stream)
        total = time.perf_counter() - started
    finally:
        server.stop()
    assert first == "un " and "".join([first, *rest]) == "un deux trois quatre cinq six"
    assert first_at < total - 0.5


def test_request_carries_model_settings_key_system_prompt_sources_and_question(mistral_server):
    mistral_server.reply("Quinze jours [1].")
    list(generator(mistral_server, temperature=0.2, max_tokens=123).stream(QUESTION, SOURCES))
    (request,) = mistral_server.completions
    assert request.method == "POST" and request.path == "/v1/chat/completions"
    assert request.authorization == f"Bearer {API_KEY}"
    body = request.body
    assert body["model"] == MODEL and body["temperature"] == 0.2 and body["max_tokens"] == 123
    assert body["stream"] is True
    assert request.roles == ["system", "user"]
    assert request.system == SYSTEM_PROMPT
    user = request.last_user
    elements = source_elements(user)
    assert sorted(elements) == [1, 2, 3]
    for n, source in enumerate(SOURCES, start=1):
        assert elements[n] == source.text
    assert '<source n="1" titre="Congés annuels" type="procedure" section="Article 2 – Délais" page="2">' in user
    assert '<source n="2" titre="Validation des congés" type="charte" section="Article 3 – Validation">' in user
    assert 'statut="abrogé"' in user and 'date="2019-01-01"' in user
    assert user.index("<source n=\"1\"") < user.index("<source n=\"2\"") < user.index("<source n=\"3\"")
    assert user.rstrip().endswith(f"Question : {QUESTION}")


def test_missing_api_key_is_sent_as_a_placeholder_bearer(mistral_server):
    """A local server without authentication (vLLM, Ollama) gets a harmless placeholder, not the env's key."""
    mistral_server.reply("Quinze jours [1].")
    list(generator(mistral_server, api_key=None).stream(QUESTION, SOURCES))
    assert mistral_server.completions[0].authorization == "Bearer none"


def test_history_turns_are_passed_between_system_prompt_and_question(mistral_server):
    mistral_server.reply("Cinq jours ouvrés [2].")
    history = [
        ("user", "Comment poser un congé ?"),
        {"role": "assistant", "content": "Dans l'outil e-RH [1]."},
        ("human", "Et le délai ?"),
        ("ai", "Quinze jours [1]."),
    ]
    list(generator(mistral_server).stream("Qui valide la demande ?", SOURCES, history))
    (request,) = mistral_server.completions
    assert request.roles == ["system", "user", "assistant", "user", "assistant", "user"]
    assert [request.content(i) for i in range(1, 5)] == [
        "Comment poser un congé ?", "Dans l'outil e-RH [1].", "Et le délai ?", "Quinze jours [1]."]
    assert request.system == SYSTEM_PROMPT
    assert request.last_user.endswith("Question : Qui valide la demande ?")


# --------------------------------------------------------------------------------------------------------------
# Rewriting follow-up questions
# --------------------------------------------------------------------------------------------------------------

HISTORY = [("user", "Quel est le délai pour déposer un congé annuel ?"), ("assistant", "Quinze jours avant [1].")]


def test_rewrite_turns_a_follow_up_into_a_standalone_question(mistral_server):
    mistral_server.reply("« Qui valide une demande de congé annuel ? »")
    rewritten = generator(mistral_server).rewrite("Et qui la valide ?", HISTORY)
    assert rewritten == "Qui valide une demande de congé annuel ?"
    (request,) = mistral_server.completions
    assert request.roles == ["system", "user", "assistant", "user"]
    assert "question autonome" in request.system and "Ne réponds pas" in request.system
    assert request.content(1) == HISTORY[0][1] and request.content(2) == HISTORY[1][1]
    assert request.last_user == "Dernière question : Et qui la valide ?"
    assert "<source" not in request.text
    assert request.body["model"] == MODEL and request.authorization == f"Bearer {API_KEY}"


def test_rewrite_without_history_calls_no_model(mistral_server):
    assert generator(mistral_server).rewrite("Qui valide un congé ?", []) == "Qui valide un congé ?"
    assert mistral_server.requests == []


@pytest.mark.parametrize("failure", ["500", "401", "disconnect", "empty"])
def test_rewrite_failure_returns_the_original_question(mistral_server, failure):
    {"500": lambda: mistral_server.error(500), "401": lambda: mistral_server.error(401),
     "disconnect": mistral_server.disconnect, "empty": lambda: mistral_server.reply("  ")}[failure]()
    assert generator(mistral_server, max_retries=0).rewrite("Et qui la valide ?", HISTORY) == "Et qui la valide ?"
    assert len(mistral_server.completions) == 1


def test_rewrite_retries_a_dropped_connection(mistral_server):
    mistral_server.disconnect().reply("Qui valide une demande de congé annuel ?")
    assert generator(mistral_server, max_retries=1).rewrite("Et qui la valide ?", HISTORY) == "Qui valide une demande de congé annuel ?"
    assert len(mistral_server.completions) == 2


def test_rewrite_timeout_returns_the_original_question(mistral_server):
    mistral_server.delay(3, "Qui valide une demande de congé ?")
    started = time.perf_counter()
    assert generator(mistral_server, timeout_s=1, max_retries=0).rewrite("Et qui ?", HISTORY) == "Et qui ?"
    assert time.perf_counter() - started < 2.5


def test_rewrite_with_server_down_returns_the_original_question():
    assert generator(closed_port_url()).rewrite("Et qui ?", HISTORY) == "Et qui ?"


# --------------------------------------------------------------------------------------------------------------
# Errors: always a GenerationError with a French message
# --------------------------------------------------------------------------------------------------------------


def expect_error(gen: MistralGenerator) -> tuple[GenerationError, list[str]]:
    tokens: list[str] = []
    with pytest.raises(GenerationError) as info:
        for token in gen.stream(QUESTION, SOURCES):
            tokens.append(token)
    return info.value, tokens


def test_server_error_500(mistral_server):
    mistral_server.error(500)
    error, tokens = expect_error(generator(mistral_server))
    assert str(error) == "Le modèle de langue est en erreur (code 500)."
    assert tokens == [] and len(mistral_server.completions) == 1  # an HTTP error is not retried


def test_server_error_503(mistral_server):
    mistral_server.error(503)
    assert str(expect_error(generator(mistral_server))[0]) == "Le modèle de langue est en erreur (code 503)."


def test_unauthorised_401_mentions_the_api_key():
    with MistralServer(api_key="la-bonne-cle") as server:
        server.reply("jamais envoyé")
        error, _ = expect_error(generator(server, api_key="une-mauvaise-cle"))
        assert server.completions[0].reply == "unauthorized"
        assert server.completions[0].authorization == "Bearer une-mauvaise-cle"
    assert "clé d'API" in str(error) and str(error).startswith("Le modèle de langue a refusé l'accès")


def test_forbidden_403_mentions_the_api_key(mistral_server):
    mistral_server.error(403)
    assert "clé d'API" in str(expect_error(generator(mistral_server))[0])


def test_rate_limited_429(mistral_server):
    mistral_server.error(429)
    error, _ = expect_error(generator(mistral_server))
    assert "surchargé" in str(error) and "réessayez" in str(error)


def test_other_client_error_names_its_code(mistral_server):
    mistral_server.error(400, {"object": "error", "message": "Invalid model: mistral-inconnu", "type": "invalid_model"})
    assert str(expect_error(generator(mistral_server))[0]) == "Le modèle de langue a refusé la requête (code 400)."


def test_timeout_when_the_server_is_slower_than_timeout_s(mistral_server):
    mistral_server.delay(4, "Trop tard [1].")
    started = time.perf_counter()
    error, tokens = expect_error(generator(mistral_server, timeout_s=1))
    elapsed = time.perf_counter() - started
    assert str(error) == "Le modèle de langue n'a pas répondu à temps."
    assert tokens == [] and 0.9 < elapsed < 3


def test_server_down_is_unreachable_with_its_endpoint():
    url = closed_port_url()
    started = time.perf_counter()
    error, _ = expect_error(generator(url, max_retries=0))
    assert "injoignable" in str(error) and url in str(error)
    assert time.perf_counter() - started < 2


def test_connection_closed_before_any_response(mistral_server):
    mistral_server.disconnect()
    error, tokens = expect_error(generator(mistral_server, max_retries=0))
    assert "injoignable" in str(error) and tokens == []


def test_connection_dropped_mid_stream_raises_after_the_tokens_received(mistral_server):
    mistral_server.drop_mid_stream("Le délai est de quinze jours avant le départ [1].", after=3)
    error, tokens = expect_error(generator(mistral_server))
    assert tokens == ["Le ", "délai ", "est "]
    assert str(error).startswith("Le modèle de langue ")  # French, for the agent
    assert len(mistral_server.completions) == 1


def test_stream_ending_without_final_chunk_is_an_error(mistral_server):
    mistral_server.drop_mid_stream("Le délai est de quinze jours [1].", after=2, clean=True)
    expect_error(generator(mistral_server))


def test_error_messages_never_leak_the_api_key_or_server_body(mistral_server):
    mistral_server.error(500, {"object": "error", "message": "stacktrace secrète", "type": "internal"})
    error, _ = expect_error(generator(mistral_server))
    assert API_KEY not in str(error) and "stacktrace" not in str(error)


# --------------------------------------------------------------------------------------------------------------
# Retries
# --------------------------------------------------------------------------------------------------------------


def test_http_errors_are_not_retried(mistral_server):
    mistral_server.error(500).reply("Deuxième essai [1].")
    expect_error(generator(mistral_server, max_retries=2))
    assert len(mistral_server.completions) == 1 and mistral_server.pending == 1


def test_a_connection_failure_is_retried_when_max_retries_allows(mistral_server):
    mistral_server.disconnect().reply("Quinze jours [1].")
    tokens = list(generator(mistral_server, max_retries=2).stream(QUESTION, SOURCES))
    assert "".join(tokens) == "Quinze jours [1]."
    assert len(mistral_server.completions) == 2


# --------------------------------------------------------------------------------------------------------------
# ExtractiveGenerator
# --------------------------------------------------------------------------------------------------------------

EXTRACT_SOURCES = [
    chunk(1, "Article 2 – Délais\n\nToute demande de congé annuel est déposée au moins quinze jours avant le départ "
             "dans l'outil e-RH. Les demandes tardives sont refusées sauf urgence familiale. Le solde de congés est "
             "consultable dans l'outil e-RH."),
    chunk(2, "Le chef de service valide la demande de congé sous cinq jours ouvrés. Le silence ne vaut pas accord. "
             "Une demande de congé refusée peut être contestée auprès du directeur général des services."),
    chunk(3, "La cantine scolaire ouvre à 11 h 30. Les menus sont affichés chaque lundi à l'entrée de l'école. "
             "Le congé de la cantinière est déposé au moins quinze jours avant."),
]
EXTRACT = re.compile(r"« (.+?) » \[(\d+)\]")


def extracts(text: str) -> list[tuple[str, int]]:
    return [(sentence, int(n)) for sentence, n in EXTRACT.findall(text)]


@pytest.mark.parametrize("embedder", ["none", "use"])
def test_extractive_quotes_source_sentences_verbatim_with_the_right_marker(bm25, use_embedder, embedder):
    gen = ExtractiveGenerator(bm25, use_embedder if embedder == "use" else None)
    tokens = list(gen.stream("Quel est le délai pour déposer une demande de congé annuel ?", EXTRACT_SOURCES))
    text = "".join(tokens)
    assert tokens[0] == EXTRACT_HEADER and text.startswith(EXTRACT_HEADER)
    found = extracts(text)
    assert 1 <= len(found) <= 3
    for sentence, n in found:
        assert sentence in split_sentences(EXTRACT_SOURCES[n - 1].text), (sentence, n)
    assert ("Toute demande de congé annuel est déposée au moins quinze jours avant le départ dans l'outil e-RH.", 1) in found
    # nothing but the header and the quoted, cited sentences
    rest = EXTRACT.sub("", text[len(EXTRACT_HEADER):])
    assert rest.strip() == ""
    assert gen.extractive is True and gen.name == "extractive"


@pytest.mark.parametrize("max_sentences", [1, 2, 4])
def test_extractive_never_exceeds_max_sentences_nor_per_source(bm25, max_sentences):
    gen = ExtractiveGenerator(bm25, max_sentences=max_sentences, per_source=2)
    found = extracts("".join(gen.stream("demande de congé déposée quinze jours validée refusée", EXTRACT_SOURCES)))
    assert 1 <= len(found) <= max_sentences
    assert all(sum(1 for _, n in found if n == k) <= 2 for k in (1, 2, 3))
    for sentence, n in found:
        assert sentence in split_sentences(EXTRACT_SOURCES[n - 1].text)


def test_extractive_skips_headings_and_fragments(bm25):
    sources = [chunk(1, "Article 2 – Délais\n\nDélais de congé.\n\nUne demande de congé est déposée quinze jours avant.")]
    found = extracts("".join(ExtractiveGenerator(bm25).stream("délais de congé", sources)))
    assert found == [("Une demande de congé est déposée quinze jours avant.", 1)]


def test_extractive_calls_no_model_and_does_not_rewrite(bm25, mistral_server):
    gen = ExtractiveGenerator(bm25)
    assert gen.rewrite("Et qui la valide ?", HISTORY) == "Et qui la valide ?"
    list(gen.stream(QUESTION, EXTRACT_SOURCES))
    assert mistral_server.requests == []
