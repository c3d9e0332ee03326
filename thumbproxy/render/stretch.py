"""Map pixel values to 8-bit grey levels the way fits2image's auto_scale does.

fits2image stretches every full-resolution pixel and then shrinks the image, so the
noise, spread through the steep start of the gamma curve, brightens the background
and softens the clip at the black level. Here the image is shrunk first, which averages
that noise away; the tone curve is therefore the expected stretched value of a pixel
with that much noise, which gives the same grey levels without the grain.
"""

import math
from dataclasses import dataclass

import numpy as np
from astropy.visualization import (
    AsymmetricPercentileInterval,
    BaseTransform,
    ManualInterval,
    ZScaleInterval,
)

GAMMA = 2.5
# fits2image fits one line to the sorted samples (contrast 0.1) and measures zmax from the
# line's value at the first sample, not at the median as ZScaleInterval does: over a
# background-dominated sample that is ZScaleInterval with contrast 1 / (1 / 0.1 - 1).
ZSCALE_CONTRAST = 1.0 / 9.0
# The noise-averaged tone curve is tabulated at up to this many points, no closer than
# 1/16 of the noise; it reaches its end values this many deviations beyond the limits.
CURVE_POINTS = 4096
CURVE_STEPS_PER_SIGMA = 16
CURVE_MARGIN = 6.0


@dataclass(frozen=True)
class Limits:
    """Pixel values drawn black (lower) and white (upper)."""

    lower: float
    upper: float


def noise_averaged_away(noise: float, pixels_per_output_pixel: float) -> float:
    """The part of the per-pixel noise that shrinking by this area ratio removes."""
    return noise * math.sqrt(max(0.0, 1.0 - 1.0 / pixels_per_output_pixel))


def display_limits(samples: np.ndarray, contrast: float = ZSCALE_CONTRAST) -> Limits:
    """Black at the median of the samples, white at the zscale upper limit (ZScaleInterval's contrast).

    Equal limits are spread by one unit either side, as fits2image does, so a constant
    image comes out flat mid-grey instead of dividing by zero. Without samples there is
    nothing finite to show, and any limits do.
    """
    if samples.size == 0:
        return Limits(0.0, 1.0)
    lower = float(np.median(samples))
    _, upper = ZScaleInterval(n_samples=samples.size, contrast=contrast, max_iterations=1).get_limits(samples)
    upper = float(upper)
    if upper <= lower:
        return Limits(lower - 1.0, upper + 1.0)
    return Limits(lower, upper)


def subtract_median(stretch: BaseTransform, samples: np.ndarray, percentile: float) -> BaseTransform:
    """stretch followed by fits2image's recalculate_median, measured on the samples: black at
    the median of the stretched samples and white at their percentile."""
    if samples.size == 0:
        return stretch
    # (astropy composes right to left: a + b applies b first.)
    return median_interval(stretch(samples), percentile) + stretch


def median_interval(stretched: np.ndarray, percentile: float) -> ManualInterval:
    """fits2image's recalculate_median as a map of grey levels in [0, 1]: black at the median of these
    stretched samples and white at their percentile."""
    median, top = AsymmetricPercentileInterval(50.0, percentile).get_limits(stretched)
    # fits2image divides by zero when the percentile is the median, which draws every
    # pixel above the median white: a one-grey-level range does the same, safely.
    return ManualInterval(median, max(top, median + 1.0 / 255.0))


def black_value(limits: Limits, noise: float = 0.0) -> float:
    """A pixel value to_grey(..., limits, noise) draws black."""
    return limits.lower - CURVE_MARGIN * noise


def white_value(limits: Limits, noise: float = 0.0) -> float:
    """A pixel value to_grey(..., limits, noise) draws white."""
    return limits.upper + CURVE_MARGIN * noise


def _noise_averaged_curve(stretch: BaseTransform, limits: Limits, noise: float) -> tuple[float, float, np.ndarray]:
    """The stretch's mean over Gaussian noise of this deviation, tabulated: (first point, step, values)."""
    margin = CURVE_MARGIN * noise
    step = max((limits.upper - limits.lower + 2.0 * margin) / (CURVE_POINTS - 1), noise / CURVE_STEPS_PER_SIGMA)
    half_width = math.ceil(margin / step)
    # On a uniform grid the mean over the noise is a convolution with the Gaussian.
    offsets = np.arange(-half_width, half_width + 1) * step
    kernel = np.exp(-0.5 * (offsets / noise) ** 2)
    count = math.ceil((limits.upper - limits.lower + 2.0 * margin) / step) + 1
    padded = limits.lower - margin + step * np.arange(-half_width, count + half_width)
    curve = np.convolve(stretch(padded), kernel / kernel.sum(), mode="valid")
    return limits.lower - margin, step, curve


def _interpolate(image: np.ndarray, start: float, step: float, table: np.ndarray) -> np.ndarray:
    """The table, tabulated from start every step, linearly interpolated at image's values and
    constant beyond its ends, as np.interp gives it.

    np.interp searches the table for every value; on a uniform grid one multiplication finds the place.
    In float32, as the image is: a grey level's error stays a ten-thousandth of a step.
    """
    position = (image.astype(np.float32) - np.float32(start)) * np.float32(1.0 / step)
    np.clip(position, 0.0, table.size - 1, out=position)
    index = np.minimum(position.astype(np.int32), table.size - 2)
    position -= index
    values = table.astype(np.float32)
    return values[index] + position * np.diff(values)[index]


def to_grey(image: np.ndarray, stretch: BaseTransform, limits: Limits, noise: float = 0.0) -> np.ndarray:
    """Grey levels (uint8) of image under the per-pixel stretch, whose limits are given.

    noise is the standard deviation of the noise averaged away before this stretch; the
    curve applied is then the stretch's mean over that Gaussian noise.
    """
    levels = _interpolate(image, *_noise_averaged_curve(stretch, limits, noise)) if noise > 0.0 else stretch(image)
    return (levels * 255.0 + 0.5).astype(np.uint8)
