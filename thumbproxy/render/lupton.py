"""An asinh colour composite (Lupton et al. 2004) that keeps the colours of stars.

One stretch applies to the summed intensity and each channel keeps its share of it, so a star
brighter in blue stays blue however bright it is, where per-channel scaling turns every bright
star white.
"""

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from astropy.visualization import LuptonAsinhStretch

from thumbproxy.render.reduce import resample
from thumbproxy.render.thumbnail import Tone

# Each channel is measured from its sky in units of its own sky noise: frames of different
# exposure, throughput and sky level then show the same neutral background. In those units
# the asinh curve is linear up to about LINEAR_RANGE, and Q sets how strongly it compresses
# the brighter end.
LINEAR_RANGE = 10.0
Q = 10.0
# The black point sits this many deviations of the block-averaged noise below the sky, so
# the sky shows as a dark grain rather than clipped to black.
BLACK_BELOW_SKY = 1.0


def _above_black(image: np.ndarray, tone: Tone, factor: int, weight: float) -> np.ndarray:
    """The channel in deviations of its sky noise above the black point, times weight; image is a
    block mean over factor x factor pixels."""
    sky = tone.limits.lower
    # Averaging factor x factor pixels divides the noise by factor. A flat frame has no
    # noise; its zscale range is as good a unit as any.
    unit = tone.pixel_noise / factor or tone.limits.upper - sky
    # Non-finite blocks are drawn as sky.
    scaled = (np.where(np.isfinite(image), image, np.float32(sky)) - sky) / np.float32(unit)
    return (scaled + np.float32(BLACK_BELOW_SKY)) * np.float32(weight)


def lupton_rgb(
    channels: Sequence[np.ndarray],
    tones: Sequence[Tone],
    factor: int,
    size: tuple[int, int],
    weights: Sequence[float],
) -> np.ndarray:
    """uint8 RGB (rows, columns, 3) at size (width, height) of the red, green and blue block
    means over factor x factor pixels, each with the tone measured on its full-resolution frame
    and its light above the black point multiplied by its weight.

    The mapping comes before the resampling: Lanczos then works on values bounded to the
    drawn range and cannot ring around saturated stars.
    """
    rgb = np.stack([_above_black(image, tone, factor, weight) for image, tone, weight in zip(channels, tones, weights)])
    intensity = rgb.mean(axis=0)
    stretched = LuptonAsinhStretch(stretch=LINEAR_RANGE, Q=Q)(intensity)
    # Every channel is scaled by the same factor, which keeps its share of the intensity.
    rgb *= np.divide(stretched, intensity, out=np.zeros_like(intensity), where=intensity > 0.0)
    np.clip(rgb, 0.0, None, out=rgb)
    # Where a channel would pass white, all three are dimmed together: the colour stays.
    rgb /= np.maximum(rgb.max(axis=0), 1.0)
    resampled: npt.NDArray[np.float32] = np.dstack([resample(channel, size) for channel in rgb])
    return (np.clip(resampled, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
