#!/bin/sh
# Measures `rborg check --archives-only --verify-data` throughput with one worker thread and
# with all cores, on a repository made by borg 1.4.5 (repokey, default lz4), and prints one
# line per run. Usage: scripts/bench-verify-data.sh [SIZE_MB] [RBORG_BINARY]
set -eu
SIZE_MB=${1:-256}
RBORG=${2:-target/release/rborg}
BORG=${RBORG_BORG14:-target/peers/borg-1.4.5/bin/borg}
WORK=$(mktemp -d /tmp/rborg-bench-verify.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
export BORG_BASE_DIR="$WORK/base" BORG_PASSPHRASE=bench
mkdir -p "$WORK/src" "$BORG_BASE_DIR"
# Incompressible data, so every byte goes through MAC, decryption, lz4 and the id hash.
head -c "$((SIZE_MB * 1024 * 1024))" /dev/urandom > "$WORK/src/data"
"$BORG" init -e repokey "$WORK/repo" >/dev/null 2>&1
"$BORG" create "$WORK/repo::a" "$WORK/src"
sync
run() {
    threads=$1
    # Warm the page cache once so both runs read from memory.
    start=$(date +%s.%N)
    "$RBORG" check --archives-only --verify-data --threads "$threads" "$WORK/repo" 2>/dev/null
    end=$(date +%s.%N)
    secs=$(echo "$end - $start" | bc -l)
    mbs=$(echo "$SIZE_MB / $secs" | bc -l)
    printf 'threads=%s  %s MiB in %.2f s  = %.1f MiB/s\n' "$threads" "$SIZE_MB" "$secs" "$mbs"
}
"$RBORG" check --archives-only --verify-data --threads 1 "$WORK/repo" >/dev/null 2>&1
run 1
run 0
start=$(date +%s.%N)
"$BORG" check -v --archives-only --verify-data "$WORK/repo" 2>&1 | grep "verified"
end=$(date +%s.%N)
printf 'borg 1.4.5 (one thread)  %s MiB in %.2f s\n' "$SIZE_MB" "$(echo "$end - $start" | bc -l)"
