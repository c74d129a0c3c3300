#!/usr/bin/env bash
# Throw-away PostgreSQL cluster for the tests: `source scripts/pg_cluster.sh` starts one (installing
# PostgreSQL from the distribution's packages where it is missing and we are root), exports
# SHOPREC_TEST_DATABASE_URL and stops and deletes it when the sourcing shell exits (trap).
# Nothing is started when SHOPREC_TEST_DATABASE_URL is already set (a PostgreSQL of your own).
# The server runs as a non-root user (PostgreSQL refuses root): `postgres` when we are root.

# The folder holding initdb and pg_ctl: the one on PATH, else the newest Debian/Ubuntu server package's
# (they install to /usr/lib/postgresql/NN/bin and put only client wrappers on PATH).
pg_bin_dir() {
  local candidate
  for candidate in "$(dirname "$(readlink -f "$(command -v initdb 2>/dev/null || echo /nonexistent)")")" \
      $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    if [ -x "$candidate/initdb" ] && [ -x "$candidate/pg_ctl" ]; then
      echo "$candidate"
      return 0
    fi
  done
  return 1
}

shoprec_pg_start() {
  if [ -n "${SHOPREC_TEST_DATABASE_URL:-}" ]; then
    return 0
  fi
  local bin
  bin=$(pg_bin_dir || true)
  if [ -z "$bin" ] && [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    bin=$(pg_bin_dir || true)
  fi
  if [ -z "$bin" ]; then
    echo "PostgreSQL not found and cannot install it: the PostgreSQL tests will be skipped" >&2
    return 0
  fi
  local run=()
  if [ "$(id -u)" = "0" ]; then
    # sbin may be missing from a CI job's PATH
    id -u postgres >/dev/null 2>&1 || PATH="$PATH:/usr/sbin:/sbin" useradd --system --no-create-home postgres
    run=("$(PATH="$PATH:/usr/sbin:/sbin" command -v runuser || echo runuser)" -u postgres --)
  fi
  SHOPREC_PG_DIR=$(mktemp -d /tmp/shoprec-pg.XXXXXX)
  SHOPREC_PG_BIN=$bin
  SHOPREC_PG_RUN="${run[*]}"
  trap shoprec_pg_stop EXIT
  if [ "$(id -u)" = "0" ]; then chown postgres "$SHOPREC_PG_DIR"; fi
  local port
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  # Run from the cluster's folder (in a subshell: the sourcing shell stays where it is), since the
  # server's user may not be allowed into the current one. fsync off: a throw-away cluster for
  # tests, nothing to keep after a crash.
  (cd "$SHOPREC_PG_DIR" && "${run[@]}" "$bin/initdb" -D "$SHOPREC_PG_DIR/data" -U shoprec -A trust --no-sync \
    -E UTF8 >/dev/null) || return 1
  (cd "$SHOPREC_PG_DIR" && "${run[@]}" "$bin/pg_ctl" -D "$SHOPREC_PG_DIR/data" -l "$SHOPREC_PG_DIR/log" -w -s \
    -o "-p $port -k $SHOPREC_PG_DIR -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300" start) \
    || { cat "$SHOPREC_PG_DIR/log" >&2; return 1; }
  "$bin/createdb" -h 127.0.0.1 -p "$port" -U shoprec shoprec_test || return 1
  export SHOPREC_TEST_DATABASE_URL="postgresql://shoprec@127.0.0.1:$port/shoprec_test"
}

shoprec_pg_stop() {
  if [ -n "${SHOPREC_PG_DIR:-}" ] && [ -d "$SHOPREC_PG_DIR" ]; then
    (cd "$SHOPREC_PG_DIR" && $SHOPREC_PG_RUN "$SHOPREC_PG_BIN/pg_ctl" -D "$SHOPREC_PG_DIR/data" -m immediate -s stop) \
      || true
    rm -rf "$SHOPREC_PG_DIR"
  fi
}

shoprec_pg_start || echo "could not start PostgreSQL: the PostgreSQL tests will be skipped" >&2
