"""Read a RICE-compressed image whose tiles are whole rows, as fpack writes them, with one C call
per tile and the dequantization (or BSCALE/BZERO scaling) vectorised, as float32.

astropy's section reader spends about a third of its time in Python around each tile, and a
4096 x 4096 frame is 4096 tiles. The C codecs are astropy's own. Quantized float pixels are
astropy's exactly when dithered, and within two units in the last place of float32 when not;
16- and 32-bit integer pixels are scaled in float32, exactly for 16-bit ones. Undithered pixels can
also be had as their stored integers with each row's scale and zero (`scaled_rows`). Any other layout
(8-bit or blank-marked integers, tiles narrower than a row, GZIP-stored tiles, per-tile blank
values) is left to astropy: `RowTiles.of` answers None.
"""

import mmap
import os
from collections.abc import Mapping
from typing import Any, BinaryIO

import numpy as np
from astropy.io import fits
from astropy.io.fits.hdu.compressed._compression import decompress_rice_1_c, unquantize_float_c

from thumbproxy.render.pixelrows import ScaledRows

RICE = ("RICE_1", "RICE_ONE")
# ZQUANTIZ values and the numbers the C dequantizer takes for them; absent means no dither.
DITHERS = {"NO_DITHER": -1, "SUBTRACTIVE_DITHER_1": 1, "SUBTRACTIVE_DITHER_2": 2}
# ZBITPIX of the integer images read here; 8-bit FITS pixels are unsigned, astropy's to read.
INTEGER_BITPIX = (16, 32)
# Pixels dequantized at once: fewer numpy calls per tile, still within the CPU's cache.
CHUNK_PIXELS = 2**16


def compression_setting(header: Mapping[str, Any], name: str, default: int) -> int:
    """A compression parameter (ZNAMEi = name, ZVALi = value) of the compressed header."""
    index = 1
    while f"ZNAME{index}" in header:
        if header[f"ZNAME{index}"] == name:
            return int(header[f"ZVAL{index}"])
        index += 1
    return default


class RowTiles:
    """The tiles of one compressed image HDU, in a file open for reading."""

    def __init__(
        self, header: Mapping[str, Any], table: np.ndarray, file: mmap.mmap, starts: np.ndarray, ends: np.ndarray
    ) -> None:
        self._columns = int(header["ZNAXIS1"])
        self._tile_rows = int(header["ZTILE2"])
        self._rows = int(header["ZNAXIS2"])
        self._blocksize = compression_setting(header, "BLOCKSIZE", 32)
        self._bytepix = compression_setting(header, "BYTEPIX", 4)
        self._dither = DITHERS[header.get("ZQUANTIZ", "NO_DITHER")]
        self._dither_seed = int(header.get("ZDITHER0", 0))
        blank = header.get("ZBLANK")
        self._blank = None if blank is None else int(blank)
        # Where each tile's bytes start and end in the file, as lists: indexing numpy per tile is slow.
        self._starts: list[int] = starts.tolist()
        self._ends: list[int] = ends.tolist()
        # Each tile's dequantization; integers are scaled as the image's BSCALE and BZERO say.
        if "ZSCALE" in table.dtype.names:  # type: ignore[operator]  # a table's dtype has names
            self._scale = table["ZSCALE"].astype(np.float64)
            self._zero = table["ZZERO"].astype(np.float64)
        else:
            self._scale = np.full(table.size, float(header.get("BSCALE", 1.0)))
            self._zero = np.full(table.size, float(header.get("BZERO", 0.0)))
        # The same as a column each, in float32: within two units in the last place of astropy's float64, and faster.
        self._scale32 = self._scale.astype(np.float32)[:, None]
        self._zero32 = self._zero.astype(np.float32)[:, None]
        self._file = file
        # Each tile's bytes as a view of the map: the C codec reads a numpy array's buffer in place.
        self._bytes = np.frombuffer(file, np.uint8)

    @classmethod
    def of(cls, hdu: fits.BinTableHDU, file: BinaryIO) -> "RowTiles | None":
        """The tiles of the compressed image table hdu (opened with disable_image_compression) of
        file, or None when its layout is not one this module reads."""
        try:
            return cls._of(hdu, file)
        except (KeyError, ValueError, TypeError):
            # A header this module misreads is astropy's to judge.
            return None

    @classmethod
    def _of(cls, hdu: fits.BinTableHDU, file: BinaryIO) -> "RowTiles | None":
        header = hdu.header
        names = set(hdu.columns.names)
        quantized = header.get("ZBITPIX") == -32 and {"ZSCALE", "ZZERO"} <= names
        # Blank-marked integers are astropy's: their blanks are not scaled like other pixels.
        integer = (
            header.get("ZBITPIX") in INTEGER_BITPIX
            and "ZSCALE" not in names
            and "ZBLANK" not in header
            and "BLANK" not in header
        )
        if (
            header.get("ZCMPTYPE") not in RICE
            or header.get("ZNAXIS") != 2
            or header.get("ZTILE1", header.get("ZNAXIS1")) != header.get("ZNAXIS1")
            or header.get("ZQUANTIZ", "NO_DITHER") not in DITHERS
            or not (quantized or integer)
            or "ZBLANK" in names
        ):
            return None
        width = header["NAXIS1"] * header["NAXIS2"]
        start = hdu.fileinfo()["datLoc"]
        file.seek(start)
        table = np.frombuffer(file.read(width), hdu.columns.dtype.newbyteorder(">"))
        if table.size != header["NAXIS2"] or (table["COMPRESSED_DATA"][:, 0] == 0).any():
            # Zero-length tiles are stored losslessly in another column: astropy's case.
            return None
        # Each tile's (bytes, heap offset).
        descriptors = table["COMPRESSED_DATA"].astype(np.int64)
        starts = start + header.get("THEAP", width) + descriptors[:, 1]
        ends = starts + descriptors[:, 0]
        if ends.max() > os.fstat(file.fileno()).st_size:
            # Cut short: astropy's reader tells the user so.
            return None
        return cls(header, table, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ), starts, ends)

    def close(self) -> None:
        """Unmap the file."""
        # The view holds the map's buffer: unmapping refuses while it lives.
        del self._bytes
        self._file.close()

    @property
    def scaled(self) -> bool:
        """Whether pixels are their stored integers times a scale plus a zero (no dither): see scaled_rows."""
        return self._dither == DITHERS["NO_DITHER"]

    def scaled_rows(self, rows: slice) -> ScaledRows:
        """These whole tile rows (step 1) as their stored integers, when scaled; ValueError when a tile is corrupt."""
        start, stop, _ = rows.indices(self._rows)
        first_tile, last_tile, first_row, shape = self._tiles_of(rows)
        # A last tile cut short by the image's end has fewer pixels than the others.
        whole = range(first_tile, min(last_tile, self._rows // self._tile_rows))
        short = range(whole.stop, last_tile)
        tiles = self._tiles(whole, self._tile_rows * self._columns)
        if short:
            tiles += self._tiles(short, self._tile_pixels(short.start))
        quantized = np.frombuffer(b"".join(tiles), f"i{self._bytepix}").reshape(shape)
        wanted = slice(start - first_row, max(start, stop) - first_row)
        # The generator gives exactly the scale and the zero, which mypy cannot count.
        return ScaledRows(  # type: ignore[call-arg]
            quantized[wanted],
            *(  # type: ignore[arg-type]
                np.repeat(column[first_tile:last_tile], self._tile_rows, axis=0)[wanted]
                for column in (self._scale32, self._zero32)
            ),
            self._blank,
        )

    def _tiles_of(self, rows: slice) -> tuple[int, int, int, tuple[int, int]]:
        """The first and after-last tiles holding these rows (step 1), the first tile's first row, and
        the (rows, columns) of those tiles."""
        start, stop, _ = rows.indices(self._rows)
        stop = max(start, stop)
        first_tile, last_tile = start // self._tile_rows, -(-stop // self._tile_rows)
        first_row = first_tile * self._tile_rows
        return (
            first_tile,
            last_tile,
            first_row,
            (min(self._rows, last_tile * self._tile_rows) - first_row, self._columns),
        )

    def read(self, rows: slice, out: np.ndarray | None = None) -> np.ndarray:
        """float32 pixels of these rows (step 1); ValueError when a tile is corrupt.

        Into out (float32, the image's width) when it has room for the whole tiles holding them.
        """
        start, stop, _ = rows.indices(self._rows)
        first_tile, last_tile, first_row, shape = self._tiles_of(rows)
        fits_out = out is not None and out.shape[0] >= shape[0] and out.shape[1:] == shape[1:]
        # fits_out only when out is not None.
        pixels = out[: shape[0]] if fits_out else np.empty(shape, np.float32)  # type: ignore[index]
        flat = pixels.reshape(-1)
        if self.scaled:
            self._read_undithered(first_tile, last_tile, flat)
        else:
            self._read_dithered(first_tile, last_tile, flat)
        return pixels[start - first_row : max(start, stop) - first_row]

    def _tiles(self, tiles: range, pixels: int) -> list[bytes]:
        """The quantized integers of these tiles of `pixels` pixels each, decompressed."""
        blocksize, bytepix = self._blocksize, self._bytepix
        # The view looked up on self, never held in a local: a traceback keeping this frame must not keep the map.
        return [
            decompress_rice_1_c(self._bytes[start:end], blocksize, bytepix, pixels)
            for start, end in zip(self._starts[tiles.start : tiles.stop], self._ends[tiles.start : tiles.stop])
        ]

    def _tile_pixels(self, tile: int) -> int:
        return (min(self._rows, (tile + 1) * self._tile_rows) - tile * self._tile_rows) * self._columns

    def _read_dithered(self, first_tile: int, last_tile: int, out: np.ndarray) -> None:
        """Tiles into out, dequantized by astropy's C code: the dither is a sequence per tile."""
        position = 0
        for tile in range(first_tile, last_tile):
            pixels = self._tile_pixels(tile)
            [quantized] = self._tiles(range(tile, tile + 1), pixels)
            values = np.frombuffer(
                unquantize_float_c(
                    quantized,
                    tile + self._dither_seed,
                    pixels,
                    self._scale[tile],
                    self._zero[tile],
                    self._dither,
                    0,
                    0,
                    0.0,
                    self._bytepix,
                ),
                np.float32,
            )
            if self._blank is not None:
                values = np.where(np.frombuffer(quantized, f"i{self._bytepix}") == self._blank, np.nan, values)
            out[position : position + pixels] = values
            position += pixels

    def _read_undithered(self, first_tile: int, last_tile: int, out: np.ndarray) -> None:
        """Tiles into out, dequantized a chunk of tiles at a time."""
        per_chunk = max(1, CHUNK_PIXELS // (self._tile_rows * self._columns))
        position = 0
        for chunk_start in range(first_tile, last_tile, per_chunk):
            chunk = self.scaled_rows(
                slice(chunk_start * self._tile_rows, min(last_tile, chunk_start + per_chunk) * self._tile_rows)
            )
            chunk.values(out[position : position + chunk.size].reshape(chunk.quantized.shape))
            position += chunk.size
