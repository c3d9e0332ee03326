"""The caller's display parameters: which pixel values are drawn black and white (the cuts), and the curve
between them (the stretch), built from astropy.visualization's intervals and stretches."""

from collections.abc import Callable

import numpy as np
from astropy.visualization import (
    AsinhStretch,
    AsymmetricPercentileInterval,
    BaseStretch,
    BaseTransform,
    HistEqStretch,
    LogStretch,
    ManualInterval,
    PowerStretch,
    SqrtStretch,
)

from thumbproxy.render.options import RenderOptions
from thumbproxy.render.stretch import GAMMA, ZSCALE_CONTRAST, Limits, display_limits

# Stretches whose cuts are fits2image's: black at the median, white at the zscale upper limit.
ZSCALE_STRETCHES = frozenset({"zscale", "lupton"})
# The curves between the cuts; zscale and linear draw a straight line (zscale then applies its gamma).
CURVES: dict[str, Callable[[], BaseStretch]] = {"sqrt": SqrtStretch, "log": LogStretch, "asinh": AsinhStretch}
# fits2image's contrast and gamma_adjust: today's look.
DEFAULT_CONTRAST = 0.1
# The other stretches' cuts unless given: hips2fits' and astrocut's default percentiles.
DEFAULT_MIN_PERCENT = 0.5
DEFAULT_MAX_PERCENT = 99.5
# About this many of the pixels drawn make histeq's histogram.
EQUALIZED_PIXELS = 16384


def gamma_of(options: RenderOptions) -> float:
    """The power 1 / gamma applied last: fits2image's 2.5 for zscale, none for the other stretches unless given."""
    if options.gamma is not None:
        return options.gamma
    return GAMMA if options.stretch in ZSCALE_STRETCHES else 1.0


def cut_options(options: RenderOptions) -> tuple[object, ...]:
    """The options that decide a frame's display limits: thumbnails agreeing on these share their limits."""
    zscale = options.stretch in ZSCALE_STRETCHES
    return (zscale, options.contrast, options.zmin, options.zmax, options.min_percent, options.max_percent)


def uses_default_cuts(options: RenderOptions) -> bool:
    """Whether the display limits are the default zscale ones every frame's preview measures once."""
    return cut_options(options) == cut_options(RenderOptions())


def zscale_contrast(contrast: float) -> float:
    """ZScaleInterval's contrast for fits2image's: fits2image measures the upper limit from the fitted line's
    value at the first sample, ZScaleInterval from its value at the median (see stretch.ZSCALE_CONTRAST)."""
    return contrast / (1.0 - contrast)


def display_limits_for(options: RenderOptions, limit_samples: np.ndarray, percentile_samples: np.ndarray) -> Limits:
    """The pixel values drawn black and white: a cut given as a value, else as a percentile of
    percentile_samples, else the stretch's own interval (zscale on limit_samples, or the default percentiles).

    When the cuts cross, the one chosen with less say (a percentile against a value, an interval's against
    either) moves one unit beyond the other; two interval cuts that meet spread as display_limits spreads them.
    """
    if options.stretch in ZSCALE_STRETCHES:
        contrast = ZSCALE_CONTRAST if options.contrast is None else zscale_contrast(options.contrast)
        interval = display_limits(limit_samples, contrast)
        lower, upper = interval.lower, interval.upper
    else:
        lower, upper = _percentiles(percentile_samples, DEFAULT_MIN_PERCENT, DEFAULT_MAX_PERCENT)
    # How firmly each cut was asked for: 0 the interval's, 1 a percentile, 2 a value.
    lower_say = upper_say = 0
    if options.min_percent is not None or options.max_percent is not None:
        low, high = _percentiles(
            percentile_samples,
            DEFAULT_MIN_PERCENT if options.min_percent is None else options.min_percent,
            DEFAULT_MAX_PERCENT if options.max_percent is None else options.max_percent,
        )
        if options.min_percent is not None:
            lower, lower_say = low, 1
        if options.max_percent is not None:
            upper, upper_say = high, 1
    if options.zmin is not None:
        lower, lower_say = options.zmin, 2
    if options.zmax is not None:
        upper, upper_say = options.zmax, 2
    if upper > lower:
        return Limits(lower, upper)
    if lower_say > upper_say:
        return Limits(lower, lower + 1.0)
    if upper_say > lower_say:
        return Limits(upper - 1.0, upper)
    return Limits(lower - 1.0, upper + 1.0)


def _percentiles(samples: np.ndarray, low: float, high: float) -> tuple[float, float]:
    """The low and high percentiles of samples; (0, 1) without samples: nothing finite to show, any cuts do."""
    if not samples.size:
        return 0.0, 1.0
    lower, upper = AsymmetricPercentileInterval(low, high).get_limits(samples)
    return float(lower), float(upper)


def equalizes(options: RenderOptions) -> bool:
    """Whether the stretch is histogram equalisation, whose curve comes from the pixels drawn."""
    return options.stretch == "histeq"


def display_stretch(options: RenderOptions, limits: Limits, drawn: np.ndarray | None = None) -> BaseTransform:
    """The map from a pixel value to a grey level in [0, 1]: clip to limits, scale linearly, apply the stretch's
    curve, then 1 / gamma. histeq equalises the histogram of drawn, the pixels it is applied to."""
    transform: BaseTransform = ManualInterval(limits.lower, limits.upper)
    if equalizes(options):
        if drawn is None:
            raise ValueError("histeq equalises the pixels drawn: give them")
        # Every k-th pixel drawn is as good a histogram for 256 grey levels, and astropy then interpolates
        # each pixel in a table of EQUALIZED_PIXELS instead of all of them: a tenth of the time.
        pixels = drawn.ravel()[:: max(1, drawn.size // EQUALIZED_PIXELS)]
        # HistEqStretch rescales its data to the data's own range, which must therefore be the range it is
        # applied to, [0, 1]: the cuts, not the pixels drawn, decide black and white.
        histogram = np.concatenate([[0.0, 1.0], transform(pixels[np.isfinite(pixels)])])
        # astropy composes right to left: a + b applies b first.
        transform = HistEqStretch(histogram) + transform
    elif options.stretch in CURVES:
        transform = CURVES[options.stretch]() + transform
    gamma = gamma_of(options)
    return transform if gamma == 1.0 else PowerStretch(1.0 / gamma) + transform
