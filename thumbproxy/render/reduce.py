"""Shrink a full-resolution frame to thumbnail size: output size, block mean, Lanczos."""

import math
from collections.abc import Callable
from typing import cast

import numpy as np
import numpy.typing as npt
from PIL import Image

from thumbproxy.render.options import RenderOptions
from thumbproxy.render.orient import Orientation

# As Pillow's Image.thumbnail: the integer block reduction leaves at least this much
# shrinking to Lanczos, which is then close to resampling the full frame with Lanczos.
REDUCING_GAP = 2.0


def thumbnail_size(size: tuple[int, int], box: tuple[int, int]) -> tuple[int, int]:
    """The (width, height) Pillow's Image.thumbnail(box) gives an image of this (width, height).

    It fits inside box, keeps the aspect ratio with the same rounding, and is never
    larger than size.
    """
    width, height = size
    box_width, box_height = box
    if box_width >= width and box_height >= height:
        return width, height

    def round_aspect(number: float, error: Callable[[int], float]) -> int:
        return max(min(math.floor(number), math.ceil(number), key=error), 1)

    aspect = width / height
    if box_width / box_height >= aspect:
        return round_aspect(box_height * aspect, lambda n: abs(aspect - n / box_height)), box_height
    return box_width, round_aspect(box_width / aspect, lambda n: 0 if n == 0 else abs(aspect - box_width / n))


def output_size(shape: tuple[int, int], orientation: Orientation, options: RenderOptions) -> tuple[int, int]:
    """The (width, height), in data orientation, of the thumbnail of an image of shape (rows,
    columns): it fits options' box once oriented, keeps its aspect ratio and is never enlarged."""
    rows, columns = shape
    oriented = (rows, columns) if orientation.swaps_axes else (columns, rows)
    width, height = thumbnail_size(oriented, (options.width, options.height))
    # Resampling happens before orientation, so a quarter turn swaps the target too.
    return (height, width) if orientation.swaps_axes else (width, height)


def reduction_factor(shape: tuple[int, int], target: tuple[int, int]) -> int:
    """The block size to average over before resampling an image of shape (rows, columns)
    to target (width, height)."""
    rows, columns = shape
    width, height = target
    return max(1, int(min(columns / width, rows / height) / REDUCING_GAP))


def block_mean(data: np.ndarray, factor: int) -> np.ndarray:
    """Mean over factor x factor blocks as float32, non-finite pixels left out of the mean.

    Trailing rows and columns that do not fill a block are dropped: fewer than factor
    pixels, which is less than one pixel of the thumbnail. A block with no finite pixel
    is NaN.
    """
    if factor == 1:
        # Always a new array: callers overwrite the result.
        return infinite_as_nan(data.astype(np.float32))
    data = whole_blocks(data, factor)
    with np.errstate(over="ignore", invalid="ignore"):
        means = block_sums(data, factor)
    means /= np.float32(factor * factor)
    average_finite(data, factor, means, ~np.isfinite(means))
    return means


def infinite_as_nan(pixels: np.ndarray) -> np.ndarray:
    """pixels, changed in place: infinite ones become NaN, as a block with no finite pixel is."""
    pixels[np.isinf(pixels)] = np.nan
    return pixels


def whole_blocks(data: np.ndarray, factor: int) -> np.ndarray:
    """data without the trailing rows and columns that do not fill a factor x factor block."""
    return data[: data.shape[0] // factor * factor, : data.shape[1] // factor * factor]


def block_sums(data: np.ndarray, factor: int) -> np.ndarray:
    """float32 sums over the factor x factor blocks of data (whole blocks only, see whole_blocks)."""
    rows, columns = data.shape[0] // factor, data.shape[1] // factor
    # Summing the row blocks first reads the frame once in memory order; the column
    # blocks are then added as strided slices, much faster than reducing a short last axis.
    # Shapes spelled out: a band of a frame can have no rows, and -1 cannot be inferred then.
    # Sums past the float32 range become inf, which callers average again.
    row_sums = data.reshape(rows, factor, columns * factor).sum(axis=1, dtype=np.float32)
    return column_blocks(row_sums, factor, np.add)


def block_any(marks: np.ndarray, factor: int) -> np.ndarray:
    """Whether each factor x factor block of marks (booleans, whole blocks only) holds a True."""
    rows, columns = marks.shape[0] // factor, marks.shape[1] // factor
    # As block_sums: rows first, then the columns as strided slices, twenty times faster than
    # reducing the short axes of a four-dimensional view.
    # numpy's stubs type any(axis=...) as a scalar or an array: over one axis of a 3-D array it is an array.
    in_rows = cast(np.ndarray, marks.reshape(rows, factor, columns * factor).any(axis=1))
    return column_blocks(in_rows, factor, np.logical_or)


def column_blocks(row_values: np.ndarray, factor: int, combine: np.ufunc) -> np.ndarray:
    """Each run of factor columns of row_values (whole runs only) combined by combine (np.add, ...), one
    strided slice at a time."""
    combined = row_values[:, 0::factor].copy()
    for offset in range(1, factor):
        combine(combined, row_values[:, offset::factor], out=combined)
    return combined


def average_finite(data: np.ndarray, factor: int, means: np.ndarray, bad: np.ndarray) -> None:
    """Set the means of the blocks marked bad to the mean of their finite pixels of data (whole blocks)."""
    if bad.any():
        means[bad] = finite_means(blocks_at(data, factor, bad))


def blocks_at(data: np.ndarray, factor: int, marked: np.ndarray) -> np.ndarray:
    """The whole factor x factor blocks of data marked True in `marked` (one per block): (n, factor, factor)."""
    rows, columns = marked.shape
    block_rows, block_columns = np.nonzero(marked)
    return data.reshape(rows, factor, columns, factor)[block_rows, :, block_columns, :]


def finite_means(blocks: np.ndarray) -> np.ndarray:
    """The mean of each block's finite pixels, (n,) from (n, factor, factor); NaN for a block with none."""
    finite = np.isfinite(blocks)
    counts: npt.NDArray[np.intp] = finite.sum(axis=(1, 2))
    totals: npt.NDArray[np.float64] = np.where(finite, blocks, 0).sum(axis=(1, 2), dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        return totals / counts


def resample(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resample a finite float32 image to size (width, height) with a Lanczos filter."""
    resized = Image.fromarray(image).resize(size, Image.Resampling.LANCZOS)
    return np.asarray(resized)
