"""color_thumbnail_from_files: frames lined up, cut to what they share, scaled, coloured, refused."""

import io
import logging
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS
from PIL import Image

import thumbproxy.render.align as align_module
from thumbproxy.demo.sampledata import star_field
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
    assert image.format == "JPEG" and image.mode == "RGB"
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
def test_zscale_channels_are_scaled_like_single_frames(tmp_path, median):
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


def test_lupton_keeps_star_colours(tmp_path):
    paths = rvb_frames(tmp_path)
    # Two stars well above the zscale white point, one brightest in blue, one in red.
    blue_star, red_star = (150.0, 400.0), (400.0, 150.0)
    for path, (dx, dy), (blue_flux, red_flux) in zip(paths, OFFSETS.values(), [(1.0, 4.0), (2.0, 2.0), (4.0, 1.0)]):
        with fits.open(path, mode="update") as hdul:
            add_star(hdul["SCI"].data, blue_star[0] + dx, blue_star[1] + dy, 20000.0 * blue_flux)
            add_star(hdul["SCI"].data, red_star[0] + dx, red_star[1] + dy, 20000.0 * red_flux)
    rgb, _ = render(paths, width=BOX, height=BOX, quality=95, stretch="lupton")
    assert blueness(rgb, *blue_star) > 40.0
    assert blueness(rgb, *red_star) < -40.0


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
