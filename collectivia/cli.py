"""The ``collectivia`` command line: one entry point for ingestion, search and the other parts."""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ingest.offline import configure_offline

configure_offline()

app = typer.Typer(
    name="collectivia",
    help="Collectivia : assistant documentaire souverain pour les collectivités territoriales.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)


def _settings():
    from collectivia.settings import Settings

    try:
        return Settings()
    except Exception as exc:  # pydantic's message names the variable and the value
        console.print(f"[red]Configuration invalide :[/red] {exc}")
        raise typer.Exit(2) from exc


def _fail(message: str, code: int = 2) -> None:
    console.print(f"[red]Erreur :[/red] {message}")
    raise typer.Exit(code)


def _open(settings):
    from collectivia.wiring import build_embedder, build_store
    from ingest.store import StoreError

    try:
        embedder = build_embedder(settings)
        store = build_store(settings, embedder)
    except (StoreError, ValueError) as exc:
        _fail(str(exc))
    return embedder, store


@app.callback()
def main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Journal détaillé.")) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if not verbose:
        for noisy in ("unstructured", "pdfminer", "pikepdf", "httpx"):
            logging.getLogger(noisy).setLevel(logging.ERROR)


@app.command()
def ingest(
    paths: List[Path] = typer.Argument(..., help="Fichiers ou dossiers à indexer."),
    prune: bool = typer.Option(False, "--prune", help="Retirer de l'index les documents dont le fichier a disparu."),
    as_json: bool = typer.Option(False, "--json", help="Résumé en JSON sur la sortie standard."),
) -> None:
    """Indexer des documents (PDF, DOCX, ODT, HTML, Markdown, TXT) avec leurs métadonnées."""
    from collectivia.wiring import build_ingestor

    settings = _settings()
    embedder, store = _open(settings)
    ingestor = build_ingestor(settings, embedder, store)
    try:
        if as_json or not sys.stderr.isatty():
            report = ingestor.ingest_paths(paths, prune=prune)
        else:
            report = _ingest_with_bar(ingestor, paths, prune)
    finally:
        store.close()
    if as_json:
        print(json.dumps(report.to_dict(), ensure_ascii=False, indent=2))
    else:
        _print_report(report)
    raise typer.Exit(0 if report.ok else 1)


def _ingest_with_bar(ingestor, paths, prune):
    return run_with_bar(lambda progress: ingestor.ingest_paths(paths, prune=prune, progress=progress))


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


def _print_report(report) -> None:
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


def _user(settings, user_id: str):
    """The user of the users file, or a clear error (exit code 2)."""
    from chat_ui.auth import read_users
    from rag.access import AccessError, UsersFileError, get_user

    try:
        return get_user(read_users(settings.users), user_id)
    except (UsersFileError, AccessError) as exc:
        _fail(str(exc))


def _question(text: str, settings, what: str = "question") -> str:
    """The question, or a clear error (exit code 2): empty, or longer than COLLECTIVIA_CHAT__MAX_QUESTION_CHARS."""
    text = (text or "").strip()
    if not text:
        _fail(f"{what} vide : écrivez-la entre guillemets, par exemple « Quel est le délai de dépôt d'un congé ? »")
    limit = settings.chat.max_question_chars
    if len(text) > limit:
        _fail(f"{what} trop longue : {len(text)} caractères ({limit} au plus, COLLECTIVIA_CHAT__MAX_QUESTION_CHARS)")
    return text


def _scope(services: Optional[List[str]], doc_types: Optional[List[str]], include_repealed: bool):
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


@app.command()
def search(
    query: str = typer.Argument(..., help="Question ou mots-clés."),
    user: str = typer.Option(..., "--user", "-u", help="Identifiant de l'utilisateur (fichier COLLECTIVIA_USERS)."),
    k: Optional[int] = typer.Option(None, "-k", min=1, max=100, help="Nombre d'extraits (défaut : COLLECTIVIA_SEARCH__K)."),
    service: Optional[List[str]] = SERVICE_OPTION,
    doc_type: Optional[List[str]] = TYPE_OPTION,
    include_repealed: bool = REPEALED_OPTION,
    as_json: bool = typer.Option(False, "--json", help="Résultats en JSON sur la sortie standard."),
) -> None:
    """Recherche hybride dans les documents que l'utilisateur a le droit de voir."""
    from collectivia.wiring import build_retriever
    from rag.access import AccessError

    settings = _settings()
    query = _question(query, settings, "recherche")
    who = _user(settings, user)
    embedder, store = _open(settings)
    try:
        results = build_retriever(settings, embedder, store).retrieve(
            query, who, k=k or settings.search.k, scope=_scope(service, doc_type, include_repealed)
        )
    except AccessError as exc:
        _fail(str(exc))
    finally:
        store.close()
    if as_json:
        print(json.dumps([r.to_json() for r in results], ensure_ascii=False, indent=2))
        return
    if not results:
        console.print("Aucun extrait trouvé dans les documents accessibles à cet utilisateur.")
        return
    out = Console()
    for rank, r in enumerate(results, start=1):
        where = " · ".join(x for x in (r.section, f"p. {r.page}" if r.page else "") if x)
        out.print(f"[bold]{rank}. {r.title}[/bold] [dim]({r.doc_id} · {', '.join(r.services)} · score {r.score:.3f})[/dim]")
        if where:
            out.print(f"   [italic]{where}[/italic]")
        snippet = " ".join(r.text.split())
        out.print(f"   {snippet[:300]}{'…' if len(snippet) > 300 else ''}")


@app.command()
def ask(
    question: str = typer.Argument(..., help="La question, en français."),
    user: str = typer.Option(..., "--user", "-u", help="Identifiant de l'utilisateur (fichier COLLECTIVIA_USERS)."),
    service: Optional[List[str]] = SERVICE_OPTION,
    doc_type: Optional[List[str]] = TYPE_OPTION,
    include_repealed: bool = REPEALED_OPTION,
    as_json: bool = typer.Option(False, "--json", help="Réponse en JSON sur la sortie standard."),
) -> None:
    """Poser une question : réponse fondée sur les documents accessibles, avec citations."""
    from collectivia.wiring import build_assistant
    from rag.access import AccessError

    settings = _settings()
    question = _question(question, settings)
    who = _user(settings, user)
    embedder, store = _open(settings)
    scope = _scope(service, doc_type, include_repealed)
    try:
        assistant = build_assistant(settings, embedder, store)
        if as_json:
            answer = assistant.answer(question, who, scope=scope)
        else:
            out = Console()
            answer = None
            for event in assistant.stream(question, who, scope=scope):
                if event.kind == "token":
                    out.print(event.token, end="", markup=False, highlight=False)
                elif event.kind == "answer":
                    answer = event.answer
            out.print()
    except AccessError as exc:
        _fail(str(exc))
    finally:
        store.close()
    if as_json:
        data = answer.to_json()
        data["citations"] = [
            {k: c[k] for k in ("n", "doc_id", "title", "page", "section", "services", "passage", "supported")}
            for c in data["citations"]
        ]
        print(json.dumps(data, ensure_ascii=False, indent=2))
        return
    from rag.answerability import OUTCOME_LABELS

    label = OUTCOME_LABELS[answer.outcome]
    if answer.probability is not None:
        Console().print(f"[dim]Décision : {label} (probabilité que les passages répondent : "
                        f"{answer.probability:.2f})[/dim]" + (f" ; [bold]{answer.answer_span}[/bold]"
                                                              if answer.answer_span else ""))
    for c in answer.citations:
        where = " · ".join(x for x in (c.section, f"p. {c.page}" if c.page else "") if x)
        flag = "" if c.supported else " [yellow](citation non étayée par le passage)[/yellow]"
        Console().print(f"[bold][{c.n}][/bold] {c.title} [dim]({c.doc_id}{' · ' + where if where else ''})[/dim]{flag}")
    if answer.error:
        for n, s in enumerate(answer.sources, start=1):
            Console().print(f"[bold]({n})[/bold] {s.title} [dim]({s.doc_id})[/dim]")


@app.command("config")
def show_config(as_json: bool = typer.Option(False, "--json")) -> None:
    """Afficher la configuration effective (variables COLLECTIVIA_*)."""
    settings = _settings()
    data = json.loads(settings.model_dump_json())
    if as_json:
        print(json.dumps(data, ensure_ascii=False, indent=2))
    else:
        Console().print_json(data=data)


def _register_extensions() -> None:
    """Commands that live beside their package (chat, users, evaluation, importers) register themselves here."""
    import importlib

    for name in ("collectivia.cli_import", "collectivia.cli_ui", "collectivia.cli_eval"):
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        module.register(app)


_register_extensions()

if __name__ == "__main__":
    app()
