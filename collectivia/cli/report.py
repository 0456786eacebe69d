"""`collectivia report gaps|feedback|documents`: the managers' reports at the console (French tables, JSON, CSV).

The console is IT's and the administrators' (they hold the history database already): without ``--user`` a report
covers every service; with ``--user ID`` it is exactly what that manager sees in the chat (an agent is refused).
The privacy threshold applies everywhere: no group of fewer than COLLECTIVIA_REPORTS__MIN_GROUP questions.
"""

from __future__ import annotations

import asyncio
import csv
import json
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

from collectivia.cli.common import fail, find_user, load_settings, open_index

KIND_HELP = "gaps (questions sans réponse sûre), feedback (avis « Pas utile ») ou documents."


def register(app: typer.Typer) -> None:
    app.command("report")(report)


def report(
    kind: str = typer.Argument(..., metavar="gaps|feedback|documents", help=KIND_HELP),
    service: Optional[List[str]] = typer.Option(None, "--service", "-s", help="Limiter à ce service (répétable)."),
    since: str = typer.Option("30d", "--since", help="Période : 30d, 12w, 6m, 1y ou une date AAAA-MM-JJ."),
    user: Optional[str] = typer.Option(None, "--user", "-u",
                                       help="Vue d'un gestionnaire (défaut : tous les services)."),
    as_json: bool = typer.Option(False, "--json", help="Rapport en JSON sur la sortie standard."),
    csv_file: Optional[Path] = typer.Option(None, "--csv", help="Écrire aussi le tableau en CSV (séparateur ;)."),
) -> None:
    """Rapports des gestionnaires : lacunes, avis « Pas utile », documents (comptes seulement, jamais de nom)."""
    from chat_ui.datalayer import HistoryDatabaseError, database_url, ensure_schema
    from chat_ui.reports.access import ReportAccessError, View, report_view
    from chat_ui.reports.build import KINDS, ReportRequestError, make_report, parse_since

    if kind not in KINDS:
        fail(f"rapport « {kind} » inconnu (rapports : {', '.join(KINDS)})")
    settings = load_settings()
    try:
        start = parse_since(since)
        if user is not None:
            view = report_view(find_user(settings, user), service)
        else:
            wanted = frozenset(s.strip() for s in service or () if s.strip())
            view = View(wanted or None)
    except (ReportRequestError, ReportAccessError) as exc:
        fail(str(exc))
    records = {}
    if kind != "gaps":
        _, store = open_index(settings)
        try:
            records = store.documents()
        finally:
            store.close()
    url = database_url(settings.chat.database_url, settings.data_dir)
    try:
        asyncio.run(ensure_schema(url))
        result = asyncio.run(make_report(kind, view, url, records, settings.reports, start))
    except HistoryDatabaseError as exc:
        fail(str(exc))
    if csv_file is not None:
        _write_csv(csv_file, result.csv_rows())
    if as_json:
        print(json.dumps(result.to_json(), ensure_ascii=False, indent=2))
    else:
        _print(kind, result)
    if csv_file is not None:
        Console(stderr=True).print(f"CSV écrit : {csv_file}", markup=False, highlight=False)


def _write_csv(path: Path, rows: list[dict]) -> None:
    columns = list(rows[0]) if rows else ["vide"]
    with open(path, "w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, delimiter=";")
        writer.writeheader()
        writer.writerows(rows)


def _table(title: str, columns: list[str], rows: list[list]) -> Table:
    table = Table(title=title, title_justify="left", caption=None if rows else "aucun", caption_justify="left")
    for name in columns:
        table.add_column(name, overflow="fold")
    for row in rows:
        table.add_row(*(str(x) for x in row))
    return table


def _print(kind: str, r) -> None:
    out = Console()
    since = r.since.strftime("%d/%m/%Y") if r.since else "le début"
    out.print(f"[bold]Services : {r.view.label}[/bold] — depuis le {since} — groupes de moins de {r.min_group} "
              "questions masqués", highlight=False)
    if kind == "gaps":
        out.print(f"{r.gaps} question(s) sans réponse sûre sur {r.questions}.", highlight=False)
        out.print(_table("Sujets sans réponse sûre", ["Question type", "Sujet", "Questions", "Introuvables",
                                                       "Incertaines", "Refusées", "Tendance (semaines)"],
                         [[t.question, t.key, t.count, t.not_found, t.uncertain, t.refused,
                           " ".join(f"{w.split('-')[1]}:{n}" for w, n in t.weeks[-6:])] for t in r.topics]))
        hidden = r.hidden_topics
    elif kind == "feedback":
        out.print(f"{r.not_useful} réponse(s) « Pas utile » sur {r.opinions} avis.", highlight=False)
        out.print(_table("Par étiquette", ["Étiquette", "Réponses", "Commentaires (masqués)"],
                         [[t.tag, t.count, " | ".join(t.comments)] for t in r.tags]))
        out.print(_table("Par document cité", ["Document", "Titre", "Réponses"],
                         [[d.doc_id, d.title, d.count] for d in r.documents]))
        hidden = r.hidden_groups
    else:
        for attr, label in r.SECTIONS:
            out.print(_table(f"Documents {label}", ["Document", "Titre", "Services", "Date", "Citations"],
                             [[d.doc_id, d.title, ", ".join(d.services), d.date or "—", d.count]
                              for d in getattr(r, attr)]))
        hidden = r.hidden_lines
    if hidden:
        out.print(f"[dim]{hidden} groupe(s) de moins de {r.min_group} questions non affiché(s).[/dim]", highlight=False)
