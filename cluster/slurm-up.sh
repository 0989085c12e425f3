#!/usr/bin/env bash
# Bring up a one-node SLURM cluster on this (Debian) machine, as root, without systemd:
# munged + slurmctld + slurmd in the background, no accounting database. Idempotent.
#
#   sudo cluster/slurm-up.sh      # then: sinfo; srun hostname; sbatch --wrap 'hostname'
#   sudo cluster/slurm-down.sh    # stops it again
# The node is the local host (hostname -s) with the CPUs and memory `slurmd -C` detects, in one
# partition (Default=YES). Without accounting, snakemake needs --slurm-status-command squeue
# (finished jobs stay visible to squeue/scontrol for MinJobAge=1h); one line per finished job
# also goes to $SAMEDGE_SLURM_STATE/log/jobcomp.log.
#
# Environment (all optional):
#   SAMEDGE_SLURM_STATE      state, spool, pid and log dir   (default /var/spool/samedge-slurm)
#   SAMEDGE_SLURM_PARTITION  name of the one partition       (default debug)
#   SAMEDGE_SLURM_TIMEOUT    seconds to wait for the node    (default 90)
# Exit codes: 0 up; 2 not root or a foreign slurm.conf exists; 3 packages cannot be installed;
#             1 the daemons did not come up (see the logs printed).
set -euo pipefail
# The daemons and runuser live in sbin, which a non-login shell's PATH (env -i, CI) may lack.
export PATH="$PATH:/usr/sbin:/sbin"

STATE=${SAMEDGE_SLURM_STATE:-/var/spool/samedge-slurm}
PARTITION=${SAMEDGE_SLURM_PARTITION:-debug}
TIMEOUT=${SAMEDGE_SLURM_TIMEOUT:-90}
CONF=/etc/slurm/slurm.conf   # the default path every SLURM client reads
MARKER="# samedge one-node test cluster"
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

log() { echo "slurm-up: $*" >&2; }
die() { local code=$1; shift; log "ERROR: $*"; exit "$code"; }

# True when PIDFILE names a live process whose command is NAME (guards against reused pids).
running() {
    local pidfile=$1 name=$2 pid
    [[ -s $pidfile ]] || return 1
    pid=$(<"$pidfile")
    [[ -r /proc/$pid/comm && $(</proc/"$pid"/comm) == "$name" ]]
}

install_packages() {
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null \
        && command -v sinfo >/dev/null && command -v munged >/dev/null; then
        return 0
    fi
    command -v apt-get >/dev/null || die 3 "slurm/munge missing and no apt-get to install them"
    local out
    out=$(mktemp)
    log "installing slurm-wlm and munge (apt-get; output in $out)"
    export DEBIAN_FRONTEND=noninteractive
    if ! { apt-get update && apt-get install -y --no-install-recommends slurm-wlm munge; } >"$out" 2>&1; then
        tail -n 15 "$out" >&2
        die 3 "apt-get could not install slurm-wlm munge"
    fi
}

start_munge() {
    local key=/etc/munge/munge.key
    if [[ ! -s $key ]]; then
        log "creating munge key"
        mungekey --create --keyfile="$key"
    fi
    chown munge:munge "$key" && chmod 0400 "$key"
    # systemd would create the runtime dir; here we do.
    install -d -o munge -g munge -m 0755 /run/munge
    install -d -o munge -g munge -m 0700 /var/lib/munge /var/log/munge
    if ! running /run/munge/munged.pid munged; then
        log "starting munged"
        runuser -u munge -- /usr/sbin/munged
    fi
    munge -n | unmunge >/dev/null || die 1 "munge round trip failed"
}

write_conf() {
    local host hw tmp
    host=$(hostname -s)
    # CPUs, sockets, cores, threads and RealMemory exactly as slurmd detects them.
    hw=$(slurmd -C | head -n1 | sed 's/^NodeName=[^ ]* //')
    [[ $hw == *CPUs=* && $hw == *RealMemory=* ]] || die 1 "slurmd -C gave no hardware line: $hw"
    if [[ -e $CONF ]] && ! grep -q "^$MARKER" "$CONF"; then
        die 2 "$CONF exists and was not written by this script; refusing to overwrite it"
    fi
    tmp=$(mktemp)
    sed -e "s|@HOST@|$host|g" -e "s|@NODE_HW@|$hw|" -e "s|@STATE@|$STATE|g" \
        -e "s|@PARTITION@|$PARTITION|" "$HERE/slurm.conf.in" >"$tmp"
    if [[ -e $CONF ]] && cmp -s "$tmp" "$CONF"; then
        rm -f "$tmp"
        return 0
    fi
    # A changed config needs fresh daemons; stop any we started before.
    if running "$STATE/slurmctld.pid" slurmctld || running "$STATE/slurmd.pid" slurmd; then
        log "slurm.conf changed: restarting the daemons"
        "$HERE/slurm-down.sh" --keep-munge
    fi
    install -d /etc/slurm
    install -m 0644 "$tmp" "$CONF"
    rm -f "$tmp"
    log "wrote $CONF (node $host: $hw)"
}

start_slurm() {
    install -d -m 0755 "$STATE" "$STATE/ctld" "$STATE/d" "$STATE/log"
    if ! running "$STATE/slurmctld.pid" slurmctld; then
        log "starting slurmctld"
        slurmctld   # daemonises itself and writes its pid file
    fi
    if ! running "$STATE/slurmd.pid" slurmd; then
        log "starting slurmd"
        slurmd
    fi
}

# Poll sinfo until the node reports idle (or mixed/allocated when jobs already run).
wait_idle() {
    local host state deadline=$((SECONDS + TIMEOUT))
    host=$(hostname -s)
    while ((SECONDS < deadline)); do
        state=$(sinfo -h -n "$host" -o %T 2>/dev/null | head -n1 || true)
        case $state in
            idle | mixed | allocated)
                log "node $host is $state (partition $PARTITION)"
                return 0 ;;
            down* | drain*)
                # Left down by an earlier unclean stop; the daemons are fresh, so resume it.
                scontrol update NodeName="$host" State=RESUME 2>/dev/null || true ;;
        esac
        sleep 1
    done
    log "node $host not idle after ${TIMEOUT}s (state: ${state:-none}); last log lines:"
    tail -n 20 "$STATE/log/slurmctld.log" "$STATE/log/slurmd.log" >&2 || true
    exit 1
}

main() {
    [[ $(id -u) -eq 0 ]] || die 2 "must run as root (installs packages, starts daemons)"
    [[ -r $HERE/slurm.conf.in ]] || die 2 "template $HERE/slurm.conf.in missing"
    install_packages
    start_munge
    write_conf
    start_slurm
    wait_idle
}

main "$@"
