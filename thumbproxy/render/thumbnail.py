"""Render one FITS frame as a thumbnail: the entry points a pool worker calls.

Its steps are public so a colour composite can take each frame through the same ones.
"""

import math
import os
from dataclasses import dataclass

import numpy as np
from astropy.visualization import BaseTransform
from PIL import Image

from thumbproxy.render.display import display_limits_for, display_stretch, equalizes, uses_default_cuts
from thumbproxy.render.encode import encode
from thumbproxy.render.errors import refused_as_render_error
from thumbproxy.render.fitsread import open_frame
from thumbproxy.render.label import add_label
from thumbproxy.render.options import RenderOptions
from thumbproxy.render.orient import Orientation, orient
from thumbproxy.render.palette import painted
from thumbproxy.render.plot import spectrum_plot
from thumbproxy.render.preview import DEFAULT_PREVIEW_SIZE, Preview, reduce_image
from thumbproxy.render.reduce import block_mean, reduction_factor, resample
from thumbproxy.render.samples import PixelSamples
from thumbproxy.render.spectrum import Spectrum
from thumbproxy.render.stretch import (
    Limits,
    black_value,
    noise_averaged_away,
    subtract_median,
    to_grey,
    white_value,
)


@dataclass(frozen=True)
class Tone:
    """How a frame's pixel values map to grey levels, measured on its full-resolution pixels."""

    # The pixel values drawn black and white.
    limits: Limits
    # Standard deviation of one full-resolution pixel's noise.
    pixel_noise: float
    # The per-pixel map to grey levels in [0, 1] (display_stretch, then any median subtraction); None for
    # histeq, whose curve equalises the pixels drawn.
    stretch: BaseTransform | None
    # The display parameters asked for.
    options: RenderOptions

    def grey(self, pixels: np.ndarray, noise: float) -> np.ndarray:
        """uint8 grey levels of pixels, block means whose averaging removed noise of this deviation."""
        if self.stretch is None:
            # Equalisation measures the pixels drawn, averaged already: its curve needs no allowance for noise.
            return to_grey(pixels, display_stretch(self.options, self.limits, pixels), self.limits)
        return to_grey(pixels, self.stretch, self.limits, noise)


def measure_tone(samples: PixelSamples, reduced: np.ndarray, options: RenderOptions) -> Tone:
    """The tone of the full-resolution frame these samples are of, as options ask; reduced is its block mean,
    measured when the sampling stride misses every finite pixel."""
    limit_samples = limit_samples_of(samples, reduced)
    return tone_of(samples, limit_samples, limits_of(samples, limit_samples, options), options)


def limit_samples_of(samples: PixelSamples, reduced: np.ndarray) -> np.ndarray:
    """The pixels the display limits are measured on: the samples, else the finite pixels of reduced."""
    return samples.limit_samples if samples.limit_samples.size else reduced[np.isfinite(reduced)]


def median_samples_of(samples: PixelSamples, limit_samples: np.ndarray) -> np.ndarray:
    """The pixels median subtraction and percentile cuts are measured on: the median samples, else the limit
    samples."""
    return samples.median_samples if samples.median_samples.size else limit_samples


def limits_of(samples: PixelSamples, limit_samples: np.ndarray, options: RenderOptions) -> Limits:
    """The display limits options ask for, measured on limit_samples (limit_samples_of) and, for percentile
    cuts, the larger sample of the frame when it has one."""
    return display_limits_for(options, limit_samples, median_samples_of(samples, limit_samples))


def tone_of(samples: PixelSamples, limit_samples: np.ndarray, limits: Limits, options: RenderOptions) -> Tone:
    """measure_tone with the limit samples already chosen (limit_samples_of) and their display limits."""
    if equalizes(options):
        return Tone(limits, samples.noise, None, options)
    stretch = display_stretch(options, limits)
    if options.median:
        stretch = subtract_median(stretch, median_samples_of(samples, limit_samples), options.percentile)
    return Tone(limits, samples.noise, stretch, options)


def grey_levels(reduced: np.ndarray, tone: Tone, size: tuple[int, int], pixels_per_output_pixel: float) -> np.ndarray:
    """uint8 grey levels of the block-reduced image resampled to size (width, height).

    reduced is overwritten. pixels_per_output_pixel is the full-resolution area one output
    pixel covers: the noise averaged over it no longer shows, so the tone curve allows for it.
    """
    noise = noise_averaged_away(tone.pixel_noise, pixels_per_output_pixel)
    return tone.grey(_display_resampled(reduced, tone.limits, noise, size), noise)


def _display_resampled(reduced: np.ndarray, limits: Limits, noise: float, size: tuple[int, int]) -> np.ndarray:
    """reduced (overwritten) clipped to the drawn range and resampled to size, for a tone curve of these
    limits allowing for this noise."""
    # Non-finite blocks take a value drawn black, so Lanczos does not spread NaN into
    # their neighbours.
    reduced[~np.isfinite(reduced)] = black_value(limits, noise)
    # Lanczos rings around stars far brighter than white; clipped to the drawn range first,
    # the rings stay invisible, as they do when the stretch comes before the resampling.
    np.clip(reduced, black_value(limits, noise), white_value(limits, noise), out=reduced)
    return resample(reduced, size)


def finish(pixels: np.ndarray, orientation: Orientation, options: RenderOptions) -> bytes:
    """Image bytes of grey (rows, columns) or RGB (rows, columns, 3) uint8 pixels in data
    orientation: turned for display, captioned, encoded as options ask."""
    image = painted(Image.fromarray(orient(pixels, orientation)), options)
    if options.label:
        image = add_label(image, options.label)
    return encode(image, options)


@dataclass(frozen=True)
class ResampledPreview:
    """A preview's pixels at one thumbnail size before the tone curve: block-reduced, clipped to the
    drawn range and resampled. Thumbnails of that size and display limits differing only in curve, gamma,
    colours, label or format share it, and skip the resampling, the larger part of their work."""

    pixels: np.ndarray
    # The pixels the display limits are measured on (limit_samples_of), those limits, and the pixel noise
    # left at this size.
    limit_samples: np.ndarray
    limits: Limits
    noise: float


def preview_at_size(preview: Preview, options: RenderOptions) -> ResampledPreview:
    """The preview, which covers the thumbnail options ask for (Preview.covers), ready for its tone curve."""
    size = preview.outline.thumbnail_size(options)
    reduced = block_mean(preview.image, reduction_factor(preview.shape, size) // preview.factor)
    limit_samples = limit_samples_of(preview.samples, reduced)
    noise = noise_averaged_away(preview.samples.noise, math.prod(preview.shape) / (size[0] * size[1]))
    # The default limits are measured once per preview, not once per size.
    limits = preview.sample_limits if uses_default_cuts(options) else None
    if limits is None:
        limits = limits_of(preview.samples, limit_samples, options)
    return ResampledPreview(_display_resampled(reduced, limits, noise, size), limit_samples, limits, noise)


def thumbnail_from_resampled(preview: Preview, resampled: ResampledPreview, options: RenderOptions) -> bytes:
    """Image bytes of the thumbnail options ask for, from the preview resampled to its size (preview_at_size)."""
    tone = tone_of(preview.samples, resampled.limit_samples, resampled.limits, options)
    return finish(tone.grey(resampled.pixels, resampled.noise), preview.orientation(options.spectrum), options)


def thumbnail_from_preview(preview: Preview, options: RenderOptions) -> bytes:
    """Image bytes of the thumbnail options ask for, made from a preview that covers it (Preview.covers)."""
    return thumbnail_from_resampled(preview, preview_at_size(preview, options), options)


def thumbnail_and_preview_from_file(
    path: str | os.PathLike[str], options: RenderOptions, preview_size: int
) -> tuple[bytes, Preview | None]:
    """thumbnail_from_file's image bytes, and the frame's preview made on the way (None when preview_size is 0, and
    for a 1-D spectrum, which is plotted from the file each time: it is small)."""
    with refused_as_render_error(path), open_frame(path, memory_mapped=True) as frame:
        if isinstance(frame, Spectrum):
            return encode(spectrum_plot(frame, (options.width, options.height), options.label), options), None
        reduced, preview = reduce_image(frame, options, preview_size)
    return thumbnail_from_preview(reduced, options), preview


def thumbnail_from_file(
    path: str | os.PathLike[str], options: RenderOptions, preview_size: int = DEFAULT_PREVIEW_SIZE
) -> bytes:
    """Image bytes of a greyscale thumbnail of the FITS frame at path.

    The image is the SCI extension, else the first HDU with 2-D data (first plane of a
    cube); it fits inside options.width x options.height with its aspect ratio kept and is
    never enlarged; north is up and east left when the WCS allows. A thumbnail that needs no
    finer pixels than the frame's preview of preview_size (0: none) is made from that preview.
    A file whose only data is a 1-D spectrum (fitsread.open_frame) is plotted instead, filling
    options.width x options.height (plot.spectrum_plot), with options.label as its title.
    Raises RenderError when the file holds no readable image or spectrum, and OSError when
    path cannot be opened.
    """
    return thumbnail_and_preview_from_file(path, options, preview_size)[0]
