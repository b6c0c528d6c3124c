#!/usr/bin/env bash
# One blockhub fuzz target, as a ctest test (tests/fuzz/CMakeLists.txt).
#
#   run-fuzz.sh corpus TARGET SEED_DIR
#       Run TARGET once over every file of SEED_DIR (a libFuzzer program or
#       one linked with driver.c): the corpus as regression inputs.
#   run-fuzz.sh fuzz TARGET SEED_DIR WORK_DIR MAX_LEN [DICT]
#       Fuzz TARGET (libFuzzer) for BH_FUZZ_SECONDS (default 30) from
#       SEED_DIR and WORK_DIR/corpus; new inputs go to WORK_DIR/corpus (the
#       source tree is never written), anything found to WORK_DIR/artifacts.
#
# Exits non-zero when the target crashes, leaks, hangs or an oracle fails.
set -uo pipefail
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

mode=${1:?usage: run-fuzz.sh corpus|fuzz TARGET SEED_DIR ...}
target=${2:?missing TARGET}
seeds=${3:?missing SEED_DIR}

case "$mode" in
corpus)
  mapfile -t files < <(find "$seeds" -type f ! -name '.*' | LC_ALL=C sort)
  if [ ${#files[@]} -eq 0 ]; then
    echo "run-fuzz: no corpus in $seeds" >&2
    exit 1
  fi
  "$target" "${files[@]}" 2>&1 # the last file named before a failure is the one
  rc=$?
  [ "$rc" -eq 0 ] && echo "run-fuzz: $(basename "$target"): ${#files[@]} corpus input(s) pass"
  exit "$rc"
  ;;
fuzz)
  work=${4:?missing WORK_DIR}
  max_len=${5:?missing MAX_LEN}
  dict=${6:-}
  secs=${BH_FUZZ_SECONDS:-30}
  mkdir -p "$work/corpus" "$work/artifacts"
  args=(-max_total_time="$secs" -max_len="$max_len" -timeout=25 -rss_limit_mb=3072
        -artifact_prefix="$work/artifacts/" -print_final_stats=1)
  [ -n "$dict" ] && args+=(-dict="$dict")
  stamp="$work/.started"
  touch "$stamp"
  timeout -k 10 $((secs + 300)) "$target" "${args[@]}" "$work/corpus" "$seeds"
  rc=$?
  found=$(find "$work/artifacts" -type f -newer "$stamp" | wc -l)
  if [ "$rc" -ne 0 ] || [ "$found" -gt 0 ]; then
    echo "run-fuzz: $(basename "$target") found something (exit $rc); reproducers:" >&2
    find "$work/artifacts" -type f -newer "$stamp" -printf '  %p\n' >&2 || true
    echo "run-fuzz: replay one with: $target FILE; keep it as $seeds/crash-WHAT" >&2
    [ "$rc" -ne 0 ] || rc=1
  fi
  exit "$rc"
  ;;
*)
  echo "run-fuzz: unknown mode '$mode' (corpus or fuzz)" >&2
  exit 2
  ;;
esac
