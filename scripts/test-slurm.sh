#!/usr/bin/env bash
# The Slurm tests against a real (throw-away, single-node) cluster: brings one
# up with scripts/slurm-up.sh, runs the `test_slurm` cases and the command-line
# tool's `run --launcher slurm` tests (cli.CliSlurm.*) with SLURM_CONF
# exported, and tears the cluster down again even when a test fails.
#
#   scripts/test-slurm.sh [BUILD_DIR]     # default: build (configured by scripts/test.sh)
#
# Builds the test_slurm, bench_slurm and jobwarden_cli targets if needed (a
# build directory configured without the examples is reconfigured with them:
# the CLI is one), then runs a smoke round of bench_slurm against the same
# cluster. Bounded: the whole step is meant to stay under ~3 minutes
# (measured: ~20 s with Slurm installed, plus ~5-15 s for apt-get on a fresh
# machine).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
[[ $build = /* ]] || build=$PWD/$build

if [[ ! -f $build/CMakeCache.txt ]] || grep -q '^JOBWARDEN_BUILD_EXAMPLES:BOOL=OFF' "$build/CMakeCache.txt"; then
  cmake -S "$root" -B "$build" -DJOBWARDEN_BUILD_EXAMPLES=ON >/dev/null
fi
cmake --build "$build" --target test_slurm bench_slurm jobwarden_cli -j"$(nproc)"
# The CLI's Slurm tests must be there too (they are registered only with python3).
listed=$(ctest --test-dir "$build" -N -R '^cli\.CliSlurm\.')
if ! grep -q 'cli\.CliSlurm\.' <<<"$listed"; then
  echo "no cli.CliSlurm tests in $build (is python3 installed?)" >&2
  exit 1
fi

cluster=$(mktemp -d /tmp/jobwarden-slurm-ci-XXXXXX)
teardown() {
  local rc=$?
  if ((rc != 0)); then
    echo "== Slurm logs (last lines)" >&2
    tail -n 30 "$cluster"/log/slurmctld.log "$cluster"/log/slurmd.log >&2 2>/dev/null || true
  fi
  "$root/scripts/slurm-down.sh" "$cluster" --purge || true
  exit "$rc"
}
trap teardown EXIT
trap 'exit 130' INT TERM

eval "$("$root/scripts/slurm-up.sh" "$cluster")"
export SLURM_CONF
echo "== Slurm up: SLURM_CONF=$SLURM_CONF"

# Every case must run for real here: a "SKIPPED" line means the cluster was
# not reachable from the tests, which is a failure of this step.
log=$cluster/ctest.log
set +e
timeout 240 ctest --test-dir "$build" -R '^(test_slurm:|cli\.CliSlurm\.)' --no-tests=error -j2 \
  --output-on-failure -V >"$log" 2>&1
rc=$?
set -e
grep -E 'Test +#|tests passed|tests failed|SKIPPED' "$log" || true
if ((rc != 0)); then
  echo "== ctest failed (rc $rc); full log:" >&2
  cat "$log" >&2
  exit "$rc"
fi
if grep -q 'SKIPPED: Slurm test' "$log"; then
  echo "Slurm tests skipped although a cluster was up" >&2
  exit 1
fi
echo "== Slurm tests passed"

# The overhead benchmark against the same cluster, small enough for CI
# (printed, never asserted).
echo "== bench_slurm (smoke)"
"$build/tests/bench/bench_slurm" --smoke 8 2 1
