# syntax=docker/dockerfile:1
# nareta: one image, a role per container (scripts/docker-entrypoint.sh): build, api,
# scheduler, worker, score. It installs with scripts/setup.sh, as README's quick start does.

# ---- build: create /app/.venv with CPU-only torch and the project ---------------------
FROM python:3.11-slim AS build
ENV PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu \
    NARETA_EXTRAS=sim,dask
WORKDIR /app
# torch alone first: a layer that survives source changes (torch==2.13.0, CPU wheel index).
COPY pyproject.toml ./
COPY scripts/setup.sh scripts/
RUN NARETA_SETUP_STEP=torch bash scripts/setup.sh
COPY . .
RUN bash scripts/setup.sh && .venv/bin/nareta --help >/dev/null

# ---- runtime: the same /app, a non-root user, artifacts in a volume -----------------
FROM python:3.11-slim AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/app/.venv/bin:$PATH \
    ARTIFACTS_DIR=/artifacts \
    NARETA_HOST=0.0.0.0 \
    NARETA_PORT=8000 \
    MPLCONFIGDIR=/tmp/matplotlib \
    NUMBA_CACHE_DIR=/tmp/numba-cache
RUN groupadd --system --gid 10001 nareta \
    && useradd --system --uid 10001 --gid 10001 --create-home --home-dir /home/nareta nareta \
    && mkdir /artifacts \
    && chown 10001:10001 /artifacts
WORKDIR /app
# root-owned and read-only for the service user; only /artifacts is writable.
COPY --from=build /app /app
USER 10001:10001
VOLUME ["/artifacts"]
EXPOSE 8000 8786 8787
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["/app/scripts/docker-entrypoint.sh", "healthcheck"]
ENTRYPOINT ["/app/scripts/docker-entrypoint.sh"]
CMD ["api"]
