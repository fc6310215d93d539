# syntax=docker/dockerfile:1
# meshserve's image: one `meshserve instance` per container (what the pods in
# deploy/kubernetes/ run).
#
#   docker build -t meshserve:0.1.0 .
#   docker run --rm -e MESHSERVE_STORE__URL=etcd://etcd:2379 meshserve:0.1.0
#
# It runs as uid/gid 10001, needs no root, no capabilities, no shell and no
# writable root filesystem: it writes only to /var/lib/meshserve (the data
# dir: pulled models, artifact cache) and /tmp. Settings come from
# MESHSERVE_* variables and `--config FILE` (a meshserve settings file or
# ModelMesh Serving's model-serving-config). No HEALTHCHECK: Kubernetes
# ignores it and probes /v2/health/ready and /v2/health/live on 8008.

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN python -m pip wheel --no-deps --wheel-dir /wheels . \
 && python -m venv /opt/meshserve \
 && wheel=$(ls /wheels/meshserve-*.whl) \
 && /opt/meshserve/bin/pip install "${wheel}[formats,storage,etcd,operator]" \
 && /opt/meshserve/bin/pip uninstall --yes pip setuptools

FROM ${PYTHON_IMAGE}
# The venv's python links to /usr/local/bin/python3.11, which this stage
# has too (same base image).
COPY --from=build /opt/meshserve /opt/meshserve
# lightgbm's wheel links to the system's OpenMP, which the slim image lacks
# (xgboost-cpu and scikit-learn bundle theirs; onnxruntime uses none).
RUN apt-get update \
 && apt-get install --yes --no-install-recommends libgomp1 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 meshserve \
 && useradd --system --uid 10001 --gid 10001 --no-create-home \
      --home-dir /var/lib/meshserve --shell /usr/sbin/nologin meshserve \
 && install --directory --owner 10001 --group 10001 --mode 0750 /var/lib/meshserve
ENV PATH=/opt/meshserve/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/var/lib/meshserve \
    MESHSERVE_DATA_DIR=/var/lib/meshserve \
    MESHSERVE_SERVER__HOST=0.0.0.0 \
    MESHSERVE_METRICS__HOST=0.0.0.0 \
    MESHSERVE_MESH__INTERNAL_PORT=8080
WORKDIR /var/lib/meshserve
# Numeric, so Kubernetes' runAsNonRoot can check it without /etc/passwd.
USER 10001:10001
# gRPC (inference + management), REST, the internal port instances forward
# to, Prometheus metrics.
EXPOSE 8033 8008 8080 2112
ENTRYPOINT ["meshserve", "instance"]
