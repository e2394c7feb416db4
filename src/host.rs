//! What an app file names on this machine: its program, its user and group, its ports.
//!
//! Parsing ([`crate::config`]) is pure, so a file that names a program that is not installed,
//! a user that does not exist or a port another program listens on passes it and would fail
//! only when systemd starts the units. This step looks at the machine after parsing and
//! reports at the key's position ([`Places`]), like parsing does: `check`, `generate`, `start`
//! and `reload` run it. A port in use is an error for `check` and a warning for the commands
//! that start the app (the app itself may hold it; that is never reported).

use std::ffi::CString;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use crate::config::{AppSpec, Diagnostics, ListenAddress, Places, Severity};
use crate::names::UnitNames;
use crate::systemd::Manager;

/// The `PATH` systemd gives services (and looks bare `ExecStart=` names up in).
pub const SYSTEMD_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What to do about a port that another program listens on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ports {
    /// Not looked at (`generate` only writes files).
    Skip,
    /// A warning: the app is started anyway (`start`, `reload`).
    Warn,
    /// An error (`check`).
    Error,
}

/// Which checks to make, for which manager.
#[derive(Debug, Clone, Copy)]
pub struct Checks {
    /// The manager the units are for (where an installed socket of the app would be).
    pub manager: Manager,
    /// Ports in use.
    pub ports: Ports,
}

/// The problems of `spec` on this machine, at the positions of `places`.
pub fn check(spec: &AppSpec, places: &Places, checks: Checks) -> Diagnostics {
    let mut found = Vec::new();
    if let Some(why) = missing_program(spec) {
        found.push(places.diagnostic(Severity::Error, "command", why));
    }
    if !spec.dynamic_user {
        for (key, value, exists) in [
            ("user", &spec.user, user_exists as fn(&str) -> Option<bool>),
            ("group", &spec.group, group_exists),
        ] {
            let Some(name) = value else { continue };
            if exists(name) == Some(false) {
                let (what, add) = if key == "user" {
                    ("user", "useradd --system")
                } else {
                    ("group", "groupadd --system")
                };
                found.push(places.diagnostic(
                    Severity::Error,
                    key,
                    format!("is `{name}`, which is not a {what} on this machine; create it (`{add} {name}`) or name another"),
                ));
            }
        }
    }
    let severity = match checks.ports {
        Ports::Skip => None,
        Ports::Warn => Some(Severity::Warning),
        Ports::Error => Some(Severity::Error),
    };
    if let Some(severity) = severity {
        for (i, listen) in spec.listen.iter().enumerate() {
            if let Some(holder) = port_holder(spec, i, &listen.address, checks.manager) {
                found.push(places.diagnostic(
                    severity,
                    &format!("listen[{i}]"),
                    format!(
                        "`{}` is in use by {holder}, so the app's socket cannot bind it; stop that program or choose another port",
                        listen.address
                    ),
                ));
            }
        }
    }
    Diagnostics(found)
}

/// Why `command`'s program cannot be run, if it cannot: an absolute path that is not an
/// executable file, or a bare name not found in the `PATH` `sysmgr exec` searches (the
/// app's `env.PATH`, else systemd's).
fn missing_program(spec: &AppSpec) -> Option<String> {
    use std::os::unix::fs::PermissionsExt as _;
    let program = spec.command.first()?;
    let runnable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.starts_with('/') {
        let path = Path::new(program);
        let why = match std::fs::metadata(path) {
            Err(_) => "does not exist",
            Ok(m) if !m.is_file() => "is not a regular file",
            Ok(_) if !runnable(path) => "is not executable",
            Ok(_) => return None,
        };
        return Some(format!(
            "runs `{program}`, which {why}; install it or give its full path"
        ));
    }
    let (path, whose) = match spec.env.iter().rev().find(|(k, _)| k == "PATH") {
        Some((_, p)) => (p.as_str(), "the app's `env.PATH`"),
        None => (SYSTEMD_PATH, "systemd's `PATH`"),
    };
    if path
        .split(':')
        .filter(|d| !d.is_empty())
        .any(|d| runnable(&Path::new(d).join(program)))
    {
        return None;
    }
    Some(format!(
        "runs `{program}`, which is not in {whose} (`{path}`); install it or give its full path"
    ))
}

/// Whether a user exists (numeric ids always do); `None` when the database cannot say.
fn user_exists(name: &str) -> Option<bool> {
    account_exists(name, |cname, buf| {
        // SAFETY: every pointer is valid for the call; `buf` outlives it and its length is
        // passed; the result only tells whether an entry was found.
        unsafe {
            let mut entry: libc::passwd = std::mem::zeroed();
            let mut result = std::ptr::null_mut();
            let rc = libc::getpwnam_r(
                cname.as_ptr(),
                &mut entry,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut result,
            );
            (rc, !result.is_null())
        }
    })
}

/// Whether a group exists (numeric ids always do); `None` when the database cannot say.
fn group_exists(name: &str) -> Option<bool> {
    account_exists(name, |cname, buf| {
        // SAFETY: as in `user_exists`.
        unsafe {
            let mut entry: libc::group = std::mem::zeroed();
            let mut result = std::ptr::null_mut();
            let rc = libc::getgrnam_r(
                cname.as_ptr(),
                &mut entry,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut result,
            );
            (rc, !result.is_null())
        }
    })
}

/// Looks `name` up with `lookup` (`getpwnam_r` or `getgrnam_r`: NSS, so LDAP and
/// systemd-userdb accounts count), growing the buffer as asked.
fn account_exists(name: &str, lookup: impl Fn(&CString, &mut [u8]) -> (i32, bool)) -> Option<bool> {
    if name.bytes().all(|b| b.is_ascii_digit()) {
        return Some(true);
    }
    let cname = CString::new(name).ok()?;
    let mut buf = vec![0u8; 4096];
    loop {
        match lookup(&cname, &mut buf) {
            (0, found) => return Some(found),
            (libc::ERANGE, _) if buf.len() < 1 << 20 => buf.resize(buf.len() * 2, 0),
            // getpwnam(3): "not found" may also come back as one of these.
            (libc::ENOENT | libc::ESRCH | libc::EBADF | libc::EPERM, _) => return Some(false),
            _ => return None,
        }
    }
}

/// One listening TCP socket of `/proc/net/tcp{,6}`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Listener {
    ip: IpAddr,
    port: u16,
    inode: u64,
}

/// The listening sockets of a `/proc/net/tcp` or `tcp6` table (state `0A`).
fn listeners(table: &str) -> Vec<Listener> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (local, state, inode) = (fields.get(1)?, fields.get(3)?, fields.get(9)?);
            if *state != "0A" {
                return None;
            }
            let (addr, port) = local.split_once(':')?;
            // The kernel prints the address as 32-bit words in host byte order.
            let mut bytes = Vec::with_capacity(16);
            for word in addr.as_bytes().chunks(8) {
                let word = u32::from_str_radix(std::str::from_utf8(word).ok()?, 16).ok()?;
                bytes.extend_from_slice(&word.to_ne_bytes());
            }
            let ip = match bytes.len() {
                4 => IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3])),
                16 => {
                    let v6 = Ipv6Addr::from(<[u8; 16]>::try_from(bytes).ok()?);
                    v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)
                }
                _ => return None,
            };
            Some(Listener {
                ip,
                port: u16::from_str_radix(port, 16).ok()?,
                inode: inode.parse().ok()?,
            })
        })
        .collect()
}

/// Whether binding `address` would fail because `l` listens: the same port, and the same
/// address or a wildcard on either side (systemd binds `[::]` dual-stack for a bare port).
fn conflicts(address: &ListenAddress, l: &Listener) -> bool {
    let wanted = match address {
        ListenAddress::Port(port) => return l.port == *port,
        ListenAddress::Inet(a) if a.port() == l.port => a.ip(),
        _ => return false,
    };
    wanted == l.ip
        || l.ip.is_unspecified() && (l.ip.is_ipv6() || wanted.is_ipv4())
        || wanted.is_unspecified() && (wanted.is_ipv6() || l.ip.is_ipv4())
}

/// Who listens on `address` other than the app (as `` `python3` (pid 812) ``), if anyone.
fn port_holder(
    spec: &AppSpec,
    index: usize,
    address: &ListenAddress,
    manager: Manager,
) -> Option<String> {
    let inodes: Vec<u64> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|t| std::fs::read_to_string(t).ok())
        .flat_map(|t| listeners(&t))
        .filter(|l| conflicts(address, l))
        .map(|l| l.inode)
        .collect();
    if inodes.is_empty() {
        return None;
    }
    let holders = socket_holders(&inodes);
    let names = UnitNames::new(spec.name.as_str());
    // An instance of the app holds its socket (or a per-instance one): it is the app's.
    if holders.iter().any(|&pid| in_app_unit(pid, &names)) {
        return None;
    }
    // The service manager holds a socket unit's listener; it is the app's when the app's
    // installed socket unit declares this address. When the holders cannot be seen (not
    // root), the installed unit decides alone.
    let managed = holders.is_empty()
        || holders
            .iter()
            .all(|&pid| comm(pid).as_deref() == Some("systemd"));
    if managed && installed_socket_declares(spec, index, address, manager) {
        return None;
    }
    Some(match holders.first() {
        Some(&pid) => match comm(pid) {
            Some(name) => format!("`{name}` (pid {pid})"),
            None => format!("pid {pid}"),
        },
        None => "another program".to_string(),
    })
}

/// The processes that hold one of the socket `inodes` (those whose fds can be read).
fn socket_holders(inodes: &[u64]) -> Vec<u32> {
    let wanted: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<u32> = procs
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|fds| {
                fds.flatten().any(|fd| {
                    std::fs::read_link(fd.path())
                        .is_ok_and(|t| wanted.iter().any(|w| t.as_os_str() == w.as_str()))
                })
            })
        })
        .collect();
    pids.sort_unstable();
    pids
}

/// The process's name (`/proc/PID/comm`).
fn comm(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim_end().to_string())
}

/// Whether the process runs in one of the app's instance units.
fn in_app_unit(pid: u32, names: &UnitNames) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup")).is_ok_and(|cgroups| {
        cgroups.lines().any(|line| {
            line.rsplit('/')
                .next()
                .is_some_and(|unit| names.instance_of(unit).is_some())
        })
    })
}

/// Whether the app's installed socket unit for listen entry `index` listens on `address`.
fn installed_socket_declares(
    spec: &AppSpec,
    index: usize,
    address: &ListenAddress,
    manager: Manager,
) -> bool {
    let Ok(dir) = crate::install::UnitDir::default_for(manager) else {
        return false;
    };
    let names = UnitNames::new(spec.name.as_str());
    let fd_name = &spec.listen[index].name;
    [false, true].into_iter().any(|per_instance| {
        let file: PathBuf = dir
            .path()
            .join(names.socket_file(index, fd_name, per_instance));
        std::fs::read_to_string(file).is_ok_and(|text| {
            text.lines().any(|l| {
                l.strip_prefix("ListenStream=")
                    .and_then(|v| ListenAddress::parse(v.trim()).ok())
                    .is_some_and(|a| &a == address)
            })
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listeners_are_read_from_the_kernel_tables() {
        let tcp = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:0BB8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0 0 10 0\n   1: 0100007F:0BB9 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 4343 1 0 0 10 0\n";
        let v4 = listeners(tcp);
        assert_eq!(
            v4,
            [Listener {
                ip: "127.0.0.1".parse().unwrap(),
                port: 3000,
                inode: 4242
            }]
        );
        let tcp6 = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 00000000000000000000000000000000:0BB8 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 77 1 0 0 10 0\n";
        let any6 = &listeners(tcp6)[0];
        assert_eq!(any6.ip, "::".parse::<IpAddr>().unwrap());
        let at = |s: &str| ListenAddress::parse(s).unwrap();
        assert!(conflicts(&at("127.0.0.1:3000"), &v4[0]));
        assert!(conflicts(&at("3000"), &v4[0]));
        assert!(conflicts(&at("0.0.0.0:3000"), &v4[0]));
        assert!(!conflicts(&at("127.0.0.2:3000"), &v4[0]));
        assert!(!conflicts(&at("[::1]:3000"), &v4[0]));
        assert!(!conflicts(&at("127.0.0.1:3001"), &v4[0]));
        // A dual-stack `[::]` listener holds every address of its port.
        assert!(conflicts(&at("127.0.0.1:3000"), any6));
        assert!(conflicts(&at("[::1]:3000"), any6));
    }

    #[test]
    fn numeric_and_known_accounts_exist_and_made_up_ones_do_not() {
        assert_eq!(user_exists("root"), Some(true));
        assert_eq!(user_exists("4711"), Some(true));
        assert_eq!(user_exists("nosuchuser"), Some(false));
        assert_eq!(group_exists("root"), Some(true));
        assert_eq!(group_exists("nosuchgroup"), Some(false));
    }
}
