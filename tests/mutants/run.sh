#!/usr/bin/env bash
# Mutation check: every tests/mutants/*.patch removes or breaks one guarantee
# blockhub makes, and names the tests that must then fail:
#   # ctest: <regex of the ctest tests to run>
#   # pytest-k: <optional pytest -k expression to narrow an integration test>
# Each patch is applied to a scratch copy of the tree, built incrementally, and
# the named tests are run; the check fails if any mutant survives (its tests
# pass), if a patch no longer applies or does not build, or if a patch names no
# test.
#   # suite: no (why)    optional: not run when the suite runs the mutants
#                        (BH_MUTANTS_SUITE=1), only listed; run it before a resolve
# Usage: tests/mutants/run.sh [BUILD_ROOT] [PATCH...]; needs BH_KAFKA_BOOTSTRAP.
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
work=${1:-$(mktemp -d /tmp/blockhub-mutants.XXXXXX)}
shift || true
patches=("$@")
if [ ${#patches[@]} -eq 0 ]; then
  patches=("$root"/tests/mutants/*.patch)
fi
[ -e "${patches[0]}" ] || { echo "mutants: no patches"; exit 1; }

# Most of a mutant's time is its test waiting out a timeout for what the mutant
# broke, with the CPU idle: BH_MUTANTS_JOBS=N (default 3) runs the patches in N
# shards side by side, each in its own scratch tree and build (the integration
# tests keep apart by their own topics and ports). Each shard takes the next
# patch no other shard has taken (a directory made per patch: mkdir is atomic),
# so that a shard that drew slow mutants takes fewer; the shards' reports are
# printed one after the other and their counts added up. The waits of the
# integration tests are halved (BH_TEST_WAIT_SCALE, default here 0.5: still
# tens of seconds for what takes the plain build one or two).
export BH_TEST_WAIT_SCALE=${BH_TEST_WAIT_SCALE:-0.5}
jobs=${BH_MUTANTS_JOBS:-3}
if [ "$jobs" -gt 1 ] && [ ${#patches[@]} -gt 1 ]; then
  rm -rf "$work/claims"
  mkdir -p "$work/claims"
  pids=()
  for ((i = 0; i < jobs; i++)); do
    BH_MUTANTS_JOBS=1 BH_MUTANTS_CLAIMS="$work/claims" "$0" "$work/shard$i" "${patches[@]}" \
      >"$work/shard$i.out" 2>&1 &
    pids+=("$i:$!")
  done
  status=0
  k=0 s=0 b=0 d=0
  for entry in "${pids[@]}"; do
    i=${entry%%:*}
    wait "${entry#*:}" || status=1
    grep -v '^mutants: ' "$work/shard$i.out"
    read -r sk ss sb sd < <(sed -n 's/^mutants: \([0-9]*\) killed, \([0-9]*\) survived, \([0-9]*\) broken, \([0-9]*\) left.*/\1 \2 \3 \4/p' "$work/shard$i.out")
    if [ -z "${sk:-}" ]; then
      echo "mutants: shard $i ended without its count"
      status=1
      continue
    fi
    k=$((k + sk)) s=$((s + ss)) b=$((b + sb)) d=$((d + sd))
  done
  echo "mutants: $k killed, $s survived, $b broken, $d left to the run before a resolve"
  exit $status
fi

src="$work/src"
rm -rf "$src"
mkdir -p "$src"
# The tracked files as they are in this tree (a clean clone in CI).
(cd "$root" && git ls-files -z --cached --others --exclude-standard) |
  (cd "$root" && xargs -0 cp --parents -t "$src" 2>/dev/null)
(cd "$src" && git init -q . && git add -A >/dev/null && git -c user.email=m@m -c user.name=m commit -qm base)
cmake -S "$src" -B "$work/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null || exit 1

killed=0
deferred=0
table=()
survived=0
broken=0
for p in "${patches[@]}"; do
  name=$(basename "$p" .patch)
  # Sharded: the patch is this shard's only if no other shard took it first.
  if [ -n "${BH_MUTANTS_CLAIMS:-}" ] && ! mkdir "$BH_MUTANTS_CLAIMS/$name" 2>/dev/null; then
    continue
  fi
  regex=$(sed -n 's/^# ctest: *//p' "$p" | head -n 1)
  kexpr=$(sed -n 's/^# pytest-k: *//p' "$p" | head -n 1)
  if [ -z "$regex" ]; then
    echo "mutant $name: BROKEN (no '# ctest:' line)"
    broken=$((broken + 1))
    continue
  fi
  if ! (cd "$src" && git apply "$p"); then
    echo "mutant $name: BROKEN (does not apply)"
    broken=$((broken + 1))
    continue
  fi
  # A mutant whose guarding test takes minutes is left to the run before a
  # resolve when the suite runs the mutants (BH_MUTANTS_SUITE=1): it is still
  # applied (above), listed, and counted apart.
  slow=$(sed -n 's/^# suite: *no *//p' "$p" | head -n 1)
  if [ -n "$slow" ] && [ "${BH_MUTANTS_SUITE:-0}" = 1 ]; then
    echo "mutant $name: not run by the suite $slow; run: tests/mutants/run.sh DIR $p"
    table+=("| $name | (not run by the suite: tests/mutants/run.sh DIR tests/mutants/$name.patch) |")
    deferred=$((deferred + 1))
    (cd "$src" && git checkout -q -- . && git clean -qfd)
    continue
  fi
  # Build only what the named tests run: the daemon for integration tests, a
  # unit program for unit.X / valgrind.X; anything else builds everything.
  targets=()
  for alt in ${regex//|/ }; do
    case "$alt" in
    integration.*) targets+=(--target blockhub) ;;
    unit.test_* | valgrind.test_*) alt=${alt%\$} && targets+=(--target "${alt#*.}") ;;
    *) targets=() && break ;;
    esac
  done
  if ! cmake --build "$work/build" -j"$(nproc)" "${targets[@]}" >"$work/$name.build.log" 2>&1; then
    # A mutant must be caught by a test: one that does not build (-Werror) proves nothing.
    echo "mutant $name: BROKEN (it does not build; see $work/$name.build.log)"
    broken=$((broken + 1))
  elif PYTEST_ADDOPTS=${kexpr:+-k $(printf %q "$kexpr")} ctest --test-dir "$work/build" -R "$regex" \
      --output-on-failure >"$work/$name.test.log" 2>&1; then
    if grep -qE "No tests were found|no tests ran|collected 0 items" "$work/$name.test.log"; then
      echo "mutant $name: BROKEN (no test matches '$regex')"
      broken=$((broken + 1))
    else
      echo "mutant $name: SURVIVED ($regex${kexpr:+ -k $kexpr} passed; see $work/$name.test.log)"
      survived=$((survived + 1))
    fi
  elif grep -qE "no tests ran|collected 0 items|[^0-9]0 selected" "$work/$name.test.log"; then
    echo "mutant $name: BROKEN (pytest selected no test with -k $kexpr)"
    broken=$((broken + 1))
  else
    # What caught it: the failing pytest tests, else the failing ctest tests.
    caught=$(sed -n 's/^[^ ]*::\([^ ]*\) FAILED.*/\1/p; s/^[^ ]*::\([^ ]*\) ERROR.*/\1/p' "$work/$name.test.log" | sort -u | paste -sd, -)
    [ -n "$caught" ] || caught=$(sed -n 's/^.*Test *#[0-9]*: \([^ ]*\) .*\*\*\*.*/\1/p' "$work/$name.test.log" | paste -sd, -)
    echo "mutant $name: killed ($regex${kexpr:+ -k $kexpr}) by ${caught:-?}"
    table+=("| $name | ${caught:-$regex} |")
    killed=$((killed + 1))
  fi
  (cd "$src" && git checkout -q -- . && git clean -qfd)
done
if [ ${#table[@]} -gt 0 ]; then
  echo "| mutant | caught by |"
  echo "|---|---|"
  printf '%s\n' "${table[@]}"
fi
echo "mutants: $killed killed, $survived survived, $broken broken, $deferred left to the run before a resolve"
[ $survived -eq 0 ] && [ $broken -eq 0 ]
