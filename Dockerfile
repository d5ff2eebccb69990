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
RUN pip install --no-cache-dir . \
    && useradd --uid 10001 --create-home --home-dir /home/mailtriage mailtriage \
    && mkdir -p /data && chown 10001:10001 /data

USER 10001
VOLUME ["/data"]
EXPOSE 2525
ENTRYPOINT ["mailtriage"]
CMD ["--config", "/app/config.example.toml", "run"]
