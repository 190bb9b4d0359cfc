#!/usr/bin/env bash
# A local Redis Cluster for walcache's tests and CI (no Docker): 3 masters + 3 replicas on
# 127.0.0.1, ports BASE..BASE+5 (cluster bus BASE+10000..BASE+10005), BASE = 7000 by default.
#
#   scripts/redis-cluster.sh [start]   start missing nodes, form the cluster, wait until healthy
#   scripts/redis-cluster.sh stop      SHUTDOWN NOSAVE every node (nodes.conf kept: start rejoins)
#   scripts/redis-cluster.sh status    one line per node; exit status 0 only when healthy
#
# Healthy = every node answers, reports cluster_state:ok with all 16384 slots assigned and ok,
# knows exactly the 6 nodes, none flagged fail/handshake, 3 masters each with exactly one
# replica whose link is up. Roles may have swapped after a failover: that is still healthy.
#
# start is idempotent and prints one line: "ok" (already healthy, ~0.1 s) or "changed":
#   - nodes down            -> restarted with their nodes-<port>.conf, they rejoin (a killed
#                              master whose replica was promoted comes back as a replica);
#   - all nodes fresh       -> redis-cli --cluster create ... --cluster-replicas 1;
#   - cannot be formed      -> (some nodes lost their nodes.conf, or not healthy after ~15 s,
#                              e.g. a stale nodes.conf) all nodes shut down, their dirs removed,
#                              and the cluster created afresh.
# No persistence (--save '' --appendonly no): a restart loses the keys, which is fine for tests;
# --repl-diskless-sync-delay 0: replicas sync at once instead of after the default 5 s.
# --cluster-node-timeout 2000 so that a killed master is replaced by its replica in ~3-5 s.
#
# Files: /var/lib/redis-walcache/cluster/<port>/ (nodes-<port>.conf, redis.pid),
#        /var/log/redis/cluster-<port>.log
# Environment: REDIS_CLUSTER_PORT_BASE (default 7000).
# Needs root (or sudo) to create those directories and start redis-server.
set -euo pipefail

BASE="${REDIS_CLUSTER_PORT_BASE:-7000}"
if ! [[ "$BASE" =~ ^[0-9]+$ ]] || ((BASE < 1 || BASE + 5 > 55535)); then
  printf 'redis-cluster.sh: ERROR: bad REDIS_CLUSTER_PORT_BASE=%s\n' "$BASE" >&2
  exit 1
fi
PORTS=()
for ((i = 0; i < 6; i++)); do PORTS+=($((BASE + i))); done
STATE_DIR=/var/lib/redis-walcache
DATA_DIR="$STATE_DIR/cluster"
LOG_DIR=/var/log/redis
NODE_TIMEOUT=2000
RANGE="127.0.0.1:${PORTS[0]}-${PORTS[5]}"

SCRIPT=redis-cluster.sh
LOCK=cluster.lock
# shellcheck source=scripts/lib/redis-common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/redis-common.sh"

start_node() {
  local p=$1 dir="$DATA_DIR/$1"
  as_root mkdir -p "$dir"
  # 9<&-: the daemon must not inherit (and hold) the lock.
  as_root redis-server --daemonize yes --bind 127.0.0.1 --port "$p" \
    --cluster-enabled yes --cluster-config-file "nodes-$p.conf" --cluster-node-timeout "$NODE_TIMEOUT" \
    --save '' --appendonly no --repl-diskless-sync-delay 0 --dir "$dir" --pidfile "$dir/redis.pid" --logfile "$LOG_DIR/cluster-$p.log" 9<&- ||
    die "redis-server did not start on 127.0.0.1:$p (see $LOG_DIR/cluster-$p.log)"
}

wait_up() {
  local p i
  for p in "$@"; do
    for ((i = 0; i < 50; i++)); do
      is_up "$p" && continue 2
      sleep 0.1
    done
    die "redis cluster node 127.0.0.1:$p does not answer PING after 5 s; last lines of $LOG_DIR/cluster-$p.log:
$(as_root tail -n 5 "$LOG_DIR/cluster-$p.log" 2>/dev/null || true)"
  done
}

# The node is a redis-server with cluster support enabled (not some other service on the port).
check_cluster_enabled() {
  local p=$1 v
  v=$(field cluster_enabled "$(rcli "$p" INFO cluster || true)")
  [[ "$v" == 1 ]] || die "127.0.0.1:$p answers PING but is not a cluster-enabled redis (cluster_enabled:${v:-?}); free the port or set REDIS_CLUSTER_PORT_BASE"
}

# shutdown_one PORT: SHUTDOWN the node; if it still answers after 5 s (or answers only with an
# error, e.g. NOAUTH), kill -9 the process named in its pid file when that is our redis-server.
shutdown_one() {
  local p=$1 i pid out pidfile="$DATA_DIR/$1/redis.pid"
  answers "$p" || return 0
  out=$(rcli "$p" SHUTDOWN NOSAVE NOW || true)
  if [[ -z "$out" ]]; then
    for ((i = 0; i < 50; i++)); do
      answers "$p" || return 0
      sleep 0.1
    done
  fi
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

shutdown_nodes() {
  local p
  for p in "${PORTS[@]}"; do shutdown_one "$p"; done
}

# healthy: 0 when the cluster is healthy, else 1 with the first problem in REASON.
REASON=""
healthy() {
  local p info nodes v repl err
  REASON=""
  for p in "${PORTS[@]}"; do
    info=$(rcli "$p" CLUSTER INFO) || { REASON="127.0.0.1:$p does not answer"; return 1; }
    [[ -n "$info" ]] || { REASON="127.0.0.1:$p does not answer"; return 1; }
    info=$'\n'"$info"$'\n'
    for v in cluster_state:ok cluster_slots_assigned:16384 cluster_slots_ok:16384 cluster_known_nodes:6; do
      [[ "$info" == *$'\n'"$v"$'\n'* ]] ||
        { REASON="127.0.0.1:$p reports ${v%%:*}:$(field "${v%%:*}" "$info"), not ${v#*:}"; return 1; }
    done
  done
  for p in "${PORTS[@]}"; do
    nodes=$(rcli "$p" CLUSTER NODES) || { REASON="127.0.0.1:$p does not answer"; return 1; }
    # Prints the first problem, or "replicas <port> ..." when the topology is right.
    err=$(awk -v ports="${PORTS[*]}" '
      BEGIN { n = split(ports, a, " "); for (i = 1; i <= n; i++) want["127.0.0.1:" a[i]] = 1 }
      function bad(msg) { if (!problem) problem = msg }
      NF < 8 { next }
      {
        addr = $2; sub(/@.*/, "", addr); flags = $3; sub(/(^|,)myself/, "", flags); sub(/^,/, "", flags)
        seen++
        if (!(addr in want)) bad("unknown node " addr)
        else if ($8 != "connected") bad("link to " addr " is " $8)
        else if (flags == "master") { masters[$1] = addr; if (NF < 9) bad("master " addr " has no slots") }
        else if (flags == "slave") { nrepl[$4]++; replica[addr] = 1 }
        else bad(addr " has flags " flags)
      }
      END {
        if (!problem && seen != 6) bad(seen " nodes listed")
        if (!problem) {
          m = 0
          for (id in masters) { m++; if (nrepl[id] != 1) bad("master " masters[id] " has " (nrepl[id] + 0) " replicas") }
          if (!problem && m != 3) bad(m " masters")
        }
        if (problem) { print problem; exit }
        out = "replicas"
        for (r in replica) { sub(/.*:/, "", r); out = out " " r }
        print out
      }' <<<"$nodes")
    [[ "$err" == replicas* ]] || { REASON="as seen by 127.0.0.1:$p: $err"; return 1; }
    repl="${err#replicas}"
  done
  for p in $repl; do
    info=$(rcli "$p" INFO replication) || { REASON="127.0.0.1:$p does not answer"; return 1; }
    [[ $'\n'"$info" == *$'\n'master_link_status:up$'\n'* ]] ||
      { REASON="replica 127.0.0.1:$p has master_link_status:$(field master_link_status "$info")"; return 1; }
  done
  return 0
}

# A node that has never joined a cluster: knows only itself and serves no slot.
is_fresh() {
  local info
  info=$(rcli "$1" CLUSTER INFO || true)
  [[ $(field cluster_known_nodes "$info") == 1 && $(field cluster_slots_assigned "$info") == 0 ]]
}

create_cluster() {
  local p addrs=() out
  for p in "${PORTS[@]}"; do
    is_fresh "$p" || die "cannot create the cluster: 127.0.0.1:$p already knows other nodes or serves slots"
    [[ $(rcli "$p" DBSIZE) == 0 ]] || rcli "$p" FLUSHALL >/dev/null
    addrs+=("127.0.0.1:$p")
  done
  out=$(timeout 60 redis-cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes 2>&1) ||
    die "redis-cli --cluster create failed:
$out"
  wait_healthy 30 || die "cluster created on $RANGE but not healthy after 30 s: $REASON"
}

recreate() {
  shutdown_nodes
  local p
  for p in "${PORTS[@]}"; do as_root rm -rf "${DATA_DIR:?}/$p"; done
  for p in "${PORTS[@]}"; do start_node "$p"; done
  wait_up "${PORTS[@]}"
  create_cluster
}

# --- actions ---------------------------------------------------------------------------
cmd_status() {
  local p info role rc=0
  for p in "${PORTS[@]}"; do
    if ! is_up "$p"; then
      printf '  %-16s down\n' "127.0.0.1:$p"
      continue
    fi
    info=$(rcli "$p" CLUSTER INFO || true)
    role=$(field role "$(rcli "$p" INFO replication || true)")
    printf '  %-16s %-7s cluster_state:%s slots_assigned:%s known_nodes:%s\n' "127.0.0.1:$p" "$role" \
      "$(field cluster_state "$info")" "$(field cluster_slots_assigned "$info")" "$(field cluster_known_nodes "$info")"
  done
  if healthy; then
    say ok "redis cluster healthy on $RANGE"
  else
    say FAIL "redis cluster on $RANGE: $REASON"
    rc=1
  fi
  return "$rc"
}

cmd_stop() {
  local p up=()
  for p in "${PORTS[@]}"; do
    if answers "$p"; then up+=("$p"); fi
  done
  if ((${#up[@]} == 0)); then
    say ok "redis cluster nodes on $RANGE not running"
    return
  fi
  shutdown_nodes
  say changed "redis cluster stopped (${up[*]} shut down, nodes.conf kept in $DATA_DIR)"
}

cmd_start() {
  local p started=() fresh=() why was
  if healthy; then
    say ok "redis cluster healthy on $RANGE (3 masters, 3 replicas)"
    return
  fi
  was="$REASON"
  for p in "${PORTS[@]}"; do
    # A node of ours that answers PING with an error (NOAUTH, LOADING...) is restarted.
    if ! is_up "$p" && answers "$p"; then shutdown_one "$p"; fi
    if ! is_up "$p"; then
      start_node "$p"
      started+=("$p")
    fi
  done
  ((${#started[@]} == 0)) || wait_up "${started[@]}"
  for p in "${PORTS[@]}"; do
    check_cluster_enabled "$p"
    if is_fresh "$p"; then fresh+=("$p"); fi
  done
  local what="${started[*]:+nodes ${started[*]} started, }"
  if ((${#fresh[@]} == 6)); then
    create_cluster
    say changed "redis cluster created on $RANGE (${what}3 masters, 3 replicas)"
    return
  fi
  if ((${#fresh[@]} == 0)) && wait_healthy 15; then
    if ((${#started[@]})); then
      say changed "redis cluster healthy on $RANGE (nodes ${started[*]} restarted and rejoined)"
    else
      say changed "redis cluster healthy on $RANGE after a wait (was: $was)"
    fi
    return
  fi
  if ((${#fresh[@]})); then
    why="no cluster config on ${fresh[*]}"
  else
    why="not healthy after 15 s: $REASON"
  fi
  recreate
  say changed "redis cluster recreated on $RANGE ($why)"
}

"cmd_$ACTION"
