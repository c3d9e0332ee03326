"""The errors of a render: a file's image that cannot be read, and the error naming the file for the client."""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class UnreadableFrame(Exception):
    """The file holds no image the renderer can read; the message is a short reason for a user."""


class RenderError(Exception):
    """The file (by name, no directory) cannot be rendered, for a reason; the message starts with "cannot render"."""

    def __init__(self, file: str, reason: str) -> None:
        # Both in args, so the error pickles back from a pool worker intact.
        super().__init__(file, reason)
        self.file = file
        self.reason = reason

    def __str__(self) -> str:
        return f"cannot render {self.file}: {self.reason}"


@contextmanager
def refused_as_render_error(path: str | os.PathLike[str]) -> Iterator[None]:
    """Within: an UnreadableFrame raised while reading the file at path becomes a RenderError naming it."""
    try:
        yield
    except UnreadableFrame as err:
        # The file name only: the directory is the server's business, not the client's.
        raise RenderError(Path(path).name, str(err)) from err
