"""The audit log of document management: one JSON object per line, appended and synced to disk.

Each upload, replacement and withdrawal — accepted or refused — says who, when, what and for which services:
``{"ts", "action", "outcome", "user", "user_name", "doc_id", "title", "doc_type", "services", "file", "size",
"sha256", "detail"}``. The file lives under the data directory (``audit/documents.jsonl``), readable by the
chat's account only (600). ``outcome`` is ``ok``, ``refused``, ``failed``, ``unchanged`` or ``interrupted`` (an
upload the chat was stopped in the middle of, settled at the next start).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
from pathlib import Path
from typing import Any, Iterable

ACTIONS = ("upload", "replace", "withdraw", "report")  # report: a manager's dashboard opened or refused
OUTCOMES = ("ok", "refused", "failed", "unchanged", "interrupted")


class JsonLinesLog:
    """An append-only audit file: one JSON object per line, synced to disk, private (600) in a private folder."""

    ACTIONS: tuple[str, ...] = ()
    OUTCOMES: tuple[str, ...] = ()

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def _append(self, action: str, outcome: str, entry: dict[str, Any]) -> dict[str, Any]:
        if action not in self.ACTIONS:
            raise ValueError(f"action d'audit inconnue : « {action} »")
        if outcome not in self.OUTCOMES:
            raise ValueError(f"issue d'audit inconnue : « {outcome} »")
        entry = {"ts": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "action": action,
                 "outcome": outcome, **entry}
        line = json.dumps(entry, ensure_ascii=False) + "\n"
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line.encode("utf-8"))
                os.fsync(fd)
            finally:
                os.close(fd)
        return entry

    def entries(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if line:
                try:
                    out.append(json.loads(line))
                except ValueError:
                    continue
        return out


class AuditLog(JsonLinesLog):
    ACTIONS = ACTIONS
    OUTCOMES = OUTCOMES

    def write(self, *, action: str, outcome: str, user_id: str, user_name: str = "", doc_id: str = "",
              title: str = "", doc_type: str = "", services: Iterable[str] = (), file: str = "", size: int | None = None,
              sha256: str = "", detail: str = "") -> dict[str, Any]:
        return self._append(action, outcome, {
            "user": user_id,
            "user_name": user_name,
            "doc_id": doc_id,
            "title": title,
            "doc_type": doc_type,
            "services": sorted(services),
            "file": file,
            "size": size,
            "sha256": sha256,
            "detail": detail,
        })
