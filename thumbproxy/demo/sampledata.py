"""Deterministic synthetic FITS frames shaped like the ones an LCO science archive serves.

Every generator writes one file and takes a size so tests can make small frames quickly;
the same arguments always produce the same pixels.
"""

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
from astropy.io import fits

PathLike = str | os.PathLike[str]

# 0.4 m telescope with an SBIG camera: the instrument the demo basenames name.
PIXEL_SCALE_DEG = 0.571 / 3600.0
SATURATE = 60000.0
# Stars per pixel, and the total flux (counts) of the brightest.
STAR_DENSITY = 1.0 / 8000.0
BRIGHTEST_FLUX = 2e7
# A field far from the Milky Way: a tenth as many stars.
SPARSE_STAR_DENSITY = STAR_DENSITY / 10.0
RAW_SATURATE = 65535
DEMO_DAY = "20190321"

# How strongly a star's colour index brightens (positive) or dims it in each filter.
FILTER_COLOUR_RESPONSE = {"rp": 0.6, "V": 0.0, "B": -0.6}


@dataclass(frozen=True)
class _Stars:
    """Positions (pixels), total fluxes and colour indices of one synthetic field."""

    x: np.ndarray
    y: np.ndarray
    flux: np.ndarray
    colour: np.ndarray


def _field_stars(shape: tuple[int, int], seed: int, density: float = STAR_DENSITY) -> _Stars:
    """Stars of a field, `density` per pixel: drawn from the seed alone, so frames of one field share them."""
    rng = np.random.default_rng(seed)
    ny, nx = shape
    count = max(1, int(nx * ny * density))
    # A Pareto tail gives many faint stars; one in a hundred (at least two) is bright
    # enough to saturate its core over a few pixels.
    flux = np.minimum(400.0 * (1.0 + rng.pareto(1.2, count)), BRIGHTEST_FLUX)
    saturated = min(count, max(2, count // 100))
    flux[:saturated] = rng.uniform(0.1 * BRIGHTEST_FLUX, BRIGHTEST_FLUX, saturated)
    return _Stars(
        x=rng.uniform(0, nx, count),
        y=rng.uniform(0, ny, count),
        flux=flux,
        colour=rng.uniform(-1.0, 1.0, count),
    )


def _add_stars(
    image: np.ndarray, x: np.ndarray, y: np.ndarray, flux: np.ndarray, sigma: float = 1.5, radius: int = 8
) -> None:
    """Add Gaussian stars in place, each as a small stamp rather than a full-frame profile."""
    offsets = np.arange(-radius, radius + 1)
    column0 = np.rint(x).astype(np.intp)
    row0 = np.rint(y).astype(np.intp)
    columns = column0[:, None, None] + offsets[None, None, :]
    rows = row0[:, None, None] + offsets[None, :, None]
    peak = (flux / (2.0 * math.pi * sigma**2))[:, None, None]
    stamps = peak * np.exp(-((columns - x[:, None, None]) ** 2 + (rows - y[:, None, None]) ** 2) / (2.0 * sigma**2))
    columns, rows = np.broadcast_arrays(columns, rows)
    inside = (rows >= 0) & (rows < image.shape[0]) & (columns >= 0) & (columns < image.shape[1])
    # add.at because stamps of neighbouring stars overlap.
    np.add.at(image, (rows[inside], columns[inside]), stamps[inside].astype(image.dtype))


def _add_cosmic_rays(image: np.ndarray, rng: np.random.Generator, count: int) -> None:
    """Add short, sharp streaks that are not star-shaped, as cosmic-ray hits are."""
    ny, nx = image.shape
    rows = rng.integers(0, ny, count)
    columns = rng.integers(0, nx - 2, count)
    energy = rng.uniform(3000.0, 20000.0, count).astype(image.dtype)
    for step in range(3):
        image[rows, columns + step] += energy / (step + 1)


def _add_hits(image: np.ndarray, rng: np.random.Generator, count: int) -> None:
    """Add particle hits of 1 to 3 pixels in a line along a row, a column or a diagonal, the first pixel
    taking most of the charge: cosmic rays and, one pixel long, hot pixels."""
    ny, nx = image.shape
    rows = rng.integers(2, ny - 2, count)
    columns = rng.integers(2, nx - 2, count)
    lengths = rng.integers(1, 4, count)
    steps = np.array([(0, 1), (1, 0), (1, 1), (1, -1)])[rng.integers(0, 4, count)]
    energy = rng.uniform(1000.0, 20000.0, count)
    for pixel in range(3):
        on = lengths > pixel
        # add.at: hits may cross.
        np.add.at(
            image,
            (rows[on] + pixel * steps[on, 0], columns[on] + pixel * steps[on, 1]),
            (energy[on] / (pixel + 1)).astype(image.dtype),
        )


def _sky(shape: tuple[int, int], rng: np.random.Generator, level: float) -> np.ndarray:
    """A sky background with a gentle gradient and Gaussian noise, as float32."""
    ny, nx = shape
    sky = rng.standard_normal(shape, dtype=np.float32)
    sky *= np.float32(math.sqrt(level))
    sky += np.linspace(level, 1.02 * level, nx, dtype=np.float32)[None, :]
    sky += np.linspace(0.0, 0.01 * level, ny, dtype=np.float32)[:, None]
    return sky


def _celestial_wcs(
    shape: tuple[int, int], ra: float, dec: float, north_angle: float, mirrored: bool, scale: float = PIXEL_SCALE_DEG
) -> dict[str, float | str]:
    """TAN WCS cards with north rotated north_angle degrees from +y, east left unless mirrored."""
    theta = math.radians(north_angle)
    parity = 1.0 if mirrored else -1.0
    cos, sin = math.cos(theta), math.sin(theta)
    return {
        "CTYPE1": "RA---TAN",
        "CTYPE2": "DEC--TAN",
        "CRPIX1": (shape[1] + 1) / 2.0,
        "CRPIX2": (shape[0] + 1) / 2.0,
        "CRVAL1": ra,
        "CRVAL2": dec,
        "CUNIT1": "deg",
        "CUNIT2": "deg",
        "CD1_1": parity * scale * cos,
        "CD1_2": scale * sin,
        "CD2_1": -parity * scale * sin,
        "CD2_2": scale * cos,
    }


def _observation_cards(
    obstype: str, filter_name: str, request_id: int, rlevel: int, frame_number: int, instrument: str = "kb82"
) -> dict[str, float | int | str]:
    """The descriptive keywords every archive frame carries."""
    return {
        "OBSTYPE": obstype,
        "FILTER": filter_name,
        "REQNUM": request_id,
        "RLEVEL": rlevel,
        "SITEID": "ogg",
        "TELID": "0m4b",
        "INSTRUME": instrument,
        "OBJECT": "synthetic field",
        "DATE-OBS": f"2019-03-21T08:{frame_number % 60:02d}:00.000",
        "DAY-OBS": DEMO_DAY,
        "EXPTIME": 60.0,
        "FRAMENUM": frame_number,
    }


def _image_hdu(
    data: np.ndarray, header: fits.Header, compression: str | None, name: str | None
) -> fits.ImageHDU | fits.CompImageHDU:
    """An image extension, tile-compressed when a compression type is given."""
    if compression is None:
        return fits.ImageHDU(data, header, name=name)
    # A fixed dither seed keeps quantised float files byte-for-byte reproducible.
    return fits.CompImageHDU(data, header, name=name, compression_type=compression, dither_seed=1)


def _write(path: PathLike, primary: fits.PrimaryHDU, *extensions: fits.ImageHDU | fits.CompImageHDU) -> Path:
    """Write the HDUs to path, replacing any file already there."""
    fits.HDUList([primary, *extensions]).writeto(path, overwrite=True)
    return Path(path)


def star_field(
    path: PathLike,
    size: int = 4096,
    seed: int = 404,
    north_angle: float = 30.0,
    filter_name: str = "rp",
    request_id: int = 1766512,
    *,
    height: int | None = None,
    dx: float = 0.0,
    dy: float = 0.0,
    mirrored: bool = False,
    ra: float = 150.0,
    dec: float = 2.2,
    compression: str | None = "RICE_1",
    frame_number: int = 273,
) -> Path:
    """Write a reduced (RLEVEL 91) float32 star field into extension SCI behind an empty primary.

    The field is size x height pixels (square by default): sky gradient, Gaussian noise,
    stars flat-topped at SATURATE, a few cosmic rays, and a TAN WCS with north rotated
    north_angle degrees from up. Stars depend only on seed and move by (dx, dy) pixels, so
    frames of one field in several filters line up to within the offsets; noise also
    depends on the filter. compression is a FITS tile compression type or None.
    """
    shape = (height or size, size)
    stars = _field_stars(shape, seed)
    noise_seed = [seed, sum(map(ord, filter_name))]
    rng = np.random.default_rng(noise_seed)
    image = _sky(shape, rng, level=1000.0)
    flux = stars.flux * np.exp(FILTER_COLOUR_RESPONSE.get(filter_name, 0.0) * stars.colour)
    _add_stars(image, stars.x + dx, stars.y + dy, flux)
    np.minimum(image, np.float32(SATURATE), out=image)
    _add_cosmic_rays(image, rng, count=max(1, shape[0] * shape[1] // 500_000))

    header = fits.Header()
    header.update(_observation_cards("EXPOSE", filter_name, request_id, 91, frame_number))
    wcs = _celestial_wcs(shape, ra, dec, north_angle, mirrored)
    # The pointing moved with the stars: the same sky sits (dx, dy) pixels further on.
    wcs["CRPIX1"] += dx  # type: ignore[operator]  # CRPIXn are floats
    wcs["CRPIX2"] += dy  # type: ignore[operator]
    header.update(wcs)
    header["SATURATE"] = SATURATE
    return _write(path, fits.PrimaryHDU(), _image_hdu(image, header, compression, "SCI"))


def cosmic_ray_field(
    path: PathLike, size: int = 2048, hits: int = 4000, seed: int = 7, *, compression: str | None = "RICE_1"
) -> Path:
    """Write a reduced float32 field of a few stars on a dark sky, as star_field lays it out, struck by `hits`
    particle hits of 1 to 3 pixels, as a long exposure collects them.

    The stars depend only on seed and size, so frames differing only in hits line up pixel for pixel.
    """
    shape = (size, size)
    stars = _field_stars(shape, seed, SPARSE_STAR_DENSITY)
    image = _sky(shape, np.random.default_rng([seed, 1]), level=100.0)
    _add_stars(image, stars.x, stars.y, stars.flux)
    np.minimum(image, np.float32(SATURATE), out=image)
    _add_hits(image, np.random.default_rng([seed, 2]), hits)

    header = fits.Header()
    header.update(_observation_cards("EXPOSE", "rp", 1766540, 91, 300))
    header.update(_celestial_wcs(shape, 150.0, 2.2, north_angle=0.0, mirrored=False))
    header["SATURATE"] = SATURATE
    return _write(path, fits.PrimaryHDU(), _image_hdu(image, header, compression, "SCI"))


def raw_frame(
    path: PathLike,
    size: int = 2048,
    seed: int = 82,
    *,
    height: int | None = None,
    rough_wcs: bool = True,
    header_on_primary: bool = False,
    compression: str | None = "RICE_1",
    frame_number: int = 273,
) -> Path:
    """Write a raw (RLEVEL 0) frame: 16-bit unsigned counts stored as int16 with BZERO 32768.

    A bias level, sky and stars, with a north-up pointing WCS when rough_wcs is set.
    With header_on_primary the descriptive header (WCS included) sits on an empty primary
    and the pixels in a bare extension, as multi-amplifier raw files are laid out;
    otherwise the pixels go in the primary (or, compressed, in the first extension).
    """
    shape = (height or size, size)
    rng = np.random.default_rng(seed)
    image = _sky(shape, rng, level=300.0)
    stars = _field_stars(shape, seed)
    _add_stars(image, stars.x, stars.y, stars.flux)
    image += np.float32(500.0)
    counts = np.clip(np.rint(image), 0, RAW_SATURATE).astype(np.uint16)

    header = fits.Header()
    header.update(_observation_cards("EXPOSE", "rp", 1766512, 0, frame_number))
    if rough_wcs:
        header.update(_celestial_wcs(shape, 150.0, 2.2, north_angle=0.0, mirrored=False))
    header["SATURATE"] = RAW_SATURATE
    if header_on_primary:
        return _write(path, fits.PrimaryHDU(header=header), _image_hdu(counts, fits.Header(), compression, None))
    if compression is None:
        # uint16 pixels are written as int16 with BZERO 32768, the FITS convention.
        return _write(path, fits.PrimaryHDU(counts, header))
    return _write(path, fits.PrimaryHDU(), _image_hdu(counts, header, compression, None))


def spectrum(
    path: PathLike,
    width: int = 512,
    height: int = 128,
    seed: int = 6,
    *,
    obstype: str = "SPECTRUM",
    compression: str | None = "RICE_1",
    frame_number: int = 12,
) -> Path:
    """Write a 2-D long-slit spectrum: a curved trace along x crossed by sky emission lines.

    Its WCS is a prototype whose CD matrix, taken at face value, would turn the frame on
    its side: the renderer must recognise the OBSTYPE and leave it unrotated.
    """
    rng = np.random.default_rng(seed)
    image = _sky((height, width), rng, level=50.0)
    columns = np.arange(width, dtype=np.float32)
    rows = np.arange(height, dtype=np.float32)[:, None]
    centre = height / 2.0 + 6.0 * ((columns - width / 2.0) / width) ** 2
    continuum = 3000.0 * np.exp(-(((columns - 0.4 * width) / (0.45 * width)) ** 2))
    image += continuum * np.exp(-((rows - centre) ** 2) / (2.0 * 2.0**2))
    for line in rng.uniform(0, width, 12):
        image += rng.uniform(500.0, 4000.0) * np.exp(-((columns - line) ** 2) / (2.0 * 1.2**2))

    header = fits.Header()
    header.update(_observation_cards(obstype, "air", 1766520, 0, frame_number, instrument="en06"))
    header.update(_celestial_wcs((height, width), 150.0, 2.2, north_angle=90.0, mirrored=False))
    return _write(path, fits.PrimaryHDU(), _image_hdu(image, header, compression, "SCI"))


def lco_basename(
    frame_number: int,
    rlevel: int,
    site: str = "ogg",
    telescope: str = "0m404",
    instrument: str = "kb82",
    day: str = DEMO_DAY,
) -> str:
    """An LCO-style basename, e.g. ogg0m404-kb82-20190321-0273-e91."""
    return f"{site}{telescope}-{instrument}-{day}-{frame_number:04d}-e{rlevel:02d}"


RVB_FILTERS = (("rp", (0.0, 0.0)), ("V", (3.0, -2.0)), ("B", (-2.0, 4.0)))


def _rvb_writers(
    directory: Path, size: int, seed: int, request_id: int, first_frame: int
) -> list[tuple[Path, Callable[[PathLike], Path]]]:
    """Where each frame of an R/V/B triple goes, and the call that writes it there."""
    return [
        (
            directory / f"{lco_basename(number, 91)}.fits.fz",
            partial(
                star_field,
                size=size,
                seed=seed,
                filter_name=filter_name,
                request_id=request_id,
                dx=dx,
                dy=dy,
                frame_number=number,
            ),
        )
        for number, (filter_name, (dx, dy)) in enumerate(RVB_FILTERS, start=first_frame)
    ]


def rvb_set(
    directory: PathLike, size: int = 2048, seed: int = 404, request_id: int = 1766530, first_frame: int = 280
) -> list[Path]:
    """Write R (rp), V and B frames of one field and request, offset by a few pixels.

    Files are named <basename>.fits.fz in directory; returns their paths, red first.
    """
    return [write(path) for path, write in _rvb_writers(Path(directory), size, seed, request_id, first_frame)]


def _write_once(path: Path, write: Callable[[PathLike], Path]) -> Path:
    """Write path unless it exists, through a temporary name so a crash leaves no half file."""
    if not path.exists():
        partial_path = path.with_name(path.name + ".partial")
        write(partial_path)
        os.replace(partial_path, path)
    return path


def demo_archive(directory: PathLike) -> list[Path]:
    """Write the demo frames into directory, skipping those already there; returns all paths.

    A 4096x4096 reduced star field, its raw frame, a spectrum and an R/V/B triple.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    spectrum_name = lco_basename(12, 0, telescope="2m001", instrument="en06")
    writers: list[tuple[Path, Callable[[PathLike], Path]]] = [
        # North a third of a turn from up, so the thumbnail shows the rotation to north up.
        (directory / f"{lco_basename(273, 91)}.fits.fz", partial(star_field, north_angle=120.0)),
        (directory / f"{lco_basename(273, 0)}.fits.fz", raw_frame),
        (directory / f"{spectrum_name}.fits.fz", spectrum),
        *_rvb_writers(directory, 2048, 404, 1766530, 280),
    ]
    return [_write_once(path, write) for path, write in writers]
