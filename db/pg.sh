#!/usr/bin/env bash
# db/pg.sh — a throwaway PostgreSQL 15 cluster for tests, benchmarks and the demo.
#   db/pg.sh start|stop [--immediate]|status|psql [args]|env [--ha]|conninfo [--ha]
#   db/pg.sh replica [start|stop|status|drop]|promote
# The cluster lives in var/pg of the checkout (or $ATLAS_PGDATA), listens only on a Unix socket in
# that directory (port $ATLAS_PGPORT, default 5433, names the socket file) and trusts local users.
# `replica` adds a streaming replica of it (pg_basebackup -R) in var/pg-replica
# ($ATLAS_PGREPLICA_DATA), port $ATLAS_PGREPLICA_PORT (default the primary's + 1), synchronous
# unless ATLAS_PGSYNC=off; `promote` makes it the primary (docs/db.md "Replica and failover").
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PGBIN=${ATLAS_PGBIN:-/usr/lib/postgresql/15/bin}
PORT=${ATLAS_PGPORT:-5433}
WANT_DATA=${ATLAS_PGDATA:-$ROOT/var/pg}
DBNAME=${ATLAS_PGDATABASE:-atlas}
REPLICA_PORT=${ATLAS_PGREPLICA_PORT:-$((PORT + 1))}
WANT_REPLICA=${ATLAS_PGREPLICA_DATA:-$WANT_DATA-replica}
REPLICA_NAME=atlas_replica

die() {
  echo "pg.sh: $*" >&2
  exit 1
}

case "$PORT" in
  '' | *[!0-9]*) die "ATLAS_PGPORT must be a number, got '$PORT'" ;;
esac
case "$REPLICA_PORT" in
  '' | *[!0-9]*) die "ATLAS_PGREPLICA_PORT must be a number, got '$REPLICA_PORT'" ;;
esac

# initdb refuses to run as root: as root the cluster belongs to the `postgres` system user (created
# by the postgresql package); otherwise to whoever runs this script.
if [ "$(id -u)" -eq 0 ]; then
  RUNAS=postgres
else
  RUNAS=$(id -un)
fi
as_owner() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u "$RUNAS" -- "$@"
  else
    "$@"
  fi
}

# The data directory actually used. As root, $WANT_DATA may sit below directories the postgres
# user cannot traverse (a checkout in /root, a 0700 temp dir); then the cluster goes to
# /tmp/atlas-pg-<hash of $WANT_DATA> instead — the same path every time for the same checkout.
data_dir() {
  local want=$1
  if [ "$(id -u)" -ne 0 ]; then
    echo "$want"
    return
  fi
  if [ -d "$want" ] && runuser -u "$RUNAS" -- test -w "$want" 2>/dev/null; then
    echo "$want"
    return
  fi
  local parent
  parent=$(dirname "$want")
  if [ ! -e "$want" ] && mkdir -p "$parent" 2>/dev/null &&
    runuser -u "$RUNAS" -- test -x "$parent" 2>/dev/null; then
    echo "$want"
    return
  fi
  echo "/tmp/atlas-pg-$(printf '%s' "$want" | sha1sum | cut -c1-12)"
}

ensure_binaries() {
  [ -x "$PGBIN/initdb" ] && return 0
  echo "pg.sh: installing postgresql (missing $PGBIN/initdb)" >&2
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql
  [ -x "$PGBIN/initdb" ] || die "no PostgreSQL 15 binaries in $PGBIN after install"
  # The package starts a system cluster on 5432; ours is separate and does not need it.
}

DATA=$(data_dir "$WANT_DATA")
RDATA=$(data_dir "$WANT_REPLICA")

pgctl() { as_owner "$PGBIN/pg_ctl" -D "$DATA" "$@"; }
rpgctl() { as_owner "$PGBIN/pg_ctl" -D "$RDATA" "$@"; }

running() { [ -f "$DATA/postmaster.pid" ] && pgctl status >/dev/null 2>&1; }
replica_running() { [ -f "$RDATA/postmaster.pid" ] && rpgctl status >/dev/null 2>&1; }
# psql as the owner on the primary (p) or the replica (r), database postgres, one value out.
sql_on() {
  local host=$DATA port=$PORT
  [ "$1" = r ] && host=$RDATA port=$REPLICA_PORT
  as_owner "$PGBIN/psql" -h "$host" -p "$port" -U "$RUNAS" -d postgres -XtAqc "$2"
}

init_cluster() {
  mkdir -p "$DATA"
  [ "$(id -u)" -eq 0 ] && chown "$RUNAS": "$DATA"
  chmod 700 "$DATA"
  as_owner "$PGBIN/initdb" -D "$DATA" -U "$RUNAS" --auth-local=trust --auth-host=reject \
    -E UTF8 --locale=C >"$DATA.initdb.log" 2>&1 ||
    { cat "$DATA.initdb.log" >&2; die "initdb failed"; }
  rm -f "$DATA.initdb.log"
  # Throwaway-cluster tuning. fsync and synchronous_commit stay ON: the journal's durability is what
  # the tests and the benchmark measure. Socket only (no TCP), so no port clash with anything.
  cat >>"$DATA/postgresql.conf" <<EOF

# --- Atlas throwaway cluster (db/pg.sh) ---
listen_addresses = ''
unix_socket_directories = '$DATA'
unix_socket_permissions = 0777
max_connections = 200
shared_buffers = 256MB
wal_buffers = 16MB
max_wal_size = 2GB
checkpoint_timeout = 15min
fsync = on
synchronous_commit = on
full_page_writes = on
wal_compression = off
log_min_messages = warning
log_line_prefix = '%m [%p] %q%u@%d '
EOF
  later_settings
}

# Settings added after clusters were made (at init, and to an older cluster at its next start).
# pg_stat_statements (in PostgreSQL's own package): what each statement costs, planning included
# when a database or session sets pg_stat_statements.track_planning — how the benchmarks find
# where PostgreSQL's CPU goes, and how the tests prove the hot path's statements are planned once
# per session (db/journal.c, db/wallet.c).
later_settings() {
  grep -q "^shared_preload_libraries = 'pg_stat_statements'" "$DATA/postgresql.conf" ||
    echo "shared_preload_libraries = 'pg_stat_statements'" >>"$DATA/postgresql.conf"
  # A checkpoint renames up to min_wal_size of used WAL segments to future names (recycled)
  # instead of deleting them: the next ones need no new 16 MB zero-filled file, made while every
  # commit waits (docs/db.md "WAL segments").
  # (initdb writes its own min_wal_size line: this one, later, wins)
  grep -q "^min_wal_size = 1GB" "$DATA/postgresql.conf" || echo "min_wal_size = 1GB" >>"$DATA/postgresql.conf"
}

cmd_start() {
  ensure_binaries
  [ -f "$DATA/PG_VERSION" ] || init_cluster
  if running; then
    local actual
    actual=$(sed -n 4p "$DATA/postmaster.pid" 2>/dev/null || true)
    [ -z "$actual" ] || [ "$actual" = "$PORT" ] ||
      die "cluster in $DATA already runs on port $actual, not $PORT: stop it first"
    echo "pg.sh: cluster already running ($DATA, port $PORT)"
  else
    later_settings
    pgctl -w -t 60 -l "$DATA/server.log" -o "-p $PORT -k $DATA" start >/dev/null ||
      { tail -20 "$DATA/server.log" >&2; die "pg_ctl start failed (log: $DATA/server.log)"; }
    echo "pg.sh: cluster started ($DATA, port $PORT)"
  fi
  local exists
  exists=$(as_owner "$PGBIN/psql" -h "$DATA" -p "$PORT" -U "$RUNAS" -d postgres -XtAc \
    "SELECT 1 FROM pg_database WHERE datname = '$DBNAME'")
  if [ "$exists" != 1 ]; then
    as_owner "$PGBIN/createdb" -h "$DATA" -p "$PORT" -U "$RUNAS" "$DBNAME"
  fi
}

cmd_stop() {
  local mode=fast
  [ "${1:-}" = --immediate ] && mode=immediate
  # A replica goes first (and is no longer waited for): a primary alone must not wait for it.
  # --immediate is a crash of the primary alone (the failover test's): the replica stays.
  [ "$mode" = immediate ] || replica_stop quiet
  if running; then
    pgctl -w -t 60 -m "$mode" stop >/dev/null
    echo "pg.sh: cluster stopped ($DATA, $mode)"
  else
    echo "pg.sh: cluster not running ($DATA)"
  fi
}

# The streaming replica: created by pg_basebackup -R from the running primary the first time,
# started on its own port and socket directory. Synchronous (the primary's commits wait for its
# flush: a promotion loses no acknowledged commit) unless ATLAS_PGSYNC=off.
cmd_replica() {
  running || die "the primary is not running ($DATA): db/pg.sh start first"
  if [ ! -f "$RDATA/PG_VERSION" ]; then
    mkdir -p "$RDATA"
    [ "$(id -u)" -eq 0 ] && chown "$RUNAS": "$RDATA"
    chmod 700 "$RDATA"
    # A physical replication slot keeps the WAL the replica has not received (a replica stopped
    # for a while catches up when started again), up to max_slot_wal_keep_size: beyond that the
    # slot is given up and the replica must be made again (remove its directory).
    sql_on p "SELECT pg_drop_replication_slot('$REPLICA_NAME') FROM pg_replication_slots
      WHERE slot_name = '$REPLICA_NAME' AND NOT active" >/dev/null
    sql_on p "ALTER SYSTEM SET max_slot_wal_keep_size = '2GB'" >/dev/null
    sql_on p "SELECT pg_reload_conf()" >/dev/null
    as_owner "$PGBIN/pg_basebackup" -d "host=$DATA port=$PORT user=$RUNAS" -D "$RDATA" -R \
      -C -S "$REPLICA_NAME" -X stream -c fast >"$RDATA.basebackup.log" 2>&1 ||
      { cat "$RDATA.basebackup.log" >&2; die "pg_basebackup failed"; }
    rm -f "$RDATA.basebackup.log"
    # Later lines win: its own socket directory, its name for synchronous replication, and no
    # synchronous standby of its own (promoted, it must not wait for a standby it does not have).
    cat >>"$RDATA/postgresql.auto.conf" <<EOF
unix_socket_directories = '$RDATA'
primary_conninfo = 'host=$DATA port=$PORT user=$RUNAS application_name=$REPLICA_NAME'
synchronous_standby_names = ''
EOF
  fi
  if replica_running; then
    echo "pg.sh: replica already running ($RDATA, port $REPLICA_PORT)"
  else
    rpgctl -w -t 60 -l "$RDATA/server.log" -o "-p $REPLICA_PORT -k $RDATA" start >/dev/null ||
      { tail -20 "$RDATA/server.log" >&2; die "replica start failed (log: $RDATA/server.log)"; }
    echo "pg.sh: replica started ($RDATA, port $REPLICA_PORT)"
  fi
  if [ "$(sql_on r 'SELECT pg_is_in_recovery()')" != t ]; then
    echo "pg.sh: $RDATA is a primary (promoted), not a replica"
    return 0
  fi
  if [ "${ATLAS_PGSYNC:-on}" != off ]; then
    sql_on p "ALTER SYSTEM SET synchronous_standby_names = '$REPLICA_NAME'" >/dev/null
    sql_on p "SELECT pg_reload_conf()" >/dev/null
  fi
  local state="" want=sync
  [ "${ATLAS_PGSYNC:-on}" != off ] || want=async
  for _ in $(seq 1 300); do
    state=$(sql_on p "SELECT sync_state FROM pg_stat_replication WHERE application_name = '$REPLICA_NAME' AND state = 'streaming'" || true)
    [ "$state" = "$want" ] && break
    sleep 0.1
  done
  if [ "$state" != "$want" ]; then
    # Never leave the primary waiting for a standby that does not stream: every commit would hang.
    sql_on p "ALTER SYSTEM RESET synchronous_standby_names" >/dev/null
    sql_on p "SELECT pg_reload_conf()" >/dev/null
    die "the replica does not stream from the primary ($want); the primary no longer waits for it" \
      "(log: $RDATA/server.log; a replica too far behind: db/pg.sh replica stop, remove $RDATA, again)"
  fi
  echo "pg.sh: replica streaming ($state)"
}

# Stops the replica; the primary first stops waiting for it (else every commit would hang).
replica_stop() {
  if running && [ -n "$(sql_on p "SHOW synchronous_standby_names" 2>/dev/null)" ]; then
    sql_on p "ALTER SYSTEM RESET synchronous_standby_names" >/dev/null
    sql_on p "SELECT pg_reload_conf()" >/dev/null
  fi
  if replica_running; then
    rpgctl -w -t 60 -m fast stop >/dev/null
    echo "pg.sh: replica stopped ($RDATA)"
  elif [ "${1:-}" != quiet ]; then
    echo "pg.sh: replica not running ($RDATA)"
  fi
}

# Stops the replica, removes its directory and the primary's slot for it (the WAL it kept).
replica_drop() {
  replica_stop quiet
  if running; then
    sql_on p "SELECT pg_drop_replication_slot('$REPLICA_NAME') FROM pg_replication_slots
      WHERE slot_name = '$REPLICA_NAME' AND NOT active" >/dev/null
  fi
  if [ -f "$RDATA/PG_VERSION" ]; then
    rm -rf "$RDATA"
    echo "pg.sh: replica removed ($RDATA)"
  fi
}

cmd_promote() {
  replica_running || die "no replica running ($RDATA)"
  rpgctl -w -t 60 promote >/dev/null || die "pg_ctl promote failed (log: $RDATA/server.log)"
  echo "pg.sh: replica promoted ($RDATA, port $REPLICA_PORT is the primary now)"
}

# --ha: both servers; libpq takes the one that accepts writes (target_session_attrs=read-write).
cmd_env() {
  if [ "${1:-}" = --ha ]; then
    echo "export PGHOST='$DATA,$RDATA'"
    echo "export PGPORT='$PORT,$REPLICA_PORT'"
    echo "export PGTARGETSESSIONATTRS='read-write'"
  else
    echo "export PGHOST='$DATA'"
    echo "export PGPORT='$PORT'"
  fi
  echo "export PGUSER='$RUNAS'"
  echo "export PGDATABASE='$DBNAME'"
}

cmd_conninfo() {
  if [ "${1:-}" = --ha ]; then
    echo "host=$DATA,$RDATA port=$PORT,$REPLICA_PORT user=$RUNAS dbname=$DBNAME target_session_attrs=read-write"
  else
    echo "host=$DATA port=$PORT user=$RUNAS dbname=$DBNAME"
  fi
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop "${2:-}" ;;
  replica)
    case "${2:-start}" in
      start) cmd_replica ;;
      stop) replica_stop ;;
      drop) replica_drop ;;
      status)
        if replica_running; then
          echo "pg.sh: replica running ($RDATA, port $REPLICA_PORT, in recovery: $(sql_on r 'SELECT pg_is_in_recovery()'))"
        else
          echo "pg.sh: replica not running ($RDATA)"
          exit 3
        fi
        ;;
      *) die "usage: db/pg.sh replica [start|stop|status|drop]" ;;
    esac
    ;;
  promote) cmd_promote ;;
  conninfo) cmd_conninfo "${2:-}" ;;
  status)
    if running; then
      echo "pg.sh: running ($DATA, port $PORT)"
    else
      echo "pg.sh: not running ($DATA)"
      exit 3
    fi
    ;;
  psql)
    shift
    exec "$PGBIN/psql" -h "$DATA" -p "$PORT" -U "$RUNAS" -d "$DBNAME" "$@"
    ;;
  env) cmd_env "${2:-}" ;;
  *)
    echo "usage: db/pg.sh start|stop [--immediate]|status|psql [psql args]|env [--ha]|conninfo [--ha]" >&2
    echo "       db/pg.sh replica [start|stop|status|drop]|promote" >&2
    echo "  env: ATLAS_PGDATA (default var/pg), ATLAS_PGPORT (default 5433)," >&2
    echo "       ATLAS_PGDATABASE (default atlas), ATLAS_PGBIN (default $PGBIN)," >&2
    echo "       ATLAS_PGREPLICA_DATA (default var/pg-replica), ATLAS_PGREPLICA_PORT (default port+1)," >&2
    echo "       ATLAS_PGSYNC (on: synchronous replica; off: asynchronous)" >&2
    exit 2
    ;;
esac
