#!/usr/bin/env bash
# A local Kinesis-API server (kinesalite, pinned in package.json) on 127.0.0.1, in the background.
#
#   scripts/kinesis-local.sh start   start it on a free port (or KINESIS_PORT), print its endpoint URL
#   scripts/kinesis-local.sh stop    stop it
#   scripts/kinesis-local.sh url     print the endpoint URL of the running server
#
# State lives in data/kinesis-local/ (pid file, port file, log). Streams are in memory: they go when the
# server stops. Needs `npm ci` first (make does it).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="${KINESIS_LOCAL_DIR:-$ROOT/data/kinesis-local}"
PID_FILE="$STATE/kinesalite.pid"
PORT_FILE="$STATE/kinesalite.port"
LOG_FILE="$STATE/kinesalite.log"

running() {
  [[ -f "$PID_FILE" ]] && kill -0 "$(cat "$PID_FILE")" 2>/dev/null
}

url() {
  echo "http://127.0.0.1:$(cat "$PORT_FILE")"
}

start() {
  if running; then
    url
    return 0
  fi
  if [[ ! -d "$ROOT/node_modules/kinesalite" ]]; then
    echo "kinesalite is not installed: run 'npm ci' in $ROOT" >&2
    return 1
  fi
  mkdir -p "$STATE"
  rm -f "$PORT_FILE"
  node "$ROOT/scripts/kinesalite-loopback.js" --port "${KINESIS_PORT:-0}" \
    --createStreamMs 0 --deleteStreamMs 0 --updateStreamMs 0 --shardLimit 50 >"$LOG_FILE" 2>&1 &
  echo $! >"$PID_FILE"
  for _ in $(seq 1 100); do
    if grep -q '^listening ' "$LOG_FILE" 2>/dev/null; then
      awk '/^listening /{print $2; exit}' "$LOG_FILE" >"$PORT_FILE"
      url
      return 0
    fi
    if ! running; then
      echo "kinesalite exited: $(cat "$LOG_FILE")" >&2
      rm -f "$PID_FILE"
      return 1
    fi
    sleep 0.1
  done
  echo "kinesalite did not start within 10 s (log: $LOG_FILE)" >&2
  stop
  return 1
}

stop() {
  if running; then
    local pid
    pid="$(cat "$PID_FILE")"
    kill "$pid"
    for _ in $(seq 1 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
  fi
  rm -f "$PID_FILE" "$PORT_FILE"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  url)
    if running; then url; else echo "kinesalite is not running" >&2; exit 1; fi
    ;;
  *)
    echo "usage: $0 start|stop|url" >&2
    exit 2
    ;;
esac
