"""Files of an evaluation run, readable without a notebook: ``results.jsonl`` (one record per question),
``summary.json``, ``report.md`` (Markdown) and PNG charts (``scores_by_type.png``, ``latency.png``) drawn with
matplotlib's Agg backend.

``rescore(run_dir)`` recomputes the metrics, the summary, the report and the charts from ``results.jsonl`` alone
(after a change of the metrics, without running the questions again).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from evals.calibration import calibration_chart, outcome_lines

RESULTS = "results.jsonl"
SUMMARY = "summary.json"
REPORT = "report.md"
CHARTS = ("scores_by_type.png", "latency.png")


def read_results(run_dir: str | Path) -> list[dict]:
    path = Path(run_dir) / RESULTS
    if not path.is_file():
        raise FileNotFoundError(f"{path} introuvable : {run_dir} n'est pas le dossier d'une évaluation")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def read_summary(run_dir: str | Path) -> dict:
    return json.loads((Path(run_dir) / SUMMARY).read_text(encoding="utf-8"))


def write_run(out_dir: str | Path, records: list[dict], summary: dict) -> list[Path]:
    """Write every file of a run; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    path = out / RESULTS
    with path.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False, default=_json_default) + "\n")
    written.append(path)
    path = out / SUMMARY
    path.write_text(json.dumps(summary, ensure_ascii=False, indent=2, default=_json_default), encoding="utf-8")
    written.append(path)
    charts = write_charts(out, summary, records)
    path = out / REPORT
    path.write_text(markdown(summary, records, charts=[c.name for c in charts]), encoding="utf-8")
    written.append(path)
    return written + charts


def rescore(run_dir: str | Path) -> dict:
    from evals.metrics import summarise

    records = read_results(run_dir)
    old = read_summary(run_dir) if (Path(run_dir) / SUMMARY).is_file() else {}
    meta_keys = ("dataset", "config", "settings", "index", "embedder", "generator", "llm_model", "judge", "depth",
                 "limit", "run_seconds", "started_at", "finished_at", "machine", "command")
    summary = summarise(records, {k: old[k] for k in meta_keys if k in old})
    write_run(run_dir, records, summary)
    return summary


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"non sérialisable : {type(value).__name__}")


# --------------------------------------------------------------------------------------------------------------
# Charts
# --------------------------------------------------------------------------------------------------------------


def write_charts(out: Path, summary: dict, records: list[dict]) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    paths: list[Path] = []
    by_type = summary.get("by_type") or {}
    types = list(by_type)
    series = [
        ("nDCG@10", lambda t: by_type[t]["retrieval"].get("ndcg@10")),
        ("recall@5", lambda t: by_type[t]["retrieval"].get("recall@5")),
        ("réponse trouvée", lambda t: by_type[t].get("answer_found")),
        ("comportement correct", lambda t: by_type[t].get("refusal_correct")),
    ]
    fig, ax = plt.subplots(figsize=(max(7.0, 1.4 * len(types) + 2), 4.5))
    width = 0.8 / len(series)
    for i, (label, get) in enumerate(series):
        values = [get(t) for t in types]
        xs = [x + (i - (len(series) - 1) / 2) * width for x in range(len(types))]
        bars = ax.bar(xs, [v if v is not None else 0 for v in values], width, label=label)
        for bar, v in zip(bars, values):
            if v is None:
                bar.set_alpha(0)
    ax.set_xticks(range(len(types)))
    ax.set_xticklabels([f"{t}\n(n={by_type[t]['questions']})" for t in types], fontsize=8)
    ax.set_ylim(0, 1.2)
    ax.set_yticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    ax.set_ylabel("score")
    ax.set_title(f"Scores par type de question — {_title(summary)}", fontsize=10)
    ax.legend(fontsize=8, loc="upper center", ncol=len(series), frameon=False)
    ax.grid(axis="y", alpha=0.3)
    paths.append(_save(fig, out / "scores_by_type.png"))

    stages = [s for s in ("candidates", "retrieve", "first_token", "generate", "total")
              if any((r.get("timings_ms") or {}).get(s) is not None for r in records)]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    data = [[r["timings_ms"][s] for r in records if (r.get("timings_ms") or {}).get(s) is not None] for s in stages]
    if data:
        ax.boxplot(data, showfliers=True, whis=(5, 95))
        ax.set_xticks(range(1, len(stages) + 1))
        ax.set_xticklabels(stages)
        if max(max(d) for d in data if d) / max(min(min(d) for d in data if d), 1e-3) > 50:
            ax.set_yscale("log")
    ax.set_ylabel("ms (moustaches : p5–p95)")
    ax.set_title(f"Latence par étape — {_title(summary)}", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    paths.append(_save(fig, out / "latency.png"))
    chart = calibration_chart(out, summary, records, _save)
    if chart is not None:
        paths.append(chart)
    return paths


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _title(summary: dict) -> str:
    dataset = (summary.get("dataset") or {}).get("name", "?")
    config = (summary.get("config") or {}).get("name", "?")
    return f"{dataset} · {config}"


# --------------------------------------------------------------------------------------------------------------
# Markdown
# --------------------------------------------------------------------------------------------------------------


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "oui" if value else "non"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _sci(value: Any) -> str:
    return "—" if value is None else f"{value:.3g}"


def markdown(summary: dict, records: list[dict], *, charts: list[str] = ()) -> str:
    ds, cfg, s = summary.get("dataset") or {}, summary.get("config") or {}, summary.get("settings") or {}
    search, embedder = s.get("search") or {}, s.get("embedder") or {}
    lines = [f"# Évaluation — {_title(summary)}", ""]
    access = summary["access"]
    verdict = "**0 fuite d'accès**" if access["ok"] else f"**{access['leaks']} FUITE(S) D'ACCÈS — évaluation en échec**"
    lines += [
        f"- Jeu : `{ds.get('name')}` ({summary.get('questions')} questions, {ds.get('skipped', 0)} écartées) — "
        f"source `{ds.get('source')}`",
        f"- Configuration : `{cfg.get('name')}` {('— ' + cfg['description']) if cfg.get('description') else ''}"
        f" (surcharges : `{json.dumps(cfg.get('overrides') or {}, ensure_ascii=False)}`)",
        f"- Recherche : mode `{search.get('mode')}`, k={search.get('k')}, prefetch={search.get('prefetch')}, "
        f"max_per_doc={search.get('max_per_doc')}, "
        f"reranker={search.get('reranker') or 'aucun'} ; embedder `{summary.get('embedder')}` "
        f"(kind {embedder.get('kind')}) ; générateur `{summary.get('generator')}`",
        f"- Index : {(summary.get('index') or {}).get('documents')} documents, "
        f"{(summary.get('index') or {}).get('chunks', '?')} extraits "
        f"({'réutilisé' if (summary.get('index') or {}).get('reused') else 'construit pour ce passage'}) ; "
        f"profondeur des métriques de recherche : {summary.get('depth')} extraits",
        f"- Accès : {verdict}",
        f"- Durée : {summary.get('run_seconds')} s ; erreurs : {summary.get('errors', 0)}",
        "",
    ]
    r = summary["retrieval"]
    lines += ["## Recherche (documents de référence, ranx)", "",
              f"Sur {r['n']} questions à réponse avec documents de référence.", "",
              "| recall@1 | recall@5 | recall@10 | MRR@10 | nDCG@10 | hit@5 |", "|---:|---:|---:|---:|---:|---:|",
              "| " + " | ".join(_fmt(r.get(m)) for m in ("recall@1", "recall@5", "recall@10", "mrr@10", "ndcg@10",
                                                          "hit@5")) + " |", ""]
    a, f = summary["answers"], summary["refusals"]
    lines += ["## Réponses et refus", "",
              "| mesure | valeur | n |", "|---|---:|---:|",
              f"| précision des citations | {_fmt(a['citation_precision'])} | {a['citation_precision_n']} |",
              f"| rappel des citations | {_fmt(a['citation_recall'])} | {a['citation_recall_n']} |",
              f"| réponse trouvée (passage ou réponse courte) | {_fmt(a['answer_found'])} | {a['answer_found_n']} |",
              f"| passage de référence dans les sources | {_fmt(a['gold_passage_in_sources'])} | "
              f"{a['gold_passage_in_sources_n']} |",
              f"| questions à réponse effectivement répondues | {_fmt(a['answered_rate'])} | |",
              f"| refus à tort | {_fmt(a['false_refusal_rate'])} | |",
              f"| refus correct — hors corpus | {_fmt(f['refuse_not_found'])} | {f['refuse_not_found_n']} |",
              f"| refus correct — sans droit d'accès | {_fmt(f['refuse_no_access'])} | {f['refuse_no_access_n']} |",
              f"| citations non étayées | {a['unsupported_citations']} / {a['citations']} | |", ""]
    lines += outcome_lines(summary)
    lines += ["## Par type de question", "",
              "| type | n | nDCG@10 | recall@5 | MRR@10 | réponse trouvée | préc. citations | comportement correct |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for kind, t in summary["by_type"].items():
        lines.append(f"| {kind} | {t['questions']} | {_fmt(t['retrieval'].get('ndcg@10'))} | "
                     f"{_fmt(t['retrieval'].get('recall@5'))} | {_fmt(t['retrieval'].get('mrr@10'))} | "
                     f"{_fmt(t['answer_found'])} | {_fmt(t['citation_precision'])} | {_fmt(t['refusal_correct'])} |")
    lines += ["", "## Latence (ms)", "", "| étape | n | p50 | p95 | max |", "|---|---:|---:|---:|---:|"]
    for stage, p in summary["latency_ms"].items():
        lines.append(f"| {stage} | {p['n']} | {_fmt(p['p50_ms'], 1)} | {_fmt(p['p95_ms'], 1)} | {_fmt(p['max_ms'], 1)} |")
    fp = summary["footprint"]
    lines += ["", "## Coût et empreinte", ""]
    if fp.get("llm"):
        lines += [f"Modèle `{fp['model']}` ; {fp['method']}.", "",
                  "| réponses générées | jetons d'entrée (moy.) | jetons de sortie (moy.) | énergie par réponse (kWh) | "
                  "émissions par réponse (kgCO2eq) |", "|---:|---:|---:|---:|---:|",
                  f"| {fp['answers_generated']} | {_fmt(fp['prompt_tokens_mean'], 0)} | "
                  f"{_fmt(fp['completion_tokens_mean'], 0)} | {_sci(fp['energy_kwh_per_answer'])} | "
                  f"{_sci(fp['gwp_kgco2eq_per_answer'])} |", ""]
        if fp.get("errors"):
            lines += [f"EcoLogits : {'; '.join(fp['errors'])}", ""]
    else:
        lines += [fp.get("note", ""), ""]
    j = summary["judge_scores"]
    lines += ["## Juge LLM", ""]
    if j.get("skipped"):
        lines += [f"Non exécuté : {j['reason']}.", ""]
    else:
        lines += [f"Modèle `{j['model']}` ({j['endpoint']}) ; {j['judged']} réponses jugées, {j['errors']} erreurs.", "",
                  f"- fidélité moyenne : {_fmt(j['faithfulness'])}", f"- exactitude moyenne : {_fmt(j['correctness'])}",
                  "", "Le prompt du juge est dans `summary.json` (`judge.prompt`).", ""]
    if not access["ok"]:
        lines += ["## Fuites d'accès", "", "| question | utilisateur | où | document | services |", "|---|---|---|---|---|"]
        for leak in access["examples"]:
            lines.append(f"| {leak['question']} | {leak['user']} | {leak['where']} | {leak['doc_id']} | "
                         f"{leak.get('services')} / {leak.get('doc_services')} |")
        lines.append("")
    misses = [x for x in records if x.get("metrics", {}).get("hit@5") == 0.0][:15]
    wrong = [x for x in records if x.get("expected") != "answer" and not x.get("metrics", {}).get("refusal_correct")][:15]
    if misses:
        lines += ["## Exemples : document de référence absent des 5 premiers", "",
                  "| id | type | question | référence | 3 premiers documents |", "|---|---|---|---|---|"]
        for x in misses:
            lines.append(f"| {x['id']} | {x.get('type')} | {_cell(x['question'])} | {', '.join(x['gold_docs'])} | "
                         f"{', '.join(x.get('retrieved_docs', [])[:3])} |")
        lines.append("")
    if wrong:
        lines += ["## Exemples : refus attendu, non obtenu", "", "| id | attendu | question | réponse (début) |",
                  "|---|---|---|---|"]
        for x in wrong:
            lines.append(f"| {x['id']} | {x['expected']} | {_cell(x['question'])} | {_cell((x.get('answer') or '')[:140])} |")
        lines.append("")
    if charts:
        lines += ["## Graphiques", ""] + [f"![{c}]({c})" for c in charts] + [""]
    lines += ["Définitions des mesures : `docs/evaluation.md`. Comparer deux passages : "
              "`collectivia eval compare DOSSIER_A DOSSIER_B`.", ""]
    return "\n".join(lines)


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")
