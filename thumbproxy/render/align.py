"""Line up the frames of a colour composite: where the first frame's pixels fall in the others.

From the frames' celestial WCS when every frame carries one, else by registering the images,
else the frames are taken to share their centres. Alignment works on block-reduced images:
the maps it returns act on those, and a failure to align only ever means less alignment.
"""

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from astropy.wcs import WCS

from thumbproxy.render.celestial import celestial_wcs
from thumbproxy.render.register import phase_correlation
from thumbproxy.render.warp import Affine, Box, overlap

log = logging.getLogger(__name__)

WCS_ALIGNMENT = "wcs"
REGISTRATION = "registration"
NO_ALIGNMENT = "none"
# Cards that describe no coordinate and that astropy's WCS would only trip over.
COMMENTARY = ("", "COMMENT", "HISTORY")
# The pipeline's astrometry status: 0 when the solution succeeded. A frame without the card
# is taken at its word.
WCS_ERROR = "WCSERR"
# A grid of GRID x GRID points across the first frame is enough to fit a map that, for
# frames of one pointing, is a translation plus perhaps a small turn or change of scale.
GRID = 5
# Frames of one field differ by a turn, a shift and at most a change of pixel scale (binning):
# a map that stretches one way more than MAX_STRETCH times the other, or scales by more than
# MAX_SCALE either way, comes from a WCS astropy had to repair (a singular CD matrix, say).
MAX_STRETCH = 1.1
MAX_SCALE = 8.0


@dataclass(frozen=True)
class Alignment:
    """How the frames line up, on the grid of the first frame's reduced image."""

    # WCS_ALIGNMENT, REGISTRATION or NO_ALIGNMENT.
    method: str
    # maps[i] takes the first reduced image's (x, y) to the i-th one's.
    maps: tuple[Affine, ...]
    # The part of the first reduced image every frame covers.
    box: Box


def _celestial_wcs(header: Mapping[str, Any]) -> WCS | None:
    """The header's celestial WCS, or None when it has none astropy can use or its astrometry failed."""
    if header.get(WCS_ERROR, 0) not in (0, "0"):
        return None
    return celestial_wcs({key: header[key] for key in header if key not in COMMENTARY})


def _plausible(image_map: Affine) -> bool:
    """Whether the map is a turn (mirrored or not) and a moderate change of scale."""
    longest, shortest = np.linalg.svd(image_map.matrix, compute_uv=False)
    return bool(
        shortest > 0.0 and longest <= MAX_STRETCH * shortest and shortest >= 1.0 / MAX_SCALE and longest <= MAX_SCALE
    )


def _wcs_maps(
    shapes: Sequence[tuple[int, int]], headers: Sequence[Mapping[str, Any]], factor: int
) -> tuple[Affine, ...] | None:
    """Affine maps between the reduced images, fitted to where the WCSs put a grid of points."""
    systems = [_celestial_wcs(header) for header in headers]
    if any(system is None for system in systems):
        return None
    rows, columns = shapes[0]
    # A 2-D grid, then its points flattened.
    grid_x: npt.NDArray[np.float64]
    grid_y: npt.NDArray[np.float64]
    grid_x, grid_y = np.meshgrid(np.linspace(0, columns - 1, GRID), np.linspace(0, rows - 1, GRID))
    grid_x, grid_y = grid_x.ravel(), grid_y.ravel()
    # A reduced pixel u covers full pixels factor u .. factor u + factor - 1.
    centre = (factor - 1) / 2.0
    # No system is None past the check above.
    sky = systems[0].pixel_to_world_values(grid_x * factor + centre, grid_y * factor + centre)  # type: ignore[union-attr]
    design = np.column_stack([grid_x, grid_y, np.ones_like(grid_x)])
    maps = []
    for system in systems:
        with np.errstate(invalid="ignore"):
            x, y = system.world_to_pixel_values(*sky)  # type: ignore[union-attr]  # ruled out above
        target = (np.column_stack([x, y]) - centre) / factor
        if not np.all(np.isfinite(target)):
            return None
        coefficients, *_ = np.linalg.lstsq(design, target, rcond=None)
        fitted = Affine(coefficients[:2].T, coefficients[2])
        if not _plausible(fitted):
            return None
        maps.append(fitted)
    return tuple(maps)


def _registered_maps(images: Sequence[np.ndarray]) -> tuple[Affine, ...] | None:
    """Translations measured by phase correlation against the first image."""
    maps = [Affine.translation(0.0, 0.0)]
    for image in images[1:]:
        shift = phase_correlation(images[0], image)
        if shift is None:
            return None
        maps.append(Affine.translation(*shift))
    return tuple(maps)


def _centred_maps(shapes: Sequence[tuple[int, int]]) -> tuple[Affine, ...]:
    """Translations that put every image's centre on the first one's."""
    rows, columns = shapes[0]
    return tuple(
        Affine.translation((other_columns - columns) / 2.0, (other_rows - rows) / 2.0)
        for other_rows, other_columns in shapes
    )


def align(images: Sequence[np.ndarray], headers: Sequence[Mapping[str, Any]], factor: int) -> Alignment:
    """How the reduced images (block means over factor x factor pixels) of frames with these
    headers line up with the first; never raises for frames that do not line up."""
    shapes = [image.shape for image in images]
    finders: list[tuple[str, Callable[[], tuple[Affine, ...] | None]]] = [
        (WCS_ALIGNMENT, lambda: _wcs_maps(shapes, headers, factor)),
        (REGISTRATION, lambda: _registered_maps(images)),
    ]
    for method, find in finders:
        try:
            maps = find()
        except Exception as err:
            # A header wcslib rejects, or a fit that does not converge, is one way less to align.
            log.debug("colour alignment by %s failed: %s", method, err)
            continue
        box = None if maps is None else overlap(shapes, maps)
        if box is not None:
            return Alignment(method, maps, box)  # type: ignore[arg-type]  # box is None when maps is
        log.debug("no colour alignment by %s", method)
    log.warning("colour frames could not be aligned; they are stacked centre on centre")
    maps = _centred_maps(shapes)
    box = overlap(shapes, maps)
    assert box is not None  # Centred images always overlap.
    return Alignment(NO_ALIGNMENT, maps, box)
