"""A frame's celestial WCS as astropy reads it from header cards, or nothing when there is none to trust."""

import logging
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

log = logging.getLogger(__name__)


def celestial_wcs(cards: Mapping[str, Any]) -> WCS | None:
    """The celestial part of the WCS astropy reads from these cards (its axes in the cards' order), or None
    when there is none it can use: no pair of celestial axes, cards astropy refuses, or a pixel-to-sky
    matrix that is not finite or is singular. Never raises, never warns."""
    try:
        with warnings.catch_warnings():
            # Headers are "fixed" (dates, units) and quirky all the time; none of it is the caller's to hear.
            warnings.simplefilter("ignore")
            celestial = WCS(fits.Header(list(cards.items()))).celestial
            matrix = celestial.pixel_scale_matrix
    except Exception as err:
        log.debug("unusable WCS: %s", err)
        return None
    if celestial.naxis != 2 or not celestial.has_celestial:
        return None
    if not np.all(np.isfinite(matrix)) or np.linalg.det(matrix) == 0.0:
        return None
    return celestial
