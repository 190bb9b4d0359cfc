#!/usr/bin/env bash
# Runs the test suite against the local Postgres and Redis (see scripts/services.sh).
# Extra arguments select test files: npm test -- test/engine.test.ts
#
# --cluster (npm run test:cluster), or WALCACHE_TEST_REDIS=cluster: the same tests against
# the local Redis Cluster instead (scripts/redis-cluster.sh; seeds REDIS_CLUSTER_NODES,
# REDIS_URL unset): test/helpers.ts points REDIS_CONFIG, testRedis() and the clean-up
# there. Without file arguments it runs the parallel suite minus CLUSTER_SKIP; the serial
# suite restarts the standalone services and stays with `npm test`.
#   WALCACHE_TEST_REDIS=cluster bash scripts/test.sh test/engine.test.ts
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = --cluster ]; then
  shift
  export WALCACHE_TEST_REDIS=cluster
fi

# Files that do not touch the shared Redis: on the cluster they would run exactly as in
# `npm test`, proving nothing twice.
CLUSTER_SKIP=(
  # no Redis at all: pure functions, config parsing, SQL/WAL decoding, type checks
  test/bench-consistency.test.ts # bench:consistency's arithmetic
  test/canonical.test.ts
  test/codec.test.ts
  test/config.test.ts
  test/config-reference.test.ts # docs/configuration.md against the schema
  test/config-topology.test.ts
  test/decoders.test.ts
  test/docker-compose.test.ts # docker-compose.yml and the quick start's Docker block, as text
  test/docs-links.test.ts # links in the Markdown files
  test/envelope-in-place.test.ts
  test/keys.test.ts
  test/monitoring.test.ts # the Prometheus rules and dashboards
  test/query-tags.test.ts
  test/repository-types.test.ts
  test/setup.test.ts # walcache setup is PostgreSQL only
  # only private redis-servers the tests start, stop, pause or misconfigure
  test/bench-consistency-children.test.ts
  test/bus-liveness.test.ts
  test/quiet-start.test.ts # a slow proxy in front of the standalone server, a Redis down
  test/degradation.test.ts
  test/redis-deployed.test.ts # ACL and TLS servers
  test/redis-rollback.test.ts
  test/redis-cluster-failover.test.ts # clusters of its own, masters killed
  test/redis-sentinel.test.ts         # a Sentinel set-up of its own
  # bench/write-behind.ts connects to REDIS_URL only; the test is about process clean-up
  test/bench-children.test.ts
)

if [ "${WALCACHE_TEST_REDIS:-}" = cluster ]; then
  export REDIS_CLUSTER_NODES="${REDIS_CLUSTER_NODES:-127.0.0.1:7000,127.0.0.1:7001,127.0.0.1:7002}"
  unset REDIS_URL # config resolution refuses REDIS_URL and REDIS_CLUSTER_NODES together
  seed="${REDIS_CLUSTER_NODES%%,*}"
  if command -v redis-cli >/dev/null &&
    ! redis-cli -h "${seed%:*}" -p "${seed##*:}" cluster info 2>/dev/null | grep -q '^cluster_state:ok'; then
    echo "test.sh: the Redis Cluster at $seed is not healthy (start it: bash scripts/redis-cluster.sh)" >&2
    exit 1
  fi
else
  unset REDIS_CLUSTER_NODES # standalone: a cluster in the shell's environment would win over REDIS_URL
fi

run() { node --import tsx --test --test-timeout=180000 "$@"; }
if [ $# -gt 0 ]; then
  run --test-concurrency=1 "$@"
  exit
fi
if [ "${WALCACHE_TEST_REDIS:-}" = cluster ]; then
  files=()
  for f in test/*.test.ts; do
    skip=
    for s in "${CLUSTER_SKIP[@]}"; do [ "$f" = "$s" ] && skip=1; done
    [ -z "$skip" ] && files+=("$f")
  done
  run --test-concurrency=2 "${files[@]}"
  exit
fi
# The suite in parallel (each file has its own schema, slot and key prefix), then the
# tests that restart a shared service, alone.
run --test-concurrency=2 test/*.test.ts
run --test-concurrency=1 test/serial/*.test.ts
