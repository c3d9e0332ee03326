"""The one error type that carries an HTTP answer from any layer to the client."""

from collections.abc import Mapping


class ThumbproxyError(Exception):
    """A failure the client is told about: a status, a message and optional headers."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})
