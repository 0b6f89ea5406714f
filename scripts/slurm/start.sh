#!/usr/bin/env bash
# Start a single-node SLURM cluster on this machine (for hebbsim's sweep tests and for trying
# `hebbsim sweep --cluster slurm` on a workstation). Needs root. Idempotent: if `sbatch` already
# runs jobs, it does nothing.
#
#   scripts/slurm/start.sh      # installs slurm-wlm and munge with apt-get if missing
#   scripts/slurm/stop.sh
#
# The cluster: one node named `hostname` with `nproc` CPUs, one partition "debug", no
# accounting, no cgroups (proctrack/linuxproc, task/none), so it starts in seconds inside a
# container. Logs: /var/log/slurm/. Not for production use.
set -euo pipefail

if [[ $(id -u) -ne 0 ]]; then
    echo "scripts/slurm/start.sh: needs root (it writes /etc/slurm/slurm.conf and starts daemons)" >&2
    exit 1
fi

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    echo "installing slurm-wlm and munge (apt-get) ..."
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq slurm-wlm munge >/dev/null
fi

host=$(hostname -s)
cpus=$(nproc)
# a job's --mem must fit the node's RealMemory (MiB); keep 10 % for the system
mem_mb=$(awk '/MemTotal/ {printf "%d", $2 / 1024 * 0.9}' /proc/meminfo)

mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge
conf=/etc/slurm/slurm.conf
cat > "$conf.new" <<CONF
# written by hebbsim scripts/slurm/start.sh: a single-node test cluster
ClusterName=hebbsim
SlurmctldHost=${host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CryptoType=crypto/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
ReturnToService=2
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
MinJobAge=60
NodeName=${host} NodeAddr=127.0.0.1 CPUs=${cpus} RealMemory=${mem_mb} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
mv "$conf.new" "$conf"

# munge authenticates slurm's messages; Debian's package created /etc/munge/munge.key
if [[ ! -s /etc/munge/munge.key ]]; then
    mungekey --create --keyfile=/etc/munge/munge.key 2>/dev/null || \
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
chown munge:munge /etc/munge/munge.key /run/munge /var/lib/munge /var/log/munge 2>/dev/null || true
chmod 400 /etc/munge/munge.key
if ! munge -n >/dev/null 2>&1; then
    runuser -u munge -- /usr/sbin/munged
fi

running() { [[ -f $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }
running /run/slurmctld.pid || slurmctld
running /run/slurmd.pid || slurmd

# wait until a job actually runs (slurmd registers with slurmctld within seconds)
for _ in $(seq 1 60); do
    if out=$(timeout 20 srun --quiet -N1 -n1 -t 1 hostname 2>/dev/null) && [[ -n $out ]]; then
        break
    fi
    scontrol update NodeName="$host" State=RESUME >/dev/null 2>&1 || true
    sleep 1
done
job=$(sbatch --parsable -o /dev/null --wrap hostname)
for _ in $(seq 1 60); do
    state=$(scontrol show job "$job" 2>/dev/null | sed -n 's/.*JobState=\([A-Z]*\).*/\1/p')
    [[ $state == COMPLETED ]] && { echo "SLURM is up: node $host, $cpus CPUs, ${mem_mb} MiB (sbatch job $job ran)"; exit 0; }
    [[ $state == FAILED || $state == CANCELLED ]] && break
    sleep 0.5
done
echo "scripts/slurm/start.sh: SLURM did not run a test job (state ${state:-unknown}); see /var/log/slurm/" >&2
exit 1
