# Build wheels with a compiler at hand; ship only the wheels.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml setup.cfg README.md ./
COPY thumbproxy ./thumbproxy
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --home-dir /var/lib/thumbproxy --create-home thumbproxy \
 && mkdir -p /var/cache/thumbproxy /var/tmp/thumbproxy \
 && chown thumbproxy /var/cache/thumbproxy /var/tmp/thumbproxy
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels thumbproxy && rm -rf /wheels
COPY config /etc/thumbproxy
ENV THUMBPROXY_CONFIG=/etc/thumbproxy/thumbproxy.toml \
    THUMBPROXY_CACHE_DIR=/var/cache/thumbproxy \
    TMP_DIR=/var/tmp/thumbproxy/ \
    PYTHONUNBUFFERED=1
USER thumbproxy
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/robots.txt', timeout=2)"
CMD ["thumbproxy", "serve"]
