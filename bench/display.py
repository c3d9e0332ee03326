"""Benchmark the display parameters against the default look on the 4096x4096 benchmark frame.

Times, interleaved round by round: thumbnail_from_file to a 500x500 JPEG with the default look and with each
stretch, colour map and invert (a cold render: what a frame's first thumbnail costs), and the same drawn from
the frame's preview kept in memory (what a frame's next thumbnail at a new size costs in a render worker).

    python -m bench.display [--rounds 7]      (from the repository root; also section 9 of python -m bench)
"""

import argparse
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

from bench.render import _seconds, as_render_worker, benchmark_frame

BOX = 500
# Target from the issue: no display parameter costs more than a tenth over the default look.
MAX_DISPLAY_OVER_DEFAULT = 1.1
STRETCHES = ("linear", "sqrt", "log", "asinh", "histeq")
COLORMAPS = ("viridis", "magma", "inferno", "plasma", "cividis", "heat")
# Display parameters by row name; "default" is the reference.
VARIANTS: dict[str, dict[str, object]] = {
    "default": {},
    **{f"stretch={name}": {"stretch": name} for name in STRETCHES},
    **{f"cmap={name}": {"cmap": name} for name in COLORMAPS},
    "invert=true": {"invert": True},
}


def time_interleaved(path: Path, rounds: int) -> dict[str, list[float]]:
    """Seconds per run of each variant, cold ("<variant>") and from the kept preview ("<variant> from preview"),
    one run of each per round after a warm-up round."""
    from thumbproxy.render import RenderOptions, thumbnail_from_file
    from thumbproxy.render.preview import DEFAULT_PREVIEW_SIZE
    from thumbproxy.render.thumbnail import thumbnail_and_preview_from_file, thumbnail_from_preview

    as_render_worker()
    options = {name: RenderOptions(width=BOX, height=BOX, **variant) for name, variant in VARIANTS.items()}
    _, preview = thumbnail_and_preview_from_file(path, options["default"], DEFAULT_PREVIEW_SIZE)
    assert preview is not None
    contenders: dict[str, Callable[[], object]] = {}
    for name, asked in options.items():
        contenders[name] = lambda asked=asked: thumbnail_from_file(path, asked)
        contenders[f"{name} from preview"] = lambda asked=asked: thumbnail_from_preview(preview, asked)
    for call in contenders.values():
        call()
    timed = [{name: _seconds(call) for name, call in contenders.items()} for _ in range(rounds)]
    return {name: [row[name] for row in timed] for name in contenders}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, help="interleaved timing rounds (default 7)")
    times = time_interleaved(benchmark_frame(), parser.parse_args().rounds)
    medians = {name: statistics.median(seconds) for name, seconds in times.items()}
    print(f"{'ms':<32}{'cold':>8}{'x default':>10}{'preview':>9}{'x default':>10}")
    for name in VARIANTS:
        cold, drawn = medians[name], medians[f"{name} from preview"]
        print(
            f"{name:<32}{1000 * cold:>8.1f}{cold / medians['default']:>10.2f}"
            f"{1000 * drawn:>9.1f}{drawn / medians['default from preview']:>10.2f}"
        )
    slowest = max(medians[name] / medians["default"] for name in VARIANTS)
    print(f"\ntarget: slowest cold display variant / default <= {MAX_DISPLAY_OVER_DEFAULT:g}: {slowest:.2f}")
    return 0 if slowest <= MAX_DISPLAY_OVER_DEFAULT else 1


if __name__ == "__main__":
    sys.exit(main())
