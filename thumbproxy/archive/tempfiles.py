"""Temporary files in TMP_DIR: names that say which process owns them, and clean-up of leftovers.

A name looks like ``thumbproxy-<pid>-<process token>-<uuid hex>-<filename>``. The pid tells a
later process whether the owner is still alive; the process token tells a restarted process
apart from an earlier one that had the same pid (in a container the service is often pid 1).

Every function here does blocking file-system I/O except `temp_path` and `safe_filename`:
call them from a thread (``asyncio.to_thread``) when an event loop is running.
"""

import logging
import os
import re
import secrets
import uuid
from contextlib import suppress
from pathlib import Path
from typing import BinaryIO

logger = logging.getLogger(__name__)

PREFIX = "thumbproxy-"
# Filenames from the archive are untrusted; this keeps a name well below common NAME_MAX limits.
MAX_FILENAME_LENGTH = 100
PROCESS_TOKEN = secrets.token_hex(4)

_UNSAFE_CHARACTERS = re.compile(r"[^A-Za-z0-9._-]")
_OWNED_NAME = re.compile(rf"^{re.escape(PREFIX)}(?P<pid>\d+)-(?P<token>[0-9a-f]{{8}})-[0-9a-f]{{32}}-")


def safe_filename(filename: str) -> str:
    """`filename` reduced to one harmless path component of bounded length, extension kept."""
    last_component = re.split(r"[/\\]", filename)[-1]
    cleaned = _UNSAFE_CHARACTERS.sub("_", last_component).lstrip(".")
    # Keep the tail: the extension (.fits.fz) matters more than the start of a long name.
    return cleaned[-MAX_FILENAME_LENGTH:] or "file"


def temp_path(tmp_dir: Path, filename: str) -> Path:
    """A fresh, unique path in `tmp_dir` owned by this process, ending in the sanitised `filename`."""
    return tmp_dir / f"{PREFIX}{os.getpid()}-{PROCESS_TOKEN}-{uuid.uuid4().hex}-{safe_filename(filename)}"


def create(path: Path) -> BinaryIO:
    """Open `path` for writing, failing if it exists; creates its directory if needed. Blocking."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.open("xb")


def writable(tmp_dir: Path) -> bool:
    """Whether a file can be created, written and removed in `tmp_dir` now. Blocking."""
    path = temp_path(tmp_dir, "readiness-probe")
    try:
        with create(path) as probe:
            probe.write(b"readiness")
        remove(path)
    except OSError:
        return False
    return True


def remove(path: Path) -> None:
    """Delete `path` if it exists. Blocking."""
    # Its directory is gone and a file stands in its place: nothing of ours is there.
    with suppress(NotADirectoryError):
        path.unlink(missing_ok=True)


def sweep_stale(tmp_dir: Path) -> int:
    """Remove the temporary files of processes that are no longer alive; return how many. Blocking.

    Files of live processes and files not named by this module are left alone.
    """
    if not tmp_dir.is_dir():
        return 0
    removed = 0
    for entry in os.scandir(tmp_dir):
        match = _OWNED_NAME.match(entry.name)
        if match is None or not entry.is_file(follow_symlinks=False):
            continue
        if _owner_alive(int(match["pid"]), match["token"]):
            continue
        try:
            os.unlink(entry.path)
        except FileNotFoundError:
            continue
        removed += 1
    if removed:
        logger.info("removed %d stale temporary files from %s", removed, tmp_dir)
    return removed


def _owner_alive(pid: int, token: str) -> bool:
    """Whether the process that named a file with this pid and token may still be running."""
    if pid == os.getpid():
        return token == PROCESS_TOKEN
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        # The pid exists but belongs to another user: alive.
        return True
    return True
