"""Query parameters: parsed, validated and normalised into what a thumbnail request means."""

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from functools import lru_cache
from urllib.parse import parse_qsl

from multidict import MultiDict, MultiMapping

from thumbproxy.errors import ThumbproxyError
from thumbproxy.render.display import (
    DEFAULT_CONTRAST,
    DEFAULT_MAX_PERCENT,
    DEFAULT_MIN_PERCENT,
    ZSCALE_STRETCHES,
    equalizes,
    gamma_of,
)
from thumbproxy.render.label import single_line
from thumbproxy.render.options import COLOR_STRETCHES, FORMATS, STRETCHES, RenderOptions
from thumbproxy.render.palette import COLORMAPS

MAX_LABEL_LENGTH = 200
MAX_QUALITY = 95
TRUE_WORDS = frozenset({"true", "1", "yes", "on"})
FALSE_WORDS = frozenset({"false", "0", "no", "off"})
# How a frame is drawn: the same on every image route and as `thumbproxy render` flags.
DISPLAY_PARAMETERS = ("stretch", "zmin", "zmax", "min_percent", "max_percent", "contrast", "gamma", "invert", "cmap")
KNOWN_PARAMETERS = frozenset(
    {
        "image",
        "color",
        "width",
        "height",
        "label",
        "median",
        "percentile",
        "quality",
        "progressive",
        "weights",
        "format",
        *DISPLAY_PARAMETERS,
    }
)
# The largest gamma taken: past it every pixel above black is drawn nearly white.
MAX_GAMMA = 10.0
# Names of the default grey look, which needs no colour map.
GREY_NAMES = frozenset({"gray", "grey"})
# format=auto: WebP for clients whose Accept header names it, JPEG for the others.
NEGOTIATED_FORMAT = "auto"
FORMAT_ALIASES = {"jpg": "jpeg"}
# A decimal number in ASCII digits, with an optional exponent: what str(float) writes back ("1e-05").
DECIMAL_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
# Colour weights: beyond these a channel's white point leaves float precision, or its light float32's range.
MIN_WEIGHT = 0.001
MAX_WEIGHT = 1000.0


@dataclass(frozen=True)
class ThumbnailQuery:
    """A validated request: how to render, whether in colour, and whether to answer with the image."""

    options: RenderOptions
    color: bool = False
    image: bool = False
    # format=auto: options.format is JPEG, to be turned into WebP where the client accepts it.
    negotiate_format: bool = False


def _bad(name: str, why: str) -> ThumbproxyError:
    return ThumbproxyError(400, f"Invalid parameter {name}: {why}")


def _flag(name: str, value: str) -> bool:
    word = value.strip().lower()
    # A bare ?median counts as set, as it did in the existing service.
    if word in TRUE_WORDS or word == "":
        return True
    if word in FALSE_WORDS:
        return False
    raise _bad(name, "must be one of true/false, 1/0, yes/no, on/off")


def _whole_number(name: str, value: str, low: int, high: int) -> int:
    text = value.strip()
    if not text.isascii() or not text.isdigit() or len(text) > 6:
        raise _bad(name, f"must be a whole number from {low} to {high}")
    number = int(text)
    if not low <= number <= high:
        raise _bad(name, f"must be a whole number from {low} to {high}")
    return number


def _number(
    name: str,
    value: str,
    low: float = -math.inf,
    high: float = math.inf,
    *,
    open_low: bool = False,
    open_high: bool = False,
) -> float:
    """A finite decimal number from low to high, each end excluded when open."""
    text = value.strip()
    # float() alone would also take "1_0" and other scripts' digits ("\u0665"), which no URL should carry.
    number = float(text) if DECIMAL_NUMBER.fullmatch(text) else math.nan
    above = low < number if open_low else low <= number
    below = number < high if open_high else number <= high
    if not (math.isfinite(number) and above and below):
        if math.isinf(low) and math.isinf(high):
            raise _bad(name, "must be a finite decimal number")
        lower = f"greater than {low:g}" if open_low else f"at least {low:g}"
        upper = f"less than {high:g}" if open_high else f"at most {high:g}"
        raise _bad(name, f"must be a number {lower} and {upper}")
    return number


def _percentile(value: str) -> float:
    return _number("percentile", value, 0.0, 100.0, open_low=True)


def _label(value: str) -> str:
    if len(value) > MAX_LABEL_LENGTH:
        raise _bad("label", f"must be at most {MAX_LABEL_LENGTH} characters")
    # Normalised as it is drawn, so labels differing only in control characters share a cache entry.
    return single_line(value)


def _stretch(value: str, color: bool) -> str:
    stretch = value.strip().lower()
    if stretch not in COLOR_STRETCHES:
        raise _bad("stretch", f"must be one of {', '.join(COLOR_STRETCHES)}")
    if stretch not in STRETCHES and not color:
        raise _bad("stretch", f"{stretch} applies to colour thumbnails (color=true)")
    return stretch


def _cmap(value: str, color: bool) -> str:
    name = value.strip().lower()
    if name in GREY_NAMES:
        return ""
    if name not in COLORMAPS:
        raise _bad("cmap", f"must be one of gray, {', '.join(COLORMAPS)}")
    if color:
        raise _bad("cmap", "applies to single frames, not colour thumbnails (color=true)")
    return name


def _cuts(given: Mapping[str, str]) -> dict[str, float | None]:
    """zmin, zmax, min_percent and max_percent: the cuts given, each end once, lower below upper."""
    cuts: dict[str, float | None] = {
        "zmin": _number("zmin", given["zmin"]) if "zmin" in given else None,
        "zmax": _number("zmax", given["zmax"]) if "zmax" in given else None,
        "min_percent": _number("min_percent", given["min_percent"], 0.0, 100.0) if "min_percent" in given else None,
        "max_percent": _number("max_percent", given["max_percent"], 0.0, 100.0) if "max_percent" in given else None,
    }
    for value, percent in (("zmin", "min_percent"), ("zmax", "max_percent")):
        if cuts[value] is not None and cuts[percent] is not None:
            raise _bad(percent, f"give {value} or {percent}, not both")
    for lower, upper in (("zmin", "zmax"), ("min_percent", "max_percent")):
        low, high = cuts[lower], cuts[upper]
        if low is not None and high is not None and low >= high:
            raise _bad(upper, f"must be greater than {lower}")
    return cuts


def _display(given: Mapping[str, str], color: bool) -> RenderOptions:
    """Default options but for the display options given (stretch, cuts, contrast, gamma, invert, cmap), a
    default given explicitly normalised to what leaving it out means."""
    stretch = _stretch(given["stretch"], color) if "stretch" in given else RenderOptions.stretch
    cuts = _cuts(given)
    if stretch not in ZSCALE_STRETCHES:
        # The stretch's own percentile cuts, given explicitly.
        for name, default in (("min_percent", DEFAULT_MIN_PERCENT), ("max_percent", DEFAULT_MAX_PERCENT)):
            if cuts[name] == default:
                cuts[name] = None
    contrast = None
    if "contrast" in given:
        if stretch != RenderOptions.stretch:
            raise _bad("contrast", "applies to stretch=zscale")
        contrast = _number("contrast", given["contrast"], 0.0, 1.0, open_low=True, open_high=True)
    gamma = _number("gamma", given["gamma"], 0.0, MAX_GAMMA, open_low=True) if "gamma" in given else None
    display = RenderOptions(
        stretch=stretch,
        zmin=cuts["zmin"],
        zmax=cuts["zmax"],
        min_percent=cuts["min_percent"],
        max_percent=cuts["max_percent"],
    )
    return replace(
        display,
        contrast=None if contrast == DEFAULT_CONTRAST else contrast,
        gamma=None if gamma == gamma_of(display) else gamma,
        invert=_flag("invert", given["invert"]) if "invert" in given else False,
        cmap=_cmap(given["cmap"], color) if "cmap" in given else "",
    )


def _weights(value: str, color: bool) -> tuple[float, float, float]:
    rule = f"must be three comma-separated numbers from {MIN_WEIGHT:g} to {MAX_WEIGHT:g} (red, visual, blue)"
    parts = [part.strip() for part in value.split(",")]
    if len(parts) != 3 or not all(DECIMAL_NUMBER.fullmatch(part) for part in parts):
        raise _bad("weights", rule)
    red, visual, blue = (float(part) for part in parts)
    if not all(MIN_WEIGHT <= weight <= MAX_WEIGHT for weight in (red, visual, blue)):
        raise _bad("weights", rule)
    if not color:
        raise _bad("weights", "applies to colour thumbnails (color=true)")
    return red, visual, blue


def _format(value: str) -> str:
    name = value.strip().lower()
    name = FORMAT_ALIASES.get(name, name)
    if name not in FORMATS and name != NEGOTIATED_FORMAT:
        raise _bad("format", f"must be one of {', '.join(FORMATS)}, {NEGOTIATED_FORMAT}")
    return name


def _single_values(query: MultiMapping[str]) -> Mapping[str, str]:
    values: dict[str, str] = {}
    for name in KNOWN_PARAMETERS & set(query.keys()):
        given = query.getall(name)
        if len(given) > 1:
            raise _bad(name, "given more than once")
        values[name] = given[0]
    return values


def parse_query(query: MultiMapping[str], max_size: int) -> ThumbnailQuery:
    """Validate the query string; unknown parameters (cache busters and the like) are ignored."""
    given = _single_values(query)
    defaults = RenderOptions()
    color = _flag("color", given["color"]) if "color" in given else False
    image_format = _format(given["format"]) if "format" in given else defaults.format
    negotiate_format = image_format == NEGOTIATED_FORMAT
    options = replace(
        _display(given, color),
        width=_whole_number("width", given["width"], 1, max_size) if "width" in given else defaults.width,
        height=_whole_number("height", given["height"], 1, max_size) if "height" in given else defaults.height,
        label=_label(given.get("label", "")),
        median=_flag("median", given["median"]) if "median" in given else defaults.median,
        percentile=_percentile(given["percentile"]) if "percentile" in given else defaults.percentile,
        quality=(
            _whole_number("quality", given["quality"], 1, MAX_QUALITY) if "quality" in given else defaults.quality
        ),
        progressive=_flag("progressive", given["progressive"]) if "progressive" in given else False,
        weights=_weights(given["weights"], color) if "weights" in given else defaults.weights,
        format=defaults.format if negotiate_format else image_format,
    )
    if options.median and equalizes(options):
        raise _bad("median", "does not apply to stretch=histeq, which spreads the grey levels itself")
    return ThumbnailQuery(
        options=options,
        color=color,
        # Present and not false-ish means "answer with the image", whatever the value.
        image="image" in given and given["image"].strip().lower() not in FALSE_WORDS,
        negotiate_format=negotiate_format,
    )


@lru_cache(maxsize=4096)
def parse_query_string(raw_query: str, max_size: int) -> ThumbnailQuery:
    """parse_query of a raw (percent-encoded) query string, remembered: hits repeat the same few."""
    return parse_query(MultiDict(parse_qsl(raw_query, keep_blank_values=True)), max_size)


def accepts_webp(accept: str) -> bool:
    """Whether an Accept header names image/webp with a non-zero quality (image/* is not enough:
    browsers without WebP send it too)."""
    for item in accept.split(","):
        media, _, parameters = item.partition(";")
        if media.strip().lower() == "image/webp":
            quality = parameters.replace(" ", "").lower().partition("q=")[2]
            try:
                return not quality or float(quality.split(";")[0]) > 0
            except ValueError:
                return False
    return False


def _text(value: object) -> str:
    """An option's value as its query parameter writes it."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return str(value)


def canonical_query(query: ThumbnailQuery) -> dict[str, str]:
    """The query string that asks for exactly this thumbnail: non-default options only, sorted."""
    defaults = RenderOptions()
    canonical: dict[str, str] = {}
    for option in fields(RenderOptions):
        value = getattr(query.options, option.name)
        if option.name in KNOWN_PARAMETERS and value != getattr(defaults, option.name):
            canonical[option.name] = _text(value)
    if query.negotiate_format:
        canonical["format"] = NEGOTIATED_FORMAT
    if query.color:
        canonical["color"] = "true"
    if query.image:
        canonical["image"] = "true"
    return dict(sorted(canonical.items()))
