"""What operators see: metrics after real traffic, health and readiness, request ids, logs, shutdown."""

import asyncio
import json
import logging
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import WIDE, MotoS3, Service, ServiceFactory, serving
from fakearchive import FakeArchive, Fault
from thumbproxy.ops import readiness

SECRET_TOKEN = "s3cr3t-t0ken-value"
FITS_NAME = "ogg0m404-kb82-20190321-0273-e91.fits.fz"


@pytest.fixture
def frame(fake_archive: FakeArchive, write_fits: Callable[..., Path], tmp_path: Path) -> dict[str, Any]:
    return fake_archive.add_frame(write_fits(tmp_path / FITS_NAME, shape=WIDE, compressed=True))


@pytest.fixture
async def service(start_service: ServiceFactory) -> Service:
    return await start_service()


@pytest.fixture
def fresh_readiness(monkeypatch: pytest.MonkeyPatch) -> None:
    # Every /readyz asks again, so a test sees a dependency change at once.
    monkeypatch.setattr(readiness, "CACHE_SECONDS", 0.0)


def samples(exposition: str) -> dict[tuple[str, frozenset], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
    }


def value(found: dict, name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


async def test_metrics_after_real_traffic(service: Service, frame: dict, tmp_path: Path) -> None:
    await asyncio.gather(*(service.get(f"/{frame['id']}/?image=true") for _ in range(10)))  # a coalesced burst
    await service.get(f"/{frame['id']}/?image=true")  # a memory hit
    await service.get(f"/{frame['id']}/?image=true&width=0")  # a bad parameter
    await service.get("/no-such-frame/")  # a 404 from the archive
    exposition = await (await service.get("/metrics")).text()
    found = samples(exposition)
    # Frame ids and basenames share one route template.
    route = "/{frame}/"
    assert value(found, "thumbproxy_requests_total", route=route, status="200") == 11
    assert value(found, "thumbproxy_requests_total", route=route, status="400") == 1
    assert value(found, "thumbproxy_requests_total", route=route, status="404") == 1
    assert value(found, "thumbproxy_request_duration_seconds_count", route=route) == 13
    assert value(found, "thumbproxy_renders_total", kind="mono", result="ok") == 1
    assert value(found, "thumbproxy_render_duration_seconds_count", kind="mono") == 1
    assert (
        value(found, "thumbproxy_coalesced_requests_total")
        + value(found, "thumbproxy_cache_requests_total", level="memory", result="hit")
        == 10
    )
    assert value(found, "thumbproxy_cache_requests_total", level="disk", result="miss") >= 1
    assert value(found, "thumbproxy_archive_requests_total", operation="frame", status="200") >= 1
    assert value(found, "thumbproxy_archive_requests_total", operation="list", status="200") == 1
    assert value(found, "thumbproxy_archive_requests_total", operation="download", status="200") == 1
    assert value(found, "thumbproxy_download_bytes_total") == (tmp_path / FITS_NAME).stat().st_size
    assert value(found, "thumbproxy_renders_in_progress") == 0 and value(found, "thumbproxy_render_queue_depth") == 0
    assert any(name == "thumbproxy_build_info" for name, _ in found)
    assert any(name.startswith("process_") for name, _ in found) and any(
        name.startswith("python_") for name, _ in found
    )
    # No label value is a frame id, basename or path.
    assert all(
        str(frame["id"]) not in label_value and frame["basename"] not in label_value
        for _, labels in found
        for _, label_value in labels
    )
    metrics_file = tmp_path / "metrics.prom"
    metrics_file.write_text(exposition)
    promtool = shutil.which("promtool")
    assert promtool, "promtool is needed (Debian package prometheus; .ci/run installs it)"
    checked = subprocess.run([promtool, "check", "metrics"], input=exposition, capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr


async def test_openmetrics_when_the_scraper_asks(service: Service) -> None:
    response = await service.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert response.content_type == "application/openmetrics-text"
    assert (await response.text()).rstrip().endswith("# EOF")


async def test_healthz_answers_without_dependencies(start_service: ServiceFactory, frame: dict) -> None:
    service = await start_service(ARCHIVE_API_URL="http://127.0.0.1:9/")
    response = await service.get("/healthz")
    assert response.status == 200 and await response.json() == {"status": "ok"}


async def test_readyz_reports_each_check(service: Service, fresh_readiness: None) -> None:
    response = await service.get("/readyz")
    assert response.status == 200
    report = await response.json()
    assert report["status"] == "ready"
    assert set(report["checks"]) == {"disk", "pool", "tmp", "archive"}
    assert all(check["status"] == "ok" and check["latency_ms"] >= 0 for check in report["checks"].values())
    assert report["checks"]["pool"]["required"] and not report["checks"]["archive"]["required"]


async def test_readyz_follows_s3_and_the_archive(
    start_service: ServiceFactory, s3_server: MotoS3, fake_archive: FakeArchive, fresh_readiness: None
) -> None:
    service = await start_service(
        AWS_BUCKET=s3_server.bucket,
        STORAGE_URL=s3_server.endpoint_url,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION=s3_server.region,
        THUMBPROXY_S3_ADDRESSING_STYLE="path",
        THUMBPROXY_S3_TIMEOUT="1",
        THUMBPROXY_READY_REQUIRED="pool,s3,archive",
    )
    assert (await service.get("/readyz")).status == 200
    s3_server.stop()
    try:
        response = await service.get("/readyz")
        assert response.status == 503
        assert (await response.json())["checks"]["s3"]["status"] == "failing"
    finally:
        s3_server.start()
    assert (await service.get("/readyz")).status == 200
    # The archive is judged by what traffic finds.
    fake_archive.api_fault = Fault(status=503)
    assert (await service.get("/12345/")).status == 502
    response = await service.get("/readyz")
    assert response.status == 503 and (await response.json())["checks"]["archive"]["status"] == "failing"
    fake_archive.api_fault = None
    assert (await service.get("/12345/")).status == 404
    assert (await service.get("/readyz")).status == 200


async def test_readiness_checks_are_cached(service: Service, fake_archive: FakeArchive) -> None:
    await service.get("/readyz")
    calls = fake_archive.api_calls
    await asyncio.gather(*(service.get("/readyz") for _ in range(20)))
    assert fake_archive.api_calls == calls


async def test_request_ids_are_taken_or_made_and_logged(
    start_service: ServiceFactory,
    frame: dict,
    fake_archive: FakeArchive,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.INFO, logger="thumbproxy.access")
    fake_archive.add_token(SECRET_TOKEN, "LCOEPO2018B-002")
    service = await start_service()
    given = await service.get(
        f"/{frame['id']}/?image=true&label=x",
        headers={"X-Request-ID": "edge-4711", "Authorization": f"Token {SECRET_TOKEN}"},
    )
    made = await service.get(f"/{frame['id']}/?image=true&label=x", headers={"X-Request-ID": "bad id\twith spaces"})
    assert given.headers["X-Request-ID"] == "edge-4711"
    assert len(made.headers["X-Request-ID"]) == 32 and made.headers["X-Request-ID"] != "bad id\twith spaces"
    await service.client.close()  # writes out the access log
    lines = [line for line in capsys.readouterr().err.splitlines() if f"/{frame['id']}/" in line]
    assert len(lines) == 2
    assert "id=edge-4711" in lines[0] and " 200 " in lines[0] and "render" in lines[0]
    assert "memory" in lines[1] and made.headers["X-Request-ID"] in lines[1]
    assert all(SECRET_TOKEN not in line and "label=" not in line for line in lines)


async def test_json_access_log(
    start_service: ServiceFactory, frame: dict, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.INFO, logger="thumbproxy.access")
    service = await start_service(THUMBPROXY_LOG_FORMAT="json")
    await service.get(f"/{frame['id']}/?image=true")
    await service.client.close()
    [line] = [line for line in capsys.readouterr().err.splitlines() if "/{}/".format(frame["id"]) in line]
    entry = json.loads(line)
    assert entry["status"] == 200 and entry["source"] == "render" and entry["coalesced"] is False
    assert entry["method"] == "GET" and entry["duration_ms"] > 0 and len(entry["request_id"]) == 32


async def test_sigterm_lets_work_under_way_finish_then_exits_0(
    fake_archive: FakeArchive, frame: dict, tmp_path: Path
) -> None:
    async with serving(fake_archive.base_url, tmp_path, THUMBPROXY_LOG_LEVEL="INFO") as served:
        async with aiohttp.ClientSession() as session:
            fake_archive.add_token(SECRET_TOKEN, "LCOEPO2018B-002")
            # The download stalls, so the request is still under way when SIGTERM comes.
            fake_archive.download_fault = Fault(stall_after_bytes=2880, delay=1.5, times=1)
            slow = asyncio.ensure_future(
                session.get(
                    f"{served.base_url}/{frame['id']}/?image=true", headers={"Authorization": f"Token {SECRET_TOKEN}"}
                )
            )
            await asyncio.sleep(0.5)
            served.process.send_signal(signal.SIGTERM)
            started = time.monotonic()
            response = await slow
            assert response.status == 200 and (await response.read())[:2] == b"\xff\xd8"
        exit_code = await asyncio.to_thread(served.process.wait, 30)
        assert exit_code == 0
        assert time.monotonic() - started < 20
    output = served.output
    assert "Traceback" not in output, output
    assert SECRET_TOKEN not in output and "X-Amz-Signature" not in output
    assert f"GET /{frame['id']}/ 200" in output


async def test_readyz_is_503_once_shutdown_begins(service: Service) -> None:
    assert (await service.get("/readyz")).status == 200
    await service.app.shutdown()
    response = await service.get("/readyz")
    assert response.status == 503 and (await response.json())["status"] == "shutting down"
    assert (await service.get("/healthz")).status == 200
