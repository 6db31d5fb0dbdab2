#!/usr/bin/env bash
# Installs what building jobwarden, its tests and examples needs on Debian 12,
# skipping what is already there. Run as root (or with sudo available).
# strace: tests/test_orphans.cpp holds a supervisor inside its spawn with it, and
# tests/cli/test_cli.py widens a job's start to race a stop against it.
# libasio-dev: examples/asio_host (skipped without it).
set -euo pipefail
packages=(cmake make g++ pkg-config nlohmann-json3-dev libfmt-dev catch2 python3 python3-pip python3-setuptools python3-wheel strace libasio-dev "$@")
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "jobwarden: installing ${missing[*]}" >&2
  sudo=""
  [[ $(id -u) -eq 0 ]] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
