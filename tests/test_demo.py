"""`thumbproxy demo` starts from nothing, prints URLs that work, and stops cleanly."""

import io

import aiohttp
from PIL import Image

from conftest import Demo


async def test_demo_serves_its_sample_archive(demo: Demo) -> None:
    assert len(demo.urls) >= 4 and all(url.startswith(demo.base_url) for url in demo.urls)
    async with aiohttp.ClientSession() as session:
        for url in demo.urls:
            async with session.get(url) as response:
                assert response.status == 200, (url, await response.text())
                image = Image.open(io.BytesIO(await response.read()))
                assert image.format == "JPEG" and max(image.size) >= 100
        async with session.get(demo.urls[0].split("?")[0]) as response:
            body = await response.json()
            assert body["propid"] == "LOCAL" and body["url"].startswith(demo.base_url)
