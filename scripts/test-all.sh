#!/usr/bin/env bash
# The one command that installs every test peer rborg lacks and runs every test:
# formatting, lints, unit tests, interop tests against real borg 1.2.4 and 1.4.5 behind a real
# sshd on loopback, and a short run of each fuzz target's corpus.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
bash scripts/install-peers.sh
# Interop tests fail, never skip, when a peer is missing.
export RBORG_REQUIRE_PEERS=1
export RBORG_BORG12="${RBORG_BORG12:-/usr/bin/borg}"
export RBORG_BORG14="${RBORG_BORG14:-$here/target/peers/borg-1.4.5/bin/borg}"
cargo fmt --check
cargo clippy --all-targets -- -D warnings
cargo test --all-targets
