# Shared by scripts/redis-cluster.sh and scripts/redis-sentinel.sh (sourced, not run):
# messages, the start|stop|status argument, the tools they need, root or sudo, a lock so
# one run at a time, and redis-cli helpers. The caller sets SCRIPT (its file name),
# STATE_DIR, DATA_DIR, LOG_DIR and LOCK (a file name under STATE_DIR) first.
# shellcheck shell=bash

say() { printf '  %-8s %s\n' "$1" "$2"; }
die() {
  printf '%s: ERROR: %s\n' "$SCRIPT" "$*" >&2
  exit 1
}

usage() { echo "usage: $0 [start|stop|status]" >&2; exit 2; }
ACTION="${1:-start}"
case "$ACTION" in start | stop | status) ;; *) usage ;; esac
(($# <= 1)) || usage

for cmd in redis-server redis-cli timeout flock; do
  command -v "$cmd" >/dev/null 2>&1 || die "$cmd not found (apt-get install redis-server coreutils util-linux)"
done

# --- privileges -----------------------------------------------------------------------
if [[ $(id -u) -eq 0 ]]; then
  SUDO=()
elif command -v sudo >/dev/null 2>&1; then
  SUDO=(sudo)
else
  die "not running as root and sudo is not installed; needed to create $DATA_DIR and start redis-server.
Re-run it as root:  sudo bash scripts/$SCRIPT $ACTION"
fi
as_root() { "${SUDO[@]}" "$@"; }

# One start/stop at a time (services.sh in two terminals, parallel CI steps).
as_root mkdir -p "$DATA_DIR" "$LOG_DIR"
[[ -e "$STATE_DIR/$LOCK" ]] || as_root touch "$STATE_DIR/$LOCK"
exec 9<"$STATE_DIR/$LOCK"
flock -w 120 9 || die "another $SCRIPT holds $STATE_DIR/$LOCK for 120 s"

# --- helpers ---------------------------------------------------------------------------
# redis-cli on one instance: raw output without \r; fails when the node does not answer.
rcli() {
  local p=$1 out
  shift
  out=$(timeout 3 redis-cli -h 127.0.0.1 -p "$p" "$@" 2>/dev/null) || return 1
  printf '%s\n' "${out//$'\r'/}"
}
is_up() { [[ $(rcli "$1" PING || true) == PONG ]]; }
answers() { [[ -n $(rcli "$1" PING || true) ]]; } # PONG, or an error such as NOAUTH or LOADING
# field NAME TEXT: the value of "NAME:value" in INFO / CLUSTER INFO output.
field() {
  local re="(^|"$'\n'")$1:([^"$'\n'"]*)"
  if [[ $2 =~ $re ]]; then printf '%s\n' "${BASH_REMATCH[2]}"; fi
}

# wait_healthy SECONDS: until the caller's healthy() says so (it sets REASON otherwise).
wait_healthy() {
  local deadline=$((SECONDS + $1))
  while ((SECONDS < deadline)); do
    healthy && return 0
    sleep 0.2
  done
  healthy
}
