"""Benchmark the cache-hit path: disk-hit throughput against a minimal aiohttp app, and S3-hit latency.

Throughput: the service (`thumbproxy serve`, one process, a local archive, the frame's record
cached) answers `?image=true` 200x200 cache hits, with its default settings (the memory level in
front of the disk answers) and with the memory level off (the disk level answers); `bench.minimal`
answers the same bytes with nothing else to do. Both are loaded by wrk (Debian package `wrk`) with the same connections,
round after round, interleaved. S3 hits: a second service with an empty disk level and the
bucket a first one filled (moto's server on loopback) answers distinct thumbnails one at a time.

    python -m bench.hitpath [--rounds 3] [--seconds 5] [--connections 32] [--s3-requests 200]
"""

import argparse
import asyncio
import json
import logging
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import aiohttp

RESULTS = Path(__file__).resolve().parent / "results"
# The hit path's target: disk-level hits (memory level off) against the minimal app.
MIN_DISK_HIT_RATIO = 0.7
BUCKET = "thumbproxy-bench"
HIT_BASENAME = "ogg0m404-kb82-20190321-0273-e91"
HIT_PATH = f"/{HIT_BASENAME}/?image=true&width=200&height=200"
# wrk's --latency percentiles, and its units in milliseconds.
LATENCY_PERCENTILES = ("50", "75", "90", "99")
_MILLISECONDS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}


def free_port() -> int:
    """A TCP port of 127.0.0.1 free a moment ago."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, seconds: float = 60.0) -> None:
    """Return once something listens on the port; raise if the process exits or time runs out."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listening on {port} after {seconds} s")


# Servers on the first CPU, wrk on the others: neither steals the other's core, so rounds agree.
SERVER_CPUS = {0}
LOAD_CPUS = set(range(1, os.cpu_count() or 1)) or SERVER_CPUS


@contextmanager
def server(
    command: list[str], port: int, env: Mapping[str, str], cpus: Collection[int] | None = SERVER_CPUS
) -> Iterator[str]:
    """Run a server process on `cpus` (None: wherever the scheduler likes) until the block ends;
    yields its base URL."""
    pin = None if cpus is None else partial(os.sched_setaffinity, 0, cpus)
    process = subprocess.Popen(
        command, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=pin
    )
    try:
        wait_for_port(port, process)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=30)


def thumbproxy_server(
    port: int, archive_url: str, cache: Path, cpus: Collection[int] | None = SERVER_CPUS, **env: str
) -> Iterator[str]:
    """`thumbproxy serve` on an archive (an API root or a file:// directory ending in /), with a cache
    directory of its own and one render worker unless `env` says otherwise; yields its base URL."""
    settings = {
        "ARCHIVE_API_URL": archive_url,
        "THUMBPROXY_CACHE_DIR": str(cache),
        "TMP_DIR": str(cache / "tmp"),
        "THUMBPROXY_WORKERS": "1",
        "THUMBPROXY_CONFIG": os.devnull,
        **env,
    }
    return server(
        [sys.executable, "-m", "thumbproxy", "serve", "--host", "127.0.0.1", "--port", str(port)], port, settings, cpus
    )


@dataclass(frozen=True)
class WrkRun:
    """What one wrk run measured: requests per second and latency percentiles (milliseconds)."""

    requests_per_second: float
    latency_ms: dict[str, float]


def wrk(url: str, seconds: float, connections: int) -> WrkRun:
    """Load the URL with wrk on the load CPUs; any non-2xx answer is an error."""
    # wrk needs at least one connection per thread.
    threads = min(2, connections)
    result = subprocess.run(
        [
            "taskset",
            "-c",
            ",".join(map(str, sorted(LOAD_CPUS))),
            "wrk",
            "--latency",
            "-t",
            str(threads),
            "-c",
            str(connections),
            "-d",
            f"{seconds:g}s",
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    if "Non-2xx" in result.stdout or "Socket errors" in result.stdout:
        raise RuntimeError(f"errors under load:\n{result.stdout}")
    latency = {
        percentile: float(value) * _MILLISECONDS[unit]
        for percentile, value, unit in re.findall(r"^\s+(\d+)%\s+([\d.]+)(us|ms|s|m)$", result.stdout, re.MULTILINE)
    }
    return WrkRun(
        float(re.search(r"Requests/sec:\s+([\d.]+)", result.stdout).group(1)),
        {percentile: latency[percentile] for percentile in LATENCY_PERCENTILES},
    )


async def fetch(url: str) -> bytes:
    """The body of a GET answered 200."""
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        if response.status != 200:
            raise RuntimeError(f"{url} answered {response.status}: {await response.text()}")
        return await response.read()


def hit_archive(work: Path) -> str:
    """The file:// URL of a local archive directory holding one 1024x1024 frame, named HIT_BASENAME."""
    from thumbproxy.demo.sampledata import star_field

    archive = work / "archive"
    archive.mkdir()
    star_field(archive / f"{HIT_BASENAME}.fits.fz", size=1024)
    return archive.as_uri() + "/"


def hit_throughput(
    work: Path, archive_url: str, rounds: int, seconds: float, connections: Sequence[int], memory_cache_mb: str
) -> list[dict]:
    """Cache-hit requests per second and latency of thumbproxy and of the minimal app, for each number
    of connections: every round loads each connection count, thumbproxy then the minimal app."""
    thumbproxy_port, minimal_port = free_port(), free_port()
    cache = work / f"cache-hits-{memory_cache_mb}"
    with thumbproxy_server(
        thumbproxy_port, archive_url, cache, THUMBPROXY_MEMORY_CACHE_MB=memory_cache_mb
    ) as thumbproxy_url:
        thumbnail = asyncio.run(fetch(thumbproxy_url + HIT_PATH))
        (work / "thumbnail.jpg").write_bytes(thumbnail)
        minimal = [sys.executable, "-m", "bench.minimal", str(minimal_port), str(work / "thumbnail.jpg")]
        with server(minimal, minimal_port, {}) as minimal_url:
            assert asyncio.run(fetch(minimal_url + HIT_PATH)) == thumbnail
            urls = {"thumbproxy": thumbproxy_url + HIT_PATH, "minimal aiohttp": minimal_url + HIT_PATH}
            runs = {count: {name: list[WrkRun]() for name in urls} for count in connections}
            for _ in range(rounds):
                for count in connections:
                    for name, url in urls.items():
                        runs[count][name].append(wrk(url, seconds, count))
    return [_hit_summary(count, memory_cache_mb, runs[count]) for count in connections]


def _hit_summary(connections: int, memory_cache_mb: str, runs: dict[str, list[WrkRun]]) -> dict:
    """Requests per second of every run, their medians and ratio, and the median of each latency percentile."""
    throughput = {name: [run.requests_per_second for run in name_runs] for name, name_runs in runs.items()}
    medians = {name: statistics.median(values) for name, values in throughput.items()}
    latency = {
        name: {
            percentile: statistics.median(run.latency_ms[percentile] for run in name_runs)
            for percentile in LATENCY_PERCENTILES
        }
        for name, name_runs in runs.items()
    }
    return {
        "connections": connections,
        "memory_cache_mb": memory_cache_mb,
        "runs": throughput,
        "medians": medians,
        "ratio": medians["thumbproxy"] / medians["minimal aiohttp"],
        "latency_ms": latency,
    }


def s3_hit_latency(work: Path, archive_url: str, requests: int) -> dict:
    """Latency of requests served from S3 (moto on loopback) by a service whose disk level is empty."""
    import boto3
    from moto.server import ThreadedMotoServer

    # moto logs every request it serves; the benchmark's output is its table.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    s3_port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=s3_port, verbose=False)
    moto.start()
    try:
        endpoint = f"http://127.0.0.1:{s3_port}"
        boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="bench",
            aws_secret_access_key="bench",
        ).create_bucket(Bucket=BUCKET)
        s3 = {
            "AWS_BUCKET": BUCKET,
            "STORAGE_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_DEFAULT_REGION": "us-east-1",
            "THUMBPROXY_S3_ADDRESSING_STYLE": "path",
            "THUMBPROXY_LOG_LEVEL": "WARNING",
        }
        urls = [f"/{HIT_BASENAME}/?image=true&width={100 + number}" for number in range(requests)]
        port = free_port()
        with thumbproxy_server(port, archive_url, work / "cache-fill", **s3) as base:
            asyncio.run(_get_all(base, urls))
        port = free_port()
        with thumbproxy_server(port, archive_url, work / "cache-empty", **s3) as base:
            asyncio.run(fetch(base + "/robots.txt"))
            latencies = asyncio.run(_get_all(base, urls))
    finally:
        moto.stop()
    ordered = sorted(latencies)
    return {
        "requests": requests,
        "median_ms": 1000 * statistics.median(ordered),
        "p99_ms": 1000 * ordered[max(0, int(0.99 * len(ordered)) - 1)],
    }


async def _get_all(base: str, paths: list[str]) -> list[float]:
    """Seconds each request took, one after another."""
    latencies = []
    async with aiohttp.ClientSession() as session:
        for path in paths:
            started = time.perf_counter()
            async with session.get(base + path) as response:
                await response.read()
                if response.status != 200:
                    raise RuntimeError(f"{path} answered {response.status}")
            latencies.append(time.perf_counter() - started)
    return latencies


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--s3-requests", type=int, default=200)
    arguments = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is needed: apt-get install wrk", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as directory:
        work = Path(directory)
        archive_url = hit_archive(work)
        # Default settings (memory level in front of the disk), then the disk level alone.
        hits = [
            hit_throughput(
                work, archive_url, arguments.rounds, arguments.seconds, [arguments.connections], memory_cache_mb
            )[0]
            for memory_cache_mb in ("64", "0")
        ]
        s3 = s3_hit_latency(work, archive_url, arguments.s3_requests)

    passed = hits[1]["ratio"] >= MIN_DISK_HIT_RATIO
    for result, title in zip(
        hits, ("cache hits, default settings (memory level)", "disk-level hits (memory level off)")
    ):
        print(f"{title}: {result['connections']} connections, {arguments.rounds} rounds of {arguments.seconds:g} s")
        print(f"{'requests/s':<28}{'median':>10}{'min':>10}{'max':>10}{'p50 ms':>10}{'p99 ms':>10}")
        for name, values in result["runs"].items():
            latency = result["latency_ms"][name]
            print(
                f"{name:<28}{statistics.median(values):>10.0f}{min(values):>10.0f}{max(values):>10.0f}"
                f"{latency['50']:>10.2f}{latency['99']:>10.2f}"
            )
        print(f"ratio thumbproxy / minimal: {result['ratio']:.2f}")
    print(f"target: disk-level hits >= {MIN_DISK_HIT_RATIO} of the minimal app: {'PASS' if passed else 'FAIL'}")
    print(
        f"S3 hits (moto on loopback), {s3['requests']} requests: median {s3['median_ms']:.1f} ms, "
        f"p99 {s3['p99_ms']:.1f} ms"
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    output = RESULTS / f"hitpath-{stamp}.json"
    output.write_text(json.dumps({"cache_hits": hits, "s3_hits": s3, "cpus": os.cpu_count()}, indent=2))
    print(f"wrote {output}")
    return 0 if passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
