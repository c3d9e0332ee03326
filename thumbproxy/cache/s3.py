"""Level 2: thumbnails as objects in an S3 bucket, shared by every instance and handed out by URL."""

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Literal, NamedTuple, TypeVar

from botocore.exceptions import BotoCoreError, ClientError
from prometheus_client import Counter

from thumbproxy.ops.throttledlog import ThrottledWarning
from thumbproxy.render.formats import media_type

log = logging.getLogger(__name__)

T = TypeVar("T")
Result = Literal["ok", "miss", "error"]

# The key covers the frame version and every render option, so an object never changes once written.
CACHE_CONTROL = "public, max-age=31536000, immutable"
# HEAD answers a bare status, GET a NoSuchKey document; both mean "not stored".
_MISSING_CODES = frozenset({"404", "NoSuchKey"})


class S3Read(NamedTuple):
    """What a GET found: the thumbnail when result is "ok", else None."""

    thumbnail: bytes | None
    result: Result


class S3Cache:
    """Thumbnails in one bucket under `<prefix>/<frame id>/<digest>.<ext>`, over a client the app owns.

    Every method degrades instead of raising: an unreachable, slow or failing S3 reads as a miss and
    a failed write as False. Slowness is bounded by the client's own connect/read timeouts.
    """

    def __init__(
        self,
        client: Any,
        bucket: str,
        prefix: str,
        url_expiry: int,
        s3_requests: Counter,
        warn_interval: float = 60.0,
    ) -> None:
        self._client = client
        self._bucket = bucket
        self._prefix = prefix.strip("/")
        self._url_expiry = url_expiry
        self._s3_requests = s3_requests
        self._failure_warning = ThrottledWarning(log, warn_interval)

    def object_key(self, key: str) -> str:
        """The object key of thumbnail `key`: `<prefix>/<key>`, or the key itself without a prefix."""
        return f"{self._prefix}/{key}" if self._prefix else key

    async def read(self, key: str) -> S3Read:
        """GET the thumbnail, telling a missing object ("miss") from a failing S3 ("error")."""

        async def fetch() -> bytes:
            response = await self._client.get_object(Bucket=self._bucket, Key=self.object_key(key))
            async with response["Body"] as body:
                data: bytes = await body.read()
                return data

        result, thumbnail = await self._request("get", key, fetch)
        return S3Read(thumbnail, result)

    async def get(self, key: str) -> bytes | None:
        """The thumbnail under key, or None when it is missing or S3 fails."""
        return (await self.read(key)).thumbnail

    async def put(self, key: str, thumbnail: bytes) -> bool:
        """Store a thumbnail as an immutable object of its media type; False when S3 fails (never raises)."""

        async def upload() -> None:
            await self._client.put_object(
                Bucket=self._bucket,
                Key=self.object_key(key),
                Body=thumbnail,
                ContentType=media_type(key),
                CacheControl=CACHE_CONTROL,
            )

        result, _ = await self._request("put", key, upload)
        return result == "ok"

    async def contains(self, key: str) -> bool:
        """Whether the object exists (HEAD); False when it is missing or S3 fails."""

        async def head() -> None:
            await self._client.head_object(Bucket=self._bucket, Key=self.object_key(key))

        result, _ = await self._request("head", key, head)
        return result == "ok"

    async def url(self, key: str) -> str | None:
        """A SigV4 pre-signed GET URL for the object, valid `url_expiry` seconds; None if it cannot be signed.

        Signing is local: no request reaches S3, so this works while S3 is down (the URL may
        then fail for the browser, which is S3's availability, not ours). Without credentials
        it cannot sign, and the caller falls back to a URL of its own.
        """
        try:
            signed_url: str = await self._client.generate_presigned_url(
                "get_object",
                Params={"Bucket": self._bucket, "Key": self.object_key(key)},
                ExpiresIn=self._url_expiry,
            )
            return signed_url
        except BotoCoreError as error:
            self._failure_warning.warn("cannot sign S3 URLs: %s", error)
            return None

    async def reachable(self) -> bool:
        """Whether the bucket answers (HEAD bucket)."""

        async def head_bucket() -> None:
            await self._client.head_bucket(Bucket=self._bucket)

        result, _ = await self._request("head_bucket", "", head_bucket)
        return result == "ok"

    async def _request(self, operation: str, key: str, call: Callable[[], Awaitable[T]]) -> tuple[Result, T | None]:
        """Run one S3 call, count it by operation and result, and turn every failure into a result."""
        try:
            value = await call()
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in _MISSING_CODES:
                return self._counted(operation, "miss"), None
            self._failed(operation, key, error)
            return "error", None
        except Exception as error:
            # Refused connections, timeouts and broken streams alike must not reach the caller.
            self._failed(operation, key, error)
            return "error", None
        return self._counted(operation, "ok"), value

    def _counted(self, operation: str, result: Result) -> Result:
        self._s3_requests.labels(operation=operation, result=result).inc()
        return result

    def _failed(self, operation: str, key: str, error: Exception) -> None:
        self._counted(operation, "error")
        self._failure_warning.warn(
            "S3 %s of %s failed, serving without S3: %s: %s",
            operation,
            self.object_key(key),
            type(error).__name__,
            error,
        )
