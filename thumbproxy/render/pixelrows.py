"""Rows of a frame's pixels that reduce and sample themselves: float pixels, or the integers a
compressed frame stores with each row's scale and zero (pixel = integer * scale + zero).

Scaled rows are block-averaged on their integers: each pixel is scaled, but its zero is added
once per block, and no float copy of the rows is written and read again. That takes about a
third less time than dequantizing and averaging, and rounds differently: a frame whose rows come
scaled always comes scaled (see FitsImage.read_rows), so its reductions never depend on how it
was read. Single pixels are the same either way.
"""

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from thumbproxy.render.reduce import (
    block_any,
    block_mean,
    blocks_at,
    column_blocks,
    finite_means,
    infinite_as_nan,
    whole_blocks,
)

# Pixels scaled at once when block-averaging scaled rows (1 MiB as float32): within the CPU's cache.
CACHE_PIXELS = 2**18


class PixelRows(Protocol):
    """Some whole rows of a frame."""

    @property
    def size(self) -> int: ...

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, columns)."""

    def take(self, indices: np.ndarray) -> np.ndarray:
        """float32 pixels at these flat indices of the rows; indices beyond them stand for the first or last pixel."""

    def row_values(self, rows: slice | np.ndarray) -> np.ndarray:
        """A new array: the float32 pixels of some of the rows (a slice, or their indices), (rows, columns), as take
        gives them."""

    def block_mean(self, factor: int) -> np.ndarray:
        """A new array: the rows' mean over factor x factor blocks, as reduce.block_mean defines it."""


def dequantize(quantized: np.ndarray, scale: np.ndarray, zero: np.ndarray, blank: int | None, out: np.ndarray) -> None:
    """float32 pixels into out: quantized * scale + zero, a row's scale and zero (columns of float32)
    the same along it; NaN where the integer is blank."""
    # Pixels past the float32 range become inf, which reductions leave out.
    with np.errstate(over="ignore"):
        np.multiply(quantized, scale, out=out, dtype=np.float32, casting="unsafe")
        out += zero
    if blank is not None:
        out[quantized == blank] = np.nan


@dataclass(frozen=True)
class FloatRows:
    """Rows already float pixels."""

    data: np.ndarray

    @property
    def size(self) -> int:
        return self.data.size

    @property
    def shape(self) -> tuple[int, int]:
        rows, columns = self.data.shape
        return rows, columns

    def take(self, indices: np.ndarray) -> np.ndarray:
        return self.data.take(indices, mode="clip")

    def row_values(self, rows: slice | np.ndarray) -> np.ndarray:
        values: np.ndarray = self.data[rows].copy()
        return values

    def block_mean(self, factor: int) -> np.ndarray:
        return block_mean(self.data, factor)


@dataclass(frozen=True)
class ScaledRows:
    """Rows kept as the integers a frame stores, each row with its own float32 scale and zero."""

    # (rows, columns) integers.
    quantized: np.ndarray
    # (rows, 1) float32 each.
    scale: np.ndarray
    zero: np.ndarray
    # The integer standing for NaN, if any.
    blank: int | None

    @property
    def size(self) -> int:
        return self.quantized.size

    @property
    def shape(self) -> tuple[int, int]:
        rows, columns = self.quantized.shape
        return rows, columns

    def take(self, indices: np.ndarray) -> np.ndarray:
        rows = indices // self.quantized.shape[1]
        values = np.empty(indices.shape, np.float32)
        dequantize(
            self.quantized.take(indices, mode="clip"),
            self.scale.take(rows, mode="clip"),
            self.zero.take(rows, mode="clip"),
            self.blank,
            values,
        )
        return values

    def row_values(self, rows: slice | np.ndarray) -> np.ndarray:
        quantized = self.quantized[rows]
        values = np.empty(quantized.shape, np.float32)
        dequantize(quantized, self.scale[rows], self.zero[rows], self.blank, values)
        return values

    def block_mean(self, factor: int) -> np.ndarray:
        if factor == 1:
            return infinite_as_nan(self.values())
        quantized = whole_blocks(self.quantized, factor)
        rows, columns = quantized.shape[0] // factor, quantized.shape[1] // factor
        means = np.empty((rows, columns), np.float32)
        blank_blocks = np.zeros((rows, columns), bool)
        # A few block rows at a time: their scaled pixels stay in the CPU's cache until summed.
        step = max(1, CACHE_PIXELS // (factor * quantized.shape[1]))
        for first in range(0, rows, step):
            block_rows = slice(first, min(rows, first + step))
            pixel_rows = slice(first * factor, block_rows.stop * factor)
            chunk = quantized[pixel_rows]
            means[block_rows] = self._block_sums(chunk, self.scale[pixel_rows], self.zero[pixel_rows], factor)
            if self.blank is not None:
                blank_blocks[block_rows] = block_any(chunk == self.blank, factor)
        means /= np.float32(factor * factor)
        bad = blank_blocks | ~np.isfinite(means)
        if bad.any():
            # Blocks holding blank or overflowing pixels: the mean of their finite float pixels, only
            # those blocks dequantized.
            blocks = blocks_at(quantized, factor, bad)
            bad_rows = np.nonzero(bad)[0]
            row_scale, row_zero = (
                column[: rows * factor].reshape(rows, factor, 1)[bad_rows] for column in (self.scale, self.zero)
            )
            values = np.empty(blocks.shape, np.float32)
            dequantize(blocks, row_scale, row_zero, self.blank, values)
            means[bad] = finite_means(values)
        return means

    @staticmethod
    def _block_sums(quantized: np.ndarray, scale: np.ndarray, zero: np.ndarray, factor: int) -> np.ndarray:
        """Sums over the factor x factor blocks of these whole block rows' pixels."""
        pixels = quantized.astype(np.float32).reshape(-1, factor, quantized.shape[1])
        scale = scale.reshape(-1, factor, 1)
        with np.errstate(over="ignore", invalid="ignore"):
            # Each block row's scaled pixel rows added up one by one: the order and roundings of
            # scaling every pixel and then summing the rows, without the broadcast scale being
            # copied out for every pixel as one multiplication of the whole chunk does.
            row_sums = pixels[:, 0] * scale[:, 0]
            for row in range(1, factor):
                row_sums += pixels[:, row] * scale[:, row]
            sums = column_blocks(row_sums, factor, np.add)
            # Each row's zero once per block, not once per pixel: factor times the row's zero.
            sums += zero.reshape(-1, factor).sum(axis=1, dtype=np.float32)[:, None] * np.float32(factor)
        return sums

    def values(self, out: np.ndarray | None = None) -> np.ndarray:
        """The float32 pixels, (rows, columns), into out when given."""
        values = np.empty(self.quantized.shape, np.float32) if out is None else out
        dequantize(self.quantized, self.scale, self.zero, self.blank, values)
        return values
