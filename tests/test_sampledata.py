"""The synthetic frames: the layouts, keywords and pixels the renderer and the demo rely on."""

import numpy as np
import pytest
from astropy.io import fits

from thumbproxy.demo.sampledata import (
    SATURATE,
    cosmic_ray_field,
    demo_archive,
    raw_frame,
    rvb_set,
    spectrum,
    star_field,
)


def test_star_field_layout_and_keywords(tmp_path):
    path = star_field(tmp_path / "f.fits.fz", 256, filter_name="V", request_id=42)
    with fits.open(path, disable_image_compression=True) as hdul:
        assert hdul[0].data is None
        assert hdul["SCI"].header["ZCMPTYPE"] == "RICE_1"
    with fits.open(path) as hdul:
        header, data = hdul["SCI"].header, hdul["SCI"].data
        assert data.dtype == np.float32 and data.shape == (256, 256)
        assert (header["OBSTYPE"], header["FILTER"], header["REQNUM"], header["RLEVEL"]) == ("EXPOSE", "V", 42, 91)
        assert header["CTYPE1"] == "RA---TAN" and header["CTYPE2"] == "DEC--TAN"
        assert "DATE-OBS" in header
        # Rotated: north is not along +y.
        assert abs(header["CD1_2"]) > 0.3 * abs(header["CD2_2"])


def test_star_field_has_flat_topped_saturated_stars_on_a_noisy_sky(tmp_path):
    with fits.open(star_field(tmp_path / "f.fits", 512, compression=None)) as hdul:
        data = hdul["SCI"].data
    assert hdul["SCI"].header["SATURATE"] == SATURATE
    assert data.max() == pytest.approx(SATURATE, rel=1e-6)
    assert np.count_nonzero(data >= SATURATE * 0.999) >= 4
    sky = np.median(data)
    assert 900 < sky < 1300 and 20 < np.median(np.abs(np.diff(data[100]))) < 60


def test_star_field_is_deterministic(tmp_path):
    first = star_field(tmp_path / "a.fits.fz", 128, seed=3)
    second = star_field(tmp_path / "b.fits.fz", 128, seed=3)
    other = star_field(tmp_path / "c.fits.fz", 128, seed=4)
    assert first.read_bytes() == second.read_bytes()
    assert first.read_bytes() != other.read_bytes()


def _star_offset(reference: np.ndarray, moved: np.ndarray) -> tuple[int, int]:
    """(dy, dx) that best lines moved up with reference, from their bright pixels."""

    def stars(data):
        excess = data - np.median(data)
        return np.where(excess > 500.0, excess, 0.0)

    correlation = np.fft.ifft2(np.fft.fft2(stars(moved)) * np.conj(np.fft.fft2(stars(reference)))).real
    dy, dx = np.unravel_index(np.argmax(correlation), correlation.shape)
    size = correlation.shape[0]
    return (int(dy + size // 2) % size - size // 2, int(dx + size // 2) % size - size // 2)


def test_rvb_set_is_one_field_in_three_filters_offset_by_a_few_pixels(tmp_path):
    paths = rvb_set(tmp_path, 256)
    assert [path.name for path in paths] == [
        f"ogg0m404-kb82-20190321-{number:04d}-e91.fits.fz" for number in (280, 281, 282)
    ]
    headers = [fits.getheader(path, "SCI") for path in paths]
    assert [header["FILTER"] for header in headers] == ["rp", "V", "B"]
    assert len({header["REQNUM"] for header in headers}) == 1
    red, green, blue = (fits.getdata(path, "SCI") for path in paths)
    assert _star_offset(red, green) == (-2, 3)
    assert _star_offset(red, blue) == (4, -2)


def test_raw_frame_is_unsigned_16_bit_as_int16_with_bzero(tmp_path):
    path = raw_frame(tmp_path / "raw.fits", 128, compression=None)
    with fits.open(path, do_not_scale_image_data=True) as hdul:
        header = hdul[0].header
        assert (header["BITPIX"], header["BZERO"], header["RLEVEL"]) == (16, 32768, 0)
    assert fits.getdata(path).dtype == np.uint16


def test_raw_frame_with_header_on_primary(tmp_path):
    path = raw_frame(tmp_path / "raw.fits.fz", 128, header_on_primary=True)
    with fits.open(path) as hdul:
        assert hdul[0].data is None and "CD1_1" in hdul[0].header
        assert hdul[1].data.shape == (128, 128) and "CD1_1" not in hdul[1].header


def test_spectrum_is_a_wide_spectrum_frame(tmp_path):
    path = spectrum(tmp_path / "s.fits.fz")
    header, data = fits.getheader(path, "SCI"), fits.getdata(path, "SCI")
    assert header["OBSTYPE"] == "SPECTRUM" and data.shape == (128, 512)
    # The trace runs along the middle rows.
    assert 54 <= int(np.argmax(data.mean(axis=1))) <= 74


def test_demo_archive_writes_only_what_is_missing(tmp_path):
    spectrum_name = "ogg2m001-en06-20190321-0012-e00.fits.fz"
    others = [
        "ogg0m404-kb82-20190321-0273-e91.fits.fz",
        "ogg0m404-kb82-20190321-0273-e00.fits.fz",
        *(f"ogg0m404-kb82-20190321-{n:04d}-e91.fits.fz" for n in (280, 281, 282)),
    ]
    for name in others:
        (tmp_path / name).write_bytes(b"already here")
    paths = demo_archive(tmp_path)
    assert sorted(path.name for path in paths) == sorted([spectrum_name, *others])
    assert all((tmp_path / name).read_bytes() == b"already here" for name in others)
    assert fits.getheader(tmp_path / spectrum_name, "SCI")["OBSTYPE"] == "SPECTRUM"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([spectrum_name, *others])


def test_tiny_frames_can_be_made(tmp_path):
    assert fits.getdata(star_field(tmp_path / "tiny.fits.fz", 16), "SCI").shape == (16, 16)


def test_cosmic_ray_field_is_the_same_stars_struck_by_short_hits(tmp_path):
    struck = cosmic_ray_field(tmp_path / "hits.fits", 512, hits=300, compression=None)
    clean = cosmic_ray_field(tmp_path / "clean.fits", 512, hits=0, compression=None)
    with fits.open(struck) as hits, fits.open(clean) as plain:
        difference = hits["SCI"].data - plain["SCI"].data
        assert hits["SCI"].header["RLEVEL"] == 91 and np.median(plain["SCI"].data) < 150
    struck_pixels = difference > 0
    # 300 hits of 1 to 3 pixels: about 600 pixels, each at least 300 counts (1000 spread over 3 at most).
    assert 300 < np.count_nonzero(struck_pixels) <= 900
    assert difference[struck_pixels].min() >= 300 and np.count_nonzero(difference < 0) == 0
