#!/usr/bin/env bash
# bench/curves.sh — how the cost of an authorization grows with the work (issue 17): runs
# bench/e2e.sh once per point of four curves and writes data files, gnuplot PNG plots and a
# printed table (docs/BENCHMARKS.md "Curves"):
#   latency      p50/p99/p99.9 against the achieved rate, open-loop steps of rising rate, for the
#                null issuer and for issuer-sim (the knee), with the closed-loop ceiling of each;
#   wallets      closed-loop throughput and p50/p99/p99.9 at a fixed moderate rate against the
#                number of issuer-sim wallets (10k, 100k, 1M, 10M; seeded once, growing);
#   journal      the same against the journal's size: empty, then today's partition pre-filled
#                with CURVES_JOURNAL_ROWS rows (bench/journal_prefill.sql);
#   connections  the same against the number of load connections (100, 1,000, 10,000), every one
#                sending: the closed loop has max(1, CURVES_CLOSED_INFLIGHT / C) in flight on each.
# Every point is a fresh stack (e2e.sh brings it up and down) on one throwaway cluster. Full size
# takes ~25-30 min (most of it seeding 10M wallets, ~4 min, and filling 10M journal rows, ~2.5
# min); CURVES_QUICK=1 runs every curve at tiny size in a few minutes (a smoke test of the
# tooling, not figures: its output goes to $E2E_DIR/curves, never into docs/).
#
# Environment (defaults full / quick):
#   CURVES_QUICK=1                 tiny sizes, 3 s points
#   CURVES=...                     the curves to run ["latency wallets journal connections"]
#   CURVES_STEP                    seconds measured per point [15 / 3]
#   CURVES_WARMUP                  warm-up seconds per point [2 / 1]
#   CURVES_RATES_NULL              open-loop steps, null issuer
#                                  ["1000 2000 4000 6000 8000 10000 12000 14000 16000 18000 20000"
#                                   / "1000 4000 8000"]
#   CURVES_RATES_WALLET            open-loop steps, issuer-sim
#                                  ["250 500 1000 1500 2000 2500 3000 4000" / "250 1000 3000"]
#   CURVES_SEARCH_PAST             steps run past the first past the knee (errors, or p99 above
#                                  1 s: queueing) [2]
#   CURVES_WALLETS                 ["10000 100000 1000000 10000000" / "2000 10000 50000 100000"]
#                                  (seeding: ~23 s per million on this machine when quiet,
#                                  ~580 bytes per wallet with its opening ledger row: 10M is
#                                  ~4-5 min and ~6 GB, extrapolated)
#   CURVES_LATENCY_WALLETS         issuer-sim wallets of the latency curve [100000 / 10000]
#   CURVES_JOURNAL_ROWS            journal rows of the second journal point [10000000 / 200000]
#                                  (~13 s and ~500 MB per million: 10M is ~2.5 min, ~5 GB)
#   CURVES_CONNS                   ["100 1000 10000" / "20 100 500"]
#   CURVES_LOAD_CONNS              connections of the latency, wallets and journal curves [100 / 20]
#   CURVES_CLOSED_K                in flight per connection, closed loop (not connections) [8]
#   CURVES_CLOSED_INFLIGHT         in flight in all, closed loop of the connections curve [800]
#   CURVES_FIXED_RATE              the moderate rate of the p99 points [500]
#   CURVES_JOURNAL_ISSUER          issuer of the journal curve, null or wallet [null]
#   CURVES_CONNS_ISSUER            issuer of the connections curve, null or wallet [null]
#   CURVES_OUT                     data files and plots [docs/bench / $E2E_DIR/curves]
#   CURVES_PLOT_ONLY=1             no runs: the data files, plots and table again from
#                                  CURVES_OUT's results.tsv and header.txt (e.g. after editing
#                                  the plots, or for another CURVES_OUT holding a copy)
#   CURVES_KEEP_DATA=1             leave the cluster's data (wallets, journal) in $E2E_DIR/pg;
#                                  by default the big tables are emptied at the end (the data
#                                  directory, several GB after a full run, shrinks back)
#   ATLAS_PGPORT [5499]  E2E_DIR [var/e2e-curves]  E2E_PORT_BASE [18500]  E2E_NOBUILD=1
#   (every other E2E_* knob of bench/e2e.sh, e.g. E2E_MIX, passes through)
# Exit status: 0 every point ran and passed e2e.sh's journal check; 1 otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

QUICK=${CURVES_QUICK:-0}
q() { [ "$QUICK" = 1 ] && echo "$2" || echo "$1"; } # full quick
CURVES=${CURVES:-"latency wallets journal connections"}
STEP=${CURVES_STEP:-$(q 15 3)}
WARMUP=${CURVES_WARMUP:-$(q 2 1)}
RATES_NULL=${CURVES_RATES_NULL:-$(q "1000 2000 4000 6000 8000 10000 12000 14000 16000 18000 20000" "1000 4000 8000")}
RATES_WALLET=${CURVES_RATES_WALLET:-$(q "250 500 1000 1500 2000 2500 3000 4000" "250 1000 3000")}
SEARCH_PAST=${CURVES_SEARCH_PAST:-2}
WALLETS_SIZES=${CURVES_WALLETS:-$(q "10000 100000 1000000 10000000" "2000 10000 50000 100000")}
LAT_WALLETS=${CURVES_LATENCY_WALLETS:-$(q 100000 10000)}
JOURNAL_ROWS=${CURVES_JOURNAL_ROWS:-$(q 10000000 200000)}
CONNS_SIZES=${CURVES_CONNS:-$(q "100 1000 10000" "20 100 500")}
LOAD_CONNS=${CURVES_LOAD_CONNS:-$(q 100 20)}
CLOSED_K=${CURVES_CLOSED_K:-8}
CLOSED_INFLIGHT=${CURVES_CLOSED_INFLIGHT:-800}
FIXED_RATE=${CURVES_FIXED_RATE:-500}
JOURNAL_ISSUER=${CURVES_JOURNAL_ISSUER:-null}
CONNS_ISSUER=${CURVES_CONNS_ISSUER:-null}

export ATLAS_PGPORT=${ATLAS_PGPORT:-5499}
E2E_DIR=${E2E_DIR:-$ROOT/var/e2e-curves}
case "$E2E_DIR" in /*) ;; *) E2E_DIR=$ROOT/$E2E_DIR ;; esac
export E2E_DIR
OUT=${CURVES_OUT:-$(q "$ROOT/docs/bench" "$E2E_DIR/curves")}
mkdir -p "$OUT" "$E2E_DIR"
RESULTS=$OUT/results.tsv
FAILED=0

# gnuplot (Debian's gnuplot-nox): a benchmark-only package, not one ./test.sh installs.
# shellcheck source=../scripts/ensure-deps.sh
source scripts/ensure-deps.sh
atlas_ensure_deps bench

if [ "${E2E_NOBUILD:-0}" != 1 ]; then
  echo "building (RelWithDebInfo)..."
  cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build build -j "$(nproc)" >/dev/null
fi

COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD 2>/dev/null || COMMIT="$COMMIT (+ uncommitted changes)"
CPU=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
MEM=$(awk '/^MemTotal/ { printf "%.0f GB", $2 / 1048576 }' /proc/meminfo)
STARTED=$(date -u +%Y-%m-%dT%H:%M:%SZ)
MODE=$(q "full size" "CURVES_QUICK=1: SMOKE RUN of the tooling at tiny size, not figures")
HEADER="# Atlas bench/curves.sh, $MODE
# machine: $(uname -n), $CPU x $(nproc), $MEM RAM, $(uname -sr); load average at start: $(cut -d' ' -f1-3 /proc/loadavg)
# date: $STARTED   commit: $COMMIT
# points: ${STEP} s measured after ${WARMUP} s warm-up; fixed rate ${FIXED_RATE}/s; mix: ${E2E_MIX:-the harness default}"

T_ALL=$(date +%s)
PLOT_ONLY=${CURVES_PLOT_ONLY:-0}
if [ "$PLOT_ONLY" = 1 ]; then
  # Data files and plots again from the results of an earlier run (its header kept).
  [ -s "$RESULTS" ] && [ -s "$OUT/header.txt" ] || { echo "curves: no $RESULTS to plot" >&2; exit 2; }
  HEADER=$(cat "$OUT/header.txt")
  STARTED=$(sed -n 's/^# date: \([^ ]*\).*/\1/p' "$OUT/header.txt")
  COMMIT=$(sed -n 's/^# date: .*commit: //p' "$OUT/header.txt")
  CURVES=""
  for c in latency:lat- wallets:wallets- journal:journal- connections:conns-; do
    grep -q "^${c#*:}" "$RESULTS" && CURVES="$CURVES ${c%%:*}"
  done
else
  echo "curves: $MODE; output in $OUT; cluster port $ATLAS_PGPORT, $E2E_DIR"
  # A run owns CURVES_OUT: the previous run's files go (results.tsv is what they were drawn from).
  rm -f "$OUT"/latency-null.dat "$OUT"/latency-wallet.dat "$OUT"/{latency,wallets,journal,connections}.png \
    "$OUT"/{wallets,journal,connections}.dat
  : >"$RESULTS"
  echo "$HEADER" >"$OUT/header.txt"
fi

# point LABEL [VAR=value...]: one bench/e2e.sh run with the given knobs (its results appended
# to $RESULTS under LABEL); its output in $E2E_DIR/curves-LABEL.log, its table printed.
point() {
  local label=$1
  shift
  local log=$E2E_DIR/curves-$label.log t0 rc=0
  t0=$(date +%s)
  echo "--- $label ($*)"
  env E2E_NOBUILD=1 E2E_SETTLE=1 E2E_LABEL="$label" E2E_RESULTS="$RESULTS" E2E_STEP="$STEP" \
    E2E_WARMUP="$WARMUP" E2E_SKIP="rss" E2E_FIXED_DURATION="$STEP" E2E_FIXED_RATE="$FIXED_RATE" \
    E2E_CONNS="$LOAD_CONNS" E2E_IDLE_CONNS="$LOAD_CONNS" E2E_CLOSED_K="$CLOSED_K" "$@" bench/e2e.sh >"$log" 2>&1 || rc=$?
  grep -E '^(wallets|journal prefill|load terminals):|^(step|closed|fixed)-|search stops' "$log" | sed 's/^/    /' || true
  if [ "$rc" != 0 ]; then
    echo "    e2e.sh exited $rc: see $log" >&2
    tail -5 "$log" | sed 's/^/    | /' >&2
    FAILED=1
  fi
  echo "    ($(($(date +%s) - t0)) s)"
}

for c in $CURVES; do
  [ "$PLOT_ONLY" = 1 ] && break
  t=$(date +%s)
  case $c in
    latency)
      point lat-null E2E_ISSUER=null E2E_WALLETS="$LAT_WALLETS" E2E_RATES="$RATES_NULL" \
        E2E_SEARCH_P99_MS=1000 E2E_SEARCH_KEPT=0 E2E_SEARCH_PAST="$SEARCH_PAST" E2E_SKIP="fixed rss"
      point lat-wallet E2E_ISSUER=wallet E2E_WALLETS="$LAT_WALLETS" E2E_RATES="$RATES_WALLET" \
        E2E_SEARCH_P99_MS=1000 E2E_SEARCH_KEPT=0 E2E_SEARCH_PAST="$SEARCH_PAST" E2E_SKIP="fixed rss"
      ;;
    wallets)
      # Smallest first, each point keeping the last one's wallets: seeding grows the table.
      keep=0
      for n in $WALLETS_SIZES; do
        point "wallets-$n" E2E_ISSUER=wallet E2E_WALLETS="$n" E2E_RATES= E2E_KEEP_WALLETS=$keep
        keep=1
      done
      ;;
    journal)
      for n in 0 "$JOURNAL_ROWS"; do
        point "journal-$n" E2E_ISSUER="$JOURNAL_ISSUER" E2E_WALLETS="$LAT_WALLETS" E2E_RATES= \
          E2E_JOURNAL_PREFILL="$n"
      done
      ;;
    connections)
      for n in $CONNS_SIZES; do
        k=$((CLOSED_INFLIGHT / n))
        [ "$k" -ge 1 ] || k=1
        # Connecting thousands of terminals takes seconds: longer warm-up; one in flight on
        # each of 10,000 is a queue of seconds: longer timeout.
        point "conns-$n" E2E_ISSUER="$CONNS_ISSUER" E2E_WALLETS="$LAT_WALLETS" E2E_RATES= \
          E2E_CONNS="$n" E2E_IDLE_CONNS="$n" E2E_CLOSED_K="$k" E2E_TIMEOUT_MS=30000 \
          E2E_WARMUP=$((WARMUP + n / 2000))
      done
      ;;
    *)
      echo "curves: unknown curve '$c' (latency wallets journal connections)" >&2
      exit 2
      ;;
  esac
  echo "== $c: $(($(date +%s) - t)) s"
done

# ------------------------------------------------------------------ data files
# Fields of $RESULTS (bench/e2e.sh RESULT_FIELDS): 1 label 2 run 3 issuer 4 conns 5 wallets
# 6 journal_rows 7 asked 8 achieved 9 p50 10 p90 11 p99 12 p999 13 max 14 errors 15 rate_kept
# 16 sw% 17 hsm% 18 iss% 19 pg% 20 load% 21 cpu_us 22 rows 23 check 24 duration_s
# 25 switchd's VmHWM (kB) after the run 26 WAL bytes of the whole cluster during the run per answer
dat_latency() { # issuer-label file title
  {
    echo "$HEADER"
    echo "# $3: open-loop steps (latency from the scheduled send: queueing included)"
    echo "# closed-loop ceiling: $(awk -F'\t' -v l="$1" '$1 == l && $2 ~ /^closed/ { print $8 "/s, p99 " $11 " ms" }' "$RESULTS")"
    echo "# asked_per_s achieved_per_s p50_ms p90_ms p99_ms p999_ms errors rate_kept cpu_us_per_auth check wal_bytes_per_auth"
    awk -F'\t' -v l="$1" '$1 == l && $2 ~ /^step-/ { print $7, $8, $9, $10, $11, $12, $14, $15, $21, $23, $26 }' "$RESULTS"
  } >"$OUT/$2"
}
dat_points() { # label-prefix file x-name title
  {
    echo "$HEADER"
    echo "# $4: closed loop (throughput) and ${FIXED_RATE}/s open loop (latency) per point"
    echo "# closed_cpu_us: CPU of every process per closed-loop authorization, then its share by process"
    echo "# (from each process's % of a core over the run): switchd, hsm-sim, the issuer, PostgreSQL, the harness"
    echo "# sw_hwm_kb: switchd's peak resident size after the point's runs (a fresh switchd per point)"
    echo "# closed_wal_bytes: WAL the cluster wrote during the closed-loop run, per answered request (journal + wallet)"
    echo "# $3 closed_per_s closed_cpu_us fixed_achieved_per_s p50_ms p99_ms p999_ms errors checks issuer conns closed_k sw_us hsm_us iss_us pg_us load_us sw_hwm_kb closed_wal_bytes"
    awk -F'\t' -v l="$1" -v x="$3" '
      index($1, l) == 1 && $2 ~ /^closed/ { c[$1] = $8; cu[$1] = $21; k[$1] = substr($2, 8); e[$1] += $14
                                           ck[$1] = ck[$1] $23; iss[$1] = $3; cn[$1] = $4
                                           t = $16 + $17 + $18 + $19 + $20; wal[$1] = $26
                                           by[$1] = ""
                                           for (j = 16; j <= 20; j++)
                                             by[$1] = by[$1] sprintf(" %.0f", t > 0 && $21 ~ /^[0-9]/ ? $21 * $j / t : 0) }
      index($1, l) == 1 && $2 ~ /^fixed/  { f[$1] = $8; p50[$1] = $9; p99[$1] = $11; p999[$1] = $12; e[$1] += $14
                                           ck[$1] = ck[$1] (ck[$1] == "" ? "" : "+") $23
                                           xv[$1] = x == "wallets" ? $5 : x == "journal_rows" ? $6 : $4; hwm[$1] = $25 }
      END { for (i in xv) print xv[i], c[i], cu[i], f[i], p50[i], p99[i], p999[i], e[i], ck[i], iss[i], cn[i], k[i] by[i], hwm[i], wal[i] }
    ' "$RESULTS" | sort -n
  } >"$OUT/$2"
}
case " $CURVES " in *" latency "*)
  dat_latency lat-null latency-null.dat "null issuer (bench-null-issuer: the switch alone)"
  dat_latency lat-wallet latency-wallet.dat "issuer-sim ($LAT_WALLETS wallets in PostgreSQL)"
  ;;
esac
case " $CURVES " in *" wallets "*) dat_points wallets- wallets.dat wallets "issuer-sim, against its wallets" ;; esac
case " $CURVES " in *" journal "*) dat_points journal- journal.dat journal_rows "$JOURNAL_ISSUER issuer, against the journal's rows before the run" ;; esac
case " $CURVES " in *" connections "*) dat_points conns- connections.dat connections "$CONNS_ISSUER issuer, against the load connections (closed loop: max(1, $CLOSED_INFLIGHT/C) in flight on each)" ;; esac

# ------------------------------------------------------------------ plots
SUB="$(uname -n), $(nproc) cores, $STARTED, $COMMIT"
[ "$QUICK" = 1 ] && SUB="SMOKE RUN (CURVES_QUICK=1), NOT FIGURES - $SUB"
plot() { # gnuplot script on stdin, errors reported, never fatal
  gnuplot 2>"$E2E_DIR/gnuplot.err" || { echo "curves: gnuplot failed:" >&2; cat "$E2E_DIR/gnuplot.err" >&2; FAILED=1; }
}
GP_COMMON="set terminal pngcairo noenhanced size 1000,620 font 'sans,10'
set grid
set key top left
set datafile missing '-'"
if [ -s "$OUT/latency-null.dat" ] || [ -s "$OUT/latency-wallet.dat" ]; then
  ceil() { awk -F'[ /]' '/^# closed-loop ceiling: [0-9]/ { print $4 + 0 }' "$OUT/$1"; }
  # The x axis reaches the ceiling too: its dashed line is drawn where it is, not off the panel.
  xmax() { awk -v c="$2" '!/^#/ && NF { if ($2 + 0 > m) m = $2 + 0 } END {
             if (c + 0 > m) m = c + 0; printf "%d", m * 1.05 + 1 }' "$OUT/$1"; }
  cn=$(ceil latency-null.dat) cw=$(ceil latency-wallet.dat)
  xn=$(xmax latency-null.dat "$cn") xw=$(xmax latency-wallet.dat "$cw")
  plot <<GP
$GP_COMMON
set output '$OUT/latency.png'
set multiplot layout 1,2 title "Latency against throughput (open-loop steps; dashed: closed-loop ceiling)\n$SUB"
set logscale y
set xlabel 'achieved authorizations/s'
set ylabel 'latency, ms (log)'
set title 'null issuer (the switch alone)${cn:+; closed loop $cn/s}'
set xrange [0:$xn]
${cn:+set arrow 1 from $cn, graph 0 to $cn, graph 1 nohead dt 2 lc rgb 'gray40'}
plot '$OUT/latency-null.dat' u 2:3 w lp pt 7 t 'p50', '' u 2:5 w lp pt 5 t 'p99', '' u 2:6 w lp pt 9 t 'p99.9'
unset arrow 1
set title "issuer-sim ($LAT_WALLETS wallets${cw:+; closed loop $cw/s})"
set xrange [0:$xw]
${cw:+set arrow 2 from $cw, graph 0 to $cw, graph 1 nohead dt 2 lc rgb 'gray40'}
plot '$OUT/latency-wallet.dat' u 2:3 w lp pt 7 t 'p50', '' u 2:5 w lp pt 5 t 'p99', '' u 2:6 w lp pt 9 t 'p99.9'
unset multiplot
GP
fi
plot_points() { # dat png x-label title logx
  [ -s "$OUT/$1" ] || return 0
  local x='1' xt='' xr=''
  # Without a log scale the points are categories (journal: empty, full), evenly spaced.
  [ "$5" = 1 ] || { x='0' xt=':xtic(1)' xr='set xrange [-0.5:*]; set offsets 0, 0.5, 0, 0'; }
  plot <<GP
$GP_COMMON
set output '$OUT/$2'
set multiplot layout 1,2 title "$4\n$SUB"
$([ "$5" = 1 ] && echo "set logscale x")
$xr
set xlabel '$3'
set title 'closed loop'
set ylabel 'authorizations/s'
set y2label 'CPU per authorization, all processes, us'
set ytics nomirror
set y2tics
set yrange [0:*]
set y2range [0:*]
set key bottom left
plot '$OUT/$1' u $x:2$xt w lp lw 2 pt 7 axes x1y1 t 'throughput', \
     '' u $x:3 w lp pt 4 dt 2 axes x1y2 t 'CPU us per authorization'
unset y2tics
unset y2label
set ytics mirror
set title 'open loop at ${FIXED_RATE}/s'
set ylabel 'latency, ms'
set key top left
plot '$OUT/$1' u $x:5$xt w lp pt 6 t 'p50', '' u $x:6 w lp pt 5 t 'p99', '' u $x:7 w lp pt 9 t 'p99.9'
unset multiplot
GP
}
plot_points wallets.dat wallets.png 'wallets in issuer-sim (log)' "Throughput and latency against the number of wallets (issuer-sim)" 1
plot_points journal.dat journal.png "rows in switch.authorizations before the run" "Throughput and latency against the journal's size ($JOURNAL_ISSUER issuer)" 0
plot_points connections.dat connections.png 'load connections, every one sending (log)' "Throughput and latency against connections ($CONNS_ISSUER issuer)" 1

# ------------------------------------------------------------------ table
echo
echo "== curves ($MODE), $(($(date +%s) - T_ALL)) s in all; commit $COMMIT"
printf '%-16s %-11s %-6s %6s %9s %9s %9s %8s %8s %8s %7s %7s %s\n' label run issuer conns wallets \
  journal asked achieved p50ms p99ms p999ms cpu_us check
awk -F'\t' '!/^#/ { printf "%-16s %-11s %-6s %6s %9s %9s %9s %8.0f %8.2f %8.2f %7.2f %7s %s%s\n", $1, $2, $3, $4, $5, $6, $7, $8, $9, $11, $12, $21, $23, ($14 > 0 ? " (" $14 " errors)" : "") }' "$RESULTS"
echo
ls -1 "$OUT"/*.dat "$OUT"/*.png 2>/dev/null | sed 's/^/  /'

if [ "${CURVES_KEEP_DATA:-0}" != 1 ] && [ "$PLOT_ONLY" != 1 ] && [ -f "$E2E_DIR/pg/PG_VERSION" ]; then
  # Several GB after a full run: empty the big tables (the cluster is started for this only).
  (
    export ATLAS_PGDATA=$E2E_DIR/pg
    db/pg.sh start >/dev/null
    eval "$(db/pg.sh env)"
    psql -q -c "SET wallet.allow_truncate = on; TRUNCATE switch.authorizations, wallet.ledger, wallet.holds, wallet.requests, wallet.wallets RESTART IDENTITY CASCADE" 2>/dev/null
    psql -q -c "CHECKPOINT" >/dev/null
    db/pg.sh stop >/dev/null
  ) || true
  echo "(the cluster's big tables emptied: CURVES_KEEP_DATA=1 keeps them)"
fi
[ "$FAILED" = 0 ] && echo "curves: every point passed its checks" || echo "curves: SOME POINTS FAILED (see above)"
exit "$FAILED"
