"""The archive client for an OCS Science Archive's HTTP API (what it relies on: docs/archive-api.md)."""

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, NamedTuple, NoReturn, TypeVar

import aiohttp
from yarl import URL

from thumbproxy.archive import tempfiles
from thumbproxy.archive.base import NOT_FOUND_MESSAGE, Frame, TokenCallFailed, only_frame
from thumbproxy.archive.health import ArchiveHealth, Outcome, retry_after_seconds
from thumbproxy.archive.records import frame_from_record
from thumbproxy.archive.retry import NO_RETRIES, RetryPolicy, TransientArchiveError
from thumbproxy.errors import ThumbproxyError
from thumbproxy.ops.metrics import Metrics
from thumbproxy.ops.throttledlog import ThrottledWarning
from thumbproxy.support.deadline import seconds_left

logger = logging.getLogger(__name__)
T = TypeVar("T")

# The archive's largest page (PAGINATION_MAX_LIMIT).
PAGE_SIZE = 1000
# 10,000 frames: far more than an observing request holds.
MAX_PAGES = 10
# The newest first; the id breaks ties, so every replica finds the same frame.
NEWEST_FIRST = "-observation_date,-id"
# Pages of the service token's newest frames looked through for a public one.
NEWEST_PAGE_SIZE = 100
NEWEST_PAGES = 3
TIMEOUT_MESSAGE = "Timeout while accessing resource"
# Bytes read from the network per chunk, and gathered before each write in a thread.
_CHUNK_BYTES = 64 * 1024
_WRITE_BATCH_BYTES = 1024 * 1024
# An unwritable TMP_DIR is worth a warning a minute, not one per request; clients may try again after it.
UNWRITABLE_WARNING_INTERVAL = 60.0
UNWRITABLE_RETRY_AFTER_SECONDS = 60
# Larger answers are decoded in a thread: a few megabytes of JSON would hold the event loop for milliseconds.
_PARSE_IN_THREAD_BYTES = 256 * 1024
# An archive error body longer than this is not a short detail worth showing a client.
_DETAIL_BYTES = 2048
_DETAIL_CHARACTERS = 200
# Statuses of a proxy or server in front of the archive (or of its file storage) that usually pass.
_TRANSIENT_STATUSES = frozenset({502, 503, 504})


class OcsArchive:
    """Frames and FITS files from an OCS Science Archive, as the calling client may see them."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        connect_timeout: float,
        timeout: float,
        download_timeout: float,
        tmp_dir: Path,
        max_fits_bytes: int,
        metrics: Metrics | None = None,
        retry_policy: RetryPolicy = NO_RETRIES,
        service_token: str = "",
        health: ArchiveHealth | None = None,
        max_answer_bytes: int = 16 * 2**20,
    ) -> None:
        """`base_url` ends with '/'; `timeout` bounds each API call, `download_timeout` each FITS download.

        Calls are counted and timed in `metrics` (a registry of their own if none is given), and their
        outcomes told to `health`. Frame, list and download calls that fail to connect, are cut short or
        answer 502, 503 or 504 are tried again as `retry_policy` allows (by default, not at all); timeouts
        are not. With a `service_token`, calls made for anonymous callers carry it instead of nothing
        (the service's own quota rather than the anonymous one of its address), and only public
        frames of their answers are taken. An API answer larger than `max_answer_bytes` is a 502.
        """
        self._session = session
        self._frames_url = URL(base_url) / "frames" / ""
        self._api_timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=connect_timeout)
        self._download_timeout = aiohttp.ClientTimeout(total=download_timeout, sock_connect=connect_timeout)
        self._tmp_dir = tmp_dir
        self._max_fits_bytes = max_fits_bytes
        self._metrics = metrics or Metrics()
        self._retry_policy = retry_policy
        self._service_authorization = service_authorization(service_token)
        self._health = health or ArchiveHealth()
        self._max_answer_bytes = max_answer_bytes
        self._unwritable_warning = ThrottledWarning(logger, UNWRITABLE_WARNING_INTERVAL)

    async def frame(self, frame_id: int, authorization: str | None) -> Frame:
        """The frame with this id; ThumbproxyError(404) if missing, not visible to the caller, or without a file."""
        view = self._view_of(authorization)
        frame = frame_from_record(await self._get_json("frame", self._frames_url / str(frame_id) / "", view))
        if not view.may_answer(frame):
            raise ThumbproxyError(404, NOT_FOUND_MESSAGE)
        return frame

    async def frame_by_basename(self, basename: str, authorization: str | None) -> Frame:
        """The one frame with this basename; ThumbproxyError(404) for none or several."""
        return only_frame(await self.frames({"basename_exact": basename}, authorization))

    async def frames(self, filters: Mapping[str, str], authorization: str | None) -> list[Frame]:
        """Every frame matching these filters that the caller may see, read page by page, at most MAX_PAGES."""
        view = self._view_of(authorization)
        found: list[Frame] = []
        offset = 0
        for _ in range(MAX_PAGES):
            page, last = await self._list_page(filters, PAGE_SIZE, offset, view)
            found.extend(frame for frame in page if view.may_answer(frame))
            if last:
                return found
            offset += len(page)
        logger.warning("archive list by %s stopped after %d pages", ", ".join(sorted(filters)), MAX_PAGES)
        return found

    async def newest(self, filters: Mapping[str, str], authorization: str | None) -> Frame | None:
        """The newest frame (by observation date, then id) matching a caller's filters that the caller may see.

        A caller's own view lists only what it may see, so its first frame is the answer. The service
        token's view may list proprietary frames first; past NEWEST_PAGES pages of them, the anonymous
        view (exactly the public frames) is asked for its first one.
        """
        query = {**filters, "ordering": NEWEST_FIRST}
        view = self._view_of(authorization)
        if not view.public_only:
            return await self._first(query, view)
        offset = 0
        for _ in range(NEWEST_PAGES):
            page, last = await self._list_page(query, NEWEST_PAGE_SIZE, offset, view, callers_query=True)
            public = [frame for frame in page if view.may_answer(frame)]
            if public:
                return public[0]
            if last:
                return None
            offset += len(page)
        return await self._first(query, ANONYMOUS_VIEW)

    async def probe(self) -> Outcome:
        """One list call of one frame, with the service's credentials: how the archive answers now. Not retried."""
        call = _Call()
        try:
            async with (
                self._observed("probe", call),
                self._session.get(
                    self._frames_url.with_query(limit="1"),
                    headers=self._view_of(None).headers,
                    timeout=self._api_timeout,
                ) as response,
            ):
                call.answered(response)
        except (TimeoutError, aiohttp.ClientError):
            pass
        return Outcome(call.status, call.retry_after)

    @asynccontextmanager
    async def fits_file(self, frame: Frame) -> AsyncIterator[Path]:
        """The frame's FITS file downloaded to TMP_DIR; the file is removed when the context ends."""
        if not frame.url:
            raise ThumbproxyError(404, f"Frame {frame.id} has no file in the archive")
        path = tempfiles.temp_path(self._tmp_dir, frame.filename or f"{frame.basename}.fits")
        try:
            await self._download(frame.url, path)
            yield path
        finally:
            # Shielded: a cancelled caller must not leave the file behind.
            await asyncio.shield(asyncio.to_thread(tempfiles.remove, path))

    @asynccontextmanager
    async def _observed(self, operation: str, call: "_Call", view: "_View | None" = None) -> AsyncIterator[None]:
        """Count and time one archive call by operation and outcome (HTTP status, timeout or error), and tell
        the archive's health how an API call made in `view` ended, unless its caller gave up on it."""
        started = time.perf_counter()
        try:
            yield
        except TimeoutError:
            call.status = "timeout"
            raise
        except asyncio.CancelledError:
            view = None
            raise
        finally:
            self._metrics.archive_requests.labels(operation=operation, status=call.status).inc()
            self._metrics.archive_request_duration.labels(operation=operation).observe(time.perf_counter() - started)
            if view is not None:
                self._health.record(Outcome(call.status, call.retry_after, view.shared))

    async def _first(self, query: Mapping[str, str], view: "_View") -> Frame | None:
        """The first frame a list of a caller's filters answers in this view, asked for alone."""
        page, _ = await self._list_page(query, 1, 0, view, callers_query=True)
        return page[0] if page else None

    async def _list_page(
        self, filters: Mapping[str, str], limit: int, offset: int, view: "_View", callers_query: bool = False
    ) -> tuple[list[Frame], bool]:
        """The frames of one page of a list, and whether it is the last (see `_page_contents`).

        Past the deadline of the request that asked, 504: a list read for a request that has been answered
        already (shared work goes on in a task of its own) is read no further.
        """
        left = seconds_left()
        if left is not None and left <= 0:
            raise ThumbproxyError(504, TIMEOUT_MESSAGE)
        query = {**filters, "limit": str(limit), "offset": str(offset)}
        page = await self._get_json("list", self._frames_url.with_query(query), view, callers_query)
        results, last = _page_contents(page, limit)
        return [frame_from_record(record) for record in results], last

    def _view_of(self, authorization: str | None) -> "_View":
        """Whose view of the archive a call for this caller asks for, and with which header."""
        if authorization is not None:
            return _View(authorization, public_only=False, shared=False)
        if self._service_authorization is None:
            return ANONYMOUS_VIEW
        return _View(self._service_authorization, public_only=True, shared=True)

    async def _retried(self, operation: str, attempt: Callable[[], Awaitable[T]]) -> T:
        """`attempt()` under the retry policy, each retry counted by operation."""
        return await self._retry_policy.run(
            attempt, lambda: self._metrics.archive_retries.labels(operation=operation).inc()
        )

    async def _get_json(self, operation: str, url: URL, view: "_View", callers_query: bool = False) -> Any:
        """The decoded JSON body of a successful API GET, retried; archive failures become ThumbproxyError.

        `callers_query`: the query holds a caller's filters, so the archive refusing them (400) is the caller's to hear.
        """
        try:
            body = await self._retried(operation, lambda: self._get_body(operation, url, view, callers_query))
        except TokenCallFailed:
            if not view.public_only:
                raise
            # The service token failed as tokens do while the archive's portal is down; the anonymous view
            # answers the same public frames.
            self._metrics.archive_public_fallbacks.inc()
            body = await self._retried(operation, lambda: self._get_body(operation, url, ANONYMOUS_VIEW, callers_query))
        try:
            if len(body) > _PARSE_IN_THREAD_BYTES:
                return await asyncio.to_thread(json.loads, body)
            return json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            # RecursionError: JSON nested deeper than the decoder goes.
            logger.warning("archive API %s answered 200 with a body that is not JSON this service can read", url.path)
            raise ThumbproxyError(502, "The archive answered with something that is not JSON") from None

    async def _get_body(self, operation: str, url: URL, view: "_View", callers_query: bool) -> bytes:
        """The body of one successful API GET; archive failures become ThumbproxyError."""
        call = _Call()
        try:
            async with (
                self._observed(operation, call, view),
                self._session.get(url, headers=view.headers, timeout=self._api_timeout) as response,
            ):
                call.answered(response)
                if response.status != 200:
                    await _raise_for_api_status(response, view, callers_query)
                return await self._read_answer(response)
        except (TimeoutError, aiohttp.ClientError) as error:
            _raise_for_transport_error(error, "archive API", url)

    async def _read_answer(self, response: aiohttp.ClientResponse) -> bytes:
        """The body of an API answer; 502 past `max_answer_bytes`, read no further."""
        too_large = ThumbproxyError(
            502,
            f"The archive answered with more than "
            f"{self._max_answer_bytes / 2**20:.4g} MB (THUMBPROXY_ARCHIVE_MAX_ANSWER_MB)",
        )
        if response.content_length is not None and response.content_length > self._max_answer_bytes:
            raise too_large
        body = bytearray()
        async for chunk in response.content.iter_chunked(_CHUNK_BYTES):
            body += chunk
            if len(body) > self._max_answer_bytes:
                raise too_large
        return bytes(body)

    async def _download(self, url: str, path: Path) -> None:
        """Stream a pre-signed URL to `path`, retried, refusing files larger than the configured maximum."""
        # encoded=True: re-quoting would break the URL's signature.
        signed_url = URL(url, encoded=True)

        async def attempt() -> None:
            try:
                await self._download_once(signed_url, path)
            except TransientArchiveError:
                # The next attempt creates the file anew, and none may be left if there is no next one.
                await asyncio.to_thread(tempfiles.remove, path)
                raise

        await self._retried("download", attempt)

    async def _download_once(self, signed_url: URL, path: Path) -> None:
        """One attempt at streaming a pre-signed URL to a new file at `path`."""
        try:
            # No Authorization: the URL carries its own, and the caller's token must not leave the API.
            call = _Call()
            async with (
                self._observed("download", call),
                self._session.get(signed_url, timeout=self._download_timeout) as response,
            ):
                call.answered(response)
                if response.status != 200:
                    logger.warning("FITS download from %s failed with HTTP %d", signed_url.host, response.status)
                    raise _failed(response.status, f"The archive's file storage failed (HTTP {response.status})")
                if response.content_length is not None and response.content_length > self._max_fits_bytes:
                    raise self._too_large()
                await self._stream_to_file(response, path)
        except (TimeoutError, aiohttp.ClientError) as error:
            _raise_for_transport_error(error, "file storage", signed_url)

    async def _stream_to_file(self, response: aiohttp.ClientResponse, path: Path) -> None:
        """Write the response body to a new file at `path`, counting bytes against the maximum."""
        handle = await self._in_tmp_dir(tempfiles.create, path)
        try:
            received = 0
            batch = bytearray()
            async for chunk in response.content.iter_chunked(_CHUNK_BYTES):
                received += len(chunk)
                if received > self._max_fits_bytes:
                    raise self._too_large()
                batch += chunk
                self._metrics.download_bytes.inc(len(chunk))
                if len(batch) >= _WRITE_BATCH_BYTES:
                    await self._in_tmp_dir(handle.write, bytes(batch))
                    batch.clear()
            if batch:
                await self._in_tmp_dir(handle.write, bytes(batch))
        finally:
            await self._in_tmp_dir(handle.close)

    async def _in_tmp_dir(self, operation: Callable[..., T], *args: Any) -> T:
        """operation(*args), a file operation in TMP_DIR, in a thread; 503 naming TMP_DIR when it fails there
        (missing and not creatable, read-only, full)."""
        try:
            return await asyncio.to_thread(operation, *args)
        except OSError as error:
            self._unwritable_warning.warn("cannot write downloaded frames to TMP_DIR %s: %s", self._tmp_dir, error)
            raise ThumbproxyError(
                503,
                f"The service cannot write downloaded frames to its TMP_DIR "
                f"({error.strerror or type(error).__name__}); please retry later",
                {"Retry-After": str(UNWRITABLE_RETRY_AFTER_SECONDS)},
            ) from None

    def _too_large(self) -> ThumbproxyError:
        return ThumbproxyError(413, f"FITS file larger than {self._max_fits_bytes / 2**20:.4g} MB")


class _Call:
    """The outcome of one archive call, as its metrics label it and its health counts it."""

    status = "error"
    retry_after: float | None = None

    def answered(self, response: aiohttp.ClientResponse) -> None:
        """Take the status (and a 429's Retry-After) of the archive's answer."""
        self.status = str(response.status)
        if response.status == 429:
            self.retry_after = retry_after_seconds(response.headers.get("Retry-After"))


class _View(NamedTuple):
    """Whose view of the archive a call asks for."""

    # The Authorization header sent; None: anonymous.
    authorization: str | None
    # The service token's view asked for an anonymous caller: only public frames of it may be answered.
    public_only: bool
    # Whether the call spends the service's own quota (anonymous or service token) rather than a caller's.
    shared: bool

    @property
    def headers(self) -> dict[str, str]:
        return {} if self.authorization is None else {"Authorization": self.authorization}

    def may_answer(self, frame: Frame) -> bool:
        """Whether the caller this view was asked for may be answered this frame: one with a file (the archive's
        lists leave out a frame with no file version, but answers it by id) that the caller may see."""
        return frame.url is not None and (frame.is_public() or not self.public_only)


ANONYMOUS_VIEW = _View(None, public_only=False, shared=True)


def service_authorization(token: str) -> str | None:
    """The Authorization header of the service's own calls: `token` as ``Token <token>``, or as given when it
    names its scheme (``Token ...``, ``Bearer ...``); None without a token."""
    token = token.strip()
    if not token:
        return None
    return token if token.split(" ", 1)[0] in ("Token", "Bearer") else f"Token {token}"


def _page_contents(page: Any, asked: int) -> tuple[list[Any], bool]:
    """The results of a list response, and whether it is the last page of its list; 502 if it is not a list.

    Neither ``count`` (outside a few filters, the database's estimate) nor the ``next`` link made from it
    says whether more pages exist; the page itself does: an empty one is the last, and so is one
    shorter than the archive serves, known from the ``limit`` its links name (the archive serves at
    most its own maximum) or, when its count is exact (``count_estimated`` false), the one asked. A
    short page of an estimated count whose links name no limit may be cut by a smaller maximum: not
    the last, and the next page, empty or not, says.
    """
    if not isinstance(page, Mapping) or not isinstance(page.get("results"), list):
        raise ThumbproxyError(502, "The archive answered with a malformed list of frames")
    results = page["results"]
    served = [
        int(limit)
        for link in (page.get("next"), page.get("previous"))
        if isinstance(link, str)
        if (limit := URL(link).query.get("limit", "")).isdigit() and int(limit) > 0
    ]
    if served:
        return results, len(results) < min(served)
    exact = page.get("count_estimated") is False
    return results, not results or (exact and len(results) < asked)


async def _raise_for_api_status(response: aiohttp.ClientResponse, view: _View, callers_query: bool) -> NoReturn:
    """Map an archive API error status to the answer the client gets."""
    status = response.status
    if status == 404:
        raise ThumbproxyError(404, NOT_FOUND_MESSAGE)
    if status == 400 and callers_query:
        errors = _field_messages(await _short_json(response))
        listed = "; ".join(f"{field}: {' '.join(messages)}" for field, messages in errors.items())
        raise ThumbproxyError(
            400,
            f"The archive refused these filters: {listed}" if listed else "The archive refused these filters",
            errors=errors,
        )
    if status in (401, 403):
        detail = _detail(await _short_json(response))
        message = "Got error response from the archive"
        raise ThumbproxyError(status, f"{message}: {detail}" if detail else message)
    if status == 429:
        retry_after = response.headers.get("Retry-After")
        headers = {"Retry-After": retry_after} if retry_after else None
        raise ThumbproxyError(429, "Too many requests to the archive", headers)
    logger.warning("archive API %s answered HTTP %d", response.url.path, status)
    if status == 500 and view.authorization is not None:
        raise TokenCallFailed(502, "The archive failed (HTTP 500)")
    if status >= 500:
        raise _failed(status, f"The archive failed (HTTP {status})")
    # Any other 4xx means this service or the archive is wrong, not the client.
    raise ThumbproxyError(502, f"The archive rejected the request (HTTP {status})")


def _failed(status: int, message: str) -> ThumbproxyError:
    """The 502 for an archive (or its file storage) that answered `status`: transient for 502, 503, 504."""
    failure = TransientArchiveError if status in _TRANSIENT_STATUSES else ThumbproxyError
    return failure(502, message)


async def _short_json(response: aiohttp.ClientResponse) -> Any:
    """The decoded JSON of a short error body (Django REST framework's shape), else None."""
    body = bytearray()
    while len(body) <= _DETAIL_BYTES:
        chunk = await response.content.read(_DETAIL_BYTES + 1 - len(body))
        if not chunk:
            break
        body += chunk
    if len(body) > _DETAIL_BYTES:
        return None
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None


def _detail(error_body: Any) -> str | None:
    """The short ``detail`` of an error body, else None."""
    detail = error_body.get("detail") if isinstance(error_body, Mapping) else None
    return detail if isinstance(detail, str) and len(detail) <= _DETAIL_CHARACTERS else None


def _field_messages(error_body: Any) -> dict[str, list[str]]:
    """The short messages per field of a validation error body: ``{"start": ["Enter a valid date/time."]}``, or a
    list of messages not tied to one field (``["Error with covers query: ..."]``), kept under "filters"."""
    by_field = error_body if isinstance(error_body, Mapping) else {"filters": error_body}
    errors: dict[str, list[str]] = {}
    for field, messages in by_field.items():
        listed = messages if isinstance(messages, list) else [messages]
        kept = [message for message in listed if isinstance(message, str) and len(message) <= _DETAIL_CHARACTERS]
        if isinstance(field, str) and len(field) <= _DETAIL_CHARACTERS and kept:
            errors[field] = kept
    return errors


def _raise_for_transport_error(error: BaseException, what: str, url: URL) -> NoReturn:
    """Map a timeout or connection failure talking to `what` to 504 or 502, without internal URLs.

    A timeout is final: the attempt already used its whole time, and trying again would double
    the wait and the load on a struggling archive. A refused, reset or dropped connection is
    transient.
    """
    if isinstance(error, TimeoutError):
        logger.warning("timeout talking to the %s at %s", what, url.host)
        raise ThumbproxyError(504, TIMEOUT_MESSAGE) from None
    logger.warning("failed talking to the %s at %s: %s", what, url.host, type(error).__name__)
    dropped = isinstance(error, aiohttp.ClientConnectionError | aiohttp.ClientPayloadError)
    failure = TransientArchiveError if dropped else ThumbproxyError
    if isinstance(error, aiohttp.ClientPayloadError):
        raise failure(502, f"The {what} failed: its answer was cut short") from None
    raise failure(502, f"The {what} failed to answer") from None
