"""North up and east left from any celestial WCS: written as CD, as PC and CDELT, or as CDELT and CROTA2.

Each frame carries a bright star north-east of its centre, placed by its own WCS with astropy; drawn north
up and east left, the star is in the upper-left quadrant of the thumbnail.
"""

import io
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from astropy import units as u
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning
from PIL import Image

import thumbproxy.render.preview as preview_module
from conftest import Service
from fakearchive import FakeArchive
from hostilefits import with_card
from test_render import brightest_spot, noisy, render
from thumbproxy.render import RenderOptions, color_thumbnail_from_files
from thumbproxy.render.orient import FLIP_VERTICAL, display_orientation
from thumbproxy.render.preview import Preview
from thumbproxy.render.thumbnail import thumbnail_and_preview_from_file

# 0.5 arcsec per pixel, and a landscape frame (rows, columns) that fits a 200 px box unscaled.
SCALE = 0.5 / 3600.0
SHAPE = (100, 160)
# How far north and east of the centre the star is, in pixels.
STAR_OFFSET = 20
# A frame near the equator, so a step east is about a pixel's width.
CENTRE = (150.0, 2.0)


def rotation(degrees: float) -> np.ndarray:
    theta = math.radians(degrees)
    return np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])


def sky_cards(form: str, degrees: float, mirrored: bool) -> dict[str, Any]:
    """TAN WCS cards with north turned by degrees, east left of north unless mirrored, written as `form`:
    "CD", "PC" (with CDELT) or "CROTA" (CDELT and CROTA2)."""
    cdelt = (SCALE if mirrored else -SCALE, SCALE)
    cards: dict[str, Any] = {
        "CTYPE1": "RA---TAN",
        "CTYPE2": "DEC--TAN",
        "CRVAL1": CENTRE[0],
        "CRVAL2": CENTRE[1],
        "CRPIX1": (SHAPE[1] + 1) / 2.0,
        "CRPIX2": (SHAPE[0] + 1) / 2.0,
    }
    if form == "CD":
        cd = np.diag(cdelt) @ rotation(degrees)
        cards |= {f"CD{i + 1}_{j + 1}": cd[i, j] for i in range(2) for j in range(2)}
    elif form == "PC":
        pc = rotation(degrees)
        cards |= {f"PC{i + 1}_{j + 1}": pc[i, j] for i in range(2) for j in range(2)}
        cards |= {"CDELT1": cdelt[0], "CDELT2": cdelt[1]}
    else:
        cards |= {"CDELT1": cdelt[0], "CDELT2": cdelt[1], "CROTA2": degrees}
    return cards


def star_frame(path: Path, cards: dict[str, Any], placed_by: dict[str, Any] | None = None) -> Path:
    """A noisy frame with these cards and a bright star north-east of its centre, where the WCS of placed_by
    (by default the cards themselves) puts it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        wcs = WCS(fits.Header(placed_by or cards))
    centre = wcs.pixel_to_world((SHAPE[1] - 1) / 2.0, (SHAPE[0] - 1) / 2.0)
    step = STAR_OFFSET * SCALE * u.deg
    column, row = np.rint(wcs.world_to_pixel(centre.spherical_offsets_by(step, step))).astype(int)
    data = noisy(SHAPE)
    data[row - 2 : row + 3, column - 2 : column + 3] = 50000.0
    fits.PrimaryHDU(data, fits.Header(cards)).writeto(path)
    return path


def assert_upper_left(thumbnail: np.ndarray) -> None:
    """The star is drawn up and to the left of the thumbnail's centre, well clear of its middle lines."""
    row, column = brightest_spot(thumbnail)
    height, width = thumbnail.shape
    right, up = column - (width - 1) / 2.0, (height - 1) / 2.0 - row
    assert right < -STAR_OFFSET / 2 and up > STAR_OFFSET / 2, (right, up)


def portrait(turned: bool) -> tuple[int, int]:
    """The (rows, columns) of the thumbnail of a SHAPE frame, turned a quarter or not."""
    return SHAPE[::-1] if turned else SHAPE


# --- every way of writing the WCS, every quarter turn, mirrored or not ------------------------------------


@pytest.mark.parametrize("mirrored", [False, True], ids=["east-left", "east-right"])
@pytest.mark.parametrize("degrees", [0, 90, 180, 270])
@pytest.mark.parametrize("form", ["CD", "PC", "CROTA"])
def test_a_star_north_east_of_centre_is_drawn_upper_left(tmp_path, form, degrees, mirrored):
    thumbnail = render(star_frame(tmp_path / "f.fits", sky_cards(form, degrees, mirrored)))
    assert thumbnail.shape == portrait(degrees % 180 == 90)
    assert_upper_left(thumbnail)


@pytest.mark.parametrize("degrees", [0, 90])
def test_a_wcs_with_declination_first_is_read_by_its_axis_types(tmp_path, degrees):
    cards = sky_cards("CD", degrees, mirrored=False)
    swapped = {
        "CTYPE1": "DEC--TAN",
        "CTYPE2": "RA---TAN",
        "CRVAL1": CENTRE[1],
        "CRVAL2": CENTRE[0],
        "CRPIX1": cards["CRPIX1"],
        "CRPIX2": cards["CRPIX2"],
        **{f"CD{i}_{j}": cards[f"CD{3 - i}_{j}"] for i in (1, 2) for j in (1, 2)},
    }
    thumbnail = render(star_frame(tmp_path / "f.fits", swapped))
    assert thumbnail.shape == portrait(degrees == 90)
    assert_upper_left(thumbnail)


@pytest.mark.parametrize("unit, per_degree", [("arcsec", 3600.0), ("deg", 1.0), ("DEG", 1.0)])
def test_cdelt_in_any_unit_astropy_reads(tmp_path, unit, per_degree):
    cards = sky_cards("CROTA", 90, mirrored=False)
    cards |= {"CUNIT1": unit, "CUNIT2": unit, "CDELT1": cards["CDELT1"] * per_degree}
    cards["CDELT2"] *= per_degree
    thumbnail = render(star_frame(tmp_path / "f.fits", cards))
    assert thumbnail.shape == portrait(True)
    assert_upper_left(thumbnail)


def test_a_projection_with_parameters(tmp_path):
    # As wide-field cameras write it: a zenithal polynomial set up by PV2_1 and PV2_3.
    cards = sky_cards("CD", 90, mirrored=True) | {"CTYPE1": "RA---ZPN", "CTYPE2": "DEC--ZPN", "PV2_1": 1.0}
    cards["PV2_3"] = 44.0
    thumbnail = render(star_frame(tmp_path / "f.fits", cards))
    assert thumbnail.shape == portrait(True)
    assert_upper_left(thumbnail)


def test_a_cd_matrix_without_axis_types_is_read_as_ra_and_dec(tmp_path):
    # As fits2image reads any CD matrix: such frames keep the turn they had.
    cards = sky_cards("CD", 90, mirrored=False)
    untyped = {key: value for key, value in cards.items() if not key.startswith("CTYPE")}
    thumbnail = render(star_frame(tmp_path / "f.fits", untyped, placed_by=cards))
    assert thumbnail.shape == portrait(True)
    assert_upper_left(thumbnail)


def test_compressed_frame_with_its_wcs_in_the_image_extension(tmp_path):
    star_frame(tmp_path / "plain.fits", cards := sky_cards("PC", 270, mirrored=True))
    data = fits.getdata(tmp_path / "plain.fits")
    path = tmp_path / "f.fits.fz"
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(data, fits.Header(cards), compression_type="RICE_1")]).writeto(
        path
    )
    thumbnail = render(path)
    assert thumbnail.shape == portrait(True)
    assert_upper_left(thumbnail)


# --- what keeps the plain flip ------------------------------------------------------------------------------


def marker_near_fits_origin(path: Path, cards: dict[str, Any]) -> Path:
    """A frame with a marker near FITS row 1 and column 1 (bottom left in a FITS viewer) and these cards."""
    data = noisy(SHAPE)
    data[5:10, 10:15] = 50000.0
    header = fits.Header()
    for keyword, value in cards.items():
        header[keyword] = value
    fits.PrimaryHDU(data, header).writeto(path)
    return path


TURNED = sky_cards("PC", 90, mirrored=False)
SKY = {"CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN", "CDELT1": -1.0, "CDELT2": 1.0}


@pytest.mark.parametrize(
    "cards",
    [
        pytest.param({**TURNED, "CTYPE1": "LINEAR", "CTYPE2": "LINEAR"}, id="axes-not-on-the-sky"),
        pytest.param({**TURNED, "CTYPE2": "LINEAR"}, id="right-ascension-alone"),
        pytest.param({**TURNED, "CTYPE1": "RA---XYZ", "CTYPE2": "DEC--XYZ"}, id="unknown-projection"),
        pytest.param({**TURNED, "PC1_1": 1.0, "PC1_2": 1.0, "PC2_1": 1.0, "PC2_2": 1.0}, id="singular-pc"),
        pytest.param({**TURNED, "CDELT1": 0.0}, id="zero-cdelt"),
        pytest.param({**TURNED, "CDELT2": "fine"}, id="cdelt-as-text"),
        pytest.param({**TURNED, "CTYPE1": "RA---ZPN", "CTYPE2": "DEC--ZPN"}, id="projection-without-parameters"),
        # astropy would repair an empty row and column of a CD matrix into an arbitrary matrix.
        pytest.param({**sky_cards("CD", 0, False), "CD1_1": 0.0}, id="singular-cd"),
    ],
)
def test_a_frame_without_a_usable_celestial_wcs_is_flipped_vertically(tmp_path, cards):
    thumbnail = render(marker_near_fits_origin(tmp_path / "f.fits", cards))
    assert thumbnail.shape == SHAPE
    assert brightest_spot(thumbnail) == (SHAPE[0] - 8, 12)


@pytest.mark.parametrize("keyword", ["PC1_1", "CDELT1", "CROTA2"])
def test_an_unparsable_wcs_card_is_not_replaced_by_its_default(tmp_path, keyword):
    cards = sky_cards("CROTA" if keyword == "CROTA2" else "PC", 90, mirrored=False)
    path = with_card(marker_near_fits_origin(tmp_path / "f.fits", cards), keyword, "NAN")
    thumbnail = render(path)
    assert thumbnail.shape == SHAPE
    assert brightest_spot(thumbnail) == (SHAPE[0] - 8, 12)


@pytest.mark.parametrize(
    "cards",
    [
        pytest.param({**SKY, "CTYPE1": "RA---TAN\x7f"}, id="control-character"),
        pytest.param({**SKY, "CDELT1": 1e308, "CDELT2": 1e308, "CROTA2": 1e308}, id="huge"),
        pytest.param({**SKY, "CDELT1": float("nan"), "CROTA2": float("inf")}, id="not-finite"),
        pytest.param({**SKY, "PC1_1": True, "PC2_2": 1.0}, id="truth-value"),
        pytest.param({**SKY, "CTYPE1": 7, "CD1_1": 1.0, "CD1_2": 0.0, "CD2_1": 0.0, "CD2_2": 1.0}, id="numeric-type"),
        pytest.param({**SKY, "CUNIT1": "furlong", "CDELT1": -1.0}, id="unit-not-an-angle"),
        pytest.param({**SKY, "CTYPE1": "RA---COE", "CTYPE2": "DEC--COE", "PV2_1": 95.0}, id="impossible-parameter"),
        pytest.param({**SKY, "CD1_1": "x" * 5000}, id="long-text"),
        pytest.param({**SKY, "CD1_1": 1e-30, "CD1_2": 0.0, "CD2_1": 0.0, "CD2_2": 1e-30}, id="vanishing-scale"),
    ],
)
def test_hostile_wcs_cards_fall_back_to_the_flip_without_a_sound(cards):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert display_orientation(cards) == FLIP_VERTICAL


# --- spectra stay as they are -------------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["PC", "CROTA"])
def test_spectra_are_never_turned_by_a_pc_or_crota_wcs(tmp_path, form):
    cards = sky_cards(form, 90, mirrored=False)
    assert render(marker_near_fits_origin(tmp_path / "s.fits", cards | {"OBSTYPE": "SPECTRUM"})).shape == SHAPE
    assert render(tmp_path / "s.fits", spectrum=True).shape == SHAPE
    assert render(marker_near_fits_origin(tmp_path / "f.fits", cards)).shape == portrait(True)


# --- colour composites, previews, the service ---------------------------------------------------------------


def test_colour_composite_takes_a_pc_wcs_for_its_orientation(tmp_path):
    paths = [star_frame(tmp_path / f"{name}.fits", sky_cards("PC", 90, mirrored=True)) for name in "rvb"]
    thumbnail = color_thumbnail_from_files(paths, RenderOptions())
    assert thumbnail.alignment == "wcs"
    image = np.asarray(Image.open(io.BytesIO(thumbnail.image)).convert("L"))
    assert image.shape == portrait(True)
    assert_upper_left(image)


def test_colour_composite_turns_by_the_first_frame_with_a_usable_wcs(tmp_path):
    cards = sky_cards("CROTA", 90, mirrored=False)
    unusable = star_frame(tmp_path / "r.fits", {**cards, "CTYPE1": "LINEAR", "CTYPE2": "LINEAR"}, placed_by=cards)
    paths = [unusable] + [star_frame(tmp_path / f"{name}.fits", cards) for name in "vb"]
    image = np.asarray(Image.open(io.BytesIO(color_thumbnail_from_files(paths, RenderOptions()).image)).convert("L"))
    assert image.shape == portrait(True)
    assert_upper_left(image)


def test_a_stored_preview_knows_its_orientation_without_reading_the_wcs(tmp_path, monkeypatch):
    path = star_frame(tmp_path / "f.fits", sky_cards("CROTA", 270, mirrored=True))
    _, preview = thumbnail_and_preview_from_file(path, RenderOptions(), 64)
    assert preview is not None
    stored = preview.to_bytes()

    def no_wcs(header: Any) -> None:
        raise AssertionError("the WCS was read again")

    monkeypatch.setattr(preview_module, "header_orientation", no_wcs)
    outline = Preview.from_bytes(stored).outline
    assert outline.orientation == preview.frame_orientation
    # A quarter turn: the 160 x 100 frame fits a 100 px box as 62 x 100, drawn from 100 x 62 data pixels.
    assert outline.thumbnail_size(RenderOptions(width=100, height=100)) == (100, 62)


async def test_the_service_draws_north_up_from_a_pc_wcs(
    service: Service, fake_archive: FakeArchive, tmp_path: Path
) -> None:
    frame = fake_archive.add_frame(star_frame(tmp_path / "f.fits", sky_cards("PC", 90, mirrored=True)))
    # The first size is read from the file; the second is drawn from the preview made on the way.
    for query in ("image=true", "image=true&width=120&height=120"):
        image = await service.image(f"/{frame['id']}/?{query}")
        assert image.height > image.width
        assert_upper_left(np.asarray(image.convert("L")))
