"""How fast the chat starts and how much memory it holds at rest.

    python -m tools.bench_serve [--data-dir DIR] [--runs N] [--json]

Each run starts ``collectivia serve`` in a fresh process on a free port (as ``./collectivia.sh start`` does) and
measures:

- **start → login page**: from launching the process to the first complete answer of ``GET /`` (the login page,
  Chainlit's HTML, which the browser renders at once);
- **memory at rest**: resident memory (RSS) of the process once the embedding model and the index are loaded and
  nothing happens (RSS steady for 4 s), and right after the login page is served.

The index of the data directory is used as it is (``COLLECTIVIA_DATA_DIR``, ``./data`` by default; index the
sample commune first with ``collectivia ingest corpora/``); the chat must not be running on it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from chat_ui.process import free_port, stop



def _rss_mb(process) -> float:
    import psutil

    try:
        proc = psutil.Process(process.pid)
        return sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)]) / 1e6
    except psutil.NoSuchProcess:
        return 0.0


def index_size(data_dir: Path) -> str:
    """« N extraits » of the embedded index, read before the chat opens it."""
    info = data_dir / "qdrant" / "collectivia.json"
    if not info.is_file():
        return "aucun index (lancez d'abord « collectivia ingest corpora/ »)"
    from index.store import CollectionInfo
    from index.edge_store import EdgeStore
    store = EdgeStore(data_dir / "qdrant", CollectionInfo(**json.loads(info.read_text(encoding="utf-8"))))
    try:
        return f"{store.count()} extraits, {len(store.documents())} documents"
    finally:
        store.close()


def one_run(data_dir: Path, *, settle_s: float = 4.0, timeout_s: float = 180.0) -> dict:
    port = free_port()
    env = {**os.environ, "COLLECTIVIA_DATA_DIR": str(data_dir)}
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "collectivia.cli", "serve", "--port", str(port)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        login_s = None
        while time.perf_counter() - started < timeout_s:
            if process.poll() is not None:
                raise RuntimeError("collectivia serve s'est arrêté : " + process.stderr.read().decode()[-2000:])
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
                    page = response.read()
                    if response.status == 200 and b'id="root"' in page:
                        login_s = time.perf_counter() - started
                        break
            except OSError:
                time.sleep(0.05)
        if login_s is None:
            raise RuntimeError(f"page de connexion non servie en {timeout_s:.0f} s")
        rss_login = _rss_mb(process)
        # At rest: the background loading of the model and the index is over when memory stops moving.
        samples: list[tuple[float, float]] = []
        while time.perf_counter() - started < timeout_s:
            samples.append((time.perf_counter(), _rss_mb(process)))
            window = [m for t, m in samples if t >= samples[-1][0] - settle_s]
            if samples[-1][0] - samples[0][0] >= settle_s and max(window) - min(window) < 1.0:
                break
            time.sleep(0.25)
        return {"login_page_s": login_s, "rss_at_login_mb": rss_login, "rss_at_rest_mb": samples[-1][1],
                "rest_reached_s": samples[-1][0] - started - settle_s}
    finally:
        stop(process)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Démarrage et mémoire au repos du chat Collectivia.")
    parser.add_argument("--data-dir", type=Path, default=None, help="Dossier de données (défaut : COLLECTIVIA_DATA_DIR).")
    parser.add_argument("--runs", type=int, default=3, help="Nombre de démarrages mesurés (défaut : 3).")
    parser.add_argument("--json", action="store_true", help="Résultats en JSON.")
    args = parser.parse_args(argv)
    from collectivia.settings import Settings

    data_dir = (args.data_dir or Settings().data_dir).resolve()
    index = index_size(data_dir)
    runs = [one_run(data_dir) for _ in range(max(1, args.runs))]
    summary = {
        "data_dir": str(data_dir), "index": index, "runs": runs,
        "login_page_s_median": statistics.median(r["login_page_s"] for r in runs),
        "rss_at_rest_mb_median": statistics.median(r["rss_at_rest_mb"] for r in runs),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
    }
    if args.json:
        print(json.dumps(summary, indent=2, ensure_ascii=False))
        return 0
    print(f"collectivia serve — {summary['machine']} — index : {index}")
    for i, r in enumerate(runs, start=1):
        print(f"  run {i}: login page {r['login_page_s']:.2f} s (RSS {r['rss_at_login_mb']:.0f} MB), "
              f"at rest {r['rss_at_rest_mb']:.0f} MB (models and index loaded after {r['rest_reached_s']:.1f} s)")
    print(f"start → login page served   {summary['login_page_s_median']:.2f} s (median of {len(runs)})")
    print(f"memory at rest (RSS)        {summary['rss_at_rest_mb_median']:.0f} MB (median of {len(runs)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
