#!/usr/bin/env bash
# Runs the whole test suite: formatting, lints, then every unit and integration test in
# parallel with cargo-nextest. The integration tests use the MariaDB server at
# 127.0.0.1:3306 (user root, no password): this script starts it when it is installed but
# not answering, and fails loudly when it cannot be reached.
set -euo pipefail
cd "$(dirname "$0")/.."

mariadb_up() {
  if command -v mariadb-admin >/dev/null 2>&1; then
    mariadb-admin --protocol=tcp -h 127.0.0.1 -P 3306 -u root status >/dev/null 2>&1
  else
    (exec 3<>/dev/tcp/127.0.0.1/3306) 2>/dev/null
  fi
}

if ! mariadb_up; then
  if [ -x /usr/sbin/mariadbd ]; then
    echo "starting MariaDB"
    start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
    for _ in $(seq 1 60); do mariadb_up && break; sleep 0.5; done
  fi
fi
if ! mariadb_up; then
  echo "MariaDB is not reachable at 127.0.0.1:3306; the MySQL half of the suite needs it" >&2
  exit 1
fi

if ! cargo nextest --version >/dev/null 2>&1; then
  cargo install cargo-nextest --locked
fi

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo nextest run --workspace --no-fail-fast "$@"
