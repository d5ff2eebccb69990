# syntax=docker/dockerfile:1
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    MAILTRIAGE_STORAGE_DIR=/data \
    MAILTRIAGE_MIGRATIONS_DIR=/app/migrations

WORKDIR /app
COPY pyproject.toml README.md ./
COPY src ./src
COPY migrations ./migrations
COPY templates ./templates
COPY config.example.toml ./
COPY deploy/config.docker.toml /etc/mailtriage/config.toml
RUN pip install --no-cache-dir . \
    && useradd --uid 10001 --create-home --home-dir /home/mailtriage mailtriage \
    && mkdir -p /data && chown 10001:10001 /data

USER 10001
# The storage directory: raw messages and attachments (blobs/), the reply-token
# secret, and the SQLite database when no MAILTRIAGE_DATABASE_URL is given.
VOLUME ["/data"]
# SMTP intake, and HTTP (/healthz /readyz /metrics).
EXPOSE 2525 8025
# Liveness: /healthz answers while the process is up (slim images have no curl).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8025/healthz', timeout=4)"]
ENTRYPOINT ["mailtriage"]
CMD ["--config", "/etc/mailtriage/config.toml", "run"]
