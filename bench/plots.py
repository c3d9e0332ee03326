"""PNG plots of a suite run: latency distributions, and hit-path throughput against concurrency.

matplotlib's object API (no pyplot): figures render with Agg and leave no global state behind.
"""

from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator

# Panels of the latency figure: title, then each box's series name (as in the suite's "seconds") and label.
TIME_PANELS = {
    "render 4096x4096 -> 500x500, one process": {
        "render/floor": "decompress\n(floor)",
        "render/thumbproxy": "thumbproxy",
        "render/fits2image": "fits2image",
        "raw/floor": "raw 2k\nfloor",
        "raw/thumbproxy": "raw 2k\nthumbproxy",
        "raw/fits2image": "raw 2k\nfits2image",
    },
    "colour against single, one process": {
        "color/single": "single",
        "color/color": "colour\nzscale",
        "color/color lupton": "colour\nlupton",
    },
    "through the service (log scale)": {
        "service/cold first byte": "cold\nfirst byte",
        "service/cold total": "cold\ntotal",
        "service/next all": "next\nthumbnails",
        "idle/request": "cold, idle\npool, file://",
        "coalesced/request": "100\nidentical",
    },
}
CONTENDERS = ("thumbproxy", "minimal aiohttp")
LEVELS = {"0": "disk", "64": "memory"}


def _contender_label(contender: str, memory_cache_mb: str) -> str:
    return (
        contender if contender != "thumbproxy" else f"thumbproxy, {LEVELS.get(memory_cache_mb, memory_cache_mb)} hits"
    )


def _series(hit_path: list[dict]) -> dict[str, list[dict]]:
    """Hit-path results per line to draw: thumbproxy per cache level, the minimal app once (its first level's)."""
    levels = list(dict.fromkeys(result["memory_cache_mb"] for result in hit_path))
    lines: dict[str, list[dict]] = {}
    for level in levels:
        for contender in CONTENDERS:
            if contender == "thumbproxy" or level == levels[0]:
                lines[_contender_label(contender, level)] = [
                    {
                        "connections": result["connections"],
                        "runs": result["runs"][contender],
                        "median": result["medians"][contender],
                        "latency_ms": result["latency_ms"][contender],
                    }
                    for result in hit_path
                    if result["memory_cache_mb"] == level
                ]
    return lines


def _connection_ticks(axis: Axes, connections: list[int]) -> None:
    """Ticks at the connection counts measured, none between them."""
    axis.set_xticks(connections, [str(count) for count in connections])
    axis.xaxis.set_minor_locator(NullLocator())


def latency_plot(seconds: dict[str, list[float]], hit_path: list[dict], path: Path) -> None:
    """Box plots (milliseconds) of each timing series, and the hit path's latency percentiles by connections."""
    figure = Figure(figsize=(16, 9), layout="constrained")
    axes = figure.subplots(2, 2)
    for axis, (title, boxes) in zip(axes.flat, TIME_PANELS.items()):
        axis.boxplot([[1000 * value for value in seconds[name]] for name in boxes], tick_labels=list(boxes.values()))
        axis.set_title(title)
        axis.set_ylabel("ms")
        axis.grid(axis="y", alpha=0.3)
    axes.flat[2].set_yscale("log")
    hits = axes.flat[3]
    for number, (label, points) in enumerate(_series(hit_path).items()):
        connections = [point["connections"] for point in points]
        for percentile, style in (("50", "-"), ("99", "--")):
            hits.plot(
                connections,
                [point["latency_ms"][percentile] for point in points],
                style,
                marker="o",
                color=f"C{number}",
                label=f"{label}, p{percentile}",
            )
    hits.set(
        xscale="log",
        yscale="log",
        xlabel="connections",
        ylabel="ms",
        title="hit path latency, p50 and p99 (wrk, median of the rounds)",
    )
    _connection_ticks(hits, connections)
    hits.legend(fontsize="small")
    hits.grid(alpha=0.3)
    figure.savefig(path, dpi=100)


def throughput_plot(hit_path: list[dict], path: Path) -> None:
    """Requests per second against connections: median of the rounds, bars from the slowest to the fastest."""
    figure = Figure(figsize=(8, 5), layout="constrained")
    axis = figure.subplots()
    for label, points in _series(hit_path).items():
        connections = [point["connections"] for point in points]
        medians = [point["median"] for point in points]
        spread = [
            [median - min(point["runs"]) for median, point in zip(medians, points)],
            [max(point["runs"]) - median for median, point in zip(medians, points)],
        ]
        axis.errorbar(connections, medians, yerr=spread, marker="o", capsize=3, label=label)
    axis.set(xscale="log", xlabel="connections", ylabel="requests / s", title="hit path throughput (wrk)")
    _connection_ticks(axis, connections)
    axis.set_ylim(bottom=0)
    axis.legend()
    axis.grid(alpha=0.3)
    figure.savefig(path, dpi=100)
