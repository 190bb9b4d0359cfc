#!/usr/bin/env bash
# Installs the locked dependencies with `npm ci`, and nothing else: no fallback that could
# hide a lock file out of step with package.json.
#
# package-lock.json records every platform's optional packages (biome's and
# msgpackr-extract's per-OS binaries), as npm writes them when the registry serves their
# metadata. If `npm ci` ever reports `Missing: <pkg>@<version> from lock file`, the lock
# file was written without them: regenerate it with `npm install --package-lock-only`,
# check the diff only adds entries, and prove it with `npm ci` in a fresh clone.
set -euo pipefail
cd "$(dirname "$0")/.."
npm ci --no-audit --no-fund
