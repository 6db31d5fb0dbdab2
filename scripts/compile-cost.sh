#!/usr/bin/env bash
# Measures what including and using jobwarden costs the compiler, for this tree
# and, with --base, another checkout side by side (e.g. the tree before a change).
#
#   scripts/compile-cost.sh                      this tree only
#   scripts/compile-cost.sh --base /work/base    this tree and DIR, with ratios
#
# Options:
#   --base DIR        also measure the jobwarden checkout DIR
#   --runs N          runs per header, best kept (default 3)
#   --host-runs N     runs per host build, best kept (default 1)
#   --opt "LEVELS"    optimisation levels of the host builds (default "-O0"; e.g. "-O0 -O2")
#   --no-hosts        headers only
#   --no-check        do not link and run the compiled-mode host afterwards
# Environment: CXX (default g++), CXXFLAGS (added to every compile).
#
# What it measures, as CPU time (user + sys of the compiler, so other load on
# the machine matters less than for wall time):
# - `-fsyntax-only` of <nlohmann/json.hpp> alone and of each public header
#   under include/jobwarden/ (the umbrella jobwarden.hpp included);
# - the minimal host program (scripts/compile-cost/minimal_host.cpp: a
#   JobSupervisor<>, one worker, a wait, a StatusAggregator<> read), compiled
#   to an object file, header-only and in the separately compiled mode;
# - a host of 8 translation units (scripts/compile-cost/unit.cpp, built with
#   -DJW_UNIT=1..8), the sum of its 8 compiles, header-only and in the
#   separately compiled mode (JOBWARDEN_SEPARATE_COMPILATION), with the
#   library's own one-time compile (src/jobwarden.cpp) counted separately.
# A tree without src/jobwarden.cpp has no separately compiled mode ("-").
# Runs alternate between the trees, so that other load on the machine weighs
# on both columns alike; still, compare figures from one run only.
# Timing is reported, never asserted: the exit status is non-zero only when a
# compile fails or the compiled-mode host does not link or run.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
sources="$here/scripts/compile-cost"

base=""
runs=3
host_runs=1
opt_levels="-O0"
hosts=1
check=1
while [ $# -gt 0 ]; do
  case "$1" in
    --base) shift; base="$(cd "$1" && pwd)" ;;
    --runs) shift; runs="$1" ;;
    --host-runs) shift; host_runs="$1" ;;
    --opt) shift; opt_levels="$1" ;;
    --no-hosts) hosts=0 ;;
    --no-check) check=0 ;;
    -h|--help) sed -n '2,32p' "$0"; exit 0 ;;
    *) echo "compile-cost.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

cxx="${CXX:-g++}"
read -r -a extra_flags <<< "${CXXFLAGS:-}"
work="$(mktemp -d "${TMPDIR:-/tmp}/jobwarden-compile-cost.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# cpu_seconds CMD...: runs CMD once, prints its CPU time (user + sys) in seconds.
cpu_seconds() {
  local out="$work/time.out"
  if ! /usr/bin/time -f '%U %S' -o "$out" "$@" >"$work/cmd.log" 2>&1; then
    echo "compile-cost.sh: failed: $*" >&2
    cat "$work/cmd.log" >&2
    exit 1
  fi
  awk '{ printf "%.2f", $1 + $2 }' "$out"
}

# ratio A B: "A/B" to two places, or "-" when either is missing.
ratio() {
  if [ -z "$1" ] || [ -z "$2" ] || [ "$1" = "-" ] || [ "$2" = "-" ]; then printf -- '-'; return; fi
  awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "-"; else printf "%.2f", a / b }'
}

declare -A figure  # figure[<tree>|<row>] = seconds
trees=(this)
declare -A tree_dir=([this]="$here")
if [ -n "$base" ]; then
  trees+=(base)
  tree_dir[base]="$base"
fi

command -v /usr/bin/time >/dev/null || { echo "compile-cost.sh: needs /usr/bin/time (Debian: apt-get install time)" >&2; exit 1; }
echo "compile-cost.sh: $("$cxx" --version | head -n 1); $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)" >&2

# keep_min KEY SECONDS: figure[KEY] becomes the lesser of itself and SECONDS.
keep_min() {
  [ -n "$2" ] || exit 1  # the measurement failed, and said why
  if [ -z "${figure[$1]:-}" ] || awk -v a="$2" -v b="${figure[$1]}" 'BEGIN { exit !(a < b) }'; then
    figure[$1]="$2"
  fi
}

# has_compiled_mode TREE: whether TREE has the separately compiled mode.
has_compiled_mode() { [ -f "${tree_dir[$1]}/src/jobwarden.cpp" ]; }

# Every figure alternates between the trees run by run, so that load from
# elsewhere on the machine weighs on both sides alike.

# Headers: <nlohmann/json.hpp> (the same file for every tree, measured in each
# tree's turn, so that each column's ratios compare figures of the same load),
# then the union of the trees' public headers.
headers=()
for tree in "${trees[@]}"; do
  for path in "${tree_dir[$tree]}"/include/jobwarden/*.hpp "${tree_dir[$tree]}"/include/jobwarden/compiled/*.hpp; do
    [ -f "$path" ] || continue
    headers+=("${path#"${tree_dir[$tree]}"/include/}")
  done
done
mapfile -t headers < <(printf '%s\n' "${headers[@]}" | sort -u)
for header in nlohmann/json.hpp "${headers[@]}"; do
  echo "measuring $header..." >&2
  printf '#include <%s>\n' "$header" > "$work/header.cpp"
  for _ in $(seq "$runs"); do
    for tree in "${trees[@]}"; do
      dir="${tree_dir[$tree]}"
      [ "$header" = nlohmann/json.hpp ] || [ -f "$dir/include/$header" ] || continue
      keep_min "$tree|$header" "$(cpu_seconds nice -n 10 "$cxx" -std=c++17 -I"$dir/include" \
        "${extra_flags[@]}" -fsyntax-only "$work/header.cpp")"
    done
  done
done

# Hosts: the same sources against each tree. Each host row is the best of
# --host-runs for every object file (the 8-unit host: the sum of its units').
host_rows=()
if [ "$hosts" = 1 ]; then
  for opt in $opt_levels; do
    for mode in header-only compiled; do
      mode_flags=()
      [ "$mode" = compiled ] && mode_flags=(-DJOBWARDEN_SEPARATE_COMPILATION=1)
      objects=(minimal_host unit1 unit2 unit3 unit4 unit5 unit6 unit7 unit8)
      [ "$mode" = compiled ] && objects+=(library)
      for object in "${objects[@]}"; do
        echo "measuring hosts, $mode, $opt: $object..." >&2
        for _ in $(seq "$host_runs"); do
          for tree in "${trees[@]}"; do
            if [ "$mode" = compiled ] && ! has_compiled_mode "$tree"; then continue; fi
            dir="${tree_dir[$tree]}"
            out="$work/$tree-$mode$opt"
            mkdir -p "$out"
            case "$object" in
              minimal_host) source=("$sources/minimal_host.cpp") ;;
              unit*) source=(-DJW_UNIT="${object#unit}" "$sources/unit.cpp") ;;
              library) source=("$dir/src/jobwarden.cpp") ;;
            esac
            keep_min "$tree|$object $opt, $mode" "$(cpu_seconds nice -n 10 "$cxx" -std=c++17 "$opt" -I"$dir/include" \
              "${extra_flags[@]}" "${mode_flags[@]}" -c "${source[@]}" -o "$out/$object.o")"
          done
        done
      done
      for tree in "${trees[@]}"; do
        [ -n "${figure[$tree|minimal_host $opt, $mode]:-}" ] || continue
        figure["$tree|minimal host $opt, $mode"]="${figure[$tree|minimal_host $opt, $mode]}"
        total=0
        for unit in 1 2 3 4 5 6 7 8; do
          total="$(awk -v a="$total" -v b="${figure[$tree|unit$unit $opt, $mode]}" 'BEGIN { printf "%.2f", a + b }')"
        done
        figure["$tree|host of 8 TUs $opt, $mode"]="$total"
        if [ "$mode" = compiled ]; then
          figure["$tree|library once $opt (src/jobwarden.cpp)"]="${figure[$tree|library $opt, $mode]}"
          if [ "$check" = 1 ]; then
            echo "checking $tree: the compiled-mode host of 8 TUs links and runs ($opt)..." >&2
            "$cxx" "$work/$tree-compiled$opt"/unit*.o "$work/$tree-compiled$opt/library.o" -pthread \
              -o "$work/$tree-compiled$opt/host"
            "$work/$tree-compiled$opt/host" >&2
          fi
        fi
      done
    done
    host_rows+=("minimal host $opt, header-only" "minimal host $opt, compiled"
                "host of 8 TUs $opt, header-only" "host of 8 TUs $opt, compiled"
                "library once $opt (src/jobwarden.cpp)")
  done
fi

# The table.
echo
echo "Compile cost, CPU seconds (user+sys), $("$cxx" --version | head -n 1)"
echo "headers: -fsyntax-only, best of $runs; hosts: object files, best of $host_runs"
if [ -n "$base" ]; then
  printf '%-48s %9s %9s %9s\n' "" "this" "base" "this/base"
else
  printf '%-48s %9s\n' "" "this"
fi
row() {  # row LABEL THIS [BASE]
  if [ -n "$base" ]; then
    printf '%-48s %9s %9s %9s\n' "$1" "${2:--}" "${3:--}" "$(ratio "${2:-}" "${3:-}")"
  else
    printf '%-48s %9s\n' "$1" "${2:--}"
  fi
}
row "<nlohmann/json.hpp>" "${figure[this|nlohmann/json.hpp]}" "${figure[base|nlohmann/json.hpp]:-}"
for header in "${headers[@]}"; do
  row "<$header>" "${figure[this|$header]:-}" "${figure[base|$header]:-}"
done
for label in "${host_rows[@]}"; do
  row "$label" "${figure[this|$label]:-}" "${figure[base|$label]:-}"
done

echo
echo "Ratios"
for tree in "${trees[@]}"; do
  for header in jobwarden/worker_status_writer_base.hpp jobwarden/worker_status_writer.hpp \
                jobwarden/status_aggregator.hpp jobwarden/jobwarden.hpp; do
    [ -n "${figure[$tree|$header]:-}" ] || continue
    printf '%s: <%s> / <nlohmann/json.hpp>: %s×\n' "$tree" "$header" \
      "$(ratio "${figure[$tree|$header]}" "${figure[$tree|nlohmann/json.hpp]}")"
  done
  for opt in $opt_levels; do
    [ "$hosts" = 1 ] || continue
    header_only="${figure[$tree|host of 8 TUs $opt, header-only]:-}"
    compiled="${figure[$tree|host of 8 TUs $opt, compiled]:-}"
    library="${figure[$tree|library once $opt (src/jobwarden.cpp)]:-}"
    minimal_h="${figure[$tree|minimal host $opt, header-only]:-}"
    minimal_c="${figure[$tree|minimal host $opt, compiled]:-}"
    if [ -n "$compiled" ]; then
      with_library="$(awk -v a="$compiled" -v b="$library" 'BEGIN { printf "%.2f", a + b }')"
      printf '%s: host, 8 TUs %s, compiled mode / header-only: %s×\n' "$tree" "$opt" "$(ratio "$compiled" "$header_only")"
      printf '%s: host, 8 TUs %s, compiled mode + the library once / header-only: %s×\n' "$tree" "$opt" \
        "$(ratio "$with_library" "$header_only")"
      printf '%s: minimal host %s, compiled mode / header-only: %s×\n' "$tree" "$opt" "$(ratio "$minimal_c" "$minimal_h")"
    fi
    if [ -n "$base" ] && [ "$tree" = this ]; then
      printf 'minimal host %s, header-only, this / base: %s×\n' "$opt" \
        "$(ratio "$minimal_h" "${figure[base|minimal host $opt, header-only]:-}")"
      printf 'host, 8 TUs %s, header-only, this / base: %s×\n' "$opt" \
        "$(ratio "$header_only" "${figure[base|host of 8 TUs $opt, header-only]:-}")"
    fi
  done
done
