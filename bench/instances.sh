#!/usr/bin/env bash
# bench/instances.sh [N...] — closed-loop throughput through HAProxy with N switchd instances
# (docs/SCALING.md "Instances"): the database-free issuer (bench-null-issuer, as bench/e2e.sh
# E2E_ISSUER=null), hsm-sim, N switchd made by scripts/instances.sh, HAProxy in TCP mode in
# front, then `acquirer-sim load --closed K` for INST_SECONDS through HAProxy. Default N: "1 2".
# Uses the cluster of the current PG* environment (db/pg.sh env) and its database, which it
# migrates and seeds (load terminals; every BIN routed to WALLET1): a throwaway one.
# Environment: INST_SECONDS [20]  INST_CONNS [40]  INST_K [8]  INST_DIR [var/bench-instances]
#              INST_PORT_BASE [28500]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$(pwd)/build/bin
DIR=${INST_DIR:-$(pwd)/var/bench-instances}
SECONDS_RUN=${INST_SECONDS:-20} CONNS=${INST_CONNS:-40} K=${INST_K:-8}
BASE=${INST_PORT_BASE:-28500}
HSM_PORT=$BASE ISS_PORT=$((BASE + 1)) ACQ_PORT=$((BASE + 2)) POS_PORT=$((BASE + 3)) MET_PORT=$((BASE + 4))
COUNTS=${*:-1 2}
mkdir -p "$DIR/log"
PIDS=()
stop_all() {
  local i
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do kill -TERM "${PIDS[$i]}" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  PIDS=()
}
trap stop_all EXIT
wait_port() { for _ in $(seq 1 150); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "instances: port $1 never opened" >&2; exit 1; }
start() { local port=$1 name=$2; shift 2; "$@" >>"$DIR/log/$name.out" 2>&1 & PIDS+=($!); wait_port "$port"; }

"$BIN/atlas-db" migrate >/dev/null
psql -q -v ON_ERROR_STOP=1 -f db/seed/demo_switch.sql
psql -q -v ON_ERROR_STOP=1 -c "UPDATE switch.bin_routes SET issuer_id = 'WALLET1'; DELETE FROM switch.issuers WHERE issuer_id <> 'WALLET1'"
"$BIN/acquirer-sim" load-seed --terminals "$CONNS" | psql -q -v ON_ERROR_STOP=1 >/dev/null
CONNINFO="host=$PGHOST port=$PGPORT dbname=$PGDATABASE"
cat >"$DIR/base.conf" <<CONF
log_file = $DIR/log/switchd.log
log_level = warn
metrics_address = 127.0.0.1:$MET_PORT
spool_dir = $DIR/spool
db = "$CONNINFO"
[hsm]
address = 127.0.0.1:$HSM_PORT
connections = 4
[listener acq]
address = 127.0.0.1:$ACQ_PORT
dialect = ascii87
framing = 2b
max_connections = 2000
max_connections_per_address = 0
[listener pos]
address = 127.0.0.1:$POS_PORT
dialect = bcd87
framing = tpdu
max_connections = 100
[issuer WALLET1]
address = 127.0.0.1:$ISS_PORT
dialect = ascii87
framing = 2b
timeout_ms = 5000
CONF
jnum() { grep -o "\"$1\":[^,}]*" "$2" | head -1 | cut -d: -f2 | tr -d '" '; }
ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
HZ=$(getconf CLK_TCK)
# The whole machine's busy and total jiffies (every core; other users of the machine included).
machine() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8, $2 + $3 + $4 + $5 + $6 + $7 + $8 }' /proc/stat; }
printf '%-10s %10s %8s %8s %8s %6s  %s\n' instances answered/s p50_ms p99_ms errors busy% "CPU % of a core: switchd each | haproxy | hsm-sim | issuer"
for n in $COUNTS; do
  start "$HSM_PORT" hsm-sim "$BIN/hsm-sim" --listen "127.0.0.1:$HSM_PORT" --log "$DIR/log/hsm-sim.log"
  start "$ISS_PORT" null-issuer "$BIN/bench-null-issuer" --listen "127.0.0.1:$ISS_PORT"
  hsm=${PIDS[0]} iss=${PIDS[1]}
  scripts/instances.sh conf "$DIR/base.conf" "$n" "$DIR" >/dev/null
  sws=()
  for ((k = 0; k < n; k++)); do
    start $((ACQ_PORT + 10000 + 100 * k)) "switchd-$k" "$BIN/switchd" --config "$DIR/run/switchd-$k.conf"
    sws+=("${PIDS[-1]}")
  done
  start "$ACQ_PORT" haproxy /usr/sbin/haproxy -db -f "$DIR/run/haproxy.cfg"
  hap=${PIDS[-1]}
  sleep 3 # sign-on, health checks up
  declare -A t0=()
  for p in "${sws[@]}" "$hap" "$hsm" "$iss"; do t0[$p]=$(ticks "$p"); done
  s=$(date +%s%N)
  read -r mb0 mt0 < <(machine)
  "$BIN/acquirer-sim" load --host "127.0.0.1:$ACQ_PORT" --load-terminals --connections "$CONNS" \
    --rate 1 --closed "$K" --duration "$SECONDS_RUN" --warmup 2 --report "$DIR/report-$n.json" \
    --quiet >"$DIR/load-$n.txt" 2>&1 || true
  el=$(( ($(date +%s%N) - s) / 1000000 ))
  read -r mb1 mt1 < <(machine)
  busy=$(awk -v b=$((mb1 - mb0)) -v t=$((mt1 - mt0)) 'BEGIN { printf "%.0f", 100 * b / t }')
  cpu=""
  for p in "${sws[@]}" "$hap" "$hsm" "$iss"; do
    cpu+=$(awk -v d=$(( $(ticks "$p") - ${t0[$p]} )) -v hz="$HZ" -v ms="$el" 'BEGIN { printf "%.0f ", 100 * d / hz / (ms / 1000) }')
  done
  printf '%-10s %10.0f %8.2f %8.2f %8s %6s  %s\n' "$n" "$(jnum achieved_tps "$DIR/report-$n.json")" \
    "$(jnum p50_ms "$DIR/report-$n.json")" "$(jnum p99_ms "$DIR/report-$n.json")" \
    "$(( $(jnum errors "$DIR/report-$n.json") + $(jnum timeouts "$DIR/report-$n.json") ))" "$busy" "$cpu"
  stop_all
  unset t0
  sleep 1
done
