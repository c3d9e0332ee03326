"""A 1-D spectrum: its flux per pixel, and what its header says the pixels and the flux are."""

import warnings
from dataclasses import dataclass

import numpy as np
from astropy import units as u
from astropy.io import fits
from astropy.wcs import WCS

from thumbproxy.render.label import single_line

PIXEL = "Pixel"
FLUX = "Flux"
# Values beyond this are too large to plot: their differences overflow, and so would round steps between them.
LARGEST_VALUE = 1e300
# An axis's name by the physical type of its unit (astropy.units).
NAMES = (
    ("length", "Wavelength"),
    ("frequency", "Frequency"),
    ("energy", "Energy"),
    ("speed", "Velocity"),
    ("wavenumber", "Wavenumber"),
)
# A linear axis without a unit, as IRAF writes them, is almost always a wavelength.
WITHOUT_UNIT = "Wavelength"
# An axis in any other unit, or one astropy does not know.
OTHER = "Coordinate"


@dataclass(frozen=True)
class Spectrum:
    """The flux of each pixel of a 1-D spectrum (NaN or inf where it has none), and its HDU's own header."""

    flux: np.ndarray
    header: fits.Header


@dataclass(frozen=True)
class Axis:
    """What a plot's axis shows: a value per point, the quantity's name and its unit (empty: none)."""

    values: np.ndarray
    name: str
    unit: str = ""


def spectral_axis(spectrum: Spectrum) -> Axis:
    """The world coordinate of each pixel from the header's WCS, in the unit its CUNIT1 names when astropy knows
    it (wavelengths in the header's Angstrom, not the metres astropy converts them to); the pixel index (from 0)
    when the header defines no coordinate, or one astropy cannot use or that does not run one way."""
    pixels = np.arange(spectrum.flux.size, dtype=np.float64)
    index = Axis(pixels, PIXEL)
    try:
        with warnings.catch_warnings():
            # Headers are "fixed" (units, dates) and units deprecated all the time; none of it matters here.
            warnings.simplefilter("ignore")
            wcs = WCS(spectrum.header, naxis=[1])
            values = np.asarray(wcs.pixel_to_world_values(pixels), dtype=np.float64)
            unit = u.Unit(wcs.world_axis_units[0] or u.dimensionless_unscaled, parse_strict="silent")
    except Exception:
        # astropy reports a WCS it cannot use in many ways (its own errors, ValueError, KeyError, ...).
        return index
    steps = np.diff(values)
    # Without WCS cards astropy's coordinate is the FITS pixel number, which says no more than the index; and a
    # plot needs finite values that run one way.
    if (
        np.array_equal(values, pixels + 1)
        or not np.all(np.abs(values) <= LARGEST_VALUE)
        or not (np.all(steps > 0) or np.all(steps < 0))
    ):
        return index
    if isinstance(unit, u.UnrecognizedUnit):
        return Axis(values, OTHER, unit.to_string())
    shown = _header_unit(spectrum.header, unit)
    return Axis(unit.to(shown, values), _name(shown), "" if shown == u.dimensionless_unscaled else shown.to_string())


def _header_unit(header: fits.Header, unit: u.UnitBase) -> u.UnitBase:
    """The unit CUNIT1 names, when astropy reads it and it measures what unit does; else unit."""
    written = header.get("CUNIT1")
    if not isinstance(written, str):
        return unit
    named = u.Unit(written.strip(), parse_strict="silent")
    return named if not isinstance(named, u.UnrecognizedUnit) and named.is_equivalent(unit) else unit


def _name(unit: u.UnitBase) -> str:
    """The quantity an axis in this unit shows."""
    if unit == u.dimensionless_unscaled:
        return WITHOUT_UNIT
    kind = unit.physical_type
    return next((name for physical, name in NAMES if kind == physical), OTHER)


def flux_unit(spectrum: Spectrum) -> str:
    """The flux's unit as BUNIT writes it, on one line; empty without one."""
    written = spectrum.header.get("BUNIT")
    return single_line(written) if isinstance(written, str) else ""
