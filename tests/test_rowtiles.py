"""The fast reader of row-tiled RICE frames gives astropy's pixels: exactly when dithered or 16-bit
integers, within two units in the last place of float32 otherwise; any layout it does not know is
left to astropy."""

from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from conftest import read_pixels
from thumbproxy.render.fitsread import _compressed_tiles, open_image
from thumbproxy.render.rowtiles import RowTiles

ROWS, COLUMNS = 203, 150


def sky(seed: int = 7) -> np.ndarray:
    """A noisy float32 sky with bright stars, a negative dip and a few NaN pixels."""
    rng = np.random.default_rng(seed)
    data = rng.normal(1000.0, 12.0, (ROWS, COLUMNS)).astype(np.float32)
    data[rng.integers(0, ROWS, 40), rng.integers(0, COLUMNS, 40)] = 60000.0
    data[50:60, 20:30] = -500.0
    data[rng.integers(0, ROWS, 9), rng.integers(0, COLUMNS, 9)] = np.nan
    return data


def write(path: Path, data: np.ndarray, **compression: object) -> Path:
    fits.HDUList(
        [fits.PrimaryHDU(), fits.CompImageHDU(data, name="SCI", compression_type="RICE_1", **compression)]
    ).writeto(path)
    return path


def astropy_pixels(path: Path, rows: slice = slice(None)) -> np.ndarray:
    with fits.open(path) as hdul:
        return hdul["SCI"].section[rows]


def fast_pixels(path: Path, rows: slice = slice(None)) -> np.ndarray:
    with open(path, "rb") as file, fits.open(file, disable_image_compression=True) as hdul:
        tiles = RowTiles.of(hdul["SCI"], file)
        assert tiles is not None, "this layout should be read by RowTiles"
        try:
            return tiles.read(rows)
        finally:
            tiles.close()


ROW_SLICES = (slice(None), slice(0, 1), slice(17, 18), slice(31, 97), slice(190, ROWS), slice(5, 5))


@pytest.mark.parametrize("method", [1, 2])
@pytest.mark.parametrize("tile_rows", [1, 16])
def test_dithered_frames_read_exactly_as_astropy_reads_them(tmp_path: Path, method: int, tile_rows: int) -> None:
    data = sky()
    # Exact zeros are what SUBTRACTIVE_DITHER_2 keeps exact (a whole row of them would be stored losslessly).
    data[100:104, 10:40] = 0.0
    path = write(
        tmp_path / "dithered.fits.fz", data, quantize_method=method, dither_seed=1234, tile_shape=(tile_rows, COLUMNS)
    )
    for rows in ROW_SLICES:
        assert np.array_equal(fast_pixels(path, rows), astropy_pixels(path, rows), equal_nan=True), rows


@pytest.mark.parametrize("tile_rows", [1, 16])
def test_undithered_frames_read_within_two_units_in_the_last_place(tmp_path: Path, tile_rows: int) -> None:
    path = write(tmp_path / "plain.fits.fz", sky(), quantize_method=-1, tile_shape=(tile_rows, COLUMNS))
    for rows in ROW_SLICES:
        fast, theirs = fast_pixels(path, rows), astropy_pixels(path, rows)
        assert fast.dtype == np.float32 and fast.shape == theirs.shape
        assert np.array_equal(np.isnan(fast), np.isnan(theirs))
        finite = np.isfinite(theirs)
        assert np.all(np.abs(fast[finite] - theirs[finite]) <= 2 * np.spacing(np.abs(theirs[finite])))


def test_nan_pixels_stay_nan(tmp_path: Path) -> None:
    data = sky()
    path = write(tmp_path / "nan.fits.fz", data)
    assert np.array_equal(np.isnan(fast_pixels(path)), np.isnan(data))


def test_integer_frames_read_as_astropy_scales_them(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    # A raw frame: unsigned 16-bit counts, stored as int16 with BZERO = 32768.
    unsigned = rng.integers(0, 65536, (ROWS, COLUMNS)).astype(np.uint16)
    # And signed 32-bit integers scaled by BSCALE and BZERO.
    scaled = fits.CompImageHDU(
        rng.integers(-50_000, 50_000, (ROWS, COLUMNS)) * 0.5 + 100.0, name="SCI", compression_type="RICE_1"
    )
    scaled.scale("int32", bscale=0.5, bzero=100.0)
    frames = {"unsigned": fits.CompImageHDU(unsigned, name="SCI", compression_type="RICE_1"), "scaled": scaled}
    for name, hdu in frames.items():
        path = tmp_path / f"{name}.fits.fz"
        fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path)
        with fits.open(path, disable_image_compression=True) as tables:
            assert (tables["SCI"].header["ZBITPIX"], tables["SCI"].header.get("BZERO")) == (
                {"unsigned": (16, 32768), "scaled": (32, 100.0)}[name]
            )
        for rows in ROW_SLICES:
            fast, theirs = fast_pixels(path, rows), astropy_pixels(path, rows)
            assert fast.dtype == np.float32 and np.array_equal(fast, theirs.astype(np.float32)), (name, rows)


@pytest.mark.parametrize(
    "layout",
    [
        {"data": np.arange(ROWS * COLUMNS, dtype=np.uint8).reshape(ROWS, COLUMNS)},
        {"data": sky(), "tile_shape": (16, 50)},
        {"data": sky(), "compression_type": "GZIP_1"},
        # A constant row does not quantize: its tile is stored losslessly, in another column.
        {"data": np.where(np.arange(ROWS)[:, None] == 9, np.float32(0.0), sky())},
    ],
)
def test_other_layouts_are_left_to_astropy(tmp_path: Path, layout: dict) -> None:
    data = layout.pop("data")
    compression = {"compression_type": "RICE_1", **layout}
    path = tmp_path / "other.fits.fz"
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(data, name="SCI", **compression)]).writeto(path)
    with open(path, "rb") as file, fits.open(file, disable_image_compression=True) as hdul:
        assert RowTiles.of(hdul["SCI"], file) is None
    # And the frame reads as astropy reads it.
    assert np.array_equal(read_pixels(path), astropy_pixels(path), equal_nan=True)


def test_a_frame_is_read_through_the_fast_reader_band_by_band(tmp_path: Path) -> None:
    path = write(tmp_path / "dithered.fits.fz", sky(), quantize_method=1)
    with open_image(path, memory_mapped=True) as image:
        bands = [image.read(slice(start, start + 40)) for start in range(0, ROWS, 40)]
    assert np.array_equal(np.concatenate(bands), astropy_pixels(path), equal_nan=True)


def test_without_astropy_keeping_the_table_the_file_is_opened_again_as_tables(tmp_path: Path) -> None:
    path = write(tmp_path / "dithered.fits.fz", sky(), quantize_method=1)
    with open(path, "rb") as file, fits.open(file) as hdul:
        # An HDU with no `_bintable`, as older astropy versions make them.
        tiles = _compressed_tiles(path, object(), hdul.index_of("SCI"), file, check_datasum=True)
        assert tiles is not None
        try:
            assert np.array_equal(tiles.read(slice(None)), astropy_pixels(path), equal_nan=True)
        finally:
            tiles.close()
