# customer-service container image.
#
#     docker build -t customer-service .
#     docker run -p 8080:8080 customer-service         # SQLite inside the container
#
# The image is configured through CUSTOMER_SERVICE_<SECTION>_<KEY> environment
# variables (docs/configuration.md); docker-compose.yml runs two instances on
# MariaDB + Redis behind nginx. See docs/deploy.md.

# Both stages must use the same Python: the final stage runs the virtualenv
# built in the first one, whose interpreter is a link to this image's python.
ARG PYTHON_IMAGE=python:3.11-slim

# ---------------------------------------------------------------------------
# Builder: build the project's wheel (and pick the dependencies' wheels), then
# install them into a self-contained virtualenv.
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

WORKDIR /src

# --build-constraint needs a recent pip (as for the zipapp, see README.md).
RUN python -m pip install --upgrade pip

# The pinned versions the zipapp uses too (tools/build_zipapp.py --lock), so
# the image and the zipapp run the same dependencies. Copied before the
# sources, so editing the code does not invalidate this layer's cache.
COPY tools/zipapp-constraints.txt tools/zipapp-build-constraints.txt tools/
COPY pyproject.toml README.md ./
COPY customer_service/ customer_service/

# Dependencies only as published wheels (msgspec is compiled: no compiler in
# a slim image, and none needed).
RUN python -m pip wheel --wheel-dir /wheels --only-binary=:all: \
        --constraint tools/zipapp-constraints.txt \
        --build-constraint tools/zipapp-build-constraints.txt \
        . \
 && python -m venv /opt/customer-service \
 && /opt/customer-service/bin/pip install --no-index --find-links /wheels customer-service \
 && /opt/customer-service/bin/customer-service --version

# ---------------------------------------------------------------------------
# Final image: python + the virtualenv, nothing from the build (no wheels, no
# sources, no pip cache).
FROM ${PYTHON_IMAGE}

# CUSTOMER_SERVICE_SERVER_HOST: listen on every interface of the container (the
# default, 127.0.0.1, is unreachable from outside it). The port stays 8080.
ENV PATH=/opt/customer-service/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    CUSTOMER_SERVICE_SERVER_HOST=0.0.0.0

# An unprivileged system user with a fixed uid (so volume permissions and
# Kubernetes' runAsNonRoot work), whose home is the working directory: with no
# config at all, the SQLite file customer-service.db is created there.
RUN useradd --system --uid 10001 --user-group \
        --home-dir /var/lib/customer-service --create-home \
        --shell /usr/sbin/nologin customer-service

COPY --from=builder /opt/customer-service /opt/customer-service

WORKDIR /var/lib/customer-service
USER 10001:10001

EXPOSE 8080

# /healthz answers 200 when the server and its database are fine, 503 when the
# database is not; urlopen raises on a non-2xx answer and on a refused
# connection, so the exit status is 1 then. (Slim images have no curl.)
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('CUSTOMER_SERVICE_SERVER_PORT', '8080') + '/healthz', timeout=4)"]

# `docker run IMAGE agents list` runs any subcommand; no argument serves.
# SIGTERM (docker stop) shuts the server down gracefully within
# [server] shutdown_timeout (5 s), inside docker's default 10 s.
ENTRYPOINT ["customer-service"]
CMD ["serve"]
