"""A real caching proxy (Debian's nginx) in front of the service keeps what it may, for whom it may.

Requests go over HTTP to nginx, which proxies to the service, which asks the fake archive; the
service's metrics tell which requests reached it and how it answered them.
"""

import asyncio
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from multidict import CIMultiDictProxy

from conftest import Service, ServiceFactory
from nginx import CACHE_STATUS_HEADER, CachingProxy, nginx_executable
from thumbproxy.web.operations import METRICS

pytestmark = pytest.mark.skipif(
    nginx_executable() is None, reason="nginx is not installed (apt-get install nginx, or set NGINX)"
)

ALICE = {"Authorization": "Token alice"}
BOB = {"Authorization": "Token bob"}
MALLORY = {"Authorization": "Token mallory"}
CLOCK_MARGIN = 0.05


@dataclass(frozen=True)
class Answer:
    """What a client got through nginx."""

    status: int
    headers: CIMultiDictProxy[str]
    body: bytes

    @property
    def cache_status(self) -> str | None:
        """nginx's $upstream_cache_status: MISS, HIT, EXPIRED, REVALIDATED, ..."""
        return self.headers.get(CACHE_STATUS_HEADER)


class Proxied:
    """The service with nginx in front: ask through nginx, count what reached the service."""

    def __init__(self, service: Service, proxy: CachingProxy, session: aiohttp.ClientSession) -> None:
        self.service = service
        self.proxy = proxy
        self._session = session

    async def get(self, path: str, headers: dict[str, str] | None = None) -> Answer:
        """GET `path` through nginx."""
        async with self._session.get(self.proxy.base_url + path, headers=headers) as response:
            return Answer(response.status, response.headers, await response.read())

    def answered(self, status: int | None = None) -> int:
        """How many requests the service answered (with this status), by its thumbproxy_requests_total."""
        return int(
            sum(
                sample.value
                for family in self.service.app[METRICS].registry.collect()
                for sample in family.samples
                if sample.name == "thumbproxy_requests_total"
                and (status is None or sample.labels["status"] == str(status))
            )
        )


ProxiedFactory = Callable[..., Awaitable[Proxied]]


@pytest.fixture
async def behind_nginx(start_service: ServiceFactory, tmp_path: Path) -> AsyncIterator[ProxiedFactory]:
    """Start the service (keyword arguments are its environment settings) with nginx in front of it."""
    proxies: list[CachingProxy] = []
    async with aiohttp.ClientSession() as session:

        async def start(**env: str) -> Proxied:
            service = await start_service(**env)
            proxy = CachingProxy(service.client.server.port, tmp_path / f"nginx-{len(proxies)}")
            proxies.append(proxy)
            proxy.start()
            return Proxied(service, proxy, session)

        yield start
    for proxy in proxies:
        proxy.stop()


async def until_stale(fresh_for: int) -> None:
    """Sleep until nginx regards an answer received just now with max-age `fresh_for` as stale.

    nginx counts whole seconds and keeps an answer while its expiry is not before now.
    """
    expires = math.floor(time.time()) + fresh_for
    # The margin covers the event loop's clock waking a hair before the wall clock's second turns.
    await asyncio.sleep(expires + 1 - time.time() + CLOCK_MARGIN)


async def test_a_public_thumbnail_is_a_hit_the_second_time_and_never_reaches_the_service(
    behind_nginx: ProxiedFactory, frame: dict
) -> None:
    proxied = await behind_nginx()
    for path in (f"/{frame['id']}/?image=true", f"/{frame['basename']}/?image=true"):
        answered = proxied.answered()
        first = await proxied.get(path)
        assert first.status == 200 and first.cache_status == "MISS", proxied.proxy.logs()
        assert first.headers["Content-Type"] == "image/jpeg"
        assert proxied.answered() == answered + 1
        second = await proxied.get(path)
        assert second.status == 200 and second.cache_status == "HIT"
        assert second.body == first.body and second.headers["ETag"] == first.headers["ETag"]
        assert proxied.answered() == answered + 1


async def test_a_proprietary_thumbnail_is_never_served_from_the_proxy_cache(
    behind_nginx: ProxiedFactory, secret: dict
) -> None:
    proxied = await behind_nginx()
    path = f"/{secret['id']}/?image=true"
    alices = await proxied.get(path, ALICE)
    assert alices.status == 200 and alices.headers["Content-Type"] == "image/jpeg"
    # Anonymous and bob: not found; mallory: the archive does not know the token.
    for headers, status in ((None, 404), (BOB, 404), (MALLORY, 401)):
        refused = await proxied.get(path, headers)
        assert refused.status == status, refused.body
        assert refused.body != alices.body and refused.cache_status != "HIT"
    # Alice again, twice: each request reaches the service, which decides who may see the frame.
    for _ in range(2):
        again = await proxied.get(path, ALICE)
        assert again.status == 200 and again.body == alices.body and again.cache_status != "HIT"
    assert proxied.answered(200) == 3 and proxied.answered(404) == 2 and proxied.answered(401) == 1


async def test_a_stale_thumbnail_is_revalidated_with_a_304(behind_nginx: ProxiedFactory, frame: dict) -> None:
    proxied = await behind_nginx(THUMBPROXY_MAX_AGE="1")
    path = f"/{frame['id']}/?image=true"
    first = await proxied.get(path)
    assert first.status == 200 and first.cache_status == "MISS"
    await until_stale(fresh_for=1)
    revalidated = await proxied.get(path)
    assert revalidated.status == 200 and revalidated.cache_status == "REVALIDATED"
    assert revalidated.body == first.body and revalidated.headers["ETag"] == first.headers["ETag"]
    # nginx asked with If-None-Match, and the service sent no image the second time.
    assert proxied.answered(200) == 1 and proxied.answered(304) == 1
    # A client's own validator: nginx answers from what it holds, or revalidates it first.
    conditional = await proxied.get(path, {"If-None-Match": first.headers["ETag"]})
    assert conditional.status == 304 and conditional.body == b""
    assert conditional.headers["ETag"] == first.headers["ETag"]
    assert proxied.answered(200) == 1


async def test_a_client_validator_for_an_image_the_proxy_lacks_gets_a_304(
    behind_nginx: ProxiedFactory, frame: dict
) -> None:
    proxied = await behind_nginx()
    path = f"/{frame['id']}/?image=true&width=120"
    # The browser holds the image from before nginx was put in front of the service.
    direct = await proxied.service.get(path)
    tag = direct.headers["ETag"]
    for cache_status in ("MISS", "HIT"):
        conditional = await proxied.get(path, {"If-None-Match": tag})
        assert conditional.status == 304 and conditional.body == b"" and conditional.cache_status == cache_status
    # On the miss nginx fetched the whole image to keep it, and then answered the client's validator itself.
    assert proxied.answered() == 2


async def test_an_anonymous_404_is_kept_briefly_and_does_not_hide_the_frame_from_its_owner(
    behind_nginx: ProxiedFactory, secret: dict
) -> None:
    proxied = await behind_nginx(THUMBPROXY_ERROR_MAX_AGE="1")
    path = f"/{secret['id']}/?image=true"
    refused = await proxied.get(path)
    assert refused.status == 404 and refused.cache_status == "MISS"
    # A storm of anonymous requests for it costs the service one answer while it is fresh.
    again = await proxied.get(path)
    assert again.status == 404 and again.cache_status == "HIT"
    alices = await proxied.get(path, ALICE)
    assert alices.status == 200 and alices.headers["Content-Type"] == "image/jpeg"
    assert proxied.answered(404) == 1
    await until_stale(fresh_for=1)
    expired = await proxied.get(path)
    assert expired.status == 404 and expired.cache_status == "EXPIRED"
    assert proxied.answered(404) == 2
