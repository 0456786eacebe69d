"""French texts of the chat (welcome screen, upload progress), document headers, audit log lines."""

from __future__ import annotations

import chat_helpers  # noqa: F401  (keeps Chainlit's run-time folder out of the repository)

from pathlib import Path

from chat_ui.audit import AuditLog
from chat_ui.files import file_headers
from chat_ui.texts import join_fr, service_label, welcome_markdown
from chat_ui.uploads import Outcome, Progress


def test_welcome_says_what_the_assistant_does_the_charter_and_the_services():
    text = welcome_markdown("Alice Martin", ["rh", "finances"], extractive=True)
    for expected in ("Bonjour Alice Martin", "Ce que je sais faire", "Ce que je ne fais pas",
                     "Charte locale de l'IA", "produites avec l'aide d'une IA", "Vous restez responsable",
                     "N'écrivez aucune donnée personnelle", "Ressources humaines (rh)",
                     "Finances et commande publique (finances)", "Mode extractif"):
        assert expected in text
    assert "Gestion documentaire" not in text
    nobody = welcome_markdown("Gaëlle", [], extractive=False)
    assert "aucun service ne vous est rattaché" in nobody and "Mode extractif" not in nobody
    manager = welcome_markdown("Hélène", ["rh"], extractive=False, manager_services=["rh", "finances"])
    assert "documents des services finances et rh" in manager


def test_labels():
    assert service_label("rh") == "Ressources humaines (rh)"
    assert service_label("tous") == "Documents ouverts à tous les agents"
    assert service_label("police") == "police"
    assert join_fr(["a"]) == "a" and join_fr(["a", "b", "c"]) == "a, b et c" and join_fr([]) == ""


def test_upload_progress_and_outcome_in_french():
    from chat_ui.upload_dialogs import outcome_markdown, progress_markdown

    progress = Progress()
    progress.set("analyse")
    text = progress_markdown("Ajout de « Note »", progress)
    assert "✓ Fichier reçu" in text and "… Lecture du document" in text and "○ Consultable" in text
    progress.set("consultable", 12)
    assert "(12 extraits)" in progress_markdown("x", progress) and "○" not in progress_markdown("x", progress)
    ok = outcome_markdown(Outcome(True, "", doc_id="RH-note-1", title="Note", services=("rh",), chunks=3,
                                  seconds=4.2), verb="Ajout")
    assert "« Note »" in ok and "Ressources humaines (rh)" in ok and "`RH-note-1`" in ok
    refused = outcome_markdown(Outcome(False, "Format non pris en charge."), verb="Ajout")
    assert refused.startswith("✗ **Ajout refusé** — Format non pris en charge.") and "Rien n'a été modifié" in refused


def test_documents_are_served_so_that_nothing_in_them_runs():
    media, headers = file_headers(Path("note.html"))
    assert media.startswith("text/html") and headers["content-security-policy"].startswith("sandbox")
    assert headers["x-content-type-options"] == "nosniff" and headers["cache-control"] == "private, no-store"
    media, headers = file_headers(Path("Délibération 2024.pdf"))
    assert media == "application/pdf" and "default-src 'none'" in headers["content-security-policy"]
    assert headers["content-disposition"] == "inline; filename*=UTF-8''D%C3%A9lib%C3%A9ration%202024.pdf"
    media, headers = file_headers(Path("note.docx"))
    assert headers["content-disposition"].startswith("attachment")
    assert file_headers(Path("note.md"))[0] == "text/plain; charset=utf-8"


def test_audit_log_appends_json_lines(tmp_path):
    log = AuditLog(tmp_path / "audit" / "documents.jsonl")
    log.write(action="upload", outcome="ok", user_id="h.bernard", user_name="Hélène", doc_id="RH-1", title="Note",
              doc_type="procedure", services=["rh", "finances"], file="note.md", size=10, sha256="ab")
    log.write(action="withdraw", outcome="refused", user_id="a.martin", doc_id="RH-1", detail="hors de vos services")
    entries = log.entries()
    assert [(e["action"], e["outcome"], e["user"]) for e in entries] == [("upload", "ok", "h.bernard"),
                                                                          ("withdraw", "refused", "a.martin")]
    assert entries[0]["services"] == ["finances", "rh"] and entries[0]["ts"].endswith("+00:00")
    assert (tmp_path / "audit" / "documents.jsonl").read_text(encoding="utf-8").count("\n") == 2
