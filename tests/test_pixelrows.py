"""Rows kept as a compressed frame's scaled integers: their pixels are exactly the float pixels read,
their block means are those of the float pixels to float32 rounding, blank pixels left out."""

from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from test_rowtiles import COLUMNS, ROWS, sky, write
from thumbproxy.render.fitsread import open_image
from thumbproxy.render.pixelrows import FloatRows, ScaledRows
from thumbproxy.render.reduce import block_mean
from thumbproxy.render.samples import band_samples


def integer_frame(path: Path) -> Path:
    """Signed 32-bit integers scaled by BSCALE and BZERO, row-tiled."""
    hdu = fits.CompImageHDU(
        np.random.default_rng(4).integers(-50_000, 50_000, (ROWS, COLUMNS)) * 0.5 + 100.0,
        name="SCI",
        compression_type="RICE_1",
    )
    hdu.scale("int32", bscale=0.5, bzero=100.0)
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path)
    return path


FRAMES = {
    "quantized with NaN, one row per tile": lambda path: write(
        path, sky(), quantize_method=-1, tile_shape=(1, COLUMNS)
    ),
    "quantized with NaN, 16 rows per tile": lambda path: write(
        path, sky(), quantize_method=-1, tile_shape=(16, COLUMNS)
    ),
    "scaled integers": integer_frame,
}


@pytest.fixture(params=sorted(FRAMES))
def frame(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    return FRAMES[request.param](tmp_path / "frame.fits.fz")


def test_undithered_row_tiles_are_read_as_scaled_integers(frame: Path) -> None:
    with open_image(frame, memory_mapped=True) as image:
        assert isinstance(image.read_rows(slice(0, 32)), ScaledRows)


def test_scaled_pixels_are_the_float_pixels_read(frame: Path) -> None:
    with open_image(frame, memory_mapped=True) as image:
        rows = slice(16, 112)
        scaled, floats = image.read_rows(rows), image.read(rows)
        assert np.array_equal(scaled.take(np.arange(floats.size)), floats.reshape(-1), equal_nan=True)
        # So are the samples a frame's tone is measured from.
        ours, theirs = (
            band_samples(scaled, 16 * COLUMNS, ROWS * COLUMNS),
            band_samples(floats, 16 * COLUMNS, ROWS * COLUMNS),
        )
        for field in ("limit_samples", "median_samples", "differences"):
            assert np.array_equal(getattr(ours, field), getattr(theirs, field)), field


@pytest.mark.parametrize("factor", [1, 2, 3, 5])
def test_block_means_of_scaled_rows_are_those_of_the_float_pixels(frame: Path, factor: int) -> None:
    with open_image(frame, memory_mapped=True) as image:
        rows = slice(0, 16 * (ROWS // 16))
        scaled, floats = image.read_rows(rows).block_mean(factor), FloatRows(image.read(rows)).block_mean(factor)
    assert scaled.dtype == np.float32 and scaled.shape == floats.shape
    # Blocks with a NaN pixel average the others: only single pixels are NaN.
    assert np.array_equal(np.isnan(scaled), np.isnan(floats)) and (factor == 1 or not np.isnan(scaled).any())
    assert np.allclose(scaled, floats, rtol=1e-6, atol=0, equal_nan=True)


def test_blocks_with_blank_pixels_average_the_others(tmp_path: Path) -> None:
    data = sky()
    data[40:44, 60:64] = np.nan
    path = write(tmp_path / "blank.fits.fz", data, quantize_method=-1, tile_shape=(1, COLUMNS))
    with open_image(path, memory_mapped=True) as image:
        rows = slice(0, 200)
        means, floats = image.read_rows(rows).block_mean(4), image.read(rows)
    blank = np.isnan(floats[:, :148]).reshape(50, 4, 37, 4).any(axis=(1, 3))
    assert blank.sum() > 2
    # The mean of their other pixels, as for float pixels; NaN for the block with no other.
    assert np.array_equal(means[blank], block_mean(floats, 4)[blank], equal_nan=True)
    assert np.isnan(means[10, 15]) and np.isnan(means).sum() == 1


def test_scaled_pixels_too_large_for_float32_are_left_out_of_their_block() -> None:
    quantized = np.full((4, 4), 2**30, np.int32)
    quantized[0, 0] = 2**31 - 1
    rows = ScaledRows(quantized, np.full((4, 1), np.float32(1e30)), np.zeros((4, 1), np.float32), blank=None)
    # Every pixel overflows float32 to inf: no finite pixel is left to average.
    assert np.isnan(rows.block_mean(2)).all() and np.isnan(rows.block_mean(1)).all()
    assert np.array_equal(np.isnan(block_mean(rows.take(np.arange(16)).reshape(4, 4), 2)), np.isnan(rows.block_mean(2)))
