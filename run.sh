#!/usr/bin/env bash
# ./run.sh [--for SECONDS] [--instances N] — brings up the whole Atlas stack on loopback and runs
#   its main job: a throwaway PostgreSQL cluster (db/pg.sh), migrations, the demo reference data
#   and wallets, hsm-sim, four issuer-sims (WALLET1..4, each with its own database) and switchd;
#   then the scripted demo transactions (acquirer-sim run sim/scenarios/demo.scn), one line each.
#   It keeps serving until Ctrl-C (or for SECONDS with --for), then stops everything cleanly.
#   --instances N (N > 1): N switchd behind HAProxy on the same ports (docs/switchd.md
#   "Instances"). Idempotent; fine as root.
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(pwd)

FOR=""
INSTANCES=1
while [ $# -gt 0 ]; do
  case "$1" in
    --instances) INSTANCES=${2:?--instances needs a number}; shift 2 ;;
    --instances=*) INSTANCES=${1#--instances=}; shift ;;
    --for) FOR=${2:?--for needs a number of seconds}; shift 2 ;;
    --for=*) FOR=${1#--for=}; shift ;;
    -h|--help) sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
  esac
done
case "$FOR" in ''|*[!0-9]*) [ -z "$FOR" ] || { echo "run.sh: --for needs seconds" >&2; exit 2; } ;; esac
case "$INSTANCES" in ''|*[!0-9]*|0) echo "run.sh: --instances needs a number from 1 to 32" >&2; exit 2 ;; esac
[ "$INSTANCES" -le 32 ] || { echo "run.sh: --instances needs a number from 1 to 32" >&2; exit 2; }

source scripts/ensure-deps.sh
atlas_ensure_deps
echo "building..."
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc)" >/dev/null

mkdir -p var/log var/run var/spool
# The lab CA and the certificates of the TLS terminal port 8585 (kept while they are valid).
scripts/lab-certs.sh var/tls
# Lab keys of the demo (README "The demo world"). Set your own in the environment for anything real.
export ATLAS_PAN_HMAC_KEY=${ATLAS_PAN_HMAC_KEY:-000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F}
export ATLAS_PAN_SEAL_KEY=${ATLAS_PAN_SEAL_KEY:-A0A1A2A3A4A5A6A7A8A9AAABACADAEAFB0B1B2B3B4B5B6B7B8B9BABBBCBDBEBF}

# The four wallet issuers of the demo world (README "The demo world"; db/seed/demo_switch.sql routes
# each BIN to its issuer, switch/demo.conf has their links): id, BIN, port, currency, country. Each
# is an issuer-sim with its own database atlas_walletN in the same cluster.
ISSUERS=("WALLET1 489001 9100 MAD Morocco" "WALLET2 489002 9101 XOF West Africa (UEMOA)"
  "WALLET3 489003 9102 XAF Central Africa (CEMAC)" "WALLET4 489004 9103 MRU Mauritania")
issuer_db() { echo "atlas_$(echo "$1" | tr '[:upper:]' '[:lower:]')"; } # WALLET1 -> atlas_wallet1

db/pg.sh start
eval "$(db/pg.sh env)"
build/bin/atlas-db migrate
# The journal's upkeep, as the atlas-partitions unit does it daily and before switchd starts
# (docs/db.md "Journal upkeep"): partitions a week ahead, the DEFAULT partition refusing rows. A
# row already in DEFAULT (an older demo run) is reported, not fatal, for the demo.
upkeep=$(build/bin/atlas-db partitions --ahead 7 2>&1) ||
  printf '%s\nrun.sh: atlas-db partitions reported a problem (above); the demo goes on\n' "$upkeep"
psql -q -v ON_ERROR_STOP=1 -f db/seed/demo_switch.sql
# The seed puts the demo keys back in force: keys a demo terminal downloaded in an earlier run
# (acquirer-sim send --type keychange, docs/keys.md) are no longer the switch's.
rm -f "${ATLAS_ACQ_STATE_DIR:-var/acquirer-sim}"/TERM000[1-4].keys
for row in "${ISSUERS[@]}"; do
  read -r id bin port _ <<<"$row"
  db=$(issuer_db "$id")
  if [ -z "$(psql -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$db'")" ]; then
    psql -q -d postgres -v ON_ERROR_STOP=1 -c "CREATE DATABASE $db"
  fi
  # The migrations are one numbered set: an issuer's database gets all of them (its switch schema
  # stays empty and unused; docs/issuer-sim.md, "Several issuers").
  build/bin/atlas-db --db "dbname=$db" migrate >/dev/null
  # Fresh demo wallets every run, so the scripted expectations (balances, limits) hold: the
  # wallets of the issuer's BIN among the same 1,000 (index -> BIN as issuer-sim seed has it).
  psql -q -d "$db" -v ON_ERROR_STOP=1 -c "SET wallet.allow_truncate = on; TRUNCATE wallet.ledger, wallet.holds, wallet.requests, wallet.wallets RESTART IDENTITY CASCADE"
  build/bin/issuer-sim seed --wallets 1000 --bin "$bin" --db "dbname=$db"
done
# Traffic from here on is this run's (the wallets are fresh, the journal keeps earlier runs).
RUN_FROM=$(date -u +%Y-%m-%dT%H:%M:%S)
# The demo conversion rates (docs/fx.md; loading the same file again changes nothing).
build/bin/atlas-fx load fx/demo-rates.csv
# The demo mobile numbers of the alias directory (transfers to a number: docs/transfers.md),
# one per demo card of each country; registering one again replaces it.
for alias in "+212600000012 4890010000000012" "+221770000029 4890020000000029" \
  "+237690000036 4890030000000036" "+22220000043 4890040000000043"; do
  build/bin/atlas-db alias $alias >/dev/null
done

PIDS=()
stop_all() {
  trap - EXIT INT TERM
  echo
  echo "stopping..."
  local i
  # switchd first (it drains through the issuers and the HSM), then the issuer-sims, then hsm-sim.
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

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# A port another stack holds (another checkout's ./run.sh) would answer for our daemon, which
# cannot bind it, and the demo would go to that stack: refuse instead.
for port in 1500 9100 9101 9102 9103 8583 8584 8585 9583; do
  if port_open "$port"; then
    echo "run.sh: 127.0.0.1:$port is in use by another process (another ./run.sh?); stop it first" >&2
    exit 1
  fi
done

wait_port() { # port name pid
  local i
  for i in $(seq 1 100); do
    kill -0 "$3" 2>/dev/null || break
    port_open "$1" && return 0
    sleep 0.1
  done
  echo "run.sh: $2 did not start; see var/log/$2.log and var/log/$2.out" >&2
  exit 1
}
start() { # name port command...
  local name=$1 port=$2; shift 2
  "$@" >>"var/log/$name.out" 2>&1 &
  PIDS+=($!)
  echo $! > "var/run/$name.pid"
  wait_port "$port" "$name" $!
}
start hsm-sim 1500 build/bin/hsm-sim --listen 127.0.0.1:1500 --log var/log/hsm-sim.log
# Each issuer-sim holds its issuer's ZPK and ZAK (under the LMK) as switchd has them in switch.keys:
# the generation the issuer row names (the latest key change, docs/keys.md), and its ZMK.
lmk_key() { # issuer column
  psql -tA -v ON_ERROR_STOP=1 -c "SELECT k.key_under_lmk FROM switch.issuers i
    JOIN switch.keys k ON k.key_id = i.$2 WHERE i.issuer_id = '$1'"
}
for row in "${ISSUERS[@]}"; do
  read -r id bin port _ <<<"$row"
  start "issuer-$id" "$port" build/bin/issuer-sim --listen "127.0.0.1:$port" --hsm 127.0.0.1:1500 \
    --db "dbname=$(issuer_db "$id")" --zpk "$(lmk_key "$id" zpk_key_id)" \
    --zak "$(lmk_key "$id" zak_key_id)" --zmk "$(lmk_key "$id" zmk_key_id)" \
    --log "var/log/issuer-$id.log"
done
if [ "$INSTANCES" -eq 1 ]; then
  start switchd 8583 build/bin/switchd --config switch/demo.conf
else
  # N instances on private ports (the usual port + 10000 + 100*k: acq 18583, 18683, ..., metrics
  # 19583, 19683, ...), each with its own
  # instance_id, STAN slot, spool and log; HAProxy (TCP mode, /health checks) on the usual ports.
  scripts/instances.sh conf switch/demo.conf "$INSTANCES" var
  for ((k=0; k<INSTANCES; k++)); do
    start "switchd-$k" $((18583 + 100 * k)) build/bin/switchd --config "var/run/switchd-$k.conf"
  done
  start haproxy 8583 haproxy -db -f var/run/haproxy.cfg
fi
sleep 0.5 # issuer link sign-on
SWLOG=var/log/switchd.log
[ "$INSTANCES" -eq 1 ] || SWLOG=var/log/switchd-0.log # one log per instance: switchd-K.log

echo
echo "== demo transactions (sim/scenarios/demo.scn) =="
build/bin/acquirer-sim run sim/scenarios/demo.scn || echo "(some demo lines did not get the expected answer: see above)"

cat <<TXT

Atlas is serving on loopback:
  terminals / acquirer hosts  127.0.0.1:8583  (ascii87, 2-byte length)
  POS terminals               127.0.0.1:8584  (bcd87, 2-byte length + TPDU)
  terminals over TLS          127.0.0.1:8585  (as 8583 inside TLS 1.2/1.3, client certificate
                              var/tls/terminal.crt of the lab CA var/tls/ca.crt: README)
  metrics and health          http://127.0.0.1:9583/metrics   http://127.0.0.1:9583/health$(
  [ "$INSTANCES" -eq 1 ] || printf '\n  %s switchd behind HAProxy   instance k = 0..%s: metrics http://127.0.0.1:(19583 + 100k)/metrics, log var/log/switchd-k.log' "$INSTANCES" $((INSTANCES - 1)))
  hsm-sim 127.0.0.1:1500, PostgreSQL: $(db/pg.sh env | tr '\n' ' ' | sed "s/export //g")
  wallet issuers (issuer-sim; log var/log/issuer-ID.log, wallets in their own database):
$(for row in "${ISSUERS[@]}"; do read -r id bin port ccy country <<<"$row"
  printf '    %-8s %-23s %s  BIN %s  127.0.0.1:%s  dbname=%s\n' "$id" "$country" "$ccy" "$bin" "$port" "$(issuer_db "$id")"; done)
Reconcile this run's traffic with one issuer's ledger (another terminal, or after the run):
  build/bin/atlas-reconcile --from $RUN_FROM --issuer WALLET2 --issuer-db dbname=atlas_wallet2
Watch the switch live (another terminal): build/bin/atlas-console $SWLOG; raw JSON lines of $ROOT/$SWLOG with
  tail -F $SWLOG
Send a transaction by hand (another terminal):
  build/bin/acquirer-sim send --type purchase --pan 4890010000000012 --pin 1234 --amount 25.00
  build/bin/acquirer-sim send --type transfer --pan 4890010000000012 --pin 1234 --amount 20.00 --to-msisdn +221770000029
  build/bin/acquirer-sim --tls --ca var/tls/ca.crt --cert var/tls/terminal.crt --key var/tls/terminal.key \
    --host 127.0.0.1:8585 send --type purchase --pan 4890010000000012 --pin 1234 --amount 5.00
Change keys without stopping anything (docs/keys.md): an issuer's ZPK/ZAK, a terminal's TPK/TAK:
  build/bin/atlas-keys rotate --issuer WALLET1 && build/bin/atlas-keys list
  build/bin/acquirer-sim send --type keychange --terminal TERM0001
TXT
if [ -n "$FOR" ]; then
  echo "(stopping in $FOR s)"
  sleep "$FOR" & wait $!
else
  echo "Ctrl-C stops everything."
  while true; do sleep 3600 & wait $!; done
fi
