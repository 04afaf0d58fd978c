# The opsdash image: aggregator, probes, gateway (with the built dashboard) and the demo simulator.
#   docker compose build      (or: docker build -t opsdash:latest .)
# Not built on the machine this was written on (no Docker engine there): the compose file is checked
# against the Compose specification instead (tests/deploy/test_compose.py).

FROM node:20-bookworm-slim AS frontend
WORKDIR /src/frontend
COPY frontend/package.json frontend/package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error
COPY frontend/ ./
RUN npm run build

FROM python:3.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
# the package, the reference platform schema (the simulator seeds it), the deploy files
COPY pyproject.toml README.md ./
COPY telemetry_bus/ telemetry_bus/
COPY probes/ probes/
COPY gateway/ gateway/
COPY opsdash/ opsdash/
COPY docs/ docs/
COPY deploy/ deploy/
COPY --from=frontend /src/frontend/dist/ frontend/dist/
# editable: opsdash finds docs/, deploy/ and frontend/dist beside its packages in /app
RUN pip install -e . && useradd --system --uid 10001 --no-create-home opsdash
USER opsdash
EXPOSE 8787
CMD ["opsdash", "--help"]
