"""The tones of a zscale colour composite's channels: one look for all, in units of each channel's sky noise.

Scaled each on its own, as a single frame is, the channels disagree wherever their samples do. zscale's
one-pass line fit over about 2000 samples reaches far above the sky when a sample lands on a star, and
stops at the brightest sample when none does; a channel whose samples miss every star is then drawn
white a few noise deviations above its sky, and through the gamma curve its sky grain shows about twice as
bright as the other channels' (on the demo's R, V, B frames a strong green cast). Here each channel is measured
from its sky in units of its own pixel noise, as the lupton composite measures it, and one zscale fit over
all the channels' samples so measured sets black and white for every channel: each sky sits at the same
place on the same curve with the same grain, so the sky is neutral, and a star's colour is its light in
each filter over that filter's noise.
"""

from collections.abc import Sequence

import numpy as np

from thumbproxy.render.display import display_limits_for, display_stretch, equalizes
from thumbproxy.render.options import RenderOptions
from thumbproxy.render.samples import PixelSamples
from thumbproxy.render.stretch import Limits, display_limits, median_interval
from thumbproxy.render.thumbnail import Tone, limit_samples_of, limits_of, median_samples_of

# The sky level is the median of this many pixels, ten times the limit samples: it then stands within a
# hundredth of the noise of the true sky. A black point off by a few hundredths shows as a grey level of colour;
# the median of all the median samples would cost more than the rest of the balance.
SKY_SAMPLE_COUNT = 20_000


def balanced_tones(
    samples: Sequence[PixelSamples], reduced: Sequence[np.ndarray], options: RenderOptions
) -> list[Tone]:
    """The tones of the channels whose full-resolution samples these are, in order (reduced: their block
    means, measured when the sampling stride misses every finite pixel).

    The cuts options ask for are measured on all the channels' samples, each in units of its sky noise above its
    sky; cuts given in data units (zmin, zmax) are every channel's, as fits2image's composite takes them. Each
    channel's light above black is multiplied by its weight in options.weights; with options.median, one median
    subtraction measured on all the channels' stretched samples follows.
    """
    limit_samples = [limit_samples_of(channel, image) for channel, image in zip(samples, reduced)]
    if options.zmin is not None or options.zmax is not None:
        cuts = [limits_of(channel, pixels, options) for channel, pixels in zip(samples, limit_samples)]
    else:
        skies = [_sky(channel, pixels) for channel, pixels in zip(samples, limit_samples)]
        units = [_unit(channel, pixels) for channel, pixels in zip(samples, limit_samples)]

        def measured(pixels: Sequence[np.ndarray]) -> np.ndarray:
            return np.concatenate([(channel - sky) / unit for channel, sky, unit in zip(pixels, skies, units)])

        shared = display_limits_for(
            options,
            measured(limit_samples),
            measured([median_samples_of(channel, pixels) for channel, pixels in zip(samples, limit_samples)]),
        )
        cuts = [Limits(sky + shared.lower * unit, sky + shared.upper * unit) for sky, unit in zip(skies, units)]
    # Light above black times the weight is the same curve with white that much nearer.
    limits = [
        Limits(cut.lower, cut.lower + (cut.upper - cut.lower) / weight) for cut, weight in zip(cuts, options.weights)
    ]
    if equalizes(options):
        return [Tone(channel_limits, channel.noise, None, options) for channel_limits, channel in zip(limits, samples)]
    stretches = [display_stretch(options, channel_limits) for channel_limits in limits]
    if options.median:
        stretched = np.concatenate(
            [
                stretch(median_samples_of(channel, pixels))
                for stretch, channel, pixels in zip(stretches, samples, limit_samples)
            ]
        )
        if stretched.size:
            # One black and white for all channels, or each would undo its weight and its colour.
            interval = median_interval(stretched, options.percentile)
            stretches = [interval + stretch for stretch in stretches]
    return [
        Tone(channel_limits, channel.noise, stretch, options)
        for stretch, channel_limits, channel in zip(stretches, limits, samples)
    ]


def _sky(samples: PixelSamples, limit_samples: np.ndarray) -> float:
    """A channel's sky level: the median of about SKY_SAMPLE_COUNT of its median samples, spread over the frame."""
    pixels = median_samples_of(samples, limit_samples)
    return float(np.median(pixels[:: max(1, pixels.size // SKY_SAMPLE_COUNT)])) if pixels.size else 0.0


def _unit(samples: PixelSamples, limit_samples: np.ndarray) -> float:
    """What a channel is measured in: its pixel noise, or for a frame without noise its own zscale range."""
    if samples.noise:
        return samples.noise
    limits = display_limits(limit_samples)
    return limits.upper - limits.lower
