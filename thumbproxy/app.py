"""The application factory: settings in, a wired web.Application out."""

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import unquote, urlsplit

import aiohttp
from aiohttp import web

from thumbproxy.archive.base import Archive
from thumbproxy.archive.local import LocalArchive
from thumbproxy.archive.ocs import OcsArchive
from thumbproxy.cache.disk import DiskCache
from thumbproxy.config import Settings
from thumbproxy.framechecks import FramePolicy
from thumbproxy.renderpool import RenderPool
from thumbproxy.tempfiles import sweep_stale
from thumbproxy.thumbnails import Thumbnailer
from thumbproxy.web.errors import json_errors
from thumbproxy.web.routes import ARCHIVE, FRAME_POLICY, MAX_SIZE, PUBLIC_URL, THUMBNAILER, add_routes

log = logging.getLogger(__name__)

SETTINGS = web.AppKey("settings", Settings)
RENDER_POOL = web.AppKey("render_pool", RenderPool)
DISK_CACHE = web.AppKey("disk_cache", DiskCache)
HTTP_SESSION = web.AppKey("http_session", aiohttp.ClientSession)

MIB = 1024 * 1024


async def _temp_dir(app: web.Application) -> AsyncIterator[None]:
    tmp_dir = Path(app[SETTINGS].tmp_dir)
    await asyncio.to_thread(tmp_dir.mkdir, parents=True, exist_ok=True)
    await asyncio.to_thread(sweep_stale, tmp_dir)
    yield


async def _http_session(app: web.Application) -> AsyncIterator[None]:
    # No cookie jar: a cookie the archive sets for one caller must never ride along for another.
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
        app[HTTP_SESSION] = session
        yield


def _archive(settings: Settings, session: aiohttp.ClientSession) -> Archive:
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
    )


async def _disk_cache(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    directory = Path(settings.cache_dir) / "thumbnails"
    cache = await asyncio.to_thread(DiskCache, directory, settings.cache_size_mb * MIB)
    app[DISK_CACHE] = cache
    yield
    await asyncio.to_thread(cache.close)


async def _render_pool(app: web.Application) -> AsyncIterator[None]:
    pool = RenderPool(app[SETTINGS].workers)
    app[RENDER_POOL] = pool
    await pool.start()
    yield
    await pool.close()


async def _thumbnailer(app: web.Application) -> AsyncIterator[None]:
    archive = _archive(app[SETTINGS], app[HTTP_SESSION])
    app[ARCHIVE] = archive
    app[THUMBNAILER] = Thumbnailer(archive, app[DISK_CACHE], app[RENDER_POOL])
    yield


def create_app(settings: Settings) -> web.Application:
    """The service: routes, error handling, and everything with a lifetime in cleanup_ctx."""
    app = web.Application(middlewares=[json_errors])
    app[SETTINGS] = settings
    app[MAX_SIZE] = settings.max_size
    app[PUBLIC_URL] = settings.public_url
    app[FRAME_POLICY] = FramePolicy(
        required_keys=settings.required_frame_validation_keys,
        valid_types=settings.valid_configuration_types,
        valid_color_types=settings.valid_configuration_types_for_color_thumbs,
    )
    app.cleanup_ctx.extend([_temp_dir, _http_session, _disk_cache, _render_pool, _thumbnailer])
    add_routes(app)
    return app
