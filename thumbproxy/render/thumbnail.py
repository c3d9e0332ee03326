"""Render one FITS frame as a JPEG thumbnail: the entry point a pool worker calls."""

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.visualization import BaseTransform
from PIL import Image

from thumbproxy.render.encode import encode_jpeg
from thumbproxy.render.fitsread import UnreadableFrame, read_frame
from thumbproxy.render.label import add_label
from thumbproxy.render.options import RenderOptions
from thumbproxy.render.orient import Orientation, display_orientation, orient
from thumbproxy.render.reduce import block_mean, reduction_factor, resample, thumbnail_size
from thumbproxy.render.stretch import (MEDIAN_SAMPLE_COUNT, Limits, black_value, display_limits,
                                       noise_averaged_away, pixel_noise, pixel_stretch,
                                       sample_pixels, subtract_median, to_grey,
                                       white_value)


class RenderError(Exception):
    """The file cannot be rendered; the message starts with "cannot render"."""


@dataclass(frozen=True)
class _Shrunk:
    """What the rest of the pipeline needs from the full-resolution frame."""

    image: np.ndarray
    # The per-pixel map to grey levels, and the limits it clips to.
    stretch: BaseTransform
    limits: Limits
    # Standard deviation of the noise the shrinking averaged away.
    noise: float
    orientation: Orientation


def _shrink(path: str | os.PathLike, options: RenderOptions) -> _Shrunk:
    """Read the frame, reduce it to output size in data orientation and measure its stretch.

    The full-resolution pixels live only inside this call.
    """
    frame = read_frame(path)
    orientation = display_orientation(frame.header, spectrum=options.spectrum)
    rows, columns = frame.data.shape
    oriented = (rows, columns) if orientation.swaps_axes else (columns, rows)
    width, height = thumbnail_size(oriented, (options.width, options.height))
    # Resampling happens before orientation, so a quarter turn swaps the target too.
    size = (height, width) if orientation.swaps_axes else (width, height)

    reduced = block_mean(frame.data, reduction_factor(frame.data.shape, size))
    finite = np.isfinite(reduced)
    samples = sample_pixels(frame.data)
    if samples.size == 0:
        # The stride missed every finite pixel; the reduced frame still has them.
        samples = reduced[finite]
    limits = display_limits(samples)
    stretch = pixel_stretch(limits)
    if options.median:
        median_samples = sample_pixels(frame.data, MEDIAN_SAMPLE_COUNT)
        stretch = subtract_median(stretch, median_samples if median_samples.size else samples,
                                  options.percentile)
    noise = noise_averaged_away(pixel_noise(frame.data), frame.data.size / (width * height))
    # Non-finite blocks take a value drawn black, so Lanczos does not spread NaN into
    # their neighbours.
    reduced[~finite] = black_value(limits, noise)
    # Lanczos rings around stars far brighter than white; clipped to the drawn range first,
    # the rings stay invisible, as they do when the stretch comes before the resampling.
    np.clip(reduced, black_value(limits, noise), white_value(limits, noise), out=reduced)
    return _Shrunk(resample(reduced, size), stretch, limits, noise, orientation)


def render_thumbnail(path: str | os.PathLike, options: RenderOptions) -> bytes:
    """JPEG bytes of a greyscale thumbnail of the FITS frame at path.

    The image is the SCI extension, else the first HDU with 2-D data (first plane of a
    cube); it fits inside options.width x options.height with its aspect ratio kept and is
    never enlarged; north is up and east left when the WCS allows. Raises RenderError
    when the file holds no readable image, and OSError when path cannot be opened.
    """
    try:
        shrunk = _shrink(path, options)
    except UnreadableFrame as err:
        # The file name only: the directory is the server's business, not the client's.
        raise RenderError(f"cannot render {Path(path).name}: {err}") from err
    grey = to_grey(shrunk.image, shrunk.stretch, shrunk.limits, shrunk.noise)
    image = Image.fromarray(orient(grey, shrunk.orientation))
    if options.label:
        image = add_label(image, options.label)
    return encode_jpeg(image, options.quality, options.progressive)
