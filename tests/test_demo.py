"""`thumbproxy demo` starts from nothing, prints URLs that work, and stops cleanly."""

import io
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import aiohttp
from PIL import Image

STARTUP_SECONDS = 120


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _read_urls(process: subprocess.Popen[str], lines: list[str]) -> list[str]:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if "(Ctrl-C to stop)" in "".join(lines):
            return re.findall(r"^\s+(http://\S+)$", "".join(lines), flags=re.M)
        if process.poll() is not None:
            break
        time.sleep(0.1)
    raise AssertionError("demo did not start:\n" + "".join(lines))


async def test_demo_serves_its_sample_archive(tmp_path: Path) -> None:
    port = _free_port()
    env = {**os.environ, "THUMBPROXY_CACHE_DIR": str(tmp_path / "cache"), "TMP_DIR": str(tmp_path / "tmp"),
           "THUMBPROXY_WORKERS": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "thumbproxy", "demo", "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=tmp_path,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(process.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        urls = _read_urls(process, lines)
        assert len(urls) >= 4 and all(url.startswith(f"http://127.0.0.1:{port}/") for url in urls)
        async with aiohttp.ClientSession() as session:
            for url in urls:
                async with session.get(url) as response:
                    assert response.status == 200, (url, await response.text())
                    image = Image.open(io.BytesIO(await response.read()))
                    assert image.format == "JPEG" and max(image.size) >= 100
            async with session.get(urls[0].split("?")[0]) as response:
                body = await response.json()
                assert body["propid"] == "LOCAL" and body["url"].startswith(f"http://127.0.0.1:{port}/")
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0, "".join(lines)
    assert not any("Traceback" in line for line in lines), "".join(lines)
