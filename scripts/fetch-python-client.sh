#!/usr/bin/env bash
# Install the official Kubernetes Python client (PyPI `kubernetes`, the release
# line matching v1.33) into a virtualenv cached outside the repository.
#
# Prints the absolute path of the virtualenv's python on stdout (that line only);
# progress goes to stderr.
#
# Cache: ${RKUBE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/rkube}/python-kubernetes-33
set -euo pipefail

VERSION="33.1.0"
log() { echo "fetch-python-client: $*" >&2; }

cache_root="${RKUBE_CACHE_DIR:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/rkube}"
venv="${cache_root}/python-kubernetes-33"
py="${venv}/bin/python"

client_ok() {
    [[ -x "$py" ]] && "$py" -c "import kubernetes, sys; sys.exit(kubernetes.__version__ != '${VERSION}')" 2>/dev/null
}

if client_ok; then
    echo "$py"
    exit 0
fi
command -v python3 >/dev/null 2>&1 || { log "python3 is required"; exit 1; }
mkdir -p "$cache_root"
rm -rf "$venv"
log "creating $venv with kubernetes==${VERSION}"
python3 -m venv "$venv" >&2
"$venv/bin/pip" install --quiet "kubernetes==${VERSION}" >&2
client_ok || { log "kubernetes ${VERSION} did not install into $venv"; exit 1; }
echo "$py"
