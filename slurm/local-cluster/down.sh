#!/bin/bash
# Stop the daemons started by up.sh, by PID file only (never by process name).
# Leftover jobs are cancelled first so that no job process outlives slurmd.
BASE=${SLURM_CI_BASE:-/tmp/slurmci}
alive() { [ -e "/proc/$1" ] && ! grep -q '^[^ ]* ([^)]*) Z' "/proc/$1/stat" 2>/dev/null; }  # a zombie counts as gone
stop_pid() {  # name pidfile
  local pid; pid=$(cat "$2" 2>/dev/null) || return 0
  [ -n "$pid" ] && alive "$pid" || return 0
  kill -TERM "$pid"
  for _ in $(seq 150); do alive "$pid" || { echo "$1 ($pid) stopped"; return 0; }; sleep 0.1; done
  echo "$1 ($pid) still running after 15s, sending KILL"; kill -KILL "$pid"
}
if command -v squeue >/dev/null && jobs=$(timeout 10 squeue -h -o %i 2>/dev/null) && [ -n "$jobs" ]; then
  # shellcheck disable=SC2086
  scancel $jobs && sleep 1
fi
stop_pid slurmd    "$BASE/run/slurmd.pid"
stop_pid slurmctld "$BASE/run/slurmctld.pid"
stop_pid slurmdbd  "$BASE/run/slurmdbd.pid"
stop_pid mariadbd  /run/mysqld/mariadbd.pid
stop_pid munged    /run/munge/munged.pid
exit 0
