# The inference service: ONNX model in, HTTP API out. Only the base dependencies (no torch, no train extra).
#   docker build -f docker/api.Dockerfile -t vocalis-api:dev .
#   docker run -p 8000:8000 -v "$PWD/artifacts/demo:/models/current:ro" vocalis-api:dev
# The base image is a build argument: the official Python image by default, a local one where registries
# cannot be reached (docker/local-base.sh builds it; `make image` chooses).
ARG BASE_IMAGE=python:3.11-slim
ARG UV_VERSION=0.13.9

FROM ${BASE_IMAGE} AS builder
ARG UV_VERSION
# optional extras of the package, space-separated: postgres (the PostgreSQL driver of the prediction log);
# add "registry" for models:/ URIs where that extra exists
ARG EXTRAS="postgres"
# the base's own Python builds the environment; uv never downloads an interpreter
ENV UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=python3 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PROJECT_ENVIRONMENT=/app/.venv \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# a TLS-intercepting proxy's bundle, when make image put one there (see docker/certs/README.md)
COPY docker/certs/ /tmp/certs/
RUN if [ -f /tmp/certs/ca-certificates.crt ]; then cp /tmp/certs/ca-certificates.crt "$SSL_CERT_FILE"; fi \
    && python3 -m venv /opt/uv \
    && /opt/uv/bin/pip install --no-cache-dir --cert "$SSL_CERT_FILE" "uv==${UV_VERSION}"
WORKDIR /app
# dependencies first (a layer reused while only the source changes), then the project itself
COPY pyproject.toml uv.lock README.md ./
# the extras list is split into words on purpose
# hadolint ignore=SC2086
RUN extras=""; for e in $EXTRAS; do extras="$extras --extra $e"; done \
    && /opt/uv/bin/uv sync --locked --no-dev $extras --no-install-project --no-cache
COPY src/ src/
# the package itself, then the size diet: the installed packages' test suites, C headers and Cython
# sources are never used by the service (about 80 MB, measured on the API image)
# the extras list is split into words on purpose
# hadolint ignore=SC2086
RUN extras=""; for e in $EXTRAS; do extras="$extras --extra $e"; done \
    && /opt/uv/bin/uv sync --locked --no-dev $extras --no-editable --no-cache \
    && rm -rf src \
    && find /app/.venv/lib -depth -type d \( -name tests -o -name test \) -path "*/site-packages/*" \
        -exec rm -rf {} + \
    && find /app/.venv/lib \( -name "*.pxd" -o -name "*.pyx" -o -name "*.pxi" \) -delete \
    && rm -rf /app/.venv/lib/python3*/site-packages/pyarrow/include

FROM ${BASE_IMAGE} AS runtime
LABEL org.opencontainers.image.title="vocalis-api" \
      org.opencontainers.image.description="vocalis inference service (ONNX Runtime, FastAPI)" \
      org.opencontainers.image.licenses="Apache-2.0"
# a fixed non-root user; the model is mounted read-only and the log goes to a writable /data
RUN groupadd --system --gid 10001 vocalis \
    && useradd --system --uid 10001 --gid vocalis --home-dir /app --shell /usr/sbin/nologin vocalis \
    && mkdir -p /models /data \
    && chown vocalis:vocalis /data
COPY --from=builder --chown=vocalis:vocalis /app/.venv /app/.venv
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PORT=8000 \
    VOCALIS_MODEL=/models/current \
    VOCALIS_DATABASE_URL=sqlite:////data/predictions.db
WORKDIR /app
USER 10001:10001
EXPOSE 8000
# the probe uses Python's standard library: the slim image has no curl
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('PORT', '8000')}/health\", timeout=4)"]
# VOCALIS_MODEL is a mounted artifact directory or a models:/NAME@ALIAS URI (needs the registry extra);
# PORT is set by Cloud Run
CMD ["sh", "-c", "exec vocalis serve --model \"$VOCALIS_MODEL\" --host 0.0.0.0 --port \"$PORT\""]
