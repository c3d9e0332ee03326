"""The benchmark suite: every measurement of the service side by side in one run.

1. render 4096x4096 -> 500x500 in one process: thumbproxy, fits2image 1.1, astropy decompression alone;
   and the isolated bright specks each draws of a frame full of particle hits and of a real frame;
2. the next thumbnails of a frame already rendered once, through the service, against the first;
3. a colour composite against a single frame, in one process;
4. the full stack cold: a request through the service to the fake OCS archive on loopback (first byte,
   total), and one cold request to an idle pool of two workers with the file already local;
5. hit-path throughput and latency against a minimal aiohttp app at 1, 8, 32 and 128 connections;
6. 100 concurrent identical cold requests: renders, downloads and archive calls performed;
7. peak RSS of a render worker and of the server process;
8. the archive API calls of an idle service asked /readyz every 5 s, as by the kubelet;
9. each stretch, colour map and invert against the default look, cold and from a kept preview, in one process.

Prints the tables (medians and spread) and the targets as PASS/FAIL, writes
bench/results/suite-<UTC>.json with every figure and PNG plots next to it, exits 1 if a target is missed.

    python -m bench [--quick]          (from the repository root; needs wrk and the bench extra)
"""

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import aiohttp
from prometheus_client.samples import Sample as MetricSample

from bench import archivecalls, color, display, hitpath, plots, render
from bench.render import BOX, FRAME_BYTES, FRAME_SIZE, MIB, _check, _summary, reset_peak_rss, status_bytes
from bench.soak import fake_archive, render_workers, scrape, server_pid

RESULTS = render.RESULTS
RAW_SIZE = 2048
CONNECTIONS = (1, 8, 32, 128)
COALESCED_REQUESTS = 100
# "Other workers idle" needs a second worker; also what a 2-CPU machine gets by default.
POOL_WORKERS = "2"
FIRST_QUERY = f"?image=true&width={BOX}&height={BOX}"
# The next thumbnails of a frame a user asks for: another size, a label, another stretch.
NEXT_QUERIES = {
    "other size": "?image=true&width=300&height=300",
    "label": f"?image=true&width={BOX}&height={BOX}&label=M42",
    "percentile": f"?image=true&width={BOX}&height={BOX}&median=true&percentile=98",
}
# Asked last, once the preview the first thumbnail made has long been stored: the stored path, to compare
# with "other size", asked right after the first answer; drawn from the whole preview, as that one is.
LATER_SIZE_QUERY = "?image=true&width=310&height=310"
CLIENT_TIMEOUT = aiohttp.ClientTimeout(total=120)
# bench.render's contenders, by the names the suite reports them under.
RENDER_CONTENDERS = {"decompress": "floor", "render": "thumbproxy", "fits2image": "fits2image"}

# Targets of issue 7, all ratios measured side by side in this run.
MIN_FITS2IMAGE_OVER_RENDER = 3.0
MAX_RENDER_OVER_FLOOR = 1.2
MAX_IDLE_COLD_OVER_FLOOR = 0.9
MAX_NEXT_OVER_FIRST = 0.1
# Issue 17: another size asked for right after the first answer, drawn from the preview the first stored.
MAX_SECOND_SIZE_OVER_FIRST = 0.1
MAX_COLOR_OVER_SINGLE = 3.5
DISK_HIT_CONNECTIONS = 32
RENDERS_FOR_IDENTICAL = 1
MAX_WORKER_PEAK_OVER_FRAME = 3.0
# An idle replica probes the archive at most once a minute; a window shorter than that would judge nothing.
MAX_IDLE_API_CALLS_PER_HOUR = 60
IDLE_PROBED_SECONDS = 60.0


@dataclass(frozen=True)
class Plan:
    """How much one run measures."""

    # Interleaved rounds of the in-process renders (sections 1 and 3).
    rounds: int
    # Frames rendered cold through each service, one after another (sections 2 and 4).
    cold_frames: int
    wrk_rounds: int
    wrk_seconds: float
    # THUMBPROXY_MEMORY_CACHE_MB of the hit-path services: "0" the disk level answers, "64" (default) memory.
    hit_levels: tuple[str, ...]


PLANS = {
    "default": Plan(rounds=15, cold_frames=9, wrk_rounds=3, wrk_seconds=4.0, hit_levels=("0", "64")),
    "quick": Plan(rounds=3, cold_frames=3, wrk_rounds=2, wrk_seconds=1.0, hit_levels=("0",)),
}


@dataclass(frozen=True)
class Answer:
    """One HTTP answer: status, seconds to its headers (first byte) and to its last byte."""

    status: int
    first_byte: float
    total: float


# Frames -------------------------------------------------------------------------------------


def raw_benchmark_frame(directory: Path) -> Path:
    """A 2048x2048 raw frame (16-bit counts stored as int16, RICE) in directory."""
    from thumbproxy.demo.sampledata import raw_frame

    return raw_frame(directory / f"raw_{RAW_SIZE}.fits.fz", RAW_SIZE)


def tagged_copies(source: Path, directory: Path, count: int) -> list[str]:
    """Copies of a frame under LCO basenames, each a frame (and version) of its own with the same pixels.

    A primary header card tells them apart. The compressed data is copied, not recompressed, so making
    them takes milliseconds, and every cold render does exactly the same work.
    """
    from astropy.io import fits

    from thumbproxy.demo.sampledata import lco_basename

    directory.mkdir(parents=True, exist_ok=True)
    basenames = [lco_basename(1000 + number, 91) for number in range(count)]
    with fits.open(source, disable_image_compression=True) as hdul:
        for number, basename in enumerate(basenames):
            hdul[0].header["BENCHCPY"] = (number, "benchmark copy: another file, the same pixels")
            hdul.writeto(directory / f"{basename}.fits.fz")
    return basenames


# Talking to a service -----------------------------------------------------------------------


async def get(session: aiohttp.ClientSession, url: str, only_ok: bool = True) -> Answer:
    """GET the URL and read the whole answer, timing it; unless `only_ok` is false, anything but a 200 raises."""
    started = time.perf_counter()
    async with session.get(url) as response:
        first_byte = time.perf_counter() - started
        body = await response.read()
    answer = Answer(response.status, first_byte, time.perf_counter() - started)
    if only_ok and answer.status != 200:
        raise RuntimeError(f"{url} answered {answer.status}: {body[:300]!r}")
    return answer


def metric_total(samples: Sequence[MetricSample], name: str, **labels: str) -> float:
    """The sum of a metric's samples whose labels include these."""
    return sum(
        sample.value
        for sample in samples
        if sample.name == name and all(sample.labels.get(key) == value for key, value in labels.items())
    )


@contextmanager
def pool_service(work: Path, archive_url: str, name: str) -> Iterator[tuple[str, int]]:
    """`thumbproxy serve` with an idle-able pool of POOL_WORKERS, a fresh cache, on any CPU; yields its
    base URL and process id."""
    port = hitpath.free_port()
    with hitpath.thumbproxy_server(
        port, archive_url, work / f"cache-{name}", cpus=None, THUMBPROXY_WORKERS=POOL_WORKERS
    ) as base_url:
        yield base_url, server_pid(port)


# Sections 2, 4 and 6: the service against the fake archive ----------------------------------


async def thumbnails_of_frames(base_url: str, basenames: Sequence[str]) -> dict[str, list[float]]:
    """For each frame in turn: its first thumbnail (cold: record, download, decode, render), then the next
    ones (NEXT_QUERIES); seconds of each. The first frame only warms the service up."""
    seconds: dict[str, list[float]] = {
        "cold first byte": [],
        "cold total": [],
        **{f"next {kind}": [] for kind in NEXT_QUERIES},
        "later size": [],
    }
    async with aiohttp.ClientSession(timeout=CLIENT_TIMEOUT) as session:
        await get(session, f"{base_url}/{basenames[0]}/{FIRST_QUERY}")
        for basename in basenames[1:]:
            first = await get(session, f"{base_url}/{basename}/{FIRST_QUERY}")
            seconds["cold first byte"].append(first.first_byte)
            seconds["cold total"].append(first.total)
            for kind, query in NEXT_QUERIES.items():
                seconds[f"next {kind}"].append((await get(session, f"{base_url}/{basename}/{query}")).total)
            seconds["later size"].append((await get(session, f"{base_url}/{basename}/{LATER_SIZE_QUERY}")).total)
    seconds["next all"] = [value for kind in NEXT_QUERIES for value in seconds[f"next {kind}"]]
    return seconds


async def identical_cold_requests(base_url: str, basename: str, count: int) -> dict:
    """`count` identical requests at once for a thumbnail of a frame never asked for: latencies, and the
    renders, downloads and archive API calls they caused (from /metrics)."""
    url = f"{base_url}/{basename}/{FIRST_QUERY}"
    connector = aiohttp.TCPConnector(limit=count)
    async with aiohttp.ClientSession(connector=connector, timeout=CLIENT_TIMEOUT) as session:
        before = await scrape(session, base_url)
        answers = await asyncio.gather(*(get(session, url, only_ok=False) for _ in range(count)))
        after = await scrape(session, base_url)

    def caused(name: str, **labels: str) -> int:
        return round(metric_total(after, name, **labels) - metric_total(before, name, **labels))

    return {
        "requests": count,
        "statuses": Counter(answer.status for answer in answers),
        "seconds": [answer.total for answer in answers],
        "renders": caused("thumbproxy_renders_total"),
        "downloads": caused("thumbproxy_archive_requests_total", operation="download"),
        "archive_api_calls": caused("thumbproxy_archive_requests_total")
        - caused("thumbproxy_archive_requests_total", operation="download"),
        "coalesced": caused("thumbproxy_coalesced_requests_total"),
    }


def measure_fake_archive_service(work: Path, frames: Path, basenames: list[str]) -> dict:
    """Sections 2, 4 and 6 on one service fetching from the fake OCS archive in a process of its own:
    all basenames but the last one by one, then the last one COALESCED_REQUESTS times at once."""
    with fake_archive(frames) as archive_url, pool_service(work, archive_url, "fake-archive") as (base_url, pid):
        seconds = asyncio.run(thumbnails_of_frames(base_url, basenames[:-1]))
        coalescing = asyncio.run(identical_cold_requests(base_url, basenames[-1], COALESCED_REQUESTS))
        server_peak = status_bytes("VmHWM", pid)
    return {"seconds": seconds, "coalescing": coalescing, "server_peak_rss": server_peak}


# Sections 4 and 7: one cold render while the other worker is idle, and its memory -----------


async def cold_requests_at_idle(base_url: str, pid: int, basenames: Sequence[str]) -> dict[str, list[float]]:
    """One cold request at a time (the first only warms up): seconds of the request, seconds the service's
    render histogram grew by, and each render worker's peak RSS during it (bytes), absolute and over its
    RSS before."""
    figures: dict[str, list[float]] = {"request": [], "render": [], "worker peak rss": [], "worker peak growth": []}
    async with aiohttp.ClientSession(timeout=CLIENT_TIMEOUT) as session:
        await get(session, f"{base_url}/{basenames[0]}/{FIRST_QUERY}")
        for basename in basenames[1:]:
            workers = render_workers(pid)
            for worker in workers:
                reset_peak_rss(worker)
            resident = {worker: status_bytes("VmRSS", worker) for worker in workers}
            before = await scrape(session, base_url)
            answer = await get(session, f"{base_url}/{basename}/{FIRST_QUERY}")
            after = await scrape(session, base_url)
            peaks = {worker: status_bytes("VmHWM", worker) for worker in workers}
            figures["request"].append(answer.total)
            figures["render"].append(
                metric_total(after, "thumbproxy_render_duration_seconds_sum")
                - metric_total(before, "thumbproxy_render_duration_seconds_sum")
            )
            figures["worker peak rss"].append(max(peaks.values()))
            figures["worker peak growth"].append(max(peaks[worker] - resident[worker] for worker in workers))
    return figures


def measure_idle_pool(work: Path, frames: Path, basenames: list[str]) -> dict:
    """Sections 4 (idle pool) and 7 on a service reading the frames from a file:// archive."""
    with pool_service(work, frames.as_uri() + "/", "file-archive") as (base_url, pid):
        figures = asyncio.run(cold_requests_at_idle(base_url, pid, basenames))
        server_peak = status_bytes("VmHWM", pid)
    return {"figures": figures, "server_peak_rss": server_peak}


# Section 8: what an idle service asks of the archive ------------------------------------------


def measure_idle_archive_calls(work: Path) -> dict:
    """Section 8: the archive API calls of a service (on the fake archive) that nothing but bench.archivecalls's
    kubelet-like prober asks for IDLE_PROBED_SECONDS from its start."""
    no_frames = work / "no-frames"
    no_frames.mkdir()
    with fake_archive(no_frames) as archive_url, pool_service(work, archive_url, "idle-probed") as (base_url, _):
        return asyncio.run(archivecalls.idle_window(base_url, IDLE_PROBED_SECONDS)).as_json()


# The run ------------------------------------------------------------------------------------


def machine() -> dict[str, str]:
    """The machine, the libraries and the code the figures came from."""
    import matplotlib

    from thumbproxy import __version__

    commit = subprocess.run(
        ["git", "describe", "--always", "--dirty"], capture_output=True, text=True, cwd=Path(__file__).resolve().parent
    ).stdout.strip()
    wrk_version = subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout.split(" [")[0]
    return {
        **render._versions(),
        "aiohttp": aiohttp.__version__,
        "matplotlib": matplotlib.__version__,
        "moto": metadata.version("moto"),
        "wrk": wrk_version,
        "thumbproxy": __version__,
        "commit": commit,
    }


def progress(message: str) -> None:
    """Say what is being measured, so a run of minutes is not silent."""
    print(f"... {message}", file=sys.stderr, flush=True)


def measure(plan: Plan, work: Path) -> dict:
    """Every section, in an order that keeps the machine to one thing at a time; the raw figures."""
    progress(f"1. render, one process, {plan.rounds} interleaved rounds")
    frame = render.benchmark_frame()
    seconds: dict[str, list[float]] = {}
    for group, path in (("render", frame), ("raw", raw_benchmark_frame(work))):
        seconds |= {
            f"{group}/{RENDER_CONTENDERS[name]}": values
            for name, values in render.time_interleaved(path, plan.rounds).items()
        }

    progress("1. isolated bright specks: a frame full of particle hits and a real frame, thumbproxy and fits2image")
    specks = render.speck_counts()

    progress(f"3. colour against single, {plan.rounds} interleaved rounds")
    color_seconds, alignment = color.time_interleaved(color.benchmark_frames(), plan.rounds)
    seconds |= {f"color/{name}": values for name, values in color_seconds.items()}

    # One to warm each service up, the cold ones, and one for the identical requests.
    frames = work / "frames"
    basenames = tagged_copies(frame, frames, plan.cold_frames + 2)
    progress(
        f"2, 4, 6. the service on the fake archive: {plan.cold_frames} frames, then "
        f"{COALESCED_REQUESTS} identical requests"
    )
    service = measure_fake_archive_service(work, frames, basenames)
    seconds |= {f"service/{name}": values for name, values in service["seconds"].items()}
    seconds["coalesced/request"] = service["coalescing"]["seconds"]

    progress(f"4, 7. one cold request at a time to an idle pool of {POOL_WORKERS}, file:// archive")
    idle = measure_idle_pool(work, frames, basenames[:-1])
    seconds["idle/request"] = idle["figures"]["request"]
    seconds["idle/render"] = idle["figures"]["render"]

    hit_path = []
    archive_url = hitpath.hit_archive(work)
    for level in plan.hit_levels:
        progress(
            f"5. hit path, THUMBPROXY_MEMORY_CACHE_MB={level}: {plan.wrk_rounds} rounds of "
            f"{plan.wrk_seconds:g} s at {', '.join(map(str, CONNECTIONS))} connections"
        )
        hit_path += hitpath.hit_throughput(work, archive_url, plan.wrk_rounds, plan.wrk_seconds, CONNECTIONS, level)

    progress(f"9. display parameters against the default look, {plan.rounds} interleaved rounds")
    seconds |= {f"display/{name}": values for name, values in display.time_interleaved(frame, plan.rounds).items()}

    progress(f"8. archive API calls of an idle service under a readiness prober: {IDLE_PROBED_SECONDS:g} s")
    idle_archive_calls = measure_idle_archive_calls(work)

    return {
        "seconds": seconds,
        "specks": specks,
        "color_alignment": alignment,
        "coalescing": service["coalescing"],
        "hit_path": hit_path,
        "idle_archive_calls": idle_archive_calls,
        "memory_bytes": {
            "worker peak rss": idle["figures"]["worker peak rss"],
            "worker peak growth": idle["figures"]["worker peak growth"],
            "server peak rss, fake archive service": [service["server_peak_rss"]],
            "server peak rss, file archive service": [idle["server_peak_rss"]],
            "decompressed frame": FRAME_BYTES,
        },
    }


def median(figures: dict, name: str) -> float:
    """The median of one timing series."""
    return figures["summary"][name]["median"]


def _ratio_check(median_ratio: float, best_ratio: float, relation: str, limit: float) -> dict:
    """A target on a ratio, judged on medians; `best` is the same ratio of the best runs (fastest, or highest
    throughput), and `best_agrees` whether it gives the same verdict: when it does not, noise decided."""
    check = _check(median_ratio, relation, limit)
    return {
        **check,
        "best": best_ratio,
        "best_agrees": _check(best_ratio, relation, limit)["passed"] == check["passed"],
    }


def _timing_check(figures: dict, numerator: str, denominator: str, relation: str, limit: float) -> dict:
    """A target on the ratio of two timing series."""
    seconds = figures["seconds"]
    return _ratio_check(
        median(figures, numerator) / median(figures, denominator),
        min(seconds[numerator]) / min(seconds[denominator]),
        relation,
        limit,
    )


def _slowest_display(figures: dict) -> dict:
    """The display variant furthest over the default look, cold render against cold render."""
    ratios = {
        name: _timing_check(figures, f"display/{name}", "display/default", "<=", display.MAX_DISPLAY_OVER_DEFAULT)
        for name in display.VARIANTS
    }
    return max(ratios.values(), key=lambda check: check["measured"])


def checks(figures: dict) -> dict[str, dict]:
    """Each target of the issue: the measured ratio, its limit and whether it is met."""
    disk_hits = next(
        result
        for result in figures["hit_path"]
        if result["memory_cache_mb"] == "0" and result["connections"] == DISK_HIT_CONNECTIONS
    )
    runs = disk_hits["runs"]
    return {
        "render 4096->500: fits2image / thumbproxy": _timing_check(
            figures, "render/fits2image", "render/thumbproxy", ">=", MIN_FITS2IMAGE_OVER_RENDER
        ),
        "render / decompression floor, one process": _timing_check(
            figures, "render/thumbproxy", "render/floor", "<=", MAX_RENDER_OVER_FLOOR
        ),
        "one cold request, idle pool / floor": _timing_check(
            figures, "idle/request", "render/floor", "<=", MAX_IDLE_COLD_OVER_FLOOR
        ),
        "next thumbnail / first, via service": _timing_check(
            figures, "service/next all", "service/cold total", "<=", MAX_NEXT_OVER_FIRST
        ),
        "second size right after the first / first": _timing_check(
            figures, "service/next other size", "service/cold total", "<=", MAX_SECOND_SIZE_OVER_FIRST
        ),
        "colour / single": _timing_check(figures, "color/color", "color/single", "<=", MAX_COLOR_OVER_SINGLE),
        f"disk hits / minimal app, {DISK_HIT_CONNECTIONS} conns": _ratio_check(
            disk_hits["ratio"], max(runs["thumbproxy"]) / max(runs["minimal aiohttp"]), ">=", hitpath.MIN_DISK_HIT_RATIO
        ),
        f"renders for {COALESCED_REQUESTS} identical cold reqs": _check(
            figures["coalescing"]["renders"], "==", RENDERS_FOR_IDENTICAL
        ),
        "render worker peak RSS growth / frame": _check(
            max(figures["memory_bytes"]["worker peak growth"]) / FRAME_BYTES, "<=", MAX_WORKER_PEAK_OVER_FRAME
        ),
        "slowest display parameter / default look, cold": _slowest_display(figures),
        "idle service's archive API calls per hour": _check(
            figures["idle_archive_calls"]["per_hour"], "<=", MAX_IDLE_API_CALLS_PER_HOUR
        ),
        **render.speck_checks(figures["specks"]),
    }


# Tables -------------------------------------------------------------------------------------

ROW = "{:<50}{:>4}{:>10}{:>10}{:>10}{:>11}"
MEMORY_ROWS = {
    "worker peak rss": "render worker, one cold request: peak RSS (VmHWM)",
    "worker peak growth": "  the same, over its RSS before the request",
    "server peak rss, fake archive service": "server process, fake archive service: VmHWM",
    "server peak rss, file archive service": "server process, file:// archive service: VmHWM",
}


def print_times(title: str, figures: dict, rows: dict[str, str], reference: str, reference_label: str) -> None:
    """A table of timings in milliseconds: median, min, max, and the ratio of medians to a reference."""
    print(f"\n{title}")
    print(ROW.format("ms", "n", "median", "min", "max", f"x {reference_label}"))
    for name, label in rows.items():
        row = figures["summary"][name]
        print(
            ROW.format(
                label,
                len(figures["seconds"][name]),
                f"{1000 * row['median']:.1f}",
                f"{1000 * row['min']:.1f}",
                f"{1000 * row['max']:.1f}",
                f"{row['median'] / median(figures, reference):.2f}",
            )
        )


def print_report(figures: dict, plan: Plan) -> None:
    """Every table, in the issue's order, then the targets."""
    frame = f"{FRAME_SIZE}x{FRAME_SIZE} float32 RICE"
    print_times(
        f"1. render {frame} -> {BOX}x{BOX} JPEG, one process, {plan.rounds} interleaved rounds",
        figures,
        {
            "render/floor": "astropy decompression alone (floor)",
            "render/thumbproxy": "thumbproxy thumbnail_from_file",
            "render/fits2image": "fits2image 1.1 fits_to_jpg",
        },
        "render/floor",
        "floor",
    )
    print_times(
        f"   the same on a {RAW_SIZE}x{RAW_SIZE} int16 raw frame",
        figures,
        {
            "raw/floor": "astropy decompression alone (floor)",
            "raw/thumbproxy": "thumbproxy thumbnail_from_file",
            "raw/fits2image": "fits2image 1.1 fits_to_jpg",
        },
        "raw/floor",
        "floor",
    )
    render.print_specks(figures["specks"])
    print_times(
        f"2. thumbnails of a {frame} frame through the service (fake archive on loopback, "
        f"{POOL_WORKERS} workers), {plan.cold_frames} frames",
        figures,
        {
            "service/cold total": "first thumbnail (cold: record, download, render)",
            **{f"service/next {kind}": f"next thumbnail, {kind}" for kind in NEXT_QUERIES},
            "service/next all": "next thumbnails, all of the above",
            "service/later size": "a later size, from the stored preview",
        },
        "service/cold total",
        "first",
    )
    print_times(
        f"3. colour composite against a single frame, 3 x {frame}, one process, {plan.rounds} rounds "
        f"(aligned by {figures['color_alignment']})",
        figures,
        {
            "color/single": "thumbnail_from_file, one frame",
            "color/color": "color_thumbnail_from_files, zscale",
            "color/color lupton": "color_thumbnail_from_files, lupton",
        },
        "color/single",
        "single",
    )
    print_times(
        "4. full stack cold: one request at a time, a frame never seen",
        figures,
        {
            "service/cold first byte": "fake archive on loopback: first byte",
            "service/cold total": "fake archive on loopback: total",
            "idle/request": f"file:// archive, idle pool of {POOL_WORKERS}: total",
            "idle/render": "  of which the render (service's histogram)",
        },
        "render/floor",
        "floor",
    )

    print(
        f"\n5. hit path: requests/s and latency under wrk, server on CPU 0, wrk on the others, "
        f"{plan.wrk_rounds} rounds of {plan.wrk_seconds:g} s"
    )
    print(
        f"{'answered from':<16}{'conns':>6}{'thumbproxy':>12}{'min':>9}{'max':>9}{'minimal':>10}{'ratio':>7}"
        f"{'p50 ms':>8}{'p99 ms':>8}{'minimal p99':>12}"
    )
    for result in figures["hit_path"]:
        runs, latency = result["runs"]["thumbproxy"], result["latency_ms"]
        level = "disk" if result["memory_cache_mb"] == "0" else "memory (default)"
        print(
            f"{level:<16}{result['connections']:>6}{result['medians']['thumbproxy']:>12.0f}{min(runs):>9.0f}"
            f"{max(runs):>9.0f}{result['medians']['minimal aiohttp']:>10.0f}{result['ratio']:>7.2f}"
            f"{latency['thumbproxy']['50']:>8.2f}{latency['thumbproxy']['99']:>8.2f}"
            f"{latency['minimal aiohttp']['99']:>12.2f}"
        )

    coalescing = figures["coalescing"]
    print_times(
        f"6. {COALESCED_REQUESTS} identical concurrent requests, a frame never seen",
        figures,
        {"coalesced/request": "each request, total"},
        "service/cold total",
        "one cold",
    )
    print(
        f"renders {coalescing['renders']}, downloads {coalescing['downloads']}, archive API calls "
        f"{coalescing['archive_api_calls']}, coalesced requests {coalescing['coalesced']}, "
        f"answers {dict(coalescing['statuses'])}"
    )

    print(
        f"\n7. peak memory: render workers the largest of the {plan.cold_frames} cold requests of section 4 "
        f"(file:// archive), servers over their whole run"
    )
    print(f"{'':<50}{'MiB':>10}{'x frame':>11}   (decompressed frame: {FRAME_BYTES / MIB:.0f} MiB)")
    for name, label in MEMORY_ROWS.items():
        peak = max(figures["memory_bytes"][name])
        print(f"{label:<50}{peak / MIB:>10.0f}{peak / FRAME_BYTES:>11.2f}")

    idle_calls = figures["idle_archive_calls"]
    print(
        f"\n8. an idle service (fake archive) asked /readyz every {archivecalls.READYZ_PERIOD_SECONDS:g} s for "
        f"{idle_calls['seconds']:.0f} s from its start: archive API calls {idle_calls['calls']}, "
        f"{idle_calls['per_hour']:.0f} per hour; prober answered {dict(idle_calls['prober'])}"
    )

    for kind, suffix in (("cold", ""), ("from the preview kept in memory", " from preview")):
        print_times(
            f"9. display parameters, {frame} -> {BOX}x{BOX} JPEG, {kind}, one process, {plan.rounds} rounds",
            figures,
            {f"display/{name}{suffix}": name for name in display.VARIANTS},
            f"display/default{suffix}",
            "default",
        )

    print(f"\n{'target (ratios of medians; best: of the best runs)':<52}{'measured':>9}{'best':>7}{'limit':>9}  result")
    for name, check in figures["checks"].items():
        best = f"{check['best']:.2f}" if "best" in check else ""
        noisy = " *" if not check.get("best_agrees", True) else ""
        print(
            f"{name:<52}{check['measured']:>9.2f}{best:>7}{check['limit']:>9}  "
            f"{'PASS' if check['passed'] else 'FAIL'}{noisy}"
        )
    if any(not check.get("best_agrees", True) for check in figures["checks"].values()):
        print("* the best runs give the other verdict: the machine's noise decided this one; run again")


def run(mode: str) -> bool:
    """Measure, print, write the JSON and the plots; True if every target is met."""
    plan = PLANS[mode]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as directory:
        figures = measure(plan, Path(directory))
    figures["summary"] = {name: _summary(values) for name, values in figures["seconds"].items()}
    figures["checks"] = checks(figures)

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    RESULTS.mkdir(parents=True, exist_ok=True)
    pictures = {
        "latency": RESULTS / f"suite-{stamp}-latency.png",
        "throughput": RESULTS / f"suite-{stamp}-throughput.png",
    }
    plots.latency_plot(figures["seconds"], figures["hit_path"], pictures["latency"])
    plots.throughput_plot(figures["hit_path"], pictures["throughput"])
    print_report(figures, plan)
    wall_seconds = time.perf_counter() - started
    print(f"\n{mode} run: {wall_seconds:.0f} s")
    output = RESULTS / f"suite-{stamp}.json"
    requests = {
        "first": FIRST_QUERY,
        "next": NEXT_QUERIES,
        "hit": hitpath.HIT_PATH,
        "connections": CONNECTIONS,
        "pool_workers": POOL_WORKERS,
        "identical": COALESCED_REQUESTS,
    }
    output.write_text(
        json.dumps(
            {
                "when": stamp,
                "mode": mode,
                "plan": asdict(plan),
                "requests": requests,
                "machine": machine(),
                "wall_seconds": wall_seconds,
                **figures,
                "plots": [picture.name for picture in pictures.values()],
            },
            indent=2,
        )
    )
    print(f"wrote {output} and {', '.join(picture.name for picture in pictures.values())}")
    return all(check["passed"] for check in figures["checks"].values())


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="fewer rounds and frames, 1 s wrk runs, disk-level hits only: under two minutes",
    )
    arguments = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is needed: apt-get install wrk", file=sys.stderr)
        return 2
    return 0 if run("quick" if arguments.quick else "default") else 1
