"""Log set-up: text lines or JSON objects, one per line, on standard error, with credentials redacted.

The service never logs an Authorization header, but aiohttp does: a request whose header it cannot
parse is logged with the offending line (``b'Authorization: Token ...\\x01'``). Every line written,
aiohttp's and tracebacks included, has the value of any Authorization header replaced.
"""

import json
import logging
import re
from datetime import UTC, datetime

REDACTED = "[redacted]"
# "Authorization: <value>", "'Authorization': '<value>'", "authorization=<value>": the value runs to the
# end of its quoted string or line.
_AUTHORIZATION_VALUE = re.compile(r"""(?i)(authorization['"]?\s*[:=]\s*['"]?)[^'"\r\n]+""")


def redacted(text: str) -> str:
    """`text` with the value of every Authorization header in it replaced."""
    return _AUTHORIZATION_VALUE.sub(rf"\g<1>{REDACTED}", text)


class TextFormatter(logging.Formatter):
    """A log record as one line of text: time, level, logger, message (and the traceback if any)."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        return redacted(super().format(record))


class JsonFormatter(logging.Formatter):
    """A log record as one JSON object: time, level, logger, message (and the traceback if any)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redacted(record.getMessage()),
        }
        if record.exc_info:
            entry["traceback"] = redacted(self.formatException(record.exc_info))
        return json.dumps(entry)


def configure_logging(level: str, log_format: str) -> None:
    """Send every log record to standard error at this level, as text or JSON lines."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    logging.basicConfig(level=level, handlers=[handler], force=True)
