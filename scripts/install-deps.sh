#!/usr/bin/env bash
# Install the system packages the tests, the demo and the benchmarks use, only when missing:
# PostgreSQL 15 (server, contrib, psql, pgbench), OpenSSH server and client, PgBouncer, rsync.
# Safe to run repeatedly; needs root (or sudo) only when something is missing. Never reads stdin.
set -euo pipefail

packages=(postgresql postgresql-contrib openssh-server openssh-client pgbouncer rsync)

installed() {
    [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true)" = "installed" ]
}

missing=()
for p in "${packages[@]}"; do
    installed "$p" || missing+=("$p")
done
# The binaries must be there too (a half-removed package would pass dpkg but fail later).
for bin in psql pgbench pgbouncer ssh sshd rsync; do
    command -v "$bin" >/dev/null 2>&1 || [ -x "/usr/sbin/$bin" ] || echo "deps: $bin not found on PATH" >&2
done

if [ "${#missing[@]}" -eq 0 ]; then
    echo "deps: all present (${packages[*]})"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "deps: missing ${missing[*]} and apt-get is not available; install them by hand" >&2
    exit 1
fi
SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO=(sudo -n)
    else
        echo "deps: missing ${missing[*]}; run 'make deps' as root (or with passwordless sudo)" >&2
        exit 1
    fi
fi

echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q </dev/null
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${missing[@]}" </dev/null
