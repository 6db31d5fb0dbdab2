#!/usr/bin/env bash
# Tears down what scripts/slurm-up.sh started in DIR — and nothing else: only
# the pids it recorded, each checked against its recorded kernel start time
# (a reused pid is never signalled). Jobs still in that cluster are cancelled
# first so no task outlives it. Logs stay in DIR unless --purge is given.
#
#   scripts/slurm-down.sh [DIR] [--purge]     # default DIR: /tmp/jobwarden-slurm
set -uo pipefail

dir=/tmp/jobwarden-slurm
purge=0
for arg in "$@"; do
  case $arg in
    --purge) purge=1 ;;
    *) dir=$arg ;;
  esac
done

say() { echo "slurm-down: $*" >&2; }

if [[ ! -f $dir/run/daemons ]]; then
  say "nothing recorded in $dir/run/daemons: nothing to stop"
  exit 0
fi

# pid's start time, parsed after the ")" that ends the command name.
start_time() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  # Fields after the name start at field 3 (state); starttime is field 22.
  # A zombie counts as gone: it runs nothing, and its reaper is not us.
  [[ ${stat:0:1} == Z ]] && return 1
  echo "$stat" | awk '{print $20}'
}

is_ours() {  # pid recorded_start
  local now
  now=$(start_time "$1") || return 1
  [[ -n $2 && $now == "$2" ]]
}

declare -A recorded
while read -r name pid start; do
  recorded[$name]="$pid $start"
done <"$dir/run/daemons"

# Cancel every job of this throw-away cluster while its controller still runs.
read -r ctld_pid ctld_start <<<"${recorded[slurmctld]:-0 x}"
if is_ours "$ctld_pid" "$ctld_start" && [[ -f $dir/etc/slurm.conf ]]; then
  export SLURM_CONF=$dir/etc/slurm.conf
  jobs=$(timeout 10 squeue -h -o %i 2>/dev/null | tr '\n' ' ')
  if [[ -n ${jobs// /} ]]; then
    say "cancelling jobs: $jobs"
    # shellcheck disable=SC2086
    timeout 10 scancel -s KILL $jobs 2>/dev/null || true
    for _ in $(seq 100); do  # up to 10 s for the steps to end
      [[ -z $(timeout 5 squeue -h -t R,CG -o %i 2>/dev/null) ]] && break
      sleep 0.1
    done
  fi
fi

# Stop order: slurmd (and so new steps) first, then the controller, then munge.
for name in slurmd slurmctld munged; do
  [[ -n ${recorded[$name]:-} ]] || continue
  read -r pid start <<<"${recorded[$name]}"
  if ! is_ours "$pid" "$start"; then
    continue
  fi
  kill -TERM "$pid" 2>/dev/null
  for _ in $(seq 100); do
    is_ours "$pid" "$start" || break
    sleep 0.05
  done
  if is_ours "$pid" "$start"; then
    say "$name (pid $pid) ignored SIGTERM for 5 s: SIGKILL"
    kill -KILL "$pid" 2>/dev/null
  fi
  for _ in $(seq 100); do
    is_ours "$pid" "$start" || break
    sleep 0.05
  done
done

rm -f "$dir/run/daemons"
if ((purge)) && [[ -f $dir/.jobwarden-slurm ]]; then  # only a directory slurm-up.sh made
  rm -rf "${dir:?}"
  say "stopped and removed $dir"
else
  say "stopped; logs kept in $dir/log"
fi
exit 0
