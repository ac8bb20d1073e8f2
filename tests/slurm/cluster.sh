#!/usr/bin/env bash
# A real single-node SLURM cluster on loopback, for tests and CI (Debian/Ubuntu, as root, no systemd needed).
#
#   tests/slurm/cluster.sh up      install slurmctld/slurmd/slurm-client/munge if missing, write the config,
#                                  start munged, slurmctld and slurmd, wait until the node is idle
#   tests/slurm/cluster.sh down    stop the three daemons (by their pid files) and wait until they are gone
#   tests/slurm/cluster.sh status  print whether the daemons run and what sinfo says
#
# Both directions are idempotent: `up` on a running cluster only checks it, `down` on a stopped one does nothing.
# The node has <nproc> CPUs, ~80 % of the RAM and FX_SLURM_GPUS (default 2, at most 5) *fake* GPUs: gres
# entries backed by /dev/null, /dev/zero, ... so that jobs asking --gpus=1 are really scheduled against a
# GPU count (and see CUDA_VISIBLE_DEVICES) while running on the CPU. No slurmdbd: there is no accounting,
# so sacct does not work; completed jobs stay visible to `scontrol show job` / `squeue` for MinJobAge seconds
# and every finished job is appended to the job-completion log $FX_SLURM_JOBCOMP.
#
# It refuses to touch a slurm.conf it did not write (marker line below), so it cannot clobber a real cluster.
set -euo pipefail

MARKER="# written by finextract tests/slurm/cluster.sh"
CONF_DIR=/etc/slurm
CONF=$CONF_DIR/slurm.conf
GRES=$CONF_DIR/gres.conf
GPUS=${FX_SLURM_GPUS:-2}
JOBCOMP=${FX_SLURM_JOBCOMP:-/var/log/slurm/jobcomp.log}
MIN_JOB_AGE=${FX_SLURM_MIN_JOB_AGE:-3600}
WAIT_S=${FX_SLURM_WAIT_S:-60}
PIDS=(/run/slurmd.pid /run/slurmctld.pid /run/munge/munged.pid)   # stop order: reverse of start
FAKE_GPU_FILES=(/dev/null /dev/zero /dev/full /dev/random /dev/urandom)

say() { echo "cluster.sh: $*"; }
die() { echo "cluster.sh: ERROR: $*" >&2; exit 1; }

pid_alive() {  # pid_alive FILE -> 0 if FILE names a running process
    [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

node_state() { timeout 5 sinfo -h -n localhost -o %T 2>/dev/null | head -n1 || true; }

install_packages() {
    local missing=()
    for pkg in slurmctld slurmd slurm-client munge; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    if [ ${#missing[@]} -eq 0 ]; then
        say "packages already installed: slurmctld slurmd slurm-client munge"
        return
    fi
    command -v apt-get >/dev/null || die "apt-get not found: install ${missing[*]} yourself"
    say "installing ${missing[*]} (apt-get; daemons are kept from auto-starting by a temporary policy-rc.d)"
    local made_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        made_policy=1
    fi
    local rc=0
    {
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq &&
        apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge </dev/null
    } >/tmp/finextract-slurm-apt.log 2>&1 || rc=$?
    [ "$made_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
    if [ "$rc" != 0 ]; then
        tail -n 30 /tmp/finextract-slurm-apt.log >&2
        die "apt-get install failed (exit $rc); full log: /tmp/finextract-slurm-apt.log"
    fi
}

write_config() {
    if [ -e "$CONF" ] && ! grep -qF "$MARKER" "$CONF"; then
        die "$CONF exists and was not written by this script: refusing to overwrite a real SLURM config"
    fi
    [ "$GPUS" -ge 1 ] && [ "$GPUS" -le ${#FAKE_GPU_FILES[@]} ] || die "FX_SLURM_GPUS must be 1..${#FAKE_GPU_FILES[@]}"
    local cpus mem_mb
    cpus=$(nproc)
    mem_mb=$(awk '/^MemTotal:/ {printf "%d", $2 / 1024 * 0.8}' /proc/meminfo)
    mkdir -p "$CONF_DIR" /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge
    chown slurm: /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
    chown munge: /run/munge
    chmod 0755 /run/munge
    local new
    new=$(cat <<EOF
$MARKER
ClusterName=finextract-test
SlurmctldHost=localhost
SlurmUser=slurm
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
ReturnToService=2
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$JOBCOMP
MinJobAge=$MIN_JOB_AGE
KillWait=5
InactiveLimit=0
SlurmdTimeout=60
GresTypes=gpu
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb Gres=gpu:$GPUS State=UNKNOWN
PartitionName=main Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
)
    local gres="$MARKER"$'\n'"AutoDetect=off"
    for ((i = 0; i < GPUS; i++)); do
        gres+=$'\n'"NodeName=localhost Name=gpu File=${FAKE_GPU_FILES[$i]}"
    done
    if [ "$(cat "$CONF" 2>/dev/null)" != "$new" ] || [ "$(cat "$GRES" 2>/dev/null)" != "$gres" ]; then
        say "writing $CONF and $GRES (localhost: $cpus CPUs, $mem_mb MB, $GPUS fake GPUs)"
        printf '%s\n' "$new" > "$CONF"
        printf '%s\n' "$gres" > "$GRES"
        CONFIG_CHANGED=1
    else
        say "$CONF and $GRES are up to date"
    fi
}

start_munge() {
    if pid_alive /run/munge/munged.pid; then say "munged already running"; return; fi
    if [ ! -s /etc/munge/munge.key ]; then
        say "creating /etc/munge/munge.key"
        if command -v mungekey >/dev/null; then
            runuser -u munge -- mungekey --create --keyfile=/etc/munge/munge.key
        else
            dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
            chown munge: /etc/munge/munge.key
        fi
        chmod 0400 /etc/munge/munge.key
    fi
    say "starting munged"
    runuser -u munge -- /usr/sbin/munged --force
    wait_pidfile munged /run/munge/munged.pid /var/log/munge/munged.log
    for _ in $(seq 50); do munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1 && return; sleep 0.2; done
    die "munged did not come up (try: munge -n | unmunge)"
}

wait_pidfile() {  # wait_pidfile NAME PIDFILE LOG: a daemon forks and writes its pid file a moment later
    local name=$1 file=$2 log=$3
    for _ in $(seq 100); do pid_alive "$file" && return; sleep 0.1; done
    tail -n 10 "$log" >&2 || true
    die "$name did not start (no live pid in $file after 10s); see $log"
}

start_slurm() {
    if pid_alive /run/slurmctld.pid; then
        say "slurmctld already running"
    else
        say "starting slurmctld (fresh state: -c)"
        slurmctld -c || die "slurmctld failed to start; see /var/log/slurm/slurmctld.log"
        wait_pidfile slurmctld /run/slurmctld.pid /var/log/slurm/slurmctld.log
    fi
    if pid_alive /run/slurmd.pid; then
        say "slurmd already running"
    else
        say "starting slurmd -N localhost"
        slurmd -N localhost || die "slurmd failed to start; see /var/log/slurm/slurmd.log"
        wait_pidfile slurmd /run/slurmd.pid /var/log/slurm/slurmd.log
    fi
}

wait_idle() {
    say "waiting up to ${WAIT_S}s for node localhost to be idle"
    local state="" deadline=$((SECONDS + WAIT_S))
    while [ "$SECONDS" -lt "$deadline" ]; do
        pid_alive /run/slurmctld.pid || { tail -n 5 /var/log/slurm/slurmctld.log >&2; die "slurmctld exited; see /var/log/slurm/slurmctld.log"; }
        pid_alive /run/slurmd.pid || { tail -n 5 /var/log/slurm/slurmd.log >&2; die "slurmd exited; see /var/log/slurm/slurmd.log"; }
        state=$(node_state)
        case "$state" in
            idle|mixed|allocated|completing) say "node localhost is $state; cluster is up"; return 0 ;;
        esac
        sleep 0.5
    done
    echo "--- sinfo:" >&2; timeout 5 sinfo -N -l >&2 || true
    echo "--- scontrol show node:" >&2; timeout 5 scontrol show node localhost >&2 || true
    echo "--- slurmctld.log:" >&2; tail -n 20 /var/log/slurm/slurmctld.log >&2 || true
    echo "--- slurmd.log:" >&2; tail -n 20 /var/log/slurm/slurmd.log >&2 || true
    die "node localhost did not become idle within ${WAIT_S}s (state: '${state:-no answer}')"
}

stop_pid() {  # stop_pid NAME PIDFILE
    local name=$1 file=$2
    if ! pid_alive "$file"; then say "$name not running"; rm -f "$file"; return; fi
    local pid
    pid=$(cat "$file")
    say "stopping $name (pid $pid)"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || { rm -f "$file"; return; }; sleep 0.1; done
    say "$name did not exit after 10s: SIGKILL"
    kill -9 "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || { rm -f "$file"; return; }; sleep 0.1; done
    die "could not stop $name (pid $pid)"
}

up() {
    [ "$(id -u)" = 0 ] || die "must run as root (installs packages, starts daemons)"
    command -v dpkg >/dev/null || die "dpkg not found: this script supports Debian/Ubuntu only"
    install_packages
    CONFIG_CHANGED=0
    write_config
    if [ "$CONFIG_CHANGED" = 1 ] && { pid_alive /run/slurmctld.pid || pid_alive /run/slurmd.pid; }; then
        say "config changed while daemons run: restarting them"
        stop_pid slurmd /run/slurmd.pid
        stop_pid slurmctld /run/slurmctld.pid
    fi
    start_munge
    start_slurm
    wait_idle
}

down() {
    stop_pid slurmd /run/slurmd.pid
    stop_pid slurmctld /run/slurmctld.pid
    stop_pid munged /run/munge/munged.pid
    say "cluster is down"
}

status() {
    for f in "${PIDS[@]}"; do
        if pid_alive "$f"; then echo "$(basename "$f" .pid): running (pid $(cat "$f"))";
        else echo "$(basename "$f" .pid): stopped"; fi
    done
    command -v sinfo >/dev/null && pid_alive /run/slurmctld.pid && sinfo -N -o "%N %T %c %m %G" || true
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    status) status ;;
    *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
