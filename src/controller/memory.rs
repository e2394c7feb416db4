//! The memory figure of an instance when systemd has none: the resident set (`VmRSS`) of
//! the processes in the unit's cgroup, summed.
//!
//! systemd reports `MemoryCurrent` only when the memory controller is enabled for the unit's
//! cgroup; a manager on cgroup v1 without it (a container, or a sandbox whose memory
//! controller sits in another v1 hierarchy) reports none, and `list`, `status` and `monit`
//! would show `-`. This fallback is an approximation: `MemoryCurrent` counts the cgroup's
//! page cache and kernel memory too, and resident sets count pages shared between the
//! processes once per process. It is used only when systemd gives no figure.
//!
//! The processes are the ones in the unit's cgroup (`ControlGroup`, read from
//! `cgroup.procs` under the hierarchy systemd manages: a cgroup2 mount, or v1's
//! `name=systemd`), or, when no such file can be read, the main process alone.

use std::fs;
use std::path::{Path, PathBuf};

/// The summed `VmRSS` of the unit's processes in bytes, or `None` when not one process
/// could be read (the unit has no process, or /proc hides them).
pub fn resident_bytes(control_group: &str, main_pid: u32) -> Option<u64> {
    let pids = cgroup_procs(control_group).unwrap_or_else(|| {
        if main_pid == 0 {
            Vec::new()
        } else {
            vec![main_pid]
        }
    });
    pids.iter()
        .filter_map(|&pid| vm_rss(&fs::read_to_string(format!("/proc/{pid}/status")).ok()?))
        .fold(None, |sum, kib| Some(sum.unwrap_or(0) + kib * 1024))
}

/// The PIDs in `cgroup.procs` of the unit's cgroup, under the first hierarchy that has it.
fn cgroup_procs(control_group: &str) -> Option<Vec<u32>> {
    if control_group.is_empty() || !control_group.starts_with('/') {
        return None;
    }
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").ok()?;
    hierarchies(&mountinfo).into_iter().find_map(|root| {
        let text = fs::read_to_string(cgroup_file(&root, control_group)).ok()?;
        Some(text.lines().filter_map(|l| l.trim().parse().ok()).collect())
    })
}

fn cgroup_file(root: &Path, control_group: &str) -> PathBuf {
    root.join(control_group.trim_start_matches('/'))
        .join("cgroup.procs")
}

/// The mount points of the hierarchies systemd may manage, in the order to try them: every
/// cgroup2 mount, then v1's `name=systemd`.
fn hierarchies(mountinfo: &str) -> Vec<PathBuf> {
    let mut v2 = Vec::new();
    let mut v1 = Vec::new();
    for line in mountinfo.lines() {
        // `ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [TAGS...] - FSTYPE SOURCE SUPEROPTIONS`
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let Some(point) = left.split(' ').nth(4) else {
            continue;
        };
        let mut fields = right.split(' ');
        let fstype = fields.next().unwrap_or("");
        let superoptions = fields.nth(1).unwrap_or("");
        let point = PathBuf::from(unescape(point));
        match fstype {
            "cgroup2" => v2.push(point),
            "cgroup" if superoptions.split(',').any(|o| o == "name=systemd") => v1.push(point),
            _ => {}
        }
    }
    v2.extend(v1);
    v2
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|d| {
            std::str::from_utf8(d)
                .ok()
                .and_then(|d| u8::from_str_radix(d, 8).ok())
        });
        match (bytes[i], octal) {
            (b'\\', Some(b)) => {
                out.push(b);
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `VmRSS` from a `/proc/PID/status` text, in KiB (absent for kernel threads and zombies).
fn vm_rss(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hierarchies_are_cgroup2_mounts_then_the_v1_systemd_one() {
        let mountinfo = "\
30 25 0:26 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw,nsdelegate
32 30 0:28 / /sys/fs/cgroup/systemd rw,nosuid - cgroup cgroup rw,xattr,name=systemd
33 30 0:29 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory
34 25 0:30 / /mnt/with\\040space rw shared:9 - cgroup2 cgroup2 rw
";
        assert_eq!(
            hierarchies(mountinfo),
            [
                PathBuf::from("/sys/fs/cgroup/unified"),
                PathBuf::from("/mnt/with space"),
                PathBuf::from("/sys/fs/cgroup/systemd"),
            ]
        );
        assert_eq!(
            cgroup_file(
                Path::new("/sys/fs/cgroup"),
                "/system.slice/system-web.slice/web@1.service"
            ),
            Path::new("/sys/fs/cgroup/system.slice/system-web.slice/web@1.service/cgroup.procs")
        );
    }

    #[test]
    fn vm_rss_is_read_in_kib_and_absent_without_the_line() {
        assert_eq!(
            vm_rss("Name:\thello\nVmPeak:\t  9000 kB\nVmRSS:\t    4321 kB\n"),
            Some(4321)
        );
        assert_eq!(vm_rss("Name:\tkthreadd\nState:\tS (sleeping)\n"), None);
    }

    #[test]
    fn our_own_process_has_a_resident_set() {
        let own = resident_bytes("", std::process::id()).expect("our own VmRSS");
        assert!(own > 1024 * 1024, "{own}");
        assert_eq!(resident_bytes("", 0), None);
        assert_eq!(resident_bytes("/no/such.service", 0), None);
    }
}
