"""The application factory: settings in, a wired web.Application out."""

import asyncio
import logging
import math
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import aiohttp
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from aiohttp import web

from thumbproxy.archive import tempfiles
from thumbproxy.archive.base import Archive
from thumbproxy.archive.cached import CachedArchive
from thumbproxy.archive.health import ArchiveHealth
from thumbproxy.archive.local import LocalArchive
from thumbproxy.archive.ocs import OcsArchive
from thumbproxy.archive.retry import RetryPolicy
from thumbproxy.archive.sharedfiles import SharedFitsFiles
from thumbproxy.cache.disk import DiskCache, open_elsewhere
from thumbproxy.cache.memory import MemoryCache
from thumbproxy.cache.s3 import S3Cache
from thumbproxy.cache.tiered import TieredCache
from thumbproxy.config import Settings
from thumbproxy.ops.metrics import Metrics
from thumbproxy.ops.readiness import Check, Readiness
from thumbproxy.pipeline.framechecks import FramePolicy
from thumbproxy.pipeline.latest import LatestFrames
from thumbproxy.pipeline.previews import FramePreviews
from thumbproxy.pipeline.thumbnails import Thumbnailer
from thumbproxy.web.accesslog import ACCESS_LOG, AccessLogWriter
from thumbproxy.web.caching import CACHE_POLICY, CachePolicy
from thumbproxy.web.connections import CONNECTIONS, Connections
from thumbproxy.web.hotanswers import HOT_ANSWERS, HotAnswers
from thumbproxy.web.observe import Observation
from thumbproxy.web.operations import METRICS, READINESS
from thumbproxy.web.pages import GALLERY, Gallery
from thumbproxy.web.routes import (
    ALLOWED_HOSTS,
    ARCHIVE,
    COLOR_FILTERS,
    FRAME_POLICY,
    LATEST,
    MAX_SIZE,
    PUBLIC_URL,
    REQUEST_TIMEOUT,
    SIGNATURE_FAILURES,
    SIGNER,
    THUMBNAILER,
    add_routes,
)
from thumbproxy.web.signing import UrlSigner
from thumbproxy.workers.renderpool import RenderPool

SETTINGS = web.AppKey("settings", Settings)
RENDER_POOL = web.AppKey("render_pool", RenderPool)

MIB = 1024 * 1024


async def _temp_dir(app: web.Application) -> AsyncIterator[None]:
    tmp_dir = Path(app[SETTINGS].tmp_dir)
    await asyncio.to_thread(tmp_dir.mkdir, parents=True, exist_ok=True)
    await asyncio.to_thread(tempfiles.sweep_stale, tmp_dir)
    yield


def _raw_archive(
    settings: Settings, session: aiohttp.ClientSession, metrics: Metrics, health: ArchiveHealth
) -> Archive:
    url = urlsplit(settings.archive_api_url)
    if url.scheme == "file":
        return LocalArchive(Path(unquote(url.path)))
    return OcsArchive(
        session,
        settings.archive_api_url,
        connect_timeout=settings.archive_connect_timeout,
        timeout=settings.archive_timeout,
        download_timeout=settings.download_timeout,
        tmp_dir=Path(settings.tmp_dir),
        max_fits_bytes=settings.max_fits_mb * MIB,
        metrics=metrics,
        retry_policy=RetryPolicy(retries=settings.archive_retries),
        service_token=settings.archive_api_token,
        max_answer_bytes=settings.archive_max_answer_mb * MIB,
        health=health,
    )


async def _s3_level(settings: Settings, metrics: Metrics, stack: AsyncExitStack) -> S3Cache | None:
    """The S3 level over one client for the app's lifetime, or None when no bucket is configured."""
    if not settings.aws_bucket:
        return None
    config = AioConfig(
        signature_version="s3v4",
        s3={"addressing_style": settings.s3_addressing_style},
        connect_timeout=min(2.0, settings.s3_timeout),
        read_timeout=settings.s3_timeout,
        # One retry at most: a failing S3 is skipped, never waited on.
        retries={"mode": "standard", "total_max_attempts": 2},
    )
    credentials: dict[str, Any] = {}
    if settings.aws_access_key_id:
        credentials = {
            "aws_access_key_id": settings.aws_access_key_id,
            "aws_secret_access_key": settings.aws_secret_access_key,
        }
    client = await stack.enter_async_context(
        get_session().create_client(
            "s3",
            region_name=settings.aws_default_region,
            endpoint_url=settings.storage_url or None,
            config=config,
            **credentials,
        )
    )
    return S3Cache(client, settings.aws_bucket, settings.s3_prefix, settings.url_expiry, metrics.s3_requests)


async def _services(app: web.Application) -> AsyncIterator[None]:
    """Everything with a lifetime, opened in order and closed in reverse."""
    settings = app[SETTINGS]
    metrics = app[METRICS]
    async with AsyncExitStack() as stack:
        if ACCESS_LOG in app:
            app[ACCESS_LOG].start()
            stack.push_async_callback(asyncio.to_thread, app[ACCESS_LOG].close)
        # No cookie jar: a cookie the archive sets for one caller must never ride along for another.
        session = await stack.enter_async_context(aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()))
        s3 = await _s3_level(settings, metrics, stack)
        disk = await asyncio.to_thread(
            DiskCache, Path(settings.cache_dir) / "thumbnails", settings.cache_size_mb * MIB, settings.open_files
        )
        stack.push_async_callback(asyncio.to_thread, disk.close)
        cache = TieredCache(MemoryCache(settings.memory_cache_mb * MIB), disk, s3, metrics.cache_requests)
        cache.start()
        # Closed before the S3 client, so background uploads can finish.
        stack.push_async_callback(cache.close)
        # Workers open the disk level at start: they store and read frame previews there themselves.
        pool = RenderPool(
            settings.workers,
            partial(open_elsewhere, disk.directory),
            settings.render_cpu_seconds,
            settings.render_memory_mb * MIB or None,
        )
        stack.push_async_callback(pool.close)
        await pool.start()
        health = ArchiveHealth()
        metrics.archive_throttled_seconds.set_function(health.throttled_seconds)
        raw_archive = _raw_archive(settings, session, metrics, health)
        if isinstance(raw_archive, LocalArchive):
            app[GALLERY] = Gallery(raw_archive, app[FRAME_POLICY], settings.color_filters)
            metrics.local_archive_unreadable_files.set_function(raw_archive.unreadable_files)
        archive = CachedArchive(
            raw_archive,
            public_ttl=settings.metadata_ttl,
            private_ttl=settings.private_metadata_ttl,
            stale_ttl=settings.metadata_stale_ttl,
            metrics=metrics,
        )
        stack.push_async_callback(archive.close)
        previews = FramePreviews(pool, disk, settings.preview_size)
        stack.push_async_callback(previews.close)
        thumbnailer = Thumbnailer(cache, SharedFitsFiles(raw_archive), pool, previews, metrics, settings.max_pending)
        stack.push_async_callback(thumbnailer.close)
        readiness = Readiness(
            _readiness_checks(cache, pool, partial(health.check, archive.probe), Path(settings.tmp_dir)),
            settings.ready_required,
        )
        stack.push_async_callback(readiness.close)
        metrics.renders_in_progress.set_function(lambda: min(pool.pending, pool.workers))
        metrics.render_queue_depth.set_function(lambda: max(0, pool.pending - pool.workers))
        app[READINESS] = readiness
        app[RENDER_POOL] = pool
        app[ARCHIVE] = archive
        app[THUMBNAILER] = thumbnailer
        app[HOT_ANSWERS] = HotAnswers(archive, cache, app[CACHE_POLICY])
        latest = LatestFrames(archive, settings.latest_ttl)
        stack.push_async_callback(latest.close)
        app[LATEST] = latest
        yield


def _readiness_checks(cache: TieredCache, pool: RenderPool, archive_health: Check, tmp_dir: Path) -> dict[str, Check]:
    checks: dict[str, Check] = {
        "disk": cache.disk.writable,
        "pool": pool.responsive,
        "archive": archive_health,
        "tmp": partial(asyncio.to_thread, tempfiles.writable, tmp_dir),
    }
    if cache.s3 is not None:
        checks["s3"] = cache.s3.reachable
    return checks


async def _stop_being_ready(app: web.Application) -> None:
    # Runs as shutdown begins: load balancers still asking must stop sending traffic here.
    if READINESS in app:
        app[READINESS].shutting_down = True


def create_app(settings: Settings) -> web.Application:
    """The service: routes, error handling, and everything with a lifetime in cleanup_ctx."""
    metrics = Metrics()
    # One access-log line per request at INFO and below, as for any other log record.
    logs_access = logging.getLogger("thumbproxy.access").isEnabledFor(logging.INFO)
    access_log = AccessLogWriter(sys.stderr, settings.log_format) if logs_access else None
    cache_policy = CachePolicy(
        settings.max_age, settings.error_max_age, settings.url_expiry, math.ceil(settings.latest_ttl)
    )
    app = web.Application()
    app[SETTINGS] = settings
    app[METRICS] = metrics
    connections = Connections(settings.max_connections, settings.head_timeout, metrics.connections_closed)
    metrics.connections_open.set_function(connections.count)
    app[CONNECTIONS] = connections
    if access_log is not None:
        app[ACCESS_LOG] = access_log
    app[MAX_SIZE] = settings.max_size
    app[PUBLIC_URL] = settings.public_url
    app[ALLOWED_HOSTS] = frozenset(settings.allowed_hosts)
    app[COLOR_FILTERS] = settings.color_filters
    app[REQUEST_TIMEOUT] = settings.request_timeout
    app[SIGNER] = UrlSigner(settings.signing_keys) if settings.signing_keys else None
    app[SIGNATURE_FAILURES] = metrics.signature_failures
    app[CACHE_POLICY] = cache_policy
    app[FRAME_POLICY] = FramePolicy(
        required_keys=settings.required_frame_validation_keys,
        valid_types=settings.valid_configuration_types,
        valid_color_types=settings.valid_configuration_types_for_color_thumbs,
    )
    app.cleanup_ctx.extend([_temp_dir, _services])
    app.on_shutdown.append(_stop_being_ready)
    add_routes(app, Observation(metrics, access_log, settings.cors_origin, cache_policy.error(), connections))
    return app
