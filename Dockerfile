# dersync: one container running `dersync run` (the daemon). Configuration comes only from
# DERSYNC_* environment variables, a mounted /app/config/dersync.toml and /run/secrets.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY dersync ./dersync
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    DERSYNC_DATABASE_URL=sqlite:////data/dersync.db \
    DERSYNC_ADMIN_BIND=0.0.0.0:8080 \
    DERSYNC_LOG_FORMAT=json
RUN useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin dersync \
    && mkdir -p /app/config /data && chown dersync /data
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
WORKDIR /app
USER dersync
VOLUME ["/data"]
EXPOSE 8080
# Liveness: /healthz answers from the event loop, so a hung process fails it. About 60 s of
# failures (6 x 10 s) marks it unhealthy: well after a standby took over (within
# DERSYNC_FAILOVER_SECONDS, 30 by default), so restarting it costs nothing but the replica.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=6 \
  CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)" || exit 1
CMD ["dersync", "run"]
