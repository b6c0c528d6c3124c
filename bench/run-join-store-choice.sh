#!/usr/bin/env bash
# The measurement behind the join's choice of RocksDB over LMDB for its
# remembered event ids (bench/RESULTS.md, "Join: the on-disk dedup store"):
# bench/join_store_choice.c with each store in turn, IDS remembered ids
# (default 20,000,000), in a scratch directory under TMPDIR. Needs both
# liblmdb-dev and librocksdb-dev (the build itself needs only RocksDB).
# Usage: bench/run-join-store-choice.sh [IDS] [MEMORY_MB]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
ids=${1:-20000000}
mem=${2:-256}
work=$(mktemp -d "${TMPDIR:-/tmp}/blockhub-store-choice.XXXXXX")
trap 'rm -rf "$work"' EXIT
cc -O2 -I"$root/hub" -o "$work/choice" "$root/bench/join_store_choice.c" \
    $(pkg-config --cflags --libs lmdb rocksdb)
echo "machine: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"
# RocksDB as the join uses it: the new ids taken in as whole sorted table
# files (INGEST), not through the memtable.
for store in rocksdb lmdb; do
    mkdir -p "$work/$store"
    if [[ $store == rocksdb ]]; then
        INGEST=${INGEST:-250000} nice "$work/choice" "$store" "$work/$store" "$ids" "$mem"
    else
        nice "$work/choice" "$store" "$work/$store" "$ids" "$mem"
    fi
    echo "$store on disk: $(du -sm "$work/$store" | cut -f1) MB"
done
