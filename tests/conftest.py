"""Shared fixtures: the fake archive, tiny FITS files, and moto's S3 over real HTTP."""

import asyncio
import io
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import boto3
import numpy as np
import pytest
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from astropy.io import fits
from moto.server import ThreadedMotoServer
from PIL import Image

from fakearchive import FUTURE_DATE, FakeArchive
from thumbproxy.app import create_app
from thumbproxy.archive.ocs import OcsArchive
from thumbproxy.config import load_settings
from thumbproxy.render.fitsread import open_image
from thumbproxy.web.operations import METRICS

WIDE = (300, 400)  # rows, columns: a landscape frame


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


def resident_mib(pid: int) -> float:
    """The resident memory of a process (VmRSS), in MiB."""
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024


def read_pixels(path: Path) -> np.ndarray:
    """The pixels of the image a user expects in the FITS file at path, read whole."""
    with open_image(path) as image:
        return image.read()


@pytest.fixture
async def fake_archive() -> AsyncIterator[FakeArchive]:
    """A running fake OCS archive on 127.0.0.1; `.base_url` is the API root (ends with '/')."""
    archive = FakeArchive()
    await archive.start()
    yield archive
    await archive.close()


@pytest.fixture
async def http_session() -> AsyncIterator[aiohttp.ClientSession]:
    """A client session of the test's own."""
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def tmp_dir(tmp_path: Path) -> Path:
    """Where an archive client made by `make_archive` downloads FITS files."""
    return tmp_path / "tmp"


@pytest.fixture
def make_archive(
    http_session: aiohttp.ClientSession, fake_archive: FakeArchive, tmp_dir: Path
) -> Callable[..., OcsArchive]:
    """Build an OcsArchive on the fake archive; keyword arguments override the defaults."""

    def make(**overrides: object) -> OcsArchive:
        settings: dict[str, object] = {
            "session": http_session,
            "base_url": fake_archive.base_url,
            "connect_timeout": 2.0,
            "timeout": 5.0,
            "download_timeout": 5.0,
            "tmp_dir": tmp_dir,
            "max_fits_bytes": 8 * 2**20,
        }
        settings.update(overrides)
        return OcsArchive(**settings)  # type: ignore[arg-type]

    return make


@pytest.fixture
def write_fits() -> Callable[..., Path]:
    """The FITS writer: ``write_fits(path, header=None, shape=(16, 16), compressed=False, seed=0)``."""
    return write_fits_file


@pytest.fixture
def fits_path(tmp_path: Path) -> Path:
    """A small uncompressed FITS image."""
    return write_fits_file(tmp_path / "ogg0m404-kb82-20190321-0273-e91.fits")


class MotoS3:
    """moto's S3 served over HTTP on 127.0.0.1 with one bucket; `stop()`/`start()` take it away and back."""

    bucket = "thumbnails"
    region = "us-east-1"
    access_key = "testing"
    secret_key = "testing"

    def __init__(self) -> None:
        # Port 0 lets the OS pick a free port; restarts then reuse that port, so URLs stay valid.
        self._server: ThreadedMotoServer | None = ThreadedMotoServer("127.0.0.1", 0, verbose=False)
        self._server.start()
        self.port = self._server.get_host_and_port()[1]
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        self._client = boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
        )

    def start(self) -> None:
        """Serve again on the same port, with the objects stored before `stop()`."""
        if self._server is None:
            self._server = ThreadedMotoServer("127.0.0.1", self.port, verbose=False)
            self._server.start()

    def stop(self) -> None:
        """Close the listening socket, so connections are refused until `start()`."""
        if self._server is not None:
            self._server.stop()
            self._server = None

    def reset(self) -> None:
        """Running, with every object and bucket gone and an empty `bucket` created."""
        self.start()
        # moto keeps its state in this process, so a reset between tests makes them independent.
        with urllib.request.urlopen(urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST")):
            pass
        self._client.create_bucket(Bucket=self.bucket)

    def list_keys(self) -> list[str]:
        """The keys of every object in the bucket."""
        listing = self._client.list_objects_v2(Bucket=self.bucket)
        return [entry["Key"] for entry in listing.get("Contents", [])]

    def get_object(self, key: str) -> tuple[bytes, dict[str, str]]:
        """An object's bytes and its response headers (lower-case names)."""
        response = self._client.get_object(Bucket=self.bucket, Key=key)
        return response["Body"].read(), response["ResponseMetadata"]["HTTPHeaders"]


@pytest.fixture(scope="session")
def _moto_s3() -> Iterator[MotoS3]:
    """One moto server for the session; `s3_server` resets it for each test."""
    s3 = MotoS3()
    yield s3
    s3.stop()


@pytest.fixture
def s3_server(_moto_s3: MotoS3) -> MotoS3:
    """moto's S3 on 127.0.0.1, running, with only an empty bucket `.bucket` (see `MotoS3`)."""
    _moto_s3.reset()
    return _moto_s3


@pytest.fixture
async def s3_client(s3_server: MotoS3) -> AsyncIterator[Any]:
    """An aiobotocore S3 client for `s3_server`: SigV4, path-style, and quick to give up when it is down."""
    config = AioConfig(
        signature_version="s3v4",
        s3={"addressing_style": "path"},
        connect_timeout=1,
        read_timeout=2,
        # "max_attempts" would count retries only; this is one attempt in all, so failures are quick.
        retries={"total_max_attempts": 1},
    )
    async with get_session().create_client(
        "s3",
        endpoint_url=s3_server.endpoint_url,
        region_name=s3_server.region,
        aws_access_key_id=s3_server.access_key,
        aws_secret_access_key=s3_server.secret_key,
        config=config,
    ) as client:
        yield client


# The service ---------------------------------------------------------------------------------


class Service:
    """The running service, its fake archive, and what a test looks at."""

    def __init__(self, client: TestClient, archive: FakeArchive, tmp_dir: Path) -> None:
        self.client = client
        self.archive = archive
        self.tmp_dir = tmp_dir

    @property
    def app(self) -> web.Application:
        return self.client.app  # type: ignore[return-value]

    async def get(self, path: str, **kwargs: Any) -> aiohttp.ClientResponse:
        return await self.client.get(path, **kwargs)

    async def image(self, path: str, **kwargs: Any) -> Image.Image:
        response = await self.get(path, **kwargs)
        assert response.status == 200, await response.text()
        assert response.content_type == "image/jpeg"
        image = Image.open(io.BytesIO(await response.read()))
        image.load()
        return image

    def metric(self, name: str, **labels: str) -> float:
        """A sample of the service's metrics; 0 for one never counted."""
        return self.app[METRICS].registry.get_sample_value(name, labels) or 0.0

    def temp_files(self) -> list[Path]:
        return [path for path in self.tmp_dir.iterdir()]


ServiceFactory = Callable[..., Awaitable[Service]]


@pytest.fixture
async def start_service(fake_archive: FakeArchive, tmp_path: Path) -> AsyncIterator[ServiceFactory]:
    """Start the service against the fake archive; keyword arguments are extra environment settings."""
    clients: list[TestClient] = []

    async def start(**env: str) -> Service:
        tmp_dir = tmp_path / "tmp"
        settings = load_settings(
            env={
                "ARCHIVE_API_URL": fake_archive.base_url,
                "TMP_DIR": str(tmp_dir),
                "THUMBPROXY_CACHE_DIR": str(tmp_path / "cache"),
                "THUMBPROXY_WORKERS": "1",
                "THUMBPROXY_ARCHIVE_TIMEOUT": "2",
                **env,
            }
        )
        client = TestClient(TestServer(create_app(settings), host="127.0.0.1"))
        await client.start_server()
        clients.append(client)
        return Service(client, fake_archive, tmp_dir)

    yield start
    for client in clients:
        await client.close()


@pytest.fixture
async def service(start_service: ServiceFactory) -> Service:
    return await start_service()


@pytest.fixture
def frame(fake_archive: FakeArchive, write_fits: Callable[..., Path], tmp_path: Path) -> dict[str, Any]:
    """A public, compressed, landscape frame registered with the fake archive."""
    path = write_fits(tmp_path / "ogg0m404-kb82-20190321-0273-e91.fits.fz", shape=WIDE, compressed=True)
    return fake_archive.add_frame(path)


# The demo command ------------------------------------------------------------------------------


DEMO_STARTUP_SECONDS = 120


def free_port() -> int:
    """A TCP port on 127.0.0.1 nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def _serve_in_a_process(archive_url: str, tmp_path: Path, **env: str) -> tuple[subprocess.Popen[str], int]:
    """`thumbproxy serve` in a process of its own on a free port, against archive_url, once it answers
    /healthz; keyword arguments are extra environment settings. The caller stops it."""
    port = free_port()
    environment = {
        **os.environ,
        "ARCHIVE_API_URL": archive_url,
        "THUMBPROXY_CACHE_DIR": str(tmp_path / "cache"),
        "TMP_DIR": str(tmp_path / "tmp"),
        "THUMBPROXY_WORKERS": "1",
        "THUMBPROXY_CONFIG": os.devnull,
        **env,
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "thumbproxy", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    async with aiohttp.ClientSession() as session:
        for _ in range(300):
            try:
                async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
                    if response.status == 200:
                        return server, port
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.1)
    server.kill()
    raise AssertionError("thumbproxy serve did not start")


@dataclass
class Served:
    """`thumbproxy serve` in a process of its own: the process, its port and base URL, and its output once stopped."""

    process: subprocess.Popen[str]
    port: int
    base_url: str
    output: str = ""


@asynccontextmanager
async def serving(archive_url: str, tmp_path: Path, **env: str) -> AsyncIterator[Served]:
    """`thumbproxy serve` against archive_url for the block (keyword arguments: extra environment settings);
    then stopped with SIGINT unless it has stopped already (killed if it takes over 30 s), and its output kept."""
    process, port = await _serve_in_a_process(archive_url, tmp_path, **env)
    served = Served(process, port, f"http://127.0.0.1:{port}")
    try:
        yield served
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                await asyncio.to_thread(process.wait, 30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        served.output = process.stdout.read() + process.stderr.read()


@dataclass
class Demo:
    """`thumbproxy demo` running in a subprocess: its base URL, the URLs it printed, its output."""

    base_url: str
    urls: list[str]
    output: list[str]


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Demo]:
    """`thumbproxy demo` started from nothing; on teardown it must stop on SIGINT with status 0 and no traceback."""
    port = free_port()
    env = {
        **os.environ,
        "THUMBPROXY_CACHE_DIR": str(tmp_path / "cache"),
        "TMP_DIR": str(tmp_path / "tmp"),
        "THUMBPROXY_WORKERS": "1",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "thumbproxy", "demo", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(iter(process.stdout.readline, "")), daemon=True).start()
    try:
        deadline = time.monotonic() + DEMO_STARTUP_SECONDS
        while "(Ctrl-C to stop)" not in "".join(lines):
            assert process.poll() is None and time.monotonic() < deadline, "demo did not start:\n" + "".join(lines)
            time.sleep(0.1)
        urls = re.findall(r"^\s+(http://\S+)$", "".join(lines), flags=re.MULTILINE)
        yield Demo(f"http://127.0.0.1:{port}/", urls, lines)
    finally:
        process.send_signal(signal.SIGINT)
        exit_code = process.wait(timeout=30)
    assert exit_code == 0, "".join(lines)
    assert not any("Traceback" in line for line in lines), "".join(lines)


@pytest.fixture
def s3_settings(s3_server: MotoS3) -> dict[str, str]:
    """Settings that point the service at the moto S3 server."""
    return {
        "AWS_BUCKET": s3_server.bucket,
        "STORAGE_URL": s3_server.endpoint_url,
        "AWS_ACCESS_KEY_ID": s3_server.access_key,
        "AWS_SECRET_ACCESS_KEY": s3_server.secret_key,
        "AWS_DEFAULT_REGION": s3_server.region,
        "THUMBPROXY_S3_ADDRESSING_STYLE": "path",
        "THUMBPROXY_S3_TIMEOUT": "1",
    }


@pytest.fixture
def secret(fake_archive: FakeArchive, write_fits: Callable[..., Path], tmp_path: Path) -> dict[str, Any]:
    """A proprietary frame of proposal SECRET-1: alice's token may see it, bob's (of another proposal) not."""
    path = write_fits(tmp_path / "secret.fits.fz", shape=WIDE, compressed=True)
    fake_archive.add_token("alice", "SECRET-1")
    fake_archive.add_token("bob", "OTHER-1")
    return fake_archive.add_frame(path, proposal_id="SECRET-1", public_date=FUTURE_DATE)
