#!/usr/bin/env bash
# Bundle the console's HDF5 viewer (h5web + React) into one viewer.js and one viewer.css, offline at run time.
# Usage: build-viewer.sh BUILD_DIR OUT_DIR. Packages come from the committed package-lock.json (npm ci); the
# bundle is rebuilt only when the lock or the viewer's sources change (their hash is kept in OUT_DIR/.source-hash).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
source_dir="$repo/beamhub/web/viewer"
build=${1:?build directory}
out=${2:?output directory}

hash=$(cd "$source_dir" && cat package-lock.json viewer.jsx viewer.css | sha256sum | cut -d' ' -f1)
if [ -f "$out/.source-hash" ] && [ "$(cat "$out/.source-hash")" = "$hash" ] && [ -f "$out/viewer.js" ]; then
  echo "viewer bundle up to date in $out"
  exit 0
fi
mkdir -p "$build" "$out"
cp "$source_dir/package.json" "$source_dir/package-lock.json" "$source_dir/viewer.jsx" "$source_dir/viewer.css" "$build/"
(cd "$build" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
"$build/node_modules/.bin/esbuild" "$build/viewer.jsx" --bundle --minify --jsx=automatic --format=iife \
  --target=es2020 --define:process.env.NODE_ENV='"production"' --legal-comments=none --log-level=warning \
  --outfile="$out/viewer.js"
echo "$hash" > "$out/.source-hash"
chmod -R a+rX "$out"
echo "viewer bundled into $out"
