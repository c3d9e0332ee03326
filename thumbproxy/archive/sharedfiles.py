"""FITS files shared by concurrent users: one download per frame version, removed after the last user."""

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

from thumbproxy.archive.base import Archive, Frame

logger = logging.getLogger(__name__)


class SharedFitsFiles:
    """The archive's `fits_file`, with concurrent users of one frame version sharing one download.

    The file is the archive's own: a holder task enters the archive's `fits_file` context and
    stays inside it until the last user leaves, so the archive downloads and removes it as usual.
    """

    def __init__(self, archive: Archive) -> None:
        self._archive = archive
        self._downloads: dict[tuple[int, str], _SharedDownload] = {}
        # Holders still leaving the archive's context after release are kept alive here.
        self._holders: set[asyncio.Task[None]] = set()

    @asynccontextmanager
    async def fits_file(self, frame: Frame) -> AsyncIterator[Path]:
        """A local path to the frame's FITS file, shared with the other users of the same version.

        A download error reaches every user waiting for it. The file is removed when the last
        user's context ends; if the last user leaves before the download is done, it is cancelled.
        """
        key = (frame.id, frame.version)
        download = self._downloads.get(key)
        if download is None or download.holder.done():
            download = self._start(key, self._archive.fits_file(frame))
        download.users += 1
        try:
            yield await download.path()
        finally:
            download.users -= 1
            if download.users == 0:
                self._forget(key, download)
                await download.release()

    def _start(self, key: tuple[int, str], files: AbstractAsyncContextManager[Path]) -> "_SharedDownload":
        """Begin a download of one frame version that later users of the same version join."""
        download = _SharedDownload(files)
        self._downloads[key] = download
        self._holders.add(download.holder)
        download.holder.add_done_callback(self._holders.discard)
        # A failed download is forgotten as soon as it ends, so the next user tries again.
        download.holder.add_done_callback(lambda _: self._forget(key, download))
        return download

    def _forget(self, key: tuple[int, str], download: "_SharedDownload") -> None:
        """Stop offering `download` to new users, unless a newer one already replaced it."""
        if self._downloads.get(key) is download:
            del self._downloads[key]


class _SharedDownload:
    """One download held open for its users by a holder task inside the archive's context."""

    def __init__(self, files: AbstractAsyncContextManager[Path]) -> None:
        self.users = 0
        self._path: asyncio.Future[Path] = asyncio.get_running_loop().create_future()
        self._released = asyncio.Event()
        self.holder = asyncio.create_task(self._hold(files))

    async def path(self) -> Path:
        """The downloaded file's path once it is there, or the download's error."""
        # Shielded: one user giving up must not cancel the wait of the others.
        return await asyncio.shield(self._path)

    async def release(self) -> None:
        """Leave the archive's context, cancelling a download still under way, and wait until left."""
        if self._path.done():
            self._released.set()
        else:
            self.holder.cancel()
        # asyncio.wait neither raises the holder's outcome nor cancels it if this caller is cancelled.
        await asyncio.wait([self.holder])

    async def _hold(self, files: AbstractAsyncContextManager[Path]) -> None:
        """Download inside the archive's context and stay there until released."""
        try:
            async with files as path:
                self._path.set_result(path)
                await self._released.wait()
        except Exception as error:
            if not self._path.done():
                self._path.set_exception(error)
            else:
                # The users are done with the file; a failure to remove it is not theirs.
                logger.warning("could not release a FITS file: %s", error)
        finally:
            if not self._path.done():
                self._path.cancel()
