"""Give the memory of finished conversations back to the system.

CPython frees objects into its own arenas and glibc keeps freed heap pages for reuse: after a busy morning the
chat's resident memory stays near its peak although nothing uses it. When a conversation ends, a full garbage
collection and glibc's ``malloc_trim`` hand the free pages back (at most once every ``MIN_INTERVAL_S``; nothing on
a system without glibc).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import threading
import time

MIN_INTERVAL_S = 10.0
_lock = threading.Lock()
_last = [0.0]


def _libc():
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "malloc_trim") else None


_LIBC = _libc()


def release_memory(*, now: float | None = None) -> bool:
    """Collect garbage and trim the heap, unless done less than ``MIN_INTERVAL_S`` ago; whether it ran."""
    now = time.monotonic() if now is None else now
    with _lock:
        if now - _last[0] < MIN_INTERVAL_S:
            return False
        _last[0] = now
    gc.collect()
    if _LIBC is not None:
        _LIBC.malloc_trim(0)
    return True
