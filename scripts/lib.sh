# Helpers shared by scripts/test, scripts/demo and scripts/bench. Source it; do not run it.

# The persistent cargo target directory (outside the clone, so CI on the same machine is fast;
# a new machine simply starts it empty).
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/triad/target}"

# Clippy lints the workspace's own crates while they compile: cargo runs clippy-driver (rustc
# plus clippy's lints) in place of rustc for workspace members only, so the one build that
# generates code also lints, and no separate `cargo clippy` pass type-checks every dependency
# a second time. The same settings for scripts/test, scripts/demo and the benches keep their
# artefacts shared (cargo hashes the wrapper into the workspace crates' artefacts, not into
# dependencies'). `-D warnings` as `cargo clippy -- -D warnings` would; CLIPPY_ARGS is how
# cargo-clippy hands clippy-driver its arguments. Unset when clippy is not installed:
# scripts/test then says so.
if [ -z "${RUSTC_WORKSPACE_WRAPPER:-}" ]; then
  if clippy_driver=$(rustup which clippy-driver 2>/dev/null || command -v clippy-driver); then
    export RUSTC_WORKSPACE_WRAPPER="$clippy_driver"
    export CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__"
  fi
  unset clippy_driver
fi

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
