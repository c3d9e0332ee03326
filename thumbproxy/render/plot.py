"""Draw a 1-D spectrum as a line plot filling a thumbnail's box: flux against the spectrum's world axis (or its
pixel index) in a frame with round-number ticks and axis titles, the caller's label as a title above it. A box
too small for axes gets the line alone, a sparkline.

Drawn with Pillow, in grey: black on white.
"""

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from thumbproxy.render.label import Font, fitted_font, font, single_line, text_width
from thumbproxy.render.spectrum import FLUX, LARGEST_VALUE, Spectrum, flux_unit, spectral_axis
from thumbproxy.render.ticks import Ticks, round_ticks

WHITE = 255
BLACK = 0
# Below either, axes and their labels would squeeze the line out of the box: it is drawn alone.
MIN_AXES_WIDTH = 160
MIN_AXES_HEIGHT = 120
# Axis text is a 25th of the box's shorter side, within these sizes (px); the title a little larger.
FONT_FRACTION = 25
MIN_FONT_SIZE = 10
MAX_FONT_SIZE = 28
TITLE_SCALE = 1.2
# Room left above and below the flux's range, as a fraction of it, so no peak touches the frame.
FLUX_MARGIN = 0.05
# Flux ticks are at least this many text heights apart; the spectral axis's tick labels a text size apart.
FLUX_TICK_SPACING = 2.5
# Text sampled for the height of a line of text: the parentheses reach from above the capitals to below the line.
TALLEST_TEXT = "(0)"


@dataclass(frozen=True)
class _Box:
    """The rectangle of the image the data are drawn in, edges included."""

    left: int
    top: int
    right: int
    bottom: int


@dataclass(frozen=True)
class _Style:
    """The sizes of a plot's text and lines, from its box."""

    face: Font
    size: int
    # Height of a line of text, space around text, length of a tick mark, width of the line.
    text_height: int
    pad: int
    tick: int
    line: int


def spectrum_plot(spectrum: Spectrum, size: tuple[int, int], title: str) -> Image.Image:
    """A grey image of size (width, height) plotting the spectrum's flux against its spectral axis (spectral_axis),
    titled with title (a caption; empty: none). Non-finite flux leaves gaps; a spectrum without finite flux draws
    its axes alone. Boxes under MIN_AXES_WIDTH x MIN_AXES_HEIGHT get the line alone."""
    width, height = size
    image = Image.new("L", size, WHITE)
    draw = ImageDraw.Draw(image)
    style = _style(draw, size)
    title_bottom = _draw_title(draw, single_line(title), size, style)
    axis = spectral_axis(spectrum)
    x_range = (float(axis.values.min()), float(axis.values.max()))
    # Values too large to subtract from each other in floats are left out as gaps, as NaN and inf are.
    flux = np.where(np.abs(spectrum.flux) <= LARGEST_VALUE, spectrum.flux, np.nan)
    y_range = _flux_range(flux)
    if width >= MIN_AXES_WIDTH and height >= MIN_AXES_HEIGHT:
        # Room for the top flux tick's label, which is centred on the frame's top edge.
        top = title_bottom + style.pad + style.text_height // 2
        bottom = height - 1 - (style.tick + 3 * style.pad + 2 * style.text_height)
        y_ticks = _flux_ticks(y_range, bottom - top, style)
        left = _draw_flux_axis(
            image, draw, y_ticks, y_range, _title(FLUX, flux_unit(spectrum), y_ticks), top, bottom, style
        )
        x_ticks = _axis_ticks(draw, x_range, width - left, style)
        right = width - 1 - max(style.pad, math.ceil(_widest(draw, x_ticks, style) / 2))
        box = _Box(left, top, right, bottom)
        _draw_spectral_axis(draw, x_ticks, x_range, _title(axis.name, axis.unit, x_ticks), box, width, style)
    else:
        box = _Box(0, title_bottom, width - 1, height - 1)
    if y_range is not None:
        _draw_line(draw, box, axis.values, flux, x_range, y_range, style.line)
    return image


def _style(draw: ImageDraw.ImageDraw, size: tuple[int, int]) -> _Style:
    text_size = min(MAX_FONT_SIZE, max(MIN_FONT_SIZE, min(size) // FONT_FRACTION))
    face = font(text_size)
    _, top, _, bottom = draw.textbbox((0, 0), TALLEST_TEXT, font=face, anchor="lt")
    return _Style(
        face, text_size, int(bottom - top), max(2, text_size // 3), max(3, text_size // 3), max(1, text_size // 10)
    )


def _draw_title(draw: ImageDraw.ImageDraw, title: str, size: tuple[int, int], style: _Style) -> int:
    """Draw title centred at the top, as large as the style allows within the width and a quarter of the
    height; the first row below it (0 without a title)."""
    if not title:
        return 0
    width, height = size
    largest = max(1, min(round(style.size * TITLE_SCALE), height // 4))
    face = fitted_font(draw, title, width - 2 * style.pad, largest)
    draw.text((width / 2, style.pad), title, font=face, fill=BLACK, anchor="mt")
    return int(draw.textbbox((width / 2, style.pad), title, font=face, anchor="mt")[3]) + 1


def _flux_range(flux: np.ndarray) -> tuple[float, float] | None:
    """The flux range drawn, FLUX_MARGIN wider than the finite flux's; None without finite flux."""
    finite = flux[np.isfinite(flux)]
    if not finite.size:
        return None
    low, high = float(finite.min()), float(finite.max())
    # A flat spectrum is drawn across the middle.
    margin = (high - low) * FLUX_MARGIN or abs(low) * FLUX_MARGIN or 1.0
    return low - margin, high + margin


def _flux_ticks(y_range: tuple[float, float] | None, height: int, style: _Style) -> Ticks | None:
    """The flux axis's ticks for a frame `height` px high; None without finite flux."""
    if y_range is None:
        return None
    return round_ticks(*y_range, int(height // (FLUX_TICK_SPACING * style.text_height)))


def _axis_ticks(draw: ImageDraw.ImageDraw, x_range: tuple[float, float], width: int, style: _Style) -> Ticks | None:
    """The spectral axis's ticks for a frame about `width` px wide, as many as fit with their labels a text size
    apart; None for a spectrum of one pixel."""
    low, high = x_range
    if low == high:
        return None
    most = max(2, width // style.size)
    while True:
        ticks = round_ticks(low, high, most)
        fitting = int(width // (_widest(draw, ticks, style) + style.size))
        if len(ticks.values) <= max(2, fitting):
            return ticks
        most = min(most - 1, fitting)


def _widest(draw: ImageDraw.ImageDraw, ticks: Ticks | None, style: _Style) -> float:
    """The width of the widest of these ticks' labels."""
    return max((text_width(draw, label, style.face) for label in ticks.labels), default=0.0) if ticks else 0.0


def _title(name: str, unit: str, ticks: Ticks | None) -> str:
    """An axis title: the quantity, then the power of ten its tick labels count in and its unit, if any."""
    inside = " ".join([*([f"1e{ticks.exponent}"] if ticks and ticks.exponent else []), *([unit] if unit else [])])
    return f"{name} ({inside})" if inside else name


def _draw_flux_axis(
    image: Image.Image,
    draw: ImageDraw.ImageDraw,
    ticks: Ticks | None,
    y_range: tuple[float, float] | None,
    title: str,
    top: int,
    bottom: int,
    style: _Style,
) -> int:
    """Draw the flux axis's title (turned upright) and tick labels into image (drawn on by draw), left of a frame
    from rows top to bottom; the frame's left column, just right of them."""
    left = style.pad + style.text_height + 2 * style.pad + math.ceil(_widest(draw, ticks, style)) + style.tick
    face = fitted_font(draw, title, bottom - top, style.size)
    _, _, length, thickness = draw.textbbox((0, 0), title, font=face, anchor="lt")
    upright = Image.new("L", (int(length) + 1, int(thickness) + 1), WHITE)
    ImageDraw.Draw(upright).text((0, 0), title, font=face, fill=BLACK, anchor="lt")
    turned = upright.rotate(90, expand=True)
    image.paste(turned, (style.pad, (top + bottom - turned.height) // 2))
    if ticks is not None and y_range is not None:
        for value, label in zip(ticks.values, ticks.labels):
            row = float(_scaled(value, *y_range, bottom, top))
            draw.line((left - style.tick, row, left, row), fill=BLACK)
            draw.text((left - style.tick - style.pad, row), label, font=style.face, fill=BLACK, anchor="rm")
    return left


def _draw_spectral_axis(
    draw: ImageDraw.ImageDraw,
    ticks: Ticks | None,
    x_range: tuple[float, float],
    title: str,
    box: _Box,
    width: int,
    style: _Style,
) -> None:
    """Draw the frame, the spectral axis's ticks and labels below it, and its title under them, in an image
    `width` px wide."""
    draw.rectangle((box.left, box.top, box.right, box.bottom), outline=BLACK)
    labels_top = box.bottom + style.tick + style.pad
    if ticks is not None:
        for value, label in zip(ticks.values, ticks.labels):
            column = float(_scaled(value, *x_range, box.left, box.right))
            draw.line((column, box.bottom, column, box.bottom + style.tick), fill=BLACK)
            draw.text((column, labels_top), label, font=style.face, fill=BLACK, anchor="mt")
    face = fitted_font(draw, title, width - 2 * style.pad, style.size)
    # Centred under the frame, moved in as far as it must to stay in the image.
    half = text_width(draw, title, face) / 2
    centre = min(max((box.left + box.right) / 2, style.pad + half), width - style.pad - half)
    draw.text((centre, labels_top + style.text_height + style.pad), title, font=face, fill=BLACK, anchor="mt")


def _scaled(values: np.ndarray | float, low: float, high: float, start: float, end: float) -> np.ndarray:
    """values placed from start (for low) to end (for high); all in the middle when low == high."""
    if low == high:
        return np.full(np.shape(values), (start + end) / 2)
    return start + (np.asarray(values) - low) * ((end - start) / (high - low))


def _draw_line(
    draw: ImageDraw.ImageDraw,
    box: _Box,
    x: np.ndarray,
    flux: np.ndarray,
    x_range: tuple[float, float],
    y_range: tuple[float, float],
    width: int,
) -> None:
    """Draw flux against x as a line in the box, broken where flux is not finite."""
    drawn = _drawn_samples(flux, box.right - box.left + 1)
    columns = _scaled(x[drawn], *x_range, box.left, box.right)
    rows = _scaled(flux[drawn], *y_range, box.bottom, box.top)
    for run in _finite_runs(rows):
        points = list(zip(columns[run].tolist(), rows[run].tolist()))
        if len(points) == 1:
            # A sample between gaps: a dot as wide as the line is drawn twice over, so it shows.
            (column, row) = points[0]
            draw.ellipse((column - width, row - width, column + width, row + width), fill=BLACK)
        else:
            draw.line(points, fill=BLACK, width=width, joint="curve" if width > 1 else None)


def _drawn_samples(flux: np.ndarray, columns: int) -> np.ndarray:
    """The indices of the samples drawn in a box `columns` px wide, in order: all of them when there are at most
    two per column; else, of each column's worth of consecutive samples, its lowest and highest finite one (one
    non-finite sample when it has none), so the line's outline is that of every sample's."""
    count = flux.size
    if count <= 2 * columns:
        return np.arange(count)
    per_group = -(-count // columns)
    groups = -(-count // per_group)
    padded = np.full(groups * per_group, np.nan)
    padded[:count] = flux
    table = padded.reshape(groups, per_group)
    finite = np.isfinite(table)
    lowest = np.where(finite, table, np.inf).argmin(axis=1)
    highest = np.where(finite, table, -np.inf).argmax(axis=1)
    pairs = np.sort(np.stack((lowest, highest), axis=1), axis=1) + (np.arange(groups) * per_group)[:, np.newaxis]
    return pairs.ravel()


def _finite_runs(values: np.ndarray) -> list[slice]:
    """The runs of consecutive finite values."""
    finite = np.isfinite(values)
    edges = np.flatnonzero(np.diff(finite.astype(np.int8))) + 1
    starts = np.concatenate(([0], edges))
    stops = np.concatenate((edges, [finite.size]))
    return [slice(start, stop) for start, stop in zip(starts, stops) if finite[start]]
