#!/usr/bin/env bash
# A throwaway PostgreSQL server with pgvector for the tests, from the PyPI package `pgserver`
# (version pinned in tests/e2e/requirements.txt). The wheel ships a relocatable PostgreSQL 16
# build with pgvector under pgserver/pginstall/{bin,lib,share}; its libpq lives beside it in
# pgserver.libs/ (the binaries find it through RUNPATH $ORIGIN/../../../pgserver.libs). This
# script runs initdb/pg_ctl/postgres from there directly: pgserver's Python wrapper is not used.
#
# Usage:
#   scripts/postgres.sh install           ensure pgserver is in $EXAI_VENV; print the bin dir
#   scripts/postgres.sh start DIR         initdb DIR/data if missing, start (idempotent), create
#                                         the vector extension in template1 and postgres, print
#                                         the URL postgres://postgres@127.0.0.1:PORT/postgres
#   scripts/postgres.sh stop DIR          stop the server of DIR (idempotent)
#   scripts/postgres.sh url DIR           print the URL of the running server of DIR
#   scripts/postgres.sh psql DIR [ARGS]   psql as postgres to database postgres via DIR's socket
#
# The server listens on 127.0.0.1 on a free port it picks, and on a unix socket in DIR; it logs
# to DIR/postgres.log. Durability is off (fsync, synchronous_commit, full_page_writes): the data
# is for one test run.
#
# Root: initdb and postgres refuse to run as root, and CI runs as root. Then the server runs as
# the system user exai-pg (created once with useradd), through setpriv (or runuser), and owns DIR.
# It could not run the binaries inside the venv, which is under /root (mode 700; opening /root
# to others is not acceptable), so the install is copied once, keeping the pgserver/pginstall +
# pgserver.libs layout the RUNPATHs need, to /var/cache/exai-ci/pgserver-VERSION: a root-owned,
# world-readable place that persists between runs and that no other user can write to (unlike
# /var/tmp or /tmp, where another user could plant a directory of that name first).
#
# Environment: EXAI_VENV (default ${EXAI_CACHE_DIR:-$HOME/.cache/exai-ci}/venv), the venv that
# holds pgserver; EXAI_PG_USER (default exai-pg), the user the server runs as when run by root.
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
venv="${EXAI_VENV:-${EXAI_CACHE_DIR:-$HOME/.cache/exai-ci}/venv}"
pg_user="${EXAI_PG_USER:-exai-pg}"
root_copies=/var/cache/exai-ci

die() { printf 'postgres.sh: %s\n' "$*" >&2; exit 1; }
is_root() { [ "$(id -u)" -eq 0 ]; }

pinned_version() {
  sed -n 's/^pgserver==\([0-9A-Za-z.]*\).*/\1/p' "$repo/tests/e2e/requirements.txt" | head -n 1
}

# Prints the installed pgserver's version and its package directory, one per line.
pgserver_info() {
  "$venv/bin/python" - <<'EOF' 2>/dev/null
import importlib.metadata as m
d = m.distribution("pgserver")
print(d.version)
print(d.locate_file("pgserver"))
EOF
}

# Makes sure pgserver is installed and usable by the user the server runs as; prints its bin dir.
install() {
  local want info have pkg dest tmp
  want="$(pinned_version)"
  [ -n "$want" ] || die "no pgserver==VERSION line in tests/e2e/requirements.txt"
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv" >&2
  info="$(pgserver_info || true)"
  have="${info%%$'\n'*}"
  if [ "$have" != "$want" ]; then
    echo "installing pgserver $want into $venv (PyPI: pgserver)" >&2
    "$venv/bin/pip" install --quiet --disable-pip-version-check --root-user-action=ignore \
      "pgserver==$want" >&2
    info="$(pgserver_info)" || die "pgserver $want did not install into $venv"
  fi
  pkg="${info#*$'\n'}"
  if is_root; then
    dest="$root_copies/pgserver-$want"
    if [ ! -f "$dest/.complete" ]; then
      echo "copying pgserver's PostgreSQL to $dest (readable by $pg_user)" >&2
      mkdir -p "$root_copies"
      chmod 755 "$root_copies"
      tmp="$(mktemp -d "$root_copies/.pgserver-XXXXXX")"
      mkdir "$tmp/pgserver"
      cp -a "$pkg/pginstall" "$tmp/pgserver/"
      cp -a "$pkg/../pgserver.libs" "$tmp/"
      chmod -R u+rwX,go+rX,go-w "$tmp"
      touch "$tmp/.complete"
      if [ -e "$dest" ] && [ ! -f "$dest/.complete" ]; then rm -rf "$dest"; fi
      # Another run may have won the race: then its copy is as good as ours.
      mv -T "$tmp" "$dest" 2>/dev/null || rm -rf "$tmp"
    fi
    pkg="$dest/pgserver"
  fi
  [ -f "$pkg/pginstall/share/postgresql/extension/vector.control" ] \
    || die "pgvector is missing from $pkg/pginstall"
  echo "$pkg/pginstall/bin"
}

ensure_user() {
  id -u "$pg_user" >/dev/null 2>&1 && return 0
  command -v useradd >/dev/null || die "useradd not found (Debian package passwd)"
  useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin \
    --user-group "$pg_user" >&2 || true
  id -u "$pg_user" >/dev/null 2>&1 || die "could not create the system user $pg_user"
}

# Runs a command as the server's user (as is, unless root), from / so that an unreadable
# working directory does not matter.
as_server() {
  if ! is_root; then
    "$@"
  elif command -v setpriv >/dev/null; then
    (cd / && setpriv --reuid="$pg_user" --regid="$pg_user" --init-groups -- "$@")
  elif command -v runuser >/dev/null; then
    (cd / && runuser -u "$pg_user" -- "$@")
  else
    die "neither setpriv nor runuser found (Debian package util-linux)"
  fi
}

# The bin dir a started server of DIR used, else the installed one.
bin_of() {
  if [ -f "$1/bindir" ] && [ -x "$(cat "$1/bindir")/pg_ctl" ]; then
    cat "$1/bindir"
  else
    install
  fi
}

running() {
  [ -f "$dir/data/postmaster.pid" ] && as_server "$bin/pg_ctl" status -D "$dir/data" >/dev/null 2>&1
}
port_of() { sed -n 4p "$dir/data/postmaster.pid"; }
url_of() { echo "postgres://postgres@127.0.0.1:$(port_of)/postgres"; }

free_port() {
  "$venv/bin/python" -c \
    'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

client() {
  PGHOST="$dir" PGPORT="$(port_of)" PGUSER=postgres PGDATABASE=postgres "$bin/$1" "${@:2}"
}

fail() {
  echo "postgres.sh: $*; the end of $dir/postgres.log:" >&2
  tail -n 40 "$dir/postgres.log" >&2 2>/dev/null || true
  exit 1
}

start() {
  local port attempt conf_dir
  bin="$(install)"
  mkdir -p "$dir"
  # A unix socket path has at most 107 bytes.
  [ "${#dir}" -le 80 ] || die "DIR is too long for a unix socket path: $dir"
  touch "$dir/postgres.log"
  if is_root; then
    ensure_user
    chown "$pg_user:" "$dir" "$dir/postgres.log"
    as_server test -w "$dir" \
      || die "$pg_user cannot write $dir: its parent directories must be searchable by others"
  fi
  if running; then
    echo "postgres.sh: the server of $dir is already running" >&2
  else
    if [ ! -f "$dir/data/PG_VERSION" ]; then
      rm -rf "$dir/data"
      as_server "$bin/initdb" -D "$dir/data" -A trust -U postgres --encoding=UTF8 --locale=C \
        --no-sync \
        >>"$dir/postgres.log" 2>&1 || { rm -rf "$dir/data"; fail "initdb failed"; }
      conf_dir="${dir//\'/\'\'}"
      cat >>"$dir/data/postgresql.conf" <<EOF

# scripts/postgres.sh: a throwaway server for tests (the port is given on the command line)
listen_addresses = '127.0.0.1'
unix_socket_directories = '$conf_dir'
max_connections = 300
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
    fi
    # The port is free when picked but may be taken before the server binds it: try again.
    # EXAI_PG_PORT asks for a given port (a restart on the port clients already use).
    for attempt in 1 2 3; do
      port="${EXAI_PG_PORT:-$(free_port)}"
      if as_server "$bin/pg_ctl" start -w -t 60 -D "$dir/data" -l "$dir/postgres.log" \
           -o "-p $port" >>"$dir/postgres.log" 2>&1; then
        break
      fi
      [ "$attempt" -lt 3 ] || fail "the server did not start"
    done
  fi
  echo "$bin" >"$dir/bindir"
  local db
  for db in template1 postgres; do
    client psql -X -q -v ON_ERROR_STOP=1 -d "$db" -c 'CREATE EXTENSION IF NOT EXISTS vector' \
      >>"$dir/postgres.log" 2>&1 || fail "CREATE EXTENSION vector failed in $db"
  done
  url_of
}

stop() {
  [ -f "$dir/data/postmaster.pid" ] || return 0
  bin="$(bin_of "$dir")"
  running || return 0
  as_server "$bin/pg_ctl" stop -D "$dir/data" -m fast -w -t 60 >/dev/null \
    || as_server "$bin/pg_ctl" stop -D "$dir/data" -m immediate -w -t 30 >/dev/null
}

cmd="${1:-}"
case "$cmd" in
  install) install ;;
  start|stop|url|psql)
    [ $# -ge 2 ] || die "usage: postgres.sh $cmd DIR"
    if [ "$cmd" = start ]; then mkdir -p "$2"; fi
    if [ ! -d "$2" ]; then
      [ "$cmd" = stop ] && exit 0
      die "no such directory: $2"
    fi
    dir="$(cd "$2" && pwd)"
    shift 2
    case "$cmd" in
      start) start ;;
      stop) stop ;;
      url|psql)
        bin="$(bin_of "$dir")"
        running || die "no server is running for $dir"
        if [ "$cmd" = url ]; then url_of; else client psql -X "$@"; fi ;;
    esac ;;
  *) die "usage: postgres.sh install | start DIR | stop DIR | url DIR | psql DIR [ARGS...]" ;;
esac
