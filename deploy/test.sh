#!/usr/bin/env bash
# blockhub's whole test suite: installs what is missing, builds four times
# (plain, ASan/UBSan and Release with gcc, libFuzzer with clang; all -Wall -Wextra
# -Werror), starts a real single-node Kafka on loopback, runs every unit and
# integration test of the first two builds, the unit tests and the adapters' main
# integration tests of the Release build and the fuzz tests of the fourth
# (BH_FUZZ_SECONDS per target, default here 20) under ctest, and stops the broker.
# It fails if any test fails, if a pytest test is skipped, or if fewer pytest
# tests ran than were collected (tests/check_pytest_reports.py).
# Usage: deploy/test.sh [extra ctest args, e.g. -R fire]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

"$root/deploy/install-deps.sh"

jobs=$(nproc)
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$jobs"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DBH_SANITIZE=ON >/dev/null
cmake --build build-asan -j"$jobs"
# Release (-O3) is built and covered too: its unit tests and the three
# adapters' main integration tests run on it (every build type must compile
# warning-free, and what -O3 compiles must behave).
cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build-release -j"$jobs"
CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBH_FUZZ=ON >/dev/null
cmake --build build-fuzz -j"$jobs"

kdir=$(mktemp -d /tmp/blockhub-kafka.XXXXXX)
port=${BH_TEST_KAFKA_PORT:-39092}
cleanup() { "$root/deploy/kafka/local-kafka" stop "$kdir" >/dev/null 2>&1 || true; rm -rf "$kdir"; }
trap cleanup EXIT
BH_KAFKA_BOOTSTRAP=$("$root/deploy/kafka/local-kafka" start "$kdir" "$port" | tail -n 1)
export BH_KAFKA_BOOTSTRAP
echo "kafka: $BH_KAFKA_BOOTSTRAP (data in $kdir)"

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:strict_string_checks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
# 20 s of fuzzing per target keeps the whole run within its 45 minutes; longer
# runs: BH_FUZZ_SECONDS=600 (tests/fuzz/README.md).
export BH_FUZZ_SECONDS=${BH_FUZZ_SECONDS:-20}

status=0
passed=0
failed=0
for dir in build build-asan build-release build-fuzz; do
  echo "=== ctest: $dir"
  log=$(mktemp)
  # build-fuzz: only the fuzz tests (BH_FUZZ_SECONDS each), nproc at a time
  only=()
  [ "$dir" = build-fuzz ] && only=(-L fuzz -j"$jobs")
  [ "$dir" = build-release ] && only=(-R '^unit\.|^integration\.test_(traffic|market|fire)$')
  rm -rf "${dir:?}/pytest"
  if ctest --test-dir "$dir" --output-on-failure "${only[@]}" "$@" 2>&1 | tee "$log"; then :; fi
  # Every integration test file ctest ran: no skipped test, none left uncollected.
  if [ "$dir" != build-fuzz ] && ! python3 "$root/tests/check_pytest_reports.py" "$dir/pytest" "$log"; then
    status=1
  fi
  if [ "$dir" = build-fuzz ] && grep -q "No tests were found" "$log"; then
    rm -f "$log"
    continue # the extra ctest args select no fuzz test
  fi
  if ! grep -q "100% tests passed" "$log"; then status=1; fi
  p=$(sed -n 's/.*tests passed, \([0-9]*\) tests failed out of \([0-9]*\).*/\2 \1/p' "$log" | tail -n 1)
  if [ -n "$p" ]; then
    total=${p% *}; fails=${p#* }
    passed=$((passed + total - fails)); failed=$((failed + fails))
  else
    status=1
  fi
  rm -f "$log"
done
[ $((passed + failed)) -gt 0 ] || status=1
echo "total: $passed passed, $failed failed"
exit $status
