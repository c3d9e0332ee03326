"""Particle hits (cosmic rays, hot pixels) left out of a frame's block means.

A hit is one to a few pixels far brighter than the pixels around them. Averaged into a block with
the rest, it lifts the block far above the sky: a bright speck in every thumbnail, where fits2image,
which clips each pixel to the display range first, shows almost nothing. A star spreads its light
over its neighbours: its brightest pixel stands only a little above the pixels around it, while a
hit pixel stands above most of them by nearly all its height. Blocks holding a hit are averaged
without its pixels.

Only blocks well above a neighbour in their block row are looked into, while their chunk of rows
is read; what is tested is each pixel against its eight neighbours at full resolution, and the
pixel noise of the whole frame measured on a few fixed rows first. So bands of rows read apart
join into exactly the frame read whole. Nothing depends on the display limits: every stretch drawn
from the block means gets them without hits.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from thumbproxy.render.fitsread import FitsImage
from thumbproxy.render.pixelrows import PixelRows
from thumbproxy.render.samples import pixel_noise

# Rows the pixel noise is measured on, spread evenly over the frame, before any block is reduced.
PROBE_ROWS = 2
# A block is looked into when its mean is this many of its noise deviations above the lower of its
# left and right neighbours': about one sky block in 2500 by chance.
CANDIDATE_SIGMAS = 5.0
# A hit pixel stands this many pixel-noise deviations above the median of its eight neighbours...
HIT_SIGMAS = 8.0
# ... and that is at least this share of its height above the lower neighbouring block. A star's brightest
# pixel stands above its neighbours' median by about half its height for a standard deviation of
# 1 px (2.4 px FWHM), by 0.3 for 1.5 px.
SHARPNESS = 0.7
# The eight neighbours of a pixel, (row, column) offsets.
NEIGHBOURS = np.array([(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx])


def probe_noise(image: FitsImage) -> float:
    """The standard deviation of one pixel's noise, from neighbouring pixels of PROBE_ROWS rows at fixed places:
    the same for every band of the frame."""
    rows = image.shape[0]
    places = sorted({(2 * probe + 1) * rows // (2 * PROBE_ROWS) for probe in range(PROBE_ROWS)})
    differences = np.concatenate([np.diff(row_values(image, row).astype(np.float64)) for row in places])
    return pixel_noise(differences[np.isfinite(differences)])


def row_values(image: FitsImage, row: int) -> np.ndarray:
    """The float32 pixels of one row of image, as the rows read around it give them (PixelRows.row)."""
    first = row // image.tile_rows * image.tile_rows
    return image.read_rows(slice(first, min(image.shape[0], first + image.tile_rows))).row(row - first)


@dataclass(frozen=True)
class _Batch:
    """Blocks of one chunk looked into, and their pixels with a pixel's margin around each."""

    # The chunk's number in the band, its pixel rows, and its first block row in the band.
    chunk: int
    pixel_rows: int
    first_row: int
    # Each block's flat place in the chunk's block means.
    places: np.ndarray
    # (n, factor + 2, factor + 2) float32; margins beyond the chunk's rows and the frame's sides still to be set.
    surroundings: np.ndarray


@dataclass(frozen=True)
class _Frame:
    """What the margins of a band's blocks beyond their chunk are taken from."""

    columns: int
    # The pixel rows just above and below each chunk; None beyond the frame.
    above: list[np.ndarray | None]
    below: list[np.ndarray | None]


_NO_HITS = (np.zeros(0, np.intp), np.zeros(0, np.intp), np.zeros(0, np.float32))


class _Reduction:
    """The blocks of one reduction of a band looked into, chunk by chunk."""

    def __init__(self, factor: int, noise: float, columns: int) -> None:
        self.factor = factor
        self.noise = noise
        self.columns = columns
        self.searched = factor > 1 and noise > 0.0 and columns // factor >= 2
        # A block's mean this far above the lower of its neighbours' makes it a candidate.
        self.threshold = CANDIDATE_SIGMAS * noise / factor
        self.batches: list[_Batch] = []
        self.block_rows = 0
        # Flat indices of a block's pixels and margin from the margin's first pixel (its corner).
        steps = np.arange(factor + 2)
        self._margined_block = steps[:, None] * columns + steps
        # Each block's background plus the threshold.
        self._bars = np.zeros(0, np.float32)
        # Whether the last chunk looked into has blocks whose margin below lies in the next chunk.
        self.waiting_below = False

    def look_into(self, chunk: int, pixels: PixelRows, means: np.ndarray) -> None:
        """Keep the candidates among this chunk's block means, with their surroundings."""
        first_row = self.block_rows
        self.block_rows += means.shape[0]
        self.waiting_below = False
        if not self.searched or not means.size:
            return
        if self._bars.size < means.size:
            self._bars = np.empty(means.size, np.float32)
        bar = self._bars[: means.size]
        _row_background(means, bar.reshape(means.shape))
        bar += self.threshold
        places = np.flatnonzero(means.reshape(-1) > bar)
        if places.size:
            block_rows, block_columns = np.divmod(places, means.shape[1])
            corners = (block_rows * self.factor - 1) * self.columns + block_columns * self.factor - 1
            flat = corners[:, None, None] + self._margined_block
            surroundings = pixels.take(flat.reshape(-1)).reshape(flat.shape)
            self.batches.append(_Batch(chunk, pixels.shape[0], first_row, places, surroundings))
            # Its last block row's margin below lies in the next chunk when that row fills the chunk.
            self.waiting_below = (int(places[-1]) // means.shape[1] + 1) * self.factor == pixels.shape[0]

    def without_hits(self, image: np.ndarray, frame: _Frame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The blocks found holding a hit, (block rows of image, columns), and their means without the hit's
        pixels; image is the band's block means."""
        if not self.batches:
            return _NO_HITS
        factor = self.factor
        counts = [len(batch.places) for batch in self.batches]
        chunk_rows, columns = np.divmod(np.concatenate([batch.places for batch in self.batches]), image.shape[1])
        chunks, pixel_rows, first_rows = (
            np.repeat([getattr(batch, name) for batch in self.batches], counts)
            for name in ("chunk", "pixel_rows", "first_row")
        )
        surroundings = np.concatenate([batch.surroundings for batch in self.batches])
        # The margins above a chunk's first block row, and below its last when that fills the chunk.
        beyond = (chunk_rows == 0, (chunk_rows + 1) * factor == pixel_rows)
        _set_margins(surroundings, beyond, chunks, columns, factor, frame)
        rows = chunk_rows + first_rows
        background = _background(image, rows, columns)
        # Pixels near the float32 limit overflow in medians and differences: they test as no hit.
        with np.errstate(over="ignore", invalid="ignore"):
            hit, without = _hits(surroundings, background, factor, self.noise)
        return rows[hit], columns[hit], without


def _set_margins(
    surroundings: np.ndarray,
    beyond: tuple[np.ndarray, np.ndarray],
    chunks: np.ndarray,
    columns: np.ndarray,
    factor: int,
    frame: _Frame,
) -> None:
    """Set the margins of these blocks (their chunks, block columns) beyond their chunk's rows (beyond: marked above
    and below) to the pixel rows there, and beyond the frame's edges to its edge rows and columns."""
    margin_columns = np.clip(columns[:, None] * factor + np.arange(-1, factor + 1), 0, frame.columns - 1)
    blank = np.zeros(frame.columns, np.float32)
    for side, edge, marked, rows in ((0, 1, beyond[0], frame.above), (-1, -2, beyond[1], frame.below)):
        stacked = np.stack([blank if row is None else row for row in rows])
        surroundings[marked, side] = stacked[chunks[marked][:, None], margin_columns[marked]]
        # Beyond the frame: only above the first chunk or below the last.
        for chunk in (0, len(rows) - 1):
            if rows[chunk] is None:
                outside = marked & (chunks == chunk)
                surroundings[outside, side] = surroundings[outside, edge]
    surroundings[columns == 0, :, 0] = surroundings[columns == 0, :, 1]
    right = (columns + 1) * factor >= frame.columns
    surroundings[right, :, -1] = surroundings[right, :, -2]


def _hits(surroundings: np.ndarray, background: np.ndarray, factor: int, noise: float) -> tuple[np.ndarray, np.ndarray]:
    """Which of these blocks (their pixels with a pixel's margin, and their backgrounds) hold a hit, and those
    blocks' means without the hit's pixels."""
    # Blank and overflowing pixels stand nowhere in the test.
    finite = np.isfinite(surroundings)
    values = surroundings if finite.all() else np.where(finite, surroundings, background[:, None, None])
    side = factor + 2
    peak_rows, peak_columns = np.divmod(values[:, 1:-1, 1:-1].reshape(len(values), -1).argmax(axis=1), factor)
    # Flat places in each block's surroundings: its brightest pixel's and its neighbours'.
    peaks = ((peak_rows + 1) * side + peak_columns + 1)[:, None]
    flat = values.reshape(len(values), -1)
    neighbours = np.take_along_axis(flat, peaks + NEIGHBOURS @ [side, 1], axis=1)
    hit = _sharp(np.take_along_axis(flat, peaks, axis=1)[:, 0], _median_of_eight(neighbours), background, noise)
    # In the blocks holding a hit, every pixel of it: a hit's pixels stand above neighbours that are mostly sky.
    around = values[hit]
    each_median = _median_of_eight(
        np.stack([around[:, 1 + dy : 1 + dy + factor, 1 + dx : 1 + dx + factor] for dy, dx in NEIGHBOURS], -1)
    )
    hit_pixels = _sharp(around[:, 1:-1, 1:-1], each_median, background[hit][:, None, None], noise)
    originals = surroundings[hit][:, 1:-1, 1:-1]
    kept = ~hit_pixels & finite[hit][:, 1:-1, 1:-1]
    counts = kept.sum(axis=(1, 2))
    sums = np.where(kept, originals, 0.0).sum(axis=(1, 2), dtype=np.float64)
    # A block all hit keeps its mean.
    hit[hit] = counts > 0
    some = counts > 0
    return hit, (sums[some] / counts[some]).astype(np.float32)


def leave_out_hits(pixels: PixelRows, means: np.ndarray, factor: int, noise: float) -> None:
    """Set the means of the blocks of a whole frame's pixels (means: their block means by factor) that hold a hit
    to the mean of their other pixels; noise is the frame's pixel noise."""
    reduction = _Reduction(factor, noise, pixels.shape[1])
    reduction.look_into(0, pixels, means)
    rows, columns, without = reduction.without_hits(means, _Frame(pixels.shape[1], [None], [None]))
    means[rows, columns] = without


class HitFilter:
    """Finds the hits in a band of rows read a chunk at a time, in order (add), and the block means without them
    (finish)."""

    def __init__(self, image: FitsImage, rows: slice, factors: Sequence[int]) -> None:
        self._image = image
        self._rows = rows
        noise = probe_noise(image)
        self._reductions = [_Reduction(factor, noise, image.shape[1]) for factor in factors]
        # The first pixel row of each chunk (when a margin lies there) and its last.
        self._first_rows: list[np.ndarray | None] = []
        self._last_rows: list[np.ndarray] = []

    def add(self, pixels: PixelRows, means: Sequence[np.ndarray]) -> None:
        """The next chunk's pixels, and its block means by each factor."""
        if not pixels.size:
            return
        waiting = any(reduction.waiting_below for reduction in self._reductions)
        self._first_rows.append(pixels.row(0) if waiting else None)
        self._last_rows.append(pixels.row(pixels.shape[0] - 1))
        for reduction, reduced in zip(self._reductions, means):
            reduction.look_into(len(self._last_rows) - 1, pixels, reduced)

    def finish(self, images: Sequence[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """For each factor, the blocks of its image (the band's block means, as added) holding hits, (block rows,
        columns), and their means without the hits."""
        if not any(reduction.batches for reduction in self._reductions):
            return [_NO_HITS for _ in self._reductions]
        start, stop = self._rows.start, self._rows.stop
        above = [row_values(self._image, start - 1) if start > 0 else None, *self._last_rows[:-1]]
        waiting = any(reduction.waiting_below for reduction in self._reductions)
        after = row_values(self._image, stop) if waiting and stop < self._image.shape[0] else None
        below = [*self._first_rows[1:], after]
        frame = _Frame(self._image.shape[1], above, below)
        return [reduction.without_hits(image, frame) for reduction, image in zip(self._reductions, images)]


def _background(image: np.ndarray, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """The background of these blocks of image, as _row_background gives it."""
    last = image.shape[1] - 1
    left = image[rows, np.maximum(columns - 1, 0)]
    right = image[rows, np.minimum(columns + 1, last)]
    left[columns == 0] = np.nan
    right[columns == last] = np.nan
    background: np.ndarray = np.fmin(left, right)
    return background


def _median_of_eight(values: np.ndarray) -> np.ndarray:
    """The medians of values' last axis, of 8: the mean of its middle two, as np.median gives it, faster."""
    middle = np.partition(values, (3, 4), axis=-1)
    median: np.ndarray = (middle[..., 3] + middle[..., 4]) / 2
    return median


def _sharp(values: np.ndarray, neighbour_medians: np.ndarray, background: np.ndarray, noise: float) -> np.ndarray:
    """Whether pixels of these values stand above their neighbours' medians as a hit does."""
    rise = values - neighbour_medians
    sharp: np.ndarray = (rise > HIT_SIGMAS * noise) & (rise >= SHARPNESS * (values - background))
    return sharp


def _row_background(means: np.ndarray, out: np.ndarray) -> None:
    """Each block's background into out: the lower of its left and right neighbours' means (the one it has, at the
    ends); NaN neighbours left out."""
    # Along the flattened rows, which is fast; each row's ends are then set apart.
    np.fmin(means.reshape(-1)[:-2], means.reshape(-1)[2:], out=out.reshape(-1)[1:-1])
    out[:, 0] = means[:, 1]
    out[:, -1] = means[:, -2]
