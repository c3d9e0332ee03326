"""Disk-level thumbnails kept open, so a repeat hit reads its file on the event loop without ever waiting.

A read asks the kernel for the file's bytes with RWF_NOWAIT: it copies them if the page cache
holds them all and refuses (EAGAIN) instead of going to the disk, so the event loop never waits
on it; anything short of the whole file is a miss, which the caller reads in a thread. Held
files are safe to read for as long as they are open: a value's file is never rewritten in place
(keys name their content), and one the disk level dropped still holds the same bytes until it
is noticed, within a second, and let go.
"""

import errno
import logging
import os
import resource
import time
from dataclasses import dataclass
from typing import BinaryIO

from thumbproxy.support.lrumap import LruMap

log = logging.getLogger(__name__)

# Linux 4.14 and later; without it nothing is held and every disk-level hit goes through a thread.
NOWAIT = getattr(os, "RWF_NOWAIT", None)
# Copying a larger file would hold up the event loop; it also bounds the space a dropped file keeps in use.
MAX_HELD_BYTES = 1024 * 1024
# Connections need descriptors too: held files take at most this share of the process's limit.
SHARE_OF_DESCRIPTOR_LIMIT = 4
# How often a held file is asked whether the disk level still has it: asking on every hit costs it a tenth more.
LINK_CHECK_SECONDS = 1.0


@dataclass(slots=True)
class _HeldFile:
    """A disk-level value's open file."""

    file: BinaryIO
    descriptor: int
    # The value's size.
    size: int
    # When the disk level was last seen to have it; updated in place, since replacing the entry would close the file.
    linked_at: float

    def close(self) -> None:
        self.file.close()


class HeldFiles:
    """Key -> the open file of its disk-level value, least recently read closed first.

    Only the event loop calls `hold` and `read`: a file is never closed while being read.
    """

    def __init__(self, max_files: int, directory: str) -> None:
        soft_limit, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft_limit != resource.RLIM_INFINITY:
            max_files = min(max_files, soft_limit // SHARE_OF_DESCRIPTOR_LIMIT)
        # Without RWF_NOWAIT, or once the filesystem refuses it, nothing is held.
        self._holding = NOWAIT is not None
        # For the one line saying why hits go through a thread.
        self._directory = directory
        # A file pushed out, replaced or dropped is closed as it goes.
        self._files: LruMap[str, _HeldFile] = LruMap(max_files, on_evict=_HeldFile.close)

    def hold(self, key: str, file: BinaryIO, size: int) -> None:
        """Keep the file of the value under key (of `size` bytes) open for `read`; one not kept is closed."""
        if size > MAX_HELD_BYTES or not self._holding:
            file.close()
            return
        self._files.put(key, _HeldFile(file, file.fileno(), size, time.monotonic()))

    def read(self, key: str) -> bytearray | None:
        """The value under key if its file is held and the page cache holds all of it; else None, without waiting."""
        held = self._files.peek(key)
        if held is None:
            return None
        value = bytearray(held.size)
        try:
            read = os.preadv(held.descriptor, [value], 0, NOWAIT)  # type: ignore[arg-type]  # held only if NOWAIT is set
            now = time.monotonic()
            # No link left: the disk level dropped the value; a miss lets it be stored and counted again.
            linked = now - held.linked_at < LINK_CHECK_SECONDS or os.fstat(held.descriptor).st_nlink > 0
        except BlockingIOError:
            return None
        except OSError as error:
            if error.errno == errno.EOPNOTSUPP:
                self._refused()
            else:
                self._files.forget(key)
            return None
        if not linked:
            self._files.forget(key)
            return None
        # Short: part of it is on the disk only; the thread that reads it brings it into the page cache.
        if read != held.size:
            return None
        if now - held.linked_at >= LINK_CHECK_SECONDS:
            held.linked_at = now
        self._files.mark_used(key)
        return value

    def keys(self) -> list[str]:
        """The keys whose files are held."""
        return self._files.keys()

    def close(self) -> None:
        """Close every held file."""
        self._files.clear()

    def _refused(self) -> None:
        # The filesystem cannot read without waiting (tmpfs, for one): hold nothing from now on.
        log.info(
            "the disk cache's filesystem at %s cannot read without waiting (RWF_NOWAIT): "
            "disk-level hits are read in a thread",
            self._directory,
        )
        self._holding = False
        self.close()
