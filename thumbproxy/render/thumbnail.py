"""Render one FITS frame as a JPEG thumbnail: the entry point a pool worker calls.

Its steps are public so a colour composite can take each frame through the same ones.
"""

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.visualization import BaseTransform
from PIL import Image

from thumbproxy.render.encode import encode
from thumbproxy.render.fitsread import Frame, UnreadableFrame, read_frame
from thumbproxy.render.label import add_label
from thumbproxy.render.options import RenderOptions
from thumbproxy.render.orient import Orientation, display_orientation, orient
from thumbproxy.render.reduce import block_mean, reduction_factor, resample, thumbnail_size
from thumbproxy.render.stretch import (MEDIAN_SAMPLE_COUNT, Limits, black_value, display_limits,
                                       noise_averaged_away, pixel_noise, pixel_stretch,
                                       sample_pixels, subtract_median, to_grey,
                                       white_value)


class RenderError(Exception):
    """The file (by name, no directory) cannot be rendered, for a reason; the message starts with "cannot render"."""

    def __init__(self, file: str, reason: str) -> None:
        # Both in args, so the error pickles back from a pool worker intact.
        super().__init__(file, reason)
        self.file = file
        self.reason = reason

    def __str__(self) -> str:
        return f"cannot render {self.file}: {self.reason}"


@dataclass(frozen=True)
class Tone:
    """How a frame's pixel values map to grey levels, measured on its full-resolution pixels."""

    # The per-pixel map to grey levels, and the limits it clips to.
    stretch: BaseTransform
    limits: Limits
    # Standard deviation of one full-resolution pixel's noise.
    pixel_noise: float


@dataclass(frozen=True)
class _Shrunk:
    """What the rest of the pipeline needs from the full-resolution frame."""

    reduced: np.ndarray
    tone: Tone
    orientation: Orientation
    # Output (width, height) in data orientation, and full-resolution pixels per output pixel.
    size: tuple[int, int]
    pixels_per_output_pixel: float


def read_renderable(path: str | os.PathLike) -> Frame:
    """The frame at path; RenderError when the file holds no readable image (OSError as itself)."""
    try:
        return read_frame(path)
    except UnreadableFrame as err:
        # The file name only: the directory is the server's business, not the client's.
        raise RenderError(Path(path).name, str(err)) from err


def output_size(shape: tuple[int, int], orientation: Orientation,
                options: RenderOptions) -> tuple[int, int]:
    """The (width, height), in data orientation, of the thumbnail of an image of shape (rows,
    columns): it fits options' box once oriented, keeps its aspect ratio and is never enlarged."""
    rows, columns = shape
    oriented = (rows, columns) if orientation.swaps_axes else (columns, rows)
    width, height = thumbnail_size(oriented, (options.width, options.height))
    # Resampling happens before orientation, so a quarter turn swaps the target too.
    return (height, width) if orientation.swaps_axes else (width, height)


def measure_tone(data: np.ndarray, reduced: np.ndarray, options: RenderOptions) -> Tone:
    """The tone curve fits2image would give the full-resolution data; reduced is its block mean,
    measured when the sampling stride misses every finite pixel."""
    samples = sample_pixels(data)
    if samples.size == 0:
        samples = reduced[np.isfinite(reduced)]
    limits = display_limits(samples)
    stretch = pixel_stretch(limits)
    if options.median:
        median_samples = sample_pixels(data, MEDIAN_SAMPLE_COUNT)
        stretch = subtract_median(stretch, median_samples if median_samples.size else samples,
                                  options.percentile)
    return Tone(stretch, limits, pixel_noise(data))


def grey_levels(reduced: np.ndarray, tone: Tone, size: tuple[int, int],
                pixels_per_output_pixel: float) -> np.ndarray:
    """uint8 grey levels of the block-reduced image resampled to size (width, height).

    reduced is overwritten. pixels_per_output_pixel is the full-resolution area one output
    pixel covers: the noise averaged over it no longer shows, so the tone curve allows for it.
    """
    noise = noise_averaged_away(tone.pixel_noise, pixels_per_output_pixel)
    # Non-finite blocks take a value drawn black, so Lanczos does not spread NaN into
    # their neighbours.
    reduced[~np.isfinite(reduced)] = black_value(tone.limits, noise)
    # Lanczos rings around stars far brighter than white; clipped to the drawn range first,
    # the rings stay invisible, as they do when the stretch comes before the resampling.
    np.clip(reduced, black_value(tone.limits, noise), white_value(tone.limits, noise), out=reduced)
    return to_grey(resample(reduced, size), tone.stretch, tone.limits, noise)


def finish(pixels: np.ndarray, orientation: Orientation, options: RenderOptions) -> bytes:
    """Image bytes of grey (rows, columns) or RGB (rows, columns, 3) uint8 pixels in data
    orientation: turned for display, captioned, encoded as options ask."""
    image = Image.fromarray(orient(pixels, orientation))
    if options.label:
        image = add_label(image, options.label)
    return encode(image, options)


def _shrink(path: str | os.PathLike, options: RenderOptions) -> _Shrunk:
    """Read the frame, reduce it towards output size in data orientation and measure its tone.

    The full-resolution pixels live only inside this call.
    """
    frame = read_renderable(path)
    orientation = display_orientation(frame.header, spectrum=options.spectrum)
    size = output_size(frame.data.shape, orientation, options)
    reduced = block_mean(frame.data, reduction_factor(frame.data.shape, size))
    return _Shrunk(reduced, measure_tone(frame.data, reduced, options), orientation, size,
                   frame.data.size / (size[0] * size[1]))


def render_thumbnail(path: str | os.PathLike, options: RenderOptions) -> bytes:
    """JPEG bytes of a greyscale thumbnail of the FITS frame at path.

    The image is the SCI extension, else the first HDU with 2-D data (first plane of a
    cube); it fits inside options.width x options.height with its aspect ratio kept and is
    never enlarged; north is up and east left when the WCS allows. Raises RenderError
    when the file holds no readable image, and OSError when path cannot be opened.
    """
    shrunk = _shrink(path, options)
    grey = grey_levels(shrunk.reduced, shrunk.tone, shrunk.size, shrunk.pixels_per_output_pixel)
    return finish(grey, shrunk.orientation, options)
