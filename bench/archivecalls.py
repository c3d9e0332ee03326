"""Archive API calls per hour of one replica, idle and under traffic, for the current code and a reference
commit side by side.

The OCS archive lets anonymous callers make 1000 API calls a day per client address, so what a replica
spends of that matters as much as how fast it answers. Each service (`thumbproxy serve`, a fresh cache,
THUMBPROXY_CONFIG=/dev/null, THUMBPROXY_WORKERS=2) fetches from the fake OCS archive of the tests on
loopback, one archive process for all of them, while a prober asks `/readyz` every 5 s and `/healthz`
every 10 s as the kubelet does (deploy/kubernetes/deployment.yaml). Two phases, each run on the
reference code, then on the current code:

* idle: the prober alone, from the moment the service listens;
* soak: the prober and bench.soak's clients (hits on thumbnails rendered before the window, misses on
  new ones), with THUMBPROXY_METADATA_TTL scaled down so that an hour's record refreshes show within
  the window.

The API calls (thumbproxy_archive_requests_total of every operation but download, which is object
storage: frame, list, probe) are read from the service's /metrics at the start and the end of each
window, and reported per hour.

    python -m bench.archivecalls [--idle-seconds 180] [--soak-seconds 180] [--clients 20] [--miss-share 0.2]
                                 [--frames 36] [--metadata-ttl 30] [--reference 4b68622] [--quick]
"""

import argparse
import asyncio
import json
import math
import os
import random
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from bench.hitpath import RESULTS, free_port, server
from bench.soak import (
    CLIENT_TIMEOUT_SECONDS,
    Tally,
    client,
    fake_archive,
    hit_paths,
    miss_paths,
    prime,
    scrape,
    write_frames,
)

ROOT = Path(__file__).resolve().parent.parent
# The last commit before the archive's health was judged from traffic.
REFERENCE = "4b68622"
PHASES = ("idle", "soak")
# The kubelet's probes in deploy/kubernetes/deployment.yaml: readiness every 5 s (timeout 6 s), liveness every 10 s.
READYZ_PERIOD_SECONDS = 5.0
HEALTHZ_EVERY_TICKS = 2
PROBE_TIMEOUT = aiohttp.ClientTimeout(total=6.0)
# Listed first in the table, in this order, even when not called; any other operation but download follows.
API_OPERATIONS = ("frame", "list", "probe")
NOT_API_OPERATIONS = frozenset({"download"})
DEFAULT_METADATA_TTL_SECONDS = 300.0
SERVICE_SETTINGS = {"THUMBPROXY_CONFIG": os.devnull, "THUMBPROXY_WORKERS": "2"}

# An API call by (operation, status), e.g. ("probe", "200").
Calls = Counter[tuple[str, str]]


def python(*arguments: str) -> list[str]:
    """A command line of this interpreter, as every service of either code is started."""
    # -P: `python -m` would otherwise put the working directory (this repository) ahead of PYTHONPATH.
    return [sys.executable, "-P", *arguments]


@dataclass(frozen=True)
class Code:
    """The code a service runs: the working tree (no checkout), or a checkout put first on PYTHONPATH."""

    name: str
    checkout: Path | None = None

    def environment(self) -> dict[str, str]:
        """What to add to a process's environment so that it imports this code's thumbproxy."""
        return {} if self.checkout is None else {"PYTHONPATH": str(self.checkout)}

    def imported_package(self) -> Path:
        """Where thumbproxy comes from in a process started as this code's services are; raises if not from
        this code's tree."""
        found = subprocess.run(
            python("-c", "import thumbproxy; print(thumbproxy.__file__)"),
            env={**os.environ, **self.environment()},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        expected = (self.checkout or ROOT) / "thumbproxy" / "__init__.py"
        if Path(found).resolve() != expected.resolve():
            raise RuntimeError(f"the {self.name} service would import {found}, not {expected}")
        return Path(found)


CURRENT = Code("current")


@dataclass
class Window:
    """What one service did in one phase's window: its API calls, the prober's answers, and the clients'."""

    seconds: float
    calls: Calls
    prober: Counter[str]
    clients: Tally | None = None

    def count(self, operation: str | None = None) -> int:
        """API calls in this window, of one operation or (None) of all."""
        return sum(count for (called, _), count in self.calls.items() if operation in (None, called))

    def per_hour(self, operation: str | None = None) -> float:
        """API calls per hour in this window, of one operation or (None) of all."""
        return self.count(operation) * 3600 / self.seconds

    def as_json(self) -> dict[str, Any]:
        """The window with its calls as {operation: {status: calls}}."""
        calls: dict[str, dict[str, int]] = {}
        for (operation, status), count in sorted(self.calls.items()):
            calls.setdefault(operation, {})[status] = count
        clients = (
            None
            if self.clients is None
            else {
                "outcomes": self.clients.outcomes,
                "unexpected": self.clients.unexpected(),
                "unexpected_examples": self.clients.unexpected_examples,
            }
        )
        return {
            "seconds": self.seconds,
            "calls": calls,
            "per_hour": self.per_hour(),
            "prober": self.prober,
            "clients": clients,
        }


@contextmanager
def reference_checkout(revision: str) -> Iterator[Path]:
    """The repository at `revision` in a detached git worktree of a temporary directory, removed when the
    block ends, also on failure."""
    with tempfile.TemporaryDirectory(prefix="thumbproxy-reference-") as directory:
        tree = Path(directory) / "tree"
        subprocess.run(["git", "worktree", "add", "--detach", "--quiet", str(tree), revision], cwd=ROOT, check=True)
        try:
            yield tree
        finally:
            # --force: the reference's services left __pycache__ directories in it.
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, check=True)


def service(code: Code, archive_url: str, cache: Path, **env: str) -> AbstractContextManager[str]:
    """`thumbproxy serve` of this code on the archive, with SERVICE_SETTINGS, a cache directory of its own and
    `env`, on any CPU; yields its base URL."""
    port = free_port()
    settings = {
        "ARCHIVE_API_URL": archive_url,
        "THUMBPROXY_CACHE_DIR": str(cache),
        "TMP_DIR": str(cache / "tmp"),
        **SERVICE_SETTINGS,
        **code.environment(),
        **env,
    }
    command = python("-m", "thumbproxy", "serve", "--host", "127.0.0.1", "--port", str(port))
    return server(command, port, settings, cpus=None)


# Counting -----------------------------------------------------------------------------------


async def api_calls(session: aiohttp.ClientSession, base_url: str) -> Calls:
    """The archive API calls the service has made so far, by operation and status, from its /metrics."""
    calls: Calls = Counter()
    for sample in await scrape(session, base_url):
        if sample.name == "thumbproxy_archive_requests_total" and sample.labels["operation"] not in NOT_API_OPERATIONS:
            calls[sample.labels["operation"], sample.labels["status"]] += round(sample.value)
    return calls


async def prober(base_url: str, stop_at: float, answers: Counter[str]) -> None:
    """Ask /readyz every READYZ_PERIOD_SECONDS and /healthz every HEALTHZ_EVERY_TICKS times, as the kubelet
    does, from now until stop_at; count the answers by path and status."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with aiohttp.ClientSession(timeout=PROBE_TIMEOUT) as session:
        for tick in range(math.ceil((stop_at - started) / READYZ_PERIOD_SECONDS)):
            # On a fixed schedule, like the kubelet: a slow answer does not push the next probe back.
            await asyncio.sleep(max(0.0, started + tick * READYZ_PERIOD_SECONDS - loop.time()))
            for path in ("/readyz", "/healthz") if tick % HEALTHZ_EVERY_TICKS == 0 else ("/readyz",):
                try:
                    async with session.get(base_url + path) as response:
                        await response.read()
                        answers[f"{path} {response.status}"] += 1
                except (aiohttp.ClientError, TimeoutError) as error:
                    answers[f"{path} {type(error).__name__}"] += 1


async def counted_window(
    session: aiohttp.ClientSession,
    base_url: str,
    seconds: float,
    traffic: Callable[[float], list[Coroutine[Any, Any, None]]],
) -> Window:
    """The API calls the service makes in a window of `seconds` while the prober and `traffic(stop_at)` run."""
    loop = asyncio.get_running_loop()
    before = await api_calls(session, base_url)
    started = loop.time()
    stop_at = started + seconds
    answers: Counter[str] = Counter()
    await asyncio.gather(prober(base_url, stop_at, answers), *traffic(stop_at))
    # The prober's last tick comes before stop_at: wait out the window, so its length is what was asked.
    await asyncio.sleep(max(0.0, stop_at - loop.time()))
    ended = loop.time()
    return Window(ended - started, await api_calls(session, base_url) - before, answers)


async def idle_window(base_url: str, seconds: float) -> Window:
    """The API calls a service makes in `seconds` with nothing but the prober asking it."""
    async with aiohttp.ClientSession() as session:
        return await counted_window(session, base_url, seconds, lambda stop_at: [])


async def soak_window(base_url: str, basenames: list[str], clients: int, miss_clients: int, seconds: float) -> Window:
    """The API calls a service makes in `seconds` under bench.soak's clients and the prober, after priming
    (not counted)."""
    connector = aiohttp.TCPConnector(limit=clients)
    timeout = aiohttp.ClientTimeout(total=CLIENT_TIMEOUT_SECONDS)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await prime(session, base_url, basenames)
        tally = Tally()
        # Fixed seed, as in bench.soak: every service gets the same sequence of hits.
        hits, misses = hit_paths(basenames, random.Random(6)), miss_paths(basenames)

        def traffic(stop_at: float) -> list[Coroutine[Any, Any, None]]:
            return [
                client(
                    session,
                    base_url,
                    "miss" if number < miss_clients else "hit",
                    misses if number < miss_clients else hits,
                    stop_at,
                    tally,
                )
                for number in range(clients)
            ]

        window = await counted_window(session, base_url, seconds, traffic)
    window.clients = tally
    return window


# The run ------------------------------------------------------------------------------------


def progress(message: str) -> None:
    """Say what is being measured, so a run of many minutes is not silent."""
    print(f"... {message}", file=sys.stderr, flush=True)


def git(*arguments: str) -> str:
    """The output of a git command in this repository."""
    return subprocess.run(["git", *arguments], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()


def measure(
    codes: tuple[Code, ...],
    archive_url: str,
    work: Path,
    basenames: list[str],
    arguments: argparse.Namespace,
    miss_clients: int,
) -> dict[str, dict[str, Window]]:
    """Each phase on each code in turn, every service with a fresh cache; the windows by phase and code."""
    windows: dict[str, dict[str, Window]] = {phase: {} for phase in PHASES}
    for code in codes:
        progress(f"idle, {code.name}: {arguments.idle_seconds:g} s")
        with service(code, archive_url, work / f"cache-idle-{code.name}") as base_url:
            windows["idle"][code.name] = asyncio.run(idle_window(base_url, arguments.idle_seconds))
    for code in codes:
        progress(f"soak, {code.name}: priming, then {arguments.soak_seconds:g} s")
        with service(
            code, archive_url, work / f"cache-soak-{code.name}", THUMBPROXY_METADATA_TTL=f"{arguments.metadata_ttl:g}"
        ) as base_url:
            windows["soak"][code.name] = asyncio.run(
                soak_window(base_url, basenames, arguments.clients, miss_clients, arguments.soak_seconds)
            )
    return windows


def operations(windows: dict[str, dict[str, Window]]) -> list[str]:
    """API_OPERATIONS, then any other operation some window counted."""
    seen = {operation for by_code in windows.values() for window in by_code.values() for operation, _ in window.calls}
    return [*API_OPERATIONS, *sorted(seen - set(API_OPERATIONS))]


def ratio_text(current: float, reference: float) -> str:
    """current / reference, or a dash when the reference made no call."""
    return f"{current / reference:.3f}" if reference else "-"


def report(
    windows: dict[str, dict[str, Window]], arguments: argparse.Namespace, miss_clients: int, reference: str
) -> None:
    """The table of calls per hour, and what the prober and the clients were answered."""
    scale = DEFAULT_METADATA_TTL_SECONDS / arguments.metadata_ttl
    print(
        f"archive API calls per hour of one replica: reference {reference}, current the working tree; "
        f"prober /readyz every {READYZ_PERIOD_SECONDS:g} s, /healthz every "
        f"{READYZ_PERIOD_SECONDS * HEALTHZ_EVERY_TICKS:g} s"
    )
    print(f"idle: {arguments.idle_seconds:g} s from the start of the service, nothing but the prober")
    print(
        f"soak: {arguments.soak_seconds:g} s after priming, {arguments.clients} clients ({miss_clients} ask for "
        f"misses) on {arguments.frames} frames, THUMBPROXY_METADATA_TTL={arguments.metadata_ttl:g} s instead of "
        f"{DEFAULT_METADATA_TTL_SECONDS:g}: records refresh {scale:g}x as often as with the default"
    )
    print(
        f"{'phase':<7}{'operation':<11}{'ref calls':>10}{'cur calls':>10}{'reference/h':>13}{'current/h':>11}"
        f"{'ratio':>8}"
    )
    for phase, by_code in windows.items():
        for operation in [*operations(windows), None]:
            pair = (by_code["reference"], by_code["current"])
            counts = [window.count(operation) for window in pair]
            hourly = [window.per_hour(operation) for window in pair]
            print(
                f"{phase:<7}{operation or 'all':<11}{counts[0]:>10}{counts[1]:>10}{hourly[0]:>13.0f}"
                f"{hourly[1]:>11.0f}{ratio_text(hourly[1], hourly[0]):>8}"
            )
    for phase, by_code in windows.items():
        for name, window in by_code.items():
            clients = (
                ""
                if window.clients is None
                else (
                    f"; clients {dict(window.clients.outcomes['hit'] + window.clients.outcomes['miss'])}, "
                    f"unexpected {window.clients.unexpected()}"
                )
            )
            print(f"{phase} {name}: window {window.seconds:.1f} s, prober {dict(window.prober)}{clients}")
            for example in window.clients.unexpected_examples if window.clients else ():
                print(f"  unexpected: {example}")
            throttled = sum(count for (_, status), count in window.calls.items() if status == "429")
            if throttled:
                print(f"  the fake archive throttled {throttled} calls (429): this window's calls depend on its quota")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--idle-seconds", type=float, default=180.0)
    parser.add_argument("--soak-seconds", type=float, default=180.0)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--miss-share", type=float, default=0.2, help="share of the clients that ask for misses")
    parser.add_argument("--frames", type=int, default=36)
    parser.add_argument(
        "--metadata-ttl",
        type=float,
        default=30.0,
        help=f"THUMBPROXY_METADATA_TTL of the soak, seconds (default of the service: {DEFAULT_METADATA_TTL_SECONDS:g})",
    )
    parser.add_argument("--reference", default=REFERENCE, help="the commit to compare with")
    parser.add_argument("--quick", action="store_true", help="60 seconds per phase")
    arguments = parser.parse_args()
    if arguments.quick:
        arguments.idle_seconds = arguments.soak_seconds = 60.0
    if arguments.frames < 1 or arguments.clients < 1:
        parser.error("the soak needs at least one frame and one client")
    miss_clients = round(arguments.clients * arguments.miss_share)
    reference_commit = git("rev-parse", "--verify", f"{arguments.reference}^{{commit}}")
    described = git("describe", "--always", "--dirty")

    with tempfile.TemporaryDirectory() as directory, reference_checkout(reference_commit) as checkout:
        codes = (Code("reference", checkout), CURRENT)
        packages = {code.name: str(code.imported_package()) for code in codes}
        work = Path(directory)
        basenames = write_frames(work / "frames", arguments.frames)
        with fake_archive(work / "frames") as archive_url:
            windows = measure(codes, archive_url, work, basenames, arguments, miss_clients)

    report(windows, arguments, miss_clients, arguments.reference)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    output = RESULTS / f"archivecalls-{stamp}.json"
    output.write_text(
        json.dumps(
            {
                "when": stamp,
                "commit": described,
                "reference": {"revision": arguments.reference, "commit": reference_commit},
                "packages": packages,
                "plan": {
                    "phases": PHASES,
                    "idle_seconds": arguments.idle_seconds,
                    "soak_seconds": arguments.soak_seconds,
                    "clients": arguments.clients,
                    "miss_clients": miss_clients,
                    "frames": arguments.frames,
                    "readyz_period_seconds": READYZ_PERIOD_SECONDS,
                    "healthz_period_seconds": READYZ_PERIOD_SECONDS * HEALTHZ_EVERY_TICKS,
                    "api_operations": "every operation but " + ", ".join(sorted(NOT_API_OPERATIONS)),
                },
                "settings": {
                    "all": SERVICE_SETTINGS,
                    "soak": {"THUMBPROXY_METADATA_TTL": arguments.metadata_ttl},
                    "default_metadata_ttl": DEFAULT_METADATA_TTL_SECONDS,
                },
                "windows": {
                    phase: {name: window.as_json() for name, window in by_code.items()}
                    for phase, by_code in windows.items()
                },
            },
            indent=2,
        )
    )
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
