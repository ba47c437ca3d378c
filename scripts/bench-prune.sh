#!/usr/bin/env bash
# Times `prune --dry-run --list --keep-daily 7 --keep-weekly 4 --keep-monthly 6` of rborg and
# borg 1.4.5 on a local repokey repository holding N archives (default 1000). The archives are
# made cheaply: one `borg create`, then tests/prune_data/make_manifest.py, run by borg's own
# Python, rewrites the manifest with N real archive objects (copies of the first archive's
# metadata under new names and times, one every 8 hours back from now). Timing by hyperfine
# (one warm-up, then RUNS runs of each command, rborg's first); peak RSS from one
# `/usr/bin/time -v` run each. Also checks that both print the same --list lines.
#
# Usage: scripts/bench-prune.sh [N_ARCHIVES] [RUNS]      (defaults: 1000 10)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
N=${1:-1000}
RUNS=${2:-10}
RBORG=${RBORG:-$here/target/release/rborg}
BORG=${RBORG_BORG14:-$here/target/peers/borg-1.4.5/bin/borg}
[ -x "$BORG" ] || BORG=/work/main/target/peers/borg-1.4.5/bin/borg
[ -x "$RBORG" ] || { echo "build rborg first: cargo build --release" >&2; exit 2; }
PY=$(head -1 "$BORG" | sed 's/^#!//; s/ .*//')
WORK=$(mktemp -d /tmp/rborg-bench-prune.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
export BORG_PASSPHRASE=bench BORG_BASE_DIR=$WORK/base TZ=UTC
mkdir -p "$WORK/src" "$BORG_BASE_DIR"
echo "prune bench" > "$WORK/src/file"
REPO=$WORK/repo
"$BORG" init -e repokey "$REPO" >/dev/null 2>&1
"$BORG" create "$REPO::base" "$WORK/src"
"$PY" - "$N" > "$WORK/entries.json" <<'PYEOF'
import datetime, json, sys
n = int(sys.argv[1])
now = datetime.datetime.utcnow().replace(microsecond=0)
out = []
for i in range(n):
    ts = now - datetime.timedelta(hours=8 * i, minutes=7 * (i % 5))
    out.append([f"host-{n - i:05d}", ts.strftime('%Y-%m-%dT%H:%M:%S.%f')])
print(json.dumps(out))
PYEOF
"$PY" tests/prune_data/make_manifest.py "$REPO" base "$WORK/entries.json" "$WORK/manifest.json"
echo "archives in manifest: $("$PY" -c 'import json,sys; print(len(json.load(open(sys.argv[1]))))' "$WORK/manifest.json")"

ARGS=(prune --dry-run --list --keep-daily 7 --keep-weekly 4 --keep-monthly 6)
# Same decisions? (the lines name each archive and whether it is kept or pruned)
"$BORG" "${ARGS[@]}" "$REPO" > "$WORK/borg.out" 2>&1
"$RBORG" "${ARGS[@]}" "$REPO" > "$WORK/rborg.out" 2>&1
if diff -q "$WORK/borg.out" "$WORK/rborg.out" >/dev/null; then
    echo "outputs identical ($(wc -l < "$WORK/borg.out") lines, $(grep -c '^Keeping' "$WORK/borg.out" || true) kept)"
else
    echo "OUTPUTS DIFFER:"; diff "$WORK/borg.out" "$WORK/rborg.out" | head -20
fi
echo "# $(date -u +%Y-%m-%dT%H:%MZ) $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
hyperfine -N --warmup 1 --runs "$RUNS" --export-json "$WORK/h.json" \
    -n rborg "$RBORG ${ARGS[*]} $REPO" \
    -n borg "$BORG ${ARGS[*]} $REPO" >/dev/null 2>&1
"$PY" - "$WORK/h.json" <<'PYEOF'
import json, sys
r = {x['command']: x for x in json.load(open(sys.argv[1]))['results']}
for k in ('rborg', 'borg'):
    x = r[k]
    print(f"{k:6s} median {x['median']:.3f} s  mean {x['mean']:.3f} s  min {x['min']:.3f} s  max {x['max']:.3f} s  ({len(x['times'])} runs)")
print(f"speed-up (median) {r['borg']['median'] / r['rborg']['median']:.1f}x")
PYEOF
for who in rborg borg; do
    exe=$RBORG; [ "$who" = borg ] && exe=$BORG
    /usr/bin/time -v -o "$WORK/t.txt" "$exe" "${ARGS[@]}" "$REPO" >/dev/null 2>&1
    echo "$who peak RSS $(awk -F': ' '/Maximum resident/{print int($2/1024)}' "$WORK/t.txt") MiB"
done
