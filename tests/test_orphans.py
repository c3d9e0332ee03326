"""When the server dies without shutting down, nothing it started stays behind."""

import asyncio
import os
import signal
import time
from pathlib import Path

from conftest import serving
from fakearchive import FakeArchive


def descendants(pid: int) -> set[int]:
    """Every live process under pid, from /proc."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            # The command may hold spaces and parentheses: the fields after the last ")" are plain.
            fields = stat.rpartition(")")[2].split()
            parents[int(entry)] = int(fields[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return {child for child in found if running(child)}


def running(pid: int) -> bool:
    """Whether pid is a process that has not exited (a zombie has)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


async def test_render_workers_forkserver_and_resource_tracker_exit_when_the_server_is_killed(
    fake_archive: FakeArchive, tmp_path: Path
) -> None:
    async with serving(fake_archive.base_url, tmp_path, THUMBPROXY_WORKERS="2") as served:
        started = descendants(served.process.pid)
        # The forkserver, the resource tracker and two workers at least.
        assert len(started) >= 4, started
        served.process.send_signal(signal.SIGKILL)
        served.process.wait(10)
        deadline = time.monotonic() + 10
        while left := {pid for pid in started if running(pid)}:
            assert time.monotonic() < deadline, f"still running after the server was killed: {left}"
            await asyncio.sleep(0.1)
