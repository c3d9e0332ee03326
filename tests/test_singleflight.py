"""Concurrent identical work runs once; its callers share the outcome, and leaving does not stop it."""

import asyncio
import gc
from collections.abc import AsyncIterator
from typing import Any

import pytest

from thumbproxy.support.singleflight import SingleFlight


class Work:
    """Work that waits for `gate` and counts its runs; it fails with `error` if one is set."""

    def __init__(self, result: str = "thumbnail", error: Exception | None = None) -> None:
        self.gate = asyncio.Event()
        self.runs = 0
        self.finished = 0
        self.result = result
        self.error = error

    async def __call__(self) -> str:
        self.runs += 1
        await self.gate.wait()
        self.finished += 1
        if self.error is not None:
            raise self.error
        return self.result


@pytest.fixture
async def loop_errors() -> AsyncIterator[list[dict[str, Any]]]:
    """What the event loop would log as errors, such as exceptions never retrieved."""
    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, context: errors.append(context))
    yield errors
    loop.set_exception_handler(None)


async def settle() -> None:
    """Let every ready task take its next steps."""
    for _ in range(5):
        await asyncio.sleep(0)


async def test_identical_calls_run_the_work_once() -> None:
    flight: SingleFlight[str, str] = SingleFlight()
    work = Work()

    callers = [asyncio.create_task(flight.run("frame-1", work)) for _ in range(50)]
    await settle()
    work.gate.set()
    outcomes = await asyncio.gather(*callers)

    assert work.runs == 1
    assert [result for result, _ in outcomes] == ["thumbnail"] * 50
    assert sorted(joined for _, joined in outcomes) == [False] + [True] * 49


async def test_different_keys_run_separately() -> None:
    flight: SingleFlight[str, str] = SingleFlight()
    first, second = Work("first"), Work("second")
    first.gate.set()
    second.gate.set()

    outcomes = await asyncio.gather(flight.run("a", first), flight.run("b", second))

    assert outcomes == [("first", False), ("second", False)]


async def test_every_caller_gets_the_same_exception() -> None:
    flight: SingleFlight[str, str] = SingleFlight()
    error = ValueError("archive down")
    work = Work(error=error)

    callers = [asyncio.create_task(flight.run("frame-1", work)) for _ in range(10)]
    await settle()
    work.gate.set()
    outcomes = await asyncio.gather(*callers, return_exceptions=True)

    assert work.runs == 1
    assert all(outcome is error for outcome in outcomes)


async def test_a_failure_is_not_remembered() -> None:
    flight: SingleFlight[str, str] = SingleFlight()
    failing = Work(error=ValueError("archive down"))
    failing.gate.set()
    with pytest.raises(ValueError):
        await flight.run("frame-1", failing)

    working = Work()
    working.gate.set()

    assert await flight.run("frame-1", working) == ("thumbnail", False)
    assert working.runs == 1


async def test_a_finished_run_is_not_reused() -> None:
    flight: SingleFlight[str, str] = SingleFlight()
    work = Work()
    work.gate.set()

    await flight.run("frame-1", work)
    assert await flight.run("frame-1", work) == ("thumbnail", False)
    assert work.runs == 2


async def test_work_finishes_when_every_caller_is_cancelled() -> None:
    flight: SingleFlight[str, str] = SingleFlight()
    work = Work()
    filled: list[str] = []

    async def work_that_fills_a_cache() -> str:
        filled.append(await work())
        return filled[-1]

    callers = [asyncio.create_task(flight.run("frame-1", work_that_fills_a_cache)) for _ in range(3)]
    await settle()
    for caller in callers:
        caller.cancel()
    await asyncio.gather(*callers, return_exceptions=True)
    assert all(caller.cancelled() for caller in callers)

    work.gate.set()
    await settle()

    assert filled == ["thumbnail"]


async def test_a_cancelled_caller_does_not_disturb_the_others() -> None:
    flight: SingleFlight[str, str] = SingleFlight()
    work = Work()
    leaving = asyncio.create_task(flight.run("frame-1", work))
    staying = asyncio.create_task(flight.run("frame-1", work))
    await settle()

    leaving.cancel()
    await settle()
    work.gate.set()

    assert await staying == ("thumbnail", True)
    assert leaving.cancelled()


async def test_an_error_nobody_awaits_is_not_reported_as_unretrieved(loop_errors: list[dict[str, Any]]) -> None:
    flight: SingleFlight[str, str] = SingleFlight()
    work = Work(error=ValueError("archive down"))
    caller = asyncio.create_task(flight.run("frame-1", work))
    await settle()
    caller.cancel()
    await asyncio.gather(caller, return_exceptions=True)

    work.gate.set()
    await settle()
    del caller
    gc.collect()

    assert work.finished == 1
    assert loop_errors == []


async def test_close_cancels_work_under_way() -> None:
    flight: SingleFlight[str, str] = SingleFlight()
    work = Work()
    caller = asyncio.create_task(flight.run("frame-1", work))
    await settle()

    await asyncio.wait_for(flight.close(), timeout=1.0)

    assert work.runs == 1 and work.finished == 0
    with pytest.raises(asyncio.CancelledError):
        await caller


async def test_close_gives_up_on_work_that_ignores_cancellation() -> None:
    flight: SingleFlight[str, str] = SingleFlight()
    release = asyncio.Event()

    async def stubborn() -> str:
        while not release.is_set():
            try:
                await release.wait()
            except asyncio.CancelledError:
                continue
        return "late"

    caller = asyncio.create_task(flight.run("frame-1", stubborn))
    await settle()

    await asyncio.wait_for(flight.close(timeout=0.05), timeout=1.0)

    release.set()
    assert await caller == ("late", False)
