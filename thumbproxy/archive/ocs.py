"""The archive client for an OCS Science Archive's HTTP API (see ARCHIVE_API.md)."""

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import aiohttp
from yarl import URL

from thumbproxy import tempfiles
from thumbproxy.archive.base import NOT_FOUND_MESSAGE, Frame, only_frame
from thumbproxy.archive.records import frame_from_record
from thumbproxy.archive.retry import NO_RETRIES, RetryPolicy, TransientArchiveError
from thumbproxy.errors import ThumbproxyError
from thumbproxy.metrics import Metrics

logger = logging.getLogger(__name__)
T = TypeVar("T")

PAGE_SIZE = 1000
TIMEOUT_MESSAGE = "Timeout while accessing resource"
# Bytes read from the network per chunk, and gathered before each write in a thread.
_CHUNK_BYTES = 64 * 1024
_WRITE_BATCH_BYTES = 1024 * 1024
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
    ) -> None:
        """`base_url` ends with '/'; `timeout` bounds each API call, `download_timeout` each FITS download.

        Calls are counted and timed in `metrics` (a registry of their own if none is given).
        Frame, list and download calls that fail to connect, are cut short or answer 502, 503 or
        504 are tried again as `retry_policy` allows (by default, not at all); timeouts are not.
        """
        self._session = session
        self._frames_url = URL(base_url) / "frames" / ""
        self._api_timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=connect_timeout)
        self._download_timeout = aiohttp.ClientTimeout(total=download_timeout, sock_connect=connect_timeout)
        self._tmp_dir = tmp_dir
        self._max_fits_bytes = max_fits_bytes
        self._metrics = metrics or Metrics()
        self._retry_policy = retry_policy

    async def frame(self, frame_id: int, authorization: str | None) -> Frame:
        """The frame with this id; ThumbproxyError(404) if missing or not visible to the caller."""
        record = await self._get_json("frame", self._frames_url / str(frame_id) / "", authorization)
        return frame_from_record(record)

    async def frame_by_basename(self, basename: str, authorization: str | None) -> Frame:
        """The one frame with this basename; ThumbproxyError(404) for none or several."""
        return only_frame(await self.frames({"basename_exact": basename}, authorization))

    async def frames(self, filters: Mapping[str, str], authorization: str | None) -> list[Frame]:
        """Every frame matching the archive's exact-match filters, all pages followed.

        A ``limit`` filter caps the number of frames returned (e.g. the newest one with
        ``ordering=-observation_date&limit=1``) instead of setting the page size.
        """
        query = dict(filters)
        wanted = int(query.pop("limit")) if "limit" in query else None
        query["limit"] = str(min(PAGE_SIZE, wanted) if wanted is not None else PAGE_SIZE)
        found: list[Frame] = []
        url: URL | None = self._frames_url.with_query(query)
        while url is not None and (wanted is None or len(found) < wanted):
            page = await self._get_json("list", url, authorization)
            results, next_url = _page_contents(page)
            found.extend(frame_from_record(record) for record in results)
            # Only the next page's query is taken: the caller's token never goes to another host.
            # An empty page ends the walk even if it names a next one, so a looping archive cannot trap us.
            url = self._frames_url.with_query(URL(next_url).query) if next_url and results else None
        return found if wanted is None else found[:wanted]

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

    async def reachable(self) -> bool:
        """Whether the archive API answers at all (any status below 500), asked anonymously and once.

        Not retried: readiness reports the archive as it is now.
        """
        try:
            async with self._observed("probe") as call, self._session.get(
                self._frames_url.with_query(limit="1"), timeout=self._api_timeout
            ) as response:
                call.status = str(response.status)
                return response.status < 500
        except (TimeoutError, aiohttp.ClientError):
            return False

    @asynccontextmanager
    async def _observed(self, operation: str) -> AsyncIterator["_Call"]:
        """Count and time one archive call by operation and outcome (HTTP status, timeout or error)."""
        call = _Call()
        started = time.perf_counter()
        try:
            yield call
        except TimeoutError:
            call.status = "timeout"
            raise
        finally:
            self._metrics.archive_requests.labels(operation=operation, status=call.status).inc()
            self._metrics.archive_request_duration.labels(operation=operation).observe(time.perf_counter() - started)

    async def _retried(self, operation: str, attempt: Callable[[], Awaitable[T]]) -> T:
        """`attempt()` under the retry policy, each retry counted by operation."""
        return await self._retry_policy.run(
            attempt, lambda: self._metrics.archive_retries.labels(operation=operation).inc()
        )

    async def _get_json(self, operation: str, url: URL, authorization: str | None) -> Any:
        """The decoded JSON body of a successful API GET, retried; archive failures become ThumbproxyError."""
        body = await self._retried(operation, lambda: self._get_body(operation, url, authorization))
        try:
            return json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError):
            logger.warning("archive API %s answered 200 with a body that is not JSON", url.path)
            raise ThumbproxyError(502, "The archive answered with something that is not JSON") from None

    async def _get_body(self, operation: str, url: URL, authorization: str | None) -> bytes:
        """The body of one successful API GET; archive failures become ThumbproxyError."""
        headers = {"Authorization": authorization} if authorization is not None else {}
        try:
            async with self._observed(operation) as call, self._session.get(
                url, headers=headers, timeout=self._api_timeout
            ) as response:
                call.status = str(response.status)
                if response.status != 200:
                    await _raise_for_api_status(response)
                return await response.read()
        except (TimeoutError, aiohttp.ClientError) as error:
            _raise_for_transport_error(error, "archive API", url)

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
            async with self._observed("download") as call, self._session.get(
                signed_url, timeout=self._download_timeout
            ) as response:
                call.status = str(response.status)
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
        handle = await asyncio.to_thread(tempfiles.create, path)
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
                    await asyncio.to_thread(handle.write, bytes(batch))
                    batch.clear()
            if batch:
                await asyncio.to_thread(handle.write, bytes(batch))
        finally:
            await asyncio.to_thread(handle.close)

    def _too_large(self) -> ThumbproxyError:
        return ThumbproxyError(413, f"FITS file larger than {self._max_fits_bytes / 2**20:.4g} MB")


class _Call:
    """The outcome of one archive call, as its metrics label it."""

    status = "error"


def _page_contents(page: Any) -> tuple[list[Any], str | None]:
    """The results and the next page's URL of a list response; 502 if it is not one."""
    if not isinstance(page, Mapping) or not isinstance(page.get("results"), list):
        raise ThumbproxyError(502, "The archive answered with a malformed list of frames")
    next_url = page.get("next")
    return page["results"], next_url if isinstance(next_url, str) else None


async def _raise_for_api_status(response: aiohttp.ClientResponse) -> NoReturn:
    """Map an archive API error status to the answer the client gets."""
    status = response.status
    if status == 404:
        raise ThumbproxyError(404, NOT_FOUND_MESSAGE)
    if status in (401, 403):
        detail = await _short_detail(response)
        message = "Got error response from the archive"
        raise ThumbproxyError(status, f"{message}: {detail}" if detail else message)
    if status == 429:
        retry_after = response.headers.get("Retry-After")
        headers = {"Retry-After": retry_after} if retry_after else None
        raise ThumbproxyError(429, "Too many requests to the archive", headers)
    logger.warning("archive API %s answered HTTP %d", response.url.path, status)
    if status >= 500:
        raise _failed(status, f"The archive failed (HTTP {status})")
    # Any other 4xx means this service or the archive is wrong, not the client.
    raise ThumbproxyError(502, f"The archive rejected the request (HTTP {status})")


def _failed(status: int, message: str) -> ThumbproxyError:
    """The 502 for an archive (or its file storage) that answered `status`: transient for 502, 503, 504."""
    failure = TransientArchiveError if status in _TRANSIENT_STATUSES else ThumbproxyError
    return failure(502, message)


async def _short_detail(response: aiohttp.ClientResponse) -> str | None:
    """The ``detail`` of a short JSON error body (Django REST framework's shape), else None."""
    body = bytearray()
    while len(body) <= _DETAIL_BYTES:
        chunk = await response.content.read(_DETAIL_BYTES + 1 - len(body))
        if not chunk:
            break
        body += chunk
    if len(body) > _DETAIL_BYTES:
        return None
    try:
        detail = json.loads(body).get("detail")
    except (UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        return None
    return detail if isinstance(detail, str) and len(detail) <= _DETAIL_CHARACTERS else None


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
