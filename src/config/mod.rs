//! app.toml: from text to a validated [`AppSpec`], in three stages (as zincati's config).
//!
//! 1. `raw.rs`: the TOML document, parsed with spans on every key and value
//!    (`toml::de::DeTable`), its top-level keys sorted into known keys, `[env_PROFILE]` tables
//!    and errors that say why (PM2 keys sysmgr does not carry get their own explanation).
//! 2. `validate.rs`: each known key checked into a small validated type ([`types`]).
//! 3. [`derive`](mod@derive): what follows from the validated values (the `--env` profile
//!    merged over `[env]`, the instance count on this machine).
//!
//! [`keys`] is the one table of keys: what each becomes in the units, read by the renderer
//! and by `sysmgr check`. The renderer and the D-Bus code accept only the resulting
//! [`AppSpec`]. Parsing is pure: text in, spec and diagnostics out.

pub mod calendar;
pub mod deploy;
pub mod derive;
pub mod diag;
pub mod ecosystem;
pub mod hardening;
pub mod keys;
mod raw;
pub mod types;
mod validate;

use std::path::{Path, PathBuf};

pub use calendar::Schedule;
pub use derive::{is_node_program, BridgePaths, Runtime};
use diag::Reporter;
pub use diag::{Diagnostic, Diagnostics, Places, Severity};
pub use types::{
    AppName, Bytes, FdName, Hardening, HealthCheck, HealthProbe, Instances, ListenAddress,
    MemoryLimitMode, Millis, Signal, SocketMode, HEALTH_FD_NAME,
};

/// With `memory_limit_mode = "graceful"`, the kernel's `MemoryMax=` backstop is this many
/// percent of `max_memory_restart`: the graceful check restarts an instance at the limit,
/// the kernel kills it only if it keeps growing past half as much again before its drain
/// ends.
pub const MEMORY_BACKSTOP_PERCENT: u64 = 150;

/// How often the graceful memory check runs, in seconds (its timer's `OnUnitActiveSec=`).
pub const MEMORY_CHECK_SECS: u64 = 5;

/// PM2's default `kill_timeout`: how long a worker gets to drain before SIGKILL.
pub const DEFAULT_KILL_TIMEOUT: Millis = Millis::new(1600);
/// How long a new instance gets to send `READY=1`. PM2 waits 3 s and then carries on as if
/// ready; sysmgr fails the start instead, so it allows longer by default.
pub const DEFAULT_LISTEN_TIMEOUT: Millis = Millis::new(30_000);
/// PM2's default `max_restarts`.
pub const DEFAULT_MAX_RESTARTS: u32 = 16;

/// The crash-loop brake that `max_restarts` sets, shared by the units that configure it
/// (`keys.rs`) and `sysmgr exec`, which applies it (`cli/exec.rs`). It is not systemd's start
/// limit: an instance that hits that makes systemd fail every socket that activates it, the
/// shared socket too (`socket_trigger_notify` in systemd's `src/core/socket.c`).
pub mod brake {
    /// Starts closer together than this make a streak.
    pub const WINDOW_SECS: u64 = 10;
    /// `sysmgr exec` exits with this when it refuses a start; the units list it in
    /// `RestartPreventExitStatus=`, so the instance ends `failed` instead of restarting.
    pub const EXIT_STATUS: u8 = 250;
    /// The environment variable that carries `max_restarts` to `sysmgr exec`.
    pub const MAX_VAR: &str = "SYSMGR_MAX_RESTARTS";
    /// The environment variable naming the directory where `sysmgr exec` keeps the streak.
    pub const DIR_VAR: &str = "SYSMGR_RESTARTS_DIR";
    /// That directory below the manager's runtime directory (`%t`): a `RuntimeDirectory=` of
    /// the instance (`%n` is its unit name), kept across its restarts and removed when it stops.
    /// Not below `/run/sysmgr`, which holds the locks and may be closed to other users: the
    /// parents systemd makes are open to all, and the directory itself is the instance's user's.
    pub const DIR: &str = "sysmgr-restarts/%n";
    /// The file in it that holds the streak.
    pub const FILE: &str = "starts";

    /// Where the streak of `unit` is kept, below the manager's runtime directory.
    pub fn file(runtime_dir: &std::path::Path, unit: &str) -> std::path::PathBuf {
        runtime_dir.join(DIR.replace("%n", unit)).join(FILE)
    }
}
/// The oldest systemd the generated units target unless `systemd_version` says otherwise.
pub const MIN_SYSTEMD: u32 = 239;

/// One socket the app listens on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listen {
    /// Where.
    pub address: ListenAddress,
    /// The `FileDescriptorName=` workers look it up by.
    pub name: FdName,
}

/// A validated app: everything the renderer and the controller need, nothing unchecked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppSpec {
    /// The app.toml it came from, absolute.
    pub source: PathBuf,
    /// Unit-name prefix.
    pub name: AppName,
    /// Human description; defaults to the name.
    pub description: Option<String>,
    /// argv, non-empty, argv\[0\] absolute or a bare name looked up in `PATH`.
    pub command: Vec<String>,
    /// Working directory, absolute (relative paths are taken from the app.toml's directory,
    /// which is also the default).
    pub cwd: PathBuf,
    /// `User=`.
    pub user: Option<String>,
    /// `Group=`.
    pub group: Option<String>,
    /// How many instances, as declared.
    pub instances: Instances,
    /// The variable that carries the instance number (PM2's `instance_var`).
    pub instance_var: String,
    /// Listening sockets; empty means the app is not socket-activated.
    pub listen: Vec<Listen>,
    /// Shared or per-instance sockets.
    pub socket_mode: SocketMode,
    /// `Type=notify` when true.
    pub wait_ready: bool,
    /// `TimeoutStartSec=`.
    pub listen_timeout: Millis,
    /// `TimeoutStopSec=`.
    pub kill_timeout: Millis,
    /// `KillSignal=`.
    pub kill_signal: Signal,
    /// `Restart=always` when true.
    pub autorestart: bool,
    /// `RestartSec=`, systemd's default when `None`.
    pub restart_delay: Option<Millis>,
    /// The crash-loop brake of `sysmgr exec` ([`brake`]): starts allowed in a row.
    pub max_restarts: u32,
    /// PM2's `max_memory_restart`: the memory an instance may use before it is restarted.
    pub max_memory_restart: Option<Bytes>,
    /// How it is restarted: through its drain (a timer-driven check, `MemoryMax=` as a
    /// backstop) or by the kernel at the limit.
    pub memory_limit_mode: MemoryLimitMode,
    /// PM2's `cron_restart`: when a timer runs a graceful `sysmgr reload`.
    pub cron_restart: Option<Schedule>,
    /// `RestartPreventExitStatus=`.
    pub stop_exit_codes: Vec<u8>,
    /// `WatchdogSec=`.
    pub watchdog: Option<Millis>,
    /// What `sysmgr reload` asks each new instance before it moves on.
    pub health_check: Option<HealthCheck>,
    /// The oldest systemd the units must work on.
    pub systemd_version: u32,
    /// `[env]` merged with the selected `[env_<profile>]`, in declaration order.
    pub env: Vec<(String, String)>,
    /// The profile that was merged, if any.
    pub profile: Option<String>,
    /// How instances are started (derived from `command`).
    pub runtime: Runtime,
    /// PM2's `shutdown_with_message`: a Node app also gets the `shutdown` message.
    pub shutdown_with_message: bool,
    /// The sandboxing profile ([`hardening`]).
    pub hardening: Hardening,
    /// `DynamicUser=yes`: a user made up for each start, no files of its own outside
    /// `state_directory`.
    pub dynamic_user: bool,
    /// `StateDirectory=`: a directory below `/var/lib` the instances may write.
    pub state_directory: Option<String>,
    /// `ReadWritePaths=`: absolute paths the instances may write.
    pub writable_paths: Vec<PathBuf>,
    /// Address families allowed besides the profile's (`RestrictAddressFamilies=`).
    pub address_families: Vec<String>,
    /// `[unit.service]`: raw `Directive=value` settings, checked, in declaration order.
    pub unit_service: Vec<(String, String)>,
    /// `[deploy.ENV]`: where `sysmgr deploy ENV` ships the app; nothing in the units.
    pub deploy: Vec<deploy::DeployEnv>,
}

impl AppSpec {
    /// The kernel's `MemoryMax=`: the limit itself in `hard` mode, the backstop
    /// ([`MEMORY_BACKSTOP_PERCENT`] of it) in `graceful` mode; `None` without a limit.
    pub fn memory_max(&self) -> Option<u64> {
        let limit = self.max_memory_restart?.get();
        Some(match self.memory_limit_mode {
            MemoryLimitMode::Hard => limit,
            MemoryLimitMode::Graceful => limit.saturating_mul(MEMORY_BACKSTOP_PERCENT) / 100,
        })
    }

    /// The limit the graceful check restarts instances at, when it runs.
    pub fn graceful_memory_limit(&self) -> Option<u64> {
        (self.memory_limit_mode == MemoryLimitMode::Graceful)
            .then_some(self.max_memory_restart?.get())
    }
}

/// What parsing needs besides the text.
#[derive(Debug, Clone, Default)]
pub struct ParseOptions {
    /// `--env PROFILE`: merge `[env_PROFILE]` over `[env]`.
    pub profile: Option<String>,
    /// Units for the user manager: `user` and `group` cannot apply.
    pub user_manager: bool,
    /// Where sysmgr and its Node bridge are, for apps whose program is `node`.
    pub bridge: BridgePaths,
    /// The systemd the units are for when the file has no `systemd_version`: the installed
    /// one ([`MIN_SYSTEMD`] when unknown, and never below it).
    pub systemd: Option<u32>,
}

/// A spec and the warnings found on the way.
#[derive(Debug, Clone)]
pub struct Parsed {
    /// The validated app.
    pub spec: AppSpec,
    /// Warnings only (errors make [`parse`] fail).
    pub warnings: Diagnostics,
    /// Where the keys that name things on the machine are, for [`crate::host`]'s checks.
    pub places: Places,
}

/// The largest app file sysmgr reads. Real ones are a few hundred bytes; the bound keeps a
/// wrong path (`/dev/zero`, a log file) from being read until memory runs out.
pub const MAX_APP_FILE: u64 = 1024 * 1024;

/// Reads an app file: a regular file (a FIFO would block for ever, a device may never end)
/// of at most [`MAX_APP_FILE`] bytes.
fn read_app_file(path: &Path) -> Result<String, LoadError> {
    use std::io::Read as _;
    use std::os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _};
    let read_error = |source| LoadError::Read {
        path: path.to_path_buf(),
        source,
    };
    let not_a_file = |kind: std::fs::FileType| {
        let what = if kind.is_dir() {
            "a directory"
        } else if kind.is_fifo() {
            "a FIFO"
        } else if kind.is_char_device() {
            "a character device"
        } else if kind.is_block_device() {
            "a block device"
        } else if kind.is_socket() {
            "a socket"
        } else {
            "not a regular file"
        };
        LoadError::NotAFile {
            path: path.to_path_buf(),
            what,
        }
    };
    // Opened without blocking, so a FIFO with no writer does not hang the open; then the
    // opened file itself is checked.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(read_error)?;
    let meta = file.metadata().map_err(read_error)?;
    if !meta.file_type().is_file() {
        return Err(not_a_file(meta.file_type()));
    }
    let too_large = || LoadError::TooLarge {
        path: path.to_path_buf(),
        limit: MAX_APP_FILE,
    };
    if meta.len() > MAX_APP_FILE {
        return Err(too_large());
    }
    let mut bytes = Vec::new();
    file.take(MAX_APP_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    if bytes.len() as u64 > MAX_APP_FILE {
        return Err(too_large());
    }
    String::from_utf8(bytes)
        .map_err(|e| read_error(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))
}

/// Reads and parses an app.toml from disk. `display` is how the file is named in messages.
pub fn load(path: &Path, opts: &ParseOptions) -> Result<Parsed, LoadError> {
    let text = read_app_file(path)?;
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    parse(&text, &path.display().to_string(), &absolute, opts).map_err(LoadError::Invalid)
}

/// Why an app.toml could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read `{}`: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The path is not a regular file.
    #[error("cannot read `{}`: it is {what}, not an app file; give the path of an app.toml", path.display())]
    NotAFile {
        /// The path.
        path: PathBuf,
        /// What it is: `a FIFO`, `a directory`...
        what: &'static str,
    },
    /// The file is larger than any app file.
    #[error("cannot read `{}`: it is larger than {} KiB, which no app file is; is it the right file?", path.display(), limit / 1024)]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// [`MAX_APP_FILE`].
        limit: u64,
    },
    /// The file has errors (and maybe warnings).
    #[error("{0}")]
    Invalid(Diagnostics),
}

/// An app file that cannot be read is bad input too (a wrong path): nothing was changed.
impl crate::Classify for LoadError {
    fn class(&self) -> crate::ErrorClass {
        crate::ErrorClass::Invalid
    }
}
/// Parses app.toml text. `file` names it in messages; `source` is its absolute path, whose
/// directory relative `cwd` values and the default working directory are taken from.
pub fn parse(
    text: &str,
    file: &str,
    source: &Path,
    opts: &ParseOptions,
) -> Result<Parsed, Diagnostics> {
    let mut rep = Reporter::new(file, text);
    let Some(doc) = raw::read(text, &mut rep) else {
        return Err(rep.finish());
    };
    let found = raw::sort(doc.get_ref(), &mut rep);
    let spec = validate::validate(&found, &mut rep, source, opts);
    let places = rep.places();
    let diagnostics = rep.finish();
    match spec {
        Some(spec) if !diagnostics.has_errors() => Ok(Parsed {
            spec,
            warnings: diagnostics,
            places,
        }),
        _ => Err(diagnostics),
    }
}

#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod tests;

/// Asserts that the markdown table of `file` (a path under the crate) starting at the line
/// `header` is `want`, up to the first blank line; `SYSMGR_BLESS=1` writes `want` there
/// instead. The docs' tables generated from code (keys, hardening) are kept in step by this.
#[cfg(test)]
pub(crate) fn assert_doc_table(file: &str, header: &str, want: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
    let doc = std::fs::read_to_string(&path).unwrap();
    let start = doc
        .find(header)
        .unwrap_or_else(|| panic!("{file} has no `{header}`"));
    let end = doc[start..]
        .find("\n\n")
        .map_or(doc.len(), |e| start + e + 1);
    if std::env::var_os("SYSMGR_BLESS").is_some() {
        std::fs::write(&path, format!("{}{want}{}", &doc[..start], &doc[end..])).unwrap();
        return;
    }
    assert_eq!(
        &doc[start..end],
        want,
        "{file}'s table differs from the code's; re-bless with SYSMGR_BLESS=1"
    );
}
