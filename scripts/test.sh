#!/usr/bin/env bash
# Runs the test suite against the local Postgres and Redis (see scripts/services.sh).
# Extra arguments select test files: npm test -- test/engine.test.ts
set -euo pipefail
cd "$(dirname "$0")/.."
files=("$@")
if [ ${#files[@]} -eq 0 ]; then files=(test/*.test.ts); fi
exec node --import tsx --test --test-concurrency=2 --test-timeout=180000 "${files[@]}"
