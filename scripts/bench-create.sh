#!/usr/bin/env bash
# Side-by-side `rborg create` vs `borg create` (1.4.5): same data, repokey, auto,zstd,
# locally and over loopback ssh (borg 1.4.5 `borg serve` on the far side for both), first run
# and unchanged re-run, wall time and peak RSS from /usr/bin/time -v.
#
#   scripts/bench-create.sh [--big-mib N] [--small-src DIR] [--only big|small] [--where local|ssh|both]
#                           [--cache warm|cold] [--rounds N]
#
# --cache: the page cache before every timed run. warm (default): the data set is read once
# first, so neither tool waits for the disk; cold: `drop_caches` first (root), as on a server
# whose files were last read a day ago. --rounds: runs per tool (borg and rborg alternate,
# each round with fresh repositories); the table shows the median of every figure.
#
# Data: a large-file set (N MiB in 4 files, half compressible text, half random) and a
# many-small-files set (a copy of DIR, default /usr/share). Prints one table with ratios
# (borg time / rborg time: above 1 means rborg is faster) and both peak RSS values.
set -euo pipefail

BIG_MIB=1024
SMALL_SRC=/usr/share
ONLY=both
WHERE=both
CACHE=warm
ROUNDS=1
while [ $# -gt 0 ]; do
    case "$1" in
        --big-mib) BIG_MIB=$2; shift 2 ;;
        --small-src) SMALL_SRC=$2; shift 2 ;;
        --only) ONLY=$2; shift 2 ;;
        --where) WHERE=$2; shift 2 ;;
        --cache) CACHE=$2; shift 2 ;;
        --rounds) ROUNDS=$2; shift 2 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done

HERE=$(cd "$(dirname "$0")/.." && pwd)
BORG=${RBORG_BORG14:-/work/main/target/peers/borg-1.4.5/bin/borg}
RBORG=$HERE/target/release/rborg
[ -x "$BORG" ] || { echo "borg 1.4.5 not found at $BORG" >&2; exit 1; }
(cd "$HERE" && cargo build --release --quiet)

W=$(mktemp -d /tmp/rborg-bench-create.XXXXXX)
source "$HERE/scripts/bench-lib.sh"
cleanup() {
    if [ -n "$SSHD_PID" ]; then kill "$SSHD_PID" 2>/dev/null || true; fi
    rm -rf "$W"
}
trap cleanup EXIT

export BORG_PASSPHRASE=bench BORG_BASE_DIR=$W/base
export BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes BORG_RELOCATED_REPO_ACCESS_IS_OK=yes
mkdir -p "$W/base"

# --- data ---------------------------------------------------------------------------------
make_big() { make_big_set "$W/data/big" "$BIG_MIB"; }
make_small() {
    mkdir -p "$W/data"
    cp -a "$SMALL_SRC" "$W/data/small"
}

# --- loopback sshd ------------------------------------------------------------------------
start_sshd() {
    start_loopback_sshd "$W/ssh"
    export BORG_REMOTE_PATH=$BORG
}

# --- one timed run ------------------------------------------------------------------------
# run TOOL REPO ARCHIVE DATA -> prints "seconds maxrss_kib cpu_seconds" (CPU of every process
# of the run: the client with its ssh, and over ssh the sshd session with borg serve)
timed() {
    local tool=$1 repo=$2 archive=$3 data=$4 bin before after
    if [ "$tool" = borg ]; then bin=$BORG; else bin=$RBORG; fi
    prepare_cache "$W/data/$data"
    before=$(server_cpu)
    (cd "$W/data" && /usr/bin/time -v -o "$W/time.txt" "$bin" create -C auto,zstd "$repo::$archive" "$data" >/dev/null 2>"$W/err.txt") || {
        echo "$tool create failed:" >&2; cat "$W/err.txt" >&2; exit 1; }
    [ -n "$SSHD_PID" ] && sleep 0.3   # the connection's sshd process ends just after the client
    after=$(server_cpu)
    local wall rss cpu
    wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$W/time.txt" |
        awk -F: '{ if (NF==3) print $1*3600+$2*60+$3; else print $1*60+$2 }')
    rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$W/time.txt")
    cpu=$(awk -F': ' -v srv="$(echo "$after - $before" | bc)" '/User time|System time/ {s+=$2} END {printf "%.2f", s + srv}' "$W/time.txt")
    echo "$wall $rss $cpu"
}

# prepare_cache DIR: the page cache state --cache asks for, before a timed run.
prepare_cache() {
    sync
    if [ "$CACHE" = cold ]; then
        echo 3 > /proc/sys/vm/drop_caches
    else
        find "$1" -type f -print0 | xargs -0 cat > /dev/null
    fi
}

# median: the median of the numbers on stdin, one per line.
median() { sort -g | awk '{v[NR]=$1} END {if (NR % 2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'; }

declare -a ROWS
bench_set() {
    local set=$1 where=$2 bytes files round
    bytes=$(du -sb "$W/data/$set" | cut -f1)
    files=$(find "$W/data/$set" -type f | wc -l)
    : > "$W/rounds.txt"
    for round in $(seq "$ROUNDS"); do
        for tool in borg rborg; do
            local repo
            if [ "$where" = local ]; then repo=$W/repo-$set-$tool-local; else repo=$SSH_PREFIX$W/repo-$set-$tool-ssh; fi
            # each tool gets its own repository and cache, new in every round
            rm -rf "$W/repo-$set-$tool-$where" "$W/cache-$set-$tool-$where"
            export BORG_CACHE_DIR=$W/cache-$set-$tool-$where
            "$BORG" init -e repokey "$repo" >/dev/null 2>&1
            echo "$tool first $(timed "$tool" "$repo" first "$set")" >> "$W/rounds.txt"
            echo "$tool rerun $(timed "$tool" "$repo" rerun "$set")" >> "$W/rounds.txt"
        done
    done
    # Column-wise medians over the rounds: seconds, peak RSS, CPU.
    med() { awk -v t="$1" -v r="$2" -v c="$3" '$1==t && $2==r {print $c}' "$W/rounds.txt" | median; }
    local bf bfr bfc br brr brc rf rfr rfc rr rrr rrc
    bf=$(med borg first 3); bfr=$(med borg first 4); bfc=$(med borg first 5)
    br=$(med borg rerun 3); brr=$(med borg rerun 4); brc=$(med borg rerun 5)
    rf=$(med rborg first 3); rfr=$(med rborg first 4); rfc=$(med rborg first 5)
    rr=$(med rborg rerun 3); rrr=$(med rborg rerun 4); rrc=$(med rborg rerun 5)
    ROWS+=("$(python3 - "$set" "$where" "$bytes" "$files" "$(nproc)" "$bf" "$bfr" "$bfc" "$br" "$brr" "$brc" "$rf" "$rfr" "$rfc" "$rr" "$rrr" "$rrc" <<'EOF'
import sys
s, w, b, n, cores, bf, bfr, bfc, br, brr, brc, rf, rfr, rfc, rr, rrr, rrc = sys.argv[1:]
b, n, cores = int(b), int(n), int(cores)
bf, bfc, br, brc, rf, rfc, rr, rrc = map(float, (bf, bfc, br, brc, rf, rfc, rr, rrc))
mb = b / 1e6
def row(run, bt, brss, bc, rt, rrss, rc):
    # All processes of a run share the cores: rborg cannot take less than its CPU / cores.
    best = bt / max(rc / cores, 1e-9)
    return (f"| {s} | {w} | {run} | {bt:.2f} s | {rt:.2f} s | {bt/rt:.2f}x | "
            f"{mb/bt:.0f} / {mb/rt:.0f} MB/s | {n/bt:.0f} / {n/rt:.0f} files/s | "
            f"{int(brss)/1024:.0f} / {int(rrss)/1024:.0f} MiB | {bc:.1f} / {rc:.1f} s | {best:.2f}x |")
print(row("first", bf, bfr, bfc, rf, rfr, rfc))
print(row("re-run", br, brr, brc, rr, rrr, rrc))
EOF
)")
}

case $ONLY in big) make_big ;; small) make_small ;; *) make_big; make_small ;; esac
sets=()
case $ONLY in big) sets=(big) ;; small) sets=(small) ;; *) sets=(big small) ;; esac
wheres=()
case $WHERE in local) wheres=(local) ;; ssh) wheres=(ssh) ;; *) wheres=(local ssh) ;; esac
for w in "${wheres[@]}"; do
    [ "$w" = ssh ] && [ -z "$SSHD_PID" ] && start_sshd
    for s in "${sets[@]}"; do
        bench_set "$s" "$w"
    done
done

echo
echo "borg 1.4.5 vs rborg $(git -C "$HERE" rev-parse --short HEAD), -C auto,zstd, repokey, $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "page cache: $CACHE before every run; medians of $ROUNDS round(s), borg and rborg alternating"
echo "big: $BIG_MIB MiB in 4 files (2 text, 2 random); small: copy of $SMALL_SRC"
echo "CPU: seconds of every process of the run (client, ssh; over ssh also sshd and borg serve)."
echo "ceiling: borg's time / (rborg's CPU / $(nproc) cores), the most any speed-up could be here."
echo
echo "| set | where | run | borg | rborg | speed-up | throughput borg / rborg | files/s borg / rborg | peak RSS borg / rborg | CPU borg / rborg | ceiling |"
echo "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
for r in "${ROWS[@]}"; do echo "$r"; done
