#!/usr/bin/env bash
# `make loadtest`: start `vocalis serve` on a model, run Locust headless against it for a bounded time,
# write the CSV report, stop the server. Settings: MODEL (artifact dir), USERS, DURATION, OUT, PORT.
set -euo pipefail
MODEL="${MODEL:-artifacts/demo}"
USERS="${USERS:-8}"
DURATION="${DURATION:-30s}"
OUT="${OUT:-loadtest-results}"
PORT="${PORT:-8765}"
RUN="${RUN:-uv run}"

if [[ ! -f "$MODEL/model.onnx" ]]; then
  echo "error: no model at $MODEL (export one with 'make demo' / 'vocalis export', or set MODEL=dir)" >&2
  exit 1
fi
mkdir -p "$OUT"
VOCALIS_DATABASE_URL="sqlite:///$OUT/loadtest-predictions.db" VOCALIS_LOG_LEVEL=WARNING \
  $RUN vocalis serve --model "$MODEL" --port "$PORT" --log-level warning > "$OUT/server.log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true' EXIT
for _ in $(seq 120); do
  if curl -sf "http://127.0.0.1:$PORT/ready" > /dev/null; then break; fi
  if ! kill -0 "$server" 2>/dev/null; then echo "error: the server exited; see $OUT/server.log" >&2; exit 1; fi
  sleep 0.5
done
$RUN locust -f tests/performance/locustfile.py VocalisUser --headless -u "$USERS" -r "$USERS" \
  -t "$DURATION" -H "http://127.0.0.1:$PORT" --csv "$OUT/loadtest" --only-summary --stop-timeout 10
echo "report: $OUT/loadtest_stats.csv"
