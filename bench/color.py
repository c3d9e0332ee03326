"""Benchmark color_thumbnail_from_files against thumbnail_from_file on 4096x4096 frames.

Three RICE-compressed float32 frames of one field (red, visual, blue; stars offset by a few
pixels, WCS to match) are made once under bench/results/. Times, interleaved round by round:
thumbnail_from_file of the red frame and color_thumbnail_from_files of all three, both to 500x500
JPEGs, the colour one with each stretch. Prints a table, writes a JSON file under
bench/results/ and exits 1 if the target is missed.

    python -m bench.color [--rounds 7]      (from the repository root)
"""

import argparse
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

from bench.render import _check, _seconds, _summary, _versions, as_render_worker

RESULTS = Path(__file__).resolve().parent / "results"
FRAME_SIZE = 4096
BOX = 500
# Target from the issue: colour costs about three single-frame renders.
MAX_COLOR_OVER_SINGLE = 3.5
# Offsets (pixels) of each filter's stars from the red frame's: sub-pixel, so the
# interpolating path is the one timed.
OFFSETS = {"rp": (0.0, 0.0), "V": (5.3, -3.6), "B": (-9.5, 4.2)}


def benchmark_frames() -> list[Path]:
    """The red, visual and blue 4096x4096 frames, made once."""
    from thumbproxy.demo.sampledata import star_field

    paths = []
    for name, (dx, dy) in OFFSETS.items():
        path = RESULTS / f"rvb_{FRAME_SIZE}_{name}.fits.fz"
        if not path.exists():
            RESULTS.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(path.name + ".partial")
            star_field(partial, FRAME_SIZE, filter_name=name, dx=dx, dy=dy)
            os.replace(partial, path)
        paths.append(path)
    return paths


def time_interleaved(paths: list[Path], rounds: int) -> tuple[dict[str, list[float]], str]:
    """Seconds per run of each contender, one run of each per round after a warm-up round;
    and how the colour renders aligned the frames."""
    from thumbproxy.render import RenderOptions, color_thumbnail_from_files, thumbnail_from_file

    as_render_worker()
    options = RenderOptions(width=BOX, height=BOX)
    lupton = RenderOptions(width=BOX, height=BOX, stretch="lupton")
    alignments = set()
    contenders = {
        "single": lambda: thumbnail_from_file(paths[0], options),
        "color": lambda: alignments.add(color_thumbnail_from_files(paths, options).alignment),
        "color lupton": lambda: alignments.add(color_thumbnail_from_files(paths, lupton).alignment),
    }
    for call in contenders.values():
        call()
    timed = [{name: _seconds(call) for name, call in contenders.items()} for _ in range(rounds)]
    times = {name: [row[name] for row in timed] for name in contenders}
    return times, ",".join(sorted(alignments))


def run(rounds: int) -> bool:
    """Run the benchmark, print the table, write the JSON; True if the target is met."""
    paths = benchmark_frames()
    times, alignment = time_interleaved(paths, rounds)
    summary = {name: _summary(seconds) for name, seconds in times.items()}
    single = summary["single"]["median"]
    ratios = {name: summary[name]["median"] / single for name in summary}
    check = _check(ratios["color"], "<=", MAX_COLOR_OVER_SINGLE)

    print(
        f"3 x {FRAME_SIZE}x{FRAME_SIZE} float32 RICE_1 frames ({', '.join(OFFSETS)}), "
        f"{BOX}x{BOX} JPEG, {rounds} interleaved rounds, alignment: {alignment}"
    )
    print(f"{'seconds':<40}{'median':>8}{'min':>8}{'max':>8}{'x single':>10}")
    labels = {
        "single": "thumbnail_from_file (red frame)",
        "color": "color_thumbnail_from_files (zscale)",
        "color lupton": "color_thumbnail_from_files (lupton)",
    }
    for name, label in labels.items():
        row = summary[name]
        print(f"{label:<40}{row['median']:>8.3f}{row['min']:>8.3f}{row['max']:>8.3f}{ratios[name]:>10.2f}")
    print(
        f"\ntarget: colour (zscale) median {check['limit']} x single median: "
        f"{check['measured']:.2f}  {'PASS' if check['passed'] else 'FAIL'}"
    )

    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    report = {
        "when": stamp,
        "frames": [path.name for path in paths],
        "box": BOX,
        "rounds": rounds,
        "alignment": alignment,
        "versions": _versions(),
        "seconds": times,
        "summary": summary,
        "over_single": ratios,
        "checks": {"color / single": check},
    }
    output = RESULTS / f"color-{stamp}.json"
    output.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {output}")
    return check["passed"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, help="interleaved timing rounds (default 7)")
    return 0 if run(parser.parse_args().rounds) else 1


if __name__ == "__main__":
    sys.exit(main())
