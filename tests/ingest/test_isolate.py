"""Parsing in worker processes: a file that runs a parser out of memory or time fails alone, in French, by name."""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest

from fixtures import make_md, make_scanned_pdf, make_txt
from ingest.isolate import IsolationPolicy, parse_isolated, parse_one
from ingest.parse import ParseOptions


def heavy_text(path: Path, mb: int) -> Path:
    """A plain-text file of ``mb`` MB in one paragraph: parsing it takes several times its size in memory."""
    line = "Le conseil municipal délibère sur le budget primitif de la commune. "
    path.write_text(line * (mb * 1_000_000 // len(line.encode())), encoding="utf-8")
    return path


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="memory limit of workers: Linux only")
def test_a_file_that_needs_more_memory_than_allowed_fails_alone_and_the_next_ones_parse(tmp_path):
    first, second = make_md(tmp_path / "a.md", title="Note A"), make_txt(tmp_path / "c.txt", title="Note C")
    heavy = heavy_text(tmp_path / "b.txt", 40)
    policy = IsolationPolicy(timeout_s=120, workers=1, memory_mb=150)  # the first parse alone takes ~100 Mo
    results = list(parse_isolated([first, heavy, second], ParseOptions(), policy))
    assert [path for path, _ in results] == [first, heavy, second]
    assert "Note A" in results[0][1].text and "NOTE C" in results[2][1].text
    reason = results[1][1]
    assert isinstance(reason, str) and reason.startswith(f"{heavy} : ") and "mémoire insuffisante" in reason, reason
    assert "150 Mo" in reason


@pytest.mark.slow
def test_results_come_back_in_order_across_worker_replacements(tmp_path):
    paths = [make_md(tmp_path / f"{n}.md", title=f"Note {n}") for n in range(3)]
    policy = IsolationPolicy(timeout_s=120, workers=2, files_per_worker=1)  # fresh workers after every two files
    results = list(parse_isolated(paths, ParseOptions(), policy))
    assert [path for path, _ in results] == paths
    assert [r.text.split("\n\n")[0] for _, r in results] == ["Note 0", "Note 1", "Note 2"]


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except (OSError, ValueError):
            continue
        if entry.isdigit() and int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry))
    return found


class WorkerKiller(threading.Thread):
    """Kills (SIGKILL, as the system does out of memory) every parsing worker that starts a program: here only the
    OCR of a scanned PDF does, so the crash always happens on that file."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.done = threading.Event()
        self.kills = 0

    def run(self) -> None:
        while not self.done.is_set():
            for worker in _children(os.getpid()):
                try:
                    spawned = "multiprocessing" in Path(f"/proc/{worker}/cmdline").read_text()
                except OSError:
                    continue
                if spawned and _children(worker):
                    for pid in [worker, *_children(worker)]:
                        try:
                            os.kill(pid, signal.SIGKILL)
                        except OSError:
                            pass
                    self.kills += 1
            time.sleep(0.02)


@pytest.mark.slow
@pytest.mark.skipif(not (os.path.exists("/proc/self/stat") and shutil.which("tesseract")), reason="Linux, tesseract")
@pytest.mark.parametrize("workers", [1, 2])
def test_a_parser_killed_on_a_file_fails_that_file_only(tmp_path, workers):
    first, last = make_md(tmp_path / "a.md", title="Note A"), make_txt(tmp_path / "c.txt", title="Note C")
    scan = make_scanned_pdf(tmp_path / "scan.pdf", ["Le conseil municipal approuve", "le règlement du cimetière."])
    killer = WorkerKiller()
    killer.start()
    try:
        results = list(parse_isolated([first, scan, last], ParseOptions(), IsolationPolicy(timeout_s=120, workers=workers)))
    finally:
        killer.done.set()
        killer.join()
    assert killer.kills >= 1
    assert [path for path, _ in results] == [first, scan, last]
    assert "Note A" in results[0][1].text and "NOTE C" in results[2][1].text
    assert results[1][1] == f"{scan} : le lecteur de fichiers s'est arrêté brutalement sur ce fichier (fichier corrompu ?)"


def test_a_bad_file_gives_the_parsers_french_reason_naming_it(tmp_path):
    fake = tmp_path / "scan.pdf"
    fake.write_text("pas un PDF", encoding="utf-8")
    reason = parse_one(fake, ParseOptions(), IsolationPolicy(timeout_s=120))
    assert isinstance(reason, str) and reason.startswith(f"{fake} : ") and "pas un fichier PDF" in reason
