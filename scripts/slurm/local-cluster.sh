#!/usr/bin/env bash
# A single-node Slurm on this machine, for `just test-slurm`: munge and Slurm from Debian's
# packages (slurm-wlm, munge), configuration and state under DIR (default target/slurm).
#   scripts/slurm/local-cluster.sh start [DIR]   # prints `export SLURM_CONF=...`
#   scripts/slurm/local-cluster.sh stop [DIR]
set -euo pipefail
cmd=${1:?start or stop}
dir=$(realpath -m "${2:-target/slurm}")
conf="$dir/slurm.conf"
case "$cmd" in
start)
    mkdir -p "$dir/state" "$dir/spool" "$dir/log" /run/munge /var/log/munge /var/lib/munge
    host=$(hostname -s)
    cpus=$(nproc)
    mem=$(awk '/MemTotal/ { print int($2 / 1024 * 0.8) }' /proc/meminfo)
    cat > "$conf" <<CONF
ClusterName=masklab
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=local Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
    export SLURM_CONF="$conf"
    [ -s /etc/munge/munge.key ] || /usr/sbin/mungekey --create >/dev/null 2>&1 || \
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 2>/dev/null
    chmod 400 /etc/munge/munge.key
    pgrep -x munged >/dev/null || /usr/sbin/munged --force
    pgrep -x slurmctld >/dev/null || /usr/sbin/slurmctld
    pgrep -x slurmd >/dev/null || /usr/sbin/slurmd
    for _ in $(seq 60); do
        state=$(sinfo -h -o %T 2>/dev/null | head -1 || true)
        case "$state" in idle*|mixed*|alloc*) echo "export SLURM_CONF=$conf"; exit 0 ;; esac
        sleep 1
    done
    echo "local-cluster: the node did not come up (state: ${state:-none}); see $dir/log" >&2
    exit 1
    ;;
stop)
    for d in slurmd slurmctld munged; do pkill -x "$d" 2>/dev/null || true; done
    ;;
*)
    echo "usage: $0 start|stop [DIR]" >&2
    exit 2
    ;;
esac
