"""How long the purge of the chat history takes on a large history.

    python -m tools.bench_retention [--questions 100000] [--per-thread 5] [--cards 3] [--database-url URL] [--json]

Generates a history of ``--questions`` questions in a fresh database (SQLite in a temporary folder, or the given
PostgreSQL database, emptied first): conversations of ``--per-thread`` questions, each question a user message and
an answer with ``--cards`` source cards and its row in the reports' question log, one answer in ten with feedback
(Chainlit's table and Collectivia's), last activity spread evenly over the past 360 days among 50 agents. Then
times ``collectivia purge``'s code with the default retention (180 days, so about half goes): a dry run, then the
purge. PostgreSQL tables are analysed after the load, as autovacuum does on a live server. Target: ≤ 30 s for
100,000 questions.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import random
import tempfile
import time
import uuid
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from chat_ui.history_db import database_url, ensure_schema, is_sqlite
from chat_ui.retention import purge

NOW = dt.datetime(2026, 12, 1, 12, 0, 0, tzinfo=dt.timezone.utc)
TABLES = ("collectivia_questions", "collectivia_feedback", "feedbacks", "elements", "steps", "threads", "users")


def _stamp(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


def _rows(questions: int, per_thread: int, cards: int, seed: int = 7) -> dict[str, list[dict]]:
    rng = random.Random(seed)
    users = [{"id": str(uuid.uuid4()), "identifier": f"agent{i:02d}", "metadata": "{}", "createdAt": _stamp(NOW)}
             for i in range(50)]
    out: dict[str, list[dict]] = {t: [] for t in TABLES}
    out["users"] = users
    for t in range(-(-questions // per_thread)):
        user = users[t % len(users)]
        thread_id = str(uuid.uuid4())
        last = NOW - dt.timedelta(days=rng.uniform(0, 360))
        asked = min(per_thread, questions - t * per_thread)
        out["threads"].append({"id": thread_id, "createdAt": _stamp(last - dt.timedelta(minutes=10 * asked)),
                               "name": f"Question {t}", "userId": user["id"], "userIdentifier": user["identifier"],
                               "metadata": "{}"})
        for q in range(asked):
            at = last - dt.timedelta(minutes=10 * (asked - 1 - q))
            question, answer = str(uuid.uuid4()), str(uuid.uuid4())
            for step_id, kind, output in ((question, "user_message", f"Question {t}.{q} sur les congés annuels ?"),
                                          (answer, "assistant_message", "Réponse fondée sur les documents. " * 12)):
                out["steps"].append({"id": step_id, "name": kind, "type": kind, "threadId": thread_id,
                                     "streaming": False, "output": output, "createdAt": _stamp(at),
                                     "metadata": "{}"})
            out["collectivia_questions"].append({
                "id": answer, "createdAt": at.isoformat(timespec="seconds"), "threadId": thread_id,
                "services": '["rh"]', "outcome": "answer", "refused": False,
                "question": f"Question {t}.{q} sur les congés annuels ?", "docIds": '["PROC-1"]',
                "repealedDocIds": "[]", "topic": "conges annuels"})
            for n in range(cards):
                out["elements"].append({"id": str(uuid.uuid4()), "threadId": thread_id, "type": "custom",
                                        "name": "Source", "display": "inline", "forId": answer,
                                        "mime": "application/json",
                                        "props": json.dumps({"n": n + 1, "title": "Congés", "passage": "x" * 300})})
            if rng.random() < 0.1:
                fid = str(uuid.uuid4())
                out["feedbacks"].append({"id": fid, "forId": answer, "threadId": thread_id, "value": 0,
                                         "comment": "incomplet"})
                out["collectivia_feedback"].append({
                    "id": fid, "stepId": answer, "threadId": thread_id, "userIdentifier": user["identifier"],
                    "value": 0, "tags": '["incomplet"]', "comment": "Incomplet.", "question": "Question ?",
                    "docIds": '["PROC-1"]', "createdAt": at.isoformat(timespec="seconds")})
    return out


async def _fill(url: str, rows: dict[str, list[dict]]) -> None:
    engine = create_async_engine(url)
    async with engine.begin() as conn:
        for table in TABLES:
            await conn.execute(text(f"DELETE FROM {table}"))
        for table in reversed(TABLES):
            batch = rows[table]
            if not batch:
                continue
            columns = list(batch[0])
            statement = text(f"INSERT INTO {table} ({', '.join(f'{chr(34)}{c}{chr(34)}' for c in columns)}) "
                             f"VALUES ({', '.join(':' + c for c in columns)})")
            for start in range(0, len(batch), 5000):
                await conn.execute(statement, batch[start:start + 5000])
    if not is_sqlite(url):  # statistics, as autovacuum keeps them on a live server
        async with engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text("ANALYZE"))
    await engine.dispose()


async def _count(url: str) -> dict[str, int]:
    engine = create_async_engine(url)
    async with engine.connect() as conn:
        out = {t: int((await conn.execute(text(f"SELECT COUNT(*) FROM {t}"))).scalar()) for t in TABLES}
    await engine.dispose()
    return out


async def bench(url: str, questions: int, per_thread: int, cards: int) -> dict:
    await ensure_schema(url)
    rows = _rows(questions, per_thread, cards)
    started = time.perf_counter()
    await _fill(url, rows)
    filled = time.perf_counter() - started
    before = await _count(url)
    dry = await purge(url, 180, now=NOW, dry_run=True)
    done = await purge(url, 180, now=NOW)
    after = await _count(url)
    return {"database": "sqlite" if is_sqlite(url) else "postgresql", "questions": questions,
            "rows_before": before, "rows_after": after, "fill_s": round(filled, 1),
            "dry_run_s": round(dry.seconds, 2), "purge_s": round(done.seconds, 2), "purged": done.to_dict(),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--questions", type=int, default=100_000)
    parser.add_argument("--per-thread", type=int, default=5)
    parser.add_argument("--cards", type=int, default=3)
    parser.add_argument("--database-url", help="PostgreSQL database to use (emptied!); default: a temporary SQLite")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="collectivia-bench-retention-") as folder:
        url = database_url(args.database_url, Path(folder))
        result = asyncio.run(bench(url, args.questions, args.per_thread, args.cards))
    if args.json:
        print(json.dumps(result, indent=2))
        return
    p = result["purged"]
    print(f"{result['database']}: {result['questions']:,} questions in {result['rows_before']['threads']:,} "
          f"conversations ({result['rows_before']['steps']:,} messages, {result['rows_before']['elements']:,} cards, "
          f"{result['rows_before']['collectivia_feedback']:,} feedbacks), {result['machine']}")
    print(f"  dry run      {result['dry_run_s']:6.2f} s")
    print(f"  purge        {result['purge_s']:6.2f} s  (target ≤ 30 s): {p['threads']:,} conversations, "
          f"{p['steps']:,} messages, {p['elements']:,} cards, {p['feedbacks'] + p['answer_feedback']:,} feedback rows, "
          f"{p['report_rows']:,} question-log rows")
    print(f"  left         {result['rows_after']['threads']:,} conversations, {result['rows_after']['steps']:,} messages")


if __name__ == "__main__":
    main()
