"""Turn a frame so north is up and east is left, to the nearest quarter turn.

Conventions, as in fits2image 1.1: array row 0 is drawn at the top (as Image.fromarray
shows it), so up on screen is decreasing row; the sky matrix (the CD matrix, for a header
that writes one) maps a step in (column, row) to a step in (east, north).
"""

import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from astropy.io.fits.verify import VerifyError

from thumbproxy.render.celestial import celestial_wcs

CD_KEYWORDS = ("CD1_1", "CD1_2", "CD2_1", "CD2_2")
# The image's two axes: the primary WCS of these is what turns the frame.
_AXES = (1, 2)
_TYPE_KEYWORDS = tuple(f"CTYPE{axis}" for axis in _AXES)
_UNIT_KEYWORDS = tuple(f"CUNIT{axis}" for axis in _AXES)
# Projections such as ZPN, the conics and Bonne cannot be set up without their first parameters; the later
# ones only reshape the projection away from the reference point, which the turn does not depend on.
_PROJECTION_PARAMETERS = 4
# The cards astropy reads the pixel-to-sky matrix from, written as CD, as PC and CDELT, or as CDELT and CROTA.
_WCS_KEYWORDS = (
    *_TYPE_KEYWORDS,
    *_UNIT_KEYWORDS,
    *CD_KEYWORDS,
    *(f"PC{row}_{column}" for row in _AXES for column in _AXES),
    *(f"CDELT{axis}" for axis in _AXES),
    *(f"CROTA{axis}" for axis in _AXES),
    *(f"PV{axis}_{number}" for axis in _AXES for number in range(_PROJECTION_PARAMETERS)),
)
# Every header card display_orientation reads.
ORIENTATION_KEYWORDS = ("OBSTYPE", *_WCS_KEYWORDS)
# Below this (in square degrees) the sky matrix is not invertible in any useful sense.
MIN_DETERMINANT = 1e-20
# Orientations remembered by their header's cards: reading a WCS with astropy takes about a millisecond.
_REMEMBERED = 1024
# What a card that cannot be parsed (such as ``PC1_1 = NAN``) reads as: kept, so no default stands in for it.
UNREADABLE = "(unreadable)"
# These carry only a prototype WCS: turning them "north up" puts them on their side.
NON_IMAGING_OBSTYPES = ("SPECTRUM", "ARC", "LAMPFLAT")


@dataclass(frozen=True)
class Orientation:
    """Mirror left-right if mirror, then turn counter-clockwise by quarter_turns * 90 degrees."""

    mirror: bool
    quarter_turns: int

    @property
    def swaps_axes(self) -> bool:
        """Whether the oriented image has the width and height swapped."""
        return self.quarter_turns % 2 == 1


# Without a usable WCS, the image is flipped top to bottom so FITS row 1 ends up at the
# bottom, as FITS viewers show it: a mirror followed by a half turn is exactly that.
FLIP_VERTICAL = Orientation(mirror=True, quarter_turns=2)


def cd_matrix(header: Mapping[str, Any]) -> np.ndarray | None:
    """The header's CD matrix, or None when it is missing, unparsable, not numeric or singular."""
    try:
        cd = np.array([float(_readable(header, key)) for key in CD_KEYWORDS]).reshape(2, 2)
    except (TypeError, ValueError):
        return None
    if not np.all(np.isfinite(cd)) or abs(np.linalg.det(cd)) < MIN_DETERMINANT:
        return None
    return cd


def sky_matrix(header: Mapping[str, Any]) -> np.ndarray | None:
    """The header's pixel-to-sky matrix as astropy reads its celestial WCS (from CD, PC and CDELT, or CDELT
    and CROTA, in any units, either axis first): rows (east, north) per step in (column, row), in degrees.

    A CD matrix with no axis types at all is read as RA and Dec, as fits2image reads any CD matrix. None when
    there is no usable one: axes that are not a celestial pair, a card that is not a number, a CD matrix
    that is partial, unreadable or singular (astropy would repair it into an arbitrary one), a matrix astropy
    refuses or that is singular.
    """
    cards = orientation_cards(header)
    if not any(keyword in cards for keyword in _TYPE_KEYWORDS):
        return cd_matrix(cards)
    wcs_cards = {keyword: value for keyword, value in cards.items() if keyword in _WCS_KEYWORDS}
    # Axis types and units are text; astropy would take any other card that is not a number for absent.
    text = (*_TYPE_KEYWORDS, *_UNIT_KEYWORDS)
    if not all(keyword in text or _is_number(value) for keyword, value in wcs_cards.items()):
        return None
    if any(keyword in cards for keyword in CD_KEYWORDS) and cd_matrix(cards) is None:
        return None
    celestial = celestial_wcs(wcs_cards)
    if celestial is None:
        return None
    # Rows by world axis, in the header's order: longitude (east) first, whichever axis carries it.
    matrix: np.ndarray = celestial.pixel_scale_matrix[[celestial.wcs.lng, celestial.wcs.lat]]
    return matrix if abs(np.linalg.det(matrix)) >= MIN_DETERMINANT else None


def _is_number(value: Any) -> bool:
    """Whether a card's value is a finite real number (not a truth value, which FITS writes as T or F)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def north_up_east_left(cd: np.ndarray) -> Orientation:
    """The quarter-turn orientation that puts north up and east left for this CD (or sky) matrix."""
    inverse = np.linalg.inv(cd)
    # Pixel steps toward north and east, with y flipped into screen coordinates (up is +y).
    north_x, north_y = inverse[0, 1], -inverse[1, 1]
    east_x, east_y = inverse[0, 0], -inverse[1, 0]
    # North-up east-left has north x east pointing out of the screen; otherwise mirror.
    mirror = bool(north_x * east_y - north_y * east_x < 0)
    if mirror:
        north_x = -north_x
    # Position angle of north counter-clockwise from up; k counter-clockwise turns bring it to 0.
    angle = np.degrees(np.arctan2(-north_x, north_y))
    return Orientation(mirror, int(np.rint(-angle / 90.0)) % 4)


def display_orientation(header: Mapping[str, Any], spectrum: bool = False) -> Orientation:
    """How to turn the frame for display: by its celestial WCS, or a plain vertical flip for spectra
    (options.spectrum, or by OBSTYPE) and frames without a usable WCS."""
    return as_drawn(header_orientation(header), spectrum)


def as_drawn(orientation: Orientation, spectrum: bool) -> Orientation:
    """How a frame whose header says to turn it by orientation is drawn: as a spectrum (options.spectrum), flipped."""
    return FLIP_VERTICAL if spectrum else orientation


def header_orientation(header: Mapping[str, Any]) -> Orientation:
    """How the header says to turn the frame: as display_orientation, whatever the options."""
    cards = orientation_cards(header)
    if cards.get("OBSTYPE") in NON_IMAGING_OBSTYPES:
        return FLIP_VERTICAL
    turn = _wcs_orientation(tuple(cards.items()))
    return FLIP_VERTICAL if turn is None else turn


def wcs_orientation(header: Mapping[str, Any]) -> Orientation | None:
    """The turn that puts north up and east left by the header's celestial WCS; None when it has no usable one
    (see sky_matrix)."""
    return _wcs_orientation(tuple(orientation_cards(header).items()))


@lru_cache(maxsize=_REMEMBERED)
def _wcs_orientation(cards: tuple[tuple[str, str | int | float | bool], ...]) -> Orientation | None:
    """wcs_orientation of the header of these cards, read once for each set of cards."""
    matrix = sky_matrix(dict(cards))
    return None if matrix is None else north_up_east_left(matrix)


def orientation_cards(header: Mapping[str, Any]) -> dict[str, str | int | float | bool]:
    """The cards of header that display_orientation reads, as plain values a JSON document keeps.

    A value of any other type (astropy's Undefined, a complex number) is kept as its text, and
    a card that cannot be parsed as UNREADABLE, which display_orientation treats alike: not a
    number, so no usable WCS.
    """
    return {
        keyword: value if isinstance(value, (str, int, float, bool)) else str(value)
        for keyword in ORIENTATION_KEYWORDS
        if (value := _readable(header, keyword)) is not None
    }


def _readable(header: Mapping[str, Any], keyword: str) -> Any:
    """The value of the header's card; None when it is missing, UNREADABLE when it cannot be parsed."""
    try:
        return header.get(keyword)
    except VerifyError:
        return UNREADABLE


def orient(image: np.ndarray, orientation: Orientation) -> np.ndarray:
    """Apply orientation to an image laid out row 0 at the top; returns a contiguous array."""
    if orientation.mirror:
        image = np.fliplr(image)
    return np.ascontiguousarray(np.rot90(image, orientation.quarter_turns))
