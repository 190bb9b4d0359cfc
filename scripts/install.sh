#!/usr/bin/env bash
# Installs the locked dependencies: `npm ci`, with one narrow fallback.
set -euo pipefail
cd "$(dirname "$0")/.."
# npm 11 rejects its own lock file when an optional platform package (biome, msgpackr-extract
# binaries for other OSes) cannot be fetched from the registry: `Missing: <name>@ from lock
# file`, with an empty version (npm/cli#9846). Only that exact failure falls back to
# `npm install --no-save`, which installs the same locked tree and writes nothing; any other
# mismatch (`Invalid: ...`, `Missing: <name>@<version> ...`) still fails the build.
ci_log=$(mktemp)
if npm ci --no-audit --no-fund >"$ci_log" 2>&1; then
  cat "$ci_log"
else
  sed '/^npm error Clean install a project/,$d' "$ci_log" # drop the usage text
  if grep -q 'can only install packages when your package.json and package-lock.json' "$ci_log" &&
    grep -qE '^npm error Missing: .*@ from lock file' "$ci_log" &&
    ! grep -qE '^npm error (Invalid: |Missing: .*@[^ @]+ from lock file)' "$ci_log"; then
    echo "npm ci: only unfetchable optional platform packages are missing (npm/cli#9846);"
    echo "        installing the locked tree with npm install --no-save instead"
    npm install --no-audit --no-fund --no-save
  else
    exit 1
  fi
fi
rm -f "$ci_log"
