# syntax=docker/dockerfile:1
# callstream image: a builder stage installs the package into a venv, the runtime
# stage copies the venv onto a slim Python with the Azure Speech SDK's system
# libraries and runs `callstream serve` as a non-root user.
#
#   docker build -t callstream:0.1.0 .
#   docker run -p 8080:8080 -e CALLSTREAM_API_TOKENS=... callstream:0.1.0
#
# Both stages use the same base image, so the venv's interpreter path is valid in both.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
# A compiler in case pip has to build a dependency from source on an architecture
# without wheels (amd64 gets wheels for everything). Never in the runtime image.
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# The dependency layer: only the lock file, so that it is cached across code changes.
# Every package is pinned and hash-checked (requirements.lock, made by
# `bash install.sh --lock` from pyproject.toml's ranges).
COPY requirements.lock ./
RUN pip install --require-hashes --no-deps -r requirements.lock
# The code layer. What setuptools needs: the metadata (README.md is the long description)
# and the packages, with their package data (pipeline/cli/assets, pipeline/api/console). A regular
# (non-editable) install copies them into the venv; the build uses the locked setuptools.
COPY pyproject.toml README.md ./
COPY models ./models
COPY workers ./workers
COPY pipeline ./pipeline
RUN pip install --no-deps --no-build-isolation . \
 && pip check \
 && callstream --help >/dev/null

FROM ${PYTHON_IMAGE} AS runtime
# libssl3, libuuid1, ca-certificates: the Azure Speech SDK (CALLSTREAM_STT=azure).
# tini: PID 1 that forwards SIGTERM to callstream (which drains) and reaps the
# speech worker processes.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libssl3 libuuid1 ca-certificates tini \
 && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 callstream \
 && useradd --system --uid 10001 --gid 10001 --home-dir /home/callstream --create-home \
      --shell /usr/sbin/nologin callstream \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/callstream
COPY --from=builder /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    CALLSTREAM_HOST=0.0.0.0 \
    CALLSTREAM_PORT=8080 \
    CALLSTREAM_DATA_DIR=/var/lib/callstream
WORKDIR /var/lib/callstream
# Numeric, so that Kubernetes' runAsNonRoot can verify it.
USER 10001:10001
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request as u; u.urlopen('http://127.0.0.1:' + os.environ.get('CALLSTREAM_PORT', '8080') + '/healthz', timeout=2)"]
ENTRYPOINT ["tini", "--"]
# The host and port come from CALLSTREAM_HOST / CALLSTREAM_PORT (above, or from the
# deployment). `serve` refuses a non-loopback host unless CALLSTREAM_API_TOKENS is set.
CMD ["callstream", "serve"]
