#!/bin/sh
# Boots systemd as PID 1 of a fresh PID namespace, on a private root. Run by sysmgr-sandbox
# inside `unshare --pid --mount --uts --ipc [--cgroup] --fork --propagation private`, so every
# mount below lives and dies with the sandbox and none reaches the host.
#
#   boot.sh DIR CGROUP TARGET [BIND...]
#
# DIR holds seed/ (masked units and the boot target, written by seed.rs), merged/ (the mount
# point of the sandbox's root) and console.log. CGROUP is `yes` when the caller put us in a
# cgroup of our own and unshared the cgroup namespace, `no` otherwise. TARGET is the unit to
# boot into. BIND paths are host paths made visible at the same path inside (the repo,
# cargo's target dir).
#
# Why: systemd as PID 1 on the host's root would run systemd-tmpfiles-setup, which empties
# the host's /tmp, and systemd-sysctl, which rewrites the host's kernel settings. So the
# sandbox gets an overlay root whose writes land in a tmpfs, its own /run, /tmp and /dev,
# read-only /proc/sys and /sys, and its own cgroup tree. Every command here is a process to
# start, which is most of the boot time on a busy machine: keep them few.
set -eu
dir=$1
cgroup=$2
target=$3
shift 3
m=$dir/merged

# The root: the host's / read-only underneath, every write (unit files, dpkg -i) in an
# upper layer on a tmpfs of this mount namespace, which starts as a copy of seed/. A tmpfs
# works as an upper layer wherever DIR is (an upper layer cannot sit on overlayfs, as in a
# container), does not overlap the lower layer / (the kernel refuses that: ELOOP), and
# vanishes with the sandbox, so teardown has nothing of it to delete.
layers=$dir/layers
mkdir "$layers"
mount -t tmpfs -o mode=700 sandbox-layers "$layers"
mkdir "$layers/work"
cp -a "$dir/seed" "$layers/upper"
mount -t overlay overlay -o "lowerdir=/,upperdir=$layers/upper,workdir=$layers/work" "$m"

mount -t proc proc "$m/proc"
mount --bind "$m/proc/sys" "$m/proc/sys"
mount -o remount,bind,ro "$m/proc/sys"
mount --rbind /sys "$m/sys"
mount -o remount,bind,ro "$m/sys"
if [ "$cgroup" = yes ]; then
  # The host's cgroup trees are shared by every sandbox: two of them would put their
  # dbus.service (or app@1.service) in one cgroup and see each other's processes. In our
  # own cgroup namespace a fresh cgroup2 mount shows only our cgroup, as its root.
  umount -R "$m/sys/fs/cgroup" 2>/dev/null || : # not a mount point on every host
  mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 "$m/sys/fs/cgroup"
fi

# A /dev of its own, like systemd-nspawn's. With the host's, the sandbox would leave its
# /dev/log and /dev/initctl links there, re-permission host devices (tmpfiles), and its
# journald would write to and read back the host's kernel log (/dev/kmsg).
d=$m/dev
mount -t tmpfs -o mode=755,nosuid tmpfs "$d"
mkdir "$d/pts" "$d/shm" "$d/mqueue"
touch "$d/null" "$d/zero" "$d/full" "$d/random" "$d/urandom" "$d/tty" "$d/console"
for node in null zero full random urandom tty; do
  mount --bind "/dev/$node" "$d/$node"
done
# systemd's console: PID 1 (and units with StandardOutput=console) write here.
mount --bind "$dir/console.log" "$d/console"
mount -t devpts -o newinstance,ptmxmode=0666,mode=620 devpts "$d/pts"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$d/shm"
mount -t mqueue mqueue "$d/mqueue"
ln -s pts/ptmx "$d/ptmx"
ln -s /proc/self/fd "$d/fd"
ln -s /proc/self/fd/0 "$d/stdin"
ln -s /proc/self/fd/1 "$d/stdout"
ln -s /proc/self/fd/2 "$d/stderr"

mount -t tmpfs -o mode=755,nosuid,nodev tmpfs "$m/run"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$m/tmp"
for path in "$@"; do
  if [ -d "$path" ]; then
    mkdir -p "$m$path"
  else
    mkdir -p "$m${path%/*}"
    touch "$m$path"
  fi
  mount --rbind "$path" "$m$path"
done

cd "$m"
export container=sysmgr-sandbox
exec chroot . /lib/systemd/systemd --log-target=console --log-level=notice \
  --show-status=error --unit="$target"
