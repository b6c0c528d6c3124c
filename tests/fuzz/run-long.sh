#!/usr/bin/env bash
# Long fuzzing of every blockhub fuzz target (or some), for hours.
#
#   tests/fuzz/run-long.sh [options] HOURS
#     -j JOBS     targets fuzzed at the same time (default 1); each target
#                 runs HOURS, so the whole run takes about HOURS x targets / JOBS
#     -w DIR      work directory (default ~/.cache/blockhub/fuzz): DIR/TARGET/
#                 keeps the grown corpus (corpus/), what was found (artifacts/)
#                 and the logs; a later run goes on from the corpus
#     -b DIR      a BH_FUZZ build (default build-fuzz, configured and built
#                 with clang if missing)
#     -t LIST     the targets, comma-separated (default: all six)
#
# HOURS may be a fraction (0.25 is 15 minutes). A finding (crash, leak,
# timeout, oracle failure) is kept in artifacts/ and the target starts again
# from its corpus until its time is up. The seeds are the corpus's seed-*
# files (its crash-* reproducers are known already). At the end every new
# reproducer is replayed and the distinct findings are printed, with the runs
# and execs per second of each target; exit status 1 when anything was found.
# BH_FUZZ_KNOWN=bug,... steps around bugs already reported (see the targets:
# market-decoder-utf8, join-restore), so that the run looks for others.
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
jobs=1
work=${BLOCKHUB_CACHE:-$HOME/.cache/blockhub}/fuzz
build=$root/build-fuzz
targets="fuzz_fire_body,fuzz_traffic_line,fuzz_market_csv,fuzz_market_decode,fuzz_config,fuzz_geojson,fuzz_join_avro"
usage() { sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
while getopts "j:w:b:t:h" o; do
  case "$o" in
  j) jobs=$OPTARG ;;
  w) work=$OPTARG ;;
  b) build=$OPTARG ;;
  t) targets=$OPTARG ;;
  *) usage ;;
  esac
done
shift $((OPTIND - 1))
[ $# -eq 1 ] || usage
secs=$(awk -v h="$1" 'BEGIN { s = int(h * 3600); if (s < 1) exit 1; print s }') || usage

if [ ! -x "$build/tests/fuzz/fuzz_config" ]; then
  echo "run-long: building the fuzz targets in $build" >&2
  CC=clang cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBH_FUZZ=ON >/dev/null &&
    cmake --build "$build" -j"$(nproc)" >/dev/null || { echo "run-long: build failed" >&2; exit 2; }
fi
export BH_SOURCE_DIR=$root
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

# One target for SECS seconds, started again after each finding.
fuzz_one() {
  local t=$1 dir=$work/$1
  local max_len dict=() seeds=$work/$1/seeds
  max_len=$(sed -n "s/^set(BH_FUZZ_MAX_LEN_$t \([0-9]*\))/\1/p" "$root/tests/fuzz/CMakeLists.txt")
  [ -f "$root/tests/fuzz/dict/$t.dict" ] && dict=(-dict="$root/tests/fuzz/dict/$t.dict")
  mkdir -p "$dir/corpus" "$dir/artifacts" "$seeds"
  find "$root/tests/fuzz/corpus/$t" -maxdepth 1 -type f -name 'seed-*' -exec cp -p {} "$seeds/" \;
  touch "$dir/.started"
  : >"$dir/log"
  echo "run-long: $t for $secs s (log: $dir/log)" >&2
  local start now end rounds=0
  start=$(date +%s)
  end=$((start + secs))
  while now=$(date +%s) && [ "$now" -lt "$end" ] && [ "$rounds" -lt 200 ]; do
    rounds=$((rounds + 1))
    echo "=== round $rounds: $((end - now)) s left" >>"$dir/log"
    (cd "$dir" && nice timeout -k 30 $((end - now + 300)) "$build/tests/fuzz/$t" \
      -max_total_time=$((end - now)) -max_len="$max_len" -timeout=25 -rss_limit_mb=3072 \
      -artifact_prefix="$dir/artifacts/" -print_final_stats=1 "${dict[@]}" \
      "$dir/corpus" "$seeds" >>"$dir/log" 2>&1) && break
  done
  echo "$(($(date +%s) - start))" >"$dir/seconds"
}
export -f fuzz_one
export work build secs root

IFS=, read -r -a list <<<"$targets"
printf '%s\n' "${list[@]}" | xargs -P "$jobs" -I{} bash -c 'fuzz_one "$@"' _ {}

found=0
for t in "${list[@]}"; do
  dir=$work/$t
  runs=$(awk '/^stat::number_of_executed_units:/ { n += $2 } END { print n + 0 }' "$dir/log")
  spent=$(cat "$dir/seconds" 2>/dev/null || echo 0)
  eps=$(awk -v r="$runs" -v s="$spent" 'BEGIN { print (s > 0 ? int(r / s) : "?") }')
  cov=$(grep -E '^#[0-9]+.*cov: ' "$dir/log" | tail -n 1 | sed -n 's/.* cov: \([0-9]*\) ft: \([0-9]*\).*/cov \1, ft \2/p')
  rounds=$(grep -c '^=== round' "$dir/log")
  corp=$(find "$dir/corpus" -type f | wc -l)
  echo "== $t: $spent s, $runs runs ($eps exec/s), $cov, corpus $corp, $rounds round(s)"
  declare -A seen=()
  for a in "$dir"/artifacts/*; do
    [ -f "$a" ] && [ "$a" -nt "$dir/.started" ] || continue
    what=$(timeout 120 "$build/tests/fuzz/$t" "$a" 2>&1 |
      grep -m1 -E 'blockhub fuzz oracle|runtime error|ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|SUMMARY' |
      sed -E 's/0x[0-9a-f]+/0x?/g; s/==[0-9]+==//')
    [ -n "$what" ] || what="(does not reproduce when replayed alone)"
    found=1
    # one line per kind of finding: the values in the message are left out
    sig=$(sed -E 's/([^:0-9])-?[0-9]+/\1N/g; s/"[^"]*"/"..."/g' <<<"$what")
    if [ -z "${seen[$sig]:-}" ]; then
      seen[$sig]=1
      echo "  found: $what"
      echo "    reproducer: $a"
    fi
  done
  unset seen
done
[ "$found" -eq 0 ] && echo "run-long: nothing found"
exit "$found"
