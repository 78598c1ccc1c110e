# syntax=docker/dockerfile:1
# incident-bot: `docker build -t incident-bot .` then `docker run -p 8080:8080 -v incident-bot-data:/data --env-file .env incident-bot`
# Two stages: the builder turns the app and every dependency into wheels; the runtime stage installs those
# wheels offline into a venv. The final image has no compiler, no build backend and no source checkout.

ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# Only what the wheel is built from (README.md is the package's long description).
COPY pyproject.toml README.md ./
COPY incident_bot ./incident_bot
COPY storage ./storage
COPY rca_templates ./rca_templates
# The app's wheel (templates, migrations and data files are package data) and wheels of all its dependencies.
RUN pip wheel --wheel-dir /wheels .


FROM python:${PYTHON_VERSION}-slim AS runtime
ARG UID=10001
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PATH=/opt/venv/bin:$PATH \
    DATABASE_URL=sqlite:////data/incident-bot.db

RUN groupadd --system --gid ${UID} incident-bot \
 && useradd --system --uid ${UID} --gid incident-bot --home-dir /data --no-create-home \
            --shell /usr/sbin/nologin incident-bot \
 && mkdir -p /data \
 && chown incident-bot:incident-bot /data

# Install from the builder's wheels (bind-mounted, so they never become a layer of this image) into a venv
# without pip/setuptools (the base image's pip installs into it), drop the base image's setuptools and wheel,
# and check that the app imports. /usr/local/bin/python is the base interpreter; `python` on PATH is the venv's.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    /usr/local/bin/python -m venv --without-pip /opt/venv \
 && /usr/local/bin/python -m pip --python /opt/venv/bin/python install --no-index --find-links=/wheels incident-bot \
 && /usr/local/bin/python -m pip uninstall --yes setuptools wheel \
 && /opt/venv/bin/python -c "import incident_bot.server, incident_bot.slack.app, incident_bot.scheduler, storage.migrate"

USER incident-bot
# Working directory = the data volume: the SQLite file, exports (-o) and an optional .env live here.
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8080

# No curl in slim images: the interpreter does the probe. Exits non-zero on a refused connection or non-2xx.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)"]

ENTRYPOINT ["incident-bot"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8080"]
