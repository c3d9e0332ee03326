"""Measure how far one image of a star field is shifted from another, by phase correlation."""

import math

import numpy as np
import numpy.typing as npt
from astropy.stats import mad_std

from thumbproxy.render.reduce import block_mean

# Registration works on images no larger than this (longest side), block-averaged if need be:
# the peak is found to a fraction of a pixel, so a coarser grid loses little and saves FFT time.
MAX_SIDE = 512
# Pixels are measured in noise deviations above the sky and capped at this many: stars count
# by where they are rather than how bright, so one saturated star cannot outweigh the field.
CAP = 10.0
# The share of each side over which the images are tapered to zero: the FFT joins opposite
# edges, and the taper keeps that seam out of the correlation without hiding the stars near it.
TAPER = 0.2
# Width (pixels) of the Gaussian the correlation is smoothed with: it damps the pixel noise
# that dominates high frequencies and gives the peak a shape a three-point fit measures well.
PEAK_SIGMA = 1.0
# The peak must be this many times higher than any other. With few bright stars each pair of
# them makes a lesser peak, and in unrelated fields those are all there is: on 512 px synthetic
# fields unrelated pairs reached 2.0, frames of one field 3.4 or more.
MIN_PEAK_RATIO = 3.0
# Away from the peak means more than this many pixels from it.
PEAK_RADIUS = 3


def _taper(length: int) -> npt.NDArray[np.float64]:
    """1 in the middle, falling to 0 at both ends as a half cosine over TAPER / 2 of the length."""
    weights = np.ones(length)
    ramp = int(TAPER * length / 2)
    if ramp:
        rising = 0.5 * (1.0 - np.cos(np.pi * np.arange(ramp) / ramp))
        weights[:ramp] = rising
        weights[-ramp:] = rising[::-1]
    return weights


def _prepared(image: np.ndarray) -> np.ndarray:
    """The image in noise deviations above the sky, capped, non-finite pixels on the sky,
    tapered to zero at the edges."""
    finite = np.isfinite(image)
    values = image[finite]
    sky = float(np.median(values)) if values.size else 0.0
    noise = float(mad_std(values)) if values.size else 0.0
    scaled = np.where(finite, image - sky, 0.0) / (noise if noise > 0.0 else 1.0)
    np.clip(scaled, 0.0, CAP, out=scaled)
    return scaled * _taper(image.shape[0])[:, None] * _taper(image.shape[1])[None, :]


def _stands_out(surface: np.ndarray, row: int | np.intp, column: int | np.intp) -> bool:
    """Whether the value at (row, column) is MIN_PEAK_RATIO times any value away from it."""
    rows, columns = surface.shape
    # Distances wrap round, as the correlation does.
    near_row = np.abs((np.arange(rows) - row + rows // 2) % rows - rows // 2) <= PEAK_RADIUS
    near_column = np.abs((np.arange(columns) - column + columns // 2) % columns - columns // 2) <= PEAK_RADIUS
    elsewhere = surface[~(near_row[:, None] & near_column[None, :])]
    peak = surface[row, column]
    return bool(peak > 0.0 and (elsewhere.size == 0 or peak >= MIN_PEAK_RATIO * elsewhere.max()))


def _peak_offset(below: float, peak: float, above: float) -> float:
    """Sub-pixel position of a peak from three samples: exact for a Gaussian."""
    if min(below, peak, above) > 0.0:
        below, peak, above = math.log(below), math.log(peak), math.log(above)
    curvature = below - 2.0 * peak + above
    if curvature >= 0.0:
        return 0.0
    return max(-0.5, min(0.5, 0.5 * (below - above) / curvature))


def _centred_crop(image: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, int, int]:
    """The middle shape of image, and the (row, column) where it starts."""
    top = (image.shape[0] - shape[0]) // 2
    left = (image.shape[1] - shape[1]) // 2
    return image[top : top + shape[0], left : left + shape[1]], top, left


def phase_correlation(reference: np.ndarray, image: np.ndarray) -> tuple[float, float] | None:
    """(dx, dy) such that image at (x + dx, y + dy) shows what reference shows at (x, y).

    Pixel coordinates are (column, row). Images of different shapes are compared over their
    centred common part; shifts are measured up to half that part. None when no shift stands
    out, as for unrelated or featureless images.
    """
    shape = (min(reference.shape[0], image.shape[0]), min(reference.shape[1], image.shape[1]))
    factor = max(1, math.ceil(max(shape) / MAX_SIDE))
    reference, reference_top, reference_left = _centred_crop(reference, shape)
    image, image_top, image_left = _centred_crop(image, shape)
    prepared_reference = _prepared(block_mean(reference, factor))
    rows, columns = prepared_reference.shape
    if rows < 3 or columns < 3:
        return None
    first = np.fft.rfft2(prepared_reference)
    second = np.fft.rfft2(_prepared(block_mean(image, factor)))
    cross = second * np.conj(first)
    magnitude = np.abs(cross)
    # Only the phase carries the shift: whitening makes every star count, not just the brightest.
    cross = np.divide(cross, magnitude, out=np.zeros_like(cross), where=magnitude > 0.0)
    frequency_y = np.fft.fftfreq(rows)[:, None]
    frequency_x = np.fft.rfftfreq(columns)[None, :]
    cross *= np.exp(-2.0 * (math.pi * PEAK_SIGMA) ** 2 * (frequency_x**2 + frequency_y**2))
    surface = np.fft.irfft2(cross, s=(rows, columns))

    row, column = np.unravel_index(np.argmax(surface), surface.shape)
    peak = surface[row, column]
    if not _stands_out(surface, row, column):
        return None
    dy = _peak_offset(surface[row - 1, column], peak, surface[(row + 1) % rows, column])
    dx = _peak_offset(surface[row, column - 1], peak, surface[row, (column + 1) % columns])
    # The correlation wraps round: shifts past half the image are negative ones.
    shift_y = (row + dy + rows / 2.0) % rows - rows / 2.0
    shift_x = (column + dx + columns / 2.0) % columns - columns / 2.0
    # Scaled back to the images' own pixels (block centres sit factor apart), plus where the
    # compared parts lie in each image.
    return (shift_x * factor + image_left - reference_left, shift_y * factor + image_top - reference_top)
