# PostgreSQL for CI: a real, throwaway server (nothing is mocked). Sourced by .ci/run (and by
# tests/test_ci.py, which checks that it leaves nothing behind); not a script of its own.
#
# start_postgres: finds (or installs, as root on Debian) the server binaries, creates a data folder
# under $TMPDIR (default /tmp), starts the server on 127.0.0.1:$DERSYNC_CI_PG_PORT (default 54329)
# and exports DERSYNC_TEST_POSTGRES_URL. An EXIT trap stops the server and removes the folder when
# the shell ends, whatever its status (failing tests, or a server that never started).

pg_bin() {
  local dir
  for dir in /usr/lib/postgresql/*/bin; do
    [ -x "$dir/pg_ctl" ] && { echo "$dir"; return 0; }
  done
  return 1
}

# pg_ctl stop waits until the server is down, so the folder it writes to is removed only after.
stop_pg() {
  "${PG_RUN_AS[@]}" "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast stop >/dev/null 2>&1 || true
  rm -rf "$PG_DIR"
}

start_postgres() {
  if ! PG_BIN=$(pg_bin); then
    echo "== installing PostgreSQL (Debian package)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq postgresql >/dev/null
    PG_BIN=$(pg_bin)
  fi
  PG_PORT=${DERSYNC_CI_PG_PORT:-54329}
  PG_RUN_AS=()
  PG_DIR=$(mktemp -d -t dersync-ci-pg.XXXXXX)
  trap stop_pg EXIT
  if [ "$(id -u)" = "0" ]; then
    id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
    chown postgres "$PG_DIR"
    PG_RUN_AS=(runuser -u postgres --)
  fi
  "${PG_RUN_AS[@]}" "$PG_BIN/initdb" -D "$PG_DIR/data" -U postgres --auth=trust -E UTF8 >/dev/null
  "${PG_RUN_AS[@]}" "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/log" -w \
    -o "-p $PG_PORT -k $PG_DIR -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" start >/dev/null
  export DERSYNC_TEST_POSTGRES_URL="postgresql://postgres@127.0.0.1:$PG_PORT/postgres"
  echo "== PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') on port $PG_PORT"
}
