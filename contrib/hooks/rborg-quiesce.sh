#!/bin/sh
# Quiescing helpers for rborg's command hooks: stop what writes to the data being backed up,
# export what lives in Podman volumes into a staging directory that is one of the
# source_directories, and put everything back afterwards.
#
#   rborg-quiesce.sh stop-unit UNIT...              systemctl stop, in the order given
#   rborg-quiesce.sh start-unit UNIT...             systemctl start; tries every unit, fails if any failed
#   rborg-quiesce.sh stop-container NAME...         podman stop (RBORG_STOP_TIMEOUT seconds, default 30)
#   rborg-quiesce.sh start-container NAME...        podman start; tries every container
#   rborg-quiesce.sh export-volume VOLUME DIR       podman volume export to DIR/VOLUME.tar, atomically
#   rborg-quiesce.sh cleanup DIR                    remove the *.tar exports from DIR
#
# Starting a unit or a container that is already running is harmless, so the "after" hooks may
# call start-* unconditionally, after a successful and after a failed backup alike.
set -eu

die() {
    echo "rborg-quiesce: $*" >&2
    exit 2
}

[ $# -ge 1 ] || die "usage: rborg-quiesce.sh stop-unit|start-unit|stop-container|start-container|export-volume|cleanup ARGS..."
command=$1
shift

case "$command" in
stop-unit)
    [ $# -ge 1 ] || die "stop-unit needs at least one unit"
    for unit in "$@"; do
        systemctl stop "$unit"
    done
    ;;
start-unit)
    [ $# -ge 1 ] || die "start-unit needs at least one unit"
    status=0
    for unit in "$@"; do
        systemctl start "$unit" || { echo "rborg-quiesce: could not start $unit" >&2; status=1; }
    done
    exit $status
    ;;
stop-container)
    [ $# -ge 1 ] || die "stop-container needs at least one container"
    for container in "$@"; do
        podman stop --time "${RBORG_STOP_TIMEOUT:-30}" "$container" >/dev/null
    done
    ;;
start-container)
    [ $# -ge 1 ] || die "start-container needs at least one container"
    status=0
    for container in "$@"; do
        podman start "$container" >/dev/null || { echo "rborg-quiesce: could not start $container" >&2; status=1; }
    done
    exit $status
    ;;
export-volume)
    [ $# -eq 2 ] || die "export-volume needs VOLUME DIR"
    volume=$1
    dir=$2
    mkdir -p "$dir"
    # Export to a temporary name first: a half-written tar must never be backed up as the volume.
    tmp="$dir/.$volume.tar.partial"
    rm -f "$tmp"
    if ! podman volume export --output "$tmp" "$volume"; then
        rm -f "$tmp"
        die "podman volume export $volume failed"
    fi
    mv -f "$tmp" "$dir/$volume.tar"
    ;;
cleanup)
    [ $# -eq 1 ] || die "cleanup needs DIR"
    dir=$1
    [ -d "$dir" ] || exit 0
    find "$dir" -maxdepth 1 -type f \( -name '*.tar' -o -name '.*.tar.partial' \) -delete
    ;;
*)
    die "unknown command $command"
    ;;
esac
