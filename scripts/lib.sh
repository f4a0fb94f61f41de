# Helpers shared by scripts/test, scripts/demo and scripts/bench. Source it; do not run it.

# The persistent cargo target directory (outside the clone, so CI on the same machine is fast;
# a new machine simply starts it empty).
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/triad/target}"

# A TCP port on 127.0.0.1 that nobody listens on right now.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# Wait until something accepts TCP connections on 127.0.0.1:$1, for at most $2 seconds.
wait_for_port() {
  local port=$1 limit=$2 start=$SECONDS
  until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
    if (( SECONDS - start > limit )); then return 1; fi
    sleep 0.1
  done
}

# Debian's newest PostgreSQL server binaries (not on PATH).
pg_bin_dir() {
  ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

# Run a command as the unprivileged PostgreSQL user when we are root (initdb/pg_ctl refuse root).
as_pg_user() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# start_test_postgres DIR PORT: a throwaway cluster in DIR listening on 127.0.0.1:PORT.
start_test_postgres() {
  local dir=$1 port=$2 bin
  bin=$(pg_bin_dir)
  mkdir -p "$dir"
  [ "$(id -u)" = 0 ] && chown postgres: "$dir"
  as_pg_user "$bin/initdb" -D "$dir/data" -U postgres -A trust --no-sync -E UTF8 >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; return 1; }
  as_pg_user "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=400" \
    start >/dev/null || { cat "$dir/server.log" >&2; return 1; }
}

stop_test_postgres() {
  local dir=$1
  [ -f "$dir/data/postmaster.pid" ] && as_pg_user "$(pg_bin_dir)/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1
  return 0
}
