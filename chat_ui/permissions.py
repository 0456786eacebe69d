"""The data directory belongs to the chat's account alone: folders 700, files 600.

``collectivia serve`` sets the umask to 077 before writing anything (so the history database, the session secret,
the uploads, the audit log and the index it writes are created private), and at each start takes the group and
other permissions off everything already under the data directory (written by an older version, by ``collectivia
ingest`` with a wider umask, or restored from a backup). Symbolic links are not followed; a file of another account
is reported, not changed.
"""

from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

PRIVATE_UMASK = 0o077


@dataclass(frozen=True, slots=True)
class Tightened:
    changed: int  # paths whose group/other permissions were removed
    refused: tuple[str, ...]  # paths that could not be changed (another account's)


def private_umask() -> int:
    """Make every file the process creates from now on private; returns the previous umask."""
    return os.umask(PRIVATE_UMASK)


def _tighten_one(path: str, refused: list[str]) -> int:
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return 0
    if stat.S_ISLNK(mode) or not mode & 0o077:
        return 0
    try:
        os.chmod(path, stat.S_IMODE(mode) & 0o700 | (0o700 if stat.S_ISDIR(mode) else 0))
        return 1
    except OSError:
        refused.append(path)
        return 0


def tighten(root: Path) -> Tightened:
    """Create ``root`` (700) if needed, and take group/other permissions off it and everything under it."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    refused: list[str] = []
    changed = _tighten_one(str(root), refused)
    for folder, dirs, files in os.walk(root, followlinks=False):
        for name in dirs + files:
            changed += _tighten_one(os.path.join(folder, name), refused)
    if changed:
        logger.warning("données : permissions resserrées sur %s chemin(s) de %s (dossiers 700, fichiers 600)",
                       changed, root)
    if refused:
        logger.warning("données : permissions non modifiables (autre propriétaire) : %s", ", ".join(refused[:10]))
    return Tightened(changed, tuple(refused))
