#!/usr/bin/env bash
# db/pg.sh — a throwaway PostgreSQL 15 cluster for tests, benchmarks and the demo.
#   db/pg.sh start|stop|status|psql [args]|env
# The cluster lives in var/pg of the checkout (or $ATLAS_PGDATA), listens only on a Unix socket in
# that directory (port $ATLAS_PGPORT, default 5433, names the socket file) and trusts local users.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PGBIN=${ATLAS_PGBIN:-/usr/lib/postgresql/15/bin}
PORT=${ATLAS_PGPORT:-5433}
WANT_DATA=${ATLAS_PGDATA:-$ROOT/var/pg}
DBNAME=${ATLAS_PGDATABASE:-atlas}

die() {
  echo "pg.sh: $*" >&2
  exit 1
}

case "$PORT" in
  '' | *[!0-9]*) die "ATLAS_PGPORT must be a number, got '$PORT'" ;;
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
  if [ "$(id -u)" -ne 0 ]; then
    echo "$WANT_DATA"
    return
  fi
  if [ -d "$WANT_DATA" ] && runuser -u "$RUNAS" -- test -w "$WANT_DATA" 2>/dev/null; then
    echo "$WANT_DATA"
    return
  fi
  local parent
  parent=$(dirname "$WANT_DATA")
  if [ ! -e "$WANT_DATA" ] && mkdir -p "$parent" 2>/dev/null &&
    runuser -u "$RUNAS" -- test -x "$parent" 2>/dev/null; then
    echo "$WANT_DATA"
    return
  fi
  echo "/tmp/atlas-pg-$(printf '%s' "$WANT_DATA" | sha1sum | cut -c1-12)"
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

DATA=$(data_dir)

pgctl() { as_owner "$PGBIN/pg_ctl" -D "$DATA" "$@"; }

running() { [ -f "$DATA/postmaster.pid" ] && pgctl status >/dev/null 2>&1; }

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
  if running; then
    pgctl -w -t 60 -m fast stop >/dev/null
    echo "pg.sh: cluster stopped ($DATA)"
  else
    echo "pg.sh: cluster not running ($DATA)"
  fi
}

cmd_env() {
  echo "export PGHOST='$DATA'"
  echo "export PGPORT='$PORT'"
  echo "export PGUSER='$RUNAS'"
  echo "export PGDATABASE='$DBNAME'"
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
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
  env) cmd_env ;;
  *)
    echo "usage: db/pg.sh start|stop|status|psql [psql args]|env" >&2
    echo "  env: ATLAS_PGDATA (default var/pg), ATLAS_PGPORT (default 5433)," >&2
    echo "       ATLAS_PGDATABASE (default atlas), ATLAS_PGBIN (default $PGBIN)" >&2
    exit 2
    ;;
esac
