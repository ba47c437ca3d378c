#!/usr/bin/env bash
# The server alone: `rborg serve` vs borg 1.4.5's `borg serve` replaying the same recorded
# client request streams. Wall times of a real client through ssh (scripts/bench-serve.sh)
# are dominated by the client and, on this shared machine, by other people's load; this takes
# both out. A borg 1.4.5 client runs `create` (first run), `extract` and
# `check --verify-data` once through borg serve while a wrapper records everything it sends to
# the server. Each recording is then fed from a file into each server's stdin (replies go to
# /dev/null), on the same repository state the recording started from, rounds alternating
# the servers. /usr/bin/time -v gives the server's wall time, CPU and peak RSS.
#
#   scripts/bench-serve-replay.sh [--big-mib N] [--rounds R]
#
# Data: N MiB (default 1024) in 4 files, half compressible text, half random (as
# bench-create.sh). The client talks to the server through a local pipe (an rsh stand-in that
# runs the remote command locally), not ssh: only the request bytes matter here.
set -euo pipefail
BIG_MIB=1024
ROUNDS=3
while [ $# -gt 0 ]; do
    case "$1" in
        --big-mib) BIG_MIB=$2; shift 2 ;;
        --rounds) ROUNDS=$2; shift 2 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
HERE=$(cd "$(dirname "$0")/.." && pwd)
BORG=${RBORG_BORG14:-/work/main/target/peers/borg-1.4.5/bin/borg}
RBORG=${RBORG:-$HERE/target/release/rborg}
[ -x "$BORG" ] || { echo "borg 1.4.5 not found at $BORG (set RBORG_BORG14)" >&2; exit 1; }
[ -x "$RBORG" ] || { echo "build rborg first: cargo build --release" >&2; exit 1; }
W=$(mktemp -d /tmp/rborg-bench-replay.XXXXXX)
trap 'rm -rf "$W"' EXIT INT TERM
export BORG_PASSPHRASE=bench BORG_BASE_DIR=$W/base
export BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes BORG_RELOCATED_REPO_ACCESS_IS_OK=yes
mkdir -p "$W/base" "$W/data/big"

source "$HERE/scripts/bench-lib.sh"
make_big_set "$W/data/big" "$BIG_MIB"

# An rsh stand-in: drop ssh's options and the host, run the remote command here.
cat > "$W/rsh" <<'EOF'
#!/bin/bash
while [ $# -gt 0 ]; do
    case "$1" in
        -p|-o|-i|-F|-l) shift 2 ;;
        -*) shift ;;
        *) shift; break ;;
    esac
done
exec sh -c "$*"
EOF
# The recording server: borg serve, with its stdin copied to $W/stream.
cat > "$W/record" <<EOF
#!/bin/sh
exec tee "$W/stream" | "$BORG" "\$@"
EOF
chmod +x "$W/rsh" "$W/record"
export BORG_RSH=$W/rsh
REPO=$W/repo
URL=ssh://bench@localhost$REPO

record() { # NAME borg-args...
    local name=$1; shift
    "$BORG" --remote-path "$W/record" "$@" >/dev/null 2>"$W/err" || { cat "$W/err" >&2; exit 1; }
    mv "$W/stream" "$W/stream-$name"
}
"$BORG" --remote-path "$BORG" init -e repokey "$URL" >/dev/null 2>&1
cp -a "$REPO" "$W/repo-initial"
record create create -C auto,zstd "$URL::first" "$W/data/big"
mkdir -p "$W/extract"
(cd "$W/extract" && record extract extract "$URL::first")
rm -rf "$W/extract" "$W/data"
record verify check --verify-data "$URL"
cp -a "$REPO" "$W/repo-created"

secs() { awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$1" | awk -F: '{ if (NF==3) print $1*3600+$2*60+$3; else print $1*60+$2 }'; }
field() { awk -F': ' -v k="$2" '$1 ~ k {print $2}' "$1" | head -1; }
replay() { # STEP SERVER ROUND
    local step=$1 server=$2 round=$3 bin
    if [ "$server" = rborg ]; then bin=$RBORG; else bin=$BORG; fi
    rm -rf "$REPO"
    if [ "$step" = create ]; then cp -a "$W/repo-initial" "$REPO"; else cp -a "$W/repo-created" "$REPO"; fi
    sync
    /usr/bin/time -v -o "$W/time" "$bin" serve <"$W/stream-$step" >/dev/null 2>"$W/err" ||
        { echo "$server replay of $step failed:" >&2; cat "$W/err" >&2; exit 1; }
    local wall cpu rss
    wall=$(secs "$W/time")
    cpu=$(python3 -c "print(float('$(field "$W/time" 'User time')') + float('$(field "$W/time" 'System time')'))")
    rss=$(field "$W/time" 'Maximum resident set size')
    echo "$step $server $round $wall $cpu $rss" >> "$W/results"
    printf '%-8s %-5s r%s  wall %6.2f s  cpu %6.2f s  peak RSS %5d MiB  repository %s bytes\n' \
        "$step" "$server" "$round" "$wall" "$cpu" "$((rss / 1024))" "$(du -sb "$REPO" | cut -f1)"
}
echo "# $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg); ${BIG_MIB} MiB"
for s in create extract verify; do echo "# stream $s: $(stat -c %s "$W/stream-$s") bytes"; done
: > "$W/results"
for r in $(seq "$ROUNDS"); do
    if [ $((r % 2)) = 1 ]; then order="rborg borg"; else order="borg rborg"; fi
    for step in create extract verify; do
        for server in $order; do replay "$step" "$server" "$r"; done
    done
done
echo "# load at end: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$W/results" <<'EOF'
import sys, statistics as st
rows = [l.split() for l in open(sys.argv[1])]
print("| replayed stream | borg serve | rborg serve | ratio | CPU borg / rborg | peak RSS borg / rborg |")
print("|---|---|---|---|---|---|")
for step in ("create", "extract", "verify"):
    def med(server, col):
        return st.median(float(r[col]) for r in rows if r[0] == step and r[1] == server)
    bw, rw = med("borg", 3), med("rborg", 3)
    print(f"| {step} | {bw:.2f} s | {rw:.2f} s | {bw / rw:.2f}x | {med('borg', 4):.2f} / {med('rborg', 4):.2f} s | "
          f"{med('borg', 5) / 1024:.0f} / {med('rborg', 5) / 1024:.0f} MiB |")
EOF
