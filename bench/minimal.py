"""The reference for hit-path throughput: the least an aiohttp server can do to send the same bytes.

python -m bench.minimal PORT FILE
"""

import sys
from pathlib import Path

from aiohttp import web


def minimal_app(body: bytes) -> web.Application:
    """An app answering every GET with body as a JPEG."""

    async def send(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="image/jpeg")

    app = web.Application()
    app.router.add_get("/{tail:.*}", send)
    return app


if __name__ == "__main__":
    port, path = int(sys.argv[1]), Path(sys.argv[2])
    web.run_app(minimal_app(path.read_bytes()), host="127.0.0.1", port=port, access_log=None, print=None)
