"""A request's deadline: answered 504 when it passes, and visible to the work the request awaits.

Work shared between requests (a coalesced render, a shared download) runs in a task of its own
that carries the deadline of the request that started it; it is not cancelled when a waiter's
deadline passes, so it still fills the cache.
"""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar

from thumbproxy.errors import ThumbproxyError

# Event-loop time at which the current request is answered 504; None outside a request.
_DEADLINE: ContextVar[float | None] = ContextVar("request_deadline", default=None)


@asynccontextmanager
async def request_deadline(seconds: float) -> AsyncIterator[None]:
    """Run the block within `seconds`; past it, ThumbproxyError(504)."""
    token = _DEADLINE.set(asyncio.get_running_loop().time() + seconds)
    try:
        async with asyncio.timeout(seconds):
            yield
    except TimeoutError:
        raise ThumbproxyError(504, f"No answer within the request timeout of {seconds:g} s") from None
    finally:
        _DEADLINE.reset(token)


def seconds_left() -> float | None:
    """Seconds until the current request's deadline (negative once past), or None without one."""
    deadline = _DEADLINE.get()
    return None if deadline is None else deadline - asyncio.get_running_loop().time()
