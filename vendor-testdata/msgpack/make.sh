#!/usr/bin/env bash
# Regenerates the msgpack objects in this folder with a real borg: a small archive in an
# unencrypted repository, then borg's own Python dumps the decrypted manifest, archive metadata
# and item-stream chunks as they are stored (before any re-encoding by us).
# Usage: make.sh BORG_PYTHON OUT_PREFIX  (e.g. /usr/bin/python3 borg12)
set -euo pipefail
py=${1:?borg python}; prefix=${2:?prefix}
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
borg="$(dirname "$py")/borg"; [ -x "$borg" ] || borg=/usr/bin/borg
mkdir -p "$tmp/src/dir"
printf 'hello\n' > "$tmp/src/a.txt"
head -c 5000 /dev/zero | tr '\0' x > "$tmp/src/dir/b"
ln -s a.txt "$tmp/src/link"
touch -d 2020-01-02T03:04:05 "$tmp/src/a.txt" "$tmp/src/dir/b" "$tmp/src/dir" "$tmp/src"
export BORG_BASE_DIR="$tmp/base" BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes
"$borg" init -e none "$tmp/repo"
(cd "$tmp" && "$borg" create --comment 'a comment' repo::arch1 src)
"$py" - "$tmp/repo" "$here/$prefix" <<'PY'
import sys
from borg.logger import setup_logging
setup_logging()
from borg.repository import Repository
from borg.helpers import msgpack
from borg.crypto.key import key_factory
repo_path, prefix = sys.argv[1], sys.argv[2]
with Repository(repo_path) as repo:
    mdata = repo.get(bytes(32))
    key = key_factory(repo, mdata)
    manifest = key.decrypt(None, mdata)
    open(prefix + "_manifest.msgpack", "wb").write(manifest)
    m = msgpack.unpackb(manifest)
    for name, info in m[b"archives"].items():
        aid = info[b"id"]
        adata = key.decrypt(aid, repo.get(aid))
        open(prefix + "_archive.msgpack", "wb").write(adata)
        a = msgpack.unpackb(adata)
        items = b"".join(key.decrypt(i, repo.get(i)) for i in a[b"items"])
        open(prefix + "_items.msgpack", "wb").write(items)
PY
