#!/usr/bin/env bash
# Extract the messages people read (beamhub/web/babel.cfg; the error classes are keywords too) and merge them into
# the Chinese catalogue; then translate its new empty msgstr entries (beamhub/web/README.md).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
bin=${BEAMHUB_PREFIX:-/opt/beamhub}/venv/bin
cd "$repo"
keywords=$(PYTHONPATH="$repo" "$bin/python" -c \
  'from beamhub.errors import ERROR_KEYWORDS; print(" ".join("-k " + name for name in ERROR_KEYWORDS))')
pot=$(mktemp --suffix=.pot)
trap 'rm -f "$pot"' EXIT
# shellcheck disable=SC2086  # one word per keyword option
"$bin/pybabel" extract -F beamhub/web/babel.cfg $keywords -c NOTE: --no-location --sort-output -o "$pot" .
"$bin/pybabel" update -i "$pot" -d beamhub/web/translations -l zh_CN --no-fuzzy-matching --ignore-obsolete \
  --ignore-pot-creation-date
