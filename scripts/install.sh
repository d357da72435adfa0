#!/usr/bin/env bash
# Install everything beamhub and its tests need on Debian 12 (run as root). Idempotent.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"  # requirements/image-default.txt names the client library by its path in this checkout
prefix=${BEAMHUB_PREFIX:-/opt/beamhub}

export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null
# No init system here: package scripts must not start services (slurmctld, munge would fail without their
# configuration and fail the install). A policy-rc.d that refuses is put in place unless the machine has one.
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
apt-get install -y -q --no-install-recommends \
  python3 python3-venv python3-dev gcc acl libacl1-dev passwd util-linux procps \
  postgresql postgresql-contrib ca-certificates curl openssh-client samba samba-common-bin smbclient nginx-light \
  chromium fonts-noto-cjk prometheus slurmctld slurmd slurm-client munge >/dev/null

# Environments run by users' UIDs must come from Debian's Python and live outside /root.
mkdir -p "$prefix"
chmod 755 "$prefix"
if [ ! -x "$prefix/venv/bin/python" ]; then
  /usr/bin/python3 -m venv "$prefix/venv"
fi
"$prefix/venv/bin/pip" install -q --upgrade "pip>=24,<27"
"$prefix/venv/bin/pip" install -q -c "$repo/requirements/server.txt" "$repo[test]"
ln -sf "$prefix/venv/bin/beamhub" /usr/local/bin/beamhub

# The console's HDF5 viewer: h5web and React bundled by esbuild from the committed lock (Debian's Node and npm
# where the machine has none); rebuilt only when the lock or the viewer's sources change.
command -v npm >/dev/null || apt-get install -y -q --no-install-recommends nodejs npm >/dev/null
"$repo/scripts/build-viewer.sh" "$prefix/viewer-build" "$prefix/viewer"

# The default session image: JupyterLab and the scientific stack in a world-readable environment, installed
# again only when requirements/image-default.txt or the client library it names (clients/) changes (their hash is
# kept in the image's .requirements-hash).
image="$prefix/images/default"
image_requirements="$repo/requirements/image-default.txt"
image_hash=$(cat "$image_requirements" "$repo"/clients/*/pyproject.toml "$repo"/clients/*/*/*.py | sha256sum | cut -d' ' -f1)
if [ ! -x "$image/bin/jupyter-lab" ] || [ "$(cat "$image/.requirements-hash" 2>/dev/null)" != "$image_hash" ]; then
  [ -x "$image/bin/python" ] || /usr/bin/python3 -m venv "$image"
  "$image/bin/pip" install -q --upgrade "pip>=24,<27"
  "$image/bin/pip" install -q -r "$image_requirements"
  echo "$image_hash" > "$image/.requirements-hash"
else
  echo "default image up to date in $image"
fi
chmod -R a+rX "$prefix"
echo "beamhub installed in $prefix"
