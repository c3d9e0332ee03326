"""Isolated bright specks in a decoded greyscale thumbnail: what a particle hit (cosmic ray, hot pixel)
that survives the reduction looks like. The tests and the benchmark count them the same way.

A pixel is a speck when
  * it stands at least RISE grey levels above the median of the WINDOW x WINDOW pixels around it
    (16 of 255: plainly visible on a dark sky),
  * and at least SIGMAS robust deviations of those pixels above it (1.4826 x their median absolute
    deviation), so the grain of a noisy sky is not counted,
  * it is brighter than each of its eight neighbours,
  * and its neighbours stand above that median, on average, by at most SHARE of its own height. A
    speck is one pixel, or one spread a little by the resampling; a star 2 px or more across (FWHM)
    at thumbnail scale lifts its neighbours by more than half its peak, and is not counted.
Pixels closer than WINDOW // 2 to the edge are not judged: their window would leave the image, and
a frame's edges are often bright rows or columns.
"""

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

RISE = 16
SIGMAS = 5.0
SHARE = 0.5
WINDOW = 7


def speck_mask(grey: np.ndarray) -> np.ndarray:
    """Where the specks of a (rows, columns) greyscale image are, as a boolean image of its shape."""
    pixels = grey.astype(np.float64)
    margin = WINDOW // 2
    windows = sliding_window_view(pixels, (WINDOW, WINDOW))
    median = np.median(windows, axis=(2, 3))
    spread = 1.4826 * np.median(np.abs(windows - median[:, :, None, None]), axis=(2, 3))
    rows, columns = median.shape
    centre = pixels[margin : margin + rows, margin : margin + columns]
    brightest = np.ones(centre.shape, bool)
    around = np.zeros(centre.shape)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dy or dx:
                neighbour = pixels[margin + dy : margin + dy + rows, margin + dx : margin + dx + columns]
                brightest &= centre > neighbour
                around += neighbour - median
    rise = centre - median
    specks = (rise >= RISE) & (rise >= SIGMAS * spread) & brightest & (around / 8 <= SHARE * rise)
    mask = np.zeros(grey.shape, bool)
    mask[margin : margin + rows, margin : margin + columns] = specks
    return mask


def count_specks(grey: np.ndarray) -> int:
    """The number of specks in a greyscale image (speck_mask)."""
    return int(speck_mask(grey).sum())
