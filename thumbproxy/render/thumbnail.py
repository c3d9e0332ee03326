"""Render one FITS frame as a thumbnail: the entry points a pool worker calls.

Its steps are public so a colour composite can take each frame through the same ones.
"""

import math
import os
from dataclasses import dataclass

import numpy as np
from astropy.visualization import BaseTransform
from PIL import Image

from thumbproxy.render.encode import encode
from thumbproxy.render.label import add_label
from thumbproxy.render.options import RenderOptions
from thumbproxy.render.orient import Orientation, orient
from thumbproxy.render.preview import DEFAULT_PREVIEW_SIZE, Preview, read_reduced
from thumbproxy.render.reduce import block_mean, reduction_factor, resample
from thumbproxy.render.samples import PixelSamples
from thumbproxy.render.stretch import (
    Limits,
    black_value,
    display_limits,
    noise_averaged_away,
    pixel_stretch,
    subtract_median,
    to_grey,
    white_value,
)


@dataclass(frozen=True)
class Tone:
    """How a frame's pixel values map to grey levels, measured on its full-resolution pixels."""

    # The per-pixel map to grey levels, and the limits it clips to.
    stretch: BaseTransform
    limits: Limits
    # Standard deviation of one full-resolution pixel's noise.
    pixel_noise: float


def measure_tone(samples: PixelSamples, reduced: np.ndarray, options: RenderOptions) -> Tone:
    """The tone curve fits2image would give the full-resolution frame these samples are of;
    reduced is its block mean, measured when the sampling stride misses every finite pixel."""
    limit_samples = limit_samples_of(samples, reduced)
    return tone_of(samples, limit_samples, display_limits(limit_samples), options)


def limit_samples_of(samples: PixelSamples, reduced: np.ndarray) -> np.ndarray:
    """The pixels the display limits are measured on: the samples, else the finite pixels of reduced."""
    return samples.limit_samples if samples.limit_samples.size else reduced[np.isfinite(reduced)]


def tone_of(samples: PixelSamples, limit_samples: np.ndarray, limits: Limits, options: RenderOptions) -> Tone:
    """measure_tone with the limit samples already chosen (limit_samples_of) and their display limits."""
    stretch = pixel_stretch(limits)
    if options.median:
        median_samples = samples.median_samples
        stretch = subtract_median(stretch, median_samples if median_samples.size else limit_samples, options.percentile)
    return Tone(stretch, limits, samples.noise)


def grey_levels(reduced: np.ndarray, tone: Tone, size: tuple[int, int], pixels_per_output_pixel: float) -> np.ndarray:
    """uint8 grey levels of the block-reduced image resampled to size (width, height).

    reduced is overwritten. pixels_per_output_pixel is the full-resolution area one output
    pixel covers: the noise averaged over it no longer shows, so the tone curve allows for it.
    """
    noise = noise_averaged_away(tone.pixel_noise, pixels_per_output_pixel)
    return to_grey(_display_resampled(reduced, tone.limits, noise, size), tone.stretch, tone.limits, noise)


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
    image = Image.fromarray(orient(pixels, orientation))
    if options.label:
        image = add_label(image, options.label)
    return encode(image, options)


@dataclass(frozen=True)
class ResampledPreview:
    """A preview's pixels at one thumbnail size before the tone curve: block-reduced, clipped to the
    drawn range and resampled. Thumbnails of that size differing only in stretch, label or format
    share it, and skip the resampling, the larger part of their work."""

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
    limits = preview.sample_limits
    if limits is None:
        limits = display_limits(limit_samples)
    return ResampledPreview(_display_resampled(reduced, limits, noise, size), limit_samples, limits, noise)


def thumbnail_from_resampled(preview: Preview, resampled: ResampledPreview, options: RenderOptions) -> bytes:
    """Image bytes of the thumbnail options ask for, from the preview resampled to its size (preview_at_size)."""
    tone = tone_of(preview.samples, resampled.limit_samples, resampled.limits, options)
    grey = to_grey(resampled.pixels, tone.stretch, tone.limits, resampled.noise)
    return finish(grey, preview.orientation(options.spectrum), options)


def thumbnail_from_preview(preview: Preview, options: RenderOptions) -> bytes:
    """Image bytes of the thumbnail options ask for, made from a preview that covers it (Preview.covers)."""
    return thumbnail_from_resampled(preview, preview_at_size(preview, options), options)


def thumbnail_and_preview_from_file(
    path: str | os.PathLike[str], options: RenderOptions, preview_size: int
) -> tuple[bytes, Preview | None]:
    """thumbnail_from_file's image bytes, and the frame's preview made on the way (None when preview_size is 0)."""
    reduced, preview = read_reduced(path, options, preview_size)
    return thumbnail_from_preview(reduced, options), preview


def thumbnail_from_file(
    path: str | os.PathLike[str], options: RenderOptions, preview_size: int = DEFAULT_PREVIEW_SIZE
) -> bytes:
    """Image bytes of a greyscale thumbnail of the FITS frame at path.

    The image is the SCI extension, else the first HDU with 2-D data (first plane of a
    cube); it fits inside options.width x options.height with its aspect ratio kept and is
    never enlarged; north is up and east left when the WCS allows. A thumbnail that needs no
    finer pixels than the frame's preview of preview_size (0: none) is made from that preview.
    Raises RenderError when the file holds no readable image, and OSError when path cannot be
    opened.
    """
    return thumbnail_and_preview_from_file(path, options, preview_size)[0]
