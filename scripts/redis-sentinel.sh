#!/usr/bin/env bash
# A local Redis Sentinel set-up for walcache's tests and CI (no Docker), on 127.0.0.1:
#   data nodes  BASE (master at creation) and BASE+1 (replica)          BASE = 6390 by default
#   sentinels   BASE+20000, BASE+20001, BASE+20002 (26390-26392), monitoring master name
#               "walcache" with quorum 2, down-after-milliseconds 1000, failover-timeout 5000,
#               parallel-syncs 1: a killed master is replaced by the replica in ~2-5 s.
#
#   scripts/redis-sentinel.sh [start]   start what is missing, wait until healthy
#   scripts/redis-sentinel.sh stop      SHUTDOWN the sentinels, then the data nodes (NOSAVE)
#   scripts/redis-sentinel.sh status    one line per instance; exit status 0 only when healthy
#
# Healthy = all five answer; the three sentinels name the same master (SENTINEL
# get-master-addr-by-name), which is one of the data nodes, has role master and an online
# replica (the other data node, master_link_status:up); every sentinel sees the master with
# flags "master", the replica with flags "slave" and the two other sentinels. After a failover
# the master may be BASE+1 and the replica BASE: that is healthy too.
#
# start is idempotent and prints one line: "ok" (already healthy, ~0.1 s) or "changed":
#   - the current master is the one the sentinels name; if it is down while its replica and
#     two sentinels are up, the script first waits (<= 15 s) for the sentinels to promote
#     the replica. A dead data node is restarted as a replica of the current master.
#   - a dead sentinel is restarted with a regenerated config (same sentinel id) monitoring
#     the current master; with no sentinel running, the master is the data node that is
#     master, else the one the sentinel configs name (so stop + start keeps the roles).
#   - not healthy after 20 s: everything is shut down, its files removed, and set up afresh.
# No persistence (--save '' --appendonly no): restarts lose the keys, which is fine for tests.
#
# Files: /var/lib/redis-walcache/sentinel/<port>/ (data nodes: redis.pid; sentinels:
#        sentinel.conf, rewritten by the sentinel, and sentinel.pid),
#        /var/log/redis/sentinel-<port>.log
# Environment: REDIS_SENTINEL_PORT_BASE (default 6390), REDIS_SENTINEL_MASTER (default walcache).
# Needs root (or sudo) to create those directories and start redis-server.
set -euo pipefail

BASE="${REDIS_SENTINEL_PORT_BASE:-6390}"
NAME="${REDIS_SENTINEL_MASTER:-walcache}"
if ! [[ "$BASE" =~ ^[0-9]+$ ]] || ((BASE < 1 || BASE + 20002 > 65535)); then
  printf 'redis-sentinel.sh: ERROR: bad REDIS_SENTINEL_PORT_BASE=%s\n' "$BASE" >&2
  exit 1
fi
if ! [[ "$NAME" =~ ^[A-Za-z0-9_.-]+$ ]]; then
  printf 'redis-sentinel.sh: ERROR: bad REDIS_SENTINEL_MASTER=%s\n' "$NAME" >&2
  exit 1
fi
DATA=("$BASE" "$((BASE + 1))")
SENT=("$((BASE + 20000))" "$((BASE + 20001))" "$((BASE + 20002))")
QUORUM=2
STATE_DIR=/var/lib/redis-walcache
DATA_DIR="$STATE_DIR/sentinel"
LOG_DIR=/var/log/redis
DESC="redis sentinel \"$NAME\" (data 127.0.0.1:${DATA[0]},${DATA[1]}; sentinels ${SENT[0]}-${SENT[2]})"

say() { printf '  %-8s %s\n' "$1" "$2"; }
die() {
  printf 'redis-sentinel.sh: ERROR: %s\n' "$*" >&2
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
Re-run it as root:  sudo bash scripts/redis-sentinel.sh $ACTION"
fi
as_root() { "${SUDO[@]}" "$@"; }

# One start/stop at a time (services.sh in two terminals, parallel CI steps).
as_root mkdir -p "$DATA_DIR" "$LOG_DIR"
[[ -e "$STATE_DIR/sentinel.lock" ]] || as_root touch "$STATE_DIR/sentinel.lock"
exec 9<"$STATE_DIR/sentinel.lock"
flock -w 120 9 || die "another redis-sentinel.sh holds $STATE_DIR/sentinel.lock for 120 s"

# --- helpers ---------------------------------------------------------------------------
# redis-cli on one instance: raw output without \r; fails when it does not answer.
rcli() {
  local p=$1 out
  shift
  out=$(timeout 3 redis-cli -h 127.0.0.1 -p "$p" "$@" 2>/dev/null) || return 1
  printf '%s\n' "${out//$'\r'/}"
}
is_up() { [[ $(rcli "$1" PING || true) == PONG ]]; }
answers() { [[ -n $(rcli "$1" PING || true) ]]; } # PONG, or an error such as NOAUTH or LOADING
# field NAME TEXT: the value of "NAME:value" in INFO output.
field() {
  local re="(^|"$'\n'")$1:([^"$'\n'"]*)"
  if [[ $2 =~ $re ]]; then printf '%s\n' "${BASH_REMATCH[2]}"; fi
}
other() { if [[ $1 == "${DATA[0]}" ]]; then echo "${DATA[1]}"; else echo "${DATA[0]}"; fi; }
is_data_port() { [[ $1 == "${DATA[0]}" || $1 == "${DATA[1]}" ]]; }

wait_up() {
  local p i
  for p in "$@"; do
    for ((i = 0; i < 50; i++)); do
      is_up "$p" && continue 2
      sleep 0.1
    done
    die "127.0.0.1:$p does not answer PING after 5 s; last lines of $LOG_DIR/sentinel-$p.log:
$(as_root tail -n 5 "$LOG_DIR/sentinel-$p.log" 2>/dev/null || true)"
  done
}

# start_data PORT [MASTER_PORT]
start_data() {
  local p=$1 dir="$DATA_DIR/$1"
  local args=(--daemonize yes --bind 127.0.0.1 --port "$p" --save '' --appendonly no
    --repl-diskless-sync-delay 0 --dir "$dir" --pidfile "$dir/redis.pid" --logfile "$LOG_DIR/sentinel-$p.log")
  [[ -z "${2:-}" ]] || args+=(--replicaof 127.0.0.1 "$2")
  as_root mkdir -p "$dir"
  # 9<&-: the daemon must not inherit (and hold) the lock.
  as_root redis-server "${args[@]}" 9<&- || die "redis-server did not start on 127.0.0.1:$p (see $LOG_DIR/sentinel-$p.log)"
}

# start_sentinel PORT MASTER_PORT: a fresh config monitoring MASTER_PORT, keeping the sentinel's
# id from its previous config (so that the other sentinels do not count a ghost sentinel).
start_sentinel() {
  local s=$1 m=$2 dir="$DATA_DIR/$1" myid
  local conf="$dir/sentinel.conf"
  as_root mkdir -p "$dir"
  # shellcheck disable=SC2016 # awk program, not shell
  myid=$(as_root awk '$1 == "sentinel" && $2 == "myid" { print $3; exit }' "$conf" 2>/dev/null || true)
  {
    echo "# generated by walcache scripts/redis-sentinel.sh; the sentinel rewrites it"
    echo "port $s"
    echo "bind 127.0.0.1"
    echo "daemonize yes"
    echo "pidfile $dir/sentinel.pid"
    echo "logfile $LOG_DIR/sentinel-$s.log"
    echo "dir $dir"
    [[ ! "$myid" =~ ^[0-9a-f]{40}$ ]] || echo "sentinel myid $myid"
    echo "sentinel monitor $NAME 127.0.0.1 $m $QUORUM"
    echo "sentinel down-after-milliseconds $NAME 1000"
    echo "sentinel failover-timeout $NAME 5000"
    echo "sentinel parallel-syncs $NAME 1"
    echo "sentinel known-replica $NAME 127.0.0.1 $(other "$m")"
  } | as_root tee "$conf" >/dev/null
  as_root redis-server "$conf" --sentinel 9<&- || die "sentinel did not start on 127.0.0.1:$s (see $LOG_DIR/sentinel-$s.log)"
}

# master_of SENTINEL_PORT: the port of the master that sentinel names (empty if none).
master_of() {
  local out ip port
  out=$(rcli "$1" SENTINEL get-master-addr-by-name "$NAME" || true)
  { IFS= read -r ip && IFS= read -r port; } <<<"$out" || true
  [[ "$ip" == 127.0.0.1 && "$port" =~ ^[0-9]+$ ]] && echo "$port"
  return 0
}

# SM = the master most of the answering sentinels name (empty if none); N_SUP = sentinels up.
SM="" N_SUP=0
sentinels_master() {
  local s m n0=0 n1=0
  SM="" N_SUP=0
  for s in "${SENT[@]}"; do
    is_up "$s" || continue
    N_SUP=$((N_SUP + 1))
    m=$(master_of "$s")
    if [[ $m == "${DATA[0]}" ]]; then n0=$((n0 + 1)); elif [[ $m == "${DATA[1]}" ]]; then n1=$((n1 + 1)); fi
  done
  if ((n0 > 0 && n0 >= n1)); then SM=${DATA[0]}; elif ((n1 > 0)); then SM=${DATA[1]}; fi
}

role_of() { field role "$(rcli "$1" INFO replication || true)"; }

# healthy: 0 when healthy, else 1 with the first problem in REASON.
REASON=""
healthy() {
  local s m="" ms r re info k v port flags others mflags repl
  REASON=""
  for s in "${SENT[@]}"; do
    ms=$(master_of "$s")
    if [[ -z "$ms" ]]; then
      if is_up "$s"; then REASON="sentinel $s does not name a master for $NAME"; else REASON="sentinel $s does not answer"; fi
      return 1
    fi
    is_data_port "$ms" || { REASON="sentinel $s names 127.0.0.1:$ms, not one of ${DATA[*]}"; return 1; }
    [[ -z "$m" || "$m" == "$ms" ]] || { REASON="sentinels disagree: $m and $ms"; return 1; }
    m=$ms
  done
  r=$(other "$m")
  info=$(rcli "$m" INFO replication) || { REASON="master 127.0.0.1:$m does not answer"; return 1; }
  [[ $(field role "$info") == master ]] || { REASON="127.0.0.1:$m, named master by the sentinels, has role:$(field role "$info")"; return 1; }
  re=$'\n''slave[0-9]+:ip=127\.0\.0\.1,port='"$r"',state=online'
  [[ $'\n'"$info" =~ $re ]] ||
    { REASON="master 127.0.0.1:$m has no online replica 127.0.0.1:$r"; return 1; }
  info=$'\n'$(rcli "$r" INFO replication)$'\n' || { REASON="replica 127.0.0.1:$r does not answer"; return 1; }
  [[ "$info" == *$'\n'role:slave$'\n'* && "$info" == *$'\n'master_port:$m$'\n'* &&
    "$info" == *$'\n'master_link_status:up$'\n'* ]] ||
    { REASON="127.0.0.1:$r is not an attached replica of $m (role:$(field role "$info") master_port:$(field master_port "$info") master_link_status:$(field master_link_status "$info"))"; return 1; }
  for s in "${SENT[@]}"; do
    info=$(rcli "$s" SENTINEL master "$NAME") || { REASON="sentinel $s does not answer"; return 1; }
    mflags="" others=""
    while IFS= read -r k && IFS= read -r v; do
      case "$k" in flags) mflags=$v ;; num-other-sentinels) others=$v ;; esac
    done <<<"$info"
    [[ "$mflags" == master ]] || { REASON="sentinel $s sees the master with flags ${mflags:-?}"; return 1; }
    [[ "$others" == 2 ]] || { REASON="sentinel $s knows ${others:-?} other sentinels, not 2"; return 1; }
    info=$(rcli "$s" SENTINEL replicas "$NAME") || { REASON="sentinel $s does not answer"; return 1; }
    port="" flags="" repl=""
    while IFS= read -r k && IFS= read -r v; do
      case "$k" in name) port="" flags="" ;; port) port=$v ;; flags) flags=$v ;; esac
      if [[ "$port" == "$r" && -n "$flags" ]]; then repl=$flags; fi
    done <<<"$info"
    [[ "$repl" == slave ]] || { REASON="sentinel $s sees replica $r with flags ${repl:-(unknown)}"; return 1; }
  done
  return 0
}

# wait_healthy SECONDS
wait_healthy() {
  local deadline=$((SECONDS + $1))
  while ((SECONDS < deadline)); do
    healthy && return 0
    sleep 0.2
  done
  healthy
}

# Shut down the sentinels first (so that they do not fail over meanwhile), then the data nodes.
shutdown_all() {
  local p
  for p in "${SENT[@]}" "${DATA[@]}"; do shutdown_one "$p"; done
}

# shutdown_one PORT: SHUTDOWN the instance; if it still answers after 5 s (or answers only with
# an error, e.g. NOAUTH), kill -9 the process named in its pid file when that is our redis-server.
shutdown_one() {
  local p=$1 i pid pidfile out
  answers "$p" || return 0
  out=$(rcli "$p" SHUTDOWN NOSAVE NOW || true)
  if [[ -z "$out" ]]; then
    for ((i = 0; i < 50; i++)); do
      answers "$p" || return 0
      sleep 0.1
    done
  fi
  pidfile="$DATA_DIR/$p/redis.pid"
  [[ " ${SENT[*]} " != *" $p "* ]] || pidfile="$DATA_DIR/$p/sentinel.pid"
  pid=$(as_root cat "$pidfile" 2>/dev/null || true)
  if [[ "$pid" =~ ^[0-9]+$ ]] && as_root grep -qa "^redis-server 127.0.0.1:$p\b" "/proc/$pid/cmdline" 2>/dev/null; then
    as_root kill -9 "$pid" || true
    for ((i = 0; i < 20; i++)); do
      answers "$p" || break
      sleep 0.1
    done
  fi
  if answers "$p"; then die "127.0.0.1:$p does not shut down (${out:-no reply}) and $pidfile names no redis-server of ours"; fi
}

# pick_master: sets M, the data node to be (or that is) the master, and NOTE.
M="" NOTE=""
pick_master() {
  local cand r p masters=() n s
  M="" NOTE=""
  sentinels_master
  cand=$SM
  if [[ -n "$cand" ]]; then
    if [[ $(role_of "$cand") == master ]]; then
      M=$cand
      return
    fi
    r=$(other "$cand")
    if ! is_up "$cand" && [[ $(role_of "$r") == slave ]] && ((N_SUP >= QUORUM)); then
      # The master is dead, its replica and enough sentinels are alive: let them fail over.
      local deadline=$((SECONDS + 15))
      while ((SECONDS < deadline)); do
        sentinels_master
        if [[ $SM == "$r" && $(role_of "$r") == master ]]; then
          M=$r NOTE="sentinels promoted $r"
          return
        fi
        sleep 0.2
      done
    fi
    if ! is_up "$cand"; then
      M=$cand
      return
    fi
    # cand answers but is not a master: trust the data nodes below.
  fi
  for p in "${DATA[@]}"; do
    [[ $(role_of "$p") != master ]] || masters+=("$p")
  done
  if ((${#masters[@]} == 1)); then
    M=${masters[0]}
  elif ((${#masters[@]} == 2)); then
    M=${DATA[0]}
    for p in "${DATA[@]}"; do
      n=$(field connected_slaves "$(rcli "$p" INFO replication || true)")
      if [[ "${n:-0}" != 0 ]]; then M=$p; break; fi
    done
  else
    for p in "${DATA[@]}"; do
      n=$(field master_port "$(rcli "$p" INFO replication || true)")
      if [[ -n "$n" ]] && is_data_port "$n" && [[ "$n" != "$p" ]]; then M=$n; return; fi
    done
    # Nothing runs: the master the sentinel configs name (they record failovers), else BASE.
    local n0=0 n1=0
    for s in "${SENT[@]}"; do
      # shellcheck disable=SC2016 # awk program, not shell
      n=$(as_root awk -v name="$NAME" '$1 == "sentinel" && $2 == "monitor" && $3 == name { print $5; exit }' \
        "$DATA_DIR/$s/sentinel.conf" 2>/dev/null || true)
      if [[ $n == "${DATA[0]}" ]]; then n0=$((n0 + 1)); elif [[ $n == "${DATA[1]}" ]]; then n1=$((n1 + 1)); fi
    done
    if ((n1 > n0)); then M=${DATA[1]}; else M=${DATA[0]}; fi
  fi
}

# A port answering PING must be the right kind of instance (not some other service).
check_kind() {
  local p=$1 want=$2 mode
  is_up "$p" || return 0
  mode=$(field redis_mode "$(rcli "$p" INFO server || true)")
  [[ "$mode" == "$want" ]] || die "127.0.0.1:$p answers PING but runs redis_mode:${mode:-?}, not $want; free the port or set REDIS_SENTINEL_PORT_BASE"
}

# --- actions ---------------------------------------------------------------------------
cmd_status() {
  local p info
  for p in "${DATA[@]}"; do
    if info=$(rcli "$p" INFO replication) && [[ -n "$info" ]]; then
      printf '  %-16s %-7s %s\n' "127.0.0.1:$p" "$(field role "$info")" \
        "$(if [[ $(field role "$info") == slave ]]; then echo "of $(field master_port "$info") link:$(field master_link_status "$info")"; else echo "replicas:$(field connected_slaves "$info")"; fi)"
    else
      printf '  %-16s down\n' "127.0.0.1:$p"
    fi
  done
  for p in "${SENT[@]}"; do
    if is_up "$p"; then
      printf '  %-16s %-7s master %s = 127.0.0.1:%s\n' "127.0.0.1:$p" sentinel "$NAME" "$(master_of "$p")"
    else
      printf '  %-16s down\n' "127.0.0.1:$p"
    fi
  done
  if healthy; then
    say ok "$DESC healthy"
  else
    say FAIL "$DESC: $REASON"
    return 1
  fi
}

cmd_stop() {
  local p up=()
  for p in "${SENT[@]}" "${DATA[@]}"; do
    if answers "$p"; then up+=("$p"); fi
  done
  if ((${#up[@]} == 0)); then
    say ok "$DESC not running"
    return
  fi
  shutdown_all
  say changed "$DESC stopped (${up[*]} shut down, sentinel configs kept in $DATA_DIR)"
}

fresh_setup() {
  local p
  shutdown_all
  for p in "${DATA[@]}" "${SENT[@]}"; do as_root rm -rf "${DATA_DIR:?}/$p"; done
  start_data "${DATA[0]}"
  start_data "${DATA[1]}" "${DATA[0]}"
  wait_up "${DATA[@]}"
  for p in "${SENT[@]}"; do start_sentinel "$p" "${DATA[0]}"; done
  wait_up "${SENT[@]}"
  wait_healthy 20 || die "$DESC set up afresh but not healthy after 20 s: $REASON"
}

cmd_start() {
  local p r info list changes=() was any=0
  if healthy; then
    say ok "$DESC healthy, master 127.0.0.1:$(master_of "${SENT[0]}")"
    return
  fi
  was=$REASON
  # An instance of ours that answers PING with an error (NOAUTH, LOADING...) is restarted.
  for p in "${DATA[@]}" "${SENT[@]}"; do
    if ! is_up "$p" && answers "$p"; then shutdown_one "$p"; fi
  done
  for p in "${DATA[@]}"; do check_kind "$p" standalone; done
  for p in "${SENT[@]}"; do check_kind "$p" sentinel; done
  for p in "${DATA[@]}" "${SENT[@]}"; do
    if is_up "$p" || [[ -e "$DATA_DIR/$p" ]]; then any=1; fi
  done
  if ((any == 0)); then
    fresh_setup
    say changed "$DESC set up, master 127.0.0.1:${DATA[0]}"
    return
  fi

  pick_master
  r=$(other "$M")
  [[ -z "$NOTE" ]] || changes+=("$NOTE")
  if ! is_up "$M"; then
    start_data "$M"
    wait_up "$M"
    changes+=("$M started as master")
  fi
  if ! is_up "$r"; then
    start_data "$r" "$M"
    wait_up "$r"
    changes+=("$r started as replica of $M")
  elif [[ $(role_of "$M") == master ]]; then
    info=$(rcli "$r" INFO replication || true)
    if [[ $(field role "$info") != slave || $(field master_port "$info") != "$M" ]]; then
      rcli "$r" REPLICAOF 127.0.0.1 "$M" >/dev/null || true
      changes+=("$r made a replica of $M")
    fi
  fi
  for p in "${SENT[@]}"; do
    if ! is_up "$p"; then
      start_sentinel "$p" "$M"
      changes+=("sentinel $p started")
    elif [[ -z $(master_of "$p") ]]; then
      # Answers but does not monitor $NAME (config lost or SENTINEL REMOVE): start it anew.
      shutdown_one "$p"
      start_sentinel "$p" "$M"
      changes+=("sentinel $p restarted with a new config")
    fi
  done
  wait_up "${SENT[@]}"
  if wait_healthy 20; then
    if ((${#changes[@]})); then
      list=$(printf '%s, ' "${changes[@]}")
      say changed "$DESC healthy, master 127.0.0.1:$M (${list%, })"
    else
      say changed "$DESC healthy after a wait, master 127.0.0.1:$M (was: $was)"
    fi
    return
  fi
  local why=$REASON
  fresh_setup
  say changed "$DESC set up afresh, master 127.0.0.1:${DATA[0]} (not healthy after 20 s: $why)"
}

"cmd_$ACTION"
