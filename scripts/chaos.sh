#!/usr/bin/env bash
# N random kill -9s of the running app, then a clean run checked against the oracle: scripts/chaos.sh N
set -euo pipefail
cd "$(dirname "$0")/.."
export PYSPARK_PYTHON="$PWD/.venv/bin/python"
exec .venv/bin/python scripts/chaos.py --kills "${1:-20}" "${@:2}"
