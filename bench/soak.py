"""Soak the service on loopback: concurrent clients for a minute, cache hits and misses on a few dozen frames.

The service (`thumbproxy serve`, a fresh cache, default settings but a small memory level) fetches
frames from a fake OCS archive on loopback (`tests/fakearchive.py`), so every render downloads its
FITS file into TMP_DIR as in production. Most clients ask again and again for thumbnails already
rendered (hits); the others ask for new sizes and labels each time (misses), so renders go on
throughout. A share of all requests (`--hostile-share`, 1 %) is hostile instead: crafted FITS files
(`tests/hostilefits.py`: a GZIP bomb, a misshapen HCOMPRESS stream, tiles the tile table does not
describe, impossible RICE settings, too many tiles, no pixels, a web page), bad queries, unknown
frames, unparsable headers and request heads that never end; each must answer its 4xx. Every second
the service's open file descriptors, RSS and TMP_DIR are sampled, for the server process and for its
render workers. Checks: no unexpected answer (no 5xx but deliberate overload), no descriptor growth,
TMP_DIR empty when idle, RSS flat after the warm-up (the first third of the run).

    python -m bench.soak [--clients 200] [--seconds 60] [--frames 36] [--miss-share 0.2]
                         [--hostile-share 0.01] [--quick]
"""

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample as MetricSample

from bench.hitpath import LOAD_CPUS, RESULTS, free_port, server

ROOT = Path(__file__).resolve().parent.parent
MIB = 1024 * 1024
FRAME_SIZES = (512, 640, 768, 896, 1024)
HIT_QUERIES = ("?image=true&width=200&height=200", "?width=200&height=200")
# Small enough that the misses of the warm-up fill it: RSS after that is not the level filling up.
MEMORY_CACHE_MB = "4"
# What each kind of hostile request must answer.
HOSTILE_ANSWERS = {
    "hostile file": "422",
    "bad query": "400",
    "unknown frame": "404",
    "unparsable header": "400",
    "unfinished head": "408",
}
# A request head that never ends: the service answers 408 after THUMBPROXY_HEAD_TIMEOUT.
UNFINISHED_HEAD = b"GET /healthz HTTP/1.1\r\nHost: soak\r\nX-Slow: "
UNPARSABLE_HEADER = b"GET /healthz HTTP/1.1\r\nHost: soak\r\nAuthorization: Token SOAK\x01secret\r\n\r\n"
# Beyond the service's own 504 deadline (60 s by default), so the service always answers first.
CLIENT_TIMEOUT_SECONDS = 90.0
# Overload answers the service gives on purpose: admission control (503 with Retry-After) and its deadline.
EXPECTED_OVERLOAD = ("503 Retry-After", "504")
# Growth allowed after the warm-up. Descriptors: pools that may still widen (archive connections,
# a thread's SQLite handle); a leak of one per render or per thousand requests adds hundreds.
FD_SLACK = 16
# RSS: the larger of a share of the value at the end of the warm-up and a few MiB of allocator noise.
RSS_SLACK_SHARE = 0.10
RSS_SLACK_MIB = 8.0
IDLE_SETTLE_SECONDS = 2.0
IDLE_WAIT_SECONDS = 15.0


@dataclass(frozen=True)
class Sample:
    """One second's look at the service: descriptors, RSS (bytes) and temp files."""

    seconds: float
    server_fds: int
    server_rss: int
    render_workers: int
    render_fds: int
    render_rss: int
    tmp_files: int


@dataclass
class Tally:
    """Answers by kind of client (hit, miss) and outcome, latencies of the 200s, and a few unexpected bodies."""

    outcomes: dict[str, Counter[str]] = field(
        default_factory=lambda: {"hit": Counter(), "miss": Counter(), "hostile": Counter()}
    )
    latencies: dict[str, list[float]] = field(default_factory=lambda: {"hit": [], "miss": []})
    unexpected_examples: list[str] = field(default_factory=list)
    # Hostile requests by their kind and outcome ("hostile file 422").
    hostile: Counter[str] = field(default_factory=Counter)

    def unexpected(self, kinds: tuple[str, ...] = ("hit", "miss", "hostile")) -> int:
        """Answers that are neither what their request should get nor a deliberate overload answer, and
        failed requests."""
        return sum(
            count
            for kind in kinds
            for outcome, count in self.outcomes[kind].items()
            if outcome not in ("200", "expected") and outcome not in EXPECTED_OVERLOAD
        )

    def unexpected_5xx(self) -> int:
        """Answers 5xx other than deliberate overload: the service's own failures."""
        return sum(
            count
            for outcomes in self.outcomes.values()
            for outcome, count in outcomes.items()
            if outcome.startswith("5") and outcome not in EXPECTED_OVERLOAD
        )


@dataclass(frozen=True)
class SoakResult:
    """What one soak saw: the answers, the samples under load, and the service before and after it."""

    tally: Tally
    samples: list[Sample]
    before: Sample
    idle: Sample
    load_seconds: float
    renders: Counter[str]


# Reading the service's processes from /proc --------------------------------------------------


def _children(pid: int) -> list[int]:
    """Direct children of a process (any of its threads may have started them); none once it is gone."""
    children: list[int] = []
    try:
        for task in os.scandir(f"/proc/{pid}/task"):
            children += map(int, Path(task.path, "children").read_text().split())
    except FileNotFoundError:
        pass
    return children


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return b""


def render_workers(server_pid: int) -> list[int]:
    """The render pool's workers: children of the forkserver the server started (not its resource tracker)."""
    for child in _children(server_pid):
        if b"multiprocessing.forkserver" in _cmdline(child):
            return _children(child)
    return []


def _fd_count(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except FileNotFoundError:
        return 0


def _rss_bytes(pid: int) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return 0
    kilobytes = next((line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")), "0")
    return int(kilobytes) * 1024


def server_pid(port: int) -> int:
    """The pid of our `thumbproxy serve` child listening on this port (`server` does not hand it out)."""
    for pid in _children(os.getpid()):
        arguments = _cmdline(pid).split(b"\0")
        if b"serve" in arguments and str(port).encode() in arguments:
            return pid
    raise RuntimeError(f"no thumbproxy serve child on port {port}")


def take_sample(server_pid: int, tmp_dir: Path, seconds: float) -> Sample:
    """The server's descriptors and RSS, its render workers' summed, and the files in TMP_DIR."""
    workers = render_workers(server_pid)
    return Sample(
        seconds=round(seconds, 2),
        server_fds=_fd_count(server_pid),
        server_rss=_rss_bytes(server_pid),
        render_workers=len(workers),
        render_fds=sum(map(_fd_count, workers)),
        render_rss=sum(map(_rss_bytes, workers)),
        tmp_files=len(os.listdir(tmp_dir)) if tmp_dir.is_dir() else 0,
    )


# The archive --------------------------------------------------------------------------------


def _serve_archive(frames: Path, ready: Connection) -> None:
    """Serve the frames of a directory from the fake OCS archive until terminated; send its URL first."""
    # The fake archive lives with the tests, which import it as a top-level module.
    sys.path.insert(0, str(ROOT / "tests"))
    from fakearchive import FakeArchive

    async def serve() -> None:
        # A benchmark measures speed, not the archive's quotas.
        archive = FakeArchive(anonymous_quota=None, token_quota=None)
        await archive.start()
        for path in sorted(frames.iterdir()):
            archive.add_frame(path)
        ready.send(archive.base_url)
        await asyncio.Event().wait()

    asyncio.run(serve())


@contextmanager
def fake_archive(frames: Path) -> Iterator[str]:
    """The fake archive serving these frames, in a process of its own so that it does not stall the
    clients' event loop, until the block ends; yields its base URL."""
    receiving, sending = multiprocessing.Pipe(duplex=False)
    process = multiprocessing.get_context("spawn").Process(target=_serve_archive, args=(frames, sending), daemon=True)
    process.start()
    try:
        if not receiving.poll(60):
            raise RuntimeError("the fake archive did not start")
        yield receiving.recv()
    finally:
        process.terminate()
        process.join(10)


def write_hostile_frames(directory: Path) -> list[str]:
    """One crafted file of each kind in tests/hostilefits.py; returns their basenames."""
    sys.path.insert(0, str(ROOT / "tests"))
    from hostilefits import HOSTILE_FILES

    directory.mkdir(parents=True, exist_ok=True)
    for name, craft in HOSTILE_FILES.items():
        craft(directory / f"hostile-{name}.fits.fz")
    return [f"hostile-{name}" for name in HOSTILE_FILES]


def write_frames(directory: Path, count: int) -> list[str]:
    """Small star fields of different sizes and seeds; returns their basenames."""
    from thumbproxy.demo.sampledata import lco_basename, star_field

    directory.mkdir(parents=True, exist_ok=True)
    basenames = [lco_basename(number + 1, 91) for number in range(count)]
    for number, basename in enumerate(basenames):
        star_field(directory / f"{basename}.fits.fz", size=FRAME_SIZES[number % len(FRAME_SIZES)], seed=404 + number)
    return basenames


# Load ---------------------------------------------------------------------------------------


def miss_paths(basenames: list[str]) -> Iterator[str]:
    """Thumbnails never asked for before: a new label each time, sizes cycling, frames in turn."""
    number = 0
    while True:
        size = 100 + (number * 7) % 300
        yield f"/{basenames[number % len(basenames)]}/?image=true&width={size}&height={size}&label=soak-{number}"
        number += 1


def outcome_of(response: aiohttp.ClientResponse) -> str:
    """How an answer counts: its status, with 503s split by whether they say when to retry."""
    if response.status == 503:
        return "503 Retry-After" if "Retry-After" in response.headers else "503 no Retry-After"
    return str(response.status)


class HostileRequests:
    """Hostile requests in turn, each kind in HOSTILE_ANSWERS; `send` answers its kind and outcome."""

    def __init__(self, base_url: str, basenames: list[str], hostile_basenames: list[str]) -> None:
        self._base_url = base_url
        self._address = base_url.removeprefix("http://").split(":")
        self._basenames = basenames
        self._hostile_basenames = hostile_basenames
        self._number = 0

    async def send(self, session: aiohttp.ClientSession) -> tuple[str, str]:
        self._number += 1
        number = self._number
        kind = list(HOSTILE_ANSWERS)[number % len(HOSTILE_ANSWERS)]
        if kind == "unparsable header":
            return kind, await self._raw(UNPARSABLE_HEADER)
        if kind == "unfinished head":
            return kind, await self._raw(UNFINISHED_HEAD)
        width = 100 + number % 300
        path = {
            "hostile file": f"/{self._hostile_basenames[number % len(self._hostile_basenames)]}/"
            f"?image=true&width={width}",
            "bad query": f"/{self._basenames[number % len(self._basenames)]}/?image=true&width=-{width}",
            "unknown frame": f"/{900000000 + number}/?image=true",
        }[kind]
        async with session.get(self._base_url + path) as response:
            await response.read()
            return kind, outcome_of(response)

    async def _raw(self, request: bytes) -> str:
        """The status the service answers to these bytes, sent as they are; "closed" for none."""
        host, port = self._address
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            writer.write(request)
            async with asyncio.timeout(CLIENT_TIMEOUT_SECONDS):
                status_line = await reader.readline()
        finally:
            writer.close()
        return status_line.split(b" ")[1].decode() if status_line.count(b" ") >= 2 else "closed"


async def client(
    session: aiohttp.ClientSession,
    base_url: str,
    kind: str,
    paths: Iterator[str],
    stop_at: float,
    tally: Tally,
    hostile: HostileRequests | None = None,
    hostile_share: float = 0.0,
    rng: random.Random | None = None,
) -> None:
    """One client: a request at a time, each sent as soon as the previous one is answered, until stop_at;
    a `hostile_share` of them (drawn from rng) hostile."""
    loop = asyncio.get_running_loop()
    while loop.time() < stop_at:
        if hostile is not None and rng is not None and rng.random() < hostile_share:
            await hostile_request(session, hostile, tally)
            continue
        path = next(paths)
        started = loop.time()
        try:
            async with session.get(base_url + path) as response:
                body = await response.read()
                outcome = outcome_of(response)
        except (aiohttp.ClientError, TimeoutError) as error:
            outcome, body = f"error {type(error).__name__}", str(error).encode()
        tally.outcomes[kind][outcome] += 1
        if outcome == "200":
            tally.latencies[kind].append(loop.time() - started)
        elif outcome not in EXPECTED_OVERLOAD and len(tally.unexpected_examples) < 10:
            tally.unexpected_examples.append(f"{outcome} {path}: {body[:200]!r}")


async def hostile_request(session: aiohttp.ClientSession, hostile: HostileRequests, tally: Tally) -> None:
    """One hostile request, counted "expected" when it got the answer its kind should get."""
    try:
        kind, outcome = await hostile.send(session)
    except (aiohttp.ClientError, OSError, TimeoutError) as error:
        kind, outcome = "hostile", f"error {type(error).__name__}"
    tally.hostile[f"{kind} {outcome}"] += 1
    expected = HOSTILE_ANSWERS.get(kind) == outcome or outcome in EXPECTED_OVERLOAD
    tally.outcomes["hostile"]["expected" if expected else outcome] += 1
    if not expected and len(tally.unexpected_examples) < 10:
        tally.unexpected_examples.append(f"{outcome} for a hostile request ({kind})")


def hit_paths(basenames: list[str], rng: random.Random) -> Iterator[str]:
    """Thumbnails rendered before the load, in random order: the image itself and its JSON answer."""
    paths = [f"/{basename}/{query}" for basename in basenames for query in HIT_QUERIES]
    while True:
        yield rng.choice(paths)


async def sampler(server_pid: int, tmp_dir: Path, started: float, samples: list[Sample]) -> None:
    """Sample every second until cancelled."""
    loop = asyncio.get_running_loop()
    while True:
        samples.append(take_sample(server_pid, tmp_dir, loop.time() - started))
        await asyncio.sleep(1.0)


async def scrape(session: aiohttp.ClientSession, base_url: str) -> list[MetricSample]:
    """Every sample of the service's /metrics as it is now."""
    async with session.get(base_url + "/metrics") as response:
        text = await response.text()
    return [sample for family in text_string_to_metric_families(text) for sample in family.samples]


async def renders(session: aiohttp.ClientSession, base_url: str) -> Counter[str]:
    """Renders the service has done so far, by result (ok, error), from its /metrics."""
    done: Counter[str] = Counter()
    for sample in await scrape(session, base_url):
        if sample.name == "thumbproxy_renders_total":
            done[sample.labels["result"]] += int(sample.value)
    return done


async def prime(session: aiohttp.ClientSession, base_url: str, basenames: list[str]) -> None:
    """Render the hit thumbnails once, so the hit clients' requests are hits from the start."""
    for basename in basenames:
        for query in HIT_QUERIES:
            async with session.get(f"{base_url}/{basename}/{query}") as response:
                if response.status != 200:
                    raise RuntimeError(f"priming {basename}{query} answered {response.status}: {await response.text()}")
                await response.read()


async def soak(
    base_url: str,
    server_pid: int,
    tmp_dir: Path,
    basenames: list[str],
    hostile_basenames: list[str],
    clients: int,
    miss_clients: int,
    hostile_share: float,
    seconds: float,
) -> SoakResult:
    """Prime, load for `seconds`, then wait for TMP_DIR to empty; the tally, samples and idle figures."""
    connector = aiohttp.TCPConnector(limit=clients)
    timeout = aiohttp.ClientTimeout(total=CLIENT_TIMEOUT_SECONDS)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await prime(session, base_url, basenames)
        before = take_sample(server_pid, tmp_dir, 0.0)
        renders_before = await renders(session, base_url)
        tally, samples = Tally(), list[Sample]()
        loop = asyncio.get_running_loop()
        started = loop.time()
        sampling = asyncio.create_task(sampler(server_pid, tmp_dir, started, samples))
        # Fixed seed: every run asks for the same sequence of hits.
        rng = random.Random(6)
        hits, misses = hit_paths(basenames, rng), miss_paths(basenames)
        hostile = HostileRequests(base_url, basenames, hostile_basenames)
        await asyncio.gather(
            *(
                client(
                    session,
                    base_url,
                    "miss" if number < miss_clients else "hit",
                    misses if number < miss_clients else hits,
                    started + seconds,
                    tally,
                    hostile,
                    hostile_share,
                    random.Random(number),
                )
                for number in range(clients)
            )
        )
        load_seconds = loop.time() - started
        sampling.cancel()
        renders_after = await renders(session, base_url)
    # The clients' connections are closed: give the server a moment to notice, then wait for TMP_DIR to empty.
    await asyncio.sleep(IDLE_SETTLE_SECONDS)
    idle_deadline = time.monotonic() + IDLE_WAIT_SECONDS
    while (idle := take_sample(server_pid, tmp_dir, 0.0)).tmp_files and time.monotonic() < idle_deadline:
        await asyncio.sleep(0.5)
    return SoakResult(tally, samples, before, idle, load_seconds, renders_after - renders_before)


# Checks and report --------------------------------------------------------------------------


def after_warm_up(samples: list[Sample], seconds: float) -> list[Sample]:
    """The samples from the end of the warm-up (the first third of the run) on."""
    return [sample for sample in samples if sample.seconds >= seconds / 3]


def rise(samples: list[Sample], name: str) -> float:
    """How much a figure grew across the samples: the rise of the least-squares line through them.

    A leak is a steady climb and shows in full; a figure that swings with the work under way
    (a render's arrays, a download's socket) barely tilts the line.
    """
    times = [sample.seconds for sample in samples]
    line = statistics.linear_regression(times, [getattr(sample, name) for sample in samples])
    return line.slope * (times[-1] - times[0])


def checks(result: SoakResult, seconds: float) -> dict[str, dict]:
    """Each target of the issue: the figures it was judged on and whether it passed."""
    settled = after_warm_up(result.samples, seconds)
    unexpected, unexpected_5xx = result.tally.unexpected(), result.tally.unexpected_5xx()
    found: dict[str, dict] = {
        "no unexpected answers": {"unexpected": unexpected, "passed": unexpected == 0},
        "no unexpected 5xx": {"unexpected_5xx": unexpected_5xx, "passed": unexpected_5xx == 0},
    }
    for process in ("server", "render"):
        grown = rise(settled, f"{process}_fds")
        found[f"{process} fds flat"] = {
            "after_warm_up": getattr(settled[0], f"{process}_fds"),
            "rise": round(grown, 1),
            "allowed": FD_SLACK,
            "passed": grown <= FD_SLACK,
        }
    found["TMP_DIR empty when idle"] = {"files": result.idle.tmp_files, "passed": result.idle.tmp_files == 0}
    for process in ("server", "render"):
        at_warm_up = getattr(settled[0], f"{process}_rss") / MIB
        grown = rise(settled, f"{process}_rss") / MIB
        allowed = max(RSS_SLACK_SHARE * at_warm_up, RSS_SLACK_MIB)
        found[f"{process} RSS flat"] = {
            "after_warm_up_mib": round(at_warm_up, 1),
            "rise_mib": round(grown, 1),
            "allowed_mib": round(allowed, 1),
            "passed": grown <= allowed,
        }
    return found


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


def report(result: SoakResult, found: dict[str, dict], arguments: argparse.Namespace, miss_clients: int) -> None:
    """Print the answers, the resource figures and the checks."""
    tally = result.tally
    print(
        f"soak: {arguments.clients} clients ({arguments.clients - miss_clients} hits, {miss_clients} misses) "
        f"for {result.load_seconds:.0f} s on {arguments.frames} frames; server on CPU 0, clients on the others"
    )
    print(
        f"{'clients':<8}{'answered':>10}{'per s':>8}{'200':>10}{'503+RA':>8}{'504':>6}{'unexpected':>12}"
        f"{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}"
    )
    for kind in ("hit", "miss"):
        outcomes, latencies = tally.outcomes[kind], tally.latencies[kind]
        answered = sum(outcomes.values())
        print(
            f"{kind:<8}{answered:>10}{answered / result.load_seconds:>8.0f}{outcomes['200']:>10}"
            f"{outcomes['503 Retry-After']:>8}{outcomes['504']:>6}{tally.unexpected((kind,)):>12}"
            f"{1000 * percentile(latencies, 0.5):>9.1f}{1000 * percentile(latencies, 0.99):>9.1f}"
            f"{1000 * max(latencies, default=float('nan')):>9.1f}"
        )
    hostile = tally.outcomes["hostile"]
    print(
        f"hostile {sum(hostile.values())} requests, {hostile['expected']} answered as they should: "
        f"{dict(sorted(tally.hostile.items()))}"
    )
    print(f"renders during the load: {dict(result.renders)}")
    for example in tally.unexpected_examples:
        print(f"  unexpected: {example}")
    settled = after_warm_up(result.samples, arguments.seconds)
    print(f"{'sampled':<22}{'before':>10}{'warm-up end':>13}{'rise after':>12}{'max':>8}{'idle after':>12}")
    rows = (
        ("server fds", "server_fds", 1),
        ("render worker fds", "render_fds", 1),
        ("server RSS MiB", "server_rss", MIB),
        ("render worker RSS MiB", "render_rss", MIB),
        ("render workers", "render_workers", 1),
        ("TMP_DIR files", "tmp_files", 1),
    )
    for title, name, unit in rows:
        before, at_warm_up, idle = (getattr(sample, name) / unit for sample in (result.before, settled[0], result.idle))
        highest = max(getattr(sample, name) for sample in result.samples) / unit
        print(
            f"{title:<22}{before:>10.0f}{at_warm_up:>13.0f}{rise(settled, name) / unit:>12.1f}{highest:>8.0f}"
            f"{idle:>12.0f}"
        )
    for name, check in found.items():
        figures = ", ".join(f"{key} {value}" for key, value in check.items() if key != "passed")
        print(f"{name}: {figures}: {'PASS' if check['passed'] else 'FAIL'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--frames", type=int, default=36)
    parser.add_argument("--miss-share", type=float, default=0.2, help="share of the clients that ask for misses")
    parser.add_argument("--hostile-share", type=float, default=0.01, help="share of the requests that are hostile")
    parser.add_argument("--quick", action="store_true", help="20 seconds instead of --seconds")
    arguments = parser.parse_args()
    if arguments.quick:
        arguments.seconds = 20.0
    if arguments.seconds < 10:
        parser.error("--seconds must be at least 10: the samples after the warm-up have to show a trend")
    miss_clients = round(arguments.clients * arguments.miss_share)
    # The clients and the archive on the load CPUs; `server` puts the service on the other one.
    os.sched_setaffinity(0, LOAD_CPUS)

    with tempfile.TemporaryDirectory() as directory:
        work = Path(directory)
        basenames = write_frames(work / "frames", arguments.frames)
        hostile_basenames = write_hostile_frames(work / "frames")
        port, tmp_dir = free_port(), work / "tmp"
        with fake_archive(work / "frames") as archive_url:
            settings = {
                "ARCHIVE_API_URL": archive_url,
                "THUMBPROXY_CACHE_DIR": str(work / "cache"),
                "TMP_DIR": str(tmp_dir),
                "THUMBPROXY_CONFIG": os.devnull,
                "THUMBPROXY_MEMORY_CACHE_MB": MEMORY_CACHE_MB,
            }
            command = [sys.executable, "-m", "thumbproxy", "serve", "--host", "127.0.0.1", "--port", str(port)]
            with server(command, port, settings) as base_url:
                result = asyncio.run(
                    soak(
                        base_url,
                        server_pid(port),
                        tmp_dir,
                        basenames,
                        hostile_basenames,
                        arguments.clients,
                        miss_clients,
                        arguments.hostile_share,
                        arguments.seconds,
                    )
                )

    found = checks(result, arguments.seconds)
    report(result, found, arguments, miss_clients)
    tally = result.tally
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    output = RESULTS / f"soak-{stamp}.json"
    output.write_text(
        json.dumps(
            {
                "clients": arguments.clients,
                "miss_clients": miss_clients,
                "hostile_share": arguments.hostile_share,
                "hostile": tally.hostile,
                "seconds": arguments.seconds,
                "load_seconds": result.load_seconds,
                "frames": arguments.frames,
                "settings": settings,
                "outcomes": tally.outcomes,
                "unexpected_examples": tally.unexpected_examples,
                "latency_ms": {
                    kind: {"p50": 1000 * percentile(values, 0.5), "p99": 1000 * percentile(values, 0.99)}
                    for kind, values in tally.latencies.items()
                },
                "renders": result.renders,
                "checks": found,
                "before": asdict(result.before),
                "idle": asdict(result.idle),
                "samples": [asdict(sample) for sample in result.samples],
                "cpus": os.cpu_count(),
            },
            indent=2,
        )
    )
    print(f"wrote {output}")
    return 0 if all(check["passed"] for check in found.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
