#!/bin/bash
# Regenerates the test data in this directory with real borg 1.2.4 and 1.4.5:
# for each version and each encryption mode, `borg init` a local repository, `borg create`
# one small archive, and keep the key blob (repository config or key file), the raw manifest
# and archive envelopes, the repository id and the archive id. Passphrase: rborg-test.
#
# usage: vendor-testdata/crypto/make.sh   (needs RBORG_BORG12 / RBORG_BORG14 or the defaults)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
borg12=${RBORG_BORG12:-/usr/bin/borg}
borg14=${RBORG_BORG14:-/work/main/target/peers/borg-1.4.5/bin/borg}
py12=/usr/bin/python3
py14=$(dirname "$borg14")/python
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/input/sub"
printf 'hello world\n' > "$work/input/hello.txt"
head -c 5000 /dev/zero | tr '\0' 'x' > "$work/input/sub/x.txt"
export BORG_PASSPHRASE=rborg-test
export BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes
export BORG_RELOCATED_REPO_ACCESS_IS_OK=yes
for ver in 12 14; do
    if [ $ver = 12 ]; then borg=$borg12; py=$py12; name=1.2.4; else borg=$borg14; py=$py14; name=1.4.5; fi
    for mode in none authenticated authenticated-blake2 repokey keyfile repokey-blake2 keyfile-blake2; do
        out="$here/$name/$mode"
        rm -rf "$out"; mkdir -p "$out"
        export BORG_BASE_DIR="$work/base-$ver-$mode"
        export BORG_KEYS_DIR="$work/keys-$ver-$mode"
        repo="$work/repo-$ver-$mode"
        "$borg" init -e "$mode" "$repo"
        (cd "$work/input" && "$borg" create "$repo::a1" .)
        "$borg" list --format '{id}{NL}' "$repo" > "$out/archive_id"
        "$py" "$here/dump_objects.py" "$repo" "$out"
        if [ -d "$BORG_KEYS_DIR" ] && [ -n "$(ls "$BORG_KEYS_DIR")" ]; then
            cp "$BORG_KEYS_DIR"/* "$out/keyfile"
        fi
        "$py" -c 'import configparser,sys; c=configparser.ConfigParser(interpolation=None); c.read(sys.argv[1]); k=c.get("repository","key",fallback=""); open(sys.argv[2],"w").write(k)' "$repo/config" "$out/repokey"
        [ -s "$out/repokey" ] || rm "$out/repokey"
        "$borg" key export "$repo" "$out/export.txt" 2>/dev/null || true
        "$borg" key export --paper "$repo" "$out/export-paper.txt" 2>/dev/null || true
        "$borg" --version > "$out/borg-version"
    done
done
echo "written to $here"
