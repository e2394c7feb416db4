//! The small validated types an [`AppSpec`](super::AppSpec) is made of.
//!
//! Each can only be built by parsing, so code that holds one (the renderer, the D-Bus client)
//! never re-checks it. Parse errors are plain messages; the caller adds position and key.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};

use crate::systemd::syntax;

/// The longest app name accepted. Unit names may be 255 bytes; this leaves room for the
/// longest suffix sysmgr adds (`-<fdname>@<instance>.service`) and keeps `list` readable.
pub const MAX_NAME_LEN: usize = 64;

/// The most instances one app may ask for: a guard against a typo like `40000`.
pub const MAX_INSTANCES: u32 = 1024;

/// An app name, usable as a unit-name prefix: letters, digits, `-`, `_`, `.`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AppName(String);

impl AppName {
    /// Validates a name.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.is_empty() {
            return Err("is empty; give the app a name like `web` or `api-v2`".into());
        }
        if s.len() > MAX_NAME_LEN {
            return Err(format!(
                "is {} characters long; use at most {MAX_NAME_LEN}",
                s.len()
            ));
        }
        if let Some(c) = s
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
        {
            return Err(format!(
                "`{s}` contains `{c}`; use only letters, digits, `-`, `_` and `.` (it becomes the unit name `{s}@.service`)"
            ));
        }
        if s.starts_with(['.', '-']) {
            return Err(format!("`{s}` must start with a letter, a digit or `_`"));
        }
        // `sysmgr stop all` means every app, as `pm2 stop all` does.
        if s == "all" {
            return Err(
                "is reserved: `sysmgr stop all` (and restart, reload, scale, delete) means every app; choose another name".into(),
            );
        }
        Ok(Self(s.to_string()))
    }

    /// The name as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AppName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How many instances to run, as declared (PM2's `instances`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Instances {
    /// A fixed count.
    Count(NonZeroU32),
    /// `0` or `"max"`: one per usable core.
    PerCore,
    /// `-1`: one fewer than the usable cores, at least one.
    PerCoreMinusOne,
}

impl Instances {
    /// Validates PM2's integer form.
    pub fn from_int(n: i64) -> Result<Self, String> {
        match n {
            0 => Ok(Self::PerCore),
            -1 => Ok(Self::PerCoreMinusOne),
            n if n < -1 => Err(format!(
                "is `{n}`; use a count, 0 for one per usable core, or -1 for one fewer"
            )),
            n if n > i64::from(MAX_INSTANCES) => Err(format!(
                "is `{n}`; sysmgr runs at most {MAX_INSTANCES} instances of one app"
            )),
            n => Ok(Self::Count(
                NonZeroU32::new(n as u32).expect("positive, checked above"),
            )),
        }
    }
}

impl fmt::Display for Instances {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Count(n) => write!(f, "{n}"),
            Self::PerCore => f.write_str("one per usable core"),
            Self::PerCoreMinusOne => f.write_str("one fewer than the usable cores"),
        }
    }
}

/// A positive duration in milliseconds (PM2 counts in ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Millis(u64);

impl Millis {
    /// A duration of `ms` milliseconds.
    pub const fn new(ms: u64) -> Self {
        Self(ms)
    }

    /// PM2's integer form: milliseconds, positive.
    pub fn from_int(n: i64) -> Result<Self, String> {
        if n <= 0 {
            return Err(format!(
                "is `{n}`; give a positive number of milliseconds, or a string like `\"10s\"`"
            ));
        }
        Ok(Self(n as u64))
    }

    /// The string form: a whole number and a unit, `500ms`, `10s`, `2min`, `1h`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let bad = || {
            format!("`{s}` is not a duration; write a number and a unit, like `\"500ms\"`, `\"10s\"` or `\"2min\"`")
        };
        let s_trim = s.trim();
        let split = s_trim.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        let (digits, unit) = s_trim.split_at(split);
        let n: u64 = digits.parse().map_err(|_| bad())?;
        let factor = match unit.trim() {
            "ms" => 1,
            "s" | "sec" => 1_000,
            "m" | "min" => 60_000,
            "h" => 3_600_000,
            _ => return Err(bad()),
        };
        match n.checked_mul(factor) {
            Some(0) => Err(format!("`{s}` is zero; give a positive duration")),
            Some(ms) => Ok(Self(ms)),
            None => Err(format!("`{s}` is too long")),
        }
    }

    /// Milliseconds.
    pub fn as_millis(self) -> u64 {
        self.0
    }

    /// As a [`std::time::Duration`].
    pub fn duration(self) -> std::time::Duration {
        std::time::Duration::from_millis(self.0)
    }
}

/// systemd's time syntax: the shortest exact form (`1600ms`, `30s`, `2min`).
impl fmt::Display for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0;
        if ms % 60_000 == 0 {
            write!(f, "{}min", ms / 60_000)
        } else if ms % 1_000 == 0 {
            write!(f, "{}s", ms / 1_000)
        } else {
            write!(f, "{ms}ms")
        }
    }
}

/// A signal systemd can send as `KillSignal=`, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signal(&'static str);

impl Signal {
    /// SIGINT, what PM2 sends.
    pub const INT: Signal = Signal("SIGINT");

    const NAMES: &'static [&'static str] = &[
        "SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGKILL", "SIGWINCH",
        "SIGABRT", "SIGALRM", "SIGPWR",
    ];

    /// Parses `SIGINT`, `INT` or `sigint`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let upper = s.to_ascii_uppercase();
        let full = if upper.starts_with("SIG") {
            upper
        } else {
            format!("SIG{upper}")
        };
        Self::NAMES
            .iter()
            .find(|n| **n == full)
            .map(|n| Signal(n))
            .ok_or_else(|| {
                format!(
                    "`{s}` is not a signal sysmgr can send; use one of {}",
                    Self::NAMES.join(", ")
                )
            })
    }

    /// The name, `SIGINT`.
    pub fn name(self) -> &'static str {
        self.0
    }
}

/// A memory size in bytes (PM2's `max_memory_restart`: `300M`, `1G`, or bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bytes(u64);

impl Bytes {
    /// Parses `512K`, `300M`, `1G` (also with a trailing `B`), powers of 1024.
    pub fn parse(s: &str) -> Result<Self, String> {
        let bad = || {
            format!("`{s}` is not a size; write bytes or a number with K, M or G, like `\"300M\"`")
        };
        let t = s.trim().trim_end_matches(['B', 'b']);
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (digits, unit) = t.split_at(split);
        let n: u64 = digits.parse().map_err(|_| bad())?;
        let factor: u64 = match unit.trim() {
            "" => 1,
            "K" | "k" => 1 << 10,
            "M" | "m" => 1 << 20,
            "G" | "g" => 1 << 30,
            _ => return Err(bad()),
        };
        Self::from_int(n.checked_mul(factor).ok_or_else(bad)? as i64)
    }

    /// A byte count; must be at least 1 MiB, below which no real app starts.
    pub fn from_int(n: i64) -> Result<Self, String> {
        if n < 1 << 20 {
            return Err(format!(
                "is `{n}` bytes; give at least 1 MiB, e.g. `\"300M\"`"
            ));
        }
        Ok(Self(n as u64))
    }

    /// Bytes.
    pub fn get(self) -> u64 {
        self.0
    }
}

/// What `max_memory_restart` does (`memory_limit_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryLimitMode {
    /// A timer-driven check restarts an instance above the limit through its drain (one at a
    /// time, systemd's normal stop); the kernel's `MemoryMax=` stays as a backstop above it.
    Graceful,
    /// `MemoryMax=` at the limit: the kernel kills the instance, requests in flight are lost.
    Hard,
}

impl MemoryLimitMode {
    /// Parses `"graceful"` or `"hard"`.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "graceful" => Ok(Self::Graceful),
            "hard" => Ok(Self::Hard),
            _ => Err(format!(
                "is `{s}`; use `\"graceful\"` (restart through the drain, the default) or `\"hard\"` (the kernel kills at the limit)"
            )),
        }
    }

    /// The app.toml spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Graceful => "graceful",
            Self::Hard => "hard",
        }
    }
}

/// Where a socket listens.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ListenAddress {
    /// `127.0.0.1:3000` or `[::1]:3000`.
    Inet(SocketAddr),
    /// `3000`: every address (systemd binds `[::]` dual-stack).
    Port(u16),
    /// `/run/app/http.sock`.
    Unix(PathBuf),
}

impl ListenAddress {
    /// Parses one `listen` entry.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.starts_with('/') {
            if s.contains(|c: char| c.is_control()) {
                return Err(format!("`{s}` contains a control character"));
            }
            if let Some(c) = s.chars().find(|&c| syntax::is_noncharacter(c)) {
                return Err(format!(
                    "`{s}` contains the noncharacter U+{:04X}, which systemd refuses in unit files",
                    u32::from(c)
                ));
            }
            if s.ends_with('\\') || s.ends_with(char::is_whitespace) {
                return Err(format!(
                    "`{s}` ends with {}, which `ListenStream=` cannot hold (systemd would {}); rename the socket",
                    if s.ends_with('\\') { "a backslash" } else { "white space" },
                    if s.ends_with('\\') { "join the next line of the unit" } else { "drop it" },
                ));
            }
            // sockaddr_un holds 108 bytes including the NUL.
            if s.len() > 107 {
                return Err(format!(
                    "`{s}` is {} bytes long; a unix socket path holds at most 107",
                    s.len()
                ));
            }
            return Ok(Self::Unix(PathBuf::from(s)));
        }
        if let Ok(port) = s.parse::<u16>() {
            return Self::check_port(port).map(|()| Self::Port(port));
        }
        match s.parse::<SocketAddr>() {
            Ok(addr) => Self::check_port(addr.port()).map(|()| Self::Inet(addr)),
            Err(_) if s.parse::<IpAddr>().is_ok() => Err(format!(
                "`{s}` has no port; write `{}:3000`",
                if s.contains(':') { format!("[{s}]") } else { s.to_string() }
            )),
            Err(_) => Err(format!(
                "`{s}` is not an address; write `\"127.0.0.1:3000\"`, `\"[::1]:3000\"`, `\"3000\"` (every address) or an absolute unix socket path"
            )),
        }
    }

    fn check_port(port: u16) -> Result<(), String> {
        if port == 0 {
            Err("has port 0; systemd needs a fixed port".into())
        } else {
            Ok(())
        }
    }

    /// The value for `ListenStream=`.
    pub fn systemd_value(&self) -> String {
        match self {
            Self::Inet(addr) => addr.to_string(),
            Self::Port(port) => port.to_string(),
            Self::Unix(path) => super::super::systemd::syntax::path_value(&path.to_string_lossy()),
        }
    }

    /// True for unix socket paths.
    pub fn is_unix(&self) -> bool {
        matches!(self, Self::Unix(_))
    }

    /// True if two addresses would bind the same port on overlapping addresses.
    pub fn conflicts_with(&self, other: &Self) -> bool {
        let port = |a: &Self| match a {
            Self::Inet(s) => Some(s.port()),
            Self::Port(p) => Some(*p),
            Self::Unix(_) => None,
        };
        match (self, other) {
            (Self::Unix(a), Self::Unix(b)) => a == b,
            (Self::Inet(a), Self::Inet(b)) => a == b,
            _ => port(self).is_some() && port(self) == port(other),
        }
    }
}

impl fmt::Display for ListenAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Inet(addr) => write!(f, "{addr}"),
            Self::Port(port) => write!(f, "{port}"),
            Self::Unix(path) => write!(f, "{}", path.display()),
        }
    }
}

/// The name a worker looks its socket up by (`FileDescriptorName=`, `LISTEN_FDNAMES`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FdName(String);

impl FdName {
    /// `http`, the name of unnamed listen entries.
    pub fn http() -> Self {
        Self("http".into())
    }

    /// Validates a name: what systemd accepts (printable ASCII, no `:`, at most 255), further
    /// limited to what can be part of a unit name since extra names get their own socket unit.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.is_empty() || s.len() > 32 {
            return Err(format!("`{s}` must be 1 to 32 characters long"));
        }
        if s == HEALTH_FD_NAME {
            return Err(format!(
                "`{s}` is the name of the socket sysmgr's `health_check` probes; choose another name"
            ));
        }
        if let Some(c) = s
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_')))
        {
            return Err(format!(
                "`{s}` contains `{c}`; use letters, digits, `-` and `_`"
            ));
        }
        Ok(Self(s.to_string()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FdName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The `FileDescriptorName=` of an instance's own health socket (`health_check`): the app
/// finds it in `LISTEN_FDNAMES` and serves HTTP on it like on its other sockets.
pub const HEALTH_FD_NAME: &str = "sysmgr-health";

/// `health_check`: what `sysmgr reload` asks each new instance before it moves on, and how
/// long the instance has to pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// How the instance is asked.
    pub probe: HealthProbe,
    /// How long after the instance is ready (and stayed up for the min-ready window) it may
    /// take to pass.
    pub timeout: Millis,
}

/// How a new instance is asked whether it is healthy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthProbe {
    /// `GET PATH` on the instance's own health socket; 2xx or 3xx passes. Path and query,
    /// starting with `/`.
    Http(String),
    /// A command run as a oneshot unit with the app's user, directory, environment and
    /// hardening, told which instance (`SYSMGR_INSTANCE`); exit status 0 passes.
    Command(Vec<String>),
}

impl HealthCheck {
    /// How long an instance has by default: a few attempts of a warming-up app.
    pub const DEFAULT_TIMEOUT: Millis = Millis::new(5_000);
    /// The longest allowed: the rollout waits this long per instance at worst.
    pub const MAX_TIMEOUT: Millis = Millis::new(600_000);

    /// Checks the path: what can stand in an HTTP request line as is (RFC 3986's path and
    /// query characters, `%`-escapes included), so what the app receives is what was written.
    pub fn check_path(path: &str) -> Result<(), String> {
        if !path.starts_with('/') {
            return Err(format!(
                "is `{}`; give an HTTP path starting with `/`, like `\"/health\"`",
                path.escape_debug()
            ));
        }
        if path.len() > 1024 {
            return Err(
                "is longer than 1024 characters; give a short path like `\"/health\"`".into(),
            );
        }
        let allowed = |c: char| c.is_ascii_alphanumeric() || "-._~!$&'()*+,;=:@/?%".contains(c);
        if let Some(c) = path.chars().find(|&c| !allowed(c)) {
            return Err(format!(
                "`{}` contains `{}`; write it as in a URL, e.g. a space as `%20`",
                path.escape_debug(),
                c.escape_debug()
            ));
        }
        Ok(())
    }
}

/// How the listening sockets are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketMode {
    /// One `NAME.socket` whose fds every instance shares; the kernel queues each connection
    /// once and whichever worker calls `accept()` first takes it.
    Shared,
    /// One `NAME@N.socket` per instance with `ReusePort=yes`; the kernel hashes connections
    /// across the instances' sockets.
    PerInstance,
}

impl SocketMode {
    /// Parses `"shared"` or `"per-instance"`.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "shared" => Ok(Self::Shared),
            "per-instance" => Ok(Self::PerInstance),
            _ => Err(format!(
                "is `{s}`; use `\"shared\"` (one socket for all instances) or `\"per-instance\"` (one `ReusePort` socket each)"
            )),
        }
    }

    /// The app.toml spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Shared => "shared",
            Self::PerInstance => "per-instance",
        }
    }
}

/// How much of systemd's sandboxing an instance gets (`hardening`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Hardening {
    /// None: the units sysmgr generated before it hardened them.
    Off,
    /// The profile real web workers run under (docs/hardening.md).
    Default,
    /// The default profile plus no network of its own, no home directories, and a narrower
    /// system call filter: for workers that only serve the sockets systemd hands them.
    Strict,
}

impl Hardening {
    /// Parses `"default"`, `"strict"` or `"off"`.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "default" => Ok(Self::Default),
            "strict" => Ok(Self::Strict),
            "off" => Ok(Self::Off),
            _ => Err(format!(
                "is `{s}`; use `\"default\"`, `\"strict\"` (no network of its own) or `\"off\"` (no sandboxing)"
            )),
        }
    }

    /// The app.toml spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Default => "default",
            Self::Strict => "strict",
        }
    }
}

/// A directory name below `/var/lib` for `StateDirectory=`: relative, `/`-separated parts of
/// letters, digits, `-`, `_`, `.`, no `.` or `..` part (systemd refuses those).
pub fn check_state_directory(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err(
            "is empty; give a directory name like `\"web\"` (it becomes `/var/lib/web`)".into(),
        );
    }
    if s.starts_with('/') {
        return Err(format!(
            "is the absolute path `{s}`; give a name below `/var/lib`, like `\"{}\"`",
            s.trim_start_matches('/')
                .rsplit('/')
                .next()
                .unwrap_or("web")
        ));
    }
    let ok = s.split('/').all(|part| {
        !part.is_empty()
            && part != "."
            && part != ".."
            && part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "is `{s}`; use `/`-separated names of letters, digits, `-`, `_` and `.` (no `..`)"
        ))
    }
}

/// An address family for `RestrictAddressFamilies=`: `AF_` and capitals or digits.
pub fn check_address_family(s: &str) -> Result<(), String> {
    let ok = s.strip_prefix("AF_").is_some_and(|rest| {
        !rest.is_empty()
            && rest
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
    });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "has `{s}`, which is not an address family; write it as systemd does, e.g. `\"AF_NETLINK\"`"
        ))
    }
}

/// A user or group: a name systemd accepts, or a numeric id.
pub fn check_user_name(s: &str) -> Result<(), String> {
    let valid = !s.is_empty()
        && s.len() <= 31
        && (s.chars().all(|c| c.is_ascii_digit())
            || (s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "`{s}` is not a valid user or group name; use letters, digits, `_` and `-`, or a numeric id"
        ))
    }
}

/// Resolves a possibly relative directory against the directory of the app.toml, as a path a
/// unit can hold ([`unit_path`]).
pub fn absolute_dir(base: &Path, s: &str) -> Result<PathBuf, String> {
    if s.is_empty() {
        return Err("is empty; give a directory".into());
    }
    if s.contains(|c: char| c.is_control()) {
        return Err(format!("`{s}` contains a control character"));
    }
    let path = Path::new(s);
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    };
    unit_path(&joined).map_err(|why| format!("`{s}` {why}"))
}

/// The longest path and path component systemd accepts (`PATH_MAX`, `NAME_MAX`).
const PATH_MAX: usize = 4095;
const NAME_MAX: usize = 255;

/// An absolute path as a setting that takes one path (`WorkingDirectory=`) can hold, with `.`
/// and `..` resolved by name (systemd refuses paths that are not normalized, so `cwd = ".."`
/// would make a unit that does not load); the error says why it cannot.
///
/// systemd drops white space at the end of a setting, joins a line that ends with a backslash
/// with the next one, and takes no quotes or escapes in these settings: such paths cannot be
/// written at all.
pub fn unit_path(path: &Path) -> Result<PathBuf, String> {
    use std::path::Component;
    let mut out = PathBuf::from("/");
    for part in path.components() {
        match part {
            Component::Normal(name) => out.push(name),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    let Some(text) = out.to_str() else {
        return Err("is not UTF-8, which a unit file is".into());
    };
    if text.contains(|c: char| c.is_control()) {
        return Err("contains a control character".into());
    }
    if let Some(c) = text.chars().find(|&c| syntax::is_noncharacter(c)) {
        return Err(format!(
            "contains the noncharacter U+{:04X}, which systemd refuses in unit files",
            u32::from(c)
        ));
    }
    if text.ends_with('\\') {
        return Err(
            "ends with a backslash, which systemd would join with the next line of the unit".into(),
        );
    }
    if text.ends_with(char::is_whitespace) {
        return Err("ends with white space, which systemd would drop from the setting".into());
    }
    if text.len() > PATH_MAX || text.split('/').any(|name| name.len() > NAME_MAX) {
        return Err(format!(
            "is too long for systemd: at most {PATH_MAX} bytes, {NAME_MAX} for each name"
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(Millis::parse("500ms").unwrap().as_millis(), 500);
        assert_eq!(Millis::parse("10s").unwrap().as_millis(), 10_000);
        assert_eq!(Millis::parse("2min").unwrap().as_millis(), 120_000);
        assert_eq!(Millis::parse("1h").unwrap().as_millis(), 3_600_000);
        assert!(Millis::parse("10").is_err());
        assert!(Millis::parse("0s").is_err());
        assert!(Millis::parse("1.5s").is_err());
        assert_eq!(Millis::new(1600).to_string(), "1600ms");
        assert_eq!(Millis::new(30_000).to_string(), "30s");
        assert_eq!(Millis::new(120_000).to_string(), "2min");
    }

    #[test]
    fn listen_addresses() {
        assert_eq!(
            ListenAddress::parse("127.0.0.1:3000")
                .unwrap()
                .systemd_value(),
            "127.0.0.1:3000"
        );
        assert_eq!(
            ListenAddress::parse("[::1]:3000").unwrap().systemd_value(),
            "[::1]:3000"
        );
        assert_eq!(
            ListenAddress::parse("3000").unwrap(),
            ListenAddress::Port(3000)
        );
        assert!(ListenAddress::parse("/run/a%b.sock").unwrap().is_unix());
        assert_eq!(
            ListenAddress::parse("/run/a%b.sock")
                .unwrap()
                .systemd_value(),
            "/run/a%%b.sock"
        );
        assert!(ListenAddress::parse("localhost:3000").is_err());
        assert!(ListenAddress::parse("127.0.0.1").is_err());
        assert!(ListenAddress::parse("0").is_err());
        let port = ListenAddress::Port(3000);
        assert!(port.conflicts_with(&ListenAddress::parse("127.0.0.1:3000").unwrap()));
        assert!(!port.conflicts_with(&ListenAddress::parse("127.0.0.1:3001").unwrap()));
    }

    #[test]
    fn sizes_and_signals() {
        assert_eq!(Bytes::parse("300M").unwrap().get(), 300 << 20);
        assert_eq!(Bytes::parse("1G").unwrap().get(), 1 << 30);
        assert!(Bytes::parse("12").is_err());
        assert_eq!(Signal::parse("term").unwrap().name(), "SIGTERM");
        assert_eq!(Signal::parse("SIGINT").unwrap(), Signal::INT);
        assert!(Signal::parse("SIGFOO").is_err());
    }
}
