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


def faults_of_a_repeat_render(directory: str) -> int:
    """Page faults of rendering a 1024 x 1024 frame made in directory, after two renders of it."""
    import resource
    from pathlib import Path

    from thumbproxy.demo.sampledata import star_field
    from thumbproxy.render import RenderOptions, thumbnail_from_file

    path = star_field(Path(directory) / "repeat.fits.fz", 1024)
    options = RenderOptions(width=200, height=200)
    thumbnail_from_file(path, options)
    thumbnail_from_file(path, options)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    thumbnail_from_file(path, options)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
