"""Every failure reaches the client as JSON {"message": ...} with the right status, never a traceback."""

import logging

from aiohttp import web
from aiohttp.typedefs import Handler

from thumbproxy.errors import ThumbproxyError

log = logging.getLogger(__name__)


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    """A JSON error answer."""
    return web.json_response({"message": message}, status=status, headers=headers)


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn ThumbproxyError, aiohttp's HTTP errors and anything unexpected into JSON answers."""
    try:
        return await handler(request)
    except ThumbproxyError as error:
        return error_response(error.status, error.message, error.headers)
    except web.HTTPException as error:
        if error.status < 400:
            raise
        message = "Not found" if error.status == 404 else error.reason
        return error_response(error.status, message, {k: v for k, v in error.headers.items() if k == "Allow"})
    except Exception:
        log.exception("unexpected error answering %s %s", request.method, request.path)
        return error_response(500, "Internal error")
