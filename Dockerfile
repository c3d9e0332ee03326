# thumbproxy image: `docker build -t thumbproxy .` from the repository root.
#
# Two stages: the first has a compiler, for any dependency without a wheel for this platform,
# and builds a virtual environment; the second gets only that environment, so no compiler,
# header or pip cache ships.

FROM python:3.11-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/thumbproxy
ENV PATH=/opt/thumbproxy/bin:$PATH
WORKDIR /src
# Only what the package is built from (setup.cfg names the dependencies and package data).
COPY pyproject.toml setup.cfg README.md ./
COPY thumbproxy ./thumbproxy
RUN pip install --no-cache-dir .


FROM python:3.11-slim
# tini as PID 1 passes SIGTERM on to the server and reaps render workers left over when a
# forkserver dies; Python as PID 1 would do neither of the latter.
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/*
# A fixed numeric uid, so Kubernetes' runAsNonRoot can verify it without looking up names.
RUN groupadd --system --gid 10001 thumbproxy \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/thumbproxy --create-home thumbproxy \
 && mkdir -p /var/cache/thumbproxy /var/tmp/thumbproxy \
 && chown thumbproxy:thumbproxy /var/cache/thumbproxy /var/tmp/thumbproxy
COPY --from=build /opt/thumbproxy /opt/thumbproxy
COPY config/thumbproxy.toml /etc/thumbproxy/thumbproxy.toml
ENV PATH=/opt/thumbproxy/bin:$PATH \
    THUMBPROXY_CONFIG=/etc/thumbproxy/thumbproxy.toml \
    THUMBPROXY_CACHE_DIR=/var/cache/thumbproxy \
    TMP_DIR=/var/tmp/thumbproxy/ \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
# The disk cache is worth keeping across restarts; downloads in TMP_DIR are not, but with a
# read-only root filesystem both must be mounts.
VOLUME ["/var/cache/thumbproxy", "/var/tmp/thumbproxy"]
USER 10001:10001
EXPOSE 8080
# /healthz answers from the event loop alone, so a slow archive or S3 never marks the
# container unhealthy. The port follows THUMBPROXY_PORT when it is overridden.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('THUMBPROXY_PORT', '8080'), timeout=4)"]
ENTRYPOINT ["tini", "--"]
CMD ["thumbproxy", "serve"]
