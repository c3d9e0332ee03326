"""Shared fixtures: the fake archive and tiny FITS files."""

from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from astropy.io import fits

from fakearchive import FakeArchive


def write_fits_file(
    path: Path,
    header: Mapping[str, Any] | None = None,
    shape: tuple[int, int] = (16, 16),
    compressed: bool = False,
    seed: int = 0,
) -> Path:
    """Write a small float32 image to `path` with these header cards; return `path`.

    `compressed` writes the layout fpack produces: an empty primary HDU and the image,
    with the header cards, in a RICE-compressed extension.
    """
    data = np.random.default_rng(seed).normal(100.0, 10.0, shape).astype(np.float32)
    cards = dict(header or {})
    if compressed:
        image = fits.CompImageHDU(data, header=fits.Header(cards), compression_type="RICE_1")
        hdus = fits.HDUList([fits.PrimaryHDU(), image])
    else:
        hdus = fits.HDUList([fits.PrimaryHDU(data, header=fits.Header(cards))])
    hdus.writeto(path, overwrite=True)
    return path


@pytest.fixture
async def fake_archive() -> AsyncIterator[FakeArchive]:
    """A running fake OCS archive on 127.0.0.1; `.base_url` is the API root (ends with '/')."""
    archive = FakeArchive()
    await archive.start()
    yield archive
    await archive.close()


@pytest.fixture
def write_fits() -> Callable[..., Path]:
    """The FITS writer: ``write_fits(path, header=None, shape=(16, 16), compressed=False, seed=0)``."""
    return write_fits_file


@pytest.fixture
def fits_path(tmp_path: Path) -> Path:
    """A small uncompressed FITS image."""
    return write_fits_file(tmp_path / "ogg0m404-kb82-20190321-0273-e91.fits")
