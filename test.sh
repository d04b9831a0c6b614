#!/usr/bin/env bash
# ./test.sh — runs every Atlas test from a fresh Debian 12 machine:
#   1. installs missing packages (apt-get),
#   2. checks formatting (clang-format),
#   3. normal build + ctest (unit and integration, against a throwaway
#      PostgreSQL cluster that this script starts),
#   4. a Release build (build only: every build type must compile, and -O3 sees
#      warnings -O2 does not),
#   5. AddressSanitizer + UndefinedBehaviorSanitizer build + ctest, the chaos
#      suite's short mode included (tests/chaos, docs/RELIABILITY.md),
#   6. a short libFuzzer run of every fuzz target (clang).
# Every build here treats warnings as errors (ATLAS_WERROR=ON); a user's own
# build does not, so that a newer compiler's new warning cannot break it.
# Idempotent; fine as root. Environment knobs:
#   ATLAS_QUICK=1          only step 3 (for a fast local loop)
#   ATLAS_FUZZ_SECONDS=N   seconds per fuzz target (default 15)
#   ATLAS_TEST_JOBS=N      ctest's -j (default 5: the tests mostly wait on processes, sockets
#                          and PostgreSQL; the heavy ones count 2; docs/testing.md "Running in
#                          parallel")
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(pwd)
source scripts/ensure-deps.sh
atlas_ensure_deps

JOBS=$(nproc)
FUZZ_SECONDS=${ATLAS_FUZZ_SECONDS:-15}
TEST_JOBS=${ATLAS_TEST_JOBS:-5}
step() { printf '\n=== %s ===\n' "$*"; }

step "format check"
mapfile -t sources < <(git ls-files '*.c' '*.h' 2>/dev/null || find . -name '*.[ch]' -not -path './build*')
if [ ${#sources[@]} -gt 0 ]; then
  clang-format --dry-run -Werror "${sources[@]}"
fi
echo "clang-format: ${#sources[@]} files clean"

# PostgreSQL for the integration tests: a throwaway cluster under var/.
# Stopped again at exit only if this script started it (a developer's running cluster stays up).
if [ -x db/pg.sh ]; then
  step "PostgreSQL cluster"
  if ! db/pg.sh status >/dev/null 2>&1; then
    trap 'db/pg.sh stop >/dev/null 2>&1 || true' EXIT
  fi
  db/pg.sh start
  eval "$(db/pg.sh env)"
fi

build_and_test() { # dir, ctest selection ("" = every test), then extra cmake args
  local dir=$1 select=$2; shift 2
  step "build $dir $*"
  cmake -S . -B "$dir" "$@" >/dev/null
  cmake --build "$dir" -j "$JOBS"
  step "ctest $dir $select"
  # shellcheck disable=SC2086
  (cd "$dir" && ctest --output-on-failure -j "$TEST_JOBS" $select)
}

# The chaos suite (tests/chaos, ~1.5 min) runs once, in the sanitizer build, where a memory
# error under faults is caught too; the quick loop skips it.
build_and_test build "-LE chaos" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DATLAS_WERROR=ON
[ "${ATLAS_QUICK:-0}" = 1 ] && exit 0

step "build build-release (Release, no tests)"
cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release -DATLAS_WERROR=ON >/dev/null
cmake --build build-release -j "$JOBS"

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
build_and_test build-asan "" -DCMAKE_BUILD_TYPE=Debug -DATLAS_SANITIZE=ON -DATLAS_WERROR=ON

step "fuzz (${FUZZ_SECONDS}s per target)"
CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DATLAS_FUZZ=ON -DATLAS_WERROR=ON \
  >/dev/null
cmake --build build-fuzz -j "$JOBS"
shopt -s nullglob
fuzzers=(build-fuzz/bin/fuzz_*)
for f in "${fuzzers[@]}"; do
  name=$(basename "$f")
  work=$(mktemp -d)
  seeds="$ROOT/tests/fuzz/corpus/${name#fuzz_}"
  [ -d "$seeds" ] && cp -r "$seeds/." "$work/"
  echo "fuzzing $name for ${FUZZ_SECONDS}s (seeds: $(ls "$work" | wc -l))"
  (cd "$work" && "$ROOT/$f" -max_total_time="$FUZZ_SECONDS" -print_final_stats=1 \
      -rss_limit_mb=2048 . > "$work/fuzz.log" 2>&1) || {
    tail -40 "$work/fuzz.log"; echo "FUZZ FAILURE in $name (artifacts in $work)"; exit 1; }
  grep -E 'stat::number_of_executed_units' "$work/fuzz.log" || true
  rm -rf "$work"
done
echo "fuzz: ${#fuzzers[@]} targets ran clean"
echo "all tests passed"
