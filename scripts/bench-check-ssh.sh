#!/usr/bin/env bash
# Times `rborg check --verify-data` against `borg check --verify-data` (borg 1.4.5) on the same
# repository, both served by borg 1.4.5 (`borg serve`) through a throwaway sshd on loopback.
# Data: half compressible text, half random, stored with `borg create -C auto,zstd` in a
# repokey repository. Runs alternate A B A B; prints wall time and peak RSS of each run and
# the medians. Same sshd setup as tests/common/mod.rs `Sshd::start`.
#
# Usage: scripts/bench-check-ssh.sh [SIZE_MIB] [RUNS_EACH]     (defaults: 1024 3)
# BREAKDOWN=0 skips the extra --repository-only / --archives-only --verify-data runs.
# Env: RBORG (default target/release/rborg), RBORG_BORG14 (default: target/peers, then
#      /work/main/target/peers/borg-1.4.5/bin/borg).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
SIZE_MIB=${1:-1024}
RUNS=${2:-3}
RBORG=${RBORG:-$here/target/release/rborg}
BORG=${RBORG_BORG14:-$here/target/peers/borg-1.4.5/bin/borg}
[ -x "$BORG" ] || BORG=/work/main/target/peers/borg-1.4.5/bin/borg
[ -x "$RBORG" ] || { echo "build rborg first: cargo build --release" >&2; exit 2; }
[ -x "$BORG" ] || { echo "borg 1.4.5 not found (set RBORG_BORG14)" >&2; exit 2; }

WORK=$(mktemp -d /tmp/rborg-bench-check-ssh.XXXXXX)
source "$here/scripts/bench-lib.sh"
cleanup() {
    if [ -n "$SSHD_PID" ]; then kill "$SSHD_PID" 2>/dev/null || true; wait "$SSHD_PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

# --- throwaway sshd on a free loopback port ---------------------------------------------
start_loopback_sshd "$WORK/sshd"
export BORG_REMOTE_PATH=$BORG
export BORG_PASSPHRASE=bench BORG_BASE_DIR=$WORK/base
export BORG_RELOCATED_REPO_ACCESS_IS_OK=yes BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes
mkdir -p "$BORG_BASE_DIR"

# --- data: half text, half random -------------------------------------------------------
half=$((SIZE_MIB * 1024 * 1024 / 2))
mkdir -p "$WORK/src"
# (seq is cut off by head's SIGPIPE; that is expected)
{ seq -f "%012g the quick brown fox jumps over the lazy dog; lorem ipsum dolor sit amet" 1 100000000 || true; } \
    | head -c "$half" > "$WORK/src/text.txt"
head -c "$half" /dev/urandom > "$WORK/src/random.bin"
REPO=$WORK/repo
URL="ssh://root@127.0.0.1:$PORT$REPO"
"$BORG" init -e repokey "$URL" >/dev/null 2>&1
"$BORG" create -C auto,zstd "$URL::data" "$WORK/src"
rm -rf "$WORK/src"
du -sh "$REPO" | sed 's/^/repository size: /'
sync

# --- timed runs ---------------------------------------------------------------------------
timed() { # label, command...  -> appends "label seconds rss_kib rc total_cpu" to $WORK/results
    local label=$1; shift
    local rc=0 before after
    before=$(server_cpu)
    /usr/bin/time -v -o "$WORK/time.txt" "$@" >"$WORK/out.txt" 2>&1 || rc=$?
    sleep 0.3   # the connection's sshd process ends just after the client
    after=$(server_cpu)
    local wall rss
    wall=$(awk -F': ' '/Elapsed \(wall clock\)/{n=split($2,a,":"); s=0; for(i=1;i<=n;i++) s=s*60+a[i]; print s}' "$WORK/time.txt")
    rss=$(awk -F': ' '/Maximum resident set size/{print $2}' "$WORK/time.txt")
    cpu=$(awk -F': ' '/Percent of CPU/{print $2}' "$WORK/time.txt")
    # Client CPU includes its ssh child; server CPU is sshd's session plus borg serve.
    ccpu=$(awk -F': ' '/User time|System time/{s+=$2} END{printf "%.2f", s}' "$WORK/time.txt")
    scpu=$(echo "$after - $before" | bc)
    tcpu=$(echo "$ccpu + $scpu" | bc)
    echo "$label $wall $rss $rc $tcpu" >> "$WORK/results"
    printf '%-10s %8.2f s  peak RSS %6d MiB  client CPU %5s  CPU s: client+ssh %6.2f  sshd+serve %6.2f  total %6.2f  exit %s\n' \
        "$label" "$wall" "$((rss / 1024))" "$cpu" "$ccpu" "$scpu" "$tcpu" "$rc"
    if [ "$rc" != 0 ]; then sed 's/^/    /' "$WORK/out.txt" | tail -5;
    else grep -i 'verif\|finished' "$WORK/out.txt" | sed 's/^/    /' | tail -3 || true; fi
}
echo "# $(date -u +%Y-%m-%dT%H:%MZ) $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg); ${SIZE_MIB} MiB, ${RUNS} runs each"
# One untimed warm-up of each so the page cache holds the repository for both.
"$BORG" check --repository-only "$URL" >/dev/null 2>&1
: > "$WORK/results"
for i in $(seq "$RUNS"); do
    timed rborg "$RBORG" check -v --verify-data "$URL"
    timed borg "$BORG" check -v --verify-data "$URL"
done
# Where the time goes: the repository part (run by `borg serve` on the far side for both
# clients) and the archives + verify-data part (the client's work), one run each.
if [ "${BREAKDOWN:-1}" = 1 ]; then
    timed rborg-repo "$RBORG" check -v --repository-only "$URL"
    timed borg-repo "$BORG" check -v --repository-only "$URL"
    timed rborg-arch "$RBORG" check -v --archives-only --verify-data "$URL"
    timed borg-arch "$BORG" check -v --archives-only --verify-data "$URL"
    # Ceilings: the raw ssh pipe carrying the repository's bytes, and the same archives +
    # verify-data check on the local path (no ssh, no borg serve).
    timed ssh-pipe bash -c "$BORG_RSH root@127.0.0.1 'cat $REPO/data/*/*' > /dev/null"
    timed rborg-local "$RBORG" check -v --archives-only --verify-data "$REPO"
    timed borg-local "$BORG" check -v --archives-only --verify-data "$REPO"
fi
median() { grep "^$1 " "$WORK/results" | awk '{print $'"$2"'}' | sort -n | awk '{a[NR]=$1} END{ if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2 }'; }
r=$(median rborg 2); b=$(median borg 2)
rr=$(median rborg 3); br=$(median borg 3)
printf 'median  rborg %.2f s (%d MiB)   borg %.2f s (%d MiB)   speed-up %.2fx\n' \
    "$r" "$((${rr%.*} / 1024))" "$b" "$((${br%.*} / 1024))" "$(echo "$b / $r" | bc -l)"
# With every process of a run (client, ssh, sshd, borg serve) sharing this machine's cores, a
# run cannot take less wall time than its total CPU time divided by the number of cores.
rc_=$(median rborg 5); bc_=$(median borg 5)
printf 'median total CPU  rborg %.2f s   borg %.2f s   on %d cores rborg needs at least %.2f s: best possible speed-up %.2fx\n' \
    "$rc_" "$bc_" "$(nproc)" "$(echo "$rc_ / $(nproc)" | bc -l)" "$(echo "$b / ($rc_ / $(nproc))" | bc -l)"
