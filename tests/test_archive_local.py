"""The archive over a local directory of FITS files."""

import dataclasses
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from hostilefits import with_card
from thumbproxy.archive.local import LocalArchive, frame_id_of
from thumbproxy.errors import ThumbproxyError

WriteFits = Callable[..., Path]
REDUCED_HEADER = {
    "OBSTYPE": "EXPOSE",
    "FILTER": "rp",
    "REQNUM": 1756835,
    "RLEVEL": 91,
    "DATE-OBS": "2019-03-21T10:11:12.345",
    "SITEID": "ogg",
}


@pytest.fixture
def directory(tmp_path: Path) -> Path:
    frames = tmp_path / "frames"
    frames.mkdir()
    return frames


@pytest.fixture
def archive(directory: Path) -> LocalArchive:
    return LocalArchive(directory)


async def all_basenames(archive: LocalArchive) -> list[str]:
    return [frame.basename for frame in await archive.frames({}, None)]


async def not_found(awaitable: object) -> None:
    with pytest.raises(ThumbproxyError) as caught:
        await awaitable  # type: ignore[misc]
    assert (caught.value.status, caught.value.message) == (404, "Not found")


async def test_fits_files_become_frames_named_without_extension(
    archive: LocalArchive, directory: Path, write_fits: WriteFits
) -> None:
    write_fits(directory / "ogg-e91.fits")
    write_fits(directory / "lsc-e91.fits.fz", compressed=True)
    write_fits(directory / "coj-e00.FITS")
    write_fits(directory / ".partial.fits")
    (directory / "notes.txt").write_text("not a frame")
    (directory / "folder.fits").mkdir()

    frames = await archive.frames({}, None)

    assert [(frame.basename, frame.filename) for frame in frames] == [
        ("coj-e00", "coj-e00.FITS"),
        ("lsc-e91", "lsc-e91.fits.fz"),
        ("ogg-e91", "ogg-e91.fits"),
    ]
    ogg = frames[2]
    assert ogg.url == (directory / "ogg-e91.fits").absolute().as_uri()
    assert ogg.proposal_id == "LOCAL"
    assert ogg.public_date is not None and ogg.public_date < datetime.now(UTC)


async def test_header_values_fill_the_record(archive: LocalArchive, directory: Path, write_fits: WriteFits) -> None:
    write_fits(directory / "reduced.fits.fz", header=REDUCED_HEADER, compressed=True)
    write_fits(directory / "raw.fits", header={"OBSTYPE": "BIAS", "REQNUM": "UNSPECIFIED", "RLEVEL": 0})
    write_fits(directory / "bare.fits")

    reduced = await archive.frame_by_basename("reduced", None)
    raw = await archive.frame_by_basename("raw", None)
    bare = await archive.frame_by_basename("bare", None)

    assert reduced.configuration_type == "EXPOSE"
    assert reduced.primary_optical_element == "rp"
    assert (reduced.request_id, reduced.reduction_level) == (1756835, 91)
    assert reduced.observation_date == datetime(2019, 3, 21, 10, 11, 12, 345000, tzinfo=UTC)
    assert reduced.record["site_id"] == "ogg"
    assert (raw.configuration_type, raw.request_id, raw.reduction_level) == ("BIAS", None, 0)
    assert (bare.configuration_type, bare.primary_optical_element, bare.observation_date) == ("EXPOSE", None, None)


async def test_ids_are_stable_across_instances(directory: Path, write_fits: WriteFits) -> None:
    for name in ("a.fits", "b.fits", "c.fits.fz"):
        write_fits(directory / name)

    first = {frame.basename: frame.id for frame in await LocalArchive(directory).frames({}, None)}
    second = {frame.basename: frame.id for frame in await LocalArchive(directory).frames({}, None)}

    assert first == second
    assert first["a"] == frame_id_of("a")
    assert len(set(first.values())) == 3
    assert all(0 < frame_id < 2**31 for frame_id in first.values())
    assert (await LocalArchive(directory).frame(first["b"], None)).basename == "b"


async def test_colliding_ids_are_told_apart(archive: LocalArchive, directory: Path, write_fits: WriteFits) -> None:
    # Found by search: these two basenames hash to the same 31-bit id.
    assert frame_id_of("frame-66353") == frame_id_of("frame-78569")
    write_fits(directory / "frame-66353.fits")
    write_fits(directory / "frame-78569.fits")

    first = await archive.frame_by_basename("frame-66353", None)
    second = await archive.frame_by_basename("frame-78569", None)

    assert first.id == frame_id_of("frame-66353")
    assert second.id != first.id
    assert (await archive.frame(second.id, None)).basename == "frame-78569"
    assert (await LocalArchive(directory).frame_by_basename("frame-78569", None)).id == second.id


async def test_filters_match_record_fields_exactly(
    archive: LocalArchive, directory: Path, write_fits: WriteFits
) -> None:
    write_fits(directory / "r-e91.fits", header={**REDUCED_HEADER, "FILTER": "rp"})
    write_fits(directory / "v-e91.fits", header={**REDUCED_HEADER, "FILTER": "V", "DATE-OBS": "2019-03-22T00:00:00"})
    write_fits(directory / "r-e00.fits", header={**REDUCED_HEADER, "RLEVEL": 0})
    write_fits(directory / "other-e91.fits", header={**REDUCED_HEADER, "REQNUM": 99})

    async def basenames(**filters: str) -> list[str]:
        return [frame.basename for frame in await archive.frames(filters, None)]

    assert await basenames(request_id="1756835", reduction_level="91") == ["r-e91", "v-e91"]
    assert await basenames(basename_exact="r-e00") == ["r-e00"]
    assert await basenames(primary_optical_element="V") == ["v-e91"]
    assert await basenames(proposal_id="LOCAL", configuration_type="EXPOSE", site_id="ogg") == [
        "other-e91",
        "r-e00",
        "r-e91",
        "v-e91",
    ]
    newest = await archive.newest({"request_id": "1756835"}, None)
    assert newest is not None and newest.basename == "v-e91"
    assert await archive.newest({"request_id": "17568"}, None) is None
    assert await basenames(request_id="17568") == []
    assert await basenames(observation_id="1") == []


async def test_directory_changes_are_picked_up(archive: LocalArchive, directory: Path, write_fits: WriteFits) -> None:
    write_fits(directory / "first.fits")
    assert await all_basenames(archive) == ["first"]
    before = await archive.frame_by_basename("first", None)

    write_fits(directory / "second.fits")
    assert await all_basenames(archive) == ["first", "second"]

    # Re-processing arrives atomically: written beside, then renamed over the old file.
    write_fits(directory / ".first.tmp", shape=(20, 20))
    os.replace(directory / ".first.tmp", directory / "first.fits")
    after = await archive.frame_by_basename("first", None)
    assert (after.id, after.basename) == (before.id, before.basename)
    assert after.version != before.version

    (directory / "second.fits").unlink()
    await not_found(archive.frame_by_basename("second", None))


async def test_change_within_one_mtime_tick_is_seen(
    archive: LocalArchive, directory: Path, write_fits: WriteFits
) -> None:
    write_fits(directory / "first.fits")
    assert await all_basenames(archive) == ["first"]
    indexed = directory.stat()

    write_fits(directory / "second.fits")
    # A coarse file-system clock can leave the directory's mtime as it was when indexed.
    os.utime(directory, ns=(indexed.st_atime_ns, indexed.st_mtime_ns))

    assert await all_basenames(archive) == ["first", "second"]


@pytest.mark.parametrize("name", ["absent", "../secret", "../secret.fits", "%2e%2e/secret", "/etc/passwd", "", "."])
async def test_unknown_or_escaping_basenames_are_not_found(
    archive: LocalArchive, directory: Path, write_fits: WriteFits, name: str
) -> None:
    write_fits(directory.parent / "secret.fits")
    write_fits(directory / "inside.fits")
    await not_found(archive.frame_by_basename(name, None))


async def test_unknown_id_is_not_found(archive: LocalArchive, directory: Path, write_fits: WriteFits) -> None:
    write_fits(directory / "inside.fits")
    await not_found(archive.frame(frame_id_of("outside"), None))


async def test_missing_directory_is_a_bad_gateway(tmp_path: Path) -> None:
    with pytest.raises(ThumbproxyError) as caught:
        await LocalArchive(tmp_path / "absent").frame(1, None)
    assert caught.value.status == 502


async def test_same_basename_twice_is_ambiguous(archive: LocalArchive, directory: Path, write_fits: WriteFits) -> None:
    write_fits(directory / "twin.fits")
    write_fits(directory / "twin.fits.fz", compressed=True)

    assert await all_basenames(archive) == ["twin", "twin"]
    await not_found(archive.frame_by_basename("twin", None))


async def test_unreadable_file_is_skipped(archive: LocalArchive, directory: Path, write_fits: WriteFits) -> None:
    (directory / "broken.fits").write_bytes(b"this is not FITS at all" * 200)
    write_fits(directory / "good.fits")

    assert await all_basenames(archive) == ["good"]


async def test_fits_file_is_the_file_itself(archive: LocalArchive, directory: Path, write_fits: WriteFits) -> None:
    original = write_fits(directory / "frame.fits.fz", compressed=True)
    frame = await archive.frame_by_basename("frame", None)

    async with archive.fits_file(frame) as path:
        assert path == original

    assert original.exists()


async def test_fits_file_of_a_frame_from_elsewhere_is_not_found(
    archive: LocalArchive, directory: Path, write_fits: WriteFits
) -> None:
    write_fits(directory / "frame.fits")
    frame = await archive.frame_by_basename("frame", None)
    stranger = dataclasses.replace(frame, id=frame.id + 1)

    with pytest.raises(ThumbproxyError) as caught:
        async with archive.fits_file(stranger):
            pass
    assert caught.value.status == 404


async def test_the_probe_fails_when_the_directory_is_gone(archive: LocalArchive, directory: Path) -> None:
    assert (await archive.probe()).healthy
    directory.rmdir()
    assert not (await archive.probe()).healthy


async def test_a_file_with_an_unparsable_card_is_left_out_and_named(
    start_service: Callable[..., Any], directory: Path, write_fits: WriteFits, caplog: pytest.LogCaptureFixture
) -> None:
    write_fits(directory / "good-e91.fits", header=REDUCED_HEADER)
    # An unquoted string: a value astropy cannot parse.
    with_card(
        write_fits(directory / "bad-e91.fits", header={**REDUCED_HEADER, "OBJECT": "M42"}), "OBJECT", "M42 unquoted"
    )
    service = await start_service(ARCHIVE_API_URL=directory.as_uri() + "/")

    for _ in range(3):
        assert (await service.get("/")).status == 200
        assert (await service.get("/good-e91/?image=true")).status == 200
        bad = await service.get("/bad-e91/?image=true")
        assert bad.status == 422
        assert (await bad.json())["message"].startswith("cannot read bad-e91.fits: not a readable FITS file")
    assert service.metric("thumbproxy_local_archive_unreadable_files") == 1
    assert len([record for record in caplog.records if "bad-e91.fits" in record.getMessage()]) == 1
