#!/usr/bin/env bash
# Stop the one-node SLURM cluster started by cluster/slurm-up.sh: cancel its jobs, stop
# slurmd and slurmctld, then munged. Leaves state and logs in place (job ids keep counting).
#
#   cluster/slurm-down.sh [--keep-munge]
# Environment: SAMEDGE_SLURM_STATE as for slurm-up.sh. Safe to run when nothing is running.
set -euo pipefail
# The daemons and runuser live in sbin, which a non-login shell's PATH (env -i, CI) may lack.
export PATH="$PATH:/usr/sbin:/sbin"

STATE=${SAMEDGE_SLURM_STATE:-/var/spool/samedge-slurm}
KEEP_MUNGE=0
[[ ${1:-} == --keep-munge ]] && KEEP_MUNGE=1

log() { echo "slurm-down: $*" >&2; }

# Pid from PIDFILE when it names a live process called NAME, else nothing.
live_pid() {
    local pidfile=$1 name=$2 pid
    [[ -s $pidfile ]] || return 0
    pid=$(<"$pidfile")
    if [[ -r /proc/$pid/comm && $(</proc/"$pid"/comm) == "$name" ]]; then
        echo "$pid"
    fi
}

# SIGTERM the daemon named in PIDFILE, wait up to 30 s, then SIGKILL.
stop() {
    local pidfile=$1 name=$2 pid
    pid=$(live_pid "$pidfile" "$name")
    [[ -n $pid ]] || return 0
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 30); do
        [[ -d /proc/$pid ]] || return 0
        sleep 1
    done
    log "$name did not exit; killing it"
    kill -KILL "$pid" 2>/dev/null || true
}

[[ $(id -u) -eq 0 ]] || { log "ERROR: must run as root"; exit 2; }

if [[ -n $(live_pid "$STATE/slurmctld.pid" slurmctld) ]]; then
    # Cancel what is left so no slurmstepd outlives the cluster.
    mapfile -t jobs < <(squeue -h -o %i 2>/dev/null || true)
    if ((${#jobs[@]})); then
        log "cancelling jobs: ${jobs[*]}"
        scancel "${jobs[@]}" || true
        sleep 2
    fi
fi
stop "$STATE/slurmd.pid" slurmd
stop "$STATE/slurmctld.pid" slurmctld
if ((KEEP_MUNGE == 0)); then
    stop /run/munge/munged.pid munged
fi
log "stopped"
