#!/usr/bin/env bash
# Real borg 1.4.5 client through `rborg serve` vs through borg 1.4.5's own `borg serve`, over a
# throwaway sshd on loopback (issue #7: "real borg create through rborg serve at least as fast
# as through borg serve"). The client is the same borg binary in both cases; only
# `--remote-path` changes, so every difference is the server's.
#
#   scripts/bench-serve.sh [--big-mib N] [--small-src DIR]... [--rounds R] [--only big|small]
#
# Per data set and server, one round is: `borg init -e repokey`, `borg create -C auto,zstd`
# (first run), the same create again (unchanged re-run, files cache hit), `borg extract` of the
# first archive, `borg check --verify-data`. Rounds alternate the order of the servers
# (rborg, borg, then borg, rborg, ...). Every step is timed with /usr/bin/time -v around the
# client AND around the server (the remote path is a wrapper that runs the server under
# /usr/bin/time), so the table shows client wall time plus the server's CPU and peak RSS.
#
# Data: a large-file set (N MiB in 4 files, half compressible text, half random; as in
# bench-create.sh) and a small-file set (a copy of the --small-src directories, default
# /usr/share/doc and /usr/share/man).
set -euo pipefail
BIG_MIB=1024
SMALL_SRCS=()
ROUNDS=2
ONLY=both
while [ $# -gt 0 ]; do
    case "$1" in
        --big-mib) BIG_MIB=$2; shift 2 ;;
        --small-src) SMALL_SRCS+=("$2"); shift 2 ;;
        --rounds) ROUNDS=$2; shift 2 ;;
        --only) ONLY=$2; shift 2 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
[ ${#SMALL_SRCS[@]} -gt 0 ] || SMALL_SRCS=(/usr/share/doc /usr/share/man)
HERE=$(cd "$(dirname "$0")/.." && pwd)
BORG=${RBORG_BORG14:-/work/main/target/peers/borg-1.4.5/bin/borg}
RBORG=${RBORG:-$HERE/target/release/rborg}
[ -x "$BORG" ] || { echo "borg 1.4.5 not found at $BORG (set RBORG_BORG14)" >&2; exit 1; }
[ -x "$RBORG" ] || { echo "build rborg first: cargo build --release" >&2; exit 1; }
W=$(mktemp -d /tmp/rborg-bench-serve.XXXXXX)
source "$HERE/scripts/bench-lib.sh"
cleanup() {
    if [ -n "$SSHD_PID" ]; then kill "$SSHD_PID" 2>/dev/null || true; wait "$SSHD_PID" 2>/dev/null || true; fi
    rm -rf "$W"
}
trap cleanup EXIT INT TERM
export BORG_PASSPHRASE=bench BORG_BASE_DIR=$W/base
export BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes BORG_RELOCATED_REPO_ACCESS_IS_OK=yes
mkdir -p "$W/base"

# --- data ---------------------------------------------------------------------------------
make_big() { make_big_set "$W/data/big" "$BIG_MIB"; }
make_small() {
    mkdir -p "$W/data/small"
    for s in "${SMALL_SRCS[@]}"; do cp -a "$s" "$W/data/small/"; done
}

# --- loopback sshd (as tests/common/mod.rs `Sshd::start`) ---------------------------------
start_loopback_sshd "$W/ssh"

# Server wrappers: the client runs `<remote-path> serve --umask=077 ...` through ssh; the
# wrapper runs the real server under /usr/bin/time so its CPU and RSS are recorded too.
for s in rborg borg; do
    if [ "$s" = rborg ]; then bin=$RBORG; else bin=$BORG; fi
    cat > "$W/serve-$s" <<EOF
#!/bin/sh
exec /usr/bin/time -v -o "$W/server-time.txt" "$bin" "\$@"
EOF
    chmod +x "$W/serve-$s"
done

# --- one timed step -----------------------------------------------------------------------
secs() { awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$1" | awk -F: '{ if (NF==3) print $1*3600+$2*60+$3; else print $1*60+$2 }'; }
field() { awk -F': ' -v k="$2" '$1 ~ k {print $2}' "$1" | head -1; }
# step SET SERVER OP ROUND -- borg args...   (appends one line to $W/results)
step() {
    local set=$1 server=$2 op=$3 round=$4; shift 5
    rm -f "$W/server-time.txt"
    if ! /usr/bin/time -v -o "$W/client-time.txt" "$BORG" --remote-path "$W/serve-$server" "$@" \
        >"$W/out.txt" 2>&1; then
        echo "$server $op on $set failed:" >&2; tail -20 "$W/out.txt" >&2; exit 1
    fi
    # The server's time report is written when it exits, just after the client returns.
    for _ in $(seq 50); do [ -s "$W/server-time.txt" ] && break; sleep 0.1; done
    local cw ccpu crss sw scpu srss
    cw=$(secs "$W/client-time.txt")
    ccpu=$(python3 -c "print(float('$(field "$W/client-time.txt" 'User time')') + float('$(field "$W/client-time.txt" 'System time')'))")
    crss=$(field "$W/client-time.txt" 'Maximum resident set size')
    sw=$(secs "$W/server-time.txt")
    scpu=$(python3 -c "print(float('$(field "$W/server-time.txt" 'User time')') + float('$(field "$W/server-time.txt" 'System time')'))")
    srss=$(field "$W/server-time.txt" 'Maximum resident set size')
    echo "$set $op $server $round $cw $ccpu $crss $sw $scpu $srss" >> "$W/results"
    printf '%-5s %-8s %-5s r%s  wall %7.2f s  client cpu %6.2f s  server cpu %6.2f s  server RSS %5d MiB\n' \
        "$set" "$op" "$server" "$round" "$cw" "$ccpu" "$scpu" "$((srss / 1024))"
}
round_for() { # SET SERVER ROUND
    local set=$1 server=$2 round=$3
    local repo=$SSH_PREFIX$W/repo-$set-$server-$round
    export BORG_CACHE_DIR=$W/cache-$set-$server-$round
    "$BORG" --remote-path "$W/serve-$server" init -e repokey "$repo" >/dev/null 2>&1
    sync
    (cd "$W/data" && step "$set" "$server" create "$round" -- create -C auto,zstd "$repo::first" "$set")
    (cd "$W/data" && step "$set" "$server" rerun "$round" -- create -C auto,zstd "$repo::rerun" "$set")
    rm -rf "$W/extract"; mkdir -p "$W/extract"
    (cd "$W/extract" && step "$set" "$server" extract "$round" -- extract "$repo::first")
    rm -rf "$W/extract"
    step "$set" "$server" verify "$round" -- check --verify-data "$repo"
    rm -rf "$W/repo-$set-$server-$round" "$BORG_CACHE_DIR"
}

sets=()
case $ONLY in big) sets=(big) ;; small) sets=(small) ;; *) sets=(big small) ;; esac
for s in "${sets[@]}"; do "make_$s"; done
sync
echo "# $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
for s in "${sets[@]}"; do
    echo "# set $s: $(du -sb "$W/data/$s" | cut -f1) bytes, $(find "$W/data/$s" -type f | wc -l) files"
done
echo "# client: $("$BORG" --version); servers: $RBORG serve vs $BORG serve"
: > "$W/results"
for r in $(seq "$ROUNDS"); do
    if [ $((r % 2)) = 1 ]; then order="rborg borg"; else order="borg rborg"; fi
    for s in "${sets[@]}"; do
        for server in $order; do round_for "$s" "$server" "$r"; done
    done
done
echo "# load at end: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$W/results" <<'EOF'
import sys, statistics as st
rows = [l.split() for l in open(sys.argv[1])]
print("| set | step | via borg serve | via rborg serve | ratio | server CPU borg / rborg | server peak RSS borg / rborg |")
print("|---|---|---|---|---|---|---|")
for s in dict.fromkeys(r[0] for r in rows):
    for op in ("create", "rerun", "extract", "verify"):
        def med(server, col):
            return st.median(float(r[col]) for r in rows if r[0] == s and r[1] == op and r[2] == server)
        bw, rw = med("borg", 4), med("rborg", 4)
        bc, rc = med("borg", 8), med("rborg", 8)
        bm, rm = med("borg", 9) / 1024, med("rborg", 9) / 1024
        print(f"| {s} | {op} | {bw:.2f} s | {rw:.2f} s | {bw / rw:.2f}x | {bc:.2f} / {rc:.2f} s | {bm:.0f} / {rm:.0f} MiB |")
EOF
