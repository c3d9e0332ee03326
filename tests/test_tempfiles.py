"""Temp-file naming and the start-up sweep of TMP_DIR."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from thumbproxy.archive import tempfiles


def dead_pid() -> int:
    """The pid of a process that has exited."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def leftover(tmp_dir: Path, pid: int, token: str, filename: str = "frame.fits.fz") -> Path:
    path = tmp_dir / f"{tempfiles.PREFIX}{pid}-{token}-{'0' * 32}-{filename}"
    path.write_bytes(b"SIMPLE")
    return path


def test_temp_path_is_unique_and_stays_in_tmp_dir(tmp_path: Path) -> None:
    first = tempfiles.temp_path(tmp_path, "../../etc/passwd")
    second = tempfiles.temp_path(tmp_path, "../../etc/passwd")
    assert first != second
    assert first.parent == tmp_path
    assert first.name.startswith(f"{tempfiles.PREFIX}{os.getpid()}-")
    assert first.name.endswith("-passwd")


def test_safe_filename_removes_separators_and_bounds_length() -> None:
    assert tempfiles.safe_filename("a/b\\c.fits.fz") == "c.fits.fz"
    assert tempfiles.safe_filename("..") == "file"
    assert tempfiles.safe_filename("we ird;name$.fits") == "we_ird_name_.fits"
    long_name = tempfiles.safe_filename("x" * 1000 + ".fits.fz")
    assert len(long_name) == tempfiles.MAX_FILENAME_LENGTH
    assert long_name.endswith(".fits.fz")


def test_sweep_removes_only_dead_processes_leftovers(tmp_path: Path) -> None:
    dead = leftover(tmp_path, dead_pid(), "0badc0de")
    # Same pid as this process but an earlier process token: a previous run in a container.
    previous_token = format(int(tempfiles.PROCESS_TOKEN, 16) ^ 1, "08x")
    previous_run = leftover(tmp_path, os.getpid(), previous_token)
    own = tempfiles.temp_path(tmp_path, "frame.fits")
    own.write_bytes(b"SIMPLE")
    live_other = leftover(tmp_path, os.getppid(), "12345678")
    unrelated = [tmp_path / "thumbproxy-notes.txt", tmp_path / "frame.fits", tmp_path / "thumbproxy-1-x-y-z"]
    for path in unrelated:
        path.write_bytes(b"keep")
    (tmp_path / f"{tempfiles.PREFIX}{dead_pid()}-0badc0de-{'0' * 32}-a-directory").mkdir()

    assert tempfiles.sweep_stale(tmp_path) == 2

    assert not dead.exists()
    assert not previous_run.exists()
    assert own.exists()
    assert live_other.exists()
    assert all(path.exists() for path in unrelated)


def test_sweep_of_missing_directory_removes_nothing(tmp_path: Path) -> None:
    assert tempfiles.sweep_stale(tmp_path / "absent") == 0


def test_create_makes_the_directory_and_refuses_existing_files(tmp_path: Path) -> None:
    path = tempfiles.temp_path(tmp_path / "new", "frame.fits")
    with tempfiles.create(path) as handle:
        handle.write(b"data")
    assert path.read_bytes() == b"data"
    with pytest.raises(FileExistsError):
        tempfiles.create(path)
    tempfiles.remove(path)
    tempfiles.remove(path)
    assert not path.exists()
