#!/usr/bin/env bash
# ./run.sh [--for SECONDS] — brings up the whole Atlas stack on loopback and runs its main job:
#   a throwaway PostgreSQL cluster (db/pg.sh), migrations, the demo reference data and wallets,
#   hsm-sim, issuer-sim and switchd; then the scripted demo transactions (acquirer-sim run
#   sim/scenarios/demo.scn), one readable line each. It keeps serving until Ctrl-C (or for
#   SECONDS with --for), then stops everything cleanly. Idempotent; fine as root.
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(pwd)

FOR=""
while [ $# -gt 0 ]; do
  case "$1" in
    --for) FOR=${2:?--for needs a number of seconds}; shift 2 ;;
    --for=*) FOR=${1#--for=}; shift ;;
    -h|--help) sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
  esac
done
case "$FOR" in ''|*[!0-9]*) [ -z "$FOR" ] || { echo "run.sh: --for needs seconds" >&2; exit 2; } ;; esac

source scripts/ensure-deps.sh
atlas_ensure_deps
echo "building..."
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc)" >/dev/null

mkdir -p var/log var/run var/spool
# Lab keys of the demo (README "The demo world"). Set your own in the environment for anything real.
export ATLAS_PAN_HMAC_KEY=${ATLAS_PAN_HMAC_KEY:-000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F}
export ATLAS_PAN_SEAL_KEY=${ATLAS_PAN_SEAL_KEY:-A0A1A2A3A4A5A6A7A8A9AAABACADAEAFB0B1B2B3B4B5B6B7B8B9BABBBCBDBEBF}

db/pg.sh start
eval "$(db/pg.sh env)"
build/bin/atlas-db migrate
psql -q -v ON_ERROR_STOP=1 -f db/seed/demo_switch.sql
# Fresh demo wallets every run, so the scripted expectations (balances, limits) hold.
psql -q -v ON_ERROR_STOP=1 -c "TRUNCATE wallet.ledger, wallet.holds, wallet.requests, wallet.wallets RESTART IDENTITY CASCADE"
build/bin/issuer-sim seed --wallets 1000
# The demo conversion rates (docs/fx.md; loading the same file again changes nothing).
build/bin/atlas-fx load fx/demo-rates.csv

PIDS=()
stop_all() {
  trap - EXIT INT TERM
  echo
  echo "stopping..."
  local i
  # switchd first (it drains through the issuer and the HSM), then issuer-sim, then hsm-sim.
  for ((i=${#PIDS[@]}-1; i>=0; i--)); do
    kill -TERM "${PIDS[$i]}" 2>/dev/null || true
    wait "${PIDS[$i]}" 2>/dev/null || true
  done
  rm -f var/run/*.pid
  db/pg.sh stop >/dev/null 2>&1 || true
  echo "stopped (logs stay in var/log/)"
}
trap stop_all EXIT
trap 'exit 0' INT TERM

# Daemons left by an earlier run that was killed hard.
for f in var/run/*.pid; do
  [ -e "$f" ] || continue
  kill -TERM "$(cat "$f")" 2>/dev/null || true
  rm -f "$f"
done
sleep 0.3

wait_port() { # port name
  local i
  for i in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "run.sh: $2 did not start; see var/log/$2.log" >&2
  exit 1
}
start() { # name port command...
  local name=$1 port=$2; shift 2
  "$@" >>"var/log/$name.out" 2>&1 &
  PIDS+=($!)
  echo $! > "var/run/$name.pid"
  wait_port "$port" "$name"
}
start hsm-sim 1500 build/bin/hsm-sim --listen 127.0.0.1:1500 --log var/log/hsm-sim.log
start issuer-sim 9100 build/bin/issuer-sim --listen 127.0.0.1:9100 --hsm 127.0.0.1:1500 --log var/log/issuer-sim.log
start switchd 8583 build/bin/switchd --config switch/demo.conf
sleep 0.5 # issuer link sign-on

echo
echo "== demo transactions (sim/scenarios/demo.scn) =="
build/bin/acquirer-sim run sim/scenarios/demo.scn || echo "(some demo lines did not get the expected answer: see above)"

cat <<TXT

Atlas is serving on loopback:
  terminals / acquirer hosts  127.0.0.1:8583  (ascii87, 2-byte length)
  POS terminals               127.0.0.1:8584  (bcd87, 2-byte length + TPDU)
  metrics and health          http://127.0.0.1:9583/metrics   http://127.0.0.1:9583/health
  hsm-sim 127.0.0.1:1500, issuer-sim 127.0.0.1:9100, PostgreSQL: $(db/pg.sh env | tr '\n' ' ' | sed "s/export //g")
Watch the switch live (another terminal): build/bin/atlas-console var/log/switchd.log; raw JSON lines of $ROOT/var/log/switchd.log with
  tail -F var/log/switchd.log
Send a transaction by hand (another terminal):
  build/bin/acquirer-sim send --type purchase --pan 4890010000000012 --pin 1234 --amount 25.00
TXT
if [ -n "$FOR" ]; then
  echo "(stopping in $FOR s)"
  sleep "$FOR" & wait $!
else
  echo "Ctrl-C stops everything."
  while true; do sleep 3600 & wait $!; done
fi
