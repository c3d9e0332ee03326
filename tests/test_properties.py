"""Bad input, never a 500: property-based tests over request paths and query strings.

Every request goes over a raw TCP connection to the running service, so the bytes sent are
exactly the ones written here (aiohttp's client would re-encode them) and aiohttp's HTTP parser,
the router, the query validation and the error middleware are what is tested. The archive and
the render pool are healthy, so no answer may be a 5xx: the deliberate ones (502, 503, 504)
need a failing archive, a full queue or an unwritable TMP_DIR.
"""

import asyncio
import io
import json
import logging
import operator
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote, quote_plus

import pytest
from hypothesis import HealthCheck, currently_in_test_context, event, example, given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict
from PIL import Image
from yarl import URL

from conftest import WIDE, Service

# The service's parameters, written out here rather than imported, so the tests hold it to them.
KNOWN_PARAMETERS = (
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
)
NUMBER_PARAMETERS = ("width", "height", "percentile", "quality")
FLAG_PARAMETERS = ("image", "color", "median", "progressive")
WORD_PARAMETERS = ("format", "stretch")
FRAME_HEIGHT, FRAME_WIDTH = WIDE
IMAGE_FORMATS = {"image/jpeg": "JPEG", "image/png": "PNG", "image/webp": "WEBP"}
# Stand-ins for the real frame in generated paths: its id and basename are known only at run time.
FRAME_ID_SLOT = b"{frame-id}"
BASENAME_SLOT = b"{basename}"
# What the archive may be asked: traversal in a basename must never turn into a path of its own.
ARCHIVE_API_PATH = re.compile(r"/frames/(?:\d{1,18}/)?")
ARCHIVE_DOWNLOAD_PATH = re.compile(r"/download/\d+/\d+")
BASENAME = re.compile(r"[A-Za-z0-9._-]{1,200}")
# A traceback, a source file or a directory of this machine in a message tells an attacker too much.
LEAK = re.compile(r'Traceback|File "|\.py\b|site-packages|/tmp/|/work/|/home/|/root/')
ANSWER_SECONDS = 15
# aiohttp refuses a longer request line ("GET <target> HTTP/1.1") itself, with a 400.
MAX_REQUEST_LINE = 8190

# Cheap on the whole: most examples are validation errors or unknown frames; the renders that do
# happen are of one 400x300 frame and land in the cache. derandomize and no example database make
# every run try the same inputs.
PROPERTY_SETTINGS = settings(
    max_examples=200,
    derandomize=True,
    database=None,
    deadline=None,
    # The service (a function-scoped fixture) is meant to outlive examples: restarting it per
    # example would cost seconds. Very long labels are built from a length, not drawn char by char.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)


# Talking to the service ------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """One HTTP answer as it came off the wire."""

    status: int
    headers: CIMultiDict[str]
    body: bytes

    @property
    def reached_app(self) -> bool:
        """Whether the application answered (its middleware tags every answer) rather than aiohttp's parser."""
        return "X-Request-ID" in self.headers

    @property
    def media_type(self) -> str:
        """The Content-Type without its parameters."""
        return self.headers.get("Content-Type", "").partition(";")[0].strip()

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)


async def send(host: str, port: int, target: bytes, host_header: bytes | None = None) -> Answer:
    """GET `target` exactly as given over a fresh connection, and read the whole answer.

    The Host header names the server unless `host_header` is given.
    """
    if host_header is None:
        host_header = f"{host}:{port}".encode()
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(b"GET " + target + b" HTTP/1.1\r\nHost: " + host_header + b"\r\nConnection: close\r\n\r\n")
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), ANSWER_SECONDS)
    finally:
        writer.close()
        await writer.wait_closed()
    head, separator, body = raw.partition(b"\r\n\r\n")
    assert separator, f"no complete answer to {target[:200]!r}: {raw[:200]!r}"
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers: CIMultiDict[str] = CIMultiDict()
    for line in header_lines:
        name, _, value = line.partition(":")
        headers.add(name.strip(), value.strip())
    # Every answer of the service states its length; a mismatch would break keep-alive clients.
    assert int(headers["Content-Length"]) == len(body), f"{status_line} {dict(headers)}"
    return Answer(int(status_line.split()[1]), headers, body)


@dataclass
class Probe:
    """The running service seen through raw HTTP, with what every answer to anything must satisfy."""

    service: Service
    caplog: pytest.LogCaptureFixture

    @property
    def origin(self) -> str:
        """The service's own origin, as the Host header sent by default names it."""
        server = self.service.client.server
        return f"http://{server.host}:{server.port}"

    async def get(self, target: bytes, host_header: bytes | None = None) -> Answer:
        """The answer to `target`, checked for what any answer must be, with the service still healthy after."""
        server = self.service.client.server
        records_before = len(self.caplog.records)
        archive = self.service.archive
        calls_before = len(archive.requests)
        answer = await send(server.host, server.port, target, host_header)
        if currently_in_test_context():
            # Shown by --hypothesis-show-statistics: how the examples spread over the kinds of answer.
            event(f"{answer.status} {answer.media_type}" if answer.reached_app else f"{answer.status} from the parser")
        context = f"GET {target[:300]!r} Host {host_header!r} -> {answer.status} {answer.body[:300]!r}"
        assert 200 <= answer.status < 500, context
        if answer.reached_app:
            assert_clean_app_answer(answer, context)
        else:
            # aiohttp's own refusal of what is not HTTP: a plain 400, never a 5xx or a traceback.
            assert answer.status == 400 and b"Traceback" not in answer.body, context
        health = await send(server.host, server.port, b"/healthz")
        assert (health.status, health.json()) == (200, {"status": "ok"}), context
        for record in self.caplog.records[records_before:]:
            assert "unexpected error" not in record.getMessage(), context
            # aiohttp logs the requests its parser refuses; anything else at ERROR is a fault of ours.
            parser_refusal = record.name == "aiohttp.server" and not answer.reached_app
            assert record.levelno < logging.ERROR or parser_refusal, f"{context}\n{record.getMessage()}"
        for call in archive.requests[calls_before:]:
            assert_safe_archive_call(call.kind, call.path, call.query, context)
        return answer

    async def image(self, target: bytes) -> Image.Image:
        """The decoded image a thumbnail route answered `target` with (which must be a 200 image)."""
        answer = await self.get(target)
        assert answer.status == 200 and answer.media_type in IMAGE_FORMATS, f"{target!r}: {answer.body[:300]!r}"
        return decoded_image(answer)


def assert_clean_app_answer(answer: Answer, context: str) -> None:
    """An application answer: an error is JSON with only a harmless message; a 200 is what it says it is."""
    if answer.status >= 400:
        assert answer.media_type == "application/json", context
        body = answer.json()
        assert isinstance(body, dict) and set(body) == {"message"} and isinstance(body["message"], str), context
        assert not LEAK.search(body["message"]), context
    elif answer.status == 200 and answer.media_type.startswith("image/"):
        decoded_image(answer)
    elif answer.status == 200 and answer.media_type == "application/json":
        assert isinstance(answer.json(), dict), context


def decoded_image(answer: Answer) -> Image.Image:
    """The answer's body decoded, checked to be the format its Content-Type names."""
    image = Image.open(io.BytesIO(answer.body))
    image.load()
    if answer.media_type in IMAGE_FORMATS:
        assert image.format == IMAGE_FORMATS[answer.media_type]
    return image


def assert_safe_archive_call(kind: str, path: str, query: dict[str, str], context: str) -> None:
    """What the service asked the archive: a frame by number, a listing, or a download it was handed."""
    if kind == "download":
        assert ARCHIVE_DOWNLOAD_PATH.fullmatch(path), context
        return
    assert ARCHIVE_API_PATH.fullmatch(path), f"{context}\narchive asked for {path!r}"
    if "basename_exact" in query:
        assert BASENAME.fullmatch(query["basename_exact"]), f"{context}\narchive asked for {query!r}"


def assert_thumbnail_answer(answer: Answer, context: str) -> None:
    """A 200 of a thumbnail route: an image, or JSON holding exactly the URL and the proposal."""
    assert answer.status == 200, context
    if answer.media_type != "application/json":
        assert answer.media_type in IMAGE_FORMATS, context
        return
    body = answer.json()
    assert set(body) == {"url", "propid"}, context
    assert isinstance(body["url"], str) and isinstance(body["propid"], str), context


@pytest.fixture
async def probe(service: Service, caplog: pytest.LogCaptureFixture) -> Probe:
    """The service of this test, looked at through raw HTTP."""
    return Probe(service, caplog)


def with_frame(target: bytes, frame: dict[str, Any]) -> bytes:
    """`target` with the slots for the real frame filled in."""
    return target.replace(FRAME_ID_SLOT, str(frame["id"]).encode()).replace(BASENAME_SLOT, frame["basename"].encode())


# Query strings ---------------------------------------------------------------------------------

# Numbers that are not plain whole numbers in range, one of each way to be wrong.
ODD_NUMBERS = (
    "",
    "0",
    "-0",
    "00",
    "-1",
    "+5",
    " 5",
    "5 ",
    "1.5",
    "5.0",
    "1e2",
    "1e309",
    "-1e309",
    "1e-400",
    "nan",
    "NaN",
    "-nan",
    "inf",
    "-inf",
    "Infinity",
    "infinity",
    "0x10",
    "1_0",
    "\u0665",
    "\uff11",
    "\u00b2",
    "5\x00",
    "9" * 40,
    "100.0000000000000001",
    "99.5",
    "100",
    "95",
)
FLAG_WORDS = ("true", "false", "1", "0", "yes", "no", "on", "off", "TRUE", " On ", "", "maybe", "2", "truee", "\x00")
WORDS = ("jpeg", "jpg", "JPG", "png", "webp", "auto", "gif", "tiff", " png ", "zscale", "lupton", "sqrt", "", "\x00")
# Characters a label must survive: line breaks, NUL, escapes, bidi overrides, BOM, combining marks, emoji.
LABEL_CHARACTERS = "ab \r\n\t\x00\x0b\x1b\x7f\x85\u2028\u202e\ufeff\u0301\U0001f600"
# Bytes that are not UTF-8, or not allowed in a query, already percent-encoded as a client might.
RAW_JUNK = ("", "=", "&", "%", "%z", "%zz", "%ff%fe", "%ff%fe=%c0%af", "=x", "%00", "+", "%2B", ";", "?", "%26")

numbers = st.one_of(
    st.integers(1, 2000).map(str),  # in range: these reach the renderer
    st.integers(-(10**40), 10**40).map(str),  # huge and negative
    st.floats().map(str),  # 'nan', 'inf', '-0.0', '1e+300', ...
    st.sampled_from(ODD_NUMBERS),
)
labels = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.sampled_from(LABEL_CHARACTERS), max_size=40),
    # Around the 200-character limit, and past the 8190-byte request line (10k characters).
    st.builds(operator.mul, st.sampled_from(["x", "W", "\r\n", "\x00", "\U0001f600"]), st.integers(190, 10_000)),
)
VALUES_BY_PARAMETER = {
    **{name: numbers for name in NUMBER_PARAMETERS},
    **{name: st.sampled_from(FLAG_WORDS) for name in FLAG_PARAMETERS},
    **{name: st.sampled_from(WORDS) for name in WORD_PARAMETERS},
    "label": labels,
    "weights": st.lists(numbers, min_size=1, max_size=4).map(",".join),
}
any_value = st.one_of(numbers, st.sampled_from(FLAG_WORDS + WORDS), labels)


def percent_encoded(text: str, how: str) -> str:
    """`text` as a client might write it in a query: UTF-8, Latin-1 (not UTF-8 at all), form style, or every byte."""
    if how == "latin-1":
        return quote(text, safe="", encoding="latin-1", errors="replace")
    if how == "form":
        return quote_plus(text, safe="")
    if how == "every-byte":
        return "".join(f"%{byte:02x}" for byte in text.encode())
    return quote(text, safe="")


@st.composite
def parameters(draw: st.DrawFn) -> str:
    """One `name=value` (or bare `name`) of a query string, percent-encoded one of several ways."""
    name = draw(
        st.one_of(
            st.sampled_from(KNOWN_PARAMETERS), st.sampled_from(["_", "WIDTH", "width[]", "x"]), st.text(max_size=8)
        )
    )
    # Mostly a value of the parameter's own kind, so that many queries are valid and render.
    value = draw(
        st.one_of(VALUES_BY_PARAMETER.get(name, any_value), any_value) if name in KNOWN_PARAMETERS else any_value
    )
    how = draw(st.sampled_from(["utf-8", "utf-8", "latin-1", "form", "every-byte"]))
    written_name = percent_encoded(name, how)
    if draw(st.integers(0, 9)) == 0:
        return written_name
    return f"{written_name}={percent_encoded(value, how)}"


query_strings = st.lists(st.one_of(parameters(), parameters(), st.sampled_from(RAW_JUNK)), max_size=6).map("&".join)


def given_names(query: str) -> list[str]:
    """The parameter names a query string holds, decoded as any form parser decodes them."""
    return [name for name, _ in parse_qsl(query, keep_blank_values=True)]


@PROPERTY_SETTINGS
@given(query=query_strings, route=st.sampled_from([FRAME_ID_SLOT, BASENAME_SLOT]), slash=st.sampled_from([b"/", b""]))
@example(query="width=99999999999999999999999", route=FRAME_ID_SLOT, slash=b"/")
@example(query="height=-1&width=1.5", route=FRAME_ID_SLOT, slash=b"/")
@example(query="percentile=nan&median", route=FRAME_ID_SLOT, slash=b"/")
@example(query="percentile=1e309", route=BASENAME_SLOT, slash=b"")
@example(query="percentile=-inf&image=1", route=FRAME_ID_SLOT, slash=b"")
@example(query="quality=1e2", route=FRAME_ID_SLOT, slash=b"/")
@example(query="color=1&weights=nan,1,1e309", route=FRAME_ID_SLOT, slash=b"/")
@example(query="weights=1,1,2", route=BASENAME_SLOT, slash=b"/")
@example(query="width=100&width=100", route=FRAME_ID_SLOT, slash=b"/")
@example(query="image&image=false", route=BASENAME_SLOT, slash=b"/")
@example(query="label=" + "x" * 10_000, route=FRAME_ID_SLOT, slash=b"/")
@example(query="label=" + "x" * 201, route=FRAME_ID_SLOT, slash=b"/")
@example(query="image=1&label=a%0D%0Ab%00c%0D", route=FRAME_ID_SLOT, slash=b"/")
@example(query="image=1&label=%ff%fe%c0%af", route=FRAME_ID_SLOT, slash=b"/")
@example(query="label=%0A&width=&height=", route=FRAME_ID_SLOT, slash=b"/")
@example(query="=&&=&%&width", route=BASENAME_SLOT, slash=b"")
async def test_any_query_is_answered_without_a_server_error(
    probe: Probe, frame: dict[str, Any], query: str, route: bytes, slash: bytes
) -> None:
    target = with_frame(b"/" + route + slash + b"?" + query.encode(), frame)
    answer = await probe.get(target)
    context = f"GET {target[:300]!r} -> {answer.status} {answer.body[:300]!r}"
    if not answer.reached_app:
        # Only a request line too long for aiohttp may be refused before the service sees it.
        assert len(b"GET " + target + b" HTTP/1.1") > MAX_REQUEST_LINE, context
        return
    names = given_names(query)
    repeated = [name for name, count in Counter(names).items() if count > 1 and name in KNOWN_PARAMETERS]
    if repeated:
        assert answer.status == 400, context
        assert re.fullmatch(
            rf"Invalid parameter ({'|'.join(repeated)}): given more than once", answer.json()["message"]
        ), context
    elif answer.status == 400:
        named = re.match(r"Invalid parameter (\w+): ", answer.json()["message"])
        assert named and named[1] in names, context
    elif answer.status == 404:
        # The frame exists; only a colour composite can miss (its other filters are not in the archive).
        assert "color" in names, context
    else:
        assert_thumbnail_answer(answer, context)
        if answer.media_type == "application/json":
            # The URL handed out must itself work: the canonical query it carries must be valid.
            url = answer.json()["url"]
            assert url.startswith(probe.origin + "/"), context
            await probe.image(url.removeprefix(probe.origin).encode())


# Paths -----------------------------------------------------------------------------------------

TRAVERSAL = (
    "..",
    ".",
    "%2e%2e",
    "%2E%2E",
    "%2e",
    ".%2e",
    "..%2f",
    "%2f",
    "%2F",
    "%5c",
    "..%5c",
    "%00",
    "%ff%fe",
    "%c0%ae%c0%ae",
    "%252e%252e",
    "etc",
    "passwd",
    "..;",
    "~root",
    "%",
    "%zz",
    "%20",
    "+",
    "frames",
    "download",
    "healthz",
)
# Bytes HTTP does not allow in a request target, sent raw.
RAW_BYTES = (b"\xff", b"\xfe", b"\x00", b"\x7f", b"\x1b", b" ", b"\t", b"\xc3\xa9", b"#", b"\\")
FIXED_PAGES = (b"", b"robots.txt", b"favicon.ico", b"healthz", b"readyz", b"metrics")
# Before the path: origin-form (nothing), absolute-form with odd authorities, and not a target at all.
# Hosts that are malformed IDNA (http://xn--/) are left out: aiohttp 3.14 itself never answers
# them (its request factory raises outside its own error handling), before any code of ours runs.
TARGET_FORMS = (b"", b"", b"", b"http://example.org", b"HTTP://[::1]:0", b"http://%ff", b"http://a_b:0", b"*")

segments = st.one_of(
    st.from_regex(r"[A-Za-z0-9._-]{1,30}", fullmatch=True).map(str.encode),  # the basename alphabet
    st.from_regex(r"-?[0-9]{1,25}", fullmatch=True).map(str.encode),  # ids, some past the route's 18 digits
    st.sampled_from(TRAVERSAL).map(str.encode),
    st.sampled_from([FRAME_ID_SLOT, BASENAME_SLOT, b"0" + FRAME_ID_SLOT]),
    st.sampled_from(FIXED_PAGES),
    st.text(max_size=12).map(lambda text: quote(text, safe="").encode()),
    st.lists(st.sampled_from(RAW_BYTES), min_size=1, max_size=3).map(b"".join),
    # Around the route's 200-character basename, and past aiohttp's 8190-byte request line.
    st.builds(operator.mul, st.sampled_from([b"a", b"0", b"%41", b"..%2f"]), st.integers(190, 9000)),
)
paths = st.builds(
    lambda parts, slash: b"/" + b"/".join(parts) + slash,
    st.lists(segments, min_size=1, max_size=4),
    st.sampled_from([b"/", b""]),
)
simple_queries = st.sampled_from([b"", b"?", b"?image=true", b"?width=50&image=1", b"?width=-1", b"?color=true"])


@PROPERTY_SETTINGS
@given(form=st.sampled_from(TARGET_FORMS), path=paths, query=simple_queries)
@example(form=b"", path=b"/../../etc/passwd", query=b"")
@example(form=b"", path=b"/%2e%2e/%2e%2e/etc/passwd/", query=b"?image=true")
@example(form=b"", path=b"/..%2f..%2fetc%2fpasswd/", query=b"")
@example(form=b"", path=b"/%2e%2e", query=b"?image=true")
@example(form=b"", path=b"/%ff%fe/", query=b"")
@example(form=b"", path=b"/\xff\xfe/", query=b"")
@example(form=b"", path=b"/" + BASENAME_SLOT + b"%2f..%2f..%2f/", query=b"?image=true")
@example(form=b"", path=b"/" + b"a" * 201 + b"/", query=b"")
@example(form=b"", path=b"/" + b"a" * 9000, query=b"")
@example(form=b"", path=b"/" + b"9" * 19 + b"/", query=b"")
@example(form=b"", path=b"/-1/", query=b"")
@example(form=b"", path=b"/healthz/..%2f..", query=b"")
@example(form=b"http://example.org", path=b"/" + FRAME_ID_SLOT + b"/", query=b"")
async def test_any_path_is_answered_without_a_server_error(
    probe: Probe, frame: dict[str, Any], form: bytes, path: bytes, query: bytes
) -> None:
    target = with_frame(form + path + query, frame)
    answer = await probe.get(target)
    context = f"GET {target[:300]!r} -> {answer.status} {answer.body[:300]!r}"
    names_frame = FRAME_ID_SLOT in path or BASENAME_SLOT in path
    # Nothing but the real frame (by its id, leading zeros or not, or its basename) and the fixed
    # pages exist: any other path, however it is spelt, is refused and never served.
    if answer.status < 300:
        assert names_frame or path.strip(b"/") in FIXED_PAGES, context
    if answer.status == 200 and names_frame:
        assert_thumbnail_answer(answer, context)


# Numbers ---------------------------------------------------------------------------------------

# The zero of other scripts' digits, which str.isdigit() and float() take but no URL writes.
FOREIGN_ZEROS = ("\u0660", "\u06f0", "\u0966", "\uff10")


def in_other_digits(number: str, zero: str) -> str:
    """`number` with its ASCII digits written in the digits starting at `zero`."""
    return "".join(chr(ord(zero) + int(char)) if char.isascii() and char.isdigit() else char for char in number)


@settings(PROPERTY_SETTINGS, max_examples=60)
@given(
    name=st.sampled_from(NUMBER_PARAMETERS),
    # Valid for every numeric parameter, and two digits long so that an underscore fits between them.
    number=st.integers(10, 95).map(str),
    disguise=st.one_of(st.sampled_from(FOREIGN_ZEROS).map(lambda zero: ("digits", zero)), st.just(("underscore", "_"))),
)
async def test_numbers_are_written_in_ascii_digits(
    probe: Probe, name: str, number: str, disguise: tuple[str, str]
) -> None:
    # A frame that does not exist: validation comes first, so a valid query is a 404 and a bad one a 400.
    plain = await probe.get(f"/1/?{name}={number}".encode())
    assert plain.status == 404, plain.body
    how, character = disguise
    written = in_other_digits(number, character) if how == "digits" else f"{number[0]}_{number[1:]}"
    answer = await probe.get(f"/1/?{name}={quote(written)}".encode())
    assert answer.status == 400, f"{name}={written!r}: {answer.status} {answer.body!r}"
    assert answer.json()["message"].startswith(f"Invalid parameter {name}: "), answer.body


async def test_a_frame_id_in_other_digits_names_no_frame(probe: Probe, frame: dict[str, Any]) -> None:
    # One URL per thumbnail: "/\u0661\u0661.../" must not be a second name (and cache entry) for frame 11....
    for zero in FOREIGN_ZEROS:
        answer = await probe.get(f"/{quote(in_other_digits(str(frame['id']), zero))}/?image=true".encode())
        assert answer.status == 404, f"id in digits from {zero!r}: {answer.status} {answer.media_type}"


# Host headers ----------------------------------------------------------------------------------

# Host values a client (or an attacker) can send: empty, bad ports, userinfo, not UTF-8, bracket
# trouble, and characters that would move the path or query of a URL built from them.
ODD_HOSTS = (
    b"",
    b":",
    b"@",
    b"a:99999",
    b"a:b:c",
    b"a:",
    b"\xff",
    b"xn--",
    b"a b",
    b"[::1",
    b"[::1]:0",
    b"%ff",
    b"a/b",
    b"a?b",
    b"a#b",
    b"A" * 300,
)
host_headers = st.one_of(
    st.sampled_from(ODD_HOSTS),
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=20).map(
        lambda text: text.encode("latin-1")
    ),
)


@settings(PROPERTY_SETTINGS, max_examples=100)
@given(host_header=host_headers, query=st.sampled_from([b"", b"?image=true", b"?width=-1"]))
async def test_any_host_header_is_answered_without_a_server_error(
    probe: Probe, frame: dict[str, Any], host_header: bytes, query: bytes
) -> None:
    answer = await probe.get(with_frame(b"/" + FRAME_ID_SLOT + b"/" + query, frame), host_header)
    context = f"Host {host_header!r} ?{query!r} -> {answer.status} {answer.body[:300]!r}"
    if answer.status == 200 and answer.media_type == "application/json":
        # Whatever the Host says, the URL handed out must still name this frame's thumbnail.
        url = URL(answer.json()["url"])
        assert url.path == f"/{frame['id']}/" and url.query.get("image") == "true", context


# Real renders ----------------------------------------------------------------------------------

# A few distinct boxes, the extremes included: each renders once and is then a cache hit.
SIZES = (1, 3, 150, 299, 2000)


@settings(PROPERTY_SETTINGS, max_examples=40)
@given(
    width=st.sampled_from(SIZES),
    height=st.sampled_from(SIZES),
    image_format=st.sampled_from(["", "jpeg", "png", "webp"]),
    route=st.sampled_from([FRAME_ID_SLOT, BASENAME_SLOT]),
)
async def test_any_valid_size_renders_within_its_box(
    probe: Probe, frame: dict[str, Any], width: int, height: int, image_format: str, route: bytes
) -> None:
    query = f"image=true&width={width}&height={height}" + (f"&format={image_format}" if image_format else "")
    image = await probe.image(with_frame(b"/" + route + b"/?" + query.encode(), frame))
    assert image.format == (image_format or "jpeg").upper()
    # Never upscaled, aspect kept: within the box and the frame, and filling one of the two.
    box = (min(width, FRAME_WIDTH), min(height, FRAME_HEIGHT))
    assert image.width <= box[0] and image.height <= box[1]
    assert image.width == box[0] or image.height == box[1]
