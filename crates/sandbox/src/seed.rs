//! The files a sandbox's root has on top of the host's: masked units, disabled generators,
//! a journald drop-in and the target systemd boots into.
//!
//! They are written on the host into `DIR/seed` before the boot and copied as a whole into
//! the overlay's upper layer by the boot script, so it does not spend a process per file,
//! and what the sandbox changes in the host's configuration is all here in one list.

use std::fs;
use std::io;
use std::os::unix::fs::symlink;
use std::path::Path;

/// Units masked (linked to `/dev/null`) in the sandbox, with why.
pub(crate) const MASKED: &[&str] = &[
    // Write the host's kernel settings, load modules into the host's kernel, register binfmt
    // handlers: the kernel is shared.
    "systemd-sysctl.service",
    "systemd-binfmt.service",
    "proc-sys-fs-binfmt_misc.automount",
    "proc-sys-fs-binfmt_misc.mount",
    "systemd-modules-load.service",
    "modprobe@.service",
    "kmod-static-nodes.service",
    // Remount / (the overlay) or mount kernel file systems under the read-only /sys.
    "systemd-remount-fs.service",
    "sys-kernel-debug.mount",
    "sys-kernel-tracing.mount",
    "sys-kernel-config.mount",
    "sys-fs-fuse-connections.mount",
    "dev-hugepages.mount",
    // The boot script mounts the sandbox's own mqueue.
    "dev-mqueue.mount",
    // Devices belong to the host: no udev, no hardware database.
    "systemd-udevd.service",
    "systemd-udev-trigger.service",
    "systemd-udev-settle.service",
    "systemd-udevd-control.socket",
    "systemd-udevd-kernel.socket",
    "systemd-hwdb-update.service",
    // Set the host's clock, seed its random pool, save its crash logs, read its audit log.
    "systemd-timesyncd.service",
    "systemd-random-seed.service",
    "systemd-pstore.service",
    "systemd-journald-audit.socket",
    // No terminals, logins or first-boot questions in a sandbox.
    "getty.target",
    "console-getty.service",
    "systemd-logind.service",
    "systemd-firstboot.service",
    "systemd-machine-id-commit.service",
    "systemd-update-utmp.service",
    // The journal is volatile (see JOURNALD): nothing to flush, and waiting for it slows
    // the boot.
    "systemd-journal-flush.service",
    // Host daemons the sandbox has no business running if a unit pulls them in.
    "cron.service",
    "ssh.service",
    "docker.service",
    "containerd.service",
];

/// Where systemd looks for generators. Each one found is disabled by a link to `/dev/null`
/// of the same name in `/etc/systemd/system-generators`: generators turn the host's fstab,
/// init scripts and kernel command line into units the sandbox must not run, and running
/// them took half of the boot time. sysmgr's own generator (see [`KEPT_GENERATOR`]) stays.
const GENERATOR_DIRS: &[&str] = &[
    "/lib/systemd/system-generators",
    "/usr/lib/systemd/system-generators",
    "/usr/local/lib/systemd/system-generators",
];

/// Generators whose name starts with this keep running: sysmgr's own, so a sandbox on a
/// machine with the package installed, or one where a test installs it, behaves like that
/// machine.
const KEPT_GENERATOR: &str = "sysmgr";

/// journald keeps the journal in memory: the host's `/var/log/journal` would otherwise be
/// copied up and read back (old boots' lines in `journalctl -u`). The kernel log is the
/// host's, shared by every sandbox, so it is not read either.
const JOURNALD: &str = "\
# Written by sysmgr-sandbox: a volatile journal of this sandbox only.
[Journal]
Storage=volatile
ReadKMsg=no
";

/// The name of the target the sandbox boots into.
pub(crate) const TARGET: &str = "sysmgr-sandbox.target";

/// The system bus and socket units, nothing else. The bus itself is started at boot, not on
/// first use, so systemd is on it before any client (sysmgr) is.
const TARGET_UNIT: &str = "\
# Written by sysmgr-sandbox: what a test sandbox boots into.
[Unit]
Description=sysmgr test sandbox
Requires=dbus.socket dbus.service sockets.target
After=dbus.socket dbus.service sockets.target
AllowIsolate=yes
";

/// Writes the seed layer into `seed`.
pub(crate) fn write(seed: &Path) -> io::Result<()> {
    let units = seed.join("etc/systemd/system");
    fs::create_dir_all(&units)?;
    for unit in MASKED {
        symlink("/dev/null", units.join(unit))?;
    }
    fs::write(units.join(TARGET), TARGET_UNIT)?;

    let generators = seed.join("etc/systemd/system-generators");
    fs::create_dir_all(&generators)?;
    for dir in GENERATOR_DIRS {
        let Ok(entries) = fs::read_dir(dir) else {
            continue;
        };
        for entry in entries.flatten() {
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with(KEPT_GENERATOR)
            {
                continue;
            }
            let link = generators.join(entry.file_name());
            // /lib and /usr/lib are one directory on merged-/usr systems.
            if fs::symlink_metadata(&link).is_err() {
                symlink("/dev/null", link)?;
            }
        }
    }

    let journald = seed.join("etc/systemd/journald.conf.d");
    fs::create_dir_all(&journald)?;
    fs::write(journald.join("sysmgr-sandbox.conf"), JOURNALD)?;
    Ok(())
}
