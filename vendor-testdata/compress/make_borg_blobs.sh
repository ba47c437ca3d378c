#!/usr/bin/env bash
# Regenerates borg_blobs.txt with borg 1.4.5 and checks borg 1.2.4 agrees on every mode whose
# output is deterministic (not the random-padding obfuscation modes, not Padmé which 1.2 lacks).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
py12=${RBORG_BORG12_PYTHON:-/usr/bin/python3}
py14=${RBORG_BORG14_PYTHON:-$(dirname "${RBORG_BORG14:-/work/main/target/peers/borg-1.4.5/bin/borg}")/python}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
"$py12" "$here/make_borg_blobs.py" > "$tmp/12.txt"
"$py14" "$here/make_borg_blobs.py" > "$tmp/14.txt"
det() { grep -v -E '^obfuscate,(1|113|3),|^obfuscate,250' "$1"; }
diff <(det "$tmp/12.txt") <(det "$tmp/14.txt")
cp "$tmp/14.txt" "$here/borg_blobs.txt"
echo "borg 1.2.4 and 1.4.5 agree; $(wc -l < "$here/borg_blobs.txt") lines"
