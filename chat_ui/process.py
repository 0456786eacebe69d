"""Start and stop a local ``collectivia serve`` process (benchmarks, screenshots, tests)."""

from __future__ import annotations

import socket
import subprocess


def free_port() -> int:
    """A TCP port free on the loopback interface right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(process: subprocess.Popen, timeout_s: float = 20) -> None:
    """Ask the process to stop, and kill it if it has not after ``timeout_s`` seconds."""
    process.terminate()
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
