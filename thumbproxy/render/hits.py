"""Particle hits (cosmic rays, hot pixels) left out of a frame's block means.

A hit is one to a few pixels far brighter than the pixels around them. Averaged into a block with
the rest, it lifts the block far above the sky: a bright speck in every thumbnail, where fits2image,
which clips each pixel to the display range first, shows almost nothing. A star spreads its light
over its neighbours: its brightest pixel stands only a little above the pixels around it, while a
hit pixel stands above most of them by nearly all its height above the pixels two away. A ridge,
such as a spectrum's trace, stands above the pixels across it by more than above its neighbours.
Blocks holding a hit are averaged without its pixels; an unreduced hit pixel takes its neighbours'
median.

Only blocks well above a neighbour in their block row are looked into, while their chunk of rows
is read; what is tested is each pixel against its neighbours at full resolution, the rows beyond
a chunk taken from the chunks either side (or the file), and the pixel noise of the whole frame
measured on a few fixed rows first. So bands of rows read apart join into exactly the frame read
whole. Nothing depends on the display limits: every stretch drawn from the block means gets them
without hits.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from thumbproxy.render.fitsread import FitsImage
from thumbproxy.render.pixelrows import PixelRows
from thumbproxy.render.samples import pixel_noise

# Rows the pixel noise is measured on, spread evenly over the frame, before any block is reduced.
PROBE_ROWS = 2
# A block is looked into when its mean is this many of its noise deviations above the lower of its
# left and right neighbours': a few sky blocks in 100,000 by chance.
CANDIDATE_SIGMAS = 6.0
# A hit pixel stands this many pixel-noise deviations above the median of its eight neighbours, and above
# its sides (its height)...
HIT_SIGMAS = 8.0
# ... and the first is at least this share of its height. A star's brightest pixel stands above its
# neighbours' median by about 0.6 of its height for a standard deviation of 1 px (2.4 px FWHM), by 0.47 for
# 1.5 px; a ridge's, a smaller share.
SHARPNESS = 0.7
# A pixel's height is measured from the lowest of the pixels this far above, below, left and right of it (its
# sides): on a ridge such as a spectrum's trace, those across it.
SIDE = 2
SIDES = np.array([(-SIDE, 0), (SIDE, 0), (0, -SIDE), (0, SIDE)])
# The pixels around a block gathered for the test: SIDE rows and columns all round.
MARGIN = SIDE
# The eight neighbours of a pixel, (row, column) offsets.
NEIGHBOURS = np.array([(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx])


def probe_noise(image: FitsImage) -> float:
    """The standard deviation of one pixel's noise, from neighbouring pixels of PROBE_ROWS rows at fixed places:
    the same for every band of the frame."""
    rows = image.shape[0]
    places = sorted({(2 * probe + 1) * rows // (2 * PROBE_ROWS) for probe in range(PROBE_ROWS)})
    differences = np.concatenate([np.diff(frame_row(image, row).astype(np.float64)) for row in places])
    return pixel_noise(differences[np.isfinite(differences)])


def frame_row(image: FitsImage, row: int) -> np.ndarray:
    """The float32 pixels of one row of image, as the rows read around it give them (PixelRows.row_values)."""
    first = row // image.tile_rows * image.tile_rows
    pixels = image.read_rows(slice(first, min(image.shape[0], first + image.tile_rows)))
    [values] = pixels.row_values(slice(row - first, row - first + 1))
    return np.asarray(values, np.float32)


@dataclass(frozen=True)
class _Batch:
    """Blocks of one chunk looked into, and their pixels with MARGIN pixels around each."""

    # The chunk's first pixel row in the frame, its pixel rows, and its first block row in the band.
    start: int
    pixel_rows: int
    first_row: int
    # Each block's flat place in the chunk's block means.
    places: np.ndarray
    # (n, factor + 2 MARGIN, factor + 2 MARGIN) float32: beyond the frame's sides its edge columns, and beyond the
    # chunk's rows its edge rows, still to be set to the rows there (Rows.fill).
    surroundings: np.ndarray


_NO_HITS = (np.zeros(0, np.intp), np.zeros(0, np.intp), np.zeros(0, np.float32))


class _Reduction:
    """The blocks of one reduction of a band looked into, chunk by chunk."""

    def __init__(self, factor: int, noise: float, columns: int) -> None:
        self.factor = factor
        self.noise = noise
        self.columns = columns
        # Unreduced pixels' neighbours are a star's own: their background is taken two pixels away.
        self.reach = 2 if factor == 1 else 1
        self.searched = noise > 0.0 and columns // factor >= 2 * self.reach
        # A block's mean this far above the lower of its neighbours' makes it a candidate.
        self.threshold = CANDIDATE_SIGMAS * noise / factor
        self.batches: list[_Batch] = []
        self.block_rows = 0
        # Row and column offsets of a block's pixels and margin from its first pixel, and the flat offsets.
        self._row_steps = np.arange(-MARGIN, factor + MARGIN)
        self._margined_block = self._row_steps[:, None] * columns + self._row_steps
        # Each block's background plus the threshold.
        self._bars = np.zeros(0, np.float32)

    def look_into(self, start: int, pixels: PixelRows, means: np.ndarray) -> None:
        """Keep the candidates among the block means of this chunk (first pixel row start), with their
        surroundings."""
        first_row = self.block_rows
        self.block_rows += means.shape[0]
        if not self.searched or not means.size:
            return
        if self._bars.size < means.size:
            self._bars = np.empty(means.size, np.float32)
        bar = self._bars[: means.size]
        _row_background(means, bar.reshape(means.shape), self.reach)
        bar += self.threshold
        places = np.flatnonzero(means.reshape(-1) > bar)
        if places.size:
            block_rows, block_columns = np.divmod(places, means.shape[1])
            # Margins beyond the chunk's rows or the frame's sides come out wrong here, and are set in without_hits.
            firsts = block_rows * (self.factor * self.columns) + block_columns * self.factor
            flat = firsts[:, None, None] + self._margined_block
            # float32 also when the frame's pixels come as integers, so differences do not wrap round.
            surroundings = pixels.take(flat.reshape(-1)).reshape(flat.shape).astype(np.float32, copy=False)
            self.batches.append(_Batch(start, pixels.shape[0], first_row, places, surroundings))

    def without_hits(self, image: np.ndarray, rows: "Rows") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The blocks found holding a hit, (block rows of image, columns), and their means without the hit's
        pixels; image is the band's block means, rows gives the pixel rows beyond their chunks."""
        if not self.batches:
            return _NO_HITS
        counts = [len(batch.places) for batch in self.batches]
        chunk_rows, columns = np.divmod(np.concatenate([batch.places for batch in self.batches]), image.shape[1])
        starts, pixel_rows, first_rows = (
            np.repeat([getattr(batch, name) for batch in self.batches], counts)
            for name in ("start", "pixel_rows", "first_row")
        )
        surroundings = np.concatenate([batch.surroundings for batch in self.batches])
        # Margin rows beyond the chunk: the frame's rows there (beyond the frame, its edge rows).
        chunk_margins = (chunk_rows * self.factor)[:, None] + self._row_steps
        beyond = (chunk_margins < 0) | (chunk_margins >= pixel_rows[:, None])
        frame_rows = np.clip(starts[:, None] + chunk_margins, 0, rows.count - 1)
        rows.fill(surroundings, frame_rows, beyond, _margin_columns(columns, self.factor, self.columns))
        # Margin columns beyond the frame's sides: its edge columns.
        pixel_columns = (columns * self.factor)[:, None] + self._row_steps
        blocks, places = np.nonzero((pixel_columns < 0) | (pixel_columns >= self.columns))
        edges = places + np.clip(pixel_columns[blocks, places], 0, self.columns - 1) - pixel_columns[blocks, places]
        surroundings[blocks, :, places] = surroundings[blocks, :, edges]
        block_rows = chunk_rows + first_rows
        # Blank and overflowing pixels stand nowhere in the test: their block's background stands in for them.
        fill = _background(image, block_rows, columns, self.reach)
        # Pixels near the float32 limit overflow in medians and differences: they test as no hit.
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            hit, without = _hits(surroundings, fill, self.factor, self.noise)
        return block_rows[hit], columns[hit], without


class Rows:
    """Pixel rows of a frame kept from the chunks read (their first and last MARGIN rows), the others read when
    asked for."""

    def __init__(self, image: FitsImage) -> None:
        self._image = image
        self.count = image.shape[0]
        # Frame rows kept, and their pixels, a chunk's at a time.
        self._numbers: list[np.ndarray] = []
        self._values: list[np.ndarray] = []

    def keep(self, pixels: PixelRows, start: int) -> None:
        """Keep the first and last MARGIN rows of a chunk whose first row is start."""
        rows = _edge_rows(pixels.shape[0])
        self._numbers.append(rows + start)
        self._values.append(pixels.row_values(rows).astype(np.float32, copy=False))

    def fill(self, surroundings: np.ndarray, frame_rows: np.ndarray, marked: np.ndarray, columns: np.ndarray) -> None:
        """Set the rows of surroundings marked (blocks by margin rows) to those frame rows, at each block's columns."""
        blocks, places = np.nonzero(marked)
        if not blocks.size:
            return
        wanted = frame_rows[blocks, places]
        # Rows beyond the band: read from the file.
        missing = np.setdiff1d(wanted, np.concatenate(self._numbers))
        if missing.size:
            self._numbers.append(missing)
            self._values.append(np.stack([frame_row(self._image, int(row)) for row in missing]))
        numbers = np.concatenate(self._numbers)
        order = np.argsort(numbers)
        table = np.concatenate(self._values)
        where = order[np.searchsorted(numbers[order], wanted)]
        surroundings[blocks, places] = table[where[:, None], columns[blocks]]


@lru_cache(maxsize=8)
def _edge_rows(count: int) -> np.ndarray:
    """The first and last MARGIN of count rows, each once: the chunks of a frame have one count, and the last fewer."""
    return np.array(sorted({*range(min(MARGIN, count)), *range(max(0, count - MARGIN), count)}))


def _margin_columns(block_columns: np.ndarray, factor: int, columns: int) -> np.ndarray:
    """The pixel columns of these blocks and their margins, (n, factor + 2 MARGIN); beyond the frame's
    sides, its edge columns."""
    offsets = np.arange(-MARGIN, factor + MARGIN)
    margined: np.ndarray = np.clip(block_columns[:, None] * factor + offsets, 0, columns - 1)
    return margined


def _hits(surroundings: np.ndarray, fill: np.ndarray, factor: int, noise: float) -> tuple[np.ndarray, np.ndarray]:
    """Which of these blocks (their pixels with the margins, and a value for their blank pixels) hold a hit, and
    those blocks' means without the hit's pixels."""
    finite = np.isfinite(surroundings)
    values = surroundings if finite.all() else np.where(finite, surroundings, fill[:, None, None])
    width = factor + 2 * MARGIN
    inner = (slice(None), slice(MARGIN, MARGIN + factor), slice(MARGIN, MARGIN + factor))
    peak_rows, peak_columns = np.divmod(values[inner].reshape(len(values), -1).argmax(axis=1), factor)
    # Flat places in each block's surroundings: its brightest pixel's, its neighbours', and its sides'.
    peaks = ((peak_rows + MARGIN) * width + peak_columns + MARGIN)[:, None]
    flat = values.reshape(len(values), -1)
    neighbours = np.take_along_axis(flat, peaks + NEIGHBOURS @ [width, 1], axis=1)
    sides = np.take_along_axis(flat, peaks + SIDES @ [width, 1], axis=1).min(axis=1)
    hit = _sharp(np.take_along_axis(flat, peaks, axis=1)[:, 0], _median_of_eight(neighbours), sides, noise)
    # In the blocks holding a hit, every pixel of it: a hit's pixels stand above neighbours that are mostly sky.
    around = values[hit]
    rows, columns = inner[1:]
    each_median = _median_of_eight(
        np.stack([around[:, _shifted(rows, dy), _shifted(columns, dx)] for dy, dx in NEIGHBOURS], -1)
    )
    each_side = np.min([around[:, _shifted(rows, dy), _shifted(columns, dx)] for dy, dx in SIDES], axis=0)
    hit_pixels = _sharp(around[inner], each_median, each_side, noise)
    originals = surroundings[hit][inner]
    kept = ~hit_pixels & finite[hit][inner]
    counts = kept.sum(axis=(1, 2))
    sums = np.where(kept, originals, 0.0).sum(axis=(1, 2), dtype=np.float64)
    # A block all hit (an unreduced pixel, always): the medians of its hit pixels' neighbours stand for them.
    stand_ins = np.where(hit_pixels, each_median, 0.0).sum(axis=(1, 2), dtype=np.float64) / hit_pixels.sum(axis=(1, 2))
    return hit, np.where(counts > 0, sums / counts, stand_ins).astype(np.float32)


class HitFilter:
    """Finds the hits in a band of rows read a chunk at a time, in order (add), and the block means without them
    (finish)."""

    def __init__(self, image: FitsImage, rows: slice, factors: Sequence[int]) -> None:
        noise = probe_noise(image)
        self._reductions = [_Reduction(factor, noise, image.shape[1]) for factor in factors]
        self._rows = Rows(image)
        # The first pixel row of the next chunk.
        self._start = rows.start

    def add(self, pixels: PixelRows, means: Sequence[np.ndarray]) -> None:
        """The next chunk's pixels, and its block means by each factor."""
        if not pixels.size:
            return
        # The rows the margins of the chunks either side may reach into.
        self._rows.keep(pixels, self._start)
        for reduction, reduced in zip(self._reductions, means):
            reduction.look_into(self._start, pixels, reduced)
        self._start += pixels.shape[0]

    def finish(self, images: Sequence[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """For each factor, the blocks of its image (the band's block means, as added) holding hits, (block rows,
        columns), and their means without the hits."""
        return [reduction.without_hits(image, self._rows) for reduction, image in zip(self._reductions, images)]


def _background(image: np.ndarray, rows: np.ndarray, columns: np.ndarray, reach: int) -> np.ndarray:
    """The background of these blocks of image, as _row_background gives it."""
    last = image.shape[1] - 1
    left = image[rows, np.maximum(columns - reach, 0)]
    right = image[rows, np.minimum(columns + reach, last)]
    left[columns < reach] = np.nan
    right[columns > last - reach] = np.nan
    background: np.ndarray = np.fmin(left, right)
    return background


def _median_of_eight(values: np.ndarray) -> np.ndarray:
    """The medians of values' last axis, of 8: the mean of its middle two, as np.median gives it, faster."""
    middle = np.partition(values, (3, 4), axis=-1)
    median: np.ndarray = (middle[..., 3] + middle[..., 4]) / 2
    return median


def _shifted(place: slice, by: int) -> slice:
    """The slice of surroundings `by` pixels on from place."""
    return slice(place.start + by, place.stop + by)


def _sharp(values: np.ndarray, neighbour_medians: np.ndarray, sides: np.ndarray, noise: float) -> np.ndarray:
    """Whether pixels of these values stand above their neighbours' medians and the lowest of their sides as a hit
    does."""
    rise = values - neighbour_medians
    height = values - sides
    limit = HIT_SIGMAS * noise
    sharp: np.ndarray = (rise > limit) & (height > limit) & (rise >= SHARPNESS * height)
    return sharp


def _row_background(means: np.ndarray, out: np.ndarray, reach: int) -> None:
    """Each block's background into out: the lower of the means of the blocks `reach` to its left and right (the
    one it has, at the ends); NaN ones left out."""
    # Along the flattened rows, which is fast; each row's ends are then set apart.
    flat = means.reshape(-1)
    np.fmin(flat[: -2 * reach], flat[2 * reach :], out=out.reshape(-1)[reach:-reach])
    out[:, :reach] = means[:, reach : 2 * reach]
    out[:, -reach:] = means[:, -2 * reach : -reach]
