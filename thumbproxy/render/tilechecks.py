"""Compressed tiles checked from the header, the tile table and each tile's first bytes, before any is decoded.

The C decoders trust what they are told: a RICE block size or pixel width outside its
definition, an HCOMPRESS stream whose own shape is not its tile's, or a GZIP stream that
inflates far past its tile make them write past their buffers or allocate gigabytes.
"""

import math
import zlib
from collections.abc import Iterator, Mapping
from typing import Any, BinaryIO

import numpy as np
from astropy.io import fits

from thumbproxy.render.errors import UnreadableFrame
from thumbproxy.render.rowtiles import compression_setting

# The block sizes and pixel widths RICE_1 is defined for.
RICE_SETTINGS = {"BLOCKSIZE": (16, 32), "BYTEPIX": (1, 2, 4, 8)}
GZIP = ("GZIP_1", "GZIP_2")
HCOMPRESS = "HCOMPRESS_1"
# An HCOMPRESS stream starts with these two bytes, then its tile's rows and columns as big-endian int32.
HCOMPRESS_MAGIC = b"\xdd\x99"
# The widest pixel stored (64-bit): no tile holds more bytes than this per pixel.
MAX_BYTES_PER_PIXEL = 8
# A GZIP tile is inflated this much at a time, each piece thrown away, to count what it holds.
INFLATE_PIECE = 2**20
# The tile columns of the tables: every algorithm's own, and the lossless one for tiles that could not be quantized.
TILE_COLUMNS = ("COMPRESSED_DATA", "GZIP_COMPRESSED_DATA")


def check_tiles(table: fits.BinTableHDU, file: BinaryIO) -> None:
    """UnreadableFrame unless every tile of the compressed image `table` (opened with
    disable_image_compression, from `file`) lies within the data and fits the tile it stands for."""
    header = table.header
    _check_rice_settings(header)
    algorithm = header.get("ZCMPTYPE")
    shapes = _tile_shapes(header)
    if header.get("NAXIS2") != len(shapes):
        raise UnreadableFrame(f"its tile table has {header.get('NAXIS2')} rows for {len(shapes)} tiles")
    width = int(header["NAXIS1"]) * int(header["NAXIS2"])
    start = table.fileinfo()["datLoc"]
    file.seek(start)
    rows = np.frombuffer(file.read(width), table.columns.dtype.newbyteorder(">"))
    heap = start + int(header.get("THEAP", width))
    end = start + width + int(header.get("PCOUNT", 0))
    for column in TILE_COLUMNS:
        if column not in (rows.dtype.names or ()):
            continue
        descriptors = rows[column].astype(np.int64)
        lengths, offsets = descriptors[:, 0], descriptors[:, 1]
        if (lengths < 0).any() or (offsets < 0).any() or (heap + offsets + lengths > end).any():
            raise UnreadableFrame("its compressed tiles point outside its data")
        if column == "GZIP_COMPRESSED_DATA" or algorithm in GZIP:
            _check_inflated_sizes(file, heap, lengths, offsets, shapes)
        elif algorithm == HCOMPRESS:
            _check_hcompress_shapes(file, heap, lengths, offsets, shapes)


def _check_rice_settings(header: Mapping[str, Any]) -> None:
    if header.get("ZCMPTYPE") != "RICE_1":
        return
    for name, allowed in RICE_SETTINGS.items():
        # Not named: the decoder's default, one of the allowed.
        value = compression_setting(header, name, allowed[0])
        if value not in allowed:
            raise UnreadableFrame(f"its RICE_1 {name} is {value}, not one of {', '.join(map(str, allowed))}")


def _tile_shapes(header: Mapping[str, Any]) -> list[tuple[int, ...]]:
    """Each tile's extent along every axis (ZNAXIS1 first), in the order of the tile table's rows."""
    axes = [int(header[f"ZNAXIS{axis}"]) for axis in range(1, int(header["ZNAXIS"]) + 1)]
    tiles = [int(header.get(f"ZTILE{axis}", 1 if axis > 1 else axes[0])) for axis in range(1, len(axes) + 1)]
    # Along each axis: the tiles' extents, the last cut short by the image's edge.
    extents = [[min(tile, length - first) for first in range(0, length, tile)] for length, tile in zip(axes, tiles)]
    shapes: list[tuple[int, ...]] = [()]
    # The first axis varies fastest from one row of the table to the next.
    for along in reversed(extents):
        shapes = [(*shape, extent) for shape in shapes for extent in along]
    return [shape[::-1] for shape in shapes]


def _stored_tiles(
    file: BinaryIO,
    heap: int,
    lengths: np.ndarray,
    offsets: np.ndarray,
    shapes: list[tuple[int, ...]],
    first: int | None = None,
) -> Iterator[tuple[bytes, tuple[int, ...]]]:
    """Each tile's stored bytes (only its `first` bytes, if given) and its shape; empty tiles left out."""
    for length, offset, shape in zip(lengths.tolist(), offsets.tolist(), shapes):
        if length:
            file.seek(heap + offset)
            yield file.read(length if first is None else min(first, length)), shape


def _check_inflated_sizes(
    file: BinaryIO, heap: int, lengths: np.ndarray, offsets: np.ndarray, shapes: list[tuple[int, ...]]
) -> None:
    for rest, shape in _stored_tiles(file, heap, lengths, offsets, shapes):
        limit = math.prod(shape) * MAX_BYTES_PER_PIXEL
        # Automatic header detection: zlib or gzip, as writers differ.
        inflater = zlib.decompressobj(zlib.MAX_WBITS | 32)
        inflated = 0
        try:
            while rest and not inflater.eof:
                inflated += len(inflater.decompress(rest, INFLATE_PIECE))
                if inflated > limit:
                    raise UnreadableFrame(
                        f"a GZIP tile inflates past the {limit} bytes its {' x '.join(map(str, shape))} pixels can hold"
                    )
                rest = inflater.unconsumed_tail
        except zlib.error as error:
            raise UnreadableFrame(f"the compressed image data are corrupt ({error})") from None


def _check_hcompress_shapes(
    file: BinaryIO, heap: int, lengths: np.ndarray, offsets: np.ndarray, shapes: list[tuple[int, ...]]
) -> None:
    for start, shape in _stored_tiles(file, heap, lengths, offsets, shapes, first=10):
        rows, columns = (int.from_bytes(start[i : i + 4], "big", signed=True) for i in (2, 6))
        if start[:2] != HCOMPRESS_MAGIC or (rows, columns) != (shape[1], shape[0]) or math.prod(shape[2:]) != 1:
            raise UnreadableFrame(
                f"an HCOMPRESS tile is not of its declared shape ({shape[0]} x {shape[1]} pixels; ZTILEn)"
            )
