#!/bin/sh
# Boots systemd as PID 1 of a fresh PID namespace, on a private root. Run by sysmgr-sandbox
# inside `unshare --pid --mount --uts --ipc [--cgroup] --fork --propagation private`, so every
# mount below lives and dies with the sandbox and none reaches the host.
#
#   boot.sh DIR CGROUP [BIND...]
#
# DIR holds merged/ (the mount point of the sandbox's root) and console.log. CGROUP is `yes`
# when the caller put us in a cgroup of our own and unshared the cgroup namespace (then the
# sandbox gets a private cgroup2 tree), `no` otherwise. BIND paths are host directories made
# visible at the same path inside (the repo, cargo's target dir).
#
# Why each step: systemd as PID 1 on the host's root would run systemd-tmpfiles-setup, which
# empties the host's /tmp, and systemd-sysctl, which rewrites the host's kernel settings. So
# the sandbox gets an overlay root (writes land in a tmpfs of its own), its own /run, /tmp and
# /dev, read-only /proc/sys and /sys; the units that touch the machine are masked.
set -eu
dir=$1
cgroup=$2
shift 2
m=$dir/merged

# The root: the host's / read-only underneath, every write (unit files, dpkg -i, journals) in
# an upper layer on a tmpfs of this mount namespace. A tmpfs works as upper wherever the
# sandbox directory lives (an overlayfs upper cannot sit on overlayfs, as in a container) and
# vanishes with the sandbox, so teardown has nothing of it to delete.
layers=$dir/layers
mkdir -p "$layers"
mount -t tmpfs -o mode=700 sandbox-layers "$layers"
mkdir "$layers/upper" "$layers/work"
mount -t overlay overlay -o "lowerdir=/,upperdir=$layers/upper,workdir=$layers/work" "$m"

mount -t proc proc "$m/proc"
mount --bind "$m/proc/sys" "$m/proc/sys"
mount -o remount,bind,ro "$m/proc/sys"
mount --rbind /sys "$m/sys"
mount -o remount,bind,ro "$m/sys"
if [ "$cgroup" = yes ]; then
  # The host's cgroup trees are shared by every sandbox: two of them would put their
  # `dbus.service` (or `app@1.service`) in the same cgroup and see each other's processes.
  # In our own cgroup namespace a fresh cgroup2 mount shows only our cgroup, as the root.
  umount -R "$m/sys/fs/cgroup" 2>/dev/null || true
  mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 "$m/sys/fs/cgroup"
fi

# A /dev of its own, like systemd-nspawn's: the host's /dev would get the sandbox's
# /dev/log and /dev/initctl links, its tmpfiles would re-permission host devices, and its
# journald would write to and read back the host's kernel log (/dev/kmsg).
mount -t tmpfs -o mode=755,nosuid tmpfs "$m/dev"
for node in null zero full random urandom tty; do
  touch "$m/dev/$node"
  mount --bind "/dev/$node" "$m/dev/$node"
done
# systemd's console: PID 1 and units with StandardOutput=console write here.
touch "$m/dev/console"
mount --bind "$dir/console.log" "$m/dev/console"
mkdir "$m/dev/pts" "$m/dev/shm" "$m/dev/mqueue"
mount -t devpts -o newinstance,ptmxmode=0666,mode=620 devpts "$m/dev/pts"
ln -s pts/ptmx "$m/dev/ptmx"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$m/dev/shm"
mount -t mqueue mqueue "$m/dev/mqueue"
ln -s /proc/self/fd "$m/dev/fd"
ln -s /proc/self/fd/0 "$m/dev/stdin"
ln -s /proc/self/fd/1 "$m/dev/stdout"
ln -s /proc/self/fd/2 "$m/dev/stderr"

mount -t tmpfs -o mode=755 tmpfs "$m/run"
mount -t tmpfs -o mode=1777 tmpfs "$m/tmp"
for path in "$@"; do
  mkdir -p "$m$path"
  mount --rbind "$path" "$m$path"
done

units=$m/etc/systemd/system
mkdir -p "$units"
# Masked: units that change the machine (kernel settings, modules, binfmt, devices, the
# clock, mounts under /sys), need hardware or a terminal, or only slow the boot down.
for unit in systemd-sysctl.service systemd-binfmt.service proc-sys-fs-binfmt_misc.automount \
  proc-sys-fs-binfmt_misc.mount systemd-modules-load.service modprobe@.service \
  kmod-static-nodes.service systemd-remount-fs.service \
  systemd-udevd.service systemd-udev-trigger.service systemd-udev-settle.service \
  systemd-udevd-control.socket systemd-udevd-kernel.socket systemd-timesyncd.service \
  getty.target console-getty.service systemd-logind.service systemd-firstboot.service \
  systemd-hwdb-update.service systemd-random-seed.service systemd-machine-id-commit.service \
  sys-kernel-debug.mount sys-kernel-tracing.mount sys-kernel-config.mount \
  sys-fs-fuse-connections.mount dev-hugepages.mount dev-mqueue.mount \
  systemd-journald-audit.socket systemd-update-utmp.service systemd-pstore.service \
  cron.service ssh.service docker.service containerd.service; do
  ln -sf /dev/null "$units/$unit"
done

# The journal in memory only: the host's /var/log/journal would be copied up and read back
# (old boots' lines in `journalctl -u`), and flushing it to disk costs boot time.
mkdir -p "$m/etc/systemd/journald.conf.d"
cat > "$m/etc/systemd/journald.conf.d/sysmgr-sandbox.conf" <<'CONF'
[Journal]
Storage=volatile
ReadKMsg=no
CONF

# The target the sandbox boots into: the system bus and socket units, nothing else. The bus
# itself is started at boot, not on first use, so systemd is on it before any client is.
cat > "$units/sysmgr-sandbox.target" <<'UNIT'
[Unit]
Description=sysmgr test sandbox
Requires=dbus.socket dbus.service sockets.target
After=dbus.socket dbus.service sockets.target
AllowIsolate=yes
UNIT

cd "$m"
exec chroot . env container=sysmgr-sandbox /lib/systemd/systemd --log-target=console \
  --log-level=notice --show-status=no --unit=sysmgr-sandbox.target
