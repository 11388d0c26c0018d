# Shortlist: GraphQL recommendations on an embedded LanceDB catalog.
# docker build -t shortlist . && docker run -p 8000:8000 shortlist   -> http://localhost:8000/graphql
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    LANCE_LOG=error \
    SHORTLIST_DB_PATH=/app/data/shortlist.lancedb \
    SHORTLIST_HOST=0.0.0.0 \
    SHORTLIST_PORT=8000

# libgomp: OpenMP for implicit, CatBoost and torch. Unpinned on purpose: the base image's Debian
# release fixes the version, and a rebuild should pick up its security updates.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 shortlist \
    && useradd --system --uid 10001 --gid shortlist --home-dir /app shortlist
WORKDIR /app

# CPU-only torch first, so sentence-transformers never pulls a CUDA build.
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0

COPY pyproject.toml README.md ./
COPY app ./app
COPY schema ./schema
COPY pipelines ./pipelines
RUN pip install .

# The demo catalog is generated and built at image build time (no dataset, no download).
RUN mkdir -p /app/data \
    && shortlist generate --items 5000 --users 1000 --seed 7 --out /app/data/demo \
    && shortlist build --source /app/data/demo --format generic \
    && chown -R 10001:10001 /app

# numeric, so orchestrators can check it is not root without reading /etc/passwd
USER 10001:10001
EXPOSE 8000
# slim has no curl: Python asks /healthz (the process answers); /readyz is for load balancers
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]

CMD ["shortlist", "serve"]
