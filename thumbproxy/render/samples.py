"""The full-resolution pixels a frame's tone is measured from, taken band by band.

They are the pixels at fixed strides of the flattened frame (the ones fits2image samples) and
their right-hand neighbours, chosen by flat index. A band of rows therefore contributes exactly
the samples whose index falls in it, and bands joined in order give the whole frame's samples.
"""

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from astropy.stats import mad_std

from thumbproxy.render.pixelrows import PixelRows

SAMPLE_COUNT = 2000
# recalculate_median measures the whole frame. Its median sits on the steep foot of the
# gamma curve, where the 2000 samples' own median is black by construction; 100000
# samples matched whole 256-4096 px frames to within 0.01 of full scale.
MEDIAN_SAMPLE_COUNT = 100_000


@dataclass(frozen=True)
class PixelSamples:
    """Everything a frame's tone takes from its full-resolution pixels."""

    # About SAMPLE_COUNT finite pixels at a fixed stride: fits2image's samples for its limits.
    limit_samples: np.ndarray
    # About MEDIAN_SAMPLE_COUNT finite pixels at a fixed stride, for median subtraction.
    median_samples: np.ndarray
    # Robust standard deviation of one pixel's noise.
    noise: float


@dataclass(frozen=True)
class BandSamples:
    """A band's share of a frame's PixelSamples, in flat-index order."""

    limit_samples: np.ndarray
    median_samples: np.ndarray
    # float64 differences of finite limit samples' right-hand neighbours and themselves.
    differences: np.ndarray


def _stride(total: int, count: int) -> int:
    return max(1, total // count)


def _first_index(start: int, stride: int) -> int:
    """The first flat index k * stride, k >= 1, at or after start."""
    return max(stride, -(-start // stride) * stride)


def _indices(start: int, size: int, total: int, count: int) -> np.ndarray:
    """The sampled flat indices k * stride, k >= 1, of a band of size pixels from index start, counted from start."""
    stride = _stride(total, count)
    return np.arange(_first_index(start, stride), start + size, stride) - start


def band_samples(
    pixels: PixelRows | np.ndarray, start: int, total: int, next_pixel: Callable[[], Any] | None = None
) -> BandSamples:
    """The samples of a band of pixels, flat indices start onwards of a frame of total pixels.

    next_pixel gives the pixel just after the band; it is asked for only when a sampled pixel
    ends the band (so it may be None for the band that ends the frame).
    """
    limit_indices = _indices(start, pixels.size, total, SAMPLE_COUNT)
    median_indices = _indices(start, pixels.size, total, MEDIAN_SAMPLE_COUNT)
    # Neighbour pairs stop one short of the frame's end, as pixel pairs must.
    left_indices = limit_indices[limit_indices < total - 1 - start]
    inside = left_indices + 1 < pixels.size
    # One gather for all: scaled rows pay for each gather as much as for its pixels.
    limit, median, right_inside = np.split(
        pixels.take(np.concatenate([limit_indices, median_indices, left_indices[inside] + 1])),
        [limit_indices.size, limit_indices.size + median_indices.size],
    )
    left = limit[: left_indices.size].astype(np.float64)
    right = np.empty_like(left)
    right[inside] = right_inside
    if not inside.all():
        # None only for the band that ends the frame, whose last sampled pixel has its neighbour inside.
        right[~inside] = next_pixel()  # type: ignore[misc]
    finite = np.isfinite(left) & np.isfinite(right)
    return BandSamples(limit[np.isfinite(limit)], median[np.isfinite(median)], right[finite] - left[finite])


def concatenated(bands: Sequence[BandSamples]) -> BandSamples:
    """The samples of consecutive bands as those of one band."""
    return BandSamples(
        np.concatenate([band.limit_samples for band in bands]),
        np.concatenate([band.median_samples for band in bands]),
        np.concatenate([band.differences for band in bands]),
    )


def joined(bands: Sequence[BandSamples]) -> PixelSamples:
    """The frame's samples from its bands' samples, in band order."""
    whole = concatenated(bands)
    return PixelSamples(whole.limit_samples, whole.median_samples, pixel_noise(whole.differences))


def pixel_noise(differences: np.ndarray) -> float:
    """The robust standard deviation of one pixel's noise, from differences of neighbouring pixels (0 without any).

    Differences of neighbours ignore sky gradients and extended light; each holds two pixels' noise.
    """
    return float(mad_std(differences)) / math.sqrt(2.0) if differences.size else 0.0


def pixel_samples(data: np.ndarray) -> PixelSamples:
    """The samples of a whole frame."""
    return joined([band_samples(data, 0, data.size)])
