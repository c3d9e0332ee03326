"""Find the image a user means in a FITS file and read it into memory."""

import os
from collections import ChainMap
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from astropy.io import fits

SCIENCE_EXTENSION = "SCI"

HDU = fits.PrimaryHDU | fits.hdu.base.ExtensionHDU


class UnreadableFrame(Exception):
    """The file holds no image this module can read."""


@dataclass(frozen=True)
class Frame:
    """A 2-D image and the keywords describing it."""

    data: np.ndarray
    # The image HDU's own cards, falling back to the primary header's.
    header: Mapping[str, Any]


def _holds_image(hdu: HDU) -> bool:
    """Whether hdu declares at least two non-empty axes; decided from its header alone."""
    shape = getattr(hdu, "shape", ()) if hdu.is_image else ()
    return len(shape) >= 2 and all(shape)


def pick_image_hdu(hdul: fits.HDUList) -> HDU:
    """The SCI extension when it holds an image, else the first HDU that does."""
    try:
        science = hdul[SCIENCE_EXTENSION]
    except KeyError:
        science = None
    if science is not None and _holds_image(science):
        return science
    for hdu in hdul:
        if _holds_image(hdu):
            return hdu
    raise UnreadableFrame("no HDU holds a 2-D image")


def _first_plane(hdu: HDU) -> np.ndarray:
    """The image of hdu, or the first plane of a cube without reading the other planes."""
    extra_axes = len(hdu.shape) - 2
    if extra_axes:
        return hdu.section[(0,) * extra_axes]
    return hdu.data


def read_frame(path: str | os.PathLike) -> Frame:
    """Read the image a user expects from the FITS file at path, closing the file before returning.

    Raises UnreadableFrame for anything that is not a readable FITS image: an empty,
    truncated or non-FITS file, a table-only file, or corrupt compressed tiles. A path
    that cannot be opened raises OSError (FileNotFoundError, ...) as open() does.
    """
    # Opened here so a missing or unreadable path raises as itself: it says nothing about the frame.
    with open(path, "rb") as file:
        try:
            # memmap off: the pixels are read once and nothing refers to the file afterwards.
            with fits.open(file, memmap=False) as hdul:
                hdu = pick_image_hdu(hdul)
                data = _first_plane(hdu)
                primary = hdul[0]
                header = hdu.header if hdu is primary else ChainMap(hdu.header, primary.header)
                return Frame(data=data, header=header)
        except UnreadableFrame:
            raise
        except Exception as err:
            # astropy reports damage as OSError, ValueError, TypeError or its own decompression
            # error depending on where the damage lies; to a caller they all mean the same.
            raise UnreadableFrame(f"{type(err).__name__}: {err}") from err
