"""Concurrent users of one frame version share one download, over real HTTP to the fake archive."""

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest

from fakearchive import FakeArchive, Fault
from thumbproxy.archive.base import Frame
from thumbproxy.archive.ocs import OcsArchive
from thumbproxy.archive.sharedfiles import SharedFitsFiles
from thumbproxy.errors import ThumbproxyError

USERS = 5


@pytest.fixture
def tmp_dir(tmp_path: Path) -> Path:
    return tmp_path / "tmp"


@pytest.fixture
async def archive(fake_archive: FakeArchive, tmp_dir: Path) -> AsyncIterator[OcsArchive]:
    async with aiohttp.ClientSession() as session:
        yield OcsArchive(
            session,
            fake_archive.base_url,
            connect_timeout=2.0,
            timeout=5.0,
            download_timeout=10.0,
            tmp_dir=tmp_dir,
            max_fits_bytes=8 * 2**20,
        )


@pytest.fixture
def shared(archive: OcsArchive) -> SharedFitsFiles:
    return SharedFitsFiles(archive)


@pytest.fixture
def big_fits(tmp_path: Path, write_fits: Callable[..., Path]) -> Path:
    """A FITS file of about 1.4 MB: more than one write batch of the download."""
    return write_fits(tmp_path / "lsc1m005-fa15-20190321-0100-e91.fits", shape=(600, 600), seed=1)


def files_in(directory: Path) -> list[Path]:
    return sorted(directory.iterdir()) if directory.exists() else []


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait until `condition()` holds."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


class User:
    """A user of a frame's file who keeps it open until told to leave, noting what it saw."""

    def __init__(self, shared: SharedFitsFiles, frame: Frame) -> None:
        self.inside = asyncio.Event()
        self.leave = asyncio.Event()
        self.path: Path | None = None
        self.content = b""
        self.task = asyncio.create_task(self._use(shared, frame))

    async def _use(self, shared: SharedFitsFiles, frame: Frame) -> None:
        async with shared.fits_file(frame) as path:
            self.path = path
            self.content = await asyncio.to_thread(path.read_bytes)
            self.inside.set()
            await self.leave.wait()


async def test_concurrent_users_share_one_download_until_the_last_leaves(
    shared: SharedFitsFiles, archive: OcsArchive, fake_archive: FakeArchive, fits_path: Path, tmp_dir: Path
) -> None:
    frame = await archive.frame(fake_archive.add_frame(fits_path)["id"], None)

    users = [User(shared, frame) for _ in range(USERS)]
    await asyncio.gather(*(user.inside.wait() for user in users))

    assert fake_archive.downloads[frame.id] == 1
    assert {user.path for user in users} == {users[0].path}
    assert all(user.content == fits_path.read_bytes() for user in users)
    for user in users[:-1]:
        user.leave.set()
        await user.task
    assert files_in(tmp_dir) == [users[0].path]
    users[-1].leave.set()
    await users[-1].task
    assert files_in(tmp_dir) == []


async def test_a_user_after_release_downloads_again(
    shared: SharedFitsFiles, archive: OcsArchive, fake_archive: FakeArchive, fits_path: Path, tmp_dir: Path
) -> None:
    frame = await archive.frame(fake_archive.add_frame(fits_path)["id"], None)

    for _ in range(2):
        async with shared.fits_file(frame) as path:
            assert path.read_bytes() == fits_path.read_bytes()

    assert fake_archive.downloads[frame.id] == 2
    assert files_in(tmp_dir) == []


async def test_a_user_arriving_as_the_last_one_leaves_gets_a_fresh_download(
    shared: SharedFitsFiles, archive: OcsArchive, fake_archive: FakeArchive, fits_path: Path, tmp_dir: Path
) -> None:
    frame = await archive.frame(fake_archive.add_frame(fits_path)["id"], None)
    leaving = User(shared, frame)
    await leaving.inside.wait()

    leaving.leave.set()
    arriving = User(shared, frame)
    await arriving.inside.wait()

    assert fake_archive.downloads[frame.id] == 2
    assert arriving.path != leaving.path
    assert arriving.content == fits_path.read_bytes()
    await leaving.task
    assert files_in(tmp_dir) == [arriving.path]
    arriving.leave.set()
    await arriving.task
    assert files_in(tmp_dir) == []


async def test_a_new_version_is_a_new_download(
    shared: SharedFitsFiles,
    archive: OcsArchive,
    fake_archive: FakeArchive,
    fits_path: Path,
    big_fits: Path,
    tmp_dir: Path,
) -> None:
    frame_id = fake_archive.add_frame(fits_path)["id"]
    old = User(shared, await archive.frame(frame_id, None))
    await old.inside.wait()

    fake_archive.new_version(frame_id, big_fits)
    new = User(shared, await archive.frame(frame_id, None))
    await new.inside.wait()

    assert fake_archive.downloads[frame_id] == 2
    assert old.content == fits_path.read_bytes()
    assert new.content == big_fits.read_bytes()
    old.leave.set()
    new.leave.set()
    await asyncio.gather(old.task, new.task)
    assert files_in(tmp_dir) == []


async def test_a_download_error_reaches_every_user_and_is_not_remembered(
    shared: SharedFitsFiles, archive: OcsArchive, fake_archive: FakeArchive, fits_path: Path, tmp_dir: Path
) -> None:
    frame = await archive.frame(fake_archive.add_frame(fits_path)["id"], None)
    fake_archive.download_fault = Fault(status=500, delay=0.1, times=1)

    users = [User(shared, frame) for _ in range(USERS)]
    outcomes = await asyncio.gather(*(user.task for user in users), return_exceptions=True)

    assert len(fake_archive.received("download")) == 1
    assert all(isinstance(outcome, ThumbproxyError) and outcome.status == 502 for outcome in outcomes)
    async with shared.fits_file(frame) as path:
        assert path.read_bytes() == fits_path.read_bytes()
    assert len(fake_archive.received("download")) == 2
    assert files_in(tmp_dir) == []


async def test_the_only_user_cancelled_mid_download_cancels_it_and_removes_the_partial_file(
    shared: SharedFitsFiles, archive: OcsArchive, fake_archive: FakeArchive, big_fits: Path, tmp_dir: Path
) -> None:
    frame = await archive.frame(fake_archive.add_frame(big_fits)["id"], None)
    fake_archive.download_fault = Fault(stall_after_bytes=1_100_000, delay=5.0, times=1)

    user = User(shared, frame)
    await until(lambda: any(path.stat().st_size > 0 for path in files_in(tmp_dir)))
    user.task.cancel()
    # Well before the stalled download could finish: it is abandoned, not waited out.
    with pytest.raises(asyncio.CancelledError):
        async with asyncio.timeout(1.0):
            await user.task

    assert files_in(tmp_dir) == []
    async with asyncio.timeout(2.0), shared.fits_file(frame) as path:
        assert path.read_bytes() == big_fits.read_bytes()
    assert fake_archive.downloads[frame.id] == 2


async def test_a_user_cancelled_mid_download_leaves_it_to_the_others(
    shared: SharedFitsFiles, archive: OcsArchive, fake_archive: FakeArchive, big_fits: Path, tmp_dir: Path
) -> None:
    frame = await archive.frame(fake_archive.add_frame(big_fits)["id"], None)
    fake_archive.download_fault = Fault(stall_after_bytes=1_100_000, delay=0.3, times=1)

    leaving, staying = User(shared, frame), User(shared, frame)
    await until(lambda: any(path.stat().st_size > 0 for path in files_in(tmp_dir)))
    leaving.task.cancel()
    await staying.inside.wait()

    assert leaving.task.cancelled()
    assert staying.content == big_fits.read_bytes()
    assert fake_archive.downloads[frame.id] == 1
    staying.leave.set()
    await staying.task
    assert files_in(tmp_dir) == []
