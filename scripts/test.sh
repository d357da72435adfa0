#!/usr/bin/env bash
# Run the whole test suite with beamhub's own environment (installs first when needed).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
prefix=${BEAMHUB_PREFIX:-/opt/beamhub}
if [ ! -x "$prefix/venv/bin/pytest" ] || [ ! -x "$prefix/images/default/bin/jupyter-lab" ]; then
  "$repo/scripts/install.sh"
fi
# The tested code is the code in this checkout, installed where other UIDs can read it.
"$prefix/venv/bin/pip" install -q --no-deps "$repo" 2>&1 | grep -v -e '^WARNING: Location' || true
cd "$repo"
exec "$prefix/venv/bin/pytest" "$@"
