"""The process pool that renders: CPU work never runs on the event loop."""

import asyncio
import gc
import logging
import math
import multiprocessing
import os
import resource
import select
import signal
import threading
from collections.abc import Callable, Hashable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from thumbproxy.render.errors import RenderError
from thumbproxy.support.lrumap import LruMap
from thumbproxy.workers.allocator import keep_freed_memory, release_freed_memory

log = logging.getLogger(__name__)

T = TypeVar("T")

# Subjects of jobs (frame versions) whose last worker the pool remembers.
REMEMBERED_SUBJECTS = 4096


def _start_worker(prepare: Callable[[], object] | None, server_pid: int, memory_bytes: int | None) -> None:
    # Ctrl-C reaches the whole process group; the server shuts the pool down, workers need not react.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_when_gone, args=(server_pid,), name="server-watch", daemon=True).start()
    keep_freed_memory()
    _warm_up()
    if prepare is not None:
        prepare()
    # What the forkserver imported is shared with it until written: a full collection marking every
    # object would copy thousands of its pages into this worker during some render; frozen, none is.
    gc.freeze()
    if memory_bytes is not None:
        _limit_memory(memory_bytes)


def _limit_memory(render_bytes: int) -> None:
    """Cap this worker's address space at what it maps now plus render_bytes: past it allocations raise
    MemoryError in this worker, where a render is answered 422, instead of the machine running out."""
    with open("/proc/self/statm") as statm:
        mapped = int(statm.read().split()[0]) * resource.getpagesize()
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    ceiling = mapped + render_bytes
    if hard != resource.RLIM_INFINITY:
        ceiling = min(ceiling, hard)
    resource.setrlimit(resource.RLIMIT_AS, (ceiling, hard))


def _exit_when_gone(server_pid: int) -> None:
    """In a worker: end the process once the server is gone (killed, or crashed without shutting the pool
    down). A worker's parent is the forkserver, so it gets no signal of its own when the server dies."""
    try:
        # Readable once that very process has exited: no polling, and no mistaking a reused pid for it.
        server = os.pidfd_open(server_pid)
    except ProcessLookupError:
        os._exit(0)
    select.select([server], [], [])
    os._exit(0)


class _CpuTimeSpent(BaseException):
    """Raised in a worker's job when its CPU time runs out; not an Exception, so that no reader's handler of
    damaged data takes it for damage."""


def _bounded(cpu_seconds: float, function: Callable[..., T], *args: Any) -> T:
    """In a worker: function(*args); RenderError when it has used cpu_seconds of CPU time (inf: no bound)
    or more memory than the worker's ceiling, after giving back what it held.

    The profiling timer counts this process's CPU time; its signal interrupts Python code between two
    steps, so a job stops at the latest when the C call it is in (one tile's decompression) returns.
    """

    def stop(signum: int, frame: object) -> None:
        raise _CpuTimeSpent

    timed = not math.isinf(cpu_seconds)
    if timed:
        previous = signal.signal(signal.SIGPROF, stop)
        signal.setitimer(signal.ITIMER_PROF, cpu_seconds)
    try:
        return function(*args)
    except _CpuTimeSpent:
        reason = f"too slow to render: more than {cpu_seconds:g} s of CPU time (THUMBPROXY_RENDER_CPU_SECONDS)"
    except MemoryError:
        reason = "too large to render: it needs more memory than a render may take (THUMBPROXY_RENDER_MEMORY_MB)"
    finally:
        if timed:
            signal.setitimer(signal.ITIMER_PROF, 0)
            signal.signal(signal.SIGPROF, previous)
    # Past the except clauses the failed job's frames, and the arrays they held, are gone: give their memory back.
    release_freed_memory()
    raise RenderError("", reason)


def _warm_up() -> None:
    # Importing the renderer in each worker moves astropy's import cost out of the first request.
    import thumbproxy.render  # noqa: F401


class RenderPool:
    """Worker processes, each an executor of its own, that are replaced when they die.

    A job about something (a frame version) can name it: it runs on the worker that last ran a job about
    the same thing when that worker is free, where what it made or read for that job is still in memory.

    A worker that dies (a segfault in a decoder, the OOM killer) takes only its own job with it. That job
    is run once more, alone, in a worker kept apart for it: the job that kills that worker too is the
    cause, and raises RenderError; otherwise it gets its result as if nothing happened.
    """

    def __init__(
        self,
        workers: int,
        prepare: Callable[[], object] | None = None,
        cpu_seconds: float = math.inf,
        memory_bytes: int | None = None,
    ) -> None:
        """`prepare` (picklable: a module-level function or a partial of one) runs in each new worker,
        so what it sets up costs no request. A job that uses more than `cpu_seconds` of CPU time, or
        allocates more than `memory_bytes` beyond what an idle worker maps (None: no bound), is stopped
        and raises RenderError."""
        self.workers = workers
        self._cpu_seconds = cpu_seconds
        self._memory_bytes = memory_bytes
        self._prepare = prepare
        # Jobs handed to the pool and not finished: running, or waiting for a free worker.
        self.pending = 0
        # A job takes a slot, then a free worker: holding a slot, one is always free.
        self._slots = asyncio.Semaphore(workers)
        self._executors = [self._new_executor() for _ in range(workers)]
        self._busy = [False] * workers
        # By what a job was about: the worker that last ran a job about it.
        self._last_worker: LruMap[Hashable, int] = LruMap(REMEMBERED_SUBJECTS)
        # One worker for jobs run again after a worker died, one job at a time; started when first needed.
        self._apart: ProcessPoolExecutor | None = None
        self._apart_turn = asyncio.Lock()

    def _new_executor(self) -> ProcessPoolExecutor:
        # forkserver: forking the threaded server is unsafe; its preload makes new workers start warm.
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["thumbproxy.render"])
        return ProcessPoolExecutor(
            max_workers=1,
            mp_context=context,
            initializer=_start_worker,
            initargs=(self._prepare, os.getpid(), self._memory_bytes),
        )

    async def run(self, function: Callable[..., T], *args: Any, about: Hashable | None = None) -> T:
        """Run function(*args) in a worker: the one that last ran a job `about` the same thing when it is
        free. When a worker dies it is replaced, and the job is run once more on its own; RenderError when
        the worker running it alone dies too."""
        self.pending += 1
        try:
            async with self._slots:
                worker = self._free_worker(about)
                self._busy[worker] = True
                try:
                    return await self._submit(worker, function, *args)
                finally:
                    self._busy[worker] = False
                    if about is not None:
                        self._last_worker.put(about, worker)
        finally:
            self.pending -= 1

    def _free_worker(self, about: Hashable | None) -> int:
        last = None if about is None else self._last_worker.get(about)
        if last is not None and not self._busy[last]:
            return last
        return self._busy.index(False)

    async def _submit(self, worker: int, function: Callable[..., T], *args: Any) -> T:
        executor = self._executors[worker]
        loop = asyncio.get_running_loop()
        job: tuple[Any, ...] = (_bounded, self._cpu_seconds, function, *args)
        # The job is _bounded(..., function, *args): its result is function's.
        future: asyncio.Future[T]
        try:
            future = loop.run_in_executor(executor, *job)
        except BrokenProcessPool:
            # The worker died before this job was submitted: nothing of it ran, so run it on a new one.
            executor = self._replace(worker)
            future = loop.run_in_executor(executor, *job)
        try:
            return await future
        except BrokenProcessPool:
            self._replace(worker)
            log.error("a render worker died; it was replaced and the job it was running is run again")
        result: T = await self._run_apart(job)
        return result

    async def _run_apart(self, job: tuple[Any, ...]) -> Any:
        """The job run alone in the worker kept apart; RenderError when that worker dies running it."""
        async with self._apart_turn:
            if self._apart is None:
                self._apart = self._new_executor()
            try:
                return await asyncio.get_running_loop().run_in_executor(self._apart, *job)
            except BrokenProcessPool:
                self._apart.shutdown(wait=False, cancel_futures=True)
                self._apart = None
                log.error("a job killed its render worker twice, the second time running alone")
                raise RenderError("", "it kills the renderer (its render worker died twice)") from None

    @property
    def queued(self) -> int:
        """Jobs waiting for a free worker."""
        return max(0, self.pending - self.workers)

    @property
    def idle(self) -> int:
        """Workers with no job running or waiting for them."""
        return max(0, self.workers - self.pending)

    def _replace(self, worker: int) -> ProcessPoolExecutor:
        broken = self._executors[worker]
        self._executors[worker] = self._new_executor()
        broken.shutdown(wait=False, cancel_futures=True)
        return self._executors[worker]

    def worker_pids(self) -> list[int]:
        """Process ids of the live workers."""
        return [
            process.pid
            for executor in self._executors
            for process in list(getattr(executor, "_processes", {}).values())
        ]

    async def start(self) -> None:
        """Start the workers and import the renderer in them before the first request."""
        await asyncio.gather(*(self.run(_warm_up) for _ in range(self.workers)))

    async def responsive(self) -> bool:
        """Whether the pool works: an idle worker finishes a trivial job; busy ones are not interrupted.

        Under load every worker is rendering, and a probe queued behind the renders would time
        out and take a busy but healthy instance out of service.
        """
        if self.pending >= self.workers:
            return not any(getattr(executor, "_broken", False) for executor in self._executors)
        try:
            await self.run(_warm_up)
        except RenderError:
            return False
        return True

    async def close(self) -> None:
        """Stop the workers, waiting for renders under way (in threads: shutdown blocks)."""
        executors = [*self._executors, *([self._apart] if self._apart is not None else [])]
        await asyncio.gather(
            *(asyncio.to_thread(executor.shutdown, wait=True, cancel_futures=True) for executor in executors)
        )
