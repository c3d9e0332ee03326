"""Functions the render pool runs in tests; module level so workers can import them by name."""

import os
import time


def add(a: int, b: int) -> int:
    return a + b


def die(*_: object) -> bytes:
    # What a segfault or the OOM killer looks like from the pool's side.
    os._exit(1)


def sleep_then_pid(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


# Set in a worker by `remember_preparation`, the pool's `prepare`.
PREPARED: list[str] = []


def remember_preparation(what: str) -> None:
    PREPARED.append(what)


def preparations() -> list[str]:
    return PREPARED
