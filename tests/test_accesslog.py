"""The access-log writer: every queued request becomes one line, in order, with no query string."""

import io
import json
import time

from thumbproxy.web.accesslog import CHUNK_LINES, AccessLogWriter

# More lines than one chunk, so the writer has to come back for the rest.
LINES = CHUNK_LINES * 3 + 7


def entries(count: int) -> list[tuple]:
    at = time.time()
    return [
        (
            at + number / 1000,
            "GET",
            f"/frame-{number}/?image=true&sig=s3cr3t",
            200,
            0.0123,
            "disk",
            number % 2 == 1,
            f"id-{number}",
        )
        for number in range(count)
    ]


def written(log_format: str, queued: list[tuple]) -> list[str]:
    stream = io.StringIO()
    writer = AccessLogWriter(stream, log_format, interval=0.01)
    writer.start()
    for entry in queued:
        writer.add(entry)
    writer.close()
    return stream.getvalue().splitlines()


def test_text_lines_are_all_written_in_order_without_the_query() -> None:
    lines = written("text", entries(LINES))
    assert len(lines) == LINES
    for number, line in enumerate(lines):
        date, method, path, status, duration, source, *rest = line.split(" ")
        assert (method, path, status, duration, source) == ("GET", f"/frame-{number}/", "200", "12.3ms", "disk")
        assert rest == (["coalesced", f"id=id-{number}"] if number % 2 else [f"id=id-{number}"])
        assert date.endswith("Z") and len(date) == len("2026-11-24T15:06:38.011Z")
    assert "sig=" not in "".join(lines)


def test_json_lines_are_all_written_in_order_without_the_query() -> None:
    lines = [json.loads(line) for line in written("json", entries(LINES))]
    assert [line["path"] for line in lines] == [f"/frame-{number}/" for number in range(LINES)]
    assert [line["coalesced"] for line in lines] == [number % 2 == 1 for number in range(LINES)]
    assert {(line["status"], line["duration_ms"], line["source"]) for line in lines} == {(200, 12.3, "disk")}
