"""Render the red, visual and blue frames of one field as an aligned colour JPEG thumbnail."""

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from thumbproxy.render.align import align
from thumbproxy.render.fitsread import Frame
from thumbproxy.render.lupton import lupton_rgb
from thumbproxy.render.options import RenderOptions
from thumbproxy.render.orient import Orientation, cd_matrix, display_orientation
from thumbproxy.render.reduce import block_mean, output_size, reduction_factor
from thumbproxy.render.samples import pixel_samples
from thumbproxy.render.thumbnail import Tone, finish, grey_levels, measure_tone, read_renderable
from thumbproxy.render.warp import warp


@dataclass(frozen=True)
class ColorThumbnail:
    """A colour thumbnail and how its frames were lined up: "wcs", "registration" or "none"."""

    image: bytes
    alignment: str


@dataclass(frozen=True)
class _Channel:
    """What the composite needs of one frame once its full-resolution pixels are gone."""

    reduced: np.ndarray
    tone: Tone
    header: Mapping[str, Any]


def _channel(frame: Frame, factor: int, options: RenderOptions) -> _Channel:
    """Block-average the frame by factor and measure its tone."""
    reduced = block_mean(frame.data, factor)
    return _Channel(reduced, measure_tone(pixel_samples(frame.data), reduced, options), frame.header)


def _shared_orientation(headers: Sequence[Mapping[str, Any]], spectrum: bool) -> Orientation:
    """One orientation for every channel, as fits2image chooses it: from the first frame with
    a usable WCS, else the fallback flip."""
    usable = [header for header in headers if cd_matrix(header) is not None]
    return display_orientation(usable[0] if usable else headers[0], spectrum=spectrum)


def render_color_thumbnail(paths: Sequence[str | os.PathLike],
                           options: RenderOptions) -> ColorThumbnail:
    """A colour JPEG thumbnail of the red, visual and blue FITS frames at paths, in that order.

    The other frames are resampled onto the red frame's pixels, lined up by their WCS, else by
    registering the images, else centre on centre (logged as a warning), and cropped to the
    part all three cover. options.stretch "zscale" scales each channel as render_thumbnail
    scales a frame (options.median and percentile included); "lupton" makes an asinh
    composite that keeps star colours. Size, orientation, label and encoding are as for a
    single frame, with one orientation for all three. Raises RenderError when a file holds no
    readable image, OSError when one cannot be opened.
    """
    if len(paths) != 3:
        raise ValueError(f"a colour thumbnail takes 3 frames (red, visual, blue), not {len(paths)}")
    red = read_renderable(paths[0])
    size = output_size(red.data.shape, display_orientation(red.header, options.spectrum), options)
    # One block size for all three keeps their reduced pixels the same size on the sky.
    factor = reduction_factor(red.data.shape, size)
    channels = [_channel(red, factor, options)]
    # Frames are read one after another, so one full-resolution frame is in memory at a time.
    del red
    channels += [_channel(read_renderable(path), factor, options) for path in paths[1:]]

    alignment = align([channel.reduced for channel in channels],
                      [channel.header for channel in channels], factor)
    box = alignment.box
    aligned = [warp(channel.reduced, image_map, box)
               for channel, image_map in zip(channels, alignment.maps)]
    orientation = _shared_orientation([channel.header for channel in channels], options.spectrum)
    size = output_size((box.rows * factor, box.columns * factor), orientation, options)
    tones = [channel.tone for channel in channels]
    if options.stretch == "lupton":
        rgb = lupton_rgb(aligned, tones, factor, size)
    else:
        pixels_per_output_pixel = box.rows * box.columns * factor ** 2 / (size[0] * size[1])
        rgb = np.dstack([grey_levels(image, tone, size, pixels_per_output_pixel)
                         for image, tone in zip(aligned, tones)])
    return ColorThumbnail(finish(rgb, orientation, options), alignment.method)
