#!/usr/bin/env bash
# Regenerates borg_chunks.txt with borg 1.2.4 and 1.4.5 and checks that both agree.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
py12=${RBORG_BORG12_PYTHON:-/usr/bin/python3}
py14=${RBORG_BORG14_PYTHON:-$(dirname "${RBORG_BORG14:-/work/main/target/peers/borg-1.4.5/bin/borg}")/python}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
"$py12" "$here/make_borg_chunks.py" "$tmp" > "$tmp/12.txt"
"$py14" "$here/make_borg_chunks.py" "$tmp" > "$tmp/14.txt"
cmp "$tmp/12.txt" "$tmp/14.txt"
cp "$tmp/12.txt" "$here/borg_chunks.txt"
echo "borg 1.2.4 and 1.4.5 agree: $(grep -c '^end' "$here/borg_chunks.txt") cases"
