"""An archive over a directory of FITS files, for the demo and for sites that keep FITS on disk.

Every frame is public. Files should arrive atomically (written elsewhere, then renamed in):
the index is refreshed when the directory's modification time changes, which a rename does
and an in-place rewrite does not.
"""

import asyncio
import hashlib
import logging
import os
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from astropy.io import fits

from thumbproxy.archive.base import NOT_FOUND_MESSAGE, Frame, only_frame
from thumbproxy.archive.health import Outcome
from thumbproxy.archive.records import frame_from_record
from thumbproxy.errors import ThumbproxyError

logger = logging.getLogger(__name__)

PROPOSAL_ID = "LOCAL"
PUBLIC_DATE = "1970-01-01T00:00:00+00:00"
FITS_EXTENSIONS = (".fits.fz", ".fits")
# Record field <- FITS header keyword, read from the primary header, then the first extension.
HEADER_FIELDS = {
    "configuration_type": "OBSTYPE",
    "primary_optical_element": "FILTER",
    "request_id": "REQNUM",
    "reduction_level": "RLEVEL",
    "observation_date": "DATE-OBS",
    "site_id": "SITEID",
    "telescope_id": "TELID",
    "instrument_id": "INSTRUME",
    "target_name": "OBJECT",
    "exposure_time": "EXPTIME",
}
DEFAULT_CONFIGURATION_TYPE = "EXPOSE"
_INTEGER_FIELDS = frozenset({"request_id", "reduction_level"})
_MAX_ID = 2**31 - 1
# A directory modified this close to a scan may change again within the same mtime tick.
_RACY_NANOSECONDS = 2_000_000_000


def basename_of(filename: str) -> str | None:
    """The frame basename of a FITS file name (extension stripped), or None if it is not FITS."""
    lowered = filename.lower()
    for extension in FITS_EXTENSIONS:
        if lowered.endswith(extension) and len(filename) > len(extension):
            return filename[: -len(extension)]
    return None


def frame_id_of(basename: str, attempt: int = 0) -> int:
    """A positive 31-bit id derived from the basename alone, so it is the same in every process."""
    salted = basename if attempt == 0 else f"{basename}\0{attempt}"
    digest = hashlib.blake2b(salted.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % _MAX_ID + 1


@dataclass(frozen=True)
class _Entry:
    """One FITS file of the directory as last read."""

    path: Path
    size: int
    mtime_ns: int
    # None for a file that cannot be read, and why not.
    header_values: Mapping[str, Any] | None
    problem: str = ""


@dataclass(frozen=True)
class _Index:
    """The frames of the directory at one moment."""

    mtime_ns: int
    racy: bool
    entries: Mapping[str, _Entry]
    frames_by_id: Mapping[int, Frame]
    paths_by_id: Mapping[int, Path]
    # Basename -> the file left out of the index because it cannot be read.
    unreadable: Mapping[str, _Entry]


_EMPTY_INDEX = _Index(mtime_ns=-1, racy=True, entries={}, frames_by_id={}, paths_by_id={}, unreadable={})


class LocalArchive:
    """Frames from the FITS files (``.fits``, ``.fits.fz``) directly inside one directory."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._index = _EMPTY_INDEX
        self._refresh_lock = asyncio.Lock()

    async def frame(self, frame_id: int, authorization: str | None) -> Frame:
        """The frame with this id; ThumbproxyError(404) if there is none."""
        index = await self._current_index()
        if frame_id not in index.frames_by_id:
            raise ThumbproxyError(404, NOT_FOUND_MESSAGE)
        return index.frames_by_id[frame_id]

    async def frame_by_basename(self, basename: str, authorization: str | None) -> Frame:
        """The one frame with this basename; ThumbproxyError(404) for none or several, 422 naming the file
        when it cannot be read."""
        index = await self._current_index()
        unreadable = index.unreadable.get(basename)
        if unreadable is not None:
            raise ThumbproxyError(422, f"cannot read {unreadable.path.name}: {unreadable.problem}")
        return only_frame(await self.frames({"basename_exact": basename}, authorization))

    def unreadable_files(self) -> int:
        """How many FITS files of the directory were left out of the index at its last scan: they cannot be read."""
        return len(self._index.unreadable)

    async def probe(self) -> Outcome:
        """Whether the directory is there: "200" if so, else "error"."""
        return Outcome("200" if await asyncio.to_thread(self._directory.is_dir) else "error")

    async def frames(self, filters: Mapping[str, str], authorization: str | None) -> list[Frame]:
        """Frames whose record fields equal every filter as strings, in basename order.

        ``basename_exact`` matches the basename. A field a record lacks matches nothing.
        """
        index = await self._current_index()
        conditions = dict(filters)
        if "basename_exact" in conditions:
            conditions["basename"] = conditions.pop("basename_exact")
        found = [frame for frame in index.frames_by_id.values() if _matches(frame.record, conditions)]
        return sorted(found, key=lambda frame: frame.basename)

    async def newest(self, filters: Mapping[str, str], authorization: str | None) -> Frame | None:
        """The frame matching the filters with the latest observation date (then the highest id); None if none.

        Frames without an observation date are never the newest.
        """
        dated = [frame for frame in await self.frames(filters, authorization) if frame.observation_date is not None]
        return max(dated, key=lambda frame: (frame.observation_date, frame.id), default=None)

    @asynccontextmanager
    async def fits_file(self, frame: Frame) -> AsyncIterator[Path]:
        """The frame's own file in the directory; nothing is copied or removed."""
        index = await self._current_index()
        if frame.id not in index.paths_by_id:
            raise ThumbproxyError(404, NOT_FOUND_MESSAGE)
        yield index.paths_by_id[frame.id]

    async def _current_index(self) -> _Index:
        """The index, rebuilt in a thread when the directory has changed since it was built."""
        async with self._refresh_lock:
            self._index = await asyncio.to_thread(_refreshed, self._directory, self._index)
        return self._index


def _refreshed(directory: Path, index: _Index) -> _Index:
    """`index` if the directory is unchanged since, else a new index reusing unchanged entries. Blocking."""
    try:
        mtime_ns = directory.stat().st_mtime_ns
    except FileNotFoundError:
        logger.error("the local archive directory %s does not exist", directory)
        raise ThumbproxyError(502, "The local archive is unavailable") from None
    if mtime_ns == index.mtime_ns and not index.racy:
        return index
    scan_started_ns = time.time_ns()
    entries = {entry.path.name: entry for entry in _scan(directory, index.entries)}
    frames_by_id: dict[int, Frame] = {}
    paths_by_id: dict[int, Path] = {}
    unreadable: dict[str, _Entry] = {}
    for name in sorted(entries):
        entry = entries[name]
        if entry.header_values is None:
            unreadable[basename_of(name) or name] = entry
            continue
        frame_id = _free_id(name, frames_by_id)
        frames_by_id[frame_id] = frame_from_record(_record(frame_id, entry, entry.header_values))
        paths_by_id[frame_id] = entry.path
    return _Index(
        mtime_ns=mtime_ns,
        racy=scan_started_ns - mtime_ns < _RACY_NANOSECONDS,
        entries=entries,
        frames_by_id=frames_by_id,
        paths_by_id=paths_by_id,
        unreadable=unreadable,
    )


def _scan(directory: Path, previous: Mapping[str, _Entry]) -> Iterable[_Entry]:
    """The directory's FITS files; headers are read only for files new or changed since `previous`."""
    for dir_entry in os.scandir(directory):
        if dir_entry.name.startswith(".") or basename_of(dir_entry.name) is None:
            continue
        try:
            if not dir_entry.is_file():
                continue
            stat = dir_entry.stat()
        except FileNotFoundError:
            continue
        known = previous.get(dir_entry.name)
        if known is not None and (known.size, known.mtime_ns) == (stat.st_size, stat.st_mtime_ns):
            yield known
            continue
        path = Path(dir_entry.path)
        try:
            header_values, problem = _read_header_values(path), ""
        except (OSError, ValueError, IndexError, TypeError, fits.VerifyError) as error:
            # Once per file version: an unchanged file is not read again.
            logger.warning("leaving %s out of the archive: not a readable FITS file (%s)", path, error)
            header_values, problem = None, f"not a readable FITS file ({type(error).__name__})"
        yield _Entry(path, stat.st_size, stat.st_mtime_ns, header_values, problem)


def _free_id(filename: str, taken: Mapping[int, Frame]) -> int:
    """The basename's id, re-derived with a salt while it collides with an earlier file's."""
    basename = basename_of(filename) or filename
    attempt = 0
    while (frame_id := frame_id_of(basename, attempt)) in taken:
        logger.warning("frame id %d of %s is taken by %s", frame_id, filename, taken[frame_id].filename)
        attempt += 1
    return frame_id


def _read_header_values(path: Path) -> dict[str, Any]:
    """The header keywords of HEADER_FIELDS from the primary and first extension headers.

    Raises what astropy raises for a file it cannot read, or a card it cannot parse (VerifyError).
    """
    with fits.open(path, lazy_load_hdus=True) as hdus:
        headers = [hdus[0].header]
        with suppress(IndexError):
            headers.append(hdus[1].header)
    values: dict[str, Any] = {}
    for keyword in HEADER_FIELDS.values():
        # Keywords without a value (astropy's Undefined) and blank strings count as absent.
        found = [
            header[keyword]
            for header in headers
            if isinstance(header.get(keyword), str | int | float) and str(header[keyword]).strip()
        ]
        if found:
            values[keyword] = found[0]
    return values


def _record(frame_id: int, entry: _Entry, header_values: Mapping[str, Any]) -> dict[str, Any]:
    """An archive-style frame record for one file."""
    filename = entry.path.name
    created = datetime.fromtimestamp(entry.mtime_ns / 1e9, UTC).isoformat()
    record: dict[str, Any] = {
        "id": frame_id,
        "basename": basename_of(filename),
        "filename": filename,
        "url": entry.path.absolute().as_uri(),
        "version_set": [{"id": 1, "created": created, "key": f"{entry.size}-{entry.mtime_ns}", "md5": None}],
        "proposal_id": PROPOSAL_ID,
        "public_date": PUBLIC_DATE,
        "configuration_type": DEFAULT_CONFIGURATION_TYPE,
    }
    for field, keyword in HEADER_FIELDS.items():
        value = header_values.get(keyword)
        if value is None:
            continue
        if field in _INTEGER_FIELDS and not isinstance(value, int):
            # Raw frames say REQNUM = 'UNSPECIFIED' when taken outside a request.
            value = int(value) if str(value).strip().isdigit() else None
        record[field] = value.strip() if isinstance(value, str) else value
    return record


def _matches(record: Mapping[str, Any], conditions: Mapping[str, str]) -> bool:
    return all(record.get(field) is not None and str(record[field]) == value for field, value in conditions.items())
