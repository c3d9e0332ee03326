"""Tick marks at round numbers (1, 2 or 5 times a power of ten) along a plot's axis, and their labels."""

import math
from dataclasses import dataclass

# The round steps within each power of ten.
STEPS = (1, 2, 5)
# Labels of values this large or small are written in units of a power of ten, which the axis title names.
LARGEST_PLAIN = 1e6
SMALLEST_PLAIN = 1e-3


@dataclass(frozen=True)
class Ticks:
    """Tick values in data units, their labels, and the power of ten the labels count in (0: plain)."""

    values: tuple[float, ...]
    labels: tuple[str, ...]
    exponent: int


def round_ticks(low: float, high: float, most: int) -> Ticks:
    """Ticks at the multiples of the finest round step that puts at most `most` (at least 2) of them in
    [low, high] (low < high)."""
    most = max(2, most)
    power = math.floor(math.log10((high - low) / most))
    for step in (factor * 10.0**exponent for exponent in range(power, power + 3) for factor in STEPS):
        first, last = math.ceil(low / step), math.floor(high / step)
        if last - first + 1 <= most:
            return _labelled([index * step for index in range(first, last + 1)], step)
    raise AssertionError("a step of 10 ** (power + 2) leaves fewer than 2 ticks")


def _labelled(values: list[float], step: float) -> Ticks:
    """values, multiples of step, with labels as short as the step allows."""
    largest = max((abs(value) for value in values), default=0.0)
    plain = largest == 0.0 or SMALLEST_PLAIN <= largest < LARGEST_PLAIN
    exponent = 0 if plain else math.floor(math.log10(largest))
    scale = 10.0**exponent
    decimals = max(0, -math.floor(math.log10(step / scale) + 1e-9))
    # Adding 0.0 turns a rounded -0.0 into 0.0, so no tick reads "-0".
    labels = tuple(f"{round(value / scale, decimals) + 0.0:.{decimals}f}" for value in values)
    return Ticks(tuple(values), labels, exponent)
