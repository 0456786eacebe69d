"""Document metadata: sidecars, folder defaults, validation with messages that name the file, deny by default."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fixtures import write_meta
from index.documents import DocumentMeta, MetadataError, load_meta


@pytest.fixture
def doc(tmp_path: Path) -> Path:
    """A document file; load_meta only looks at the metadata files around it."""
    path = tmp_path / "conges.pdf"
    path.write_bytes(b"%PDF-1.4\n")
    return path


def write_yaml(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# ----------------------------------------------------------------------------------------------------------------
# Where metadata comes from
# ----------------------------------------------------------------------------------------------------------------


def test_full_name_sidecar_is_read(doc: Path) -> None:
    write_meta(doc, title="Congés annuels", doc_type="procedure", services=["rh"], date="2024-03-12",
               number="2024-015", confidentiality="public", status="abroge", url="https://exemple.fr/conges",
               supersedes=["ancien-reglement"], id="rh/conges")
    doc_id, meta = load_meta(doc)
    assert doc_id == "rh/conges"
    assert meta == DocumentMeta(
        title="Congés annuels", doc_type="procedure", services=("rh",), confidentiality="public",
        date="2024-03-12", number="2024-015", status="abroge", url="https://exemple.fr/conges",
        supersedes=("ancien-reglement",),
    )


def test_stem_sidecar_is_read(doc: Path) -> None:
    write_yaml(doc.with_name("conges.meta.yaml"), "title: Congés\nservices: [finances]\n")
    doc_id, meta = load_meta(doc)
    assert doc_id is None
    assert meta.title == "Congés"
    assert meta.services == ("finances",)


def test_full_name_sidecar_wins_over_stem_sidecar(doc: Path) -> None:
    write_yaml(doc.with_name("conges.meta.yaml"), "title: Générique\nservices: [finances]\ndoc_type: fiche\n")
    write_yaml(doc.with_name("conges.pdf.meta.yaml"), "title: Spécifique\nservices: [rh]\ndoc_type: charte\n")
    _, meta = load_meta(doc)
    assert meta.title == "Spécifique"
    assert meta.services == ("rh",)
    assert meta.doc_type == "charte"


def test_sidecar_of_another_file_with_same_stem_prefix_is_ignored(doc: Path) -> None:
    write_meta(doc.with_name("conges-2023.pdf"), services=["rh"])
    with pytest.raises(MetadataError, match="services"):
        load_meta(doc)


def test_folder_meta_provides_defaults(doc: Path) -> None:
    write_yaml(doc.parent / "_meta.yaml", "services: [rh]\ndoc_type: procedure\nconfidentiality: public\n")
    doc_id, meta = load_meta(doc)
    assert doc_id is None
    assert meta.services == ("rh",)
    assert meta.doc_type == "procedure"
    assert meta.confidentiality == "public"


def test_sidecar_overrides_folder_meta_field_by_field(doc: Path) -> None:
    write_yaml(doc.parent / "_meta.yaml",
               "services: [rh]\ndoc_type: procedure\nconfidentiality: public\nstatus: en_vigueur\n")
    write_meta(doc, services=["finances", "rh"], status="abroge", title="Ancien règlement")
    _, meta = load_meta(doc)
    # from the sidecar
    assert meta.services == ("finances", "rh")
    assert meta.status == "abroge"
    assert meta.title == "Ancien règlement"
    # kept from the folder
    assert meta.doc_type == "procedure"
    assert meta.confidentiality == "public"


def test_folder_meta_of_a_sibling_folder_does_not_apply(tmp_path: Path) -> None:
    (tmp_path / "rh").mkdir()
    (tmp_path / "finances").mkdir()
    write_yaml(tmp_path / "rh" / "_meta.yaml", "services: [rh]\n")
    path = tmp_path / "finances" / "budget.pdf"
    path.write_bytes(b"%PDF-1.4\n")
    with pytest.raises(MetadataError, match="services"):
        load_meta(path)


def test_defaults_when_only_services_given(doc: Path) -> None:
    write_meta(doc, services=["rh"])
    _, meta = load_meta(doc)
    assert meta.doc_type == "autre"
    assert meta.confidentiality == "interne"
    assert meta.status == "en_vigueur"
    assert meta.date is None and meta.number is None and meta.url is None
    assert meta.supersedes == ()


# ----------------------------------------------------------------------------------------------------------------
# Deny by default and the services field
# ----------------------------------------------------------------------------------------------------------------


def test_no_metadata_at_all_is_refused(doc: Path) -> None:
    with pytest.raises(MetadataError) as info:
        load_meta(doc)
    message = str(info.value)
    assert str(doc) in message
    assert "services" in message
    assert "conges.pdf.meta.yaml" in message  # tells where to declare them


def test_metadata_without_services_is_refused(doc: Path) -> None:
    write_yaml(doc.parent / "_meta.yaml", "doc_type: procedure\n")
    write_meta(doc, title="Congés annuels")
    with pytest.raises(MetadataError) as info:
        load_meta(doc)
    assert str(doc) in str(info.value)
    assert "« services »" in str(info.value)


def test_empty_sidecar_without_services_is_refused(doc: Path) -> None:
    write_yaml(doc.with_name("conges.pdf.meta.yaml"), "")
    with pytest.raises(MetadataError, match="services"):
        load_meta(doc)


def test_services_tous_as_a_plain_string(doc: Path) -> None:
    write_yaml(doc.with_name("conges.pdf.meta.yaml"), "services: tous\n")
    _, meta = load_meta(doc)
    assert meta.services == ("tous",)


def test_single_service_as_a_plain_string(doc: Path) -> None:
    write_yaml(doc.with_name("conges.pdf.meta.yaml"), "services: etat-civil\n")
    _, meta = load_meta(doc)
    assert meta.services == ("etat-civil",)


def test_tous_mixed_with_another_service_is_refused(doc: Path) -> None:
    write_meta(doc, services=["tous", "rh"])
    with pytest.raises(MetadataError) as info:
        load_meta(doc)
    message = str(info.value)
    assert str(doc) in message
    assert "services" in message and "tous" in message


def test_empty_services_list_is_refused(doc: Path) -> None:
    write_meta(doc, services=[])
    with pytest.raises(MetadataError) as info:
        load_meta(doc)
    assert "conges.pdf.meta.yaml" in str(info.value)
    assert "services" in str(info.value)


@pytest.mark.parametrize("service", ["RH", "état-civil", "Etat Civil", "-rh"])
def test_badly_written_service_ids_are_refused_with_a_hint(doc: Path, service: str) -> None:
    write_meta(doc, services=[service])
    with pytest.raises(MetadataError) as info:
        load_meta(doc)
    message = str(info.value)
    assert "conges.pdf.meta.yaml" in message
    assert "services" in message
    assert repr(service) in message
    assert "minuscules" in message  # the hint: how to write a service id


# ----------------------------------------------------------------------------------------------------------------
# Invalid values: the message names the file, the field and the value
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "yaml_value", "shown"),
    [
        ("doc_type", "arrete", "arrete"),
        ("status", "abrogé", "abrogé"),
        ("confidentiality", "secret", "secret"),
        ("date", "le 3 mars 2024", "le 3 mars 2024"),
        ("date", "'2024-13-45'", "2024-13-45"),
    ],
)
def test_invalid_value_names_file_field_and_value(doc: Path, field: str, yaml_value: str, shown: str) -> None:
    sidecar = write_yaml(doc.with_name("conges.pdf.meta.yaml"), f"services: [rh]\n{field}: {yaml_value}\n")
    with pytest.raises(MetadataError) as info:
        load_meta(doc)
    message = str(info.value)
    assert str(sidecar) in message
    assert f"« {field} »" in message
    assert shown in message


@pytest.mark.parametrize("value", ["2024-13-45", "2024-02-30"])
def test_unquoted_impossible_date_names_file_and_field(doc: Path, value: str) -> None:
    sidecar = write_yaml(doc.with_name("conges.pdf.meta.yaml"), f"services: [rh]\ndate: {value}\n")
    with pytest.raises(MetadataError) as info:
        load_meta(doc)
    assert str(sidecar) in str(info.value)
    assert "date" in str(info.value)


def test_date_is_kept_as_iso_text(doc: Path) -> None:
    write_yaml(doc.with_name("conges.pdf.meta.yaml"), "services: [rh]\ndate: 2024-03-12\nnumber: 2024015\n")
    _, meta = load_meta(doc)
    assert meta.date == "2024-03-12"
    assert meta.number == "2024015"  # a number written without quotes stays the text the user wrote


def test_date_with_a_time_is_refused(doc: Path) -> None:
    write_yaml(doc.with_name("conges.pdf.meta.yaml"), "services: [rh]\ndate: 2024-03-12 10:00:00\n")
    with pytest.raises(MetadataError, match="« date »"):
        load_meta(doc)


def test_id_in_folder_meta_is_refused(doc: Path) -> None:
    folder_meta = write_yaml(doc.parent / "_meta.yaml", "id: commun\nservices: [rh]\n")
    write_meta(doc, title="Congés")
    with pytest.raises(MetadataError) as info:
        load_meta(doc)
    message = str(info.value)
    assert str(folder_meta) in message
    assert "« id »" in message


def test_invalid_document_id_is_refused(doc: Path) -> None:
    write_meta(doc, services=["rh"], id="../../etc/passwd avec espaces")
    with pytest.raises(MetadataError) as info:
        load_meta(doc)
    assert "« id »" in str(info.value)


def test_unknown_field_is_refused(doc: Path) -> None:
    sidecar = write_meta(doc, services=["rh"], auteur="Mme Durand")
    with pytest.raises(MetadataError) as info:
        load_meta(doc)
    message = str(info.value)
    assert str(sidecar) in message
    assert "auteur" in message


def test_unknown_field_in_folder_meta_is_refused(doc: Path) -> None:
    folder_meta = write_yaml(doc.parent / "_meta.yaml", "services: [rh]\nservice: rh\n")
    with pytest.raises(MetadataError) as info:
        load_meta(doc)
    assert str(folder_meta) in str(info.value)
    assert "« service »" in str(info.value)


def test_invalid_yaml_gives_a_clear_error(doc: Path) -> None:
    sidecar = write_yaml(doc.with_name("conges.pdf.meta.yaml"), "services: [rh\ntitle: Congés\n")
    with pytest.raises(MetadataError) as info:
        load_meta(doc)
    assert str(sidecar) in str(info.value)
    assert "YAML invalide" in str(info.value)


def test_yaml_that_is_not_a_mapping_is_refused(doc: Path) -> None:
    sidecar = write_yaml(doc.with_name("conges.pdf.meta.yaml"), "- rh\n- finances\n")
    with pytest.raises(MetadataError) as info:
        load_meta(doc)
    assert str(sidecar) in str(info.value)
    assert "clé: valeur" in str(info.value)


def test_meta_file_not_in_utf8_is_refused(doc: Path) -> None:
    sidecar = doc.with_name("conges.pdf.meta.yaml")
    sidecar.write_bytes("services: [rh]\ntitle: Délibération\n".encode("cp1252"))
    with pytest.raises(MetadataError) as info:
        load_meta(doc)
    assert str(sidecar) in str(info.value)


# ----------------------------------------------------------------------------------------------------------------
# Title and payload
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "title"),
    [
        ("conges_annuels-2024.pdf", "conges annuels 2024"),
        ("Règlement intérieur.docx", "Règlement intérieur"),
        ("charte.informatique.md", "charte.informatique"),
    ],
)
def test_title_defaults_to_readable_file_name(tmp_path: Path, name: str, title: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"x")
    write_meta(path, services=["rh"])
    _, meta = load_meta(path)
    assert meta.title == title


def test_empty_title_falls_back_to_file_name(tmp_path: Path) -> None:
    path = tmp_path / "fiche_accueil.html"
    path.write_bytes(b"x")
    write_meta(path, services=["tous"], title="")
    _, meta = load_meta(path)
    assert meta.title == "fiche accueil"


def test_payload_round_trip() -> None:
    meta = DocumentMeta(
        title="Délibération n° 2024-015", doc_type="deliberation", services=("rh", "finances"),
        confidentiality="confidentiel", date="2024-03-12", number="2024-015", status="abroge",
        url="https://exemple.fr/d", supersedes=("2019-007", "2021-003"),
    )
    payload = meta.payload()
    assert payload["services"] == ["rh", "finances"]
    assert payload["supersedes"] == ["2019-007", "2021-003"]
    # the payload goes to a vector store: it must survive JSON
    again = DocumentMeta.from_payload(json.loads(json.dumps(payload)))
    assert again == meta


def test_payload_round_trip_with_defaults(doc: Path) -> None:
    write_meta(doc, services=["tous"])
    _, meta = load_meta(doc)
    assert DocumentMeta.from_payload(meta.payload()) == meta


def test_folder_meta_is_inherited_from_the_ingestion_root_down(tmp_path: Path) -> None:
    from index.documents import load_meta

    (tmp_path / "_meta.yaml").write_text("services: [rh]\ndoc_type: procedure\n", encoding="utf-8")
    sub = tmp_path / "conges" / "2025"
    sub.mkdir(parents=True)
    (sub.parent / "_meta.yaml").write_text("confidentiality: confidentiel\n", encoding="utf-8")
    doc = sub / "note.md"
    doc.write_text("# Note\n\ntexte", encoding="utf-8")
    _, meta = load_meta(doc, tmp_path)
    assert (meta.services, meta.doc_type, meta.confidentiality) == (("rh",), "procedure", "confidentiel")
    # Without the root, only the file's own folder counts: deny by default.
    with pytest.raises(MetadataError, match="services"):
        load_meta(doc)
