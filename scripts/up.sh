#!/usr/bin/env bash
# Build rkube and start a single-node cluster (embedded SQLite).
# Extra arguments go to `rkube up`. Needs root (network namespaces, nftables).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

for d in "${CARGO_HOME:-${HOME:-/root}/.cargo}/bin" "/root/.cargo/bin" "${SUDO_USER:+$(getent passwd "$SUDO_USER" | cut -d: -f6)/.cargo/bin}"; do
    if [[ -n "$d" && -x "$d/cargo" ]] && ! command -v cargo >/dev/null 2>&1; then
        export PATH="$d:$PATH"
    fi
done
export PATH="$PATH:/usr/sbin:/sbin"

if [[ "$(id -u)" -ne 0 ]]; then
    echo "up.sh: rkube needs root (network namespaces, nftables): run 'sudo ./scripts/up.sh'" >&2
    exit 1
fi

./scripts/install-prereqs.sh --runtime
exec cargo run --release -p rkube -- up "$@"
