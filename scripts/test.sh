#!/usr/bin/env bash
# Runs the test suite against the local Postgres and Redis (see scripts/services.sh).
# Extra arguments select test files: npm test -- test/engine.test.ts
set -euo pipefail
cd "$(dirname "$0")/.."
run() { node --import tsx --test --test-timeout=180000 "$@"; }
if [ $# -gt 0 ]; then
  run --test-concurrency=1 "$@"
  exit
fi
# The suite in parallel (each file has its own schema, slot and key prefix), then the
# tests that restart a shared service, alone.
run --test-concurrency=2 test/*.test.ts
run --test-concurrency=1 test/serial/*.test.ts
