"""Measures and memory guard of ``tools.bench_footprint``: resident memory, disk usage, and a watchdog that stops a
worker before it starves the machine.

The watchdog runs in the parent: it polls the worker's resident memory and the machine's available memory
(``MemAvailable`` of ``/proc/meminfo``) every second, and kills the worker when less than ``min_available_mb`` is
left, so that an index too large for the machine stops the benchmark instead of the other jobs on it.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

MB = 1024 * 1024


def peak_rss_mb() -> float:
    """High-water mark of this process's resident memory (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _status_kb(pid: int | str, field: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def current_rss_mb(pid: int | str = "self") -> float:
    kb = _status_kb(pid, "VmRSS")
    return kb / 1024 if kb is not None else (peak_rss_mb() if pid == "self" else 0.0)


def anon_rss_mb(pid: int | str = "self") -> float:
    """Anonymous resident memory (``RssAnon``): what the process really holds. The rest of its resident memory
    (``RssFile``) is pages of the index files it maps, page cache that the kernel reclaims under pressure."""
    kb = _status_kb(pid, "RssAnon")
    return kb / 1024 if kb is not None else 0.0


def mem_available_mb() -> float | None:
    """``MemAvailable`` of the machine (what can still be allocated without swapping), or None off Linux."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return None


def disk_usage(path: Path) -> tuple[int, int]:
    """(bytes allocated on disk, as ``du`` counts them; apparent size in bytes) of every file under ``path``."""
    allocated = apparent = 0
    for folder, _, files in os.walk(path):
        for name in files:
            st = os.lstat(os.path.join(folder, name))
            allocated += st.st_blocks * 512
            apparent += st.st_size
    return allocated, apparent


class MemoryGuardError(RuntimeError):
    """The watchdog stopped a worker: the machine was running out of memory."""


@dataclass(frozen=True, slots=True)
class Watched:
    result: dict
    max_rss_mb: float  # highest resident memory of the worker seen by the watchdog (1 s polls)
    max_anon_mb: float  # highest anonymous resident memory (RssAnon), the part not backed by the index files
    min_available_mb: float | None  # lowest MemAvailable of the machine seen meanwhile


def run_watched(args: list[str], cwd: Path, min_available_mb: float, poll_s: float = 1.0) -> Watched:
    """Run ``python -m tools.bench_footprint ARGS`` in a fresh process, its stderr (progress) passed through, and return
    the JSON of its last stdout line. Kills it (and raises ``MemoryGuardError``) when the machine's available memory
    falls under ``min_available_mb``."""
    child = subprocess.Popen(
        [sys.executable, "-m", "tools.bench_footprint", *args], cwd=cwd, stdout=subprocess.PIPE, text=True,
        start_new_session=True,
    )
    max_rss = max_anon = 0.0
    low = None
    try:
        while child.poll() is None:
            rss, available = current_rss_mb(child.pid), mem_available_mb()
            max_rss, max_anon = max(max_rss, rss), max(max_anon, anon_rss_mb(child.pid))
            if available is not None:
                low = available if low is None else min(low, available)
                if available < min_available_mb:
                    os.killpg(child.pid, signal.SIGKILL)
                    child.wait()
                    raise MemoryGuardError(
                        f"banc arrêté : mémoire disponible de la machine {available / 1024:.1f} Go < "
                        f"{min_available_mb / 1024:.1f} Go (le processus de mesure occupait {rss / 1024:.1f} Go) / "
                        f"benchmark stopped: machine MemAvailable {available / 1024:.1f} GB < "
                        f"{min_available_mb / 1024:.1f} GB, worker RSS {rss / 1024:.1f} GB"
                    )
            time.sleep(poll_s)
        out = child.stdout.read() if child.stdout else ""
    except BaseException:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
        raise
    if child.returncode != 0:
        raise SystemExit(f"le processus de mesure {' '.join(args)} a échoué (code {child.returncode})")
    lines = out.strip().splitlines()
    if not lines:
        raise SystemExit(f"le processus de mesure {' '.join(args)} n'a rien renvoyé")
    return Watched(json.loads(lines[-1]), max_rss, max_anon, low)


def progress(message: str) -> None:
    """One progress line of a worker, on stderr (the parent passes it through)."""
    print(message, file=sys.stderr, flush=True)
