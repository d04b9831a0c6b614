#!/usr/bin/env bash
# Installs the Debian packages Atlas needs, only those missing (idempotent).
# Sourced by run.sh and test.sh; safe to run on its own.
set -euo pipefail

ATLAS_PACKAGES=(
  build-essential cmake pkg-config clang clang-format libclang-rt-14-dev
  libevent-dev libssl-dev libpq-dev libcmocka-dev libjansson-dev
  openssl # the command: scripts/lab-certs.sh makes the lab TLS certificates (run.sh, test_switch_tls)
  postgresql postgresql-contrib tmux procps psmisc
  haproxy # ./run.sh --instances N and tests/ha (docs/switchd.md "Instances")
  systemd # systemd-analyze: test_package verifies the units of the .deb (docs/deploy.md)
)

# Only for the benchmarks that draw plots (bench/curves.sh: atlas_ensure_deps bench), never
# installed by ./run.sh or ./test.sh.
ATLAS_BENCH_PACKAGES=(
  gnuplot-nox # bench/curves.sh draws docs/bench/*.png (docs/BENCHMARKS.md "Curves")
)

# atlas_ensure_deps [bench]: the packages of ATLAS_PACKAGES, or with `bench` those of
# ATLAS_BENCH_PACKAGES.
atlas_ensure_deps() {
  local missing=() p
  local -a want=("${ATLAS_PACKAGES[@]}")
  [ "${1:-}" = bench ] && want=("${ATLAS_BENCH_PACKAGES[@]}")
  for p in "${want[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "installing: ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  atlas_ensure_deps "$@"
fi
