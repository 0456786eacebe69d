"""The managers' reports on a large history: 100,000 logged questions in SQLite, the time of each report.

    python -m tools.bench_reports [--questions 100000] [--feedback 10000] [--days 180] [--json]

A temporary SQLite history (the chat's schema, ``chat_ui.history_db``) receives N questions spread over ``--days``,
written as the chat writes them (``chat_ui.reports.history.question_row``: masked, topic key computed): agents of
six services, ~300 subjects asked the ways agents type them (shorthand, missing accents, typos, word order), a
third without a sure answer; ``--feedback`` opinions (two thirds « Pas utile », tags, comments) on some of the
answers; 400 documents in the index records. Then each report is built for an administrator (every service, the
worst case) and for a manager of two services, over the whole period, through ``chat_ui.reports.build`` (reading
the database included). Target: the gaps report in ≤ 5 s.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import platform
import random
import sqlite3
import tempfile
import time
import uuid
from pathlib import Path

from index.offline import configure_offline

configure_offline()

SERVICES = ("rh", "urbanisme", "finances", "etat-civil", "technique", "education")
SUBJECTS = {
    "rh": ["report des congés", "jours de télétravail", "accident du travail", "mutuelle employeur",
           "compte épargne temps", "heures supplémentaires", "entretien professionnel", "prime annuelle",
           "temps partiel", "formation CNFPT", "arrêt maladie", "titres restaurant", "astreinte week-end"],
    "urbanisme": ["délai permis de construire", "déclaration préalable clôture", "certificat d'urbanisme",
                  "abri de jardin", "véranda", "piscine enterrée", "panneaux solaires", "division parcellaire"],
    "finances": ["bon de commande", "mandat de paiement", "régie de recettes", "subvention association",
                 "facture fournisseur", "budget primitif", "amortissement véhicule"],
    "etat-civil": ["acte de naissance", "mariage étranger", "PACS", "changement de prénom", "livret de famille",
                   "reconnaissance anticipée", "carte d'identité"],
    "technique": ["déneigement", "éclairage public", "nids de poule", "espaces verts", "salle des fêtes"],
    "education": ["inscription cantine", "périscolaire", "transport scolaire", "dérogation scolaire"],
}
FORMS = ["{s} ?", "cb de temps pour {s}", "comment faire pour {s}", "{s} c'est quoi la règle", "qd {s}",
         "je cherche la procédure {s}", "{s} : qui contacter", "infos sur {s} stp", "{s} délai", "{s} pour un agent"]
TAGS = ["hallucination", "source manquante", "source obsolète", "incomplet", "hors sujet"]


def _typo(text: str, rng: random.Random) -> str:
    words = text.split()
    i = rng.randrange(len(words))
    w = words[i]
    if len(w) > 5:
        j = rng.randrange(1, len(w) - 2)
        words[i] = w[:j] + w[j + 1] + w[j] + w[j + 2:]
    return " ".join(words)


def _questions(rng: random.Random) -> list[tuple[str, str]]:
    """(service, question) wordings: ~300 subjects × forms × variants."""
    out = []
    for service, subjects in SUBJECTS.items():
        for subject in subjects:
            for extra in ("", " 2026", " agent contractuel", " en mairie"):
                for form in FORMS:
                    text = form.format(s=subject + extra)
                    out.append((service, text))
                    out.append((service, _typo(text, rng)))
                    out.append((service, text.lower().replace("é", "e").replace("è", "e")))
    return out


def generate(db: Path, n: int, feedback: int, days: int, seed: int = 7) -> dict:
    from chat_ui.history_db import database_url, ensure_schema
    from chat_ui.reports.history import INSERT_QUESTION, question_row

    rng = random.Random(seed)
    url = database_url(None, db.parent)
    asyncio.run(ensure_schema(url))
    wordings = _questions(rng)
    docs = [f"DOC-{i:03d}" for i in range(400)]
    now = dt.datetime.now(dt.timezone.utc)
    started = time.perf_counter()
    cache: dict[str, dict] = {}
    rows = []
    for _ in range(n):
        service, text = rng.choice(wordings)
        base = cache.get(text)
        if base is None:  # masking and topic key once per wording (what the chat does per answer)
            base = cache[text] = question_row(answer_id="", thread_id=None, services=(), outcome="answer",
                                              refused=False, question=text, doc_ids=())
        outcome = rng.choices(["answer", "uncertain", "not_found"], weights=[66, 17, 17])[0]
        services = [service] + ([rng.choice(SERVICES)] if rng.random() < 0.2 else [])
        cited = rng.sample(docs, rng.randint(1, 3)) if outcome != "not_found" else []
        rows.append({**base, "id": str(uuid.uuid4()), "threadId": str(uuid.uuid4()),
                     "createdAt": (now - dt.timedelta(seconds=rng.uniform(0, days * 86400))).isoformat(
                         timespec="seconds"),
                     "services": json.dumps(sorted(set(services))), "outcome": outcome,
                     "refused": outcome == "not_found" and rng.random() < 0.5, "docIds": json.dumps(cited),
                     "repealedDocIds": json.dumps(cited[:1] if rng.random() < 0.01 else [])})
    written = time.perf_counter() - started
    opinions = []
    for i, row in enumerate(rng.sample(rows, min(feedback, len(rows)))):
        useful = rng.random() < 0.33
        opinions.append((str(uuid.uuid4()), row["id"], row["threadId"], f"agent{i % 500}", int(useful),
                         json.dumps([] if useful else rng.sample(TAGS, rng.randint(0, 2))),
                         "" if useful or rng.random() < 0.7 else "Réponse à revoir", "q", row["docIds"],
                         row["createdAt"]))
    with sqlite3.connect(db) as conn:
        conn.executemany(INSERT_QUESTION, rows)
        conn.executemany('INSERT INTO collectivia_feedback ("id", "stepId", "threadId", "userIdentifier", "value", '
                         '"tags", "comment", "question", "docIds", "createdAt") VALUES (?,?,?,?,?,?,?,?,?,?)', opinions)
    return {"url": url, "docs": docs, "wordings": len(cache), "generate_s": round(time.perf_counter() - started, 2),
            "rows_built_s": round(written, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=100_000)
    parser.add_argument("--feedback", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=180)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from chat_ui.reports.access import View
    from chat_ui.reports.build import make_report
    from collectivia.settings import ReportSettings
    from index.store import DocRecord

    with tempfile.TemporaryDirectory(prefix="collectivia-bench-reports-") as tmp:
        made = generate(Path(tmp) / "chat.db", args.questions, args.feedback, args.days)
        records = {d: DocRecord(d, "v1", "", f"Document {d}", (SERVICES[i % len(SERVICES)],), "procedure",
                                "abroge" if i % 50 == 0 else "en_vigueur", f"{2015 + i % 11}-01-01")
                   for i, d in enumerate(made["docs"])}
        since = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=args.days + 1)
        settings = ReportSettings()
        results = {"questions": args.questions, "feedback": args.feedback, "days": args.days,
                   "distinct_wordings": made["wordings"], "generate_s": made["generate_s"],
                   "machine": f"{platform.machine()}, Python {platform.python_version()}", "reports": {}}
        for who, view in (("admin", View(None)), ("manager", View(frozenset({"rh", "finances"})))):
            for kind in ("gaps", "feedback", "documents"):
                started = time.perf_counter()
                report = asyncio.run(make_report(kind, view, made["url"], records, settings, since))
                took = time.perf_counter() - started
                detail = {"s": round(took, 2)}
                if kind == "gaps":
                    detail.update(questions=report.questions, gaps=report.gaps, topics=len(report.topics),
                                  hidden_topics=report.hidden_topics)
                results["reports"][f"{kind} ({who})"] = detail
    if args.json:
        print(json.dumps(results, ensure_ascii=False, indent=2))
        return
    print(f"{args.questions} questions over {args.days} days ({made['wordings']} wordings), {args.feedback} opinions; "
          f"{results['machine']}; generated in {made['generate_s']} s")
    for name, detail in results["reports"].items():
        extra = ", ".join(f"{k} {v}" for k, v in detail.items() if k != "s")
        print(f"  {name:22s} {detail['s']:6.2f} s" + (f"  ({extra})" if extra else ""))
    print("target: gaps report ≤ 5 s")


if __name__ == "__main__":
    main()
