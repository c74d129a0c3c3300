# shoprec: HTTP API + web page. Build: docker build -t shoprec .   Run: see docker-compose.yml
#
# Two stages: the build stage installs into a virtualenv, the runtime stage copies only that
# venv, runs as a non-root user and keeps the store (or, with Qdrant server, events and model
# state) on the /data volume.

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# CPU wheels of the exact torch/torchvision pair pinned in pyproject.toml (keep in step): the
# default PyPI wheels pull in gigabytes of CUDA libraries a CPU service never uses.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
RUN pip install --index-url "$TORCH_INDEX_URL" torch==2.14.1 torchvision==0.29.1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY shoprec ./shoprec
# the postgres extra: several workers share behaviour state in PostgreSQL (SHOPREC_DATABASE_URL)
RUN pip install ".[postgres]"

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin shoprec \
    && mkdir -p /data/store /data/catalog \
    && chown -R shoprec:shoprec /data
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 \
    SHOPREC_STORE=/data/store \
    SHOPREC_IMAGE_ROOT=/data/catalog
USER shoprec
WORKDIR /data
VOLUME ["/data/store"]
EXPOSE 8000
# No curl in slim images: the healthcheck is the venv's own Python.
HEALTHCHECK --interval=30s --timeout=5s --start-period=90s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4).status != 200)"]
# One worker per container: the embedded store is single-process. Several containers share a Qdrant
# server and PostgreSQL (docker-compose.yml), each following the others' events.
CMD ["shoprec", "serve", "--host", "0.0.0.0", "--port", "8000"]
