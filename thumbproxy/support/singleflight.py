"""Coalescing concurrent identical work: callers asking for the same key share one run."""

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class SingleFlight(Generic[K, V]):
    """At most one run of the work per key at a time; every caller of that key gets its outcome.

    The work runs in a task of its own, so a caller that is cancelled (a client hanging up)
    leaves it running: it still finishes, e.g. to fill a cache. Nothing is remembered once a
    run ends, successful or not: the next call for the key starts a new run.
    """

    def __init__(self) -> None:
        # The runs under way; holding the tasks here also keeps them from being garbage-collected.
        self._runs: dict[K, asyncio.Task[V]] = {}

    async def run(self, key: K, work: Callable[[], Awaitable[V]]) -> tuple[V, bool]:
        """The outcome of `work` for `key`, and whether this call joined a run already under way.

        Every caller of a run gets the same result or the same exception.
        """
        task = self._runs.get(key)
        # A run that has ended but is not yet forgotten is not joined: a failure must not be reused.
        joined = task is not None and not task.done()
        if task is None or not joined:
            task = asyncio.create_task(_call(work))
            self._runs[key] = task
            task.add_done_callback(lambda done: self._finished(key, done))
        return await asyncio.shield(task), joined

    async def close(self, timeout: float = 5.0) -> None:
        """Cancel the runs still under way and wait up to `timeout` seconds for them to end."""
        tasks = list(self._runs.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)

    def _finished(self, key: K, task: asyncio.Task[V]) -> None:
        """Forget an ended run and mark its exception as retrieved, even if every caller left."""
        if self._runs.get(key) is task:
            del self._runs[key]
        if not task.cancelled():
            task.exception()


async def _call(work: Callable[[], Awaitable[V]]) -> V:
    """Await `work()` inside the task, so even an error raised when calling it reaches the callers."""
    return await work()
