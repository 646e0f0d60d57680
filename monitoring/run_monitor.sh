#!/usr/bin/env bash
# Start `vocalis serve` and a real Prometheus that scrapes it and evaluates monitoring/prometheus/alerts.yml.
# Used by `make monitor`. Environment: RUN (command prefix, e.g. "uv run --locked"), MODEL, PORT, PROM_PORT.
# Prometheus comes from the Debian package `prometheus` (apt-get install -y prometheus); no container needed.
set -euo pipefail
MODEL="${MODEL:-artifacts/demo}"
PORT="${PORT:-8000}"
PROM_PORT="${PROM_PORT:-9090}"
STATE="${STATE:-${TMPDIR:-/tmp}/vocalis-monitor}"
HERE="$(cd "$(dirname "$0")" && pwd)"

command -v prometheus >/dev/null || { echo "prometheus not found: apt-get install -y prometheus" >&2; exit 1; }
mkdir -p "$STATE/prometheus-data"
# the scrape target follows PORT; the rules file is the repository's own
sed "s/127.0.0.1:8000/127.0.0.1:${PORT}/" "$HERE/prometheus/prometheus.yml" > "$STATE/prometheus.yml"
cp "$HERE/prometheus/alerts.yml" "$STATE/alerts.yml"

VOCALIS_DRIFT_INTERVAL_S="${VOCALIS_DRIFT_INTERVAL_S:-60}" $RUN vocalis serve --model "$MODEL" \
  --host 127.0.0.1 --port "$PORT" &
SERVE_PID=$!
trap 'kill "$SERVE_PID" 2>/dev/null || true' EXIT INT TERM

echo "vocalis:    http://127.0.0.1:${PORT}/  (metrics at /metrics)"
echo "prometheus: http://127.0.0.1:${PROM_PORT}/alerts  (Ctrl-C stops both)"
prometheus --config.file="$STATE/prometheus.yml" --storage.tsdb.path="$STATE/prometheus-data" \
  --web.listen-address="127.0.0.1:${PROM_PORT}" --log.level=warn
