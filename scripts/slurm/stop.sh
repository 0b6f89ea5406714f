#!/usr/bin/env bash
# Stop the single-node SLURM cluster started by scripts/slurm/start.sh (jobs are cancelled).
set -uo pipefail
if [[ $(id -u) -ne 0 ]]; then
    echo "scripts/slurm/stop.sh: needs root" >&2
    exit 1
fi
scancel --user=root >/dev/null 2>&1 || true
stop() {  # pid file, name: SIGTERM, then wait up to 10 s
    [[ -f $1 ]] || return 0
    local pid
    pid=$(cat "$1")
    kill "$pid" 2>/dev/null || return 0
    for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.5; done
    echo "scripts/slurm/stop.sh: $2 (pid $pid) did not stop" >&2
}
stop /run/slurmd.pid slurmd
stop /run/slurmctld.pid slurmctld
stop /run/munge/munged.pid munged
echo "SLURM stopped"
