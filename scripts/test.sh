#!/usr/bin/env bash
# Run the whole test suite with beamhub's own environment (installs first when needed).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
prefix=${BEAMHUB_PREFIX:-/opt/beamhub}
if [ ! -x "$prefix/venv/bin/pytest" ] || [ ! -x "$prefix/venv/bin/lint-imports" ] || \
   [ ! -x "$prefix/images/default/bin/jupyter-lab" ] || [ ! -x /usr/bin/prometheus ] || \
   [ ! -x /usr/sbin/slurmctld ]; then
  "$repo/scripts/install.sh"
fi
# The tested code is the code in this checkout, installed where other UIDs can read it.
"$prefix/venv/bin/pip" install -q --no-deps "$repo" 2>&1 | grep -v -e '^WARNING: Location' || true
cd "$repo"
# Layers and style first: a broken contract or a lint finding fails the run before the suite starts.
"$prefix/venv/bin/ruff" check beamhub tests bench
"$prefix/venv/bin/lint-imports"
exec "$prefix/venv/bin/pytest" "$@"
