"""A fake OCS Science Archive: the real archive's HTTP API on loopback, with fault knobs.

It answers ``GET /frames/{id}/`` and ``GET /frames/`` as the real archive (a Django REST
framework app) does: its authenticators in their order and with their messages, its throttles,
the filters of its FrameFilter with their validation messages, its ordering, and its limit/offset
pagination, whose ``count`` is exact only for "small" queries and otherwise a planner's estimate
(so ``next`` may be missing while rows remain, or present past the last row). Downloads
``/download/{id}/{version}?X-Amz-...`` behave like S3's pre-signed URLs: they refuse an
Authorization header and any query but the one issued.

Not modelled: frame headers and thumbnails (``submitter`` matches nothing, ``include_thumbnails``
lists none), cursor pagination and geometries other than points (answered 501), the browsable
HTML API, ``anyascii`` transliteration of target names, and the archive's cache of proposals
(asked of the portal on every request, as on a cold cache).
"""

import asyncio
import hashlib
import hmac
import itertools
import json
import math
import operator
import re
import secrets
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

from aiohttp import web
from multidict import CIMultiDict, MultiMapping
from yarl import URL

PAST_DATE = "2020-03-21T10:11:12.000Z"
FUTURE_DATE = "2999-01-01T00:00:00.000Z"
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
QUOTA_SECONDS = 86400
DOWNLOAD_CHUNK_BYTES = 64 * 1024
# The archive signs download URLs for 48 hours.
URL_EXPIRY_SECONDS = 48 * 3600
# Choices of the configuration type filters (configdb's codes in production): the types the
# archive's model, settings and science types name.
CONFIGURATION_TYPES = frozenset(
    {
        "ARC",
        "BIAS",
        "BPM",
        "CATALOG",
        "DARK",
        "DOMEFLAT",
        "DOUBLE",
        "EXPERIMENTAL",
        "EXPOSE",
        "GUIDE",
        "LAMPFLAT",
        "OBJECT",
        "SKYFLAT",
        "SPECTRUM",
        "STANDARD",
        "TARGET",
        "TEMPLATE",
        "TRACE",
        "TRAILED",
    }
)
SCIENCE_CONFIGURATION_TYPES = frozenset({"EXPOSE", "TARGET", "SPECTRUM", "CATALOG", "OBJECT"})
ORDERING_FIELDS = frozenset(
    {
        "id",
        "basename",
        "observation_date",
        "primary_optical_element",
        "configuration_type",
        "proposal_id",
        "instrument_id",
        "target_name",
        "reduction_level",
        "exposure_time",
    }
)
DEFAULT_ORDERING = ("-observation_date",)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Record = dict[str, Any]
# The body of a fault's error answer, by kind of endpoint: DRF's JSON detail, S3's XML error.
_ERROR_BODIES = {
    "api": ("application/json", b'{"detail": "Injected fault."}'),
    "download": ("application/xml", b"<Error><Code>InternalError</Code></Error>"),
}
# The model's fields, in the order the archive's serialiser writes them.
_FIELDS = (
    "id",
    "basename",
    "observation_date",
    "observation_day",
    "proposal_id",
    "instrument_id",
    "target_name",
    "reduction_level",
    "site_id",
    "telescope_id",
    "exposure_time",
    "primary_optical_element",
    "public_date",
    "configuration_type",
    "observation_id",
    "request_id",
)
_DATETIME_FIELDS = ("observation_date", "public_date")
_OVERRIDABLE = frozenset(_FIELDS) | {"area", "related_frames"}
# Legacy upper-case name -> the lower-case field it copies, as every record carries both.
_LEGACY_COPIES = {
    "DATE_OBS": "observation_date",
    "DAY_OBS": "observation_day",
    "PROPID": "proposal_id",
    "INSTRUME": "instrument_id",
    "OBJECT": "target_name",
    "RLEVEL": "reduction_level",
    "SITEID": "site_id",
    "TELID": "telescope_id",
    "EXPTIME": "exposure_time",
    "FILTER": "primary_optical_element",
    "L1PUBDAT": "public_date",
    "OBSTYPE": "configuration_type",
    "BLKUID": "observation_id",
    "REQNUM": "request_id",
}
# Any of these makes a list a "small query", whose count the archive makes exact.
_INDEXED_PARAMETERS = ("request_id", "observation_id", "basename_exact")
_BOUNDING_PARAMETERS = ("proposal_id", "target_name_exact")
# Django's input formats (en), tried after ISO 8601: date-times, then dates at midnight.
_DATETIME_INPUT_FORMATS = (
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%d %H:%M:%S.%f",
    "%Y-%m-%d %H:%M",
    "%m/%d/%Y %H:%M:%S",
    "%m/%d/%Y %H:%M:%S.%f",
    "%m/%d/%Y %H:%M",
    "%m/%d/%y %H:%M:%S",
    "%m/%d/%y %H:%M:%S.%f",
    "%m/%d/%y %H:%M",
)
_DATE_INPUT_FORMATS = (
    "%Y-%m-%d",
    "%m/%d/%Y",
    "%m/%d/%y",
    "%b %d %Y",
    "%b %d, %Y",
    "%d %b %Y",
    "%d %b, %Y",
    "%B %d %Y",
    "%B %d, %Y",
    "%d %B %Y",
    "%d %B, %Y",
)
# What Django's parse_datetime accepts after datetime.fromisoformat fails.
_LOOSE_DATETIME = re.compile(
    r"(?P<year>[0-9]{4})-(?P<month>[0-9]{1,2})-(?P<day>[0-9]{1,2})[T ](?P<hour>[0-9]{1,2}):(?P<minute>[0-9]{1,2})"
    r"(?::(?P<second>[0-9]{1,2})(?:[.,](?P<fraction>[0-9]{1,6})[0-9]{0,6})?)?"
    r"\s*(?P<zone>Z|[+-][0-9]{2}(?::?[0-9]{2})?)?$"
)
# The shapes GEOSGeometry tells apart; a string of none of them is an error it does not wrap.
_WKT_SHAPE = re.compile(
    r"(SRID=-?[0-9]+;)?(?P<wkt>(?P<type>POINT|LINESTRING|LINEARRING|POLYGON|MULTIPOINT|MULTILINESTRING"
    r"|MULTIPOLYGON|GEOMETRYCOLLECTION)[ACEGIMLONPSRUTYZ0-9,.+() -]+)$",
    re.I,
)
_HEX_SHAPE = re.compile(r"[0-9A-F]+$", re.I)
_JSON_SHAPE = re.compile(r"\s*\{.*}\s*$", re.S)
_NUMBER = r"[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:E[-+]?[0-9]+)?"
_WKT_POINT = re.compile(rf"POINT\s*(?:Z\s*)?\(\s*(?P<x>{_NUMBER})\s+(?P<y>{_NUMBER})(?:\s+{_NUMBER})?\s*\)\s*$", re.I)
# Django's page for an exception the view did not handle (DEBUG off).
_SERVER_ERROR_PAGE = (
    '\n<!doctype html>\n<html lang="en">\n<head>\n  <title>Server Error (500)</title>\n</head>\n'
    "<body>\n  <h1>Server Error (500)</h1><p></p>\n</body>\n</html>\n"
)
# DRF writes compact JSON with non-ASCII characters as they are.
_drf_dumps = partial(json.dumps, separators=(",", ":"), ensure_ascii=False)


@dataclass
class Fault:
    """What the fake does instead of (or before) answering normally.

    `status` replaces the answer with that status (body `body`, default a DRF-style JSON
    detail or an S3-style XML error); `body` alone replaces a 200's body (e.g. HTML).
    `delay` waits before answering, or, with `stall_after_bytes`, after sending that many
    bytes of the body. `truncate` declares the full length but sends half the body and drops
    the connection; `chunked` omits Content-Length. `headers` are added to the answer.
    `times` limits how many requests the fault hits (None: all).
    """

    status: int | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes | None = None
    delay: float = 0.0
    truncate: bool = False
    chunked: bool = False
    stall_after_bytes: int | None = None
    times: int | None = None


@dataclass(frozen=True)
class ReceivedRequest:
    """A request the fake received: which endpoint (`kind`: "api" or "download"), path, query, headers."""

    kind: str
    path: str
    query: Mapping[str, str]
    headers: CIMultiDict[str]


@dataclass
class _Version:
    id: int
    path: Path
    created: datetime
    key: str
    md5: str
    signed_query: str


@dataclass(frozen=True)
class _Account:
    """A user a token stands for: the proposals it belongs to, and whether it is staff or superuser."""

    proposals: frozenset[str]
    staff: bool
    superuser: bool


@dataclass(frozen=True)
class _Caller:
    """Who made a request: a token and its account (None for anonymous callers), and the client address."""

    token: str | None
    account: _Account | None
    address: str


class _InvalidValue(Exception):
    """A query parameter's value the archive's form refuses, with the form's message."""


@dataclass(frozen=True)
class _Filter:
    """One parameter of the archive's FrameFilter.

    `clean` turns the parameter's values (all of them, in order) into the filter's value, None
    when the filter does not apply, or raises _InvalidValue; `apply` keeps the records it selects.
    """

    clean: Callable[[list[str]], Any]
    apply: Callable[[list[Record], Any, _Caller], list[Record]]


def _planner_guess(matches: int, rows: int) -> int:
    """A count like PostgreSQL's planner estimate: from the table's size, blind to the actual matches."""
    return max(round(rows * 0.3), 12)


class FakeArchive:
    """The fake archive server. Start it with `start()` (the `fake_archive` fixture does).

    `anonymous_quota` and `token_quota` are the requests a client address, resp. a non-staff
    token, may make in `QUOTA_SECONDS` (None: unlimited), timed by `clock`. `count_estimate` is
    called with (true number of matches, number of frames) for the count of a list that is not a
    small query. While `portal_down`, every request the archive must ask the observation portal
    about fails as the archive does, 500: any Bearer token (its profile), and a non-superuser's
    Token (its proposals).
    """

    def __init__(
        self,
        max_limit: int = MAX_LIMIT,
        anonymous_quota: int | None = 1000,
        token_quota: int | None = 50000,
        clock: Callable[[], float] = time.monotonic,
        count_estimate: Callable[[int, int], int] = _planner_guess,
    ) -> None:
        self.max_limit = max_limit
        self.anonymous_quota = anonymous_quota
        self.token_quota = token_quota
        self.clock = clock
        self.count_estimate = count_estimate
        self.portal_down = False
        self.api_fault: Fault | None = None
        self.download_fault: Fault | None = None
        self.requests: list[ReceivedRequest] = []
        self.downloads: Counter[int] = Counter()
        self._accounts: dict[str, _Account] = {}
        self._records: dict[int, Record] = {}
        self._versions: dict[int, list[_Version]] = {}
        # Request times, oldest first, by throttle bucket (scope, identity).
        self._request_times: dict[tuple[str, str], list[float]] = {}
        self._frame_ids = itertools.count(11245132)
        self._version_ids = itertools.count(1)
        self._signing_key = secrets.token_bytes(16)
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    async def start(self) -> None:
        """Serve on 127.0.0.1 and set `base_url` (ending in '/'): a free port, or after `close()` the same one again."""
        app = web.Application(middlewares=[self._record_and_inject_faults])
        app.router.add_get("/frames/", self._list_frames)
        app.router.add_get("/frames/{frame_id}/", self._get_frame)
        app.router.add_get("/download/{frame_id}/{version_id}", self._download)
        # Handlers are cancelled when a client gives up, so slow answers do not delay shutdown.
        self._runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.5, access_log=None)
        await self._runner.setup()
        # Same port on a restart: the URLs handed out before (the API root, download URLs) work again.
        port = URL(self.base_url).port if self.base_url else 0
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.base_url = f"http://{host}:{port}/"

    async def close(self) -> None:
        """Stop serving: open connections are closed and new ones refused, until `start()`."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # Test API ---------------------------------------------------------------------------

    def add_token(self, token: str, *proposal_ids: str, staff: bool = False, superuser: bool = False) -> None:
        """Accept `token` (as ``Token X`` or ``Bearer X``) for a member of these proposals.

        Staff are not throttled; a superuser (staff too) sees every frame.
        """
        self._accounts[token] = _Account(frozenset(proposal_ids), staff or superuser, superuser)

    def add_frame(self, path: Path | None, **overrides: Any) -> Record:
        """Register a frame whose file is `path` (None: a frame with no version); return its record.

        The record is realistic and public by default; `overrides` replace model fields, `area`
        (a GeoJSON polygon) or `related_frames` (e.g. ``public_date=FUTURE_DATE, proposal_id="X"``
        for a proprietary frame). Dates are written as the archive writes them; the upper-case
        legacy fields always copy the lower-case ones, so they cannot be overridden.
        """
        unknown = overrides.keys() - _OVERRIDABLE
        if unknown:
            raise TypeError(f"not frame fields that can be overridden: {sorted(unknown)}")
        frame_id = overrides.pop("id", None) or next(self._frame_ids)
        basename = overrides.pop("basename", None) or (_basename_of(path.name) if path else f"frame-{frame_id}")
        fields: Record = {
            "observation_date": "2019-03-21T10:11:12.000Z",
            "proposal_id": "LCOEPO2018B-002",
            "instrument_id": "kb82",
            "target_name": "M42",
            "reduction_level": 91,
            "site_id": "ogg",
            "telescope_id": "0m4a",
            "exposure_time": 30.0,
            "primary_optical_element": "rp",
            "public_date": PAST_DATE,
            "configuration_type": "EXPOSE",
            "observation_id": 292809554,
            "request_id": 1756835,
            "area": None,
            "related_frames": [],
            **overrides,
        }
        for name in _DATETIME_FIELDS:
            fields[name] = _written_datetime(fields[name])
        fields.setdefault("observation_day", fields["observation_date"] and fields["observation_date"][:10])
        fields["observation_day"] = _written_date(fields["observation_day"])
        record: Record = {"id": frame_id, "basename": basename}
        record.update((name, fields[name]) for name in _FIELDS[2:])
        record.update(version_set=[], url=None, filename=None)
        record.update((alias, record[name]) for alias, name in _LEGACY_COPIES.items())
        if fields["area"] is not None:
            record["area"] = fields["area"]
        record["related_frames"] = fields["related_frames"]
        self._records[frame_id] = record
        self._versions[frame_id] = []
        if path is not None:
            self.new_version(frame_id, path)
        return record

    def new_version(self, frame_id: int, path: Path) -> Record:
        """Re-process a frame: `path` becomes its newest version (new md5, key and URL)."""
        if not self.base_url:
            raise RuntimeError("start() the fake archive before adding files")
        versions = self._versions[frame_id]
        content = path.read_bytes()
        previous = versions[0].created if versions else None
        created = datetime.now(UTC) if previous is None else max(datetime.now(UTC), previous + timedelta(seconds=1))
        version_id = next(self._version_ids)
        versions.insert(
            0,
            _Version(
                id=version_id,
                path=path,
                created=created,
                key=secrets.token_hex(16),
                md5=hashlib.md5(content).hexdigest(),
                signed_query=self._signed_query(frame_id, version_id),
            ),
        )
        record = self._records[frame_id]
        # Newest first, as the archive lists them.
        record["version_set"] = [self._version_entry(frame_id, version) for version in versions]
        record["filename"] = f"{record['basename']}{_extension_of(path.name)}"
        record["url"] = record["version_set"][0]["url"]
        return record

    def record(self, frame_id: int) -> Record:
        """The stored record of a frame (what the archive would answer its proposal's members)."""
        return self._records[frame_id]

    def quota_used(self, token: str | None = None, address: str = "127.0.0.1") -> int:
        """How many requests of this token (or, without one, of this anonymous client address) count now."""
        bucket = ("token", token) if token is not None else ("anonymous", address)
        return len(self._recent_requests(bucket, self.clock()))

    @property
    def api_calls(self) -> int:
        """How many API requests (not downloads) the fake has received."""
        return sum(1 for request in self.requests if request.kind == "api")

    def received(self, kind: str) -> list[ReceivedRequest]:
        """The requests received on one kind of endpoint: "api" or "download"."""
        return [request for request in self.requests if request.kind == kind]

    # HTTP handlers ----------------------------------------------------------------------

    @web.middleware
    async def _record_and_inject_faults(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Record every request, then apply the fault for its kind of endpoint, if any."""
        kind = "download" if request.path.startswith("/download/") else "api"
        self.requests.append(ReceivedRequest(kind, request.path, dict(request.query), CIMultiDict(request.headers)))
        fault = self._take_fault(kind)
        if fault is None:
            return await handler(request)
        if fault.stall_after_bytes is None:
            await asyncio.sleep(fault.delay)
        if fault.status is not None:
            content_type, body = _ERROR_BODIES[kind]
            return await _send_bytes(request, fault.body or body, content_type, fault, status=fault.status)
        response = await handler(request)
        if response.status != 200 or not isinstance(response, web.Response) or response.body is None:
            return response
        if fault.body is not None:
            return await _send_bytes(request, fault.body, "text/html", fault)
        return await _send_bytes(request, bytes(response.body), response.content_type, fault)  # type: ignore[arg-type]

    async def _get_frame(self, request: web.Request) -> web.Response:
        caller = self._admit(request)
        # The archive looks the frame up among the filtered frames, so filters apply here too.
        selected = self._selected(request.query, caller, listing=False)
        try:
            frame_id = int(request.match_info["frame_id"])
        except ValueError:
            # DRF turns the failed conversion into a 404 without the model's message.
            raise _not_found("Not found.") from None
        record = next((record for record in selected if record["id"] == frame_id), None)
        if record is None:
            raise _not_found("No Frame matches the given query.")
        return web.json_response(_served(record, request.query), dumps=_drf_dumps)

    async def _list_frames(self, request: web.Request) -> web.Response:
        caller = self._admit(request)
        query = request.query
        selected = self._selected(query, caller, listing=True)
        if _last(query, "pagination_style") == "cursor":
            raise _not_modelled("cursor pagination")
        exact = self._is_small_query(query, caller)
        count = len(selected) if exact else self.count_estimate(len(selected), len(self._records))
        limit, offset = self._limit(query), _offset(query)
        url = f"{request.scheme}://{request.host}{request.raw_path}"
        return web.json_response(
            {
                "count": count,
                "next": _next_link(url, limit, offset, count),
                "previous": _previous_link(url, limit, offset),
                "results": [_served(record, query) for record in selected[offset : offset + limit]],
                "count_estimated": not exact,
            },
            dumps=_drf_dumps,
        )

    async def _download(self, request: web.Request) -> web.Response:
        version = self._version(request)
        if version is None or request.rel_url.raw_query_string != version.signed_query:
            return _s3_error(403, "SignatureDoesNotMatch")
        if "Authorization" in request.headers:
            # S3 refuses a pre-signed URL that also carries an Authorization header.
            return _s3_error(400, "InvalidArgument")
        self.downloads[int(request.match_info["frame_id"])] += 1
        content = await asyncio.to_thread(version.path.read_bytes)
        return web.Response(body=content, content_type="application/fits")

    # The archive's request handling -----------------------------------------------------

    def _admit(self, request: web.Request) -> _Caller:
        """Authenticate the caller, then count the request against its quotas, in DRF's order."""
        caller = self._authenticate(request)
        self._throttle(caller)
        return caller

    def _authenticate(self, request: web.Request) -> _Caller:
        """The caller, as the archive's authenticators find it: Token first, then Bearer; else anonymous."""
        header = request.headers.get("Authorization", "")
        address = _client_address(request)
        words = header.split()
        if words and words[0].lower() == "token":
            if len(words) == 1:
                raise _unauthorized("Invalid token header. No credentials provided.")
            if len(words) > 2:
                raise _unauthorized("Invalid token header. Token string should not contain spaces.")
            if words[1] not in self._accounts:
                raise _unauthorized("Invalid token.")
            return _Caller(words[1], self._accounts[words[1]], address)
        # The Bearer authenticator looks for the word anywhere and asks the portal for the profile.
        if "Bearer" in header:
            token = header.split("Bearer")[1].strip()
            if self.portal_down:
                raise _server_error()
            if token not in self._accounts:
                raise _unauthorized("No Such User")
            return _Caller(token, self._accounts[token], address)
        return _Caller(None, None, address)

    def _throttle(self, caller: _Caller) -> None:
        """Count the request in each of the caller's buckets that has room; 429 if one has none."""
        now = self.clock()
        refusals: list[float | None] = []
        for bucket, quota in self._buckets(caller):
            if quota is None:
                continue
            times = self._recent_requests(bucket, now)
            if len(times) < quota:
                times.append(now)
            else:
                refusals.append(_wait(times, quota, now))
        if refusals:
            raise _throttled(max((wait for wait in refusals if wait is not None), default=None))

    def _buckets(self, caller: _Caller) -> list[tuple[tuple[str, str], int | None]]:
        """The throttle buckets a request counts in, with their quotas: none for staff.

        Anonymous requests also count in the per-user throttle, by address, as DRF's UserRateThrottle does.
        """
        if caller.account is None:
            return [(("anonymous", caller.address), self.anonymous_quota), (("user", caller.address), self.token_quota)]
        if caller.account.staff:
            return []
        return [(("token", caller.token or ""), self.token_quota)]

    def _recent_requests(self, bucket: tuple[str, str], now: float) -> list[float]:
        """The bucket's request times still in the window (older ones dropped), oldest first."""
        times = self._request_times.setdefault(bucket, [])
        while times and times[0] <= now - QUOTA_SECONDS:
            times.pop(0)
        return times

    def _selected(self, query: MultiMapping[str], caller: _Caller, listing: bool) -> list[Record]:
        """The frames the caller may see that the query selects, in the query's order.

        Lists leave out frames without a version; no answer has a frame without an observation date.
        """
        if self.portal_down and caller.account is not None and not caller.account.superuser:
            # The caller's proposals come from the portal, which cannot be reached.
            raise _server_error()
        now = datetime.now(UTC)
        records = [
            record
            for record in self._records.values()
            if record.get("observation_date") is not None
            and (record.get("version_set") or not listing)
            and _visible(record, caller, now)
        ]
        for name, value in _cleaned_filters(query):
            records = _FILTERS[name].apply(records, value, caller)
        return _ordered(records, _ordering(query))

    def _is_small_query(self, query: MultiMapping[str], caller: _Caller) -> bool:
        """Whether the archive counts this list exactly: indexed parameters, or a short enough time span."""
        if "force_count" in query and caller.account is not None:
            return True
        if any(name in query for name in _INDEXED_PARAMETERS):
            return True
        if "start" in query and "end" in query:
            span = _time_span(_last(query, "start"), _last(query, "end"))
            bounded = any(name in query for name in _BOUNDING_PARAMETERS)
            return span <= timedelta(days=7) or (bounded and span <= timedelta(weeks=9))
        return False

    def _limit(self, query: MultiMapping[str]) -> int:
        """The page size: ``limit`` up to `max_limit`; the default for a missing, bad or non-positive one."""
        try:
            limit = int(query.getall("limit")[-1])
        except (KeyError, ValueError):
            return DEFAULT_LIMIT
        return min(limit, self.max_limit) if limit > 0 else DEFAULT_LIMIT

    # Helpers ----------------------------------------------------------------------------

    def _take_fault(self, kind: str) -> Fault | None:
        """The fault that applies to the next request of this kind, counting its use."""
        fault = self.api_fault if kind == "api" else self.download_fault
        if fault is None or fault.times == 0:
            return None
        if fault.times is not None:
            fault.times -= 1
        return fault

    def _version(self, request: web.Request) -> _Version | None:
        try:
            frame_id, version_id = int(request.match_info["frame_id"]), int(request.match_info["version_id"])
        except ValueError:
            return None
        return next((version for version in self._versions.get(frame_id, []) if version.id == version_id), None)

    def _version_entry(self, frame_id: int, version: _Version) -> Record:
        return {
            "id": version.id,
            "key": version.key,
            "md5": version.md5,
            "extension": _extension_of(version.path.name),
            "url": f"{self.base_url}download/{frame_id}/{version.id}?{version.signed_query}",
            "created": _drf_datetime(version.created),
        }

    def _signed_query(self, frame_id: int, version_id: int) -> str:
        """A query like S3's pre-signed one; the credential's %2F must reach the server unchanged."""
        signature = hmac.new(self._signing_key, f"{frame_id}/{version_id}".encode(), hashlib.sha256).hexdigest()
        return (
            "X-Amz-Algorithm=AWS4-HMAC-SHA256"
            "&X-Amz-Credential=AKIAFAKEFAKEFAKE%2F20190322%2Fus-west-2%2Fs3%2Faws4_request"
            f"&X-Amz-Date=20190322T010203Z&X-Amz-Expires={URL_EXPIRY_SECONDS}&X-Amz-SignedHeaders=host"
            f"&X-Amz-Signature={signature}"
        )


# Answers ------------------------------------------------------------------------------------


def _json_answer(
    status: type[web.HTTPException], body: Any, headers: Mapping[str, str] | None = None
) -> web.HTTPException:
    return status(text=_drf_dumps(body), content_type="application/json", headers=headers)


def _not_found(detail: str) -> web.HTTPException:
    return _json_answer(web.HTTPNotFound, {"detail": detail})


def _unauthorized(detail: str) -> web.HTTPException:
    # DRF answers 401 with the first authenticator's challenge.
    return _json_answer(web.HTTPUnauthorized, {"detail": detail}, {"WWW-Authenticate": "Token"})


def _throttled(wait: float | None) -> web.HTTPException:
    """DRF's 429: the whole seconds to wait, in Retry-After and in the detail."""
    if wait is None:
        return _json_answer(web.HTTPTooManyRequests, {"detail": "Request was throttled."})
    seconds = math.ceil(wait)
    unit = "second" if seconds == 1 else "seconds"
    detail = f"Request was throttled. Expected available in {seconds} {unit}."
    return _json_answer(web.HTTPTooManyRequests, {"detail": detail}, {"Retry-After": str(seconds)})


def _server_error() -> web.HTTPException:
    return web.HTTPInternalServerError(text=_SERVER_ERROR_PAGE, content_type="text/html")


def _not_modelled(what: str) -> web.HTTPException:
    return web.HTTPNotImplemented(text=f"The fake archive does not model {what}.")


def _s3_error(status: int, code: str) -> web.Response:
    return web.Response(status=status, text=f"<Error><Code>{code}</Code></Error>", content_type="application/xml")


async def _send_bytes(
    request: web.Request, body: bytes, content_type: str, fault: Fault, status: int = 200
) -> web.StreamResponse:
    """Send `body` in chunks, applying the fault's headers, truncation, chunking or stall."""
    response = web.StreamResponse(status=status, headers=fault.headers)
    response.content_type = content_type
    if not fault.chunked:
        response.content_length = len(body)
    await response.prepare(request)
    end = len(body) // 2 if fault.truncate else len(body)
    boundaries = {*range(DOWNLOAD_CHUNK_BYTES, end, DOWNLOAD_CHUNK_BYTES), end}
    if fault.stall_after_bytes is not None and fault.stall_after_bytes < end:
        boundaries.add(fault.stall_after_bytes)
    position = 0
    for stop in sorted(boundaries):
        await response.write(body[position:stop])
        position = stop
        if stop == fault.stall_after_bytes:
            await asyncio.sleep(fault.delay)
    if end < len(body) and request.transport is not None:
        # Drop the connection with the declared length unmet: the client sees a cut-short body.
        request.transport.close()
        return response
    await response.write_eof()
    return response


# Callers and throttling ---------------------------------------------------------------------


def _client_address(request: web.Request) -> str:
    """The client as DRF's throttles know it: X-Forwarded-For (spaces removed) if sent, else the peer."""
    forwarded = request.headers.get("X-Forwarded-For")
    return "".join(forwarded.split()) if forwarded else request.remote or ""


def _wait(times: list[float], quota: int, now: float) -> float | None:
    """DRF's wait before a full bucket takes a request: the oldest one's time left, shared by the requests free then."""
    remaining = QUOTA_SECONDS - (now - times[0]) if times else QUOTA_SECONDS
    available = quota - len(times) + 1
    return remaining / available if available > 0 else None


def _visible(record: Mapping[str, Any], caller: _Caller, now: datetime) -> bool:
    """Everything to superusers; public frames to everyone; others to members of their proposal."""
    if caller.account is not None and caller.account.superuser:
        return True
    if _is_public(record, now):
        return True
    return caller.account is not None and record.get("proposal_id") in caller.account.proposals


def _is_public(record: Mapping[str, Any], now: datetime) -> bool:
    public_date = _stored_datetime(record.get("public_date"))
    return public_date is not None and public_date < now


# Filters --------------------------------------------------------------------------------------


def _cleaned_filters(query: MultiMapping[str]) -> list[tuple[str, Any]]:
    """The value of each filter that applies, in the FilterSet's order; 400 naming every refused value."""
    cleaned, errors = [], {}
    for name, spec in _FILTERS.items():
        try:
            value = spec.clean(query.getall(name, []))
        except _InvalidValue as invalid:
            errors[name] = [str(invalid)]
            continue
        if value is not None:
            cleaned.append((name, value))
    if errors:
        raise _json_answer(web.HTTPBadRequest, errors)
    return cleaned


def _text(values: list[str]) -> str | None:
    """A text filter's value: the last one given, stripped; empty means not given."""
    return values[-1].strip() or None if values else None


def _number(values: list[str]) -> Decimal | None:
    """A number filter's value (Django's DecimalField with django-filter's upper bound)."""
    if not values or values[-1] == "":
        return None
    try:
        number = Decimal(values[-1])
    except InvalidOperation:
        raise _InvalidValue("Enter a number.") from None
    if not number.is_finite():
        raise _InvalidValue("Enter a number.")
    if number > Decimal("1e50"):
        raise _InvalidValue("Ensure this value is less than or equal to 1e+50.")
    return number


def _datetime(values: list[str]) -> datetime | None:
    """A date-time filter's value, parsed as Django's form field does; naive means UTC."""
    if not values or values[-1] == "":
        return None
    text = values[-1].strip()
    try:
        parsed = _django_parse_datetime(text) or _strptime(text, _DATETIME_INPUT_FORMATS + _DATE_INPUT_FORMATS)
    except ValueError:
        parsed = None
    if parsed is None:
        raise _InvalidValue("Enter a valid date/time.")
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _date(values: list[str]) -> date | None:
    """A date filter's value: one of Django's date input formats."""
    if not values or values[-1] == "":
        return None
    parsed = _strptime(values[-1].strip(), _DATE_INPUT_FORMATS)
    if parsed is None:
        raise _InvalidValue("Enter a valid date.")
    return parsed.date()


def _boolean(values: list[str]) -> bool | None:
    """A boolean filter's value as django-filter's BooleanWidget reads it; anything else is not given."""
    return {"true": True, "1": True, "false": False, "0": False}.get(values[-1].lower()) if values else None


def _configuration_types(values: list[str]) -> list[str] | None:
    """The configuration types of a multiple-choice filter; each must be one of the choices."""
    for value in values:
        if value not in CONFIGURATION_TYPES:
            raise _InvalidValue(f"Select a valid choice. {value} is not one of the available choices.")
    return values or None


def _where(predicate: Callable[[Mapping[str, Any], Any], bool]) -> Callable[[list[Record], Any, _Caller], list[Record]]:
    """A filter keeping the records for which `predicate(record, value)` holds."""
    return lambda records, value, caller: [record for record in records if predicate(record, value)]


def _equal(name: str) -> Callable[[Mapping[str, Any], Any], bool]:
    return lambda record, value: record.get(name) == value


def _contains(name: str) -> Callable[[Mapping[str, Any], Any], bool]:
    """Case-insensitive substring, as Django's icontains."""
    return lambda record, value: record.get(name) is not None and value.upper() in str(record[name]).upper()


def _integer_equal(name: str) -> Callable[[Mapping[str, Any], Decimal], bool]:
    # An integer column compares with the value's integer part, as Django converts it.
    return lambda record, value: record.get(name) is not None and record[name] == int(value)


def _at_least(name: str) -> Callable[[Mapping[str, Any], Decimal], bool]:
    return lambda record, value: record.get(name) is not None and record[name] >= float(value)


def _compare_datetime(
    name: str, compare: Callable[[datetime, datetime], bool]
) -> Callable[[Mapping[str, Any], datetime], bool]:
    def holds(record: Mapping[str, Any], value: datetime) -> bool:
        stored = _stored_datetime(record.get(name))
        return stored is not None and compare(stored, value)

    return holds


def _same_day(record: Mapping[str, Any], value: date) -> bool:
    return isinstance(record.get("observation_day"), str) and date.fromisoformat(record["observation_day"]) == value


def _one_of_types(keep: bool) -> Callable[[list[Record], list[str], _Caller], list[Record]]:
    """Include (`keep`) or exclude the given configuration types; choosing every type filters nothing."""

    def apply(records: list[Record], values: list[str], caller: _Caller) -> list[Record]:
        if set(values) == CONFIGURATION_TYPES:
            return records
        return [record for record in records if (record.get("configuration_type") in values) == keep]

    return apply


def _public(records: list[Record], value: bool, caller: _Caller) -> list[Record]:
    """The archive's ``public`` filter: true changes nothing; false keeps a non-superuser's proposals' frames,
    or for anonymous callers and superusers the frames not public yet."""
    if value:
        return records
    account = caller.account
    if account is not None and not account.superuser:
        if not account.proposals:
            # The filter method returns None here, and django-filter's assertion fails.
            raise _server_error()
        return [record for record in records if record.get("proposal_id") in account.proposals]
    now = datetime.now(UTC)
    return [record for record in records if not _is_public(record, now)]


def _exclude_calibrations(records: list[Record], value: bool, caller: _Caller) -> list[Record]:
    if not value:
        return records
    return [record for record in records if record.get("configuration_type") in SCIENCE_CONFIGURATION_TYPES]


def _no_headers(records: list[Record], value: str, caller: _Caller) -> list[Record]:
    # ``submitter`` matches a header; the fake keeps no headers, so nothing matches.
    return []


def _covering(name: str) -> Callable[[list[Record], str, _Caller], list[Record]]:
    """``covers``/``intersects`` with a point: the frames whose area contains it (edges included)."""

    def apply(records: list[Record], value: str, caller: _Caller) -> list[Record]:
        ra, dec = _query_point(name, value)
        return [record for record in records if _area_contains(record.get("area"), ra, dec)]

    return apply


_FILTERS: dict[str, _Filter] = {
    # The model fields django-filter makes exact filters of, then the declared ones, in the FilterSet's order.
    "proposal_id": _Filter(_text, _where(_equal("proposal_id"))),
    "configuration_type": _Filter(_text, _where(_equal("configuration_type"))),
    "instrument_id": _Filter(_text, _where(_equal("instrument_id"))),
    "reduction_level": _Filter(_number, _where(_integer_equal("reduction_level"))),
    "site_id": _Filter(_text, _where(_equal("site_id"))),
    "telescope_id": _Filter(_text, _where(_equal("telescope_id"))),
    "primary_optical_element": _Filter(_text, _where(_equal("primary_optical_element"))),
    "observation_id": _Filter(_number, _where(_integer_equal("observation_id"))),
    "request_id": _Filter(_number, _where(_integer_equal("request_id"))),
    "start": _Filter(_datetime, _where(_compare_datetime("observation_date", operator.ge))),
    "end": _Filter(_datetime, _where(_compare_datetime("observation_date", operator.le))),
    "DATE_OBS": _Filter(_datetime, _where(_compare_datetime("observation_date", operator.eq))),
    "DAY_OBS": _Filter(_date, _where(_same_day)),
    "dayobs": _Filter(_date, _where(_same_day)),
    "basename": _Filter(_text, _where(_contains("basename"))),
    "basename_exact": _Filter(_text, _where(_equal("basename"))),
    "OBJECT": _Filter(_text, _where(_contains("target_name"))),
    "target_name": _Filter(_text, _where(_contains("target_name"))),
    "target_name_exact": _Filter(_text, _where(_equal("target_name"))),
    "empty_target_name": _Filter(_text, _where(lambda record, value: record.get("target_name") == "")),
    "L1PUBDAT": _Filter(_datetime, _where(_compare_datetime("public_date", operator.eq))),
    "public": _Filter(_boolean, _public),
    "EXPTIME": _Filter(_number, _where(_at_least("exposure_time"))),
    "exposure_time": _Filter(_number, _where(_at_least("exposure_time"))),
    "OBSTYPE": _Filter(_text, _where(_equal("configuration_type"))),
    "PROPID": _Filter(_text, _where(_equal("proposal_id"))),
    "INSTRUME": _Filter(_text, _where(_equal("instrument_id"))),
    "SITEID": _Filter(_text, _where(_equal("site_id"))),
    "TELID": _Filter(_text, _where(_equal("telescope_id"))),
    "FILTER": _Filter(_text, _where(_equal("primary_optical_element"))),
    "BLKUID": _Filter(_number, _where(_integer_equal("observation_id"))),
    "REQNUM": _Filter(_number, _where(_integer_equal("request_id"))),
    "RLEVEL": _Filter(_number, _where(_integer_equal("reduction_level"))),
    "covers": _Filter(_text, _covering("covers")),
    "submitter": _Filter(_text, _no_headers),
    "exclude_OBSTYPE": _Filter(_configuration_types, _one_of_types(keep=False)),
    "exclude_configuration_type": _Filter(_configuration_types, _one_of_types(keep=False)),
    "include_configuration_type": _Filter(_configuration_types, _one_of_types(keep=True)),
    "exclude_calibrations": _Filter(_boolean, _exclude_calibrations),
    "intersects": _Filter(_text, _covering("intersects")),
}


# Geometry -------------------------------------------------------------------------------------


def _query_point(name: str, text: str) -> tuple[float, float]:
    """The (RA, Dec) of a ``covers``/``intersects`` value; refused where the archive refuses it."""
    shape = _WKT_SHAPE.match(text)
    if shape is None and _JSON_SHAPE.match(text):
        raise _not_modelled("GeoJSON geometries")
    if shape is None and not _HEX_SHAPE.match(text):
        # Neither WKT, WKB nor GeoJSON: GEOSGeometry raises an error the filter does not catch.
        raise _server_error()
    point = _WKT_POINT.match(shape["wkt"]) if shape else None
    if point is not None:
        return float(point["x"]), float(point["y"])
    if shape is not None and shape["type"].upper() != "POINT":
        raise _not_modelled(f"{shape['type'].upper()} geometries")
    # GEOS could not read it: the filter's own message, as a list.
    message = f"Error with {name} query: Point must be specified with exact format 'POINT(RA DEC)'"
    raise _json_answer(web.HTTPBadRequest, [message])


def _area_contains(area: Any, ra: float, dec: float) -> bool:
    """Whether a GeoJSON polygon's outer ring contains the point, edges included, RA taken modulo 360."""
    if not isinstance(area, Mapping) or area.get("type") != "Polygon" or not area.get("coordinates"):
        return False
    ring = [(float(point[0]), float(point[1])) for point in area["coordinates"][0]]
    return any(_ring_contains(ring, x, dec) for x in (ra, ra - 360, ra + 360))


def _ring_contains(ring: Sequence[tuple[float, float]], x: float, y: float) -> bool:
    """Even-odd test of a closed ring (first point repeated last), a point on an edge counting as inside."""
    inside = False
    for (x1, y1), (x2, y2) in itertools.pairwise(ring):
        on_line = math.isclose((x2 - x1) * (y - y1), (y2 - y1) * (x - x1), abs_tol=1e-12)
        if on_line and min(x1, x2) <= x <= max(x1, x2) and min(y1, y2) <= y <= max(y1, y2):
            return True
        if (y1 > y) != (y2 > y) and x < x1 + (y - y1) * (x2 - x1) / (y2 - y1):
            inside = not inside
    return inside


# Ordering and pagination ----------------------------------------------------------------------


def _last(query: MultiMapping[str], name: str) -> str | None:
    """A parameter's last value, as Django's QueryDict gives it."""
    values = query.getall(name, [])
    return values[-1] if values else None


def _ordering(query: MultiMapping[str]) -> list[str]:
    """The ``ordering`` terms the archive accepts, others dropped; the default when none is left."""
    text = _last(query, "ordering")
    terms = [term.strip() for term in text.split(",")] if text else []
    return [term for term in terms if term.removeprefix("-") in ORDERING_FIELDS] or list(DEFAULT_ORDERING)


def _ordered(records: list[Record], ordering: list[str]) -> list[Record]:
    """The records sorted by each term in turn, nulls last ascending and first descending, as PostgreSQL does."""
    ordered = list(records)
    # Stable sorts from the last term to the first leave the first term deciding.
    for term in reversed(ordering):
        name = term.removeprefix("-")
        ordered.sort(key=lambda record: _sort_key(name, record.get(name)), reverse=term.startswith("-"))
    return ordered


def _sort_key(name: str, value: Any) -> tuple[bool, Any]:
    if name == "observation_date":
        value = _stored_datetime(value)
    return value is None, value if value is not None else 0


def _offset(query: MultiMapping[str]) -> int:
    """The ``offset``; 0 for a missing, bad or negative one."""
    try:
        offset = int(query.getall("offset")[-1])
    except (KeyError, ValueError):
        return 0
    return max(offset, 0)


def _time_span(start: str | None, end: str | None) -> timedelta:
    """``end - start`` as the archive's pagination computes it: unguarded, so what it cannot subtract is a 500."""
    try:
        return _django_parse_datetime(end or "") - _django_parse_datetime(start or "")  # type: ignore[operator]
    except (TypeError, ValueError):
        # A value parse_datetime does not read (None), or a naive and an aware date-time.
        raise _server_error() from None


def _next_link(url: str, limit: int, offset: int, count: int) -> str | None:
    """DRF's next page link: none once offset + limit reaches the count, whatever the rows."""
    if offset + limit >= count:
        return None
    return _with_parameter(_with_parameter(url, "limit", limit), "offset", offset + limit)


def _previous_link(url: str, limit: int, offset: int) -> str | None:
    """DRF's previous page link: the offset parameter removed when the previous page starts at 0."""
    if offset <= 0:
        return None
    url = _with_parameter(url, "limit", limit)
    return _with_parameter(url, "offset", offset - limit if offset - limit > 0 else None)


def _with_parameter(url: str, name: str, value: int | None) -> str:
    """`url` with the parameter set (None: removed); DRF re-encodes the query sorted by name."""
    scheme, netloc, path, query, fragment = urlsplit(url)
    parameters = parse_qs(query, keep_blank_values=True)
    if value is None:
        parameters.pop(name, None)
    else:
        parameters[name] = [str(value)]
    return urlunsplit((scheme, netloc, path, urlencode(sorted(parameters.items()), doseq=True), fragment))


# Records and dates ----------------------------------------------------------------------------


def _served(record: Mapping[str, Any], query: MultiMapping[str]) -> Record:
    """The record as the archive serialises it for this request.

    The stored record may have been changed by a test: dates are written anew and the legacy
    copies taken again from the lower-case fields.
    """
    served = dict(record)
    for name in _DATETIME_FIELDS:
        if isinstance(served.get(name), str):
            served[name] = _written_datetime(served[name])
    served.update((alias, served.get(name)) for alias, name in _LEGACY_COPIES.items())
    if (_last(query, "include_related_frames") or "").lower() == "false":
        served.pop("related_frames", None)
    if (_last(query, "include_thumbnails") or "").lower() == "true":
        served["thumbnails"] = []
    return served


def _drf_datetime(moment: datetime) -> str:
    """A datetime as DRF writes it: ISO 8601 in UTC with ``Z``, a fraction only when there are microseconds."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _written_datetime(value: str | datetime | None) -> str | None:
    """A date given to the fake (ISO string or datetime; naive means UTC) as the archive writes it."""
    if value is None:
        return None
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return _drf_datetime(moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC))


def _written_date(value: str | date | None) -> str | None:
    """An observation day (ISO or YYYYMMDD string, or date) as the archive writes it."""
    if value is None:
        return None
    day = value if isinstance(value, date) else datetime.strptime(value.replace("-", ""), "%Y%m%d").date()
    return day.isoformat()


def _stored_datetime(value: Any) -> datetime | None:
    """An aware datetime from a record's date string (naive means UTC), or None."""
    if not isinstance(value, str) or not value:
        return None
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _django_parse_datetime(text: str) -> datetime | None:
    """Django's parse_datetime: ISO 8601 (dates alone are midnight), else a looser form; None if neither.

    Naive unless the text has a zone; ValueError for a well-formed but impossible date-time.
    """
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        pass
    loose = _LOOSE_DATETIME.match(text)
    if loose is None:
        return None
    parts = loose.groupdict()
    zone = parts.pop("zone")
    fraction = parts.pop("fraction")
    numbers = {key: int(part) for key, part in parts.items() if part is not None}
    moment = datetime(**numbers, microsecond=int(fraction.ljust(6, "0")) if fraction else 0)
    if zone is None:
        return moment
    return datetime.fromisoformat(f"{moment.isoformat()}{'+00:00' if zone == 'Z' else _colon_offset(zone)}")


def _colon_offset(zone: str) -> str:
    """A ``+HH``, ``+HHMM`` or ``+HH:MM`` offset as ``+HH:MM``."""
    digits = zone[1:].replace(":", "")
    return f"{zone[0]}{digits[:2]}:{digits[2:] or '00'}"


def _strptime(text: str, formats: Sequence[str]) -> datetime | None:
    """The text read by the first of these formats that fits, or None."""
    for form in formats:
        try:
            return datetime.strptime(text, form)
        except ValueError:
            continue
    return None


def _basename_of(filename: str) -> str:
    return filename.removesuffix(_extension_of(filename))


def _extension_of(filename: str) -> str:
    return ".fits.fz" if filename.endswith(".fits.fz") else ".fits"
