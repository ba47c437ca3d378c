# Shared by the benchmark scripts (source it): a throwaway loopback sshd, the CPU its
# sessions used, and the big-file data set. Same sshd setup as tests/common/mod.rs
# `Sshd::start`.

SSHD_PID=

# start_loopback_sshd DIR: host and client keys in DIR, `sshd -D` on a free 127.0.0.1 port
# (never 22). Sets SSHD_PID and PORT, exports BORG_RSH (that port, that key, only that
# known_hosts, never a prompt) and sets SSH_PREFIX (ssh://root@127.0.0.1:PORT). The caller
# kills SSHD_PID when done.
start_loopback_sshd() {
    local d=$1 attempt up
    mkdir -p /run/sshd "$d"
    ssh-keygen -q -t ed25519 -N '' -f "$d/host" </dev/null
    ssh-keygen -q -t ed25519 -N '' -f "$d/client" </dev/null
    cut -d' ' -f1-2 "$d/client.pub" > "$d/authorized_keys"
    for attempt in 1 2 3 4 5; do
        PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
        [ "$PORT" != 22 ] || continue
        cat > "$d/sshd_config" <<CFG
Port $PORT
ListenAddress 127.0.0.1
HostKey $d/host
PidFile $d/sshd.pid
AuthorizedKeysFile $d/authorized_keys
PermitRootLogin yes
StrictModes no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
LogLevel ERROR
MaxStartups 100
MaxSessions 100
CFG
        /usr/sbin/sshd -D -e -f "$d/sshd_config" 2>"$d/sshd.log" &
        SSHD_PID=$!
        up=no
        for _ in $(seq 50); do
            if ! kill -0 "$SSHD_PID" 2>/dev/null; then break; fi
            if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then up=yes; break; fi
            sleep 0.2
        done
        [ "$up" = yes ] && break
        kill "$SSHD_PID" 2>/dev/null || true; wait "$SSHD_PID" 2>/dev/null || true; SSHD_PID=
    done
    [ -n "$SSHD_PID" ] || { echo "sshd did not start:" >&2; cat "$d/sshd.log" >&2; exit 1; }
    echo "[127.0.0.1]:$PORT $(cut -d' ' -f1-2 "$d/host.pub")" > "$d/known_hosts"
    export BORG_RSH="ssh -F /dev/null -i $d/client -o IdentitiesOnly=yes -o IdentityAgent=none -o UserKnownHostsFile=$d/known_hosts -o StrictHostKeyChecking=yes -o BatchMode=yes -o LogLevel=ERROR -p $PORT"
    SSH_PREFIX="ssh://root@127.0.0.1:$PORT"
}

# server_cpu: CPU seconds the sshd listener has collected from its finished children: each
# connection's sshd process and, through it, the `borg serve` it ran (/proc/PID/stat cutime +
# cstime). 0 without a running sshd. A connection's sshd process ends just after its client,
# so wait a moment (0.3 s) after the client before reading it.
server_cpu() {
    if [ -n "$SSHD_PID" ]; then
        awk -v t="$(getconf CLK_TCK)" '{printf "%.2f", ($16 + $17) / t}' "/proc/$SSHD_PID/stat"
    else
        echo 0
    fi
}

# make_big_set DIR MIB: MIB MiB in 4 files f0..f3; f0 and f2 log-like text (zstd,3 shrinks it
# about 3-4x), f1 and f3 random bytes.
make_big_set() {
    mkdir -p "$1"
    python3 - "$1" "$(($2 / 4))" <<'EOF'
import os, sys, random
d, per = sys.argv[1], int(sys.argv[2])
rnd = random.Random(42)
words = [bytes(rnd.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(rnd.randint(2, 9))) for _ in range(5000)]
for i in range(4):
    with open(os.path.join(d, f"f{i}"), "wb") as f:
        left = per << 20
        while left > 0:
            if i % 2 == 0:
                line = b" ".join(rnd.choice(words) for _ in range(12)) + b"\n"
                block = line + b"".join(b" ".join(rnd.choice(words) for _ in range(12)) + b"\n" for _ in range(2000))
            else:
                block = os.urandom(1 << 20)
            block = block[:left]
            f.write(block)
            left -= len(block)
EOF
}
