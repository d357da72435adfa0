#!/usr/bin/env bash
# A real Slurm cluster on this one machine, for tests and benchmarks (run as root):
#   scripts/slurm-cluster.sh start|stop|status
# munge, slurmctld and three slurmd (node1-3 on 127.0.0.1, ports 17001-17003, each with its own spool and
# cgroup v1 hierarchy /slurm_nodeN), one default partition `debug`. Everything lives under $BEAMHUB_SLURM_DIR
# (default /var/lib/beamhub-slurm); point Slurm's commands at it with SLURM_CONF=$BEAMHUB_SLURM_DIR/slurm.conf.
set -euo pipefail
dir=${BEAMHUB_SLURM_DIR:-/var/lib/beamhub-slurm}
ctld_port=${BEAMHUB_SLURM_PORT:-16817}
nodes=(node1 node2 node3)
conf=$dir/slurm.conf
export SLURM_CONF=$conf

write_config() {
  mkdir -p "$dir"/{state,spool,run,log}
  chmod 755 "$dir" "$dir/log"
  cat > "$conf" <<EOF
ClusterName=beamhub
SlurmctldHost=$(hostname)(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmUser=root
AuthType=auth/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool/%n
SlurmctldPidFile=$dir/run/slurmctld.pid
SlurmdPidFile=$dir/run/slurmd-%n.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd-%n.log
SlurmdParameters=config_overrides
ProctrackType=proctrack/cgroup
TaskPlugin=task/cgroup
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=500
MinJobAge=86400
MaxJobCount=100000
ReturnToService=2
JobRequeue=0
MailProg=/bin/true
SchedulerParameters=sched_min_interval=0
KillWait=2
InactiveLimit=0
NodeName=node[1-3] NodeHostname=$(hostname) NodeAddr=127.0.0.1 Port=17001-17003 CPUs=4 RealMemory=4000 State=UNKNOWN
PartitionName=debug Nodes=node[1-3] Default=YES MaxTime=INFINITE State=UP
# Accepts jobs and never starts them: benchmarks measure submission alone (bench/jobs.py)
PartitionName=hold Nodes=node[1-3] MaxTime=INFINITE State=DOWN
EOF
  cat > "$dir/cgroup.conf" <<EOF
CgroupPlugin=cgroup/v1
CgroupMountpoint=/sys/fs/cgroup
ConstrainRAMSpace=yes
ConstrainSwapSpace=yes
AllowedSwapSpace=0
EOF
}

alive() {  # alive PIDFILE: the pid file names a running process
  [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

start_munge() {
  if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then return; fi
  mkdir -p /run/munge /var/lib/munge /var/log/munge
  chown munge: /run/munge /var/lib/munge /var/log/munge
  [ -s /etc/munge/munge.key ] || { dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null;
                                   chown munge: /etc/munge/munge.key; chmod 400 /etc/munge/munge.key; }
  runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/munged.pid
  echo "$(cat /run/munge/munged.pid)" > "$dir/run/munged.pid"  # ours to stop
  for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && return; sleep 0.1; done
  echo "munged did not answer" >&2; exit 1
}

start() {
  write_config
  start_munge
  alive "$dir/run/slurmctld.pid" || slurmctld -f "$conf"
  for node in "${nodes[@]}"; do
    alive "$dir/run/slurmd-$node.pid" || slurmd -f "$conf" -N "$node"
  done
  for _ in $(seq 150); do
    up=$(sinfo -h -N -p debug -o '%N %t' 2>/dev/null | grep -cE ' (idle|mix|alloc)$' || true)
    [ "$up" -ge "${#nodes[@]}" ] && { echo "slurm cluster up: SLURM_CONF=$conf"; return; }
    sleep 0.2
  done
  echo "slurm nodes did not become idle:" >&2; sinfo -N >&2 || true; exit 1
}

stop_pidfile() {  # stop_pidfile FILE: TERM the process it names, wait, KILL if it lingers
  local file=$1 pid
  alive "$file" || { rm -f "$file"; return; }
  pid=$(cat "$file")
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$file"
}

stop() {
  for node in "${nodes[@]}"; do stop_pidfile "$dir/run/slurmd-$node.pid"; done
  stop_pidfile "$dir/run/slurmctld.pid"
  if [ -s "$dir/run/munged.pid" ]; then stop_pidfile "$dir/run/munged.pid"; fi
  echo "slurm cluster stopped"
}

status() {
  alive "$dir/run/slurmctld.pid" || { echo "slurmctld not running"; exit 3; }
  sinfo -N
}

case ${1:-} in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
