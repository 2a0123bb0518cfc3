# The `ledger` CLI in a container: docker-compose.yml runs `ledger db migrate`,
# `ledger relay run --follow`, `ledger projections run --all --follow` and
# `ledger serve` (the HTTP API) from this image.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# The dependencies (psycopg[binary], pydantic-core, confluent-kafka with librdkafka
# inside) ship manylinux wheels, so the slim image needs no compiler and no system
# package; `pip install .` installs them from pyproject.toml. .dockerignore keeps .venv, .git and local databases out.
COPY . .
RUN pip install . \
    && useradd --system --uid 10001 --no-create-home --home-dir /nonexistent ledger

# A non-root user: the workers only talk to PostgreSQL and Kafka over the network.
USER ledger

ENTRYPOINT ["ledger"]
CMD ["--help"]
