# Training on CPU: the package with the train extra (torch, Lightning, Hydra, MLflow).
#   docker build -f docker/train.Dockerfile -t vocalis-train:dev .
#   docker run -v "$PWD/work:/workspace" vocalis-train:dev train experiment=demo
# Runs, the feature cache and mlflow.db go under /workspace (VOCALIS_HOME); mount it to keep them.
# torch comes from PyPI as uv.lock resolves it (its Linux wheel also carries the CUDA libraries); it runs on
# the CPU here. The base image is a build argument, as in api.Dockerfile.
ARG BASE_IMAGE=python:3.11-slim
ARG UV_VERSION=0.13.9

FROM ${BASE_IMAGE} AS builder
ARG UV_VERSION
ENV UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=python3 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PROJECT_ENVIRONMENT=/app/.venv \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    PIP_DISABLE_PIP_VERSION_CHECK=1
COPY docker/certs/ /tmp/certs/
RUN if [ -f /tmp/certs/ca-certificates.crt ]; then cp /tmp/certs/ca-certificates.crt "$SSL_CERT_FILE"; fi \
    && python3 -m venv /opt/uv \
    && /opt/uv/bin/pip install --no-cache-dir --cert "$SSL_CERT_FILE" "uv==${UV_VERSION}"
WORKDIR /app
COPY pyproject.toml uv.lock README.md ./
RUN /opt/uv/bin/uv sync --locked --no-dev --extra train --extra gcs --no-install-project --no-cache
COPY src/ src/
RUN /opt/uv/bin/uv sync --locked --no-dev --extra train --extra gcs --no-editable --no-cache \
    && rm -rf src

FROM ${BASE_IMAGE} AS runtime
LABEL org.opencontainers.image.title="vocalis-train" \
      org.opencontainers.image.description="vocalis training (PyTorch Lightning + Hydra), CPU"
RUN groupadd --system --gid 10001 vocalis \
    && useradd --system --uid 10001 --gid vocalis --home-dir /workspace --shell /usr/sbin/nologin vocalis \
    && mkdir -p /workspace \
    && chown vocalis:vocalis /workspace
COPY --from=builder --chown=vocalis:vocalis /app/.venv /app/.venv
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    VOCALIS_HOME=/workspace
WORKDIR /workspace
USER 10001:10001
ENTRYPOINT ["vocalis"]
CMD ["train", "experiment=demo"]
