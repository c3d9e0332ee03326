"""Turn a frame so north is up and east is left, to the nearest quarter turn.

Conventions, as in fits2image 1.1: array row 0 is drawn at the top (as Image.fromarray
shows it), so up on screen is decreasing row; the CD matrix maps a step in
(column, row) to a step in (east, north).
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from astropy.io.fits.verify import VerifyError

CD_KEYWORDS = ("CD1_1", "CD1_2", "CD2_1", "CD2_2")
# Every header card display_orientation reads.
ORIENTATION_KEYWORDS = ("OBSTYPE", *CD_KEYWORDS)
# Below this the CD matrix is not invertible in any useful sense.
MIN_DETERMINANT = 1e-20
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


def north_up_east_left(cd: np.ndarray) -> Orientation:
    """The quarter-turn orientation that puts north up and east left for this CD matrix."""
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
    """How to turn the frame for display: by its WCS, or a plain vertical flip for spectra
    and frames without a usable CD matrix."""
    if spectrum or header.get("OBSTYPE") in NON_IMAGING_OBSTYPES:
        return FLIP_VERTICAL
    cd = cd_matrix(header)
    return FLIP_VERTICAL if cd is None else north_up_east_left(cd)


def orientation_cards(header: Mapping[str, Any]) -> dict[str, str | int | float | bool]:
    """The cards of header that display_orientation reads, as plain values a JSON document keeps.

    A value of any other type (astropy's Undefined, a complex number) is kept as its text,
    which display_orientation treats alike: not a number, so no usable CD matrix.
    """
    return {
        keyword: value if isinstance(value, (str, int, float, bool)) else str(value)
        for keyword in ORIENTATION_KEYWORDS
        if (value := _readable(header, keyword)) is not None
    }


def _readable(header: Mapping[str, Any], keyword: str) -> Any:
    """The value of the header's card; None when it is missing or cannot be parsed (such as ``CD1_1 = NAN``)."""
    try:
        return header.get(keyword)
    except VerifyError:
        return None


def orient(image: np.ndarray, orientation: Orientation) -> np.ndarray:
    """Apply orientation to an image laid out row 0 at the top; returns a contiguous array."""
    if orientation.mirror:
        image = np.fliplr(image)
    return np.ascontiguousarray(np.rot90(image, orientation.quarter_turns))
