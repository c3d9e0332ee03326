"""Frames crafted to break the renderer: each answers a JSON 4xx naming the file, and the service goes on."""

import asyncio
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from astropy.io import fits

from conftest import WIDE, Service, ServiceFactory, resident_mib
from fakearchive import FakeArchive
from hostilefits import (
    gzip_bomb,
    misshapen_hcompress,
    one_tile_per_pixel,
    rice_setting,
    tile_outside_the_data,
    tile_table_of_other_tiles,
    with_card,
)
from thumbproxy.app import RENDER_POOL
from thumbproxy.demo.sampledata import star_field
from thumbproxy.ops import readiness
from thumbproxy.render import fitsread


@pytest.fixture
def normal_frame(fake_archive: FakeArchive, write_fits: Callable[..., Path], tmp_path: Path) -> dict[str, Any]:
    return fake_archive.add_frame(write_fits(tmp_path / "normal.fits.fz", shape=WIDE, compressed=True))


async def answers_normally(service: Service, frame: dict[str, Any]) -> bool:
    return (await service.get(f"/{frame['id']}/?image=true")).status == 200


@pytest.mark.parametrize(
    ("keyword", "value", "reason"),
    [
        ("ZNAXIS2", "-300", "the image has no pixels"),
        ("ZNAXIS1", "-400", "the image has no pixels"),
        ("ZTILE2", "0", "its compression tiles have no pixels"),
    ],
)
async def test_a_compressed_image_declared_without_pixels_is_a_422(
    service: Service,
    fake_archive: FakeArchive,
    write_fits: Callable[..., Path],
    tmp_path: Path,
    normal_frame: dict[str, Any],
    keyword: str,
    value: str,
    reason: str,
) -> None:
    path = with_card(write_fits(tmp_path / "hostile.fits.fz", shape=WIDE, compressed=True), keyword, value)
    hostile = fake_archive.add_frame(path)

    response = await service.get(f"/{hostile['id']}/?image=true")

    assert response.status == 422
    assert (await response.json())["message"].startswith(f"cannot render {hostile['filename']}: {reason}")
    assert await answers_normally(service, normal_frame)


async def test_an_unparsable_wcs_card_renders_without_the_wcs(
    service: Service, fake_archive: FakeArchive, write_fits: Callable[..., Path], tmp_path: Path
) -> None:
    header = {"CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN", "CD1_1": 1e-4, "CD1_2": 0.0, "CD2_1": 0.0, "CD2_2": 1e-4}
    path = with_card(write_fits(tmp_path / "nan-wcs.fits", header=header, shape=WIDE), "CD1_1", "NAN")
    frame = fake_archive.add_frame(path)

    image = await service.image(f"/{frame['id']}/?image=true")

    # No usable WCS: flipped top to bottom, the landscape frame stays landscape.
    assert image.size == (200, 150)


async def test_a_colour_composite_of_frames_too_small_to_overlap_is_a_422(
    service: Service,
    fake_archive: FakeArchive,
    write_fits: Callable[..., Path],
    tmp_path: Path,
    normal_frame: dict[str, Any],
) -> None:
    frames = [
        fake_archive.add_frame(
            write_fits(tmp_path / f"{name}.fits.fz", shape=shape, compressed=True, seed=seed),
            primary_optical_element=filter_name,
            request_id=1766530,
        )
        for seed, (name, filter_name, shape) in enumerate(
            (("red", "rp", (2, 1)), ("visual", "V", (3, 1)), ("blue", "B", (2, 1)))
        )
    ]

    response = await service.get(f"/{frames[0]['id']}/?color=true&image=true")

    assert response.status == 422
    assert "too small for a colour composite" in (await response.json())["message"]
    assert await answers_normally(service, normal_frame)


async def test_a_refused_frame_version_is_refused_again_without_another_download_or_decode(
    start_service: ServiceFactory, fake_archive: FakeArchive, write_fits: Callable[..., Path], tmp_path: Path
) -> None:
    service = await start_service(THUMBPROXY_METADATA_TTL="0.5")
    path = with_card(write_fits(tmp_path / "hostile.fits.fz", shape=WIDE, compressed=True), "ZTILE2", "0")
    hostile = fake_archive.add_frame(path)

    answers = [await service.get(f"/{hostile['id']}/?image=true&width={width}") for width in (100, 200, 300)]

    assert [answer.status for answer in answers] == [422] * 3
    assert len({(await answer.json())["message"] for answer in answers}) == 1
    assert fake_archive.downloads[hostile["id"]] == 1
    assert service.metric("thumbproxy_renders_total", kind="mono", result="error") == 1
    # A new version of the frame is a new file: it is tried.
    fake_archive.new_version(hostile["id"], write_fits(tmp_path / "fixed.fits.fz", shape=WIDE, compressed=True))
    await asyncio.sleep(0.6)
    assert (await service.get(f"/{hostile['id']}/?image=true&width=100")).status == 200


async def test_a_tmp_dir_that_takes_no_file_is_a_503_naming_it_and_shows_in_readiness(
    start_service: ServiceFactory,
    normal_frame: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(readiness, "CACHE_SECONDS", 0.0)
    service = await start_service(THUMBPROXY_READY_REQUIRED="pool,tmp")
    assert (await service.get("/readyz")).status == 200
    # A file where the directory was: nothing can be created in it, even by root.
    shutil.rmtree(service.tmp_dir)
    service.tmp_dir.write_bytes(b"")

    answers = [await service.get(f"/{normal_frame['id']}/?image=true&width={width}") for width in (100, 120)]

    assert [answer.status for answer in answers] == [503, 503]
    assert "TMP_DIR" in (await answers[0].json())["message"] and answers[0].headers["Retry-After"] == "60"
    ready = await service.get("/readyz")
    assert ready.status == 503 and (await ready.json())["checks"]["tmp"]["status"] == "failing"
    assert len([record for record in caplog.records if "TMP_DIR" in record.getMessage()]) == 1


async def test_a_frame_of_one_pixel_tiles_is_stopped_at_its_cpu_time_and_the_pool_goes_on(
    start_service: ServiceFactory, fake_archive: FakeArchive, tmp_path: Path, normal_frame: dict[str, Any]
) -> None:
    service = await start_service(THUMBPROXY_RENDER_CPU_SECONDS="0.1")
    data = np.random.default_rng(1).normal(100.0, 10.0, (120, 120)).astype(np.float32)
    path = tmp_path / "one-pixel-tiles.fits.fz"
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(data, compression_type="RICE_1", tile_shape=(1, 1))]).writeto(
        path
    )
    bomb = fake_archive.add_frame(path)
    workers = sorted(service.app[RENDER_POOL].worker_pids())

    response = await service.get(f"/{bomb['id']}/?image=true")

    assert response.status == 422
    assert (await response.json())["message"] == (
        f"cannot render {bomb['filename']}: too slow to render: more than "
        "0.1 s of CPU time (THUMBPROXY_RENDER_CPU_SECONDS)"
    )
    assert sorted(service.app[RENDER_POOL].worker_pids()) == workers
    assert await answers_normally(service, normal_frame)


async def test_an_image_behind_too_many_hdus_is_not_looked_for(
    service: Service, fake_archive: FakeArchive, tmp_path: Path, normal_frame: dict[str, Any]
) -> None:
    path = tmp_path / "many-hdus.fits"
    empty = [fits.ImageHDU(name=f"E{number}") for number in range(fitsread.MAX_HDUS)]
    image = fits.ImageHDU(np.ones((8, 8), np.float32), name="SCI")
    fits.HDUList([fits.PrimaryHDU(), *empty, image]).writeto(path)
    hostile = fake_archive.add_frame(path)

    response = await service.get(f"/{hostile['id']}/?image=true")

    assert response.status == 422
    assert (await response.json())["message"] == (
        f"cannot render {hostile['filename']}: no HDU holds an image or a 1-D spectrum "
        f"among its first {fitsread.MAX_HDUS}"
    )
    assert await answers_normally(service, normal_frame)


async def test_a_cube_whose_one_tile_spans_its_planes_is_refused_before_decompression(
    service: Service, fake_archive: FakeArchive, tmp_path: Path, normal_frame: dict[str, Any]
) -> None:
    path = tmp_path / "cube.fits.fz"
    cube = np.zeros((4, 16, 16), np.float32)
    fits.HDUList(
        [fits.PrimaryHDU(), fits.CompImageHDU(cube, compression_type="GZIP_1", tile_shape=(4, 16, 16))]
    ).writeto(path)
    # As declared, one tile of 2048 planes of 1024 x 1024: 8 GiB to inflate.
    for keyword, value in (
        ("ZNAXIS1", "1024"),
        ("ZNAXIS2", "1024"),
        ("ZNAXIS3", "2048"),
        ("ZTILE1", "1024"),
        ("ZTILE2", "1024"),
        ("ZTILE3", "2048"),
    ):
        with_card(path, keyword, value)
    hostile = fake_archive.add_frame(path)

    response = await service.get(f"/{hostile['id']}/?image=true")

    assert response.status == 422
    assert (await response.json())["message"] == (
        f"cannot render {hostile['filename']}: its compression tiles are "
        "too large to decompress (ZTILEn: [1024, 1024, 2048])"
    )
    assert await answers_normally(service, normal_frame)


@pytest.mark.parametrize(
    ("craft", "reason"),
    [
        (lambda path: rice_setting(path, "ZVAL2", "-1"), "its RICE_1 BYTEPIX is -1, not one of 1, 2, 4, 8"),
        (lambda path: rice_setting(path, "ZVAL1", "7"), "its RICE_1 BLOCKSIZE is 7, not one of 16, 32"),
        (
            lambda path: one_tile_per_pixel(path, WIDE),
            f"it has too many compression tiles to decompress ({WIDE[0] * WIDE[1]}; ZTILEn: [1, 1])",
        ),
        (gzip_bomb, "a GZIP tile inflates past the 512 bytes its 64 x 1 pixels can hold"),
        (misshapen_hcompress, "an HCOMPRESS tile is not of its declared shape (64 x 13 pixels; ZTILEn)"),
        (tile_table_of_other_tiles, "its tile table has 4 rows for 2 tiles"),
        (tile_outside_the_data, "its compressed tiles point outside its data"),
    ],
    ids=[
        "rice-bytepix",
        "rice-blocksize",
        "too-many-tiles",
        "gzip-bomb",
        "misshapen-hcompress",
        "tile-table",
        "tile-outside",
    ],
)
async def test_a_file_whose_tiles_would_crash_or_flood_the_decoder_is_refused_before_decoding(
    service: Service,
    fake_archive: FakeArchive,
    tmp_path: Path,
    normal_frame: dict[str, Any],
    craft: Callable[[Path], Path],
    reason: str,
) -> None:
    hostile = fake_archive.add_frame(craft(tmp_path / "hostile.fits.fz"))

    response = await service.get(f"/{hostile['id']}/?image=true")

    assert response.status == 422
    assert (await response.json())["message"] == f"cannot render {hostile['filename']}: {reason}"
    assert await answers_normally(service, normal_frame)


async def test_a_render_past_the_memory_ceiling_is_a_422_and_its_worker_gives_the_memory_back(
    start_service: ServiceFactory, fake_archive: FakeArchive, tmp_path: Path, normal_frame: dict[str, Any]
) -> None:
    service = await start_service(THUMBPROXY_RENDER_MEMORY_MB="100")
    [worker] = service.app[RENDER_POOL].worker_pids()
    idle = resident_mib(worker)
    # 4096 x 4096 readable pixels: 64 MiB as float32, several times that on the way to a thumbnail.
    large = fake_archive.add_frame(star_field(tmp_path / "large.fits.fz", 4096))

    response = await service.get(f"/{large['id']}/?image=true&width=2000&height=2000")

    assert response.status == 422
    assert (await response.json())["message"] == (
        f"cannot render {large['filename']}: too large to render: it needs "
        "more memory than a render may take (THUMBPROXY_RENDER_MEMORY_MB)"
    )
    assert service.app[RENDER_POOL].worker_pids() == [worker]
    assert resident_mib(worker) < idle + 32
    assert await answers_normally(service, normal_frame)


async def test_a_frame_of_two_rows_of_67_million_pixels_is_a_422(
    start_service: ServiceFactory, fake_archive: FakeArchive, tmp_path: Path, normal_frame: dict[str, Any]
) -> None:
    service = await start_service(THUMBPROXY_RENDER_MEMORY_MB="512")
    path = tmp_path / "two-rows.fits.fz"
    # Within every bound of the header checks: 2**27 pixels, tiles of 2**23.
    fits.HDUList(
        [
            fits.PrimaryHDU(),
            fits.CompImageHDU(np.zeros((2, 2**26), np.int16), compression_type="RICE_1", tile_shape=(1, 2**23)),
        ]
    ).writeto(path)
    hostile = fake_archive.add_frame(path)

    response = await service.get(f"/{hostile['id']}/?image=true")

    assert response.status == 422
    assert (await response.json())["message"] == (
        f"cannot render {hostile['filename']}: too large to render: it needs "
        "more memory than a render may take (THUMBPROXY_RENDER_MEMORY_MB)"
    )
    assert await answers_normally(service, normal_frame)
