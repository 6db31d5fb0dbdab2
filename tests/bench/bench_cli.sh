#!/usr/bin/env bash
# The `jobwarden` tool against `xargs -P`: N commands `true`, one per line of a
# file, each run through /bin/sh -c by both (the tool runs every line of
# --commands FILE that way; xargs is given `sh -c` and one line per call).
# The job root is on --dir (default $TMPDIR or /tmp: the disk), a fresh one
# per round. Rounds alternate which of the two goes first; the figure is the
# median over rounds of the per-round ratio of wall times, tool / xargs.
#
#   tests/bench/bench_cli.sh PATH/TO/jobwarden [--n 600] [--jobs 2] [--rounds 5] [--dir DIR] [--smoke]
#
# Prints `FIGURE` lines like the C++ benchmarks (scripts/bench.sh collects
# them). Exits non-zero only when a run fails.
set -euo pipefail

cli="${1:?usage: bench_cli.sh PATH/TO/jobwarden [options]}"
shift
n=600
jobs=2
rounds=5
dir="${TMPDIR:-/tmp}"
while [ $# -gt 0 ]; do
  case "$1" in
    --n) shift; n="$1" ;;
    --jobs) shift; jobs="$1" ;;
    --rounds) shift; rounds="$1" ;;
    --dir) shift; dir="$1" ;;
    --smoke) n=20; rounds=1 ;;
    *) echo "bench_cli.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
[ -x "$cli" ] || { echo "bench_cli.sh: $cli is not an executable" >&2; exit 2; }

work="$(mktemp -d "$dir/jwbench-cli.XXXXXX")"
trap 'rm -rf "$work"' EXIT
commands="$work/commands"
for _ in $(seq "$n"); do echo true; done >"$commands"

now_ns() { date +%s%N; }

# Seconds (as a decimal) one run of the tool took; a fresh root every call.
run_cli() {
  local root="$work/root-$1"
  local start end
  start=$(now_ns)
  "$cli" run --root "$root" --job bench --jobs "$jobs" --commands "$commands" --quiet </dev/null >/dev/null
  end=$(now_ns)
  local done_lines
  done_lines=$(grep -c '"type":"worker".*"state":"succeeded"' "$root/bench/journal.jsonl" || true)
  if [ "$done_lines" -lt "$n" ]; then
    echo "bench_cli.sh: the journal records $done_lines succeeded workers, not $n" >&2
    exit 1
  fi
  rm -rf "$root"
  echo $(( end - start ))
}

run_xargs() {
  local start end
  start=$(now_ns)
  xargs -d '\n' -n 1 -P "$jobs" /bin/sh -c <"$commands" >/dev/null
  end=$(now_ns)
  echo $(( end - start ))
}

ratios=()
cli_times=()
xargs_times=()
for round in $(seq "$rounds"); do
  if [ $((round % 2)) -eq 1 ]; then
    c=$(run_cli "$round"); x=$(run_xargs)
  else
    x=$(run_xargs); c=$(run_cli "$round")
  fi
  cli_times+=("$c")
  xargs_times+=("$x")
  ratios+=("$(awk -v c="$c" -v x="$x" 'BEGIN { printf "%.4f", c / x }')")
  echo "round $round: jobwarden run $(awk -v t="$c" 'BEGIN { printf "%.3f", t / 1e9 }') s," \
       "xargs -P$jobs $(awk -v t="$x" 'BEGIN { printf "%.3f", t / 1e9 }') s"
done

median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
ratio=$(median "${ratios[@]}")
cli_us=$(awk -v t="$(median "${cli_times[@]}")" -v n="$n" 'BEGIN { printf "%.1f", t / n / 1e3 }')
xargs_us=$(awk -v t="$(median "${xargs_times[@]}")" -v n="$n" 'BEGIN { printf "%.1f", t / n / 1e3 }')
fs=$(stat -f -c %T "$dir" 2>/dev/null || echo "?")
echo "$n x 'true' at --jobs $jobs, job root on $dir ($fs), $rounds round(s)"
met=$(awk -v r="$ratio" 'BEGIN { print (r <= 1.1) ? "met" : "MISSED" }')
printf 'FIGURE %-44s %12.3f %-10s target <= 1.1: %s\n' "cli.jobs${jobs}_vs_xargs_P${jobs}" "$ratio" "x" "$met"
printf 'FIGURE %-44s %12.3f %-10s\n' "cli.jobs${jobs}_us_per_worker" "$cli_us" "us"
printf 'FIGURE %-44s %12.3f %-10s\n' "cli.xargs_P${jobs}_us_per_worker" "$xargs_us" "us"
