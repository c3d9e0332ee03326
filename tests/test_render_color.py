"""color_thumbnail_from_files: frames lined up, cut to what they share, scaled, coloured, refused."""

import io
import logging
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.stats import sigma_clipped_stats
from astropy.wcs import WCS
from PIL import Image

import thumbproxy.render.align as align_module
from thumbproxy.demo.sampledata import rvb_set, star_field
from thumbproxy.render import (
    ColorThumbnail,
    RenderError,
    RenderOptions,
    color_thumbnail_from_files,
    thumbnail_from_file,
)
from thumbproxy.render.reduce import thumbnail_size

SIZE = 512
BOX = 256
# Where each filter's stars sit, in pixels, relative to the red frame's.
OFFSETS = {"rp": (0.0, 0.0), "V": (5.0, -3.0), "B": (-9.0, 4.0)}
# A field whose two saturated stars lie well inside a 512 px frame, so registration has
# them (and the fainter ones) to work with.
SEED = 2
WCS_KEYWORDS = (
    "CTYPE1",
    "CTYPE2",
    "CRPIX1",
    "CRPIX2",
    "CRVAL1",
    "CRVAL2",
    "CUNIT1",
    "CUNIT2",
    "CD1_1",
    "CD1_2",
    "CD2_1",
    "CD2_2",
)


def rvb_frames(directory: Path, wcs: bool = True, crops: dict[str, tuple[slice, slice]] | None = None) -> list[Path]:
    """Red, visual and blue 512 px frames of one field, the stars moved by OFFSETS, with a WCS
    that says so (or none), each optionally cut to (rows, columns)."""
    paths = []
    for name, (dx, dy) in OFFSETS.items():
        path = star_field(
            directory / f"{name}.fits",
            SIZE,
            seed=SEED,
            north_angle=0.0,
            filter_name=name,
            dx=dx,
            dy=dy,
            compression=None,
        )
        with fits.open(path, mode="update") as hdul:
            hdu = hdul["SCI"]
            rows, columns = (crops or {}).get(name, (slice(None), slice(None)))
            hdu.data = hdu.data[rows, columns]
            # A cut moves the pixel grid, and the reference pixel with it.
            hdu.header["CRPIX1"] -= columns.start or 0
            hdu.header["CRPIX2"] -= rows.start or 0
            if not wcs:
                for keyword in WCS_KEYWORDS:
                    del hdu.header[keyword]
        paths.append(path)
    return paths


def overlap_size(crops: dict[str, tuple[slice, slice]] | None = None) -> tuple[int, int]:
    """(width, height) of the part of the red frame that all of rvb_frames(..., crops) show."""
    first_x, last_x, first_y, last_y = 0.0, SIZE - 1.0, 0.0, SIZE - 1.0
    # In the red frame's pixels, each frame covers from (its cut's start - its offset) on.
    for name, (dx, dy) in OFFSETS.items():
        rows, columns = (crops or {}).get(name, (slice(0, SIZE), slice(0, SIZE)))
        first_x = max(first_x, (columns.start or 0) - dx)
        last_x = min(last_x, (columns.stop or SIZE) - 1 - dx)
        first_y = max(first_y, (rows.start or 0) - dy)
        last_y = min(last_y, (rows.stop or SIZE) - 1 - dy)
    return int(last_x - first_x) + 1, int(last_y - first_y) + 1


def render(paths: list[Path], **options) -> tuple[np.ndarray, str]:
    """The thumbnail as an RGB array, row 0 at the top, and how its frames were aligned."""
    thumbnail = color_thumbnail_from_files(paths, RenderOptions(**options))
    assert isinstance(thumbnail, ColorThumbnail)
    image = Image.open(io.BytesIO(thumbnail.image))
    assert image.format == options.get("format", "jpeg").upper() and image.mode == "RGB"
    return np.asarray(image).astype(float), thumbnail.alignment


def output_position(x: float, y: float, scale: float = BOX / SIZE) -> tuple[float, float]:
    """(row, column) in the thumbnail of data pixel (x, y): north up (+y in these frames) is a
    flip top to bottom."""
    return (SIZE - 1 - y + 0.5) * scale - 0.5, (x + 0.5) * scale - 0.5


def centroid(channel: np.ndarray, row: float, column: float, search: int = 8, radius: int = 3) -> np.ndarray:
    """(row, column) of the light-weighted centre of the brightest spot within search pixels
    of (row, column), over the pixels within radius of that centre."""

    def window(centre: np.ndarray, half: int) -> tuple[slice, slice]:
        centre_row, centre_column = np.rint(centre).astype(int)
        return (
            slice(max(centre_row - half, 0), centre_row + half + 1),
            slice(max(centre_column - half, 0), centre_column + half + 1),
        )

    background = np.median(channel)
    region = window(np.array([row, column]), search)
    centre = np.array(np.unravel_index(np.argmax(channel[region]), channel[region].shape))
    centre += [region[0].start, region[1].start]
    # A saturated star is a flat disc: its brightest pixel may sit at its edge, so the window
    # follows the centre until it settles.
    for _ in range(3):
        around = window(centre, radius)
        weights = np.clip(channel[around] - background, 0.0, None)
        rows, columns = np.mgrid[around]
        centre = np.array([(weights * rows).sum(), (weights * columns).sum()]) / weights.sum()
    return centre


def star_centroids(rgb: np.ndarray) -> np.ndarray:
    """Centroids (rows: red, green, blue) of the brightest star of the red channel."""
    red = rgb[..., 0]
    row, column = np.unravel_index(np.argmax(red), red.shape)
    return np.array([centroid(rgb[..., channel], row, column) for channel in range(3)])


def misalignment(rgb: np.ndarray) -> float:
    """How far (output pixels) the star's green and blue images lie from its red one."""
    centres = star_centroids(rgb)
    return float(np.max(np.hypot(*(centres[1:] - centres[0]).T)))


# --- alignment -------------------------------------------------------------------------------


def test_frames_with_a_wcs_are_aligned_by_it(tmp_path):
    rgb, alignment = render(rvb_frames(tmp_path), width=BOX, height=BOX, quality=95)
    assert alignment == "wcs"
    assert misalignment(rgb) < 1.0


def test_frames_without_a_wcs_are_aligned_by_registration(tmp_path):
    rgb, alignment = render(rvb_frames(tmp_path, wcs=False), width=BOX, height=BOX, quality=95)
    assert alignment == "registration"
    assert misalignment(rgb) < 1.0


@pytest.mark.parametrize(
    "cards",
    [
        {"CD1_1": 0.0, "CD1_2": 0.0},  # singular: astropy repairs it into nonsense
        {"CRVAL1": 10.0},  # another part of the sky: no overlap
        {"WCSERR": 4},  # the pipeline's astrometry failed
    ],
)
def test_frames_whose_wcs_cannot_be_trusted_are_aligned_by_registration(tmp_path, cards):
    paths = rvb_frames(tmp_path)
    with fits.open(paths[1], mode="update") as hdul:
        hdul["SCI"].header.update(cards)
    rgb, alignment = render(paths, width=BOX, height=BOX, quality=95)
    assert alignment == "registration"
    assert misalignment(rgb) < 1.0


def test_frames_that_cannot_be_aligned_show_their_offsets(tmp_path, monkeypatch, caplog):
    # The same frames as above with registration failing: what alignment has to undo.
    monkeypatch.setattr(align_module, "phase_correlation", lambda reference, image: None)
    with caplog.at_level(logging.WARNING):
        rgb, alignment = render(rvb_frames(tmp_path, wcs=False), width=BOX, height=BOX, quality=95)
    assert alignment == "none"
    assert "could not be aligned" in caplog.text
    centres = star_centroids(rgb)
    scale = BOX / SIZE
    # Drawn north up, a step in +y is a step up the thumbnail.
    expected = [(-dy * scale, dx * scale) for dx, dy in OFFSETS.values()]
    assert np.allclose(centres - centres[0], expected, atol=0.6)
    assert misalignment(rgb) > 2.0


def test_featureless_frames_without_a_wcs_still_render(tmp_path):
    paths = []
    for index in range(3):
        noise = np.random.default_rng(index).normal(1000.0, 30.0, (100, 120)).astype(np.float32)
        fits.PrimaryHDU(noise).writeto(tmp_path / f"{index}.fits")
        paths.append(tmp_path / f"{index}.fits")
    rgb, alignment = render(paths)
    assert alignment == "none"
    assert rgb.shape == (100, 120, 3)


def add_star(data: np.ndarray, x: float, y: float, flux: float, sigma: float = 1.5) -> None:
    """Add a Gaussian star of this total flux centred on data pixel (x, y), in place."""
    rows, columns = np.mgrid[: data.shape[0], : data.shape[1]]
    profile = np.exp(-((columns - x) ** 2 + (rows - y) ** 2) / (2.0 * sigma**2))
    data += (flux / (2.0 * np.pi * sigma**2) * profile).astype(data.dtype)


@pytest.mark.filterwarnings("ignore::astropy.wcs.FITSFixedWarning")
def test_frames_turned_a_little_are_aligned_by_their_wcs(tmp_path):
    # Stars at these red-frame pixels, the brightest far from the centre the frames turn about.
    stars = [(60.0, 450.0, 4e5), (400.0, 120.0, 1e5), (256.0, 256.0, 1e5), (430.0, 400.0, 1e5)]
    paths, red_wcs = [], None
    for index, (name, angle) in enumerate([("rp", 30.0), ("V", 32.0), ("B", 28.0)]):
        path = star_field(tmp_path / f"{name}.fits", SIZE, north_angle=angle, filter_name=name, compression=None)
        with fits.open(path, mode="update") as hdul:
            hdu = hdul["SCI"]
            wcs = WCS(hdu.header)
            red_wcs = red_wcs or wcs
            hdu.data = np.random.default_rng(index).normal(1000.0, 30.0, (SIZE, SIZE)).astype(np.float32)
            for x, y, flux in stars:
                add_star(hdu.data, *wcs.world_to_pixel_values(*red_wcs.pixel_to_world_values(x, y)), flux)
        paths.append(path)
    rgb, alignment = render(paths, width=BOX, height=BOX, quality=95)
    assert alignment == "wcs"
    # Two degrees at 280 px from the centre is 10 px: shifts alone would leave 5 output pixels.
    assert misalignment(rgb) < 1.0
    # Never enlarged, the thumbnail shows the square all three cover: turning a 512 px frame
    # by 2 degrees about its centre takes 9 px off each side.
    rgb, _ = render(paths, width=1000, height=1000)
    assert rgb.shape == (492, 492, 3)


def test_frames_of_different_sizes_are_cropped_to_their_overlap(tmp_path):
    crops = {"V": (slice(20, None), slice(None, 470)), "B": (slice(None, 490), slice(30, None))}
    paths = rvb_frames(tmp_path, crops=crops)
    rgb, alignment = render(paths, width=BOX, height=BOX, quality=95)
    assert alignment == "wcs"
    width, height = thumbnail_size(overlap_size(crops), (BOX, BOX))
    assert (width, height) == (236, 256)
    assert rgb.shape == (height, width, 3)
    assert misalignment(rgb) < 1.0


# --- what the thumbnail looks like -----------------------------------------------------------


@pytest.mark.parametrize(
    ("box", "expected"), [((BOX, BOX), (252, 256)), ((300, 120), (118, 120)), ((1000, 1000), (498, 505))]
)
def test_output_is_rgb_and_fits_the_box_as_the_overlap_would(tmp_path, box, expected):
    rgb, _ = render(rvb_frames(tmp_path), width=box[0], height=box[1])
    # The offsets cut 14 columns and 7 rows from what all three frames show; never enlarged.
    assert thumbnail_size(overlap_size(), box) == expected
    assert rgb.shape == (expected[1], expected[0], 3)


def test_label_is_drawn_in_the_lower_left_corner(tmp_path):
    paths = rvb_frames(tmp_path)
    plain, _ = render(paths, width=BOX, height=BOX, quality=95)
    labelled, _ = render(paths, width=BOX, height=BOX, quality=95, label="ogg0m404 rp V B")
    corner = np.abs(labelled[-30:, :120] - plain[-30:, :120])
    assert corner.max() > 100
    # White, not a colour: the three channels light up alike.
    assert np.all(np.ptp(labelled[-30:, :120][corner.max(axis=2) > 100], axis=1) < 40)
    assert np.abs(labelled[:150] - plain[:150]).max() <= 2


@pytest.mark.parametrize("median", [False, True])
def test_three_identical_frames_make_the_single_frame_picture(tmp_path, median):
    # The composite's one scale over all channels is the single frame's own when they are one frame.
    path = rvb_frames(tmp_path)[0]
    rgb, _ = render([path, path, path], width=BOX, height=BOX, quality=95, median=median)
    grey = np.asarray(
        Image.open(
            io.BytesIO(thumbnail_from_file(path, RenderOptions(width=BOX, height=BOX, quality=95, median=median)))
        )
    ).astype(float)
    for channel in range(3):
        assert np.abs(rgb[..., channel] - grey).mean() < 1.5


def blueness(rgb: np.ndarray, x: float, y: float) -> float:
    """Blue minus red around the star drawn for data pixel (x, y) of the red frame."""
    row, column = np.rint(centroid(rgb.sum(axis=2), *output_position(x, y))).astype(int)
    patch = rgb[row - 1 : row + 2, column - 1 : column + 2]
    return float(patch[..., 2].mean() - patch[..., 0].mean())


# Two stars at these red-frame pixels with these red, visual, blue fluxes (times a scale): one bright in
# blue, one in red.
BLUE_STAR, RED_STAR = (150.0, 400.0), (400.0, 150.0)
STAR_FLUXES = {BLUE_STAR: (1.0, 2.0, 4.0), RED_STAR: (4.0, 2.0, 1.0)}


def add_coloured_stars(paths: list[Path], scale: float) -> None:
    """Add BLUE_STAR and RED_STAR, their fluxes times scale, to rvb_frames' red, visual and blue frames."""
    for channel, (path, (dx, dy)) in enumerate(zip(paths, OFFSETS.values())):
        with fits.open(path, mode="update") as hdul:
            for (x, y), fluxes in STAR_FLUXES.items():
                add_star(hdul["SCI"].data, x + dx, y + dy, scale * fluxes[channel])


def test_lupton_keeps_star_colours(tmp_path):
    paths = rvb_frames(tmp_path)
    # Well above the zscale white point.
    add_coloured_stars(paths, 20000.0)
    rgb, _ = render(paths, width=BOX, height=BOX, quality=95, stretch="lupton")
    assert blueness(rgb, *BLUE_STAR) > 40.0
    assert blueness(rgb, *RED_STAR) < -40.0


# --- colour balance --------------------------------------------------------------------------

# Each filter's gain (sky and stars alike), sky offset and added read noise (counts): skies of about 1000,
# 2500 and 500 counts, with noise of about 32, 62 and 97.
UNEVEN_SKIES = {"rp": (1.0, 0.0, 0.0), "V": (0.5, 2000.0, 60.0), "B": (3.0, -2500.0, 10.0)}
# Below the zscale white point: a star drawn white in every channel has no colour left to show.
ZSCALE_STAR_SCALE = 2000.0


@pytest.fixture(scope="module")
def demo_rvb(tmp_path_factory) -> list[Path]:
    """The demo's R, V and B frames, as `thumbproxy demo` serves them."""
    return rvb_set(tmp_path_factory.mktemp("demo"))


def uneven_frames(directory: Path, star_scale: float = 0.0) -> list[Path]:
    """rvb_frames with add_coloured_stars (when star_scale), then each filter's gain, sky and noise as UNEVEN_SKIES."""
    paths = rvb_frames(directory)
    if star_scale:
        add_coloured_stars(paths, star_scale)
    for channel, (path, (gain, offset, noise)) in enumerate(zip(paths, UNEVEN_SKIES.values())):
        with fits.open(path, mode="update") as hdul:
            data = hdul["SCI"].data
            read_noise = np.random.default_rng(channel).normal(0.0, noise, data.shape)
            hdul["SCI"].data = (data * gain + offset + read_noise).astype(np.float32)
    return paths


def sky_levels(rgb: np.ndarray) -> np.ndarray:
    """Each channel's median over the pixels where no channel shows a star (3 clipped deviations above its sky)."""
    stats = [sigma_clipped_stats(rgb[..., channel]) for channel in range(3)]
    sky = np.all([rgb[..., channel] < median + 3.0 * std for channel, (_, median, std) in enumerate(stats)], axis=0)
    return np.array([np.median(rgb[..., channel][sky]) for channel in range(3)])


@pytest.mark.parametrize("options", [{}, {"width": 500, "height": 500}, {"median": True}])
def test_demo_frames_have_a_neutral_sky(demo_rvb, options):
    rgb, _ = render(demo_rvb, **options)
    sky = sky_levels(rgb)
    assert np.ptp(sky) <= 3.0, sky
    # A dark grey with its grain, not clipped to black.
    assert sky.min() >= 10.0, sky


@pytest.mark.parametrize("box", [BOX, 128])
def test_frames_of_uneven_sky_and_noise_have_a_neutral_sky(tmp_path, box):
    rgb, _ = render(uneven_frames(tmp_path), width=box, height=box)
    sky = sky_levels(rgb)
    assert np.ptp(sky) <= 3.0, sky
    assert sky.min() >= 10.0, sky


@pytest.mark.parametrize("uneven", [False, True])
def test_zscale_keeps_star_colours(tmp_path, uneven):
    if uneven:
        paths = uneven_frames(tmp_path, ZSCALE_STAR_SCALE)
    else:
        paths = rvb_frames(tmp_path)
        add_coloured_stars(paths, ZSCALE_STAR_SCALE)
    rgb, _ = render(paths, width=BOX, height=BOX, quality=95)
    assert blueness(rgb, *BLUE_STAR) > 20.0
    assert blueness(rgb, *RED_STAR) < -20.0


@pytest.mark.parametrize("stretch", ["zscale", "lupton"])
def test_weights_make_sky_and_stars_bluer(tmp_path, stretch):
    paths = rvb_frames(tmp_path)
    add_coloured_stars(paths, ZSCALE_STAR_SCALE if stretch == "zscale" else 20000.0)
    plain, _ = render(paths, width=BOX, height=BOX, quality=95, stretch=stretch)
    bluer, _ = render(paths, width=BOX, height=BOX, quality=95, stretch=stretch, weights=(1.0, 1.0, 2.0))
    plain_sky, bluer_sky = sky_levels(plain), sky_levels(bluer)
    assert bluer_sky[2] - bluer_sky[0] >= plain_sky[2] - plain_sky[0] + 4.0, (plain_sky, bluer_sky)
    for star in STAR_FLUXES:
        assert blueness(bluer, *star) >= blueness(plain, *star) + 8.0, star


def test_zscale_weights_scale_each_channel_alone(tmp_path):
    paths = rvb_frames(tmp_path)
    plain, _ = render(paths, width=BOX, height=BOX, format="png")
    dimmer, _ = render(paths, width=BOX, height=BOX, format="png", weights=(0.5, 1.0, 1.0))
    # Red's white point moved: its light is half as bright; green and blue are drawn as they were.
    assert np.array_equal(dimmer[..., 1:], plain[..., 1:])
    assert plain[..., 0].mean() - dimmer[..., 0].mean() > 4.0


# --- files that cannot be rendered -----------------------------------------------------------


def test_unreadable_frame_raises_render_error(tmp_path):
    paths = rvb_frames(tmp_path)
    bad = tmp_path / "bad.fits.fz"
    bad.write_text("<!DOCTYPE html><html><body><h1>502 Bad Gateway</h1></body></html>")
    with pytest.raises(RenderError, match=r"^cannot render bad\.fits\.fz: "):
        color_thumbnail_from_files([paths[0], bad, paths[2]], RenderOptions())


def test_missing_frame_is_not_a_render_error(tmp_path):
    paths = rvb_frames(tmp_path)
    with pytest.raises(FileNotFoundError):
        color_thumbnail_from_files([paths[0], paths[1], tmp_path / "absent.fits"], RenderOptions())
