"""An archive that answers too much, too deep, or forever: a 502 or a 504, never a 500, and no work left running."""

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import Service, ServiceFactory
from fakearchive import FakeArchive, Fault
from thumbproxy.archive.base import Frame
from thumbproxy.archive.ocs import OcsArchive
from thumbproxy.errors import ThumbproxyError
from thumbproxy.support.deadline import request_deadline


async def refusal(awaitable: object) -> ThumbproxyError:
    with pytest.raises(ThumbproxyError) as caught:
        await awaitable  # type: ignore[misc]
    return caught.value


@pytest.mark.parametrize("chunked", [False, True], ids=["declared", "chunked"])
async def test_an_answer_past_its_bound_is_a_502_and_read_no_further(
    start_service: ServiceFactory, fake_archive: FakeArchive, chunked: bool
) -> None:
    service = await start_service(THUMBPROXY_ARCHIVE_MAX_ANSWER_MB="1")
    record = json.dumps({"id": 1, "basename": "x", "padding": "x" * (3 * 2**20)}).encode()
    fake_archive.api_fault = Fault(body=record, chunked=chunked)
    fake_archive.add_frame(None, id=1)

    response = await service.get("/1/")

    assert response.status == 502
    assert "THUMBPROXY_ARCHIVE_MAX_ANSWER_MB" in (await response.json())["message"]


async def test_json_nested_past_the_decoders_depth_is_a_502(service: Service, fake_archive: FakeArchive) -> None:
    fake_archive.api_fault = Fault(body=b"[" * 200_000 + b"]" * 200_000)
    fake_archive.add_frame(None, id=1)

    response = await service.get("/1/?image=true")

    assert response.status == 502
    assert await response.json() == {"message": "The archive answered with something that is not JSON"}


async def test_a_list_that_never_ends_stops_at_the_request_deadline(
    make_archive: Callable[..., OcsArchive], fake_archive: FakeArchive, fits_path: Path
) -> None:
    full_page = {
        "count": 10**9,
        "next": f"{fake_archive.base_url}frames/?limit=1000&offset=1000",
        "previous": None,
        "results": [fake_archive.add_frame(fits_path, id=1, request_id=5)] * 1000,
    }
    fake_archive.api_fault = Fault(body=json.dumps(full_page).encode(), delay=0.2)
    archive = make_archive()
    listings: list[asyncio.Task[list[Frame]]] = []

    async def request() -> None:
        async with request_deadline(0.5):
            # As shared work runs: in a task of its own, carrying the deadline of the request that started it.
            listings.append(asyncio.create_task(archive.frames({"request_id": "5"}, None)))
            await asyncio.shield(listings[0])

    assert (await refusal(request())).status == 504
    # Nobody waits for the listing any more: it stops at the next page, and keeps nothing.
    assert (await refusal(listings[0])).status == 504
    asked = fake_archive.api_calls
    await asyncio.sleep(0.5)
    assert fake_archive.api_calls == asked <= 4
