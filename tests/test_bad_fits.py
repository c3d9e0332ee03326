"""FITS files that cannot be rendered: a 422 naming the reason, no temp files, the render pool unharmed."""

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from PIL import Image

from conftest import Service, read_pixels, write_fits_file
from fakearchive import FakeArchive
from hostilefits import ASTROPY_FAILURES
from thumbproxy.app import RENDER_POOL
from thumbproxy.demo import sampledata
from thumbproxy.render.errors import UnreadableFrame
from thumbproxy.render.fitsread import NOT_READABLE_FITS

SHAPE = (48, 48)
HTML_PAGE = b"<!DOCTYPE html>\n<html><body><h1>502 Bad Gateway</h1></body></html>\n"


def pixels(shape: tuple[int, ...] = SHAPE) -> np.ndarray:
    """A noisy float32 sky: 9 KB at the default shape."""
    return np.random.default_rng(0).normal(100.0, 10.0, shape).astype(np.float32)


def write_compressed(path: Path, data: np.ndarray, checksum: bool = False) -> Path:
    """The layout fpack writes: an empty primary HDU, the image RICE-compressed in extension 1."""
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(data, compression_type="RICE_1")]).writeto(
        path, checksum=checksum
    )
    return path


def heap(path: Path) -> range:
    """Offsets of the compressed tile bytes of extension 1 in the file at path."""
    with fits.open(path, disable_image_compression=True) as hdul:
        table = hdul[1].header
        start = hdul.fileinfo(1)["datLoc"] + table.get("THEAP", table["NAXIS1"] * table["NAXIS2"])
        return range(start, start + table["PCOUNT"])


def flip_bit(path: Path) -> Path:
    """Flip the lowest bit of the first pixel of the first tile, which RICE stores verbatim: the
    tiles still decompress, to one slightly wrong pixel."""
    raw = bytearray(path.read_bytes())
    raw[heap(path).start + 3] ^= 0x01
    path.write_bytes(bytes(raw))
    return path


# --- the bad files ---------------------------------------------------------------------------


def zero_bytes(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def truncated(path: Path) -> Path:
    """A valid header, the pixels cut off half-way."""
    fits.PrimaryHDU(pixels()).writeto(path)
    with fits.open(path) as hdul:
        data_start = hdul.fileinfo(0)["datLoc"]
    path.write_bytes(path.read_bytes()[: data_start + pixels().nbytes // 2])
    return path


def html_page(path: Path) -> Path:
    """What a misbehaving proxy serves in place of the file."""
    path.write_bytes(HTML_PAGE)
    return path


def table_only(path: Path) -> Path:
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU(Table({"flux": [1.0, 2.0, 3.0]}))]).writeto(path)
    return path


def zeroed_tiles(path: Path) -> Path:
    """Tile-compressed, with the middle of the compressed tiles zeroed: decompression fails."""
    write_compressed(path, pixels())
    raw = bytearray(path.read_bytes())
    tiles = heap(path)
    middle = tiles.start + len(tiles) // 4
    raw[middle : middle + len(tiles) // 2] = bytes(len(tiles) // 2)
    path.write_bytes(bytes(raw))
    return path


def flipped_tile_bit(path: Path) -> Path:
    """Tile-compressed with a DATASUM card, as fpack writes, and one bit of the tiles flipped."""
    return flip_bit(write_compressed(path, pixels(), checksum=True))


def oversized(path: Path) -> Path:
    """A small compressed image whose header claims 20000 x 20000 pixels, as a damaged header might."""
    write_compressed(path, pixels())
    with fits.open(path, mode="update", disable_image_compression=True) as hdul:
        hdul[1].header["ZNAXIS1"] = 20000
        hdul[1].header["ZNAXIS2"] = 20000
    return path


# What each bad file does, and the reason a user is given.
BAD_FILES: dict[str, tuple[Callable[[Path], Path], str]] = {
    "zero bytes": (zero_bytes, "the file is empty"),
    "truncated": (truncated, "the file is truncated"),
    "HTML page": (html_page, "not a FITS file but an HTML or XML page"),
    "table only": (table_only, "no HDU holds an image or a 1-D spectrum"),
    "zeroed tiles": (zeroed_tiles, "the compressed image data are corrupt ("),
    "flipped tile bit": (flipped_tile_bit, "the compressed image data are corrupt: their checksum"),
    "oversized": (oversized, "the image is too large to render (20000 x 20000 pixels)"),
    # astropy's own exception says nothing a user can act on.
    **{kind: (make, NOT_READABLE_FITS) for kind, make in ASTROPY_FAILURES.items()},
}


# --- reading, without the service ------------------------------------------------------------


@pytest.mark.parametrize("kind", BAD_FILES)
def test_bad_files_are_unreadable_with_a_short_reason(tmp_path: Path, kind: str) -> None:
    make, reason = BAD_FILES[kind]
    with pytest.raises(UnreadableFrame) as raised:
        read_pixels(make(tmp_path / "frame.fits.fz"))
    assert str(raised.value).startswith(reason)
    assert str(tmp_path) not in str(raised.value)


@pytest.mark.parametrize("kind", ASTROPY_FAILURES)
def test_a_file_astropy_fails_on_is_not_a_readable_fits_file(tmp_path: Path, kind: str) -> None:
    with pytest.raises(UnreadableFrame) as raised:
        read_pixels(ASTROPY_FAILURES[kind](tmp_path / "frame.fits"))
    assert str(raised.value) == NOT_READABLE_FITS
    # What astropy raised, which the message does not repeat.
    assert raised.value.__cause__ is not None and not isinstance(raised.value.__cause__, UnreadableFrame)


def test_a_flipped_bit_decompresses_silently_so_only_the_checksum_catches_it(tmp_path: Path) -> None:
    # Without a DATASUM card, the damaged tiles decode into wrong pixels and no error.
    damaged = read_pixels(flip_bit(write_compressed(tmp_path / "plain.fits.fz", pixels())))
    intact = read_pixels(write_compressed(tmp_path / "intact.fits.fz", pixels()))
    assert damaged.shape == intact.shape and not np.array_equal(damaged, intact)
    with pytest.raises(UnreadableFrame, match="checksum"):
        read_pixels(flip_bit(write_compressed(tmp_path / "summed.fits.fz", pixels(), checksum=True)))


@pytest.mark.filterwarnings("error")
def test_warnings_while_reading_do_not_make_a_frame_unreadable(tmp_path: Path) -> None:
    # Bytes after the last HDU make astropy warn; a strict warnings filter must not turn that into a failure.
    path = write_compressed(tmp_path / "trailing.fits.fz", pixels(), checksum=True)
    path.write_bytes(path.read_bytes() + b"\0" * 100)
    assert read_pixels(path).shape == SHAPE


@pytest.mark.filterwarnings("error")
def test_a_file_cut_short_after_its_image_still_reads(tmp_path: Path) -> None:
    path = tmp_path / "cut.fits"
    fits.HDUList([fits.PrimaryHDU(pixels()), fits.ImageHDU(pixels((100, 100)), name="ERR")]).writeto(path)
    path.write_bytes(path.read_bytes()[:-20000])
    assert np.array_equal(read_pixels(path), pixels())


# --- through the service -----------------------------------------------------------------------


def assert_cannot_render(message: str, filename: str, reason: str, tmp_dir: Path) -> None:
    """A message a user can act on: which file, why, and nothing of the server's insides."""
    # The frame's own file name, not the temporary one it was downloaded to.
    assert message.startswith(f"cannot render {filename}: "), message
    assert f": {reason}" in message, message
    assert str(tmp_dir) not in message and "Traceback" not in message, message


async def test_unrenderable_frames_answer_422_and_leave_no_trace(
    service: Service, fake_archive: FakeArchive, tmp_path: Path
) -> None:
    good = fake_archive.add_frame(
        write_fits_file(tmp_path / "ogg0m404-kb82-20190321-0001-e91.fits.fz", shape=SHAPE, compressed=True)
    )
    workers = sorted(service.app[RENDER_POOL].worker_pids())
    for number, (kind, (make, reason)) in enumerate(BAD_FILES.items(), start=2):
        bad = fake_archive.add_frame(make(tmp_path / f"ogg0m404-kb82-20190321-{number:04d}-e91.fits.fz"))
        # JSON, image, and the image again: the refusal of the frame version is remembered, so only the first
        # downloads and decodes.
        for query in ("", "?image=true", "?image=true"):
            response = await service.get(f"/{bad['id']}/{query}")
            assert response.status == 422, f"{kind}{query}: {await response.text()}"
            body = await response.json()
            assert set(body) == {"message"}
            assert_cannot_render(body["message"], bad["filename"], reason, service.tmp_dir)
            if reason == NOT_READABLE_FITS:
                assert body["message"] == f"cannot render {bad['filename']}: {NOT_READABLE_FITS}"
        assert fake_archive.downloads[bad["id"]] == 1, kind
        assert service.temp_files() == [], kind
        # A new width is a new thumbnail, so this renders in the same worker rather than hitting the cache.
        image = await service.image(f"/{good['id']}/?image=true&width={20 + number}")
        assert image.size == (20 + number, 20 + number), kind
        assert sorted(service.app[RENDER_POOL].worker_pids()) == workers, f"{kind}: a render worker died"


async def test_a_bad_channel_of_a_colour_composite_is_422_and_every_download_removed(
    service: Service, fake_archive: FakeArchive, tmp_path: Path
) -> None:
    request = {"request_id": 1766530, "observation_date": "2019-03-21T08:00:00Z"}
    red = fake_archive.add_frame(
        zeroed_tiles(tmp_path / "ogg0m404-kb82-20190321-0001-e91.fits.fz"), primary_optical_element="rp", **request
    )
    visual, blue = (
        fake_archive.add_frame(
            sampledata.star_field(
                tmp_path / f"ogg0m404-kb82-20190321-000{number}-e91.fits.fz", size=48, filter_name=name
            ),
            primary_optical_element=name,
            **request,
        )
        for number, name in ((2, "V"), (3, "B"))
    )
    workers = sorted(service.app[RENDER_POOL].worker_pids())
    response = await service.get(f"/{visual['id']}/?color=true&image=true")
    assert response.status == 422, await response.text()
    assert_cannot_render(
        (await response.json())["message"], red["filename"], "the compressed image data are corrupt", service.tmp_dir
    )
    assert [fake_archive.downloads[frame["id"]] for frame in (red, visual, blue)] == [1, 1, 1]
    assert service.temp_files() == []
    assert sorted(service.app[RENDER_POOL].worker_pids()) == workers


def write_primary(data: np.ndarray) -> Callable[[Path], Path]:
    def write(path: Path) -> Path:
        fits.PrimaryHDU(data).writeto(path)
        return path

    return write


async def test_odd_but_whole_images_render(service: Service, fake_archive: FakeArchive, tmp_path: Path) -> None:
    """What a user sees of images that are whole but unusual: each a thumbnail, none a 500."""
    extremes = np.random.default_rng(0).uniform(1e38, 3.4e38, (64, 64)).astype(np.float32)
    cases = {
        # Every pixel masked: masked pixels are drawn black.
        "all NaN": (write_primary(np.full(SHAPE, np.nan, np.float32)), "", (48, 48)),
        # A single row is a 1-D spectrum: plotted, filling the box.
        "one pixel": (write_primary(np.ones((1, 1), np.float32)), "", (200, 200)),
        "one row": (write_primary(pixels((1, 40))), "", (200, 200)),
        # The first plane of a cube, as thumbnail_from_file documents.
        "cube": (write_primary(pixels((3, 30, 40))), "", (40, 30)),
        # Shrunk 4x, block sums overflow float32: numpy warns in the worker, and the answer is still a thumbnail.
        "float32 extremes": (write_primary(extremes), "&width=16&height=16", (16, 16)),
    }
    for number, (kind, (make, options, size)) in enumerate(cases.items(), start=1):
        frame = fake_archive.add_frame(make(tmp_path / f"ogg0m404-kb82-20190321-{number:04d}-e91.fits"))
        response = await service.get(f"/{frame['id']}/?image=true{options}")
        assert response.status == 200, f"{kind}: {await response.text()}"
        image = Image.open(io.BytesIO(await response.read()))
        assert image.size == size, kind
        if kind == "all NaN":
            assert np.asarray(image.convert("L")).max() <= 2
    assert service.temp_files() == []
