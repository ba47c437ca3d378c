#!/usr/bin/env bash
# The main job on a fresh machine, with a local repository (no server needed):
# init a repokey repository, back a directory up twice (the second run reads only what
# changed), list, prune to 7 daily / 4 weekly / 6 monthly, compact, check everything, and
# restore the newest archive to compare it with the source.
#
#   scripts/main-job.sh [SOURCE_DIR] [WORK_DIR]
#
# SOURCE_DIR defaults to this repository's src/ and docs/; WORK_DIR to a new temp directory.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
rborg="$here/target/release/rborg"
[ -x "$rborg" ] || (cd "$here" && cargo build --release --quiet)
work=${2:-$(mktemp -d)}
src=${1:-}
if [ -z "$src" ]; then
  src="$work/source"
  mkdir -p "$src"
  cp -a "$here/src" "$here/docs" "$src/"
fi
export BORG_BASE_DIR="$work/base" BORG_PASSPHRASE="${BORG_PASSPHRASE:-main-job-passphrase}"
repo="$work/repo"

set -x
"$rborg" init -e repokey "$repo"
"$rborg" create --stats --compression auto,zstd "$repo::{hostname}-{now:%Y-%m-%dT%H:%M:%S}-1" "$src"
"$rborg" create --stats --compression auto,zstd "$repo::{hostname}-{now:%Y-%m-%dT%H:%M:%S}-2" "$src"
"$rborg" list "$repo"
"$rborg" prune --list --keep-daily 7 --keep-weekly 4 --keep-monthly 6 "$repo"
"$rborg" compact "$repo"
"$rborg" check --full "$repo"
last=$("$rborg" list --short --last 1 "$repo")
mkdir -p "$work/restore"
(cd "$work/restore" && "$rborg" extract "$repo::$last")
diff -r "$src" "$work/restore${src}"
set +x
echo "main job: OK (work directory $work)"
