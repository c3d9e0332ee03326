"""Render the red, visual and blue frames of one field as an aligned colour JPEG thumbnail."""

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from thumbproxy.render.align import align
from thumbproxy.render.balance import balanced_tones
from thumbproxy.render.errors import RenderError
from thumbproxy.render.fitsread import FitsImage
from thumbproxy.render.lupton import lupton_rgb
from thumbproxy.render.options import RenderOptions
from thumbproxy.render.orient import Orientation, display_orientation, wcs_orientation
from thumbproxy.render.preview import read_reductions, thumbnail_factor
from thumbproxy.render.reduce import output_size
from thumbproxy.render.samples import PixelSamples
from thumbproxy.render.thumbnail import finish, grey_levels, measure_tone
from thumbproxy.render.warp import warp

# Reduced frames narrower than this may not overlap at all once lined up centre on centre.
MIN_COMPOSITE_SIDE = 2


@dataclass(frozen=True)
class ColorThumbnail:
    """A colour thumbnail and how its frames were lined up: "wcs", "registration" or "none"."""

    image: bytes
    alignment: str


@dataclass(frozen=True)
class _Channel:
    """What the composite needs of one frame once its full-resolution pixels are gone."""

    reduced: np.ndarray
    samples: PixelSamples
    header: Mapping[str, Any]


def _read_channel(path: str | os.PathLike[str], factor_of: Callable[[FitsImage], int]) -> tuple[_Channel, int]:
    """The frame at path block-averaged by the factor factor_of gives for its image, with its samples; and
    that factor. Read a chunk at a time, as a single frame's thumbnail is: never whole in memory."""
    [reduced], header = read_reductions(path, lambda image: [factor_of(image)])
    return _Channel(reduced.image, reduced.samples, header), reduced.factor


def _shared_orientation(headers: Sequence[Mapping[str, Any]], spectrum: bool) -> Orientation:
    """One orientation for every channel, as fits2image chooses it: from the first frame with
    a usable WCS, else the fallback flip."""
    usable = [header for header in headers if wcs_orientation(header) is not None]
    return display_orientation(usable[0] if usable else headers[0], spectrum=spectrum)


def color_thumbnail_from_files(paths: Sequence[str | os.PathLike[str]], options: RenderOptions) -> ColorThumbnail:
    """A colour JPEG thumbnail of the red, visual and blue FITS frames at paths, in that order.

    The other frames are resampled onto the red frame's pixels, lined up by their WCS, else by
    registering the images, else centre on centre (logged as a warning), and cropped to the
    part all three cover. options.stretch "zscale" draws each channel with thumbnail_from_file's
    curve (options.median and percentile included), on one scale measured from each channel's
    sky in units of its noise (balanced_tones), so the sky is neutral; "lupton" makes an asinh
    composite that keeps star colours. options.weights multiply each channel's light above its
    black point before either stretch. Size, orientation, label and encoding are as for a
    single frame, with one orientation for all three. Raises RenderError when a file holds no
    readable image, OSError when one cannot be opened.
    """
    if len(paths) != 3:
        raise ValueError(f"a colour thumbnail takes 3 frames (red, visual, blue), not {len(paths)}")
    red, factor = _read_channel(paths[0], partial(thumbnail_factor, options=options))
    # One block size for all three keeps their reduced pixels the same size on the sky.
    channels = [red] + [_read_channel(path, lambda image: factor)[0] for path in paths[1:]]
    for path, channel in zip(paths, channels):
        rows, columns = channel.reduced.shape
        if min(rows, columns) < MIN_COMPOSITE_SIDE:
            raise RenderError(
                Path(path).name,
                f"too small for a colour composite ({columns} x {rows} pixels "
                f"once reduced; at least {MIN_COMPOSITE_SIDE} x {MIN_COMPOSITE_SIDE})",
            )

    if options.stretch == "lupton":
        tones = [measure_tone(channel.samples, channel.reduced, options) for channel in channels]
    else:
        tones = balanced_tones(
            [channel.samples for channel in channels], [channel.reduced for channel in channels], options
        )
    alignment = align([channel.reduced for channel in channels], [channel.header for channel in channels], factor)
    box = alignment.box
    aligned = [warp(channel.reduced, image_map, box) for channel, image_map in zip(channels, alignment.maps)]
    orientation = _shared_orientation([channel.header for channel in channels], options.spectrum)
    size = output_size((box.rows * factor, box.columns * factor), orientation, options)
    if options.stretch == "lupton":
        rgb = lupton_rgb(aligned, tones, factor, size, options.weights)
    else:
        pixels_per_output_pixel = box.rows * box.columns * factor**2 / (size[0] * size[1])
        rgb = np.dstack(
            [grey_levels(image, tone, size, pixels_per_output_pixel) for image, tone in zip(aligned, tones)]
        )
    return ColorThumbnail(finish(rgb, orientation, options), alignment.method)
