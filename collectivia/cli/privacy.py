"""`collectivia purge` and `collectivia users export|forget`: retention and rights over the chat history.

They work while `collectivia serve` runs (SQLite in WAL mode, or PostgreSQL). Each run is written to the audit log
``<data_dir>/audit/privacy.jsonl`` (who: ``cli:<Unix account>``; counts, never text).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Optional

import typer

from collectivia.cli.common import console, fail, load_settings

ACCOUNT_NOTE = ("Le compte de connexion n'est pas supprimé : il appartient au fichier des utilisateurs "
                "(COLLECTIVIA_USERS : « collectivia users remove ID ») ou au fournisseur OpenID Connect ; retirez-le "
                "là si l'agent quitte la collectivité.")


def _history(settings):
    """(URL of the history database, ready; the privacy audit log)."""
    from chat_ui.history_db import HistoryDatabaseError, database_url, ensure_schema
    from chat_ui.permissions import private_umask
    from chat_ui.privacy_audit import PrivacyAudit, privacy_log_path

    private_umask()  # the history and the audit log stay the chat account's alone
    url = database_url(settings.chat.database_url, settings.data_dir)
    try:
        asyncio.run(ensure_schema(url))
    except HistoryDatabaseError as exc:
        fail(str(exc))
    return url, PrivacyAudit(privacy_log_path(settings.data_dir))


def purge(
    dry_run: bool = typer.Option(False, "--dry-run", help="Compter ce qui serait supprimé, sans rien supprimer."),
    as_json: bool = typer.Option(False, "--json", help="Résumé en JSON sur la sortie standard."),
) -> None:
    """Supprimer les conversations (messages, sources, avis) plus anciennes que COLLECTIVIA_CHAT__RETENTION_DAYS."""
    from chat_ui.privacy_audit import cli_actor
    from chat_ui.retention import ROW_COUNTS, purge as run_purge

    settings = load_settings()
    days = settings.chat.retention_days
    if days == 0:
        if as_json:
            print(json.dumps({"retention_days": 0, "dry_run": dry_run, "skipped": True}))
        else:
            console.print("Conservation sans limite (COLLECTIVIA_CHAT__RETENTION_DAYS=0) : rien à purger.")
        return
    url, audit = _history(settings)
    try:
        report = asyncio.run(run_purge(url, days, dry_run=dry_run))
    except Exception as exc:  # database gone in the middle: audited, said
        audit.write(action="purge", by=cli_actor(), outcome="failed", dry_run=dry_run, detail=type(exc).__name__)
        fail(f"purge de l'historique impossible : {type(exc).__name__} : {(str(exc).splitlines() or [''])[0][:300]}")
    data = report.to_dict()
    audit.write(action="purge", by=cli_actor(), dry_run=dry_run,
                counts={k: data[k] for k in ROW_COUNTS},
                detail=f"retention_days={days} cutoff={report.cutoff}")
    if as_json:
        print(json.dumps(data, ensure_ascii=False, indent=2))
        return
    verb = "seraient supprimés" if dry_run else "supprimés"
    console.print(f"Conversations sans activité depuis le {report.cutoff[:10]} ({days} jours) — {verb} : "
                  f"{data['threads']} conversations, {data['steps']} messages, {data['elements']} cartes, "
                  f"{data['feedbacks'] + data['answer_feedback']} avis ({report.seconds:.1f} s).")


def users_export(
    user_id: str = typer.Argument(..., metavar="ID", help="Identifiant de l'agent."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Fichier JSON à écrire (défaut : sortie standard)."),
) -> None:
    """Exporter en JSON tout ce que le chat conserve d'un agent (droit d'accès) : conversations, avis."""
    from chat_ui.privacy_audit import cli_actor
    from chat_ui.retention import export_counts, export_user

    settings = load_settings()
    url, audit = _history(settings)
    try:
        export = asyncio.run(export_user(url, user_id))
    except ValueError as exc:
        fail(str(exc))
    counts = export_counts(export)
    body = json.dumps(export, ensure_ascii=False, indent=2) + "\n"
    if out is None:
        sys.stdout.write(body)
    else:
        try:
            fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(body)
        except OSError as exc:
            fail(f"impossible d'écrire l'export dans « {out} » : {exc.strerror}")
    audit.write(action="export", by=cli_actor(), subject=user_id, counts=counts,
                detail=f"fichier {out}" if out else "sortie standard")
    where = f" dans {out}" if out else ""
    if not counts["users"] and not counts["threads"] and not counts["answer_feedback"]:
        console.print(f"Aucune donnée du chat pour « {user_id} »{where}.")
    else:
        console.print(f"Export de « {user_id} »{where} : {counts['threads']} conversations, {counts['steps']} "
                      f"messages, {counts['answer_feedback']} avis.")


def users_forget(
    user_id: str = typer.Argument(..., metavar="ID", help="Identifiant de l'agent."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Ne pas demander de confirmation."),
    as_json: bool = typer.Option(False, "--json", help="Résumé en JSON sur la sortie standard."),
) -> None:
    """Effacer tout ce que le chat conserve d'un agent (droit à l'effacement) ; son compte de connexion reste."""
    from chat_ui.privacy_audit import cli_actor
    from chat_ui.retention import export_counts, export_user, forget_user

    settings = load_settings()
    url, audit = _history(settings)
    try:
        found = export_counts(asyncio.run(export_user(url, user_id)))
    except ValueError as exc:
        fail(str(exc))
    if not yes:
        if not sys.stdin.isatty():
            fail("confirmation requise : relancez avec --yes pour effacer sans question")
        if not typer.confirm(f"Effacer les {found['threads']} conversations et {found['answer_feedback']} avis de "
                             f"« {user_id} » ? C'est définitif.", default=False):
            audit.write(action="forget", by=cli_actor(), outcome="cancelled", subject=user_id)
            fail("effacement annulé", 1)
    report = asyncio.run(forget_user(url, user_id))
    audit.write(action="forget", by=cli_actor(), subject=user_id,
                counts={k: v for k, v in report.to_dict().items() if k != "identifier"})
    if as_json:
        print(json.dumps(report.to_dict() | {"account_kept": True}, ensure_ascii=False, indent=2))
    else:
        c = report.counts
        console.print(f"Données du chat de « {user_id} » effacées : {c.threads} conversations, {c.steps} messages, "
                      f"{c.elements} cartes, {c.feedbacks + c.answer_feedback} avis, {c.users} fiche utilisateur.")
    console.print(ACCOUNT_NOTE)


def add_user_commands(users_app: typer.Typer) -> None:
    users_app.command("export")(users_export)
    users_app.command("forget")(users_forget)


def register(app: typer.Typer) -> None:
    app.command("purge")(purge)
