#!/usr/bin/env bash
# Prepare the local services walcache's tests need, on a Debian machine:
#   PostgreSQL (wal_level=logical, wal2json installed and allowed, enough slots/senders,
#   a test role with REPLICATION, database `test`, loopback pg_hba lines), a standalone Redis,
#   a Redis Cluster (scripts/redis-cluster.sh) and a Redis Sentinel set-up (scripts/redis-sentinel.sh).
#
# Ports (all on 127.0.0.1):
#   5432            PostgreSQL                                        PGPORT
#   6379            Redis, standalone (also ::1)                      REDIS_PORT
#   7000-7005       Redis Cluster: 3 masters + 3 replicas             REDIS_CLUSTER_PORT_BASE
#                   (cluster bus 17000-17005; node timeout 2 s)
#   6390, 6391      Redis master + replica watched by the sentinels   REDIS_SENTINEL_PORT_BASE
#                   (6391 is the master after a failover, and so on)
#   26390-26392     Redis Sentinels, master name "walcache", quorum 2, down-after 1 s
#
# Idempotent: a second run changes nothing, does not restart Postgres and takes ~1 s.
# Each step prints one line: "ok" (already so) or "changed" (this run fixed it).
#
# Environment (all optional):
#   PGHOST / PGPORT      server the tests use            (default 127.0.0.1 / 5432)
#   PGUSER               role the tests use              (default: current OS user)
#   PGDATABASE           database the tests use          (default: test)
#   PG_MAJOR, PG_CLUSTER Debian cluster to manage        (default: newest in /etc/postgresql, main)
#   PG_ADMIN_HOST        socket dir for admin sessions   (default: /var/run/postgresql)
#   REDIS_PORT           Redis port on 127.0.0.1         (default: 6379)
#   REDIS_CLUSTER=0      skip the Redis Cluster          (default: 1)
#   REDIS_SENTINEL=0     skip the Redis Sentinel set-up  (default: 1)
#   REDIS_CLUSTER_PORT_BASE / REDIS_SENTINEL_PORT_BASE  (default: 7000 / 6390, see above)
#   MIN_REPLICATION_SLOTS / MIN_WAL_SENDERS              (default: 20 each)
set -euo pipefail

PGHOST="${PGHOST:-127.0.0.1}"
PGPORT="${PGPORT:-5432}"
TEST_ROLE="${PGUSER:-$(id -un)}"
TEST_DB="${PGDATABASE:-test}"
PG_CLUSTER="${PG_CLUSTER:-main}"
PG_ADMIN_HOST="${PG_ADMIN_HOST:-/var/run/postgresql}"
REDIS_PORT="${REDIS_PORT:-6379}"
MIN_REPLICATION_SLOTS="${MIN_REPLICATION_SLOTS:-20}"
MIN_WAL_SENDERS="${MIN_WAL_SENDERS:-20}"
export PGHOST PGPORT

say() { printf '  %-8s %s\n' "$1" "$2"; }
die() {
  printf 'services.sh: ERROR: %s\n' "$*" >&2
  exit 1
}

# --- privileges -----------------------------------------------------------------------
if [[ $(id -u) -eq 0 ]]; then
  SUDO=()
elif command -v sudo >/dev/null 2>&1; then
  SUDO=(sudo)
else
  cat >&2 <<EOF
services.sh: ERROR: not running as root and sudo is not installed.
This script needs root (or sudo) to:
  - apt-get install the postgresql-<major>-wal2json package,
  - start/restart the cluster with pg_ctlcluster,
  - run psql as the 'postgres' OS user (ALTER SYSTEM, CREATE ROLE, CREATE DATABASE),
  - append loopback lines to pg_hba.conf,
  - start redis-server (data in /var/lib/redis and /var/lib/redis-walcache, logs in /var/log/redis).
Re-run it as root:  sudo bash scripts/services.sh
EOF
  exit 1
fi

as_root() { "${SUDO[@]}" "$@"; }

# psql as the postgres superuser over the local socket; explicit flags override any PG* env.
pg_admin() {
  local cmd=(psql -X -q -At -F $'\t' -v ON_ERROR_STOP=1 -h "$PG_ADMIN_HOST" -p "$PGPORT" -U postgres -d postgres "$@")
  if [[ $(id -un) == postgres ]]; then
    (cd / && "${cmd[@]}")
  elif [[ $(id -u) -eq 0 ]]; then
    (cd / && runuser -u postgres -- "${cmd[@]}")
  else
    (cd / && sudo -u postgres "${cmd[@]}")
  fi
}

wait_pg() {
  local i
  for ((i = 0; i < 60; i++)); do
    pg_isready -q -h "$PGHOST" -p "$PGPORT" -t 1 && return 0
    sleep 0.5
  done
  die "PostgreSQL at $PGHOST:$PGPORT is not accepting connections after 30 s (see /var/log/postgresql/)"
}

# --- PostgreSQL major version ------------------------------------------------------------
if [[ -z "${PG_MAJOR:-}" ]]; then
  [[ -d /etc/postgresql ]] || die "no PostgreSQL server installed (/etc/postgresql missing); apt-get install postgresql"
  # shellcheck disable=SC2012 # directory names are plain version numbers
  PG_MAJOR=$(ls -1 /etc/postgresql | sort -V | tail -n 1)
  [[ -n "$PG_MAJOR" ]] || die "no cluster found under /etc/postgresql"
fi
WAL2JSON_PKG="postgresql-${PG_MAJOR}-wal2json"

# --- 1. wal2json package -----------------------------------------------------------------
if [[ $(dpkg-query -W -f='${Status}' "$WAL2JSON_PKG" 2>/dev/null || true) == "install ok installed" ]]; then
  say ok "$WAL2JSON_PKG installed"
else
  apt_log=$(mktemp)
  if ! { as_root apt-get update &&
    as_root env DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1 \
      apt-get install -y --no-install-recommends "$WAL2JSON_PKG"; } >"$apt_log" 2>&1; then
    cat "$apt_log" >&2
    die "could not install $WAL2JSON_PKG (output above)"
  fi
  rm -f "$apt_log"
  say changed "$WAL2JSON_PKG installed"
fi

# --- 2. PostgreSQL running ---------------------------------------------------------------
if pg_isready -q -h "$PGHOST" -p "$PGPORT" -t 3; then
  say ok "postgres $PG_MAJOR/$PG_CLUSTER accepting connections on $PGHOST:$PGPORT"
else
  as_root pg_ctlcluster --skip-systemctl-redirect "$PG_MAJOR" "$PG_CLUSTER" start || true
  wait_pg
  say changed "postgres $PG_MAJOR/$PG_CLUSTER started"
fi

# --- 3. server settings that need a restart ----------------------------------------------
declare -A SETTING=() PENDING=()
read_settings() {
  local out name setting pending
  out=$(pg_admin -c "SELECT name, setting, pending_restart FROM pg_settings
                     WHERE name IN ('wal_level', 'max_replication_slots', 'max_wal_senders',
                                    'output_plugin_libraries')")
  SETTING=() PENDING=()
  while IFS=$'\t' read -r name setting pending; do
    SETTING[$name]="$setting"
    PENDING[$name]="$pending"
  done <<<"$out"
}
read_settings

alter=()
[[ "${SETTING[wal_level]}" == logical ]] || alter+=("wal_level = logical")
[[ "${SETTING[max_replication_slots]}" -ge "$MIN_REPLICATION_SLOTS" ]] ||
  alter+=("max_replication_slots = $MIN_REPLICATION_SLOTS")
[[ "${SETTING[max_wal_senders]}" -ge "$MIN_WAL_SENDERS" ]] ||
  alter+=("max_wal_senders = $MIN_WAL_SENDERS")
restart=0
((${#alter[@]} == 0)) || restart=1
for name in wal_level max_replication_slots max_wal_senders; do
  if [[ "${PENDING[$name]}" == t ]]; then restart=1; fi
done
if ((restart)); then
  for a in "${alter[@]}"; do pg_admin -c "ALTER SYSTEM SET $a"; done
  as_root pg_ctlcluster --skip-systemctl-redirect "$PG_MAJOR" "$PG_CLUSTER" restart
  wait_pg
  read_settings
  [[ "${SETTING[wal_level]}" == logical ]] || die "wal_level is still '${SETTING[wal_level]}' after restart"
  msg=$(IFS=,; echo "${alter[*]:-pending settings applied}")
  msg="${msg// = /=}"
  say changed "${msg//,/, } (postgres restarted)"
else
  say ok "wal_level=logical, max_replication_slots=${SETTING[max_replication_slots]}, max_wal_senders=${SETTING[max_wal_senders]}"
fi

# --- 4. wal2json in output_plugin_libraries (PostgreSQL 15.19+ / 16.x / 17.x / 18.6+) ------
if [[ -z "${SETTING[output_plugin_libraries]+set}" ]]; then
  say ok "output_plugin_libraries not known to this server (older release): nothing to allow"
else
  libs=()
  found=0
  IFS=',' read -ra raw <<<"${SETTING[output_plugin_libraries]}"
  for lib in "${raw[@]}"; do
    lib="${lib#"${lib%%[![:space:]]*}"}"   # trim leading blanks
    lib="${lib%"${lib##*[![:space:]]}"}"   # trim trailing blanks
    [[ $lib == \"*\" ]] && lib="${lib:1:${#lib}-2}"
    [[ -n "$lib" ]] || continue
    [[ "$lib" == wal2json ]] && found=1
    libs+=("'${lib//\'/\'\'}'")
  done
  if ((found)); then
    say ok "output_plugin_libraries = ${SETTING[output_plugin_libraries]}"
  else
    libs+=("'wal2json'")
    list=$(IFS=,; echo "${libs[*]}")
    pg_admin -c "ALTER SYSTEM SET output_plugin_libraries = ${list//,/, }"
    pg_admin -c "SELECT pg_reload_conf()" >/dev/null
    say changed "output_plugin_libraries = ${list//,/, } (reloaded)"
  fi
fi

# --- 5. pg_hba.conf loopback lines ---------------------------------------------------------
hba_file=$(pg_admin -c "SHOW hba_file")
missing=()
for want in "host replication all 127.0.0.1/32 trust" \
  "host all all ::1/128 trust" \
  "host replication all ::1/128 trust"; do
  read -r t d u a _ <<<"$want"
  # shellcheck disable=SC2016 # awk program, not shell
  as_root awk -v t="$t" -v d="$d" -v u="$u" -v a="$a" \
    '$1 !~ /^#/ && $1 == t && $2 == d && $3 == u && $4 == a { found = 1 } END { exit !found }' \
    "$hba_file" || missing+=("$want")
done
if ((${#missing[@]} == 0)); then
  say ok "$hba_file has loopback replication/IPv6 lines"
else
  {
    [[ -z $(as_root tail -c 1 "$hba_file") ]] || echo
    echo "# added by walcache scripts/services.sh (loopback, test machines only)"
    printf '%s\n' "${missing[@]}"
  } | as_root tee -a "$hba_file" >/dev/null
  pg_admin -c "SELECT pg_reload_conf()" >/dev/null
  bad=$(pg_admin -c "SELECT count(*) FROM pg_hba_file_rules WHERE error IS NOT NULL")
  [[ "$bad" == 0 ]] || die "$hba_file has $bad invalid line(s): see SELECT * FROM pg_hba_file_rules"
  say changed "$hba_file: added ${#missing[@]} line(s) (reloaded)"
fi

# --- 6. test role and database -------------------------------------------------------------
state=$(pg_admin -v role="$TEST_ROLE" -v db="$TEST_DB" <<'SQL'
SELECT coalesce((SELECT concat_ws(',', rolsuper, rolreplication, rolcanlogin)
                 FROM pg_roles WHERE rolname = :'role'), 'missing'),
       EXISTS (SELECT 1 FROM pg_database WHERE datname = :'db');
SQL
)
IFS=$'\t' read -r role_state db_exists <<<"$state"
case "$role_state" in
  missing)
    pg_admin -v role="$TEST_ROLE" <<<'CREATE ROLE :"role" LOGIN SUPERUSER;'
    say changed "role $TEST_ROLE created (LOGIN SUPERUSER)" ;;
  t,*,t | f,t,t)
    say ok "role $TEST_ROLE can log in and replicate" ;;
  *)
    IFS=, read -r super _ _ <<<"$role_state"
    opts="LOGIN"
    [[ $super == t ]] || opts+=" REPLICATION"
    pg_admin -v role="$TEST_ROLE" <<<"ALTER ROLE :\"role\" $opts;"
    say changed "role $TEST_ROLE altered ($opts)" ;;
esac
if [[ "$db_exists" == t ]]; then
  say ok "database $TEST_DB exists"
else
  pg_admin -v role="$TEST_ROLE" -v db="$TEST_DB" <<<'CREATE DATABASE :"db" OWNER :"role";'
  say changed "database $TEST_DB created (owner $TEST_ROLE)"
fi

# --- 7. end-to-end check: the test role creates a temporary wal2json slot ------------------
# A reload reaches new backends a moment later, so retry briefly before failing.
slot="walcache_services_check_$$"
check_err=""
for ((i = 0; i < 10; i++)); do
  if check_err=$(psql -X -q -At -v ON_ERROR_STOP=1 -h "$PGHOST" -p "$PGPORT" -U "$TEST_ROLE" -d "$TEST_DB" 2>&1 <<SQL
SET statement_timeout = '20s';
SELECT 1 FROM pg_create_logical_replication_slot('$slot', 'wal2json', true);
SELECT count(*) FROM pg_logical_slot_peek_changes('$slot', NULL, 1, 'format-version', '2');
SQL
  ); then
    break
  fi
  sleep 0.3
done
if ((i == 10)); then
  hint=""
  if [[ "$check_err" == *"may not be used as an output plugin"* ]]; then
    hint=$'\nFix (as superuser): ALTER SYSTEM SET output_plugin_libraries = '"'pgoutput', 'test_decoding', 'wal2json'; SELECT pg_reload_conf();"
  fi
  die "role $TEST_ROLE cannot create a wal2json logical slot in $TEST_DB on $PGHOST:$PGPORT:
$check_err$hint"
fi
say ok "role $TEST_ROLE created and dropped a temporary wal2json slot"

# --- 8. Redis ------------------------------------------------------------------------------
command -v redis-cli >/dev/null 2>&1 || die "redis-cli not found (apt-get install redis-server)"
redis_ping() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null || true; }
if [[ $(redis_ping) == PONG ]]; then
  say ok "redis answers PING on 127.0.0.1:$REDIS_PORT"
else
  command -v redis-server >/dev/null 2>&1 || die "redis-server not found (apt-get install redis-server)"
  as_root mkdir -p /var/lib/redis /var/log/redis
  as_root redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$REDIS_PORT" --save "" \
    --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log
  for ((i = 0; i < 50; i++)); do
    [[ $(redis_ping) == PONG ]] && break
    sleep 0.2
  done
  [[ $(redis_ping) == PONG ]] || die "redis did not answer PING on 127.0.0.1:$REDIS_PORT (see /var/log/redis/ci.log)"
  say changed "redis started on 127.0.0.1:$REDIS_PORT"
fi

# --- 9. Redis Cluster and Redis Sentinel (each script prints its own ok/changed line) -------
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if [[ "${REDIS_CLUSTER:-1}" == 0 ]]; then
  say skipped "redis cluster (REDIS_CLUSTER=0)"
else
  bash "$SCRIPT_DIR/redis-cluster.sh" start
fi
if [[ "${REDIS_SENTINEL:-1}" == 0 ]]; then
  say skipped "redis sentinel (REDIS_SENTINEL=0)"
else
  bash "$SCRIPT_DIR/redis-sentinel.sh" start
fi
