"""Resample an image onto another image's pixel grid through an affine map, with numpy alone.

Coordinates are (x, y) = (column, row), 0-based, at pixel centres.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# Coordinates this close to a whole pixel are taken as whole: the map came from floating-point
# arithmetic, and a hair's breadth must not make a box one pixel smaller.
SNAP = 1e-6
# A linear part this close to the identity moves points by under 0.01 pixel across 10000
# pixels: the map is a translation, and four slices resample it faster than a gather.
IDENTITY_TOLERANCE = 1e-6


@dataclass(frozen=True)
class Affine:
    """The map (x, y) -> matrix @ (x, y) + offset."""

    matrix: np.ndarray
    offset: np.ndarray

    @classmethod
    def translation(cls, dx: float, dy: float) -> "Affine":
        """The map (x, y) -> (x + dx, y + dy)."""
        return cls(np.eye(2), np.array([dx, dy], dtype=float))

    def __call__(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Where the points (x, y) map to."""
        (a, b), (c, d) = self.matrix
        return a * x + b * y + self.offset[0], c * x + d * y + self.offset[1]

    def inverse(self) -> "Affine":
        """The map back."""
        inverse = np.linalg.inv(self.matrix)
        return Affine(inverse, -inverse @ self.offset)

    @property
    def is_translation(self) -> bool:
        """Whether the map only moves points, to well under a pixel across a frame."""
        return bool(np.allclose(self.matrix, np.eye(2), rtol=0.0, atol=IDENTITY_TOLERANCE))


@dataclass(frozen=True)
class Box:
    """Rows top..top + rows - 1 and columns left..left + columns - 1 of an image."""

    top: int
    left: int
    rows: int
    columns: int


def overlap(shapes: Sequence[tuple[int, int]], maps: Sequence[Affine]) -> Box | None:
    """The box of the first image's pixels that every map sends inside its own image.

    maps[i] takes the first image's coordinates to those of the image of shape shapes[i]
    (rows, columns). Each image's outline, mapped back, is a parallelogram; the box lies
    inside all of them, tightly for turns by multiples of a quarter turn, conservatively in
    between. None when they do not overlap.
    """
    left, top = 0.0, 0.0
    right, bottom = math.inf, math.inf
    for (rows, columns), image_map in zip(shapes, maps):
        corners_x = np.array([0.0, columns - 1.0, 0.0, columns - 1.0])
        corners_y = np.array([0.0, 0.0, rows - 1.0, rows - 1.0])
        x, y = image_map.inverse()(corners_x, corners_y)
        # Of the four corners, the second from each side bounds the box on that side.
        x, y = np.sort(x), np.sort(y)
        left, right = max(left, x[1]), min(right, x[2])
        top, bottom = max(top, y[1]), min(bottom, y[2])
    first, last = math.ceil(left - SNAP), math.floor(right + SNAP)
    upper, lower = math.ceil(top - SNAP), math.floor(bottom + SNAP)
    if last < first or lower < upper:
        return None
    return Box(upper, first, lower - upper + 1, last - first + 1)


def _translated(padded: np.ndarray, x: float, y: float, rows: int, columns: int) -> np.ndarray:
    """Bilinear samples at (x + column, y + row) for a grid of rows x columns: four slices."""
    column, row = math.floor(x), math.floor(y)
    fx, fy = x - column, y - row

    def window(down: int, across: int) -> np.ndarray:
        return padded[row + down : row + down + rows, column + across : column + across + columns]

    if fx == 0.0 and fy == 0.0:
        return window(0, 0).copy()
    upper = window(0, 0) * (1.0 - fx) + window(0, 1) * fx
    lower = window(1, 0) * (1.0 - fx) + window(1, 1) * fx
    return upper * (1.0 - fy) + lower * fy


def _mapped(padded: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Bilinear samples at arbitrary points (x, y), gathered from the flattened image."""
    column, row = np.floor(x).astype(np.intp), np.floor(y).astype(np.intp)
    fx, fy = (x - column).astype(np.float32), (y - row).astype(np.float32)
    stride = padded.shape[1]
    flat = padded.reshape(-1)
    index = row * stride + column
    upper = flat[index] * (1.0 - fx) + flat[index + 1] * fx
    lower = flat[index + stride] * (1.0 - fx) + flat[index + stride + 1] * fx
    # Gathered by an index array, the pixels are Any to numpy's stubs: the samples are float32 like padded.
    samples: np.ndarray = upper * (1.0 - fy) + lower * fy
    return samples


def warp(image: np.ndarray, image_map: Affine, box: Box) -> np.ndarray:
    """float32 samples of image at the points image_map sends the box's pixels to.

    The box comes from overlap(), so every point falls inside image; bilinear interpolation
    between the four pixels around it. A non-finite pixel spoils the samples next to it.
    """
    rows, columns = image.shape
    # One repeated row and column below and right: a point on the last pixel still has
    # four neighbours.
    padded = np.pad(image.astype(np.float32, copy=False), ((0, 1), (0, 1)), mode="edge")
    if image_map.is_translation:
        x = min(max(box.left + image_map.offset[0], 0.0), columns - box.columns)
        y = min(max(box.top + image_map.offset[1], 0.0), rows - box.rows)
        return _translated(padded, x, y, box.rows, box.columns)
    grid_x = np.arange(box.left, box.left + box.columns, dtype=float)[None, :]
    grid_y = np.arange(box.top, box.top + box.rows, dtype=float)[:, None]
    x, y = image_map(grid_x, grid_y)
    return _mapped(padded, np.clip(x, 0.0, columns - 1.0), np.clip(y, 0.0, rows - 1.0))
