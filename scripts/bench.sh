#!/usr/bin/env bash
# Builds jobwarden's benchmarks in Release and runs the suite (issue 6).
#
#   scripts/bench.sh                 the full suite (about 12 minutes on a 2-core VM)
#   scripts/bench.sh --smoke         small N, one round (what CI's `bench` ctests run)
#   scripts/bench.sh --only spawn    one benchmark: spawn big_host latency status idle scale output output_tmpfs
#                                    records cli
#
# Environment: BUILD_DIR (default build-bench), JOBS (default nproc).
# Each benchmark runs jobwarden and its baselines alternating in one process
# and prints the median per-round ratio; every figure is also printed as a
# `FIGURE name value unit [target ...: met|MISSED]` line, collected at the end.
# Timing is reported, never asserted: the exit status is non-zero only when a
# benchmark fails (or does not build) or leaves a process behind.
# The Boost.Process baseline needs Boost 1.74 headers (Debian: libboost1.74-dev)
# at configure time; the Python baseline needs python3.
set -euo pipefail
cd "$(dirname "$0")/.."

smoke=""
only=()
while [ $# -gt 0 ]; do
  case "$1" in
    --smoke) smoke="--smoke" ;;
    --only) shift; only+=("$1") ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "bench.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

build_dir="${BUILD_DIR:-build-bench}"
jobs="${JOBS:-$(nproc)}"
# Examples on: the cli benchmark runs the `jobwarden` tool.
cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=Release -DJOBWARDEN_BUILD_EXAMPLES=ON >/dev/null
bench="$(cd "$build_dir/tests/bench" && pwd)"
cli="$(cd "$build_dir" && pwd)/examples/cli/jobwarden"
python_args=(--python "$(command -v python3 || echo python3)")
command -v python3 >/dev/null || python_args=(--no-python)

declare -A commands=(
  [spawn]="$bench/bench_spawn $smoke ${python_args[*]}"
  [big_host]="$bench/bench_spawn --big-host $smoke"
  [latency]="$bench/bench_latency $smoke"
  [status]="$bench/bench_status $smoke"
  [idle]="$bench/bench_idle $smoke"
  [scale]="$bench/bench_scale $smoke"
  # Worker output (1 GB per route, host CPU per MB, small-worker spawn cost per
  # route) on the disk bench_spawn's "root on disk" figures use, and the 1 GB
  # runs again on its tmpfs, where no writeback adds noise.
  [output]="$bench/bench_output $smoke --dir ${TMPDIR:-/tmp}"
  [output_tmpfs]="$bench/bench_output $smoke --skip-spawn --dir /dev/shm"
  # The writer's cost per journal line, in memory and appended on tmpfs and disk.
  [records]="$bench/bench_records $([ -n "$smoke" ] && echo 1000)"
  # The `jobwarden` tool running 600 `true` at --jobs 2 against xargs -P2,
  # job root on the disk.
  [cli]="$(pwd)/tests/bench/bench_cli.sh $cli $smoke --dir ${TMPDIR:-/tmp}"
)
# What each benchmark needs built (only those that run are built).
declare -A targets=(
  [spawn]="bench_spawn" [big_host]="bench_spawn" [latency]="bench_latency" [status]="bench_status"
  [idle]="bench_idle" [scale]="bench_scale" [output]="bench_output" [output_tmpfs]="bench_output"
  [records]="bench_records" [cli]="jobwarden_cli"
)
order=(spawn big_host latency status idle scale output output_tmpfs records cli)
[ -w /dev/shm ] || order=(spawn big_host latency status idle scale output records cli)  # no tmpfs there
[ ${#only[@]} -gt 0 ] && order=("${only[@]}")

log="$(mktemp "${TMPDIR:-/tmp}/jobwarden-bench.XXXXXX")"
trap 'rm -f "$log" "$log.build"' EXIT
status=0
for name in "${order[@]}"; do
  cmd="${commands[$name]:-}"
  if [ -z "$cmd" ]; then echo "bench.sh: no benchmark named $name" >&2; exit 2; fi
  if ! cmake --build "$build_dir" -j"$jobs" --target jobwarden_bench_worker ${targets[$name]} >"$log.build" 2>&1; then
    echo "bench.sh: $name FAILED to build (${targets[$name]}):" >&2
    grep -m 20 'error' "$log.build" >&2 || tail -20 "$log.build" >&2
    status=1
    continue
  fi
  echo "=== $name: $cmd"
  if ! $cmd | tee -a "$log"; then
    echo "bench.sh: $name FAILED" >&2
    status=1
  fi
done

# Nothing may be left running: every benchmark reaps what it starts. Workers
# and shells carry the benchmark directory in their command line; an orphan
# guard (argv[0] jobwarden-guard) exits with its supervisor, and a supervisor
# outliving its benchmark would show here as a benchmark process.
leftovers="$(ps -eo pid,ppid,stat,args | awk -v dir="$bench/" 'index($0, dir) && !/awk/')"
if [ -n "$leftovers" ]; then
  echo "bench.sh: processes left behind:" >&2
  echo "$leftovers" >&2
  status=1
fi

echo
echo "=== summary (median per-round figures)"
grep '^FIGURE' "$log" | sed 's/^FIGURE //'
missed="$(grep -c 'MISSED' "$log" || true)"
echo "targets missed: $missed"
exit $status
