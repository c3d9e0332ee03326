"""Query parameters: parsed, validated and normalised into what a thumbnail request means."""

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from functools import lru_cache
from urllib.parse import parse_qsl

from multidict import MultiDict, MultiMapping

from thumbproxy.errors import ThumbproxyError
from thumbproxy.render.label import single_line
from thumbproxy.render.options import FORMATS, STRETCHES, RenderOptions

MAX_LABEL_LENGTH = 200
MAX_QUALITY = 95
TRUE_WORDS = frozenset({"true", "1", "yes", "on"})
FALSE_WORDS = frozenset({"false", "0", "no", "off"})
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
        "stretch",
        "weights",
        "format",
    }
)
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


def _percentile(value: str) -> float:
    text = value.strip()
    # float() alone would also take "1_0" and other scripts' digits ("\u0665"), which no URL should carry.
    if not DECIMAL_NUMBER.fullmatch(text):
        raise _bad("percentile", "must be a number greater than 0 and at most 100")
    number = float(text)
    if not (math.isfinite(number) and 0 < number <= 100):
        raise _bad("percentile", "must be a number greater than 0 and at most 100")
    return number


def _label(value: str) -> str:
    if len(value) > MAX_LABEL_LENGTH:
        raise _bad("label", f"must be at most {MAX_LABEL_LENGTH} characters")
    # Normalised as it is drawn, so labels differing only in control characters share a cache entry.
    return single_line(value)


def _stretch(value: str, color: bool) -> str:
    stretch = value.strip().lower()
    if stretch not in STRETCHES:
        raise _bad("stretch", f"must be one of {', '.join(STRETCHES)}")
    if stretch != RenderOptions.stretch and not color:
        raise _bad("stretch", "applies to colour thumbnails (color=true)")
    return stretch


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
    options = RenderOptions(
        width=_whole_number("width", given["width"], 1, max_size) if "width" in given else defaults.width,
        height=_whole_number("height", given["height"], 1, max_size) if "height" in given else defaults.height,
        label=_label(given.get("label", "")),
        median=_flag("median", given["median"]) if "median" in given else defaults.median,
        percentile=_percentile(given["percentile"]) if "percentile" in given else defaults.percentile,
        quality=(
            _whole_number("quality", given["quality"], 1, MAX_QUALITY) if "quality" in given else defaults.quality
        ),
        progressive=_flag("progressive", given["progressive"]) if "progressive" in given else False,
        stretch=_stretch(given["stretch"], color) if "stretch" in given else defaults.stretch,
        weights=_weights(given["weights"], color) if "weights" in given else defaults.weights,
        format=defaults.format if negotiate_format else image_format,
    )
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
