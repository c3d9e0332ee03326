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
from collections import OrderedDict
from typing import BinaryIO

log = logging.getLogger(__name__)

# Linux 4.14 and later; without it nothing is held and every disk-level hit goes through a thread.
NOWAIT = getattr(os, "RWF_NOWAIT", None)
# Copying a larger file would hold up the event loop; it also bounds the space a dropped file keeps in use.
MAX_HELD_BYTES = 1024 * 1024
# Connections need descriptors too: held files take at most this share of the process's limit.
SHARE_OF_DESCRIPTOR_LIMIT = 4
# How often a held file is asked whether the disk level still has it: asking on every hit costs it a tenth more.
LINK_CHECK_SECONDS = 1.0


class HeldFiles:
    """Key -> the open file of its disk-level value, least recently read closed first.

    Only the event loop calls `hold` and `read`: a file is never closed while being read.
    """

    def __init__(self, max_files: int, directory: str) -> None:
        soft_limit, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft_limit != resource.RLIM_INFINITY:
            max_files = min(max_files, soft_limit // SHARE_OF_DESCRIPTOR_LIMIT)
        self._max_files = max_files if NOWAIT is not None else 0
        # For the one line saying why hits go through a thread.
        self._directory = directory
        # Key -> (file, its descriptor, the value's size, when the disk level was last seen to have it).
        self._files: OrderedDict[str, tuple[BinaryIO, int, int, float]] = OrderedDict()

    def hold(self, key: str, file: BinaryIO, size: int) -> None:
        """Keep the file of the value under key (of `size` bytes) open for `read`; one not kept is closed."""
        if size > MAX_HELD_BYTES or self._max_files == 0:
            file.close()
            return
        previous = self._files.pop(key, None)
        if previous is not None:
            previous[0].close()
        self._files[key] = (file, file.fileno(), size, time.monotonic())
        if len(self._files) > self._max_files:
            self._files.popitem(last=False)[1][0].close()

    def read(self, key: str) -> bytearray | None:
        """The value under key if its file is held and the page cache holds all of it; else None, without waiting."""
        held = self._files.get(key)
        if held is None:
            return None
        file, descriptor, size, linked_at = held
        value = bytearray(size)
        try:
            read = os.preadv(descriptor, [value], 0, NOWAIT)
            now = time.monotonic()
            # No link left: the disk level dropped the value; a miss lets it be stored and counted again.
            linked = now - linked_at < LINK_CHECK_SECONDS or os.fstat(descriptor).st_nlink > 0
        except BlockingIOError:
            return None
        except OSError as error:
            if error.errno == errno.EOPNOTSUPP:
                self._refused()
            else:
                self._drop(key)
            return None
        if not linked:
            self._drop(key)
            return None
        # Short: part of it is on the disk only; the thread that reads it brings it into the page cache.
        if read != size:
            return None
        if now - linked_at >= LINK_CHECK_SECONDS:
            self._files[key] = (file, descriptor, size, now)
        self._files.move_to_end(key)
        return value

    def keys(self) -> list[str]:
        """The keys whose files are held."""
        return list(self._files)

    def close(self) -> None:
        """Close every held file."""
        while self._files:
            self._files.popitem()[1][0].close()

    def _drop(self, key: str) -> None:
        self._files.pop(key)[0].close()

    def _refused(self) -> None:
        # The filesystem cannot read without waiting (tmpfs, for one): hold nothing from now on.
        log.info(
            "the disk cache's filesystem at %s cannot read without waiting (RWF_NOWAIT): "
            "disk-level hits are read in a thread",
            self._directory,
        )
        self._max_files = 0
        self.close()
