"""What every command of the CLI shares: settings, errors, the index, progress bars, users and questions."""

from __future__ import annotations

import time
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from index.offline import configure_offline

configure_offline()


console = Console(stderr=True)


def index_errors() -> tuple[type[Exception], ...]:
    """Errors of the index or of a remote model, said in French: a command prints them, never a traceback.
    (Imported when an error is being matched, so that commands without an index start fast.)"""
    from index.model_api import RemoteServiceError
    from index.store import StoreError

    return StoreError, RemoteServiceError


def load_settings():
    from collectivia.settings import Settings

    try:
        return Settings()
    except Exception as exc:  # pydantic's message names the variable and the value
        console.print(f"[red]Configuration invalide :[/red] {exc}")
        raise typer.Exit(2) from exc


def fail(message: str, code: int = 2) -> None:
    console.print(f"[red]Erreur :[/red] {message}")
    raise typer.Exit(code)


def open_index(settings):
    from collectivia.wiring import build_embedder, build_store

    try:
        embedder = build_embedder(settings)
        store = build_store(settings, embedder)
    except (*index_errors(), ValueError) as exc:
        fail(str(exc))
    owner = getattr(store, "owner_pid", None)  # a RemoteStore: the index is lent by the running chat
    if owner is not None:
        console.print(f"Index ouvert par le chat en cours (PID {owner}) : les opérations passent par lui.",
                      markup=False, highlight=False)
    return embedder, store


def run_with_bar(job, label: str = "Indexation", unit: str = "fichiers"):
    """Run ``job(progress_callback)`` under a rich progress bar (files done, chunks, chunks/s)."""
    started = time.perf_counter()
    with Progress(
        TextColumn(f"[bold]{label}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(unit + " · {task.fields[chunks]} extraits · {task.fields[rate]} extraits/s"),
        TimeElapsedColumn(),
        TextColumn("{task.fields[current]}"),
        console=console,
        transient=False,
    ) as bar:
        task = bar.add_task("ingest", total=None, chunks=0, rate="–", current="")

        def on_progress(p) -> None:
            elapsed = max(time.perf_counter() - started, 1e-6)
            bar.update(task, total=p.files_total, completed=p.files_done, chunks=p.chunks_embedded,
                       rate=f"{p.chunks_embedded / elapsed:.0f}", current=Path(p.current).name if p.current else "")

        return job(on_progress)


def print_report(report) -> None:
    table = Table(title="Résumé de l'indexation", show_header=False)
    for label, value in (
        ("indexés", report.indexed), ("inchangés", report.unchanged), ("remplacés", report.replaced),
        ("retirés", report.pruned), ("en échec", len(report.failed)), ("ignorés", len(report.skipped)),
        ("extraits calculés", report.chunks_embedded), ("durée", f"{report.seconds:.1f} s"),
    ):
        table.add_row(label, str(value))
    console.print(table)
    for item in report.warnings:
        console.print(f"[yellow]Avertissement :[/yellow] {item['warning']}")
    for item in report.skipped:
        console.print(f"[dim]Ignoré : {item['path']} ({item['reason']})[/dim]")
    for item in report.failed:
        console.print(f"[red]Échec :[/red] {item['error']}")


def find_user(settings, user_id: str):
    """The user of the users file, or a clear error (exit code 2)."""
    from chat_ui.auth import read_users
    from rag.access import AccessError, UsersFileError, get_user

    try:
        return get_user(read_users(settings.users), user_id)
    except (UsersFileError, AccessError) as exc:
        fail(str(exc))


def check_question(text: str, settings, what: str = "question") -> str:
    """The question, or a clear error (exit code 2): empty, or longer than COLLECTIVIA_CHAT__MAX_QUESTION_CHARS."""
    text = (text or "").strip()
    if not text:
        fail(f"{what} vide : écrivez-la entre guillemets, par exemple « Quel est le délai de dépôt d'un congé ? »")
    limit = settings.chat.max_question_chars
    if len(text) > limit:
        fail(f"{what} trop longue : {len(text)} caractères ({limit} au plus, COLLECTIVIA_CHAT__MAX_QUESTION_CHARS)")
    return text


def make_scope(services: Optional[List[str]], doc_types: Optional[List[str]], include_repealed: bool):
    from rag.access import Scope

    if not services and not doc_types and not include_repealed:
        return None
    return Scope(
        services=frozenset(services) if services else None,
        doc_types=frozenset(doc_types) if doc_types else None,
        include_repealed=include_repealed,
    )


SERVICE_OPTION = typer.Option(None, "--service", "-s", help="Restreindre à ce service (répétable ; « tous » possible).")


TYPE_OPTION = typer.Option(None, "--type", "-t", help="Restreindre à ce type de document (répétable).")


REPEALED_OPTION = typer.Option(False, "--include-repealed", help="Inclure les documents abrogés.")


def run_ingestion(make_job, *, as_json: bool, label: str = "Indexation", unit: str = "fichiers") -> None:
    """Open the index, run ``make_job(ingestor)(progress)`` (a bar on a terminal), close, report; exit 0 or 1."""
    import json
    import sys

    from collectivia.wiring import build_ingestor

    settings = load_settings()
    embedder, store = open_index(settings)
    job = make_job(build_ingestor(settings, embedder, store))
    try:
        report = job(None) if as_json or not sys.stderr.isatty() else run_with_bar(job, label, unit)
    except index_errors() as exc:  # the index or a remote model failed midway: what is indexed stays, a re-run resumes
        fail(f"{exc} — l'indexation s'est arrêtée ; ce qui est déjà indexé reste en place, relancez la commande")
    finally:
        store.close()
    if as_json:
        print(json.dumps(report.to_dict(), ensure_ascii=False, indent=2))
    else:
        print_report(report)
    raise typer.Exit(0 if report.ok else 1)
