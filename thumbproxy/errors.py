"""The one error type that carries an HTTP answer from any layer to the client."""

from collections.abc import Mapping, Sequence


class ThumbproxyError(Exception):
    """A failure the client is told about: a status, a message, optional headers, and optional per-field
    messages (``{"request_id": ["Enter a number."]}``) that the answer carries as ``errors``."""

    def __init__(
        self,
        status: int,
        message: str,
        headers: Mapping[str, str] | None = None,
        errors: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})
        self.errors = {field: list(messages) for field, messages in (errors or {}).items()}

    def again(self) -> "ThumbproxyError":
        """The same answer as a new error, for one remembered and raised again: raising the same one again
        would grow its traceback each time."""
        return ThumbproxyError(self.status, self.message, self.headers, self.errors)
