#!/bin/sh
# Installs twtune's .deb into a scratch root, runs its metrics unit's command there, and purges it;
# tests/integration/package.rs runs this under `unshare --mount --net --pid --fork` and judges what
# it leaves in OUT. Usage: package_scratch.sh DEB SCRATCH OUT
#
# The scratch root is an overlay of / whose writable layer is a tmpfs of this mount namespace:
# dpkg --root sees the host's installed packages (so dependencies resolve) and runs the maintainer
# scripts chrooted in it, and all it writes disappears with the namespace. Its /proc shows only
# this PID namespace's processes, its /run/netns only the namespace made here.
set -eu
deb=$1 scratch=$2 out=$3

[ "$(readlink /proc/self/ns/mnt)" != "$(readlink /proc/1/ns/mnt 2>/dev/null || true)" ] || exit 90
mount --make-rprivate /
mkdir -p "$scratch"
mount -t tmpfs -o size=256m twtune-package-test "$scratch"
mkdir -p "$scratch/upper" "$scratch/work" "$scratch/root"
mount -t overlay -o "lowerdir=/,upperdir=$scratch/upper,workdir=$scratch/work" twtune-package-test "$scratch/root"
root=$scratch/root
mount -t proc proc "$root/proc"
mount --rbind /dev "$root/dev"
mount -t tmpfs tmpfs "$root/run"
mount -t tmpfs tmpfs "$root/tmp"
mkdir -p /run/netns "$root/run/netns"
mount -t tmpfs tmpfs /run/netns
ip link set lo up

# --- install
dpkg --root="$root" --force-not-root -i "$deb" > "$out/install.log" 2>&1
dpkg-query --root="$root" -L twtune | sort > "$out/installed"
readlink "$root/etc/systemd/system/timers.target.wants/twtune-metrics.timer" > "$out/enabled" || true
unit=/usr/lib/systemd/system/twtune-metrics.service
chroot "$root" systemd-analyze verify "$unit" /usr/lib/systemd/system/twtune-metrics.timer \
    > "$out/verify.log" 2>&1 && echo 0 > "$out/verify.status" || echo $? > "$out/verify.status"

# --- what the unit sees: a namespace, a process of another user holding connections in it, and
# conntrack entries of those connections
ip netns add blue
ip netns exec blue ip link set lo up
mount --rbind /run/netns "$root/run/netns"
ip netns exec blue iptables -A OUTPUT -m conntrack --ctstate NEW -j ACCEPT
ip netns exec blue setpriv --reuid 65534 --regid 65534 --clear-groups /usr/bin/python3 -c '
import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", 8080)); s.listen(100)
held = [(socket.create_connection(("127.0.0.1", 8080)), s.accept()) for _ in range(20)]
open(sys.argv[1], "w").close()
time.sleep(120)' "$scratch/ready" &
holder=$!
for _ in $(seq 100); do [ -e "$scratch/ready" ] && break; sleep 0.1; done

# --- the unit's command, as the unit runs it: ExecStart from the installed unit, with no
# environment, the unit's bounding set and no new privileges
exec_start=$(sed -n 's/^ExecStart=//p' "$root$unit")
caps=$(sed -n 's/^CapabilityBoundingSet=//p' "$root$unit")
bounding() { # the unit's set, but for the capabilities named in $1
    set_=-all
    for c in $caps; do
        case " $1 " in *" $c "*) ;; *) set_="$set_,+$(echo "${c#CAP_}" | tr A-Z a-z)" ;; esac
    done
    echo "$set_"
}
as_unit() { # DROPPED_CAPS COMMAND...
    b=$(bounding "$1"); shift
    chroot "$root" /usr/bin/env -i /usr/bin/setpriv --bounding-set "$b" --no-new-privs -- "$@"
}
textfile=$root/var/lib/prometheus/node-exporter
# shellcheck disable=SC2086 # ExecStart= is split on spaces, as systemd splits it (no quotes in it)
as_unit "" $exec_start > "$out/run.log" 2>&1 && echo 0 > "$out/run.status" || echo $? > "$out/run.status"
cp "$textfile/twtune.prom" "$out/twtune.prom" || true

# A failing run (setns refused without CAP_SYS_ADMIN) keeps the last file and leaves nothing else.
# shellcheck disable=SC2086
as_unit "CAP_SYS_ADMIN" $exec_start > "$out/failed.log" 2>&1 && echo 0 > "$out/failed.status" || echo $? > "$out/failed.status"
ls -A "$textfile" > "$out/after-failed.ls"
cmp -s "$textfile/twtune.prom" "$out/twtune.prom" && echo same > "$out/after-failed.cmp" || echo changed > "$out/after-failed.cmp"
# So does a run whose write fails half way (the directory's file system is full).
mount -t tmpfs -o size=64k twtune-package-full "$textfile"
cp "$out/twtune.prom" "$textfile/twtune.prom"
dd if=/dev/zero of="$textfile/filler" bs=4k 2>/dev/null || true
# shellcheck disable=SC2086
as_unit "" $exec_start > "$out/full.log" 2>&1 && echo 0 > "$out/full.status" || echo $? > "$out/full.status"
ls -A "$textfile" > "$out/after-full.ls"
cmp -s "$textfile/twtune.prom" "$out/twtune.prom" && echo same > "$out/after-full.cmp" || echo changed > "$out/after-full.cmp"
umount "$textfile"

# Each capability of the unit's set, dropped in turn: what the audit loses (JSON, to be judged).
for dropped in "" $caps; do
    as_unit "$dropped" /usr/bin/twtune audit --all-netns --format json --fail-on never \
        > "$out/caps${dropped:+-$dropped}.json" 2> "$out/caps${dropped:+-$dropped}.err" || true
done
kill "$holder" 2>/dev/null || true

# --- removal
dpkg --root="$root" --force-not-root --purge twtune > "$out/purge.log" 2>&1
while read -r path; do
    if [ -e "$root$path" ] && [ ! -d "$root$path" ]; then echo "$path"; fi
done < "$out/installed" > "$out/left-after-purge"
for f in /var/lib/prometheus/node-exporter/twtune.prom /etc/systemd/system/timers.target.wants/twtune-metrics.timer; do
    if [ -e "$root$f" ] || [ -L "$root$f" ]; then echo "$f"; fi
done >> "$out/left-after-purge"
echo done > "$out/done"
