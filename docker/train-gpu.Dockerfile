# Training on one NVIDIA GPU (Vertex AI custom jobs, deploy/gcp/vertex-train-job.yaml).
#   docker build -f docker/train-gpu.Dockerfile -t vocalis-train-gpu:dev .
#   docker run --gpus 1 -v "$PWD/work:/workspace" vocalis-train-gpu:dev train experiment=wmms_resnet34 trainer=gpu
# The CUDA runtime base gives the driver-facing libraries; torch's PyPI wheel brings its own CUDA user-space
# libraries through uv.lock. Ubuntu 24.04's Python is 3.12, inside the project's supported range.
ARG BASE_IMAGE=nvidia/cuda:12.6.3-runtime-ubuntu24.04
ARG UV_VERSION=0.13.9

FROM ${BASE_IMAGE} AS base
ENV DEBIAN_FRONTEND=noninteractive
# Ubuntu's Python and venv; versions follow the base image's release (pinning them breaks on every rebuild)
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/*

FROM base AS builder
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

FROM base AS runtime
LABEL org.opencontainers.image.title="vocalis-train-gpu" \
      org.opencontainers.image.description="vocalis training (PyTorch Lightning + Hydra), CUDA"
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
CMD ["train", "experiment=wmms_resnet34", "trainer=gpu"]
