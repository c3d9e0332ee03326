"""Find the image (or 1-D spectrum) a user means in a FITS file and read it, whole or some rows at a time, refusing
damaged files."""

import errno
import math
import os
import warnings
from collections import ChainMap
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from functools import partial
from typing import Any, BinaryIO, TypeAlias, TypeVar

import numpy as np
from astropy.io import fits

from thumbproxy.render.errors import UnreadableFrame
from thumbproxy.render.pixelrows import FloatRows, PixelRows
from thumbproxy.render.rowtiles import RowTiles
from thumbproxy.render.spectrum import Spectrum
from thumbproxy.render.tilechecks import check_tiles

SCIENCE_EXTENSION = "SCI"
# The card every FITS file starts with.
FITS_SIGNATURE = b"SIMPLE  ="
# Enough of the start of a file to tell what it is.
SIGNATURE_BYTES = 80
# The starts of astropy's warnings that a file ends early or a header in it is unreadable.
TRUNCATION_WARNING = "File may have been truncated"
BAD_HEADER_WARNING = "Error validating header"
# The reason given for a file astropy fails on in a way of its own (AttributeError, KeyError, TypeError, ...):
# its message speaks of astropy's insides, not of the file.
NOT_READABLE_FITS = "not a readable FITS file"
# The largest image plane read: 2**27 pixels, 512 MiB as float32, eight 4096 x 4096 frames.
# Tiles of a blank image compress a thousandfold, so the file's size does not bound it.
MAX_PIXELS = 2**27
# One 4096x4096 plane: fpack's tiles are rows, and a tile larger than a plane only serves to inflate.
MAX_TILE_PIXELS = 2**24
# Tiles of one image: a 4096x4096 frame has 4096 row tiles.
MAX_TILES = 2**16
# HDUs looked through for the image: LCO's files hold 5 at most (primary, SCI, CAT, BPM, ERR), raw ones one per
# amplifier.
MAX_HDUS = 64

HDU: TypeAlias = fits.PrimaryHDU | fits.hdu.base.ExtensionHDU
Read = TypeVar("Read")


def _data_shape(hdu: HDU) -> tuple[int, ...]:
    """The shape of the image hdu's header declares, () for none; decided from its header alone."""
    return tuple(getattr(hdu, "shape", ())) if hdu.is_image else ()


def _holds_image(hdu: HDU) -> bool:
    """Whether hdu declares at least two non-empty axes, its planes not a single row."""
    shape = _data_shape(hdu)
    return len(shape) >= 2 and all(shape) and shape[-2] != 1


def _holds_spectrum(hdu: HDU) -> bool:
    """Whether hdu declares a 1-D spectrum: one non-empty axis, or planes of one row (a cube such as FLOYDS'
    4 x 1 x N, its first plane the flux)."""
    shape = _data_shape(hdu)
    return len(shape) >= 1 and all(shape) and (len(shape) == 1 or shape[-2] == 1)


def pick_image_hdu(hdul: fits.HDUList) -> HDU:
    """Among the first MAX_HDUS: the SCI extension when it holds an image, else the first HDU that does; without
    an image, the SCI extension when it holds a 1-D spectrum, else the first HDU that does."""
    first: list[HDU] = []
    # Headers are read one HDU at a time as they are asked for: thousands of them would cost seconds.
    for index in range(MAX_HDUS):
        try:
            first.append(hdul[index])
        except IndexError:
            break
    for holds in (_holds_image, _holds_spectrum):
        found = [hdu for hdu in first if holds(hdu)]
        science = [hdu for hdu in found if hdu.name == SCIENCE_EXTENSION]
        if science or found:
            return (science or found)[0]
    beyond = f" among its first {MAX_HDUS}" if len(first) == MAX_HDUS else ""
    raise UnreadableFrame(f"no HDU holds an image or a 1-D spectrum{beyond}")


def _check_layout(hdu: HDU) -> None:
    """UnreadableFrame when the image declared in hdu's header has no pixels, is too large to read, or is
    compressed in tiles without pixels: checked before any pixel is read or any buffer made for them."""
    if any(length < 1 for length in hdu.shape):
        raise UnreadableFrame(f"the image has no pixels (axes of {' x '.join(map(str, hdu.shape[::-1]))})")
    # A 1-D spectrum is one row.
    rows, columns = (1, *hdu.shape)[-2:]
    if rows * columns > MAX_PIXELS:
        raise UnreadableFrame(f"the image is too large to render ({columns} x {rows} pixels)")
    if isinstance(hdu, fits.CompImageHDU):
        tile = [int(length) for length in hdu.tile_shape[::-1]]
        if any(length < 1 for length in tile):
            raise UnreadableFrame(f"its compression tiles have no pixels (ZTILEn: {tile})")
        # A tile is decompressed whole: one that spans many planes of a cube could take gigabytes.
        if math.prod(tile) > MAX_TILE_PIXELS:
            raise UnreadableFrame(f"its compression tiles are too large to decompress (ZTILEn: {tile})")
        # Each tile costs a call or more: a frame of one-pixel tiles would take minutes.
        tiles = math.prod(-(-int(length) // size) for length, size in zip(hdu.shape[::-1], tile))
        if tiles > MAX_TILES:
            raise UnreadableFrame(f"it has too many compression tiles to decompress ({tiles}; ZTILEn: {tile})")


def _compressed_tiles(
    path: str | os.PathLike[str], hdu: fits.CompImageHDU, index: int, file: BinaryIO, check_datasum: bool
) -> RowTiles | None:
    """The tiles of hdu, the compressed HDU at index of the FITS file at path open as file, when RowTiles
    reads their layout, else None.

    With check_datasum, UnreadableFrame when the HDU has a DATASUM card its bytes disagree with.
    fpack writes the card. Checked before decompressing, because damaged tiles can decompress
    into plausible garbage that no error reveals.
    """
    # The table astropy decompresses from (newer versions keep it), else the file opened again as tables.
    table = getattr(hdu, "_bintable", None)
    if table is None:
        with open(path, "rb") as again, fits.open(again, memmap=False, disable_image_compression=True) as tables:
            return _checked_tiles(tables[index], again, check_datasum)
    return _checked_tiles(table, file, check_datasum)


def _checked_tiles(table: fits.BinTableHDU, file: BinaryIO, check_datasum: bool) -> RowTiles | None:
    check_tiles(table, file)
    if check_datasum and table.verify_datasum() == 0:
        raise UnreadableFrame("the compressed image data are corrupt: their checksum (DATASUM) does not match")
    return RowTiles.of(table, file)


class FitsImage:
    """The image a user means in an open FITS file: its shape and header at once, its rows on demand."""

    def __init__(
        self,
        hdu: HDU,
        header: Mapping[str, Any],
        tiles: RowTiles | None,
        refusing_damage: Callable[[], AbstractContextManager[None]],
    ) -> None:
        self._hdu = hdu
        self._compressed = isinstance(hdu, fits.CompImageHDU)
        # The fast reader of the compressed tiles, when it knows their layout.
        self._tiles = tiles
        self._refusing_damage = refusing_damage
        # The image HDU's own cards, falling back to the primary header's.
        self.header = header
        rows, columns = hdu.shape[-2:]
        # (rows, columns) of the image, or of each plane of a cube.
        self.shape: tuple[int, int] = (rows, columns)
        # Rows of one compression tile: reading fewer costs as much as reading these.
        self.tile_rows: int = hdu.tile_shape[-2] if self._compressed else 1
        # Whether reading rows a few at a time costs no more than all at once: astropy's compressed
        # reader reads the whole heap in one go only for the whole image.
        self.reads_rows_cheaply = tiles is not None or not self._compressed

    def read(self, rows: slice = slice(None), out: np.ndarray | None = None) -> np.ndarray:
        """These rows of the image (of the first plane of a cube); only the tiles holding them are decompressed.

        out, float32 rows of the image's width, may be filled and a view of it returned: reused, it
        spares a fresh allocation (and its page faults) per read. Raises UnreadableFrame when the
        pixels cannot be read.
        """
        if self._tiles is not None:
            return self._reading(self._tiles.read, rows, out)
        return self._reading(lambda: self._hdu.section[(0,) * (len(self._hdu.shape) - 2) + (rows,)])

    def read_rows(self, rows: slice, out: np.ndarray | None = None) -> PixelRows:
        """These rows, whole tile rows, as read does, or as their stored integers and scales when the fast
        tile reader has them (they reduce faster). Raises UnreadableFrame when the pixels cannot be read."""
        if self._tiles is not None and self._tiles.scaled:
            return self._reading(self._tiles.scaled_rows, rows)
        return FloatRows(self.read(rows, out))

    def _reading(self, read: Callable[..., Read], *args: Any) -> Read:
        """read(*args), its errors as UnreadableFrame with a reason for a user."""
        with self._refusing_damage():
            try:
                return read(*args)
            except Exception as err:
                _raise_if_out_of_memory(err)
                if not self._compressed:
                    raise
                # Truncation that astropy warned of still takes precedence in _failure_reason.
                raise UnreadableFrame(f"the compressed image data are corrupt ({err})") from err

    def close(self) -> None:
        """Release the mapped file of the fast tile reader."""
        if self._tiles is not None:
            self._tiles.close()


def _frame(
    path: str | os.PathLike[str],
    file: BinaryIO,
    hdul: fits.HDUList,
    check_datasum: bool,
    refusing_damage: Callable[[], AbstractContextManager[None]],
) -> FitsImage | Spectrum:
    """The image a user means in hdul, the open FITS file at path, or its 1-D spectrum, read whole; any exception
    means it cannot be read.

    Close an image's tiles (FitsImage.close) when done.
    """
    hdu = pick_image_hdu(hdul)
    _check_layout(hdu)
    tiles = None
    if isinstance(hdu, fits.CompImageHDU):
        tiles = _compressed_tiles(path, hdu, hdul.index_of(hdu), file, check_datasum)
    if _holds_spectrum(hdu):
        if tiles is not None:
            # Checked now; a spectrum's one row is read by astropy.
            tiles.close()
        return _spectrum(hdu)
    primary = hdul[0]
    header = hdu.header if hdu is primary else ChainMap(hdu.header, primary.header)
    return FitsImage(hdu, header, tiles, refusing_damage)


def _spectrum(hdu: HDU) -> Spectrum:
    """The 1-D spectrum hdu holds (_holds_spectrum): its first plane's one row, with the HDU's own header, which
    defines its axis."""
    first = (0,) * (len(hdu.shape) - 1)
    return Spectrum(np.array(hdu.section[(*first, slice(None))], dtype=np.float64), hdu.header)


def _failure_reason(start: bytes, error: Exception, caught: Sequence[warnings.WarningMessage]) -> str:
    """A short reason for a user, from the file's first bytes, the error, and astropy's warnings.

    Damage astropy warned of explains whatever error followed it: a header cut short leaves no
    image to find, and a cut in the data leaves too few bytes for the array.
    """
    if not start:
        return "the file is empty"
    warned = [str(warning.message) for warning in caught]
    if any(message.startswith(TRUNCATION_WARNING) for message in warned):
        return "the file is truncated"
    if any(message.startswith(BAD_HEADER_WARNING) for message in warned):
        return "the file is truncated or damaged: a header cannot be read"
    if isinstance(error, UnreadableFrame):
        return str(error)
    if not start.startswith(FITS_SIGNATURE):
        # Proxies and object stores answer errors with a web page.
        page = start.lstrip().startswith(b"<")
        return "not a FITS file but an HTML or XML page" if page else "not a FITS file"
    return NOT_READABLE_FITS


def _raise_if_out_of_memory(error: Exception) -> None:
    """MemoryError when error says memory ran out (a mapping refused counts): not damage, but the worker's
    memory ceiling, which the render pool reports as such."""
    if isinstance(error, MemoryError) or (isinstance(error, OSError) and error.errno == errno.ENOMEM):
        raise MemoryError(str(error)) from error


@contextmanager
def _refusing_damage(start: bytes, caught: Sequence[warnings.WarningMessage]) -> Iterator[None]:
    """Within: any error of astropy's reading the file becomes UnreadableFrame with a reason for a user."""
    try:
        yield
    except Exception as err:
        _raise_if_out_of_memory(err)
        # astropy reports damage as OSError, ValueError, TypeError or its own decompression
        # error depending on where the damage lies; to a caller they all mean the same.
        raise UnreadableFrame(_failure_reason(start, err, caught)) from err


@contextmanager
def open_frame(
    path: str | os.PathLike[str], check_datasum: bool = True, memory_mapped: bool = False
) -> Iterator[FitsImage | Spectrum]:
    """The image a user expects in the FITS file at path, open for reading until the context ends, or its 1-D
    spectrum, read whole.

    Raises UnreadableFrame for anything that is neither a readable FITS image nor a spectrum: an empty,
    truncated or non-FITS file, a table-only file, or (on reading) corrupt compressed tiles;
    with check_datasum, also compressed data that disagree with their DATASUM card. A path
    that cannot be opened raises OSError (FileNotFoundError, ...) as open() does.

    memory_mapped suits reading a band of rows: each compressed tile is then a slice of the
    mapped file, not a read of its own. Pixels read may then refer to the file: use them
    before the context ends.
    """
    # Opened here so a missing or unreadable path raises as itself: it says nothing about the frame.
    with open(path, "rb") as file:
        start = file.read(SIGNATURE_BYTES)
        file.seek(0)
        with warnings.catch_warnings(record=True) as caught:
            # Recorded, never raised or printed: astropy warns of harmless header quirks all the
            # time, and a strict warnings filter must not make a readable frame unreadable.
            warnings.simplefilter("always")
            refusing_damage = partial(_refusing_damage, start, caught)
            with refusing_damage():
                # Unmapped by default: the pixels are read once and nothing refers to the file afterwards.
                # Mapped is astropy's default (None): a strict True would refuse scaled images.
                hdul = fits.open(file, memmap=None if memory_mapped else False)
            with hdul:
                with refusing_damage():
                    frame = _frame(path, file, hdul, check_datasum, refusing_damage)
                try:
                    yield frame
                finally:
                    if isinstance(frame, FitsImage):
                        frame.close()


@contextmanager
def open_image(
    path: str | os.PathLike[str], check_datasum: bool = True, memory_mapped: bool = False
) -> Iterator[FitsImage]:
    """open_frame's image; a 1-D spectrum raises UnreadableFrame, as it has no rows to read (or to compose)."""
    with open_frame(path, check_datasum, memory_mapped) as frame:
        if isinstance(frame, Spectrum):
            raise UnreadableFrame("it holds a 1-D spectrum, not an image")
        yield frame
