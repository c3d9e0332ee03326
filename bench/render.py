"""Benchmark thumbnail_from_file on a 4096x4096 RICE-compressed float32 frame.

Times, interleaved round by round: astropy only decompressing the frame (the floor),
thumbnail_from_file to a 500x500 JPEG, and fits2image 1.1's fits_to_jpg to the same size.
Peak memory of one render is measured in a fresh subprocess. Counts the isolated bright
specks (tests/specks.py) in both renderers' thumbnails of a 2048x2048 frame struck by 4000
particle hits and of a real frame. Prints a table, writes a JSON file under bench/results/
and exits 1 if a target is missed.

    python -m bench.render [--rounds 7]      (or: python bench/render.py)
"""

import argparse
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
FRAME_SIZE = 4096
BOX = 500
# Targets from the issue.
MAX_RENDER_OVER_DECOMPRESS = 1.5
MIN_FITS2IMAGE_OVER_RENDER = 2.0
MAX_PEAK_OVER_FRAME = 3.0
# Issue 18: on a frame full of particle hits, at most this many times fits2image's specks, plus a couple of dozen.
MAX_SPECKS_OVER_FITS2IMAGE = 1.2
SPECK_ALLOWANCE = 24
HITS_FRAME_SIZE = 2048
FRAME_BYTES = FRAME_SIZE * FRAME_SIZE * 4
MIB = 2**20


def benchmark_frame() -> Path:
    """The 4096x4096 star field (no NaN, so fits2image can render it), made once."""
    from thumbproxy.demo.sampledata import star_field

    path = RESULTS / f"star_field_{FRAME_SIZE}.fits.fz"
    if not path.exists():
        RESULTS.mkdir(parents=True, exist_ok=True)
        star_field(path, FRAME_SIZE)
    return path


def decompress(path: Path) -> None:
    """The floor: what astropy alone takes to hand over the decompressed pixels.

    The SCI extension of a reduced frame, else the first HDU with pixels (a raw frame's).
    """
    from astropy.io import fits

    with fits.open(path) as hdul:
        # Reading .data is what decompresses (once: astropy keeps it); an empty primary's is None.
        pixels = hdul["SCI"] if "SCI" in hdul else next(hdu for hdu in hdul if hdu.data is not None)
        _ = pixels.data


def render(path: Path, box: int = BOX) -> bytes:
    """thumbproxy's renderer, as a render worker calls it, to a box x box (500x500) JPEG."""
    from thumbproxy.render import RenderOptions, thumbnail_from_file

    return thumbnail_from_file(path, RenderOptions(width=box, height=box))


def fits2image(path: Path, output: Path, box: int = BOX) -> None:
    """fits2image 1.1, the renderer thumbproxy replaces, to the same size."""
    from fits2image.conversions import fits_to_jpg

    if not fits_to_jpg(str(path), str(output), width=box, height=box):
        raise RuntimeError("fits2image failed")


def speck_frames() -> dict[str, tuple[Path, int]]:
    """The frames whose specks are counted, and the box each is drawn into: the 2048x2048 field of a few stars
    struck by 4000 particle hits (made once), at the service's default box and at BOX; and astropy's own test
    image of NGC 1316 (a real 440x300 frame, installed with astropy) at a box small enough to block-average it."""
    import astropy

    path = RESULTS / f"cosmic_rays_{HITS_FRAME_SIZE}.fits.fz"
    if not path.exists():
        from thumbproxy.demo.sampledata import cosmic_ray_field

        RESULTS.mkdir(parents=True, exist_ok=True)
        cosmic_ray_field(path, HITS_FRAME_SIZE)
    real = Path(astropy.__file__).parent / "io" / "fits" / "tests" / "data" / "comp.fits"
    frames = {f"hits {HITS_FRAME_SIZE} -> 200": (path, 200), f"hits {HITS_FRAME_SIZE} -> {BOX}": (path, BOX)}
    return frames | ({"NGC 1316 (astropy comp.fits) -> 100": (real, 100)} if real.exists() else {})


def speck_counts() -> dict[str, dict[str, int]]:
    """Isolated bright specks in thumbproxy's and fits2image's thumbnails of each of speck_frames."""
    from PIL import Image

    # The speck counter lives with the tests, which import it as a top-level module.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from specks import count_specks

    counts = {}
    with tempfile.TemporaryDirectory() as scratch:
        output = Path(scratch) / "fits2image.jpg"
        for name, (path, box) in speck_frames().items():
            fits2image(path, output, box)
            theirs = np.asarray(Image.open(output).convert("L"))
            ours = np.asarray(Image.open(io.BytesIO(render(path, box))).convert("L"))
            counts[name] = {"thumbproxy": count_specks(ours), "fits2image": count_specks(theirs)}
    return counts


def _seconds(call: Callable[[], object]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def as_render_worker() -> None:
    """Give this process the C allocator settings of a render worker (thumbproxy.workers.allocator), so renders
    timed here run as they run in the service; every contender in the process runs under them alike."""
    from thumbproxy.workers.allocator import keep_freed_memory

    keep_freed_memory()


def time_interleaved(path: Path, rounds: int) -> dict[str, list[float]]:
    """Seconds per run of each contender, one run of each per round after a warm-up round."""
    as_render_worker()
    with tempfile.TemporaryDirectory() as scratch:
        output = Path(scratch) / "fits2image.jpg"
        contenders = {
            "decompress": lambda: decompress(path),
            "render": lambda: render(path),
            "fits2image": lambda: fits2image(path, output),
        }
        for call in contenders.values():
            call()
        times: dict[str, list[float]] = {name: [] for name in contenders}
        for _ in range(rounds):
            for name, call in contenders.items():
                times[name].append(_seconds(call))
    return times


def status_bytes(field: str, pid: int | str = "self") -> int:
    """A memory figure (VmRSS, VmHWM) of a process from /proc/<pid>/status (Linux), in bytes."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/{pid}/status")


def reset_peak_rss(pid: int | str = "self") -> None:
    """Reset a process's peak RSS (VmHWM) to its current RSS (Linux; our own processes only)."""
    # Writing 5 to clear_refs resets VmHWM.
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def measure_memory_here(what: str, method: str, path: Path) -> int:
    """Run in a fresh process: bytes one call of `what` adds at its peak, by `method`.

    "rss": peak RSS (VmHWM) minus the RSS before the call. Not ru_maxrss: Linux carries
    that over fork and exec, so a child reports the benchmark parent's peak. VmHWM belongs
    to the process image and is reset before the call. "tracemalloc": Python and numpy
    allocations only (not astropy's C buffers); measured separately because tracing
    itself costs memory.
    """
    call = {"render": render, "decompress": decompress}[what]
    from thumbproxy.demo.sampledata import star_field

    as_render_worker()
    # A tiny run first, so lazily imported modules and one-off buffers are not counted.
    with tempfile.TemporaryDirectory() as scratch:
        call(star_field(Path(scratch) / "tiny.fits.fz", 64))
    if method == "tracemalloc":
        tracemalloc.start()
        call(path)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return peak
    reset_peak_rss()
    baseline = status_bytes("VmRSS")
    call(path)
    return status_bytes("VmHWM") - baseline


def measure_memory(what: str, path: Path) -> dict[str, int]:
    """measure_memory_here by each method, each in a fresh interpreter."""
    figures = {}
    for method in ("rss", "tracemalloc"):
        result = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "--memory-of", what, method, str(path)],
            capture_output=True,
            text=True,
        )
        if result.returncode:
            raise RuntimeError(f"measuring {what} by {method} failed:\n{result.stderr}")
        figures[method] = int(result.stdout)
    return figures


def _check(measured: float, relation: str, limit: float) -> dict:
    """A target: the measured figure, its limit ("<=", ">=" or "==" a number) and whether it is met."""
    passed = {"<=": measured <= limit, ">=": measured >= limit, "==": measured == limit}[relation]
    return {"measured": measured, "limit": f"{relation} {limit:g}", "passed": passed}


def speck_checks(specks: dict[str, dict[str, int]]) -> dict[str, dict]:
    """The speck target on each view of the frame full of hits: thumbproxy's specks at most
    MAX_SPECKS_OVER_FITS2IMAGE times fits2image's plus SPECK_ALLOWANCE."""
    return {
        f"specks, {name}": _check(
            counts["thumbproxy"], "<=", MAX_SPECKS_OVER_FITS2IMAGE * counts["fits2image"] + SPECK_ALLOWANCE
        )
        for name, counts in specks.items()
        if name.startswith("hits")
    }


def print_specks(specks: dict[str, dict[str, int]]) -> None:
    """The table of speck counts."""
    print(f"\n{'isolated bright specks (tests/specks.py)':<40}{'thumbproxy':>11}{'fits2image':>11}")
    for name, counts in specks.items():
        print(f"{name:<40}{counts['thumbproxy']:>11}{counts['fits2image']:>11}")


def _summary(seconds: list[float]) -> dict[str, float]:
    return {"median": statistics.median(seconds), "min": min(seconds), "max": max(seconds)}


def _cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), or the platform's word for it."""
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return platform.processor()


def _versions() -> dict[str, str]:
    """The machine and the versions of the libraries a benchmark's figures depend on."""
    import astropy
    import numpy
    import PIL

    return {
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "astropy": astropy.__version__,
        "pillow": PIL.__version__,
        "fits2image": metadata.version("fits2image"),
        "machine": platform.machine(),
        "cpu_model": _cpu_model(),
        "cpus": str(len(os.sched_getaffinity(0))),
    }


def run(rounds: int) -> bool:
    """Run the whole benchmark, print the table, write the JSON; True if every target is met."""
    path = benchmark_frame()
    times = time_interleaved(path, rounds)
    memory = {what: measure_memory(what, path) for what in ("decompress", "render")}
    specks = speck_counts()
    summary = {name: _summary(seconds) for name, seconds in times.items()}
    render_median = summary["render"]["median"]
    checks = {
        "render / decompress": _check(
            render_median / summary["decompress"]["median"], "<=", MAX_RENDER_OVER_DECOMPRESS
        ),
        "fits2image / render": _check(
            summary["fits2image"]["median"] / render_median, ">=", MIN_FITS2IMAGE_OVER_RENDER
        ),
        "render peak RSS growth / frame": _check(memory["render"]["rss"] / FRAME_BYTES, "<=", MAX_PEAK_OVER_FRAME),
        **speck_checks(specks),
    }

    print(f"{FRAME_SIZE}x{FRAME_SIZE} float32 RICE_1 frame {path.name}, {BOX}x{BOX} JPEG, {rounds} interleaved rounds")
    print(f"{'seconds':<28}{'median':>8}{'min':>8}{'max':>8}")
    labels = {
        "decompress": "astropy decompress (floor)",
        "render": "thumbproxy thumbnail_from_file",
        "fits2image": "fits2image 1.1 fits_to_jpg",
    }
    for name, label in labels.items():
        row = summary[name]
        print(f"{label:<28}{row['median']:>8.3f}{row['min']:>8.3f}{row['max']:>8.3f}")
    print(f"\n{'memory, one call (MiB)':<28}{'RSS peak growth':>16}{'tracemalloc peak':>18}")
    for what, figures in memory.items():
        print(f"{what:<28}{figures['rss'] / MIB:>16.1f}{figures['tracemalloc'] / MIB:>18.1f}")
    print(
        f"(decompressed frame: {FRAME_BYTES / MIB:.0f} MiB; each figure from its own fresh "
        "process after imports and a tiny warm-up call;\n RSS growth = peak RSS (VmHWM) minus "
        "RSS before the call)"
    )
    print_specks(specks)
    print(f"\n{'target':<34}{'measured':>9}{'limit':>9}  result")
    for name, check in checks.items():
        print(f"{name:<34}{check['measured']:>9.2f}{check['limit']:>9}  {'PASS' if check['passed'] else 'FAIL'}")

    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    report = {
        "when": stamp,
        "frame": path.name,
        "box": BOX,
        "rounds": rounds,
        "versions": _versions(),
        "seconds": times,
        "summary": summary,
        "memory_bytes": memory,
        "specks": specks,
        "frame_bytes": FRAME_BYTES,
        "checks": checks,
    }
    output = RESULTS / f"render-{stamp}.json"
    output.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {output}")
    return all(check["passed"] for check in checks.values())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, help="interleaved timing rounds (default 7)")
    parser.add_argument("--memory-of", nargs=3, metavar=("WHAT", "METHOD", "FRAME"), help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.memory_of:
        what, method, frame = arguments.memory_of
        print(measure_memory_here(what, method, Path(frame)))
        return 0
    return 0 if run(arguments.rounds) else 1


if __name__ == "__main__":
    sys.exit(main())
