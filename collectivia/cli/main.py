"""The ``collectivia`` command line: one entry point for ingestion, search and the other parts."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console

from collectivia.cli.common import (
    REPEALED_OPTION,
    SERVICE_OPTION,
    TYPE_OPTION,
    check_question,
    console,
    fail,
    find_user,
    index_errors,
    load_settings,
    make_scope,
    open_index,
    run_ingestion,
)

app = typer.Typer(
    name="collectivia",
    help="Collectivia : assistant documentaire souverain pour les collectivités territoriales.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


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
    run_ingestion(lambda ingestor: lambda progress: ingestor.ingest_paths(paths, prune=prune, progress=progress),
                  as_json=as_json)


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

    settings = load_settings()
    query = check_question(query, settings, "recherche")
    who = find_user(settings, user)
    embedder, store = open_index(settings)
    try:
        results = build_retriever(settings, embedder, store).retrieve(
            query, who, k=k or settings.search.k, scope=make_scope(service, doc_type, include_repealed)
        )
    except (AccessError, *index_errors()) as exc:
        fail(str(exc))
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
    from rag.personal_data import screen

    settings = load_settings()
    question = check_question(question, settings)
    who = find_user(settings, user)
    screening = screen(question)
    if screening.warning and not as_json:
        console.print(screening.warning, style="yellow", markup=False, highlight=False, soft_wrap=True)
    embedder, store = open_index(settings)
    scope = make_scope(service, doc_type, include_repealed)
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
    except (AccessError, *index_errors()) as exc:
        fail(str(exc))
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
    settings = load_settings()
    data = json.loads(settings.model_dump_json())
    if as_json:
        print(json.dumps(data, ensure_ascii=False, indent=2))
    else:
        Console().print_json(data=data)


# The command groups that live beside their package register themselves (imported last: they need ``app``).
from collectivia.cli.chat import register as register_chat  # noqa: E402
from collectivia.cli.eval import register as register_eval  # noqa: E402
from collectivia.cli.importers import register as register_importers  # noqa: E402
from collectivia.cli.privacy import register as register_privacy  # noqa: E402
from collectivia.cli.report import register as register_report  # noqa: E402

for register in (register_importers, register_chat, register_eval, register_privacy, register_report):
    register(app)


if __name__ == "__main__":
    app()

