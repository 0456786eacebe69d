"""THE access contract, on both stores: no user ever receives a chunk outside their scope.

A few hundred points are generated straight into the store (random dense vectors, French BM25 vectors of generated
texts) with payloads whose ``services`` are single services, several services, ``tous``, and ids that differ only by
case, accent or separator. Then, for a couple of hundred seeded random (user, scope, query, mode, limit) draws, every
hit must satisfy the contract, and with a limit at least the number of visible points every visible point that the
query can match must come back (so that the filter is not merely returning nothing).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import pytest
from qdrant_client import models

from index.store import StoredPoint, point_id
from rag.access import (
    AccessError,
    Scope,
    User,
    UsersFileError,
    access_filter,
    can_manage,
    can_see,
    can_upload,
    get_user,
    load_users,
    managed_services,
    upload_targets,
    visible_services,
)
from rag.retrieve import HybridRetriever

SEED = 1789
MODES = ("hybrid", "dense", "bm25")
DOC_TYPES = ("deliberation", "procedure", "charte", "fiche", "autre")
# Valid service ids (what ingestion accepts), including look-alikes that differ by a separator or a suffix.
VALID = ["rh", "rh-paie", "urbanisme", "finances", "etat-civil", "etat_civil", "etatcivil", "education",
         "police-municipale", "sport", "culture", "voirie"]
# Case and accent twins. Ingestion rejects them (SERVICE_ID), but a collection shared with other writers, or an
# identity provider's groups, may carry them: matching must stay exact whatever the stored ids are.
TWINS = ["RH", "Rh", "état-civil", "Etat-civil", "Urbanisme"]
ALL_IDS = VALID + TWINS + ["tous"]
VOCAB = (
    "congé annuel agent délai demande permis construire urbanisme cantine scolaire tarif mariage naissance "
    "registre état civil délibération conseil municipal budget subvention association voirie travaux arrêté "
    "maire adjoint télétravail formation recrutement carrière indemnité frais déplacement marché public "
    "commande facture trésorerie police stationnement fourrière piscine gymnase bibliothèque prêt archives "
    "cimetière concession élection listes électorales recensement logement social sinistre assurance"
).split()
SENTINEL = "sentinelle"


# --------------------------------------------------------------------------------------------------------------
# Generated corpus
# --------------------------------------------------------------------------------------------------------------


@dataclass
class Corpus:
    live: dict[str, dict]  # point id -> payload (live points only)
    sparse: dict[str, set[int]]  # point id -> BM25 term ids
    hidden: set[str]  # staged points that no search may ever return

    @property
    def total(self) -> int:
        return len(self.live)


def _text(rng: random.Random) -> str:
    return " ".join(rng.choices(VOCAB, k=rng.randint(5, 14))).capitalize() + "."


def _doc_services(rng: random.Random) -> list[str]:
    draw = rng.random()
    if draw < 0.15:
        return ["tous"]
    if draw < 0.55:
        return [rng.choice(VALID)]
    if draw < 0.80:
        return rng.sample(VALID, rng.randint(2, 3))
    if draw < 0.92:
        return [rng.choice(TWINS)]
    return [rng.choice(TWINS), rng.choice(VALID)]


def build_corpus(store, dim: int, bm25, seed: int = SEED) -> Corpus:
    rng = random.Random(seed)
    nrng = np.random.default_rng(seed)
    live: dict[str, dict] = {}
    sparse: dict[str, set[int]] = {}
    hidden: set[str] = set()

    def point(doc_id, version, index, text, services, doc_type, status):
        vector = nrng.normal(size=dim).astype(np.float32)
        vector /= np.linalg.norm(vector)
        indices, values = bm25.embed_document(text)
        payload = {
            "doc_id": doc_id, "version": version, "chunk_index": index, "text": text, "services": services,
            "title": f"Document {doc_id}", "section": f"Article {index + 1}", "source": f"/docs/{doc_id}.md",
            "doc_type": doc_type, "status": status, "pages": [index + 1], "page": index + 1,
        }
        pid = point_id(doc_id, version, index)
        return StoredPoint(pid, vector, (indices, values), payload), set(indices)

    documents = []
    # One sentinel document per service id (each alone), so that twins are always present.
    for service in ALL_IDS:
        documents.append((f"sentinelle-{service}", [service], "procedure", "en_vigueur",
                          [f"Registre {SENTINEL} du service {service} : délai de demande."]))
    for d in range(60):
        services = _doc_services(rng)
        status = "abroge" if rng.random() < 0.2 else "en_vigueur"
        texts = [_text(rng) for _ in range(rng.randint(1, 7))]
        documents.append((f"DOC-{d:03d}", services, rng.choice(DOC_TYPES), status, texts))

    made = [point(doc_id, "v1", i, t, services, doc_type, status)
            for doc_id, services, doc_type, status, texts in documents for i, t in enumerate(texts)]
    store.upsert([p for p, _ in made])
    for doc_id, *_ in documents:
        store.activate(doc_id, "v1")
    for p, terms in made:
        live[p.id] = {**p.payload, "state": "live"}
        sparse[p.id] = terms
    # Hidden points: a new version being written of some documents, and documents never activated. They are
    # addressed to everyone and contain every word of the vocabulary.
    everything = " ".join(VOCAB) + f" {SENTINEL}"
    staged = [point(doc_id, "v2", 0, everything, ["tous"], "procedure", "en_vigueur")[0]
              for doc_id, *_ in documents[::7]]
    staged += [point(f"STAGED-{i}", "v1", 0, everything, ["tous", "rh"], "procedure", "en_vigueur")[0] for i in range(3)]
    store.upsert(staged)
    hidden = {p.id for p in staged}
    assert store.count() == len(live)
    return Corpus(live, sparse, hidden)


# --------------------------------------------------------------------------------------------------------------
# Users and scopes
# --------------------------------------------------------------------------------------------------------------

FIXED_USERS = [
    User("nobody", "Sans service"),
    User("rh", "Agent rh", frozenset({"rh"})),
    User("RH", "Agent RH", frozenset({"RH"})),
    User("Rh", "Agent Rh", frozenset({"Rh"})),
    User("etat-civil", "Agent etat-civil", frozenset({"etat-civil"})),
    User("état-civil", "Agent état-civil", frozenset({"état-civil"})),
    User("etat_civil", "Agent etat_civil", frozenset({"etat_civil"})),
    User("rh-paie", "Agent paie", frozenset({"rh-paie"})),
    User("multi", "Agent rh et finances", frozenset({"rh", "finances"})),
    User("large", "Agent polyvalent", frozenset({"urbanisme", "etat-civil", "education", "voirie"})),
    User("tous", "Agent tous", frozenset({"tous"})),
    User("admin", "Admin rh", frozenset({"rh"}), roles=frozenset({"admin"})),
]


def random_user(rng: random.Random, i: int) -> User:
    if rng.random() < 0.4:
        return rng.choice(FIXED_USERS)
    services = frozenset(rng.sample(VALID + TWINS, rng.randint(0, 4)))
    return User(f"u{i}", f"Agent {i}", services)


def random_scope(rng: random.Random, user: User) -> Scope | None:
    draw = rng.random()
    if draw < 0.15:
        return None
    allowed = sorted(visible_services(user))
    services = None
    if rng.random() < 0.5:
        services = frozenset(rng.sample(allowed, rng.randint(0 if rng.random() < 0.05 else 1, len(allowed))))
    doc_types = frozenset(rng.sample(DOC_TYPES, rng.randint(1, 3))) if rng.random() < 0.4 else None
    return Scope(services=services, doc_types=doc_types, include_repealed=rng.random() < 0.3)


def allowed(payload: dict, user: User, scope: Scope | None) -> bool:
    """The contract, stated independently of rag.access."""
    scope = scope or Scope()
    services = set(payload["services"])
    return (
        payload.get("state") == "live"
        and bool(services & (set(user.services) | {"tous"}))
        and (scope.services is None or bool(services & set(scope.services)))
        and (scope.include_repealed or payload["status"] != "abroge")
        and (not scope.doc_types or payload["doc_type"] in scope.doc_types)
    )


def why(payload: dict, user: User, scope: Scope | None) -> str:
    return (f"{user.id} (services {sorted(user.services)}, scope {scope}) received {payload['doc_id']} "
            f"(services {payload['services']}, {payload['doc_type']}, {payload['status']}, {payload.get('state')})")


def _unit(nrng: np.random.Generator, dim: int) -> np.ndarray:
    v = nrng.normal(size=dim).astype(np.float32)
    return v / np.linalg.norm(v)


def _query_text(rng: random.Random) -> str:
    words = rng.sample(VOCAB, rng.randint(1, 4))
    if rng.random() < 0.2:
        words.append(SENTINEL)
    if rng.random() < 0.1:
        words.append("xylophone")  # in no document
    return " ".join(words)


@pytest.fixture
def corpus(store, hash_embedder, bm25) -> Corpus:
    return build_corpus(store, hash_embedder.dim, bm25)


def _ids(hits) -> list[str]:
    return [h.id for h in hits]


# --------------------------------------------------------------------------------------------------------------
# The invariant, through the store
# --------------------------------------------------------------------------------------------------------------


def test_no_user_ever_receives_a_chunk_outside_their_scope(store, corpus, hash_embedder, bm25):
    rng = random.Random(SEED + 1)
    nrng = np.random.default_rng(SEED + 1)
    n = corpus.total
    assert 250 <= n <= 600, n
    nonempty = {mode: 0 for mode in MODES}
    for i in range(200):
        user = random_user(rng, i)
        scope = random_scope(rng, user)
        flt = access_filter(user, scope)
        text = _query_text(rng)
        dense = _unit(nrng, hash_embedder.dim)
        sparse = bm25.embed_query(text)
        terms = set(sparse[0])
        visible = {pid for pid, p in corpus.live.items() if allowed(p, user, scope)}
        matching = {pid for pid in visible if corpus.sparse[pid] & terms}
        for mode in MODES:
            limit = rng.randint(1, n)
            hits = store.query(filter=flt, dense=dense, sparse=sparse, limit=limit, mode=mode)
            assert len(hits) <= limit
            assert len(set(_ids(hits))) == len(hits), "a point returned twice"
            for hit in hits:
                assert hit.id not in corpus.hidden, f"staged point {hit.payload['doc_id']} returned"
                assert allowed(hit.payload, user, scope), why(hit.payload, user, scope)
            expected_size = {"dense": len(visible), "bm25": len(matching), "hybrid": min(len(visible), 40)}[mode]
            assert len(hits) >= min(limit, expected_size), (mode, limit, len(hits), expected_size)
            if mode != MODES[i % 3]:
                continue
            # Conversely: with a limit (and prefetch) covering every visible point, every reachable one comes back.
            full = store.query(filter=flt, dense=dense, sparse=sparse, limit=n, prefetch=n, mode=mode)
            expected = matching if mode == "bm25" else visible
            assert set(_ids(full)) == expected, (mode, user, scope, text)
            for hit in full:
                assert allowed(hit.payload, user, scope), why(hit.payload, user, scope)
            nonempty[mode] += bool(full)
    assert all(count > 30 for count in nonempty.values()), nonempty


def test_a_user_without_service_sees_only_documents_for_everyone(store, corpus, hash_embedder, bm25):
    nobody = User("nobody", "Sans service")
    flt = access_filter(nobody)
    expected = {pid for pid, p in corpus.live.items() if p["services"] == ["tous"] and p["status"] != "abroge"}
    assert expected
    n = corpus.total
    for mode in MODES:
        hits = store.query(filter=flt, dense=hash_embedder.embed_query("délai"), sparse=bm25.embed_query(SENTINEL),
                           limit=n, prefetch=n, mode=mode)
        assert all(h.payload["services"] == ["tous"] for h in hits), mode
        if mode != "bm25":
            assert set(_ids(hits)) == expected, mode
    assert store.count(flt) == len(expected)
    assert not can_see(nobody, ["rh"]) and can_see(nobody, ["tous"]) and can_see(nobody, ["rh", "tous"])


TWIN_CASES = [
    ({"rh"}, "rh", ["RH", "Rh", "rh-paie"]),
    ({"RH"}, "RH", ["rh", "Rh"]),
    ({"Rh"}, "Rh", ["rh", "RH"]),
    ({"etat-civil"}, "etat-civil", ["état-civil", "Etat-civil", "etat_civil", "etatcivil"]),
    ({"état-civil"}, "état-civil", ["etat-civil", "Etat-civil", "etat_civil"]),
    ({"etat_civil"}, "etat_civil", ["etat-civil", "état-civil"]),
    ({"urbanisme"}, "urbanisme", ["Urbanisme"]),
]


def test_service_ids_match_exactly_never_by_case_accent_or_separator(store, corpus, hash_embedder, bm25):
    n = corpus.total
    for services, own, twins in TWIN_CASES:
        user = User("u", "Agent", frozenset(services))
        seen: set[str] = set()
        for mode in MODES:
            hits = store.query(filter=access_filter(user), dense=hash_embedder.embed_query(SENTINEL),
                               sparse=bm25.embed_query(f"registre {SENTINEL}"), limit=n, prefetch=n, mode=mode)
            for hit in hits:
                assert set(hit.payload["services"]) & {own, "tous"}, why(hit.payload, user, None)
                assert not set(hit.payload["services"]) & set(twins), why(hit.payload, user, None)
            seen |= {h.payload["doc_id"] for h in hits}
        # Reachability: their own sentinel and the one for everyone, never a twin's.
        assert {f"sentinelle-{own}", "sentinelle-tous"} <= seen, own
        assert not {f"sentinelle-{t}" for t in twins} & seen, own
        for twin in twins:
            assert not can_see(user, [twin])
        assert can_see(user, [own])


def test_repealed_documents_only_when_asked(store, corpus, hash_embedder, bm25):
    user = User("large", "Agent", frozenset(VALID + TWINS))
    n = corpus.total
    repealed = {pid for pid, p in corpus.live.items() if p["status"] == "abroge"}
    assert repealed
    dense = hash_embedder.embed_query("x")
    without = store.query(filter=access_filter(user), dense=dense, sparse=None, limit=n, mode="dense")
    assert not {h.id for h in without} & repealed
    with_them = store.query(filter=access_filter(user, Scope(include_repealed=True)), dense=dense, sparse=None,
                            limit=n, mode="dense")
    assert repealed <= {h.id for h in with_them}
    assert len(with_them) == n  # this user sees every service: all live points


def test_an_empty_service_scope_returns_nothing(store, corpus, hash_embedder, bm25):
    user = User("multi", "Agent", frozenset({"rh", "finances"}))
    flt = access_filter(user, Scope(services=frozenset()))
    for mode in MODES:
        assert store.query(filter=flt, dense=hash_embedder.embed_query(SENTINEL), sparse=bm25.embed_query(SENTINEL),
                           limit=corpus.total, mode=mode) == []
    assert store.count(flt) == 0


# --------------------------------------------------------------------------------------------------------------
# The invariant, through the retriever
# --------------------------------------------------------------------------------------------------------------


def test_the_retriever_never_returns_a_passage_outside_the_scope(store, corpus, hash_embedder, bm25):
    rng = random.Random(SEED + 2)
    retrievers = {mode: HybridRetriever(store, hash_embedder, bm25, mode=mode, max_per_doc=rng.randint(1, 3))
                  for mode in MODES}
    retrievers["hybrid-rrf"] = HybridRetriever(store, hash_embedder, bm25, fusion="rrf", max_per_doc=2)
    by_doc: dict[str, dict] = {p["doc_id"]: p for p in corpus.live.values()}
    found = 0
    for i in range(60):
        user = random_user(rng, i)
        scope = random_scope(rng, user)
        question = _query_text(rng)
        k = rng.randint(1, 12)
        for mode, retriever in retrievers.items():
            passages = retriever.retrieve(question, user, k=k, scope=scope)
            assert len(passages) <= k
            found += bool(passages)
            for passage in passages:
                payload = by_doc[passage.doc_id]
                assert allowed(payload, user, scope), why(payload, user, scope)
                assert allowed(passage.payload, user, scope), why(passage.payload, user, scope)
                assert set(passage.services) == set(payload["services"])
                assert 0.0 <= passage.relevance <= 1.0 + 1e-6
    assert found > 60


def test_the_retriever_refuses_without_a_user_or_with_a_wider_scope(store, hash_embedder, bm25):
    retriever = HybridRetriever(store, hash_embedder, bm25)
    with pytest.raises(AccessError):
        retriever.retrieve("délai", None, k=3)  # type: ignore[arg-type]
    with pytest.raises(AccessError):
        retriever.retrieve("délai", User("rh", "Agent", frozenset({"rh"})), k=3, scope=Scope(services=frozenset({"RH"})))


def test_the_retriever_on_ingested_files(store, hash_embedder, bm25, tmp_path):
    from fixtures import make_md, write_meta
    from ingest.pipeline import ChunkingOptions, Ingestor

    docs = tmp_path / "docs"
    docs.mkdir()
    sections = [("Article 1", "Le registre des naissances est tenu en mairie par l'officier d'état civil.")]
    for name, services, status in [("rh", ["rh"], "en_vigueur"), ("civil", ["etat-civil"], "en_vigueur"),
                                   ("commun", ["tous"], "en_vigueur"), ("ancien", ["tous"], "abroge")]:
        make_md(docs / f"{name}.md", title=f"Registre {name}", sections=sections)
        write_meta(docs / f"{name}.md", id=name.upper(), title=f"Registre {name}", services=services,
                   doc_type="procedure", status=status)
    report = Ingestor(store, hash_embedder, bm25, chunking=ChunkingOptions(size=60, overlap=10),
                      parse_workers=0).ingest_paths([docs])
    assert report.failed == [] and report.indexed == 4
    retriever = HybridRetriever(store, hash_embedder, bm25)
    cases = {
        User("a", "rh", frozenset({"rh"})): {"RH", "COMMUN"},
        User("b", "civil", frozenset({"etat-civil"})): {"CIVIL", "COMMUN"},
        User("c", "CIVIL", frozenset({"état-civil"})): {"COMMUN"},
        User("d", "none"): {"COMMUN"},
        User("e", "both", frozenset({"rh", "etat-civil"})): {"RH", "CIVIL", "COMMUN"},
    }
    for user, expected in cases.items():
        for mode, fusion in [(m, "score") for m in MODES] + [("hybrid", "rrf")]:
            retriever.mode, retriever.fusion = mode, fusion
            got = {c.doc_id for c in retriever.retrieve("registre des naissances", user, k=10)}
            assert got == expected, (user.id, mode, fusion)
    repealed = retriever.retrieve("registre des naissances", User("d", "none"), k=10, scope=Scope(include_repealed=True))
    assert {c.doc_id for c in repealed} == {"COMMUN", "ANCIEN"}


# --------------------------------------------------------------------------------------------------------------
# access_filter and scopes
# --------------------------------------------------------------------------------------------------------------


def test_access_filter_requires_a_user():
    for not_a_user in (None, "rh.agent", {"id": "rh.agent", "services": ["rh"]}):
        with pytest.raises(AccessError, match="aucun utilisateur"):
            access_filter(not_a_user)  # type: ignore[arg-type]


def test_access_filter_is_deny_by_default():
    flt = access_filter(User("x", "X"))
    assert flt.must == [models.FieldCondition(key="services", match=models.MatchAny(any=["tous"]))]
    assert flt.must_not == [models.FieldCondition(key="status", match=models.MatchValue(value="abroge"))]
    assert flt.should is None


@pytest.mark.parametrize(
    "services,scope_services",
    [
        ({"rh"}, {"urbanisme"}),
        ({"rh"}, {"rh", "urbanisme"}),
        ({"rh"}, {"RH"}),
        ({"rh"}, {"Rh"}),
        ({"etat-civil"}, {"état-civil"}),
        ({"état-civil"}, {"etat-civil"}),
        (set(), {"rh"}),
        ({"rh-paie"}, {"rh"}),
    ],
)
def test_a_scope_cannot_widen_access(services, scope_services):
    user = User("agent.x", "Agent X", frozenset(services))
    with pytest.raises(AccessError) as info:
        access_filter(user, Scope(services=frozenset(scope_services)))
    message = str(info.value)
    assert "agent.x" in message
    for outside in set(scope_services) - set(services):
        assert repr(outside) in message


def test_a_scope_narrows_to_some_of_the_users_services_and_doc_types():
    user = User("multi", "Multi", frozenset({"rh", "finances"}))
    for scope_services in ({"rh"}, {"finances"}, {"tous"}, {"rh", "tous"}, {"rh", "finances", "tous"}):
        flt = access_filter(user, Scope(services=frozenset(scope_services)))
        assert flt.must[0].match.any == sorted(scope_services)
    flt = access_filter(user, Scope(doc_types=frozenset({"procedure", "charte"}), include_repealed=True))
    assert flt.must[1] == models.FieldCondition(key="doc_type", match=models.MatchAny(any=["charte", "procedure"]))
    assert flt.must_not is None


def test_random_scopes_of_random_users_never_widen():
    rng = random.Random(SEED + 3)
    for i in range(300):
        user = random_user(rng, i)
        scope_services = frozenset(rng.sample(ALL_IDS, rng.randint(0, 4)))
        widening = scope_services - visible_services(user)
        if widening:
            with pytest.raises(AccessError):
                access_filter(user, Scope(services=scope_services))
        else:
            flt = access_filter(user, Scope(services=scope_services))
            assert set(flt.must[0].match.any) == set(scope_services) <= visible_services(user)


# --------------------------------------------------------------------------------------------------------------
# Users file
# --------------------------------------------------------------------------------------------------------------


def _users_file(tmp_path, body: str):
    path = tmp_path / "users.yaml"
    path.write_text(body, encoding="utf-8")
    return path


def test_load_users_valid_file(tmp_path):
    path = _users_file(tmp_path, """
users:
  - {id: a.martin, name: Alice Martin, services: [rh], roles: [agent], password_hash: "$argon2id$x"}
  - {id: b.durand, name: Bruno Durand, services: [urbanisme, etat-civil], roles: [agent, document_manager]}
  - {id: g.girard, name: Gaëlle Girard}
  - {id: admin, name: Admin, services: [rh_paie], roles: [admin]}
""")
    users = load_users(path)
    assert list(users) == ["a.martin", "b.durand", "g.girard", "admin"]
    assert users["a.martin"] == User("a.martin", "Alice Martin", frozenset({"rh"}), frozenset({"agent"}))
    assert users["a.martin"].password_hash == "$argon2id$x"
    assert users["b.durand"].services == frozenset({"urbanisme", "etat-civil"})
    assert users["b.durand"].has_role("document_manager") and not users["b.durand"].has_role("admin")
    assert users["g.girard"].services == frozenset() and users["g.girard"].roles == frozenset({"agent"})
    assert users["admin"].has_role("document_manager")
    assert "$argon2id" not in repr(users["a.martin"])
    assert get_user(users, "g.girard").name == "Gaëlle Girard"


def test_the_shipped_users_files_load():
    from conftest import ROOT

    for path in (ROOT / "tests" / "data" / "users.yaml", ROOT / "corpora" / "users.yaml"):
        users = load_users(path)
        assert users and all(isinstance(u, User) for u in users.values())


@pytest.mark.parametrize(
    "entry,field,detail",
    [
        ("{id: x.y, name: X, services: [rh], roles: [superuser]}", "roles", "superuser"),
        ("{id: x.y, name: X, services: [RH]}", "services", "RH"),
        ("{id: x.y, name: X, services: [Rh]}", "services", "Rh"),
        ("{id: x.y, name: X, services: [état-civil]}", "services", "état-civil"),
        ("{id: x.y, name: X, services: [etat civil]}", "services", "etat civil"),
        ("{id: x.y, name: X, services: ['urbanisme ']}", "services", "urbanisme "),
        ("{id: x.y, name: X, service: [rh]}", "service", ""),
        ("{id: x.y}", "name", ""),
    ],
)
def test_load_users_names_the_file_the_user_and_the_field(tmp_path, entry, field, detail):
    path = _users_file(tmp_path, f"users:\n  - {{id: ok, name: OK, services: [rh]}}\n  - {entry}\n")
    with pytest.raises(UsersFileError) as info:
        load_users(path)
    message = str(info.value)
    assert str(path) in message and "x.y" in message and f"« {field}" in message
    assert detail in message


def test_load_users_rejects_a_duplicate_user(tmp_path):
    path = _users_file(tmp_path, "users:\n  - {id: a, name: A}\n  - {id: b, name: B}\n  - {id: a, name: A bis}\n")
    with pytest.raises(UsersFileError, match="utilisateur a défini deux fois") as info:
        load_users(path)
    assert str(path) in str(info.value)


def test_load_users_missing_or_malformed_file(tmp_path):
    missing = tmp_path / "absent.yaml"
    with pytest.raises(UsersFileError, match="introuvable") as info:
        load_users(missing)
    assert str(missing) in str(info.value) and "COLLECTIVIA_USERS" in str(info.value)
    for body in ("- {id: a, name: A}\n", "users: {id: a}\n", "users: [\n"):
        path = _users_file(tmp_path, body)
        with pytest.raises(UsersFileError) as info:
            load_users(path)
        assert str(path) in str(info.value)
    path = _users_file(tmp_path, "users:\n  - just-a-name\n")
    with pytest.raises(UsersFileError, match="n° 1"):
        load_users(path)
    empty = _users_file(tmp_path, "")
    try:  # an empty file: no users, or an error naming the file (never a crash)
        assert load_users(empty) == {}
    except UsersFileError as exc:
        assert str(empty) in str(exc)


def test_get_user_on_an_unknown_id_lists_the_known_ones():
    users = {"b": User("b", "B"), "a": User("a", "A")}
    with pytest.raises(AccessError, match=r"'zoe'.*utilisateurs connus : a, b"):
        get_user(users, "zoe")
    with pytest.raises(AccessError, match="aucun"):
        get_user({}, "zoe")


def test_a_single_service_written_as_text_is_one_service_not_its_letters(tmp_path):
    path = tmp_path / "users.yaml"
    path.write_text("users:\n  - {id: f.lefebvre, name: Fabien, services: dsi, roles: agent}\n", encoding="utf-8")
    user = load_users(path)["f.lefebvre"]
    assert user.services == frozenset({"dsi"})
    assert user.roles == frozenset({"agent"})


# --------------------------------------------------------------------------------------------------------------
# Manage rights: add, replace, withdraw (deny by default)
# --------------------------------------------------------------------------------------------------------------

AGENT = User("a.martin", "Alice", frozenset({"rh"}))
RH_MANAGER = User("h.bernard", "Hélène", frozenset({"rh", "finances"}), frozenset({"agent", "document_manager"}))
URBA_MANAGER = User("i.lambert", "Igor", frozenset({"urbanisme"}), frozenset({"agent", "document_manager"}))
ADMIN = User("admin", "Admin", frozenset(), frozenset({"agent", "admin"}))


def test_a_manager_manages_the_documents_of_their_services_and_no_others():
    assert managed_services(RH_MANAGER) == {"rh", "finances"}
    assert can_manage(RH_MANAGER, ["rh"]) and can_manage(RH_MANAGER, ["rh", "finances"])
    assert not can_manage(RH_MANAGER, ["urbanisme"])
    assert not can_manage(RH_MANAGER, ["rh", "urbanisme"])  # shared with a service they do not manage
    assert not can_manage(RH_MANAGER, ["tous"]) and not can_manage(RH_MANAGER, [])
    assert can_manage(URBA_MANAGER, ["urbanisme"]) and not can_manage(URBA_MANAGER, ["rh"])
    assert upload_targets(RH_MANAGER) == ["finances", "rh"]  # their own services, never « tous »


def test_an_agent_manages_nothing():
    assert managed_services(AGENT) == frozenset()
    assert not can_upload(AGENT) and upload_targets(AGENT) == []
    assert not any(can_manage(AGENT, services) for services in (["rh"], ["tous"], []))
    no_service = User("s", "Sans service", frozenset(), frozenset({"agent", "document_manager"}))
    assert not can_upload(no_service) and upload_targets(no_service) == [] and not can_manage(no_service, ["rh"])


def test_an_administrator_manages_every_document_and_may_publish_to_everyone():
    assert can_upload(ADMIN)
    assert can_manage(ADMIN, ["urbanisme"]) and can_manage(ADMIN, ["tous"]) and can_manage(ADMIN, ["rh", "dsi"])
    assert upload_targets(ADMIN) == ["tous"]
    assert {"tous", "dsi"} <= managed_services(ADMIN, ["dsi"])
    admin_of_rh = User("b", "B", frozenset({"rh"}), frozenset({"agent", "admin"}))
    assert upload_targets(admin_of_rh) == ["rh", "tous"]


@pytest.mark.parametrize("nobody", [None, "admin", {"id": "admin", "roles": ["admin"]}])
def test_manage_rights_are_denied_without_an_authenticated_user(nobody):
    assert managed_services(nobody) == frozenset() and not can_upload(nobody) and upload_targets(nobody) == []
    assert not can_manage(nobody, ["rh"]) and not can_manage(nobody, ["tous"])
