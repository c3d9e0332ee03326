"""The render pool survives dying workers."""

import asyncio
import functools
import os
import signal

import pytest

from thumbproxy.render import RenderError
from thumbproxy.workers.renderpool import RenderPool
from workerjobs import add, die, preparations, remember_preparation, sleep_then_pid


@pytest.fixture
async def pool():
    render_pool = RenderPool(workers=2)
    await render_pool.start()
    yield render_pool
    await render_pool.close()


async def test_runs_work_in_other_processes(pool: RenderPool) -> None:
    assert await pool.run(add, 2, 3) == 5
    pid = await pool.run(sleep_then_pid, 0)
    assert pid != os.getpid() and pid in pool.worker_pids()


async def test_a_job_that_kills_its_worker_is_refused_after_running_alone_and_the_pool_recovers(
    pool: RenderPool,
) -> None:
    with pytest.raises(RenderError) as raised:
        await pool.run(die)
    assert "died twice" in raised.value.reason
    assert await pool.run(add, 1, 1) == 2


async def test_jobs_that_shared_a_dying_worker_pool_get_their_results(pool: RenderPool) -> None:
    results = await asyncio.gather(
        pool.run(sleep_then_pid, 0.5), pool.run(die), pool.run(add, 2, 2), return_exceptions=True
    )
    assert isinstance(results[0], int) and isinstance(results[1], RenderError) and results[2] == 4
    assert await pool.run(add, 20, 22) == 42


async def test_jobs_about_one_thing_run_on_the_worker_that_ran_the_last_one(pool: RenderPool) -> None:
    first = await pool.run(sleep_then_pid, 0, about="frame 1")
    for _ in range(3):
        await pool.run(sleep_then_pid, 0, about="frame 2")
        assert await pool.run(sleep_then_pid, 0, about="frame 1") == first


async def test_a_job_whose_last_worker_is_busy_runs_on_a_free_one(pool: RenderPool) -> None:
    first = await pool.run(sleep_then_pid, 0, about="frame 1")
    busy = asyncio.ensure_future(pool.run(sleep_then_pid, 0.5, about="frame 1"))
    await asyncio.sleep(0.1)
    started = asyncio.get_running_loop().time()
    assert await pool.run(sleep_then_pid, 0, about="frame 1") != first
    # It did not wait for the busy worker.
    assert asyncio.get_running_loop().time() - started < 0.4
    assert await busy == first


async def test_worker_killed_while_idle_does_not_fail_the_next_job(pool: RenderPool) -> None:
    for pid in pool.worker_pids():
        os.kill(pid, signal.SIGKILL)
    await asyncio.sleep(0.3)
    # Nothing of the next job ran on the broken pool, so it is retried on a new one.
    assert await pool.run(add, 3, 4) == 7


async def test_a_busy_pool_is_still_responsive(pool: RenderPool) -> None:
    busy = [asyncio.ensure_future(pool.run(sleep_then_pid, 1.0)) for _ in range(pool.workers)]
    await asyncio.sleep(0.2)
    started = asyncio.get_running_loop().time()
    assert await pool.responsive()
    # Answered without waiting for a worker to come free.
    assert asyncio.get_running_loop().time() - started < 0.5
    await asyncio.gather(*busy)
    assert await pool.responsive()


async def test_idle_counts_workers_with_nothing_to_do(pool: RenderPool) -> None:
    assert pool.idle == 2
    running = asyncio.ensure_future(pool.run(sleep_then_pid, 0.5))
    await asyncio.sleep(0.1)
    assert pool.idle == 1
    # Two more jobs while one worker is busy: one of them waits, and no worker is idle.
    more = [asyncio.ensure_future(pool.run(sleep_then_pid, 0.2)) for _ in range(2)]
    await asyncio.sleep(0.05)
    assert pool.idle == 0
    await asyncio.gather(running, *more)
    assert pool.idle == 2


async def test_every_new_worker_is_prepared_before_its_first_job() -> None:
    pool = RenderPool(workers=1, prepare=functools.partial(remember_preparation, "disk opened"))
    await pool.start()
    try:
        assert await pool.run(preparations) == ["disk opened"]
        with pytest.raises(RenderError):
            await pool.run(die)
        # The worker that replaced the dead one was prepared too.
        assert await pool.run(preparations) == ["disk opened"]
    finally:
        await pool.close()
