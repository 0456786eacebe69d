"""The audit log of the rights over the chat history: one JSON object per line, appended and synced to disk.

Each purge (automatic or by command), export, erasure and « delete all my conversations » says who, what, for whom
and how many rows — never a question or an answer: ``{"ts", "action", "outcome", "by", "subject", "dry_run",
"counts", "detail"}``. ``by`` is the agent acting in the chat, ``serve`` for the automatic purge, or ``cli:<Unix
account>`` for a command. The file lives under the data directory (``audit/privacy.jsonl``), private (600).
"""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import Any, Mapping

from chat_ui.audit import JsonLinesLog

ACTIONS = ("purge", "export", "forget", "delete_own")
OUTCOMES = ("ok", "failed", "cancelled")


def cli_actor() -> str:
    """Who runs a command: ``cli:<Unix account>``, or ``cli`` when the account has no name."""
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # no name for this uid (container)
        return "cli"


def privacy_log_path(data_dir: Path) -> Path:
    return Path(data_dir).resolve() / "audit" / "privacy.jsonl"


class PrivacyAudit(JsonLinesLog):
    ACTIONS = ACTIONS
    OUTCOMES = OUTCOMES

    def write(self, *, action: str, by: str, outcome: str = "ok", subject: str | None = None,
              counts: Mapping[str, int] | None = None, dry_run: bool = False, detail: str = "") -> dict[str, Any]:
        return self._append(action, outcome, {"by": by, "subject": subject, "dry_run": dry_run,
                                              "counts": dict(counts or {}), "detail": detail})
