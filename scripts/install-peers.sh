#!/usr/bin/env bash
# Installs every peer rborg's tests talk to, skipping what is already there:
#   borg 1.2.4 (Debian's borgbackup), borg 1.4.5 (built from PyPI into target/peers/borg-1.4.5),
#   an sshd binary (openssh-server), libssh2 headers for the ssh2 crate, prometheus-pushgateway,
#   promtool (prometheus) and systemd-analyze (systemd) for the ops tests, setfacl (acl) and
#   chattr (e2fsprogs) for the filesystem tests, borgmatic as a real caller of the CLI.
# Prints the paths it settled on. Safe to run again; a second run takes seconds.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
peers="$here/target/peers"
mkdir -p "$peers"

need_apt=()
command -v /usr/bin/borg >/dev/null 2>&1 || need_apt+=(borgbackup)
[ -x /usr/sbin/sshd ] || need_apt+=(openssh-server)
command -v ssh >/dev/null 2>&1 || need_apt+=(openssh-client)
command -v ssh-keygen >/dev/null 2>&1 || need_apt+=(openssh-client)
# ops tests: a real Pushgateway, promtool for the alert rules, systemd-analyze for the units.
[ -x /usr/bin/prometheus-pushgateway ] || need_apt+=(prometheus-pushgateway)
command -v promtool >/dev/null 2>&1 || need_apt+=(prometheus)
command -v systemd-analyze >/dev/null 2>&1 || need_apt+=(systemd)
command -v setfacl >/dev/null 2>&1 || need_apt+=(acl)
command -v chattr >/dev/null 2>&1 || need_apt+=(e2fsprogs)
# borgmatic as a real caller of rborg's command line (tests/borgmatic_interop.rs).
[ -x /usr/bin/borgmatic ] || need_apt+=(borgmatic)
for pkg in libssl-dev libacl1-dev liblz4-dev libzstd-dev libxxhash-dev pkg-config libssh2-1-dev python3-venv; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "install-peers: apt-get install ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

borg14="$peers/borg-1.4.5/bin/borg"
if ! "$borg14" --version 2>/dev/null | grep -qx 'borg 1.4.5'; then
  echo "install-peers: building borg 1.4.5 into $peers/borg-1.4.5 (a few minutes the first time)"
  rm -rf "$peers/borg-1.4.5"
  python3 -m venv "$peers/borg-1.4.5"
  "$peers/borg-1.4.5/bin/pip" install -q borgbackup==1.4.5
fi

v12=$(/usr/bin/borg --version)
v14=$("$borg14" --version)
[ "$v12" = "borg 1.2.4" ] || { echo "install-peers: /usr/bin/borg is '$v12', expected borg 1.2.4" >&2; exit 1; }
[ "$v14" = "borg 1.4.5" ] || { echo "install-peers: $borg14 is '$v14', expected borg 1.4.5" >&2; exit 1; }
echo "install-peers: $v12 at /usr/bin/borg; $v14 at $borg14; sshd at /usr/sbin/sshd"
