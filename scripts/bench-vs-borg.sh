#!/usr/bin/env bash
# Measures borg's own hot-path primitives (chunker, hashes, AES-CTR+MAC, compressors; called
# from Python like borg calls them) with borg 1.2.4 and 1.4.5, and rborg's on the same input
# file in the same run, then prints MB/s per stage and the ratio rborg/borg.
#
# Usage: scripts/bench-vs-borg.sh [--mib N] [--reps N] [--kinds "random text zero"]
# Single-thread stages are timed in thread CPU time on both sides (robust on a shared
# machine); rborg's whole hot path is also shown on all cores (wall time).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
mib=64 reps=3 kinds="random text"
while [ $# -gt 0 ]; do
  case "$1" in
    --mib) mib=$2; shift 2 ;;
    --reps) reps=$2; shift 2 ;;
    --kinds) kinds=$2; shift 2 ;;
    *) echo "usage: $0 [--mib N] [--reps N] [--kinds \"random text zero\"]" >&2; exit 2 ;;
  esac
done
py_of() { head -1 "$1" | sed 's/^#!//; s/ .*//'; }
borg12=${RBORG_BORG12:-/usr/bin/borg}
borg14=${RBORG_BORG14:-$here/target/peers/borg-1.4.5/bin/borg}
[ -x "$borg14" ] || borg14=/work/main/target/peers/borg-1.4.5/bin/borg
py12=$(py_of "$borg12"); py14=$(py_of "$borg14")
cargo build --release --example bench_stages >&2
bin=target/release/examples/bench_stages
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
echo "# $(date -u +%Y-%m-%dT%H:%MZ) $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# input ${mib} MiB per kind, best of ${reps}; MB/s = 10^6 B per CPU-second (hot path -mt-: wall)"
for kind in $kinds; do
  "$bin" --kind "$kind" --mib "$mib" --write "$tmp/in.bin"
  "$py12" scripts/bench_borg_stages.py "$tmp/in.bin" "$reps" > "$tmp/b12.txt"
  "$py14" scripts/bench_borg_stages.py "$tmp/in.bin" "$reps" > "$tmp/b14.txt"
  "$bin" --file "$tmp/in.bin" --reps "$reps" > "$tmp/r.txt"
  echo
  echo "## $kind data"
  printf '%-36s %10s %10s %10s %9s %9s\n' stage rborg borg1.2.4 borg1.4.5 r/1.2.4 r/1.4.5
  awk 'FNR==1{f++} f==1{b12[$1]=$2} f==2{b14[$1]=$2} f==3{
         a=b12[$1]; b=b14[$1];
         ra=(a>0)?sprintf("%.2f",$2/a):"-"; rb=(b>0)?sprintf("%.2f",$2/b):"-";
         printf "%-36s %10s %10s %10s %9s %9s\n", $1, $2, (a?a:"-"), (b?b:"-"), ra, rb }' \
      "$tmp/b12.txt" "$tmp/b14.txt" "$tmp/r.txt"
done
