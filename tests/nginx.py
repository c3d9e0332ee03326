"""nginx as a caching reverse proxy in front of the service, configured as a user would deploy it.

    proxy = CachingProxy(upstream_port=service.client.server.port, prefix=tmp_path / "nginx")
    proxy.start()
    ...  # GET proxy.base_url + "/<frame_id>/?image=true"; X-Cache-Status says MISS, HIT, REVALIDATED...
    proxy.stop()

Everything nginx writes (pid file, logs, temporary files, the cache) stays under `prefix`.
"""

import grp
import os
import pwd
import shutil
import socket
import subprocess
import time
from pathlib import Path

from conftest import free_port

# Debian puts nginx in /usr/sbin, which is not on an unprivileged user's PATH.
DEBIAN_NGINX_DIR = "/usr/sbin"
STARTUP_SECONDS = 10
STOP_SECONDS = 10
CACHE_STATUS_HEADER = "X-Cache-Status"

# The caching part is nginx's documented proxy_cache setup and nothing more: nginx decides what to keep,
# for how long and for whom from the service's own headers (Cache-Control, ETag, Vary).
CONFIG = """\
daemon off;
worker_processes 1;
# Only honoured when started as root: workers then run as the test's user, who owns the prefix.
user {user} {group};
pid nginx.pid;
error_log error.log warn;

events {{
    worker_connections 64;
}}

http {{
    access_log access.log;
    # Debian's compiled-in temporary directories are under /var/lib/nginx; a test keeps its own.
    client_body_temp_path client_body;
    proxy_temp_path proxy_temp;
    fastcgi_temp_path fastcgi_temp;
    uwsgi_temp_path uwsgi_temp;
    scgi_temp_path scgi_temp;

    proxy_cache_path cache levels=1:2 keys_zone=thumbnails:1m max_size=100m inactive=1h use_temp_path=off;

    server {{
        listen 127.0.0.1:{port};

        location / {{
            proxy_pass http://127.0.0.1:{upstream_port};
            proxy_cache thumbnails;
            proxy_cache_key "$scheme$proxy_host$request_uri";
            proxy_cache_revalidate on;
            add_header {cache_status_header} $upstream_cache_status always;
        }}
    }}
}}
"""


class NginxError(Exception):
    """nginx failed to start; the message carries what it wrote."""


def nginx_executable() -> str | None:
    """The nginx binary: $NGINX, else nginx on the PATH or in /usr/sbin; None if there is none."""
    search_path = os.pathsep.join(filter(None, (os.environ.get("PATH"), DEBIAN_NGINX_DIR)))
    return os.environ.get("NGINX") or shutil.which("nginx", path=search_path)


class CachingProxy:
    """One nginx master with one worker, caching what it proxies to 127.0.0.1:`upstream_port`."""

    def __init__(self, upstream_port: int, prefix: Path) -> None:
        self.upstream_port = upstream_port
        self.prefix = prefix
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Write the configuration, start nginx and return once it accepts connections."""
        executable = nginx_executable()
        if executable is None:
            raise NginxError("nginx is not installed (apt-get install nginx, or set NGINX)")
        self.prefix.mkdir(parents=True, exist_ok=True)
        config = self.prefix / "nginx.conf"
        config.write_text(
            CONFIG.format(
                user=pwd.getpwuid(os.geteuid()).pw_name,
                group=grp.getgrgid(os.getegid()).gr_name,
                port=self.port,
                upstream_port=self.upstream_port,
                cache_status_header=CACHE_STATUS_HEADER,
            )
        )
        with open(self.prefix / "stderr.log", "wb") as stderr:
            # -e: the compiled-in error log (/var/log/nginx) is opened before the configuration is read.
            self._process = subprocess.Popen(
                [executable, "-p", f"{self.prefix}/", "-c", str(config), "-e", str(self.prefix / "error.log")],
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
            )
        deadline = time.monotonic() + STARTUP_SECONDS
        while not self._accepts_connections():
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise NginxError(f"nginx did not start on port {self.port}:\n{self.logs()}")
            time.sleep(0.02)

    def stop(self) -> None:
        """Stop nginx (fast shutdown: open connections are closed) and wait for it to exit."""
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None

    def logs(self) -> str:
        """What nginx wrote to its stderr and error log, for failure messages."""
        return "\n".join(
            path.read_text(errors="replace")
            for path in (self.prefix / "stderr.log", self.prefix / "error.log")
            if path.exists()
        )

    def _accepts_connections(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False
