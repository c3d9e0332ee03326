"""Headless Chromium driven over the Chrome DevTools Protocol: no network, no npm, just aiohttp.

async with Chromium() as browser:
    page = await browser.open("http://127.0.0.1:8080/")
    widths = await page.evaluate("[...document.images].map(image => image.naturalWidth)")
"""

import asyncio
import base64
import itertools
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from types import TracebackType
from typing import Any

import aiohttp

STARTUP_SECONDS = 30
CALL_SECONDS = 60
# Everything that would reach the internet or need a display is off: the tests run offline.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--mute-audio",
    "--remote-debugging-port=0",
)
DEVTOOLS_LINE = re.compile(r"DevTools listening on (ws://127\.0\.0\.1:(\d+)/\S+)")


class ChromiumError(Exception):
    """Chromium failed to start or a DevTools call failed; the message carries Chromium's stderr."""


def chromium_executable() -> str:
    """The Chromium binary: $CHROMIUM, else chromium or chromium-browser on the PATH."""
    found = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        raise ChromiumError("chromium is not installed (apt-get install chromium, or set CHROMIUM)")
    return found


class Page:
    """One tab, over its own DevTools websocket."""

    def __init__(self, browser: "Chromium", socket: aiohttp.ClientWebSocketResponse) -> None:
        self._browser = browser
        self._socket = socket
        self._ids = itertools.count(1)
        # Names of the events received so far, for navigate() to wait on.
        self._events: list[str] = []

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Send one DevTools command and return its result; events arriving meanwhile are kept."""
        call_id = next(self._ids)
        await self._socket.send_json({"id": call_id, "method": method, "params": params})
        while True:
            answer = await self._receive(method)
            if answer.get("id") == call_id:
                if "error" in answer:
                    raise self._browser.error(f"{method} failed: {answer['error']}")
                return answer["result"]
            self._events.append(answer.get("method", ""))

    async def navigate(self, url: str) -> None:
        """Show `url` and return once its load event has fired."""
        self._events.clear()
        await self.call("Page.enable")
        result = await self.call("Page.navigate", url=url)
        if "errorText" in result:
            raise self._browser.error(f"loading {url} failed: {result['errorText']}")
        while "Page.loadEventFired" not in self._events:
            self._events.append((await self._receive(f"loading {url}")).get("method", ""))

    async def _receive(self, waiting_for: str) -> dict[str, Any]:
        """The next DevTools message."""
        try:
            async with asyncio.timeout(CALL_SECONDS):
                message = await self._socket.receive()
        except TimeoutError:
            raise self._browser.error(f"{waiting_for}: no answer within {CALL_SECONDS} s") from None
        if message.type != aiohttp.WSMsgType.TEXT:
            raise self._browser.error(f"{waiting_for}: the DevTools connection closed ({message.type.name})")
        return message.json()

    async def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page, awaited if it is a promise."""
        result = await self.call("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in result:
            raise self._browser.error(f"JavaScript failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def set_viewport(self, width: int, height: int) -> None:
        """Lay the page out in a window of this size (CSS pixels)."""
        await self.call(
            "Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False
        )

    async def screenshot(self) -> bytes:
        """A PNG of the whole page, beyond the viewport too."""
        result = await self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        return base64.b64decode(result["data"])


class Chromium:
    """A headless Chromium with a throw-away profile, killed on exit whatever happened."""

    def __init__(self) -> None:
        self._profile = tempfile.TemporaryDirectory(prefix="chromium-profile-", ignore_cleanup_errors=True)
        self._process: subprocess.Popen[str] | None = None
        self._stderr: list[str] = []
        self._session: aiohttp.ClientSession | None = None
        self._http_base = ""

    async def __aenter__(self) -> "Chromium":
        try:
            self._process = subprocess.Popen(
                [chromium_executable(), *FLAGS, f"--user-data-dir={self._profile.name}", "about:blank"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
                start_new_session=True,
            )
            threading.Thread(target=self._read_stderr, daemon=True).start()
            port = await self._devtools_port()
            self._http_base = f"http://127.0.0.1:{port}"
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=CALL_SECONDS))
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await self.close()

    async def open(self, url: str) -> Page:
        """A new tab showing `url`, its document loaded."""
        assert self._session is not None
        # Recent Chromium refuses GET here, to keep web pages from opening tabs.
        async with self._session.put(f"{self._http_base}/json/new?about:blank") as response:
            if response.status != 200:
                raise self.error(f"opening a tab answered {response.status}: {await response.text()}")
            target = await response.json(content_type=None)
        socket = await self._session.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0)
        page = Page(self, socket)
        await page.navigate(url)
        return page

    def error(self, message: str) -> ChromiumError:
        """A ChromiumError with Chromium's stderr so far appended."""
        return ChromiumError(f"{message}\n--- chromium stderr ---\n{''.join(self._stderr)}")

    async def close(self) -> None:
        """Close the connection, end Chromium and its helpers, and remove the profile."""
        if self._session is not None:
            await self._session.close()
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                await asyncio.to_thread(self._process.wait, 10)
            except subprocess.TimeoutExpired:
                # Its own session: the group is exactly this Chromium and the helpers it started.
                os.killpg(self._process.pid, signal.SIGKILL)
                await asyncio.to_thread(self._process.wait, 10)
        self._profile.cleanup()

    def _read_stderr(self) -> None:
        assert self._process is not None and self._process.stderr is not None
        for line in self._process.stderr:
            self._stderr.append(line)

    async def _devtools_port(self) -> int:
        """The port Chromium printed on its stderr once DevTools listens."""
        assert self._process is not None
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            found = DEVTOOLS_LINE.search("".join(self._stderr))
            if found:
                return int(found.group(2))
            if self._process.poll() is not None:
                raise self.error(f"chromium exited with status {self._process.returncode}")
            await asyncio.sleep(0.05)
        raise self.error(f"chromium did not open DevTools within {STARTUP_SECONDS} s")
