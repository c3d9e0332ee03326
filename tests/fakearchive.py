"""A fake OCS Science Archive: the HTTP protocol of ARCHIVE_API.md on loopback, with fault knobs.

It serves ``GET /frames/{id}/``, ``GET /frames/`` (exact-match filters, ``basename_exact``,
``start``/``end``, ``ordering``, limit/offset pagination with absolute ``next``/``previous``
URLs) and pre-signed-looking download URLs ``/download/{id}/{version}?X-Amz-...`` that, like
S3, refuse an Authorization header and a query that is not exactly the one issued.
"""

import asyncio
import hashlib
import hmac
import itertools
import json
import secrets
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

PAST_DATE = "2020-03-21T10:11:12.000Z"
FUTURE_DATE = "2999-01-01T00:00:00.000Z"
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
DOWNLOAD_CHUNK_BYTES = 64 * 1024
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# The body of a fault's error answer, by kind of endpoint: DRF's JSON detail, S3's XML error.
_ERROR_BODIES = {
    "api": ("application/json", b'{"detail": "Injected fault."}'),
    "download": ("application/xml", b"<Error><Code>InternalError</Code></Error>"),
}
_PAGINATION_PARAMETERS = frozenset({"limit", "offset", "ordering"})
# Legacy upper-case alias -> lower-case field, as real records carry both.
_LEGACY_ALIASES = {
    "PROPID": "proposal_id",
    "OBSTYPE": "configuration_type",
    "FILTER": "primary_optical_element",
    "RLEVEL": "reduction_level",
    "REQNUM": "request_id",
    "SITEID": "site_id",
    "TELID": "telescope_id",
    "INSTRUME": "instrument_id",
    "OBJECT": "target_name",
    "EXPTIME": "exposure_time",
    "L1PUBDAT": "public_date",
    "DATE_OBS": "observation_date",
    "DAY_OBS": "observation_day",
}


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


class FakeArchive:
    """The fake archive server. Start it with `start()` (the `fake_archive` fixture does)."""

    def __init__(self, max_limit: int = MAX_LIMIT) -> None:
        self.max_limit = max_limit
        self.tokens: dict[str, set[str]] = {}
        self.api_fault: Fault | None = None
        self.download_fault: Fault | None = None
        self.requests: list[ReceivedRequest] = []
        self.downloads: Counter[int] = Counter()
        self._records: dict[int, dict[str, Any]] = {}
        self._versions: dict[int, list[_Version]] = {}
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

    def add_token(self, token: str, *proposal_ids: str) -> None:
        """Accept `token` (as ``Token X`` or ``Bearer X``) for a member of these proposals."""
        self.tokens[token] = set(proposal_ids)

    def add_frame(self, path: Path | None, **overrides: Any) -> dict[str, Any]:
        """Register a frame whose file is `path` (None: a frame with no version); return its record.

        The record is realistic and public by default; `overrides` replace any field
        (e.g. ``public_date=FUTURE_DATE, proposal_id="X"`` for a proprietary frame).
        """
        frame_id = overrides.pop("id", None) or next(self._frame_ids)
        basename = overrides.get("basename") or (_basename_of(path.name) if path else f"frame-{frame_id}")
        record: dict[str, Any] = {
            "id": frame_id,
            "basename": basename,
            "filename": None,
            "url": None,
            "version_set": [],
            "reduction_level": 91,
            "observation_date": "2019-03-21T10:11:12.000Z",
            "proposal_id": "LCOEPO2018B-002",
            "instrument_id": "kb82",
            "target_name": "M42",
            "site_id": "ogg",
            "telescope_id": "0m4a",
            "exposure_time": 30.0,
            "primary_optical_element": "rp",
            "public_date": PAST_DATE,
            "configuration_type": "EXPOSE",
            "observation_id": 292809554,
            "request_id": 1756835,
            "related_frames": [],
            "area": None,
        }
        record.update(overrides)
        observation_date = record["observation_date"]
        record.setdefault("observation_day", observation_date[:10] if observation_date else None)
        for alias, name in _LEGACY_ALIASES.items():
            record.setdefault(alias, record.get(name))
        self._records[frame_id] = record
        self._versions[frame_id] = []
        if path is not None:
            self.new_version(frame_id, path)
        return record

    def new_version(self, frame_id: int, path: Path) -> dict[str, Any]:
        """Re-process a frame: `path` becomes its newest version (new md5, key and URL)."""
        if not self.base_url:
            raise RuntimeError("start() the fake archive before adding files")
        versions = self._versions[frame_id]
        content = path.read_bytes()
        previous = versions[0].created if versions else None
        created = datetime.now(UTC) if previous is None else max(datetime.now(UTC), previous + timedelta(seconds=1))
        version_id = next(self._version_ids)
        versions.insert(0, _Version(
            id=version_id,
            path=path,
            created=created,
            key=secrets.token_hex(16),
            md5=hashlib.md5(content).hexdigest(),
            signed_query=self._signed_query(frame_id, version_id),
        ))
        record = self._records[frame_id]
        # Newest first, as the archive lists them.
        record["version_set"] = [self._version_entry(frame_id, version) for version in versions]
        record["filename"] = f"{record['basename']}{_extension_of(path.name)}"
        record["url"] = record["version_set"][0]["url"]
        return record

    def record(self, frame_id: int) -> dict[str, Any]:
        """The stored record of a frame (what the archive would answer its proposal's members)."""
        return self._records[frame_id]

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
        proposals = self._caller_proposals(request)
        try:
            record = self._records[int(request.match_info["frame_id"])]
        except (KeyError, ValueError):
            raise _not_found() from None
        if not _visible(record, proposals):
            raise _not_found()
        return web.json_response(record)

    async def _list_frames(self, request: web.Request) -> web.Response:
        proposals = self._caller_proposals(request)
        query = request.query
        matches = [
            record for record in self._records.values()
            if _visible(record, proposals) and _matches_filters(record, query)
        ]
        ordering = query.get("ordering", "id")
        matches.sort(key=lambda record: _sort_key(record.get(ordering.removeprefix("-"))),
                     reverse=ordering.startswith("-"))
        limit = min(int(query.get("limit", DEFAULT_LIMIT)), self.max_limit)
        offset = int(query.get("offset", 0))
        following = offset + limit
        return web.json_response({
            "count": len(matches),
            "next": str(request.url.update_query(limit=limit, offset=following)) if following < len(matches) else None,
            "previous": str(request.url.update_query(limit=limit, offset=max(offset - limit, 0))) if offset else None,
            "results": matches[offset:following],
        })

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

    # Helpers ----------------------------------------------------------------------------

    def _take_fault(self, kind: str) -> Fault | None:
        """The fault that applies to the next request of this kind, counting its use."""
        fault = self.api_fault if kind == "api" else self.download_fault
        if fault is None or fault.times == 0:
            return None
        if fault.times is not None:
            fault.times -= 1
        return fault

    def _caller_proposals(self, request: web.Request) -> set[str]:
        """The proposals of the caller (empty if anonymous); 401 for an unknown token."""
        authorization = request.headers.get("Authorization")
        if authorization is None:
            return set()
        scheme, _, token = authorization.partition(" ")
        if scheme not in ("Token", "Bearer") or token not in self.tokens:
            raise web.HTTPUnauthorized(text=json.dumps({"detail": "Invalid token."}), content_type="application/json")
        return self.tokens[token]

    def _version(self, request: web.Request) -> _Version | None:
        try:
            frame_id, version_id = int(request.match_info["frame_id"]), int(request.match_info["version_id"])
        except ValueError:
            return None
        return next((version for version in self._versions.get(frame_id, []) if version.id == version_id), None)

    def _version_entry(self, frame_id: int, version: _Version) -> dict[str, Any]:
        extension = _extension_of(version.path.name)
        return {
            "id": version.id,
            "created": version.created.isoformat().replace("+00:00", "Z"),
            "key": version.key,
            "md5": version.md5,
            "extension": extension,
            "url": f"{self.base_url}download/{frame_id}/{version.id}?{version.signed_query}",
        }

    def _signed_query(self, frame_id: int, version_id: int) -> str:
        """A query like S3's pre-signed one; the credential's %2F must reach the server unchanged."""
        signature = hmac.new(self._signing_key, f"{frame_id}/{version_id}".encode(), hashlib.sha256).hexdigest()
        return (
            "X-Amz-Algorithm=AWS4-HMAC-SHA256"
            "&X-Amz-Credential=AKIAFAKEFAKEFAKE%2F20190322%2Fus-west-2%2Fs3%2Faws4_request"
            "&X-Amz-Date=20190322T010203Z&X-Amz-Expires=3600&X-Amz-SignedHeaders=host"
            f"&X-Amz-Signature={signature}"
        )


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


def _not_found() -> web.HTTPNotFound:
    return web.HTTPNotFound(text=json.dumps({"detail": "Not found."}), content_type="application/json")


def _s3_error(status: int, code: str) -> web.Response:
    return web.Response(status=status, text=f"<Error><Code>{code}</Code></Error>", content_type="application/xml")


def _visible(record: Mapping[str, Any], proposals: set[str]) -> bool:
    """Public frames to everyone; others only to members of their proposal."""
    public_date = _parse_date(record.get("public_date"))
    return (public_date is not None and public_date <= datetime.now(UTC)) or record.get("proposal_id") in proposals


def _matches_filters(record: Mapping[str, Any], query: Mapping[str, str]) -> bool:
    """Exact matches on record fields; ``start``/``end`` bound the observation date; unknown names are ignored."""
    for name, value in query.items():
        if name in _PAGINATION_PARAMETERS:
            continue
        if name == "basename_exact":
            if record.get("basename") != value:
                return False
        elif name in ("start", "end"):
            observed, bound = _parse_date(record.get("observation_date")), _parse_date(value)
            if observed is None or bound is None or (observed < bound if name == "start" else observed >= bound):
                return False
        elif name in record and (record[name] is None or str(record[name]) != value):
            return False
    return True


def _parse_date(value: Any) -> datetime | None:
    """An aware datetime from an ISO string (naive means UTC), or None."""
    if not isinstance(value, str) or not value:
        return None
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _sort_key(value: Any) -> tuple[bool, bool, Any]:
    is_number = isinstance(value, int | float)
    return value is None, not is_number, value if is_number else ("" if value is None else str(value))


def _basename_of(filename: str) -> str:
    return filename.removesuffix(_extension_of(filename))


def _extension_of(filename: str) -> str:
    return ".fits.fz" if filename.endswith(".fits.fz") else ".fits"
