"""Display parameters (stretch, cuts, contrast, gamma, invert, colour map) as a user sees them in the picture."""

import io
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from cmap import Colormap
from PIL import Image

from thumbproxy.demo.sampledata import rvb_set, star_field
from thumbproxy.render import RenderOptions, color_thumbnail_from_files, thumbnail_from_file

SIZE = 256


def draw(path: Path, **options: object) -> np.ndarray:
    """The decoded PNG thumbnail of the frame at path, drawn as options ask, pixel for pixel."""
    png = thumbnail_from_file(path, RenderOptions(width=SIZE, height=SIZE, format="png", **options))
    return np.asarray(Image.open(io.BytesIO(png)))


@pytest.fixture(scope="module")
def field(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A star field of SIZE x SIZE pixels: every pixel shows in the thumbnail, none averaged with another."""
    return star_field(tmp_path_factory.mktemp("display") / "field.fits", size=SIZE, compression=None)


@pytest.fixture(scope="module")
def large_field(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A compressed star field four times the thumbnail's side: its thumbnails are block averages."""
    return star_field(tmp_path_factory.mktemp("display") / "large.fits.fz", size=4 * SIZE)


@pytest.fixture(scope="module")
def ramp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A noiseless frame whose columns run from 0 to 1000 in data units, left to right."""
    path = tmp_path_factory.mktemp("display") / "ramp.fits"
    fits.PrimaryHDU(np.tile(np.linspace(0.0, 1000.0, SIZE, dtype=np.float32), (SIZE, 1))).writeto(path)
    return path


def sky(image: np.ndarray) -> float:
    """The grey level of the sky: the median pixel."""
    return float(np.median(image))


def test_log_and_sqrt_raise_the_faint_sky_above_linear(field: Path) -> None:
    linear, square_root, logarithmic = (sky(draw(field, stretch=name)) for name in ("linear", "sqrt", "log"))
    assert linear + 20 < square_root < logarithmic


def test_asinh_sits_between_linear_and_log(field: Path) -> None:
    assert sky(draw(field, stretch="linear")) < sky(draw(field, stretch="asinh")) < sky(draw(field, stretch="log"))


def test_invert_makes_the_sky_light_and_the_stars_dark(field: Path) -> None:
    plain, inverted = draw(field), draw(field, invert=True)
    assert sky(plain) < 64 and sky(inverted) > 192
    assert np.array_equal(inverted, 255 - plain)


def test_zmin_and_zmax_clip_where_asked(ramp: Path) -> None:
    row = draw(ramp, stretch="linear", zmin=250.0, zmax=750.0)[SIZE // 2].astype(int)
    values = np.linspace(0.0, 1000.0, SIZE)
    assert (row[values < 245] == 0).all() and (row[values > 755] == 255).all()
    middle = np.argmin(abs(values - 500.0))
    assert abs(row[middle] - 128) <= 2
    # Linear in between: a quarter of the way is a quarter of white.
    assert abs(row[np.argmin(abs(values - 375.0))] - 64) <= 2


def test_a_cut_given_alone_keeps_the_other_from_the_stretch(ramp: Path) -> None:
    values = np.linspace(0.0, 1000.0, SIZE)
    only_top = draw(ramp, stretch="linear", zmax=500.0)[SIZE // 2]
    # Black stays at the linear stretch's own 0.5 percentile.
    assert only_top[values < 4].max() == 0 and only_top[(values > 20) & (values < 490)].min() > 0
    assert (only_top[values > 505] == 255).all()
    only_bottom = draw(ramp, stretch="linear", zmin=500.0)[SIZE // 2]
    assert (only_bottom[values < 495] == 0).all() and only_bottom[values > 996].min() == 255


def test_percentile_cuts_black_and_white_that_share_of_pixels(field: Path) -> None:
    image = draw(field, stretch="linear", min_percent=10.0, max_percent=90.0)
    assert 0.08 < np.mean(image == 0) < 0.12
    assert 0.08 < np.mean(image == 255) < 0.12


def test_contrast_narrows_zscale_range(field: Path) -> None:
    # A larger contrast brings white down toward the sky, which comes out brighter; a smaller one puts it up.
    assert np.mean(draw(field, contrast=0.05)) + 5 < np.mean(draw(field)) < np.mean(draw(field, contrast=0.4)) - 5


def test_gamma_lifts_faint_light(field: Path) -> None:
    assert np.mean(draw(field, gamma=1.0)) + 10 < np.mean(draw(field)) < np.mean(draw(field, gamma=5.0)) - 10


@pytest.mark.parametrize("frame", ["field", "large_field"])
def test_histeq_spreads_grey_levels_evenly(frame: str, request: pytest.FixtureRequest) -> None:
    # Pixel for pixel, and averaged over blocks (whose noise is smaller than the cuts measured on single pixels).
    path = request.getfixturevalue(frame)
    shares = np.histogram(draw(path, stretch="histeq"), bins=8, range=(0, 256))[0] / SIZE**2
    assert ((shares > 0.06) & (shares < 0.19)).all(), shares
    # The default look leaves a third of the picture or more in its darkest eighth.
    assert np.histogram(draw(path), bins=8, range=(0, 256))[0][0] / SIZE**2 > 0.3


@pytest.mark.parametrize("name", ["viridis", "magma", "inferno", "cividis", "plasma", "heat"])
def test_a_colour_maps_ends_are_at_the_darkest_and_brightest_pixels(field: Path, name: str) -> None:
    grey, coloured = draw(field), draw(field, cmap=name)
    assert coloured.shape == (SIZE, SIZE, 3)
    package = {"heat": "gist_heat"}.get(name, name)
    ends = (Colormap(package).lut(256)[[0, -1], :3] * 255).round()
    assert np.abs(coloured[grey == 0] - ends[0]).max() <= 1
    assert np.abs(coloured[grey == 255] - ends[1]).max() <= 1


def test_without_a_colour_map_a_frame_stays_grey(field: Path) -> None:
    assert draw(field).ndim == 2
    assert draw(field, cmap="").ndim == 2


@pytest.fixture(scope="module")
def rvb(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return rvb_set(tmp_path_factory.mktemp("rvb"), size=2 * SIZE)


def draw_colour(paths: list[Path], **options: object) -> np.ndarray:
    png = color_thumbnail_from_files(paths, RenderOptions(width=SIZE, height=SIZE, format="png", **options)).image
    return np.asarray(Image.open(io.BytesIO(png)))


def test_colour_composites_take_each_stretch_per_channel(rvb: list[Path]) -> None:
    linear, logarithmic = draw_colour(rvb, stretch="linear"), draw_colour(rvb, stretch="log")
    for channel in range(3):
        assert sky(linear[..., channel]) + 20 < sky(logarithmic[..., channel])
    for channel in np.moveaxis(draw_colour(rvb, stretch="histeq"), -1, 0):
        shares = np.histogram(channel, bins=4, range=(0, 256))[0] / channel.size
        assert ((shares > 0.15) & (shares < 0.35)).all(), shares
    assert sky(draw_colour(rvb, invert=True)) > 192
