#!/usr/bin/env bash
# Install what only bench/spawn.py needs (Debian 12, root). Idempotent.
# Run after scripts/install.sh, which builds /opt/beamhub/venv and /opt/beamhub/images/default.
#
# Choice for the JupyterHub comparison: jupyterhub is pip-installed (pinned) into the image
# env itself, so the spawner runs the image's own `jupyterhub-singleuser` (same JupyterLab as
# the other two cases) and the hub runs from that env too. jupyterhub enables no server
# extension by itself, so plain `jupyter-lab` from the image is unchanged by it.
set -euo pipefail
prefix=${BEAMHUB_PREFIX:-/opt/beamhub}
image="$prefix/images/default"
JUPYTERHUB_VERSION=6.1.1
# batchspawner for the Slurm case (e): 1.3.0 is its newest release; its singleuser wrapper and hub API handler
# work with JupyterHub 6.1.1's APIs.
BATCHSPAWNER_VERSION=1.3.0
# 5.1.0: newest whose dependencies accept Debian 12's Node 18 (5.2+ need Node 20, 5.3 pulls commander 15 = Node 22).
CHP_VERSION=5.1.0
BENCH_USERS="benchhub benchlab"

if [ "$(id -u)" != 0 ]; then echo "bench/setup.sh: run as root" >&2; exit 1; fi
if [ ! -x "$image/bin/jupyter-lab" ]; then
  echo "bench/setup.sh: $image/bin/jupyter-lab missing: run scripts/install.sh first" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive

# strace for bench/acl_walk.py (it counts the system calls of the member's access check).
if ! command -v strace >/dev/null; then
  apt-get update -q
  apt-get install -y -q --no-install-recommends strace >/dev/null
fi

# Node.js + npm for configurable-http-proxy (JupyterHub's proxy).
if ! command -v npm >/dev/null || ! command -v node >/dev/null; then
  apt-get update -q
  apt-get install -y -q --no-install-recommends nodejs npm >/dev/null
fi
if [ "$(configurable-http-proxy --version 2>/dev/null || true)" != "$CHP_VERSION" ]; then
  npm install -g --no-fund --no-audit "configurable-http-proxy@$CHP_VERSION" >/dev/null
fi

# JupyterHub (hub + singleuser) into the image env; keep it readable by every UID.
if [ "$("$image/bin/python" -c 'import jupyterhub; print(jupyterhub.__version__)' 2>/dev/null || true)" \
     != "$JUPYTERHUB_VERSION" ]; then
  "$image/bin/pip" install -q "jupyterhub==$JUPYTERHUB_VERSION"
  chmod -R a+rX "$image"
fi

# batchspawner (SlurmSpawner) into the same env: the hub loads it, the job runs its batchspawner-singleuser.
if [ "$("$image/bin/python" -c 'import batchspawner; print(batchspawner.__version__)' 2>/dev/null || true)" \
     != "$BATCHSPAWNER_VERSION" ]; then
  "$image/bin/pip" install -q "batchspawner==$BATCHSPAWNER_VERSION"
  chmod -R a+rX "$image"
fi

# Unprivileged system accounts: benchlab for plain JupyterLab, benchhub for LocalProcessSpawner.
for u in $BENCH_USERS; do
  id "$u" >/dev/null 2>&1 || useradd --create-home --shell /bin/bash "$u"
  home=$(getent passwd "$u" | cut -d: -f6)
  mkdir -p "$home" && chown "$u:" "$home"
done
echo "bench setup done: jupyterhub $JUPYTERHUB_VERSION and batchspawner $BATCHSPAWNER_VERSION in $image," \
     "configurable-http-proxy $CHP_VERSION"
