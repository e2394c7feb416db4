#!/bin/sh
# Boots systemd as PID 1 of a fresh PID namespace, on a private root. Run by sysmgr-sandbox
# inside `unshare --pid --mount --uts --ipc --fork --propagation private`, so every mount
# below lives and dies with the sandbox and none reaches the host.
#
#   boot.sh DIR [BIND...]
#
# DIR holds upper/ work/ merged/ (the overlay) and console.log. BIND paths are host
# directories made visible at the same path inside (the repo, cargo's target dir).
#
# Why each step: systemd as PID 1 on the host's root would run systemd-tmpfiles-setup, which
# empties the host's /tmp, and systemd-sysctl, which rewrites the host's kernel settings. So
# the sandbox gets an overlay root (writes land in DIR/upper), its own /run and /tmp, and a
# read-only /proc/sys and /sys; the units that touch the machine are masked.
set -eu
dir=$1
shift
m=$dir/merged

mount -t overlay overlay -o "lowerdir=/,upperdir=$dir/upper,workdir=$dir/work" "$m"
mount -t proc proc "$m/proc"
mount --bind "$m/proc/sys" "$m/proc/sys"
mount -o remount,bind,ro "$m/proc/sys"
# /sys read-only at the top; its cgroup2 submount stays writable so systemd can manage units.
mount --rbind /sys "$m/sys"
mount -o remount,bind,ro "$m/sys"
mount --rbind /dev "$m/dev"
mount -t tmpfs -o mode=755 tmpfs "$m/run"
mount -t tmpfs -o mode=1777 tmpfs "$m/tmp"
for path in "$@"; do
  mkdir -p "$m$path"
  mount --rbind "$path" "$m$path"
done

units=$m/etc/systemd/system
mkdir -p "$units"
for unit in systemd-sysctl.service systemd-binfmt.service proc-sys-fs-binfmt_misc.automount \
  proc-sys-fs-binfmt_misc.mount systemd-modules-load.service systemd-remount-fs.service \
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
  --log-level=notice --unit=sysmgr-sandbox.target
