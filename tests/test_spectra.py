"""1-D spectra are drawn as line plots of flux against wavelength that fill the requested box: in the renderer,
through the service (first request and later sizes, one worker or bands) and from the command line."""

import asyncio
import io
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from astropy.io import fits
from PIL import Image

from conftest import Service, ServiceFactory
from fakearchive import FakeArchive
from thumbproxy.cache.disk import DiskCache
from thumbproxy.pipeline.cachekeys import preview_key
from thumbproxy.render import RenderOptions, thumbnail_from_file
from thumbproxy.render.spectrum import Spectrum, spectral_axis
from thumbproxy.render.ticks import round_ticks

# The spectra written here: PIXELS pixels from START Angstrom in steps of STEP, a sloping continuum of about
# CONTINUUM and one emission line LINE_HEIGHT above it at LINE_AT.
PIXELS = 2000
START = 3500.0
STEP = 3.0
END = START + STEP * (PIXELS - 1)
CONTINUUM = 1e-16
LINE_AT = 6563.0
LINE_HEIGHT = 5e-16
# Where the FLOYDS-like cube's sky plane has a line far stronger than the flux's: it must not be drawn.
SKY_LINE_AT = 5577.0
# Wavelengths a gap of NaN flux covers.
GAP = (5000.0, 5300.0)
# A pixel darker than this is ink: the plot is black on white, and JPEG blurs edges only a little.
INK = 100
# How far, in pixels, a drawn peak may be from where its wavelength falls on the axis.
PEAK_TOLERANCE = 3
WAVELENGTH_CARDS = {"CTYPE1": "WAVE", "CUNIT1": "Angstrom", "CRVAL1": START, "CDELT1": STEP, "CRPIX1": 1.0}


def wavelengths() -> np.ndarray:
    return START + STEP * np.arange(PIXELS)


def flux(line_at: float = LINE_AT, line_height: float = LINE_HEIGHT) -> np.ndarray:
    """A continuum rising gently to the red, and one emission line 6 Angstrom wide."""
    wave = wavelengths()
    continuum = CONTINUUM * (1 + 0.2 * (wave - START) / (END - START))
    return (continuum + line_height * np.exp(-0.5 * ((wave - line_at) / 6.0) ** 2)).astype(np.float32)


def with_gap(values: np.ndarray) -> np.ndarray:
    gapped = values.copy()
    wave = wavelengths()
    gapped[(wave >= GAP[0]) & (wave <= GAP[1])] = np.nan
    return gapped


def one_dimensional(path: Path, values: np.ndarray | None = None, **cards: Any) -> Path:
    """A NAXIS=1 spectrum with a linear wavelength WCS in Angstrom and a flux unit."""
    header = fits.Header({**WAVELENGTH_CARDS, "BUNIT": "erg/cm2/s/A", **cards})
    fits.PrimaryHDU(flux() if values is None else values, header).writeto(path)
    return path


def floyds_like(path: Path) -> Path:
    """An LCO FLOYDS product's layout: a 4 x 1 x N cube (NAXIS3=4, NAXIS2=1) of flux, raw flux, sky and error, its
    wavelengths as FLOYDS writes them (LINEAR, CD1_1, CUNIT1 Angstrom). The sky's line is ten times the flux's."""
    planes = [flux(), flux() * 3, flux(SKY_LINE_AT, LINE_HEIGHT * 10), flux() * 0.05]
    header = fits.Header(
        {"CTYPE1": "LINEAR", "CUNIT1": "Angstrom", "CRVAL1": START, "CD1_1": STEP, "CRPIX1": 1.0, "OBSTYPE": "SPECTRUM"}
    )
    fits.PrimaryHDU(np.stack(planes)[:, np.newaxis, :], header).writeto(path)
    return path


def without_wcs(path: Path) -> Path:
    fits.PrimaryHDU(flux() * 1e16).writeto(path)
    return path


def decoded(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def plotted(path: Path, width: int = 600, height: int = 300, **options: Any) -> Image.Image:
    return decoded(thumbnail_from_file(path, RenderOptions(width=width, height=height, **options)))


class Plot:
    """What a user sees of a plot: its ink, and the frame the data are drawn in, found in the pixels."""

    def __init__(self, image: Image.Image) -> None:
        self.ink = np.asarray(image.convert("L")) < INK
        rows, columns = self.ink.shape
        # The frame's sides are the outermost rows and columns that are ink across most of the image.
        long_rows = np.flatnonzero(self.ink.sum(axis=1) > 0.6 * columns)
        long_columns = np.flatnonzero(self.ink.sum(axis=0) > 0.6 * rows)
        assert long_rows.size >= 2 and long_columns.size >= 2, "no frame drawn"
        self.top, self.bottom = int(long_rows[0]), int(long_rows[-1])
        self.left, self.right = int(long_columns[0]), int(long_columns[-1])
        assert (
            self.ink[self.top : self.bottom + 1, self.left].all()
            and self.ink[self.bottom, self.left : self.right].all()
        )

    @property
    def inside(self) -> np.ndarray:
        """The ink within the frame, its sides left out."""
        return self.ink[self.top + 1 : self.bottom, self.left + 1 : self.right]

    def column_of(self, wavelength: float, low: float = START, high: float = END) -> float:
        """The column where the axis puts this wavelength: it spans the spectrum's, side to side."""
        return self.left + (wavelength - low) / (high - low) * (self.right - self.left)

    def peak_column(self) -> int:
        """The column where the line reaches highest."""
        inside = self.inside
        highest = np.where(inside.any(axis=0), inside.argmax(axis=0), inside.shape[0])
        return self.left + 1 + int(highest.argmin())


def peak_column_of_line(ink: np.ndarray) -> int:
    """The column where ink reaches highest, in a plot without a frame."""
    highest = np.where(ink.any(axis=0), ink.argmax(axis=0), ink.shape[0])
    return int(highest.argmin())


# --- the renderer --------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(600, 300), (200, 200), (1200, 800), (300, 500)])
def test_a_spectrum_is_plotted_filling_the_box_with_its_line_where_the_wavelength_axis_says(
    tmp_path: Path, size: tuple[int, int]
) -> None:
    image = plotted(one_dimensional(tmp_path / "spectrum.fits"), *size)
    assert image.size == size and image.mode == "L"
    plot = Plot(image)
    assert abs(plot.peak_column() - plot.column_of(LINE_AT)) <= PEAK_TOLERANCE
    # The continuum runs from side to side.
    assert plot.inside[:, :3].any() and plot.inside[:, -3:].any()
    # Tick labels and axis titles: ink left of the frame and below it.
    assert plot.ink[:, : plot.left - 4].sum() > 100 and plot.ink[plot.bottom + 4 :, :].sum() > 100


def test_wavelength_ticks_fall_on_round_wavelengths(tmp_path: Path) -> None:
    plot = Plot(plotted(one_dimensional(tmp_path / "spectrum.fits"), 800, 400, format="png"))
    # Tick marks hang below the frame.
    ticks = np.flatnonzero(plot.ink[plot.bottom + 2, plot.left : plot.right + 1]) + plot.left
    assert ticks.size >= 4
    per_pixel = (END - START) / (plot.right - plot.left)
    at = START + (ticks - plot.left) * per_pixel
    step = float(np.median(np.diff(at)))
    round_step = min((factor * 10.0**power for factor in (1, 2, 5) for power in range(6)), key=lambda s: abs(s - step))
    assert (np.abs(at / round_step - np.round(at / round_step)) * round_step <= 2 * per_pixel).all()


def test_a_floyds_cube_plots_its_first_plane(tmp_path: Path) -> None:
    plot = Plot(plotted(floyds_like(tmp_path / "floyds.fits")))
    assert abs(plot.peak_column() - plot.column_of(LINE_AT)) <= PEAK_TOLERANCE
    # The sky plane's far stronger line is not drawn: only the continuum at its wavelength.
    assert plot.inside[: plot.inside.shape[0] // 2, round(plot.column_of(SKY_LINE_AT)) - plot.left - 1].sum() == 0


def test_without_a_wcs_flux_is_plotted_against_pixel_index(tmp_path: Path) -> None:
    plot = Plot(plotted(without_wcs(tmp_path / "pixels.fits")))
    line_pixel = (LINE_AT - START) / STEP
    assert abs(plot.peak_column() - plot.column_of(line_pixel, 0, PIXELS - 1)) <= PEAK_TOLERANCE


def test_nan_flux_leaves_a_gap(tmp_path: Path) -> None:
    plot = Plot(plotted(one_dimensional(tmp_path / "gap.fits", with_gap(flux())), format="png"))
    inside_columns = range(round(plot.column_of(GAP[0])) + 2, round(plot.column_of(GAP[1])) - 1)
    assert not plot.ink[plot.top + 1 : plot.bottom, inside_columns].any()
    for outside in (plot.column_of(GAP[0]) - 4, plot.column_of(GAP[1]) + 4):
        assert plot.ink[plot.top + 1 : plot.bottom, round(outside)].any()


def test_a_small_box_gets_the_line_alone_filling_it(tmp_path: Path) -> None:
    image = plotted(one_dimensional(tmp_path / "spectrum.fits"), 100, 100, format="png")
    assert image.size == (100, 100)
    ink = np.asarray(image) < INK
    # No frame: no row or column is mostly ink, and the line reaches both sides.
    assert ink.sum(axis=1).max() < 60 and ink.sum(axis=0).max() < 95
    assert ink[:, :2].any() and ink[:, -2:].any()
    assert abs(peak_column_of_line(ink) - (LINE_AT - START) / (END - START) * 99) <= PEAK_TOLERANCE


@pytest.mark.parametrize("values", [np.full(PIXELS, np.nan, np.float32), np.full(PIXELS, 7.0, np.float32)])
def test_all_nan_and_flat_spectra_are_plotted(tmp_path: Path, values: np.ndarray) -> None:
    plot = Plot(plotted(one_dimensional(tmp_path / "odd.fits", values), format="png"))
    drawn_rows = np.flatnonzero(plot.inside.any(axis=1))
    if np.isnan(values).all():
        assert drawn_rows.size == 0
    else:
        # Flat: a level line across the middle of the frame.
        middle = plot.inside.shape[0] / 2
        assert drawn_rows.size and np.abs(drawn_rows - middle).max() <= 2
        assert plot.inside[drawn_rows].any(axis=0).all()


@pytest.mark.parametrize("image_format", ["jpeg", "png", "webp"])
def test_formats_and_the_label_as_a_title(tmp_path: Path, image_format: str) -> None:
    path = one_dimensional(tmp_path / "spectrum.fits")
    titled = plotted(path, 400, 250, format=image_format, label="SN 2021abc")
    assert titled.format == image_format.upper() and titled.size == (400, 250)
    untitled = Plot(plotted(path, 400, 250, format=image_format))
    plot = Plot(titled)
    # The title takes a strip above the frame, which is lower by as much.
    assert plot.ink[: plot.top - 2].sum() > 20 and plot.top > untitled.top + 10


def test_axis_titles_name_the_quantity_and_the_unit_the_header_gives() -> None:
    def axis(**cards: Any) -> tuple[str, str, float]:
        drawn = spectral_axis(Spectrum(np.ones(10), fits.Header(cards)))
        return drawn.name, drawn.unit, float(drawn.values[1])

    assert axis(**WAVELENGTH_CARDS) == ("Wavelength", "Angstrom", START + STEP)
    assert axis(CTYPE1="WAVE", CUNIT1="nm", CRVAL1=350.0, CDELT1=0.5, CRPIX1=1.0) == ("Wavelength", "nm", 350.5)
    # Without CRPIX1 the reference pixel is 0, the one before the first (FITS numbers pixels from 1).
    assert axis(CTYPE1="LINEAR", CUNIT1="Angstrom", CRVAL1=START, CD1_1=STEP) == (
        "Wavelength",
        "Angstrom",
        START + 2 * STEP,
    )
    assert axis(CTYPE1="FREQ", CUNIT1="GHz", CRVAL1=100.0, CDELT1=-0.5, CRPIX1=1.0) == ("Frequency", "GHz", 99.5)
    assert axis() == ("Pixel", "", 1.0)
    # A step of 0 gives every pixel the same wavelength: no axis to draw them on but the index.
    assert axis(**{**WAVELENGTH_CARDS, "CDELT1": 0.0}) == ("Pixel", "", 1.0)


def test_tick_labels_are_round_and_large_or_small_values_count_in_a_power_of_ten() -> None:
    wavelengths = round_ticks(START, END, 8)
    assert wavelengths.labels == ("4000", "5000", "6000", "7000", "8000", "9000") and wavelengths.exponent == 0
    fluxes = round_ticks(0.8e-16, 6.3e-16, 6)
    assert fluxes.labels == ("1", "2", "3", "4", "5", "6") and fluxes.exponent == -16
    assert round_ticks(-0.15, 0.25, 5).labels == ("-0.1", "0.0", "0.1", "0.2")


# --- through the service ----------------------------------------------------------------------------


async def plot_from(service: Service, path: str) -> Image.Image:
    response = await service.get(path)
    assert response.status == 200, await response.text()
    return decoded(await response.read())


@pytest.mark.parametrize("workers", ["1", "2"])
async def test_the_service_plots_a_spectrum_first_and_at_later_sizes_without_a_preview(
    start_service: ServiceFactory, fake_archive: FakeArchive, tmp_path: Path, workers: str
) -> None:
    path = floyds_like(tmp_path / "ogg2m001-en06-20210929-0024-e91-1d.fits")
    frame = fake_archive.add_frame(path, configuration_type="SPECTRUM")
    # Two idle workers read a frame in bands: a spectrum has none and is plotted by one of them.
    service = await start_service(THUMBPROXY_WORKERS=workers)
    first = await plot_from(service, f"/{frame['id']}/?image=true&width=600&height=300")
    assert first.size == (600, 300)
    plot = Plot(first)
    assert abs(plot.peak_column() - plot.column_of(LINE_AT)) <= PEAK_TOLERANCE
    # A later size, by basename: the small file is read again and plotted at that size.
    later = await plot_from(service, f"/{frame['basename']}/?image=true&width=150&height=100&format=png")
    assert later.size == (150, 100)
    ink = np.asarray(later) < INK
    assert abs(peak_column_of_line(ink) - (LINE_AT - START) / (END - START) * 149) <= PEAK_TOLERANCE
    assert fake_archive.downloads[frame["id"]] == 2
    # Nothing a thumbnail of an image could be drawn from is kept for it on the disk level.
    key = preview_key((frame["id"], fake_archive.record(frame["id"])["version_set"][0]["md5"]), 1024)
    assert await DiskCache(tmp_path / "cache" / "thumbnails", 2**30).get(key) is None
    # The same size again is the cached plot.
    again = await service.get(f"/{frame['id']}/?image=true&width=600&height=300")
    assert again.status == 200 and fake_archive.downloads[frame["id"]] == 2
    assert service.temp_files() == []


async def test_concurrent_sizes_of_a_cold_spectrum_are_each_plotted_at_their_size(
    start_service: ServiceFactory, fake_archive: FakeArchive, tmp_path: Path
) -> None:
    frame = fake_archive.add_frame(one_dimensional(tmp_path / "ogg2m001-en06-20210929-0025-e91-1d.fits"))
    service = await start_service(THUMBPROXY_WORKERS="2")
    sizes = [(120, 90), (200, 200), (400, 250), (90, 60)]
    plots = await asyncio.gather(
        *(plot_from(service, f"/{frame['id']}/?image=true&width={width}&height={height}") for width, height in sizes)
    )
    # Those that joined the first plot's flight read the file again for their own size.
    assert [image.size for image in plots] == sizes
    for image in plots[1:3]:
        plot = Plot(image)
        assert abs(plot.peak_column() - plot.column_of(LINE_AT)) <= PEAK_TOLERANCE
    assert service.temp_files() == []


async def test_a_colour_composite_of_spectra_is_a_422(
    service: Service, fake_archive: FakeArchive, tmp_path: Path
) -> None:
    frames = [
        fake_archive.add_frame(one_dimensional(tmp_path / f"{name}.fits"), primary_optical_element=name)
        for name in ("rp", "V", "B")
    ]
    response = await service.get(f"/{frames[0]['id']}/?color=true&image=true")
    assert response.status == 422
    assert (await response.json())["message"] == "cannot render rp.fits: it holds a 1-D spectrum, not an image"


# --- the command line ------------------------------------------------------------------------------


@pytest.mark.parametrize("write", [one_dimensional, floyds_like])
def test_thumbproxy_render_plots_a_spectrum(tmp_path: Path, write: Callable[[Path], Path]) -> None:
    path = write(tmp_path / "spec.fits")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "thumbproxy",
            "render",
            str(path),
            "-o",
            "plot.jpg",
            "--width",
            "500",
            "--height",
            "280",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    image = Image.open(tmp_path / "plot.jpg")
    assert image.size == (500, 280)
    plot = Plot(image)
    assert abs(plot.peak_column() - plot.column_of(LINE_AT)) <= PEAK_TOLERANCE
