"""FITS files crafted to break a renderer, each named for what it does, and the edits that craft them.

The adversarial tests request each of them; bench.soak mixes them into its load.
"""

import gzip
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
from astropy.io import fits


def with_card(path: Path, keyword: str, value: str) -> Path:
    """`path` with the value of its first `keyword` card replaced by `value`, written as the card's raw text
    (crafted values astropy would refuse to write)."""
    raw = bytearray(path.read_bytes())
    start = raw.index(keyword.encode().ljust(8) + b"= ")
    raw[start : start + 80] = (keyword.encode().ljust(8) + b"= " + value.encode().rjust(20)).ljust(80)
    path.write_bytes(bytes(raw))
    return path


def with_tile(path: Path, index: int, tile: bytes) -> Path:
    """The compressed image at path with its tile number `index` replaced by these bytes, as they are."""
    with fits.open(path, disable_image_compression=True) as tables:
        table = tables[1]
        tiles = [np.array(stored) for stored in table.data["COMPRESSED_DATA"]]
        tiles[index] = np.frombuffer(tile, np.uint8)
        column = fits.Column(name="COMPRESSED_DATA", format="1PB()", array=np.array(tiles, dtype=object))
        hostile = fits.BinTableHDU.from_columns([column], header=table.header)
        fits.HDUList([fits.PrimaryHDU(), hostile]).writeto(path, overwrite=True)
    return path


def _counts(seed: int, dtype: type = np.int32) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 1000, (64, 64)).astype(dtype)


def _compressed(path: Path, data: np.ndarray, compression: str, **options: object) -> Path:
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(data, compression_type=compression, **options)]).writeto(
        path, overwrite=True
    )
    return path


def gzip_bomb(path: Path) -> Path:
    """GZIP_1 64 x 64 pixels whose sixth tile, 200 KB, inflates to 200 MiB where its 64 pixels hold 256 bytes."""
    return with_tile(_compressed(path, _counts(3), "GZIP_1"), 5, gzip.compress(bytes(200 * 2**20), 9))


def misshapen_hcompress(path: Path) -> Path:
    """HCOMPRESS_1 in four tiles declared 13 rows each, whose streams hold 16: the decoder would write past
    its buffer (glibc aborts)."""
    _compressed(path, _counts(4), "HCOMPRESS_1", tile_shape=(16, 64))
    for keyword, value in (("ZTILE2", "13"), ("ZNAXIS2", "52")):
        with_card(path, keyword, value)
    return path


def tile_table_of_other_tiles(path: Path) -> Path:
    """HCOMPRESS_1 in four tiles of 16 rows whose header says 32 rows: two tiles, four rows in the tile table."""
    return with_card(_compressed(path, _counts(4), "HCOMPRESS_1", tile_shape=(16, 64)), "ZTILE2", "32")


def tile_outside_the_data(path: Path) -> Path:
    """GZIP_1 whose first tile's descriptor points a megabyte past the end of the data."""
    _compressed(path, _counts(6), "GZIP_1")
    with fits.open(path, disable_image_compression=True) as tables:
        start = tables[1].fileinfo()["datLoc"]
    raw = bytearray(path.read_bytes())
    # A descriptor is two big-endian int32: the tile's length in bytes, then its offset in the heap.
    raw[start : start + 8] = struct.pack(">ii", 1000, 2**20)
    path.write_bytes(bytes(raw))
    return path


def rice_setting(path: Path, keyword: str, value: str) -> Path:
    """RICE_1 64 x 64 16-bit pixels with one compression parameter card (ZVAL1 BLOCKSIZE, ZVAL2 BYTEPIX) set."""
    return with_card(_compressed(path, _counts(2, np.int16), "RICE_1"), keyword, value)


def one_tile_per_pixel(path: Path, shape: tuple[int, int]) -> Path:
    """RICE_1 float pixels of this shape, declared in 1 x 1 tiles: one decoder call per pixel."""
    data = np.random.default_rng(1).normal(100.0, 10.0, shape).astype(np.float32)
    _compressed(path, data, "RICE_1")
    for keyword in ("ZTILE1", "ZTILE2"):
        with_card(path, keyword, "1")
    return path


def without_pixels(path: Path) -> Path:
    """RICE_1 whose declared height is negative."""
    return with_card(_compressed(path, _counts(5, np.int16), "RICE_1"), "ZNAXIS2", "-300")


def web_page(path: Path) -> Path:
    """Not FITS at all: the error page a proxy answers, saved under a FITS name."""
    path.write_bytes(b"<html><body><h1>502 Bad Gateway</h1></body></html>\n")
    return path


def _plain(path: Path) -> Path:
    """A plain 64 x 64 image in the primary HDU, scaled (BSCALE, BZERO) as raw frames are."""
    hdu = fits.PrimaryHDU(_counts(7, np.int16))
    hdu.header["BSCALE"], hdu.header["BZERO"] = 1.0, 32768.0
    hdu.writeto(path, overwrite=True)
    return path


def header_of_text(path: Path) -> Path:
    """A FITS signature card, then text that is no header (no END card)."""
    path.write_bytes(b"SIMPLE  =                    T".ljust(80) + b"x" * (2 * 2880 - 80))
    return path


# Files astropy itself fails on, each with an exception of its own (OSError, TypeError, KeyError,
# AttributeError, numpy's UFuncTypeError), opening them or reading their pixels.
ASTROPY_FAILURES: dict[str, Callable[[Path], Path]] = {
    "header of text": header_of_text,
    "text BITPIX": lambda path: with_card(_plain(path), "BITPIX", "'abc'"),
    "NAXIS past its axes": lambda path: with_card(_plain(path), "NAXIS", "3"),
    "compression parameter named by a number": lambda path: with_card(
        _compressed(path, _counts(8, np.int16), "RICE_1"), "ZNAME1", "7"
    ),
    "text BSCALE": lambda path: with_card(_plain(path), "BSCALE", "'abc'"),
}


# One of each kind, by a name for reports: every one must answer 422.
HOSTILE_FILES: dict[str, Callable[[Path], Path]] = {
    "gzip-bomb": gzip_bomb,
    "misshapen-hcompress": misshapen_hcompress,
    "tile-table-of-other-tiles": tile_table_of_other_tiles,
    "tile-outside-the-data": tile_outside_the_data,
    "rice-bytepix": lambda path: rice_setting(path, "ZVAL2", "-1"),
    "too-many-tiles": lambda path: one_tile_per_pixel(path, (300, 400)),
    "without-pixels": without_pixels,
    "web-page": web_page,
}
