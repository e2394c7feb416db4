//! What a process started by systemd actually received, as a JSON report.
//!
//! sysmgr's promises are about the process systemd spawns: its argv and environment are exactly
//! what the app file declared, it inherits the listening sockets (`LISTEN_FDS`, `LISTEN_FDNAMES`)
//! and its readiness is awaited. The integration tests check those promises against a real
//! systemd by running the `sysmgr-probe` binary as the app's command; it captures a
//! [`ProbeReport`] and writes it where the test can read it back. The encoding lives here, in one
//! place, so the writer (the probe) and the reader (the tests) cannot drift apart.
//!
//! # JSON format
//!
//! ```json
//! {"argv": ["/path/sysmgr-probe", "a b", [255, 0]],
//!  "env": {"LISTEN_FDS": "1", "ODD": [104, 105, 255]},
//!  "env_non_utf8_names": [[[255], "value"]],
//!  "pid": 42, "listen_fds": 1, "fdnames": ["http"],
//!  "fds": [{"fd": 3, "local_addr": "127.0.0.1:8080", "nonblocking": false}]}
//! ```
//!
//! Arguments and environment are OS strings: arbitrary bytes except NUL. Each one is written as a
//! JSON string when it is valid UTF-8 and as an array of byte values otherwise, so the encoding is
//! lossless and a reader can tell the two apart by type alone (no escape convention to undo).
//! JSON object keys must be strings, so a variable whose *name* is not UTF-8 goes to
//! `env_non_utf8_names` as a `[name, value]` pair instead of into `env`.
//!
//! `listen_fds` follows `sd_listen_fds(3)`: it is the parsed `LISTEN_FDS` only when `LISTEN_PID`
//! names this process, and `null` otherwise. The raw variables stay in `env` either way.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

/// The first file descriptor systemd passes (`SD_LISTEN_FDS_START`).
pub const LISTEN_FDS_START: i32 = 3;

/// Everything the probe observed about its own process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeReport {
    /// `argv[0..]`, byte for byte.
    pub argv: Vec<OsString>,
    /// The whole environment, byte for byte.
    pub env: BTreeMap<OsString, OsString>,
    /// The process ID as the process itself sees it (inside a sandbox: in its PID namespace).
    pub pid: u32,
    /// `LISTEN_FDS` when `LISTEN_PID` is this process, as `sd_listen_fds(3)` would count them.
    pub listen_fds: Option<u32>,
    /// `LISTEN_FDNAMES` split at `:`, when set.
    pub fdnames: Option<Vec<String>>,
    /// What the passed descriptors really are (one entry per descriptor `listen_fds` counts).
    pub fds: Vec<PassedFd>,
}

/// One descriptor received from systemd, inspected with `getsockname(2)` and `fcntl(2)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassedFd {
    /// The descriptor number (3, 4, ...).
    pub fd: i32,
    /// `ip:port` for an inet socket, the path for a unix socket, `None` when it is not a socket
    /// or the address family is something else.
    pub local_addr: Option<String>,
    /// Whether `O_NONBLOCK` is set: systemd hands over blocking sockets unless the service has
    /// `NonBlocking=yes`, which a socket shared by several instances needs.
    pub nonblocking: bool,
}

/// Why a report could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The file could not be read.
    #[error("cannot read probe report `{path}`")]
    Read {
        /// The report's path.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The text is not JSON.
    #[error("probe report is not valid JSON")]
    Json(#[from] serde_json::Error),
    /// The JSON does not have the shape the probe writes.
    #[error("probe report field `{field}` is malformed: expected {expected}")]
    Field {
        /// Which field, e.g. `argv` or `env.PATH`.
        field: String,
        /// What was expected there.
        expected: &'static str,
    },
}

impl ProbeReport {
    /// Observes the current process: arguments, environment, PID and the descriptors passed by
    /// systemd.
    pub fn capture() -> Self {
        let argv: Vec<OsString> = std::env::args_os().collect();
        let env: BTreeMap<OsString, OsString> = std::env::vars_os().collect();
        let pid = std::process::id();
        let listen_fds = passed_fd_count(&env, pid);
        let fdnames = env_str(&env, "LISTEN_FDNAMES")
            .map(|names| names.split(':').map(String::from).collect());
        let count = i32::try_from(listen_fds.unwrap_or(0)).unwrap_or(i32::MAX);
        let fds = (LISTEN_FDS_START..LISTEN_FDS_START.saturating_add(count))
            .map(PassedFd::inspect)
            .collect();
        Self {
            argv,
            env,
            pid,
            listen_fds,
            fdnames,
            fds,
        }
    }

    /// The value of an environment variable, when it is set and valid UTF-8.
    pub fn var(&self, name: &str) -> Option<&str> {
        env_str(&self.env, name)
    }

    /// Encodes the report as described in the [module documentation](self).
    pub fn to_json(&self) -> Value {
        let mut env = Map::new();
        let mut odd_names = Vec::new();
        for (name, value) in &self.env {
            match name.to_str() {
                Some(name) => {
                    env.insert(name.to_owned(), encode_os(value));
                }
                None => odd_names.push(json!([encode_os(name), encode_os(value)])),
            }
        }
        let fds: Vec<Value> = self
            .fds
            .iter()
            .map(|fd| json!({"fd": fd.fd, "local_addr": fd.local_addr, "nonblocking": fd.nonblocking}))
            .collect();
        json!({
            "argv": self.argv.iter().map(|a| encode_os(a)).collect::<Vec<_>>(),
            "env": env,
            "env_non_utf8_names": odd_names,
            "pid": self.pid,
            "listen_fds": self.listen_fds,
            "fdnames": self.fdnames,
            "fds": fds,
        })
    }

    /// Decodes what [`to_json`](Self::to_json) wrote.
    pub fn from_json(text: &str) -> Result<Self, ReportError> {
        let value: Value = serde_json::from_str(text)?;
        let malformed = |field: &str, expected| ReportError::Field {
            field: field.to_owned(),
            expected,
        };
        let argv = value["argv"]
            .as_array()
            .ok_or_else(|| malformed("argv", "an array"))?
            .iter()
            .enumerate()
            .map(|(i, a)| decode_os(a).ok_or_else(|| malformed(&format!("argv[{i}]"), OS_STRING)))
            .collect::<Result<Vec<_>, _>>()?;
        let mut env = BTreeMap::new();
        for (name, v) in value["env"]
            .as_object()
            .ok_or_else(|| malformed("env", "an object"))?
        {
            let decoded =
                decode_os(v).ok_or_else(|| malformed(&format!("env.{name}"), OS_STRING))?;
            env.insert(OsString::from(name), decoded);
        }
        let odd_names = value["env_non_utf8_names"]
            .as_array()
            .ok_or_else(|| malformed("env_non_utf8_names", "an array"))?;
        for pair in odd_names {
            let pair = match pair.as_array().map(Vec::as_slice) {
                Some([name, value]) => decode_os(name).zip(decode_os(value)),
                _ => None,
            };
            let (name, value) =
                pair.ok_or_else(|| malformed("env_non_utf8_names", "[name, value] pairs"))?;
            env.insert(name, value);
        }
        let pid = value["pid"]
            .as_u64()
            .and_then(|p| u32::try_from(p).ok())
            .ok_or_else(|| malformed("pid", "a process ID"))?;
        let listen_fds = match &value["listen_fds"] {
            Value::Null => None,
            n => Some(
                n.as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| malformed("listen_fds", "a count or null"))?,
            ),
        };
        let fdnames = match &value["fdnames"] {
            Value::Null => None,
            names => Some(
                names
                    .as_array()
                    .and_then(|names| names.iter().map(|n| n.as_str().map(String::from)).collect())
                    .ok_or_else(|| malformed("fdnames", "an array of strings or null"))?,
            ),
        };
        let fds = value["fds"]
            .as_array()
            .ok_or_else(|| malformed("fds", "an array"))?
            .iter()
            .map(|fd| {
                let number = fd["fd"].as_i64().and_then(|n| i32::try_from(n).ok());
                let local_addr = match &fd["local_addr"] {
                    Value::Null => Some(None),
                    addr => addr.as_str().map(|a| Some(a.to_owned())),
                };
                let nonblocking = fd["nonblocking"].as_bool();
                match (number, local_addr, nonblocking) {
                    (Some(fd), Some(local_addr), Some(nonblocking)) => Ok(PassedFd {
                        fd,
                        local_addr,
                        nonblocking,
                    }),
                    _ => Err(malformed(
                        "fds",
                        "objects with `fd`, `local_addr`, `nonblocking`",
                    )),
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            argv,
            env,
            pid,
            listen_fds,
            fdnames,
            fds,
        })
    }

    /// Reads and decodes a report file.
    pub fn read(path: &Path) -> Result<Self, ReportError> {
        let text = std::fs::read_to_string(path).map_err(|source| ReportError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_json(&text)
    }
}

impl PassedFd {
    /// Looks at descriptor `fd` of the current process.
    pub fn inspect(fd: i32) -> Self {
        // SAFETY: F_GETFL only reads the descriptor's flags; a closed fd yields -1.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
        Self {
            fd,
            local_addr: local_addr(fd),
            nonblocking: flags != -1 && flags & libc::O_NONBLOCK != 0,
        }
    }
}

/// How many descriptors systemd passed to process `pid`, by the rules of `sd_listen_fds(3)`:
/// `LISTEN_FDS` counts only when `LISTEN_PID` names this very process, because the variables are
/// inherited by children that did not receive the descriptors.
fn passed_fd_count(env: &BTreeMap<OsString, OsString>, pid: u32) -> Option<u32> {
    let listen_pid: u32 = env_str(env, "LISTEN_PID")?.parse().ok()?;
    if listen_pid != pid {
        return None;
    }
    env_str(env, "LISTEN_FDS")?.parse().ok()
}

fn env_str<'a>(env: &'a BTreeMap<OsString, OsString>, name: &str) -> Option<&'a str> {
    env.get(OsStr::new(name)).and_then(|v| v.to_str())
}

const OS_STRING: &str = "a string or an array of bytes";

/// A string when the bytes are UTF-8, their values otherwise (see the module documentation).
fn encode_os(s: &OsStr) -> Value {
    match s.to_str() {
        Some(s) => Value::from(s),
        None => Value::from(s.as_bytes().to_vec()),
    }
}

fn decode_os(v: &Value) -> Option<OsString> {
    match v {
        Value::String(s) => Some(OsString::from(s)),
        Value::Array(bytes) => bytes
            .iter()
            .map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
            .collect::<Option<Vec<u8>>>()
            .map(OsString::from_vec),
        _ => None,
    }
}

/// The local address of socket `fd` in a readable form, `None` if it is not an inet or unix
/// socket.
fn local_addr(fd: i32) -> Option<String> {
    // SAFETY: sockaddr_storage is plain data for which all-zero is a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: the pointer and length describe `storage`, which outlives the call.
    let rc = unsafe { libc::getsockname(fd, std::ptr::addr_of_mut!(storage).cast(), &mut len) };
    if rc != 0 {
        return None;
    }
    match i32::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the kernel wrote a sockaddr_in, as ss_family says.
            let sin: libc::sockaddr_in =
                unsafe { std::ptr::read(std::ptr::addr_of!(storage).cast()) };
            let ip = std::net::Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
            Some(std::net::SocketAddrV4::new(ip, u16::from_be(sin.sin_port)).to_string())
        }
        libc::AF_INET6 => {
            // SAFETY: the kernel wrote a sockaddr_in6, as ss_family says.
            let sin6: libc::sockaddr_in6 =
                unsafe { std::ptr::read(std::ptr::addr_of!(storage).cast()) };
            let ip = std::net::Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            let addr = std::net::SocketAddrV6::new(
                ip,
                u16::from_be(sin6.sin6_port),
                0,
                sin6.sin6_scope_id,
            );
            Some(addr.to_string())
        }
        libc::AF_UNIX => {
            // SAFETY: the kernel wrote a sockaddr_un of `len` bytes, as ss_family says.
            let sun: libc::sockaddr_un =
                unsafe { std::ptr::read(std::ptr::addr_of!(storage).cast()) };
            let offset = std::mem::size_of::<libc::sa_family_t>();
            let path_len = (len as usize)
                .saturating_sub(offset)
                .min(sun.sun_path.len());
            let bytes: Vec<u8> = sun.sun_path[..path_len].iter().map(|&c| c as u8).collect();
            // An abstract name starts with NUL; show it the way systemd writes it, with `@`.
            Some(match bytes.split_first() {
                Some((0, name)) => format!("@{}", String::from_utf8_lossy(name)),
                _ => String::from_utf8_lossy(bytes.split(|&b| b == 0).next().unwrap_or(&[]))
                    .into_owned(),
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ProbeReport {
        ProbeReport {
            argv: vec![
                OsString::from("/bin/probe"),
                OsString::from("two words"),
                OsString::from_vec(vec![b'a', 0xff, b'b']),
                OsString::new(),
            ],
            env: BTreeMap::from([
                (OsString::from("LISTEN_FDS"), OsString::from("1")),
                (OsString::from("QUOTED"), OsString::from("\"$x\" \\ %i")),
                (
                    OsString::from("BINARY"),
                    OsString::from_vec(vec![0xc3, 0x28]),
                ),
                (OsString::from_vec(vec![0xfe, b'N']), OsString::from("v")),
            ]),
            pid: 7,
            listen_fds: Some(1),
            fdnames: Some(vec!["http".into()]),
            fds: vec![PassedFd {
                fd: 3,
                local_addr: Some("127.0.0.1:8080".into()),
                nonblocking: true,
            }],
        }
    }

    #[test]
    fn json_round_trip_keeps_every_byte() {
        let report = sample();
        let text = report.to_json().to_string();
        assert_eq!(ProbeReport::from_json(&text).unwrap(), report);
    }

    #[test]
    fn utf8_stays_readable_and_other_bytes_become_arrays() {
        let json = sample().to_json();
        assert_eq!(json["argv"][1], "two words");
        assert_eq!(json["argv"][2], json!([97, 255, 98]));
        assert_eq!(json["env"]["BINARY"], json!([0xc3, 0x28]));
        assert_eq!(json["env_non_utf8_names"], json!([[[0xfe, 78], "v"]]));
    }

    #[test]
    fn malformed_field_is_named() {
        let err = ProbeReport::from_json(r#"{"argv": [1.5]}"#).unwrap_err();
        assert_eq!(
            err.to_string(),
            "probe report field `argv[0]` is malformed: expected a string or an array of bytes"
        );
    }

    #[test]
    fn listen_fds_count_only_when_listen_pid_is_this_process() {
        let env = |listen_pid: &str| {
            BTreeMap::from([
                (OsString::from("LISTEN_PID"), OsString::from(listen_pid)),
                (OsString::from("LISTEN_FDS"), OsString::from("2")),
            ])
        };
        assert_eq!(passed_fd_count(&env("41"), 41), Some(2));
        // Inherited from a parent that received them: not ours.
        assert_eq!(passed_fd_count(&env("40"), 41), None);
        assert_eq!(passed_fd_count(&env("garbage"), 41), None);
        assert_eq!(passed_fd_count(&BTreeMap::new(), 41), None);
    }

    #[test]
    fn inspect_reports_address_and_blocking_mode() {
        use std::os::fd::AsRawFd;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let fd = PassedFd::inspect(listener.as_raw_fd());
        assert_eq!(fd.local_addr.as_deref(), Some(addr.as_str()));
        assert!(!fd.nonblocking);
        listener.set_nonblocking(true).unwrap();
        assert!(PassedFd::inspect(listener.as_raw_fd()).nonblocking);
    }
}
