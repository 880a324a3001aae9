#!/usr/bin/env bash
# Runs the whole test suite: formatting, lints, then every unit and integration test in
# parallel with cargo-nextest. The integration tests use the MariaDB server at
# 127.0.0.1:3306 (user root, no password): this script starts it when it is installed but
# not answering, and fails loudly when it cannot be reached. The cluster tests (tests/cluster)
# start their own ZooKeeper and Redis servers, one of each per test: this script installs the
# Debian packages that bring them (zookeeper, with a JRE, and redis-server) when they are
# missing, and starts neither. The console tests (tests/console) drive a headless Chromium:
# the script installs Debian's chromium and chromium-driver when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."

# Installs the Debian packages given, as root or through sudo; fails loudly when it cannot.
apt_install() {
  local sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null 2>&1; then
      echo "the cluster and console tests need the Debian packages $*; run as root (or with sudo) to install them" >&2
      exit 1
    fi
    sudo=(sudo)
  fi
  echo "installing $*"
  if ! { "${sudo[@]}" apt-get update && "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y "$@"; }; then
    echo "installing $* failed; the cluster and console tests need them" >&2
    exit 1
  fi
}

missing=()
[ -f /usr/share/java/zookeeper.jar ] || missing+=(zookeeper)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)
if [ "${#missing[@]}" -gt 0 ]; then
  apt_install "${missing[@]}"
fi
if [ ! -f /usr/share/java/zookeeper.jar ] || ! command -v java >/dev/null 2>&1; then
  echo "ZooKeeper (/usr/share/java/zookeeper.jar) and java are needed by the cluster tests" >&2
  exit 1
fi
if ! command -v redis-server >/dev/null 2>&1; then
  echo "redis-server is needed by the cluster tests" >&2
  exit 1
fi

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
