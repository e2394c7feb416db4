//! app.toml: from text to a validated [`AppSpec`].
//!
//! Three stages, as in zincati's config: the TOML document is parsed with spans on every key
//! and value (`toml::de::DeTable`); each known key is checked into a small validated type
//! ([`types`]) and unknown keys are errors that say why (PM2 keys sysmgr does not carry get
//! their own explanation); the renderer and the D-Bus code accept only the resulting
//! [`AppSpec`]. Parsing is pure: text in, spec and diagnostics out.

pub mod diag;
pub mod types;

use std::num::NonZeroU32;
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use crate::systemd::syntax::{self, SyntaxError};
use diag::Reporter;
pub use diag::{Diagnostic, Diagnostics, Severity};
pub use types::{AppName, Bytes, FdName, Instances, ListenAddress, Millis, Signal, SocketMode};

/// PM2's default `kill_timeout`: how long a worker gets to drain before SIGKILL.
pub const DEFAULT_KILL_TIMEOUT: Millis = Millis::new(1600);
/// How long a new instance gets to send `READY=1`. PM2 waits 3 s and then carries on as if
/// ready; sysmgr fails the start instead, so it allows longer by default.
pub const DEFAULT_LISTEN_TIMEOUT: Millis = Millis::new(30_000);
/// PM2's default `max_restarts`.
pub const DEFAULT_MAX_RESTARTS: u32 = 16;
/// The oldest systemd the generated units target unless `systemd_version` says otherwise.
pub const MIN_SYSTEMD: u32 = 239;

/// Variables sysmgr or systemd set for every instance; app.toml may not set them.
const RESERVED_ENV: &[&str] = &[
    "SYSMGR_APP",
    "SYSMGR_INSTANCE",
    "SYSMGR_KILL_TIMEOUT_MS",
    "SYSMGR_KILL_SIGNAL",
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "MAINPID",
    "INVOCATION_ID",
];

/// Every key sysmgr understands, in the order `sysmgr check` prints them.
pub const KEYS: &[&str] = &[
    "name",
    "description",
    "command",
    "cwd",
    "user",
    "group",
    "instances",
    "instance_var",
    "listen",
    "socket",
    "wait_ready",
    "listen_timeout",
    "kill_timeout",
    "kill_signal",
    "autorestart",
    "restart_delay",
    "max_restarts",
    "max_memory_restart",
    "stop_exit_codes",
    "watchdog",
    "systemd_version",
    "env",
];

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
    /// `StartLimitBurst=`.
    pub max_restarts: u32,
    /// `MemoryMax=`.
    pub max_memory_restart: Option<Bytes>,
    /// `RestartPreventExitStatus=`.
    pub stop_exit_codes: Vec<u8>,
    /// `WatchdogSec=`.
    pub watchdog: Option<Millis>,
    /// The oldest systemd the units must work on.
    pub systemd_version: u32,
    /// `[env]` merged with the selected `[env_<profile>]`, in declaration order.
    pub env: Vec<(String, String)>,
    /// The profile that was merged, if any.
    pub profile: Option<String>,
}

/// What parsing needs besides the text.
#[derive(Debug, Clone, Default)]
pub struct ParseOptions {
    /// `--env PROFILE`: merge `[env_PROFILE]` over `[env]`.
    pub profile: Option<String>,
    /// Units for the user manager: `user` and `group` cannot apply.
    pub user_manager: bool,
}

/// A spec and the warnings found on the way.
#[derive(Debug, Clone)]
pub struct Parsed {
    /// The validated app.
    pub spec: AppSpec,
    /// Warnings only (errors make [`parse`] fail).
    pub warnings: Diagnostics,
}

/// Reads and parses an app.toml from disk. `display` is how the file is named in messages.
pub fn load(path: &Path, opts: &ParseOptions) -> Result<Parsed, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
        path: path.to_path_buf(),
        source,
    })?;
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
    /// The file has errors (and maybe warnings).
    #[error("{0}")]
    Invalid(Diagnostics),
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
    let doc = match DeTable::parse(text) {
        Ok(doc) => doc,
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            let message = e.message().trim_end().replace('\n', "; ");
            rep.push(
                Severity::Error,
                span,
                None,
                format!("is not valid TOML: {message}"),
            );
            return Err(rep.finish());
        }
    };
    let spec = Checker {
        rep: &mut rep,
        source,
        opts,
    }
    .check(doc.get_ref());
    let diagnostics = rep.finish();
    match spec {
        Some(spec) if !diagnostics.has_errors() => Ok(Parsed {
            spec,
            warnings: diagnostics,
        }),
        _ => Err(diagnostics),
    }
}

type Value<'i> = Spanned<DeValue<'i>>;

/// Why a PM2 ecosystem key has no place in app.toml, and what to do instead.
fn pm2_key_advice(key: &str) -> Option<&'static str> {
    Some(match key {
        "script" | "args" | "interpreter" | "interpreter_args" | "node_args" | "exec_interpreter" => {
            "is a PM2 key; sysmgr runs `command` directly: write `command = [\"node\", \"app.js\"]`"
        }
        "watch" | "ignore_watch" | "watch_options" | "watch_delay" => {
            "is not supported: sysmgr does not watch files; run `sysmgr reload NAME` after a deploy"
        }
        "out_file" | "error_file" | "log_file" | "log" | "output" | "error" | "log_date_format"
        | "merge_logs" | "combine_logs" | "log_type" | "time" | "disable_logs" => {
            "is not supported: output goes to the journal, with timestamps and rotation; read it with `journalctl -u 'NAME@*'`"
        }
        "pid_file" => "is not supported: systemd tracks the main PID; see `sysmgr status NAME`",
        "min_uptime" => {
            "is not supported: sysmgr's crash-loop brake is `max_restarts` starts within 10 s"
        }
        "cron_restart" | "cron" => {
            "is not supported: use a systemd timer that runs `sysmgr reload NAME`"
        }
        "exp_backoff_restart_delay" => "is not supported: use `restart_delay`",
        "increment_var" => "is not supported: each instance gets `SYSMGR_INSTANCE` and `instance_var`",
        "apps" => {
            "is not supported: app.toml describes one app; write one file per app of your ecosystem file"
        }
        "env" => return None,
        "port" | "PORT" => "is not a key; declare the sockets with `listen = [\"127.0.0.1:3000\"]`",
        "namespace" | "vizion" | "autostart" | "force" | "treekill" | "shutdown_with_message"
        | "source_map_support" | "instance_id_env" | "filter_env" | "append_env_name"
        | "disable_trace" | "trace" | "deep_monitoring" | "automation" | "pmx" | "post_update"
        | "cwd_relative" | "max_memory_restart_check_interval" | "deploy" => {
            "is a PM2 key that sysmgr does not support; remove it"
        }
        _ => return None,
    })
}

/// The closest known key, for "did you mean".
fn suggestion(key: &str) -> Option<&'static str> {
    fn distance(a: &str, b: &str) -> usize {
        let b: Vec<char> = b.chars().collect();
        let mut prev: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut cur = vec![i + 1];
            for (j, cb) in b.iter().enumerate() {
                cur.push(
                    (prev[j] + usize::from(ca != *cb))
                        .min(prev[j + 1] + 1)
                        .min(cur[j] + 1),
                );
            }
            prev = cur;
        }
        prev[b.len()]
    }
    KEYS.iter()
        .map(|k| (distance(key, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
        .min()
        .map(|(_, k)| k)
}

fn type_name(v: &DeValue<'_>) -> &'static str {
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

fn int_of(v: &DeValue<'_>) -> Option<i64> {
    let i = v.as_integer()?;
    i64::from_str_radix(i.as_str(), i.radix()).ok()
}

/// Walks the document and builds the spec, reporting into `rep`.
struct Checker<'r, 'a> {
    rep: &'r mut Reporter<'a>,
    source: &'r Path,
    opts: &'r ParseOptions,
}

/// The values of the keys, found in the first pass; checked in the second.
#[derive(Default)]
struct Found<'d, 'i> {
    keys: Vec<(&'d str, Range<usize>, &'d Value<'i>)>,
    profiles: Vec<(&'d str, Range<usize>, &'d Value<'i>)>,
}

impl<'d, 'i> Found<'d, 'i> {
    fn get(&self, key: &str) -> Option<&'d Value<'i>> {
        self.keys
            .iter()
            .find(|(k, _, _)| *k == key)
            .map(|(_, _, v)| *v)
    }
}

impl Checker<'_, '_> {
    fn wrong_type(&mut self, key: &str, v: &Value<'_>, expected: &str) {
        let found = type_name(v.get_ref());
        self.rep
            .error(v.span(), key, format!("must be {expected}, found {found}"));
    }

    fn string<'v>(&mut self, key: &str, v: &'v Value<'_>) -> Option<&'v str> {
        match v.get_ref().as_str() {
            Some(s) => Some(s),
            None => {
                self.wrong_type(key, v, "a string");
                None
            }
        }
    }

    fn boolean(&mut self, key: &str, v: &Value<'_>) -> Option<bool> {
        match v.get_ref().as_bool() {
            Some(b) => Some(b),
            None => {
                self.wrong_type(key, v, "`true` or `false`");
                None
            }
        }
    }

    /// A value checked by `f`, its error message placed on the value.
    fn checked<T>(
        &mut self,
        key: &str,
        v: &Value<'_>,
        f: impl FnOnce(&DeValue<'_>) -> Result<T, String>,
    ) -> Option<T> {
        match f(v.get_ref()) {
            Ok(t) => Some(t),
            Err(message) => {
                self.rep.error(v.span(), key, message);
                None
            }
        }
    }

    /// PM2's duration forms: an integer of milliseconds, or a string with a unit.
    fn duration(&mut self, key: &str, v: &Value<'_>) -> Option<Millis> {
        if let Some(n) = int_of(v.get_ref()) {
            return self.checked(key, v, |_| Millis::from_int(n));
        }
        if let Some(s) = v.get_ref().as_str() {
            return self.checked(key, v, |_| Millis::parse(s));
        }
        self.wrong_type(key, v, "milliseconds or a string like `\"10s\"`");
        None
    }

    fn check(mut self, doc: &DeTable<'_>) -> Option<AppSpec> {
        let mut found = Found::default();
        for (k, v) in doc.iter() {
            let key: &str = k.get_ref();
            if KEYS.contains(&key) {
                found.keys.push((key, k.span(), v));
            } else if let Some(profile) = key.strip_prefix("env_") {
                found.profiles.push((profile, k.span(), v));
            } else if key == "exec_mode" {
                self.rep.warning(
                    k.span(),
                    key,
                    "has no effect: every instance is its own process sharing systemd's sockets, like PM2's cluster mode; remove it",
                );
            } else if let Some(advice) = pm2_key_advice(key) {
                self.rep.error(k.span(), key, advice);
            } else {
                let hint = match suggestion(key) {
                    Some(s) => format!("; did you mean `{s}`?"),
                    None => "; `sysmgr init NAME` writes a file with every key".into(),
                };
                self.rep
                    .error(k.span(), key, format!("is not a key sysmgr knows{hint}"));
            }
        }
        self.build(&found)
    }

    fn build(&mut self, f: &Found<'_, '_>) -> Option<AppSpec> {
        let whole = 0..0;
        let name = match f.get("name") {
            Some(v) => self
                .string("name", v)
                .and_then(|s| self.checked("name", v, |_| AppName::parse(s))),
            None => {
                self.rep.error(
                    whole.clone(),
                    "name",
                    "is missing; add `name = \"web\"` (it becomes the unit names `web@.service`, `web.target`)",
                );
                None
            }
        };
        let description = f
            .get("description")
            .and_then(|v| self.string("description", v).map(str::to_string));
        let base_dir = self.source.parent().unwrap_or(Path::new("/"));
        let command = match f.get("command") {
            Some(v) => self.command(v, base_dir),
            None => {
                self.rep.error(
                    whole.clone(),
                    "command",
                    "is missing; add the program and its arguments, e.g. `command = [\"/usr/bin/node\", \"app.js\"]`",
                );
                None
            }
        };
        let cwd = match f.get("cwd") {
            Some(v) => self
                .string("cwd", v)
                .and_then(|s| self.checked("cwd", v, |_| types::absolute_dir(base_dir, s))),
            None => Some(base_dir.to_path_buf()),
        };
        let account = |this: &mut Self, key: &str| -> Option<String> {
            let v = f.get(key)?;
            let s = this.string(key, v)?;
            if this.opts.user_manager {
                this.rep.error(
                    v.span(),
                    key,
                    "cannot be set for the user manager (`--user`): its services run as that user; remove it or generate for the system manager",
                );
                return None;
            }
            this.checked(key, v, |_| types::check_user_name(s))
                .map(|()| s.to_string())
        };
        let user = account(self, "user");
        let group = account(self, "group");
        let instances = match f.get("instances") {
            None => Some(Instances::Count(NonZeroU32::MIN)),
            Some(v) => match (int_of(v.get_ref()), v.get_ref().as_str()) {
                (Some(n), _) => self.checked("instances", v, |_| Instances::from_int(n)),
                (None, Some("max")) => Some(Instances::PerCore),
                _ => {
                    self.wrong_type(
                        "instances",
                        v,
                        "an integer (0 or `\"max\"`: one per usable core, -1: one fewer)",
                    );
                    None
                }
            },
        };
        let instance_var = match f.get("instance_var") {
            None => Some("NODE_APP_INSTANCE".to_string()),
            Some(v) => self.string("instance_var", v).and_then(|s| {
                self.checked("instance_var", v, |_| {
                    syntax::check_env_name(s).map_err(|e| format!("`{s}` {e}"))?;
                    if RESERVED_ENV.contains(&s) {
                        return Err(format!(
                            "`{s}` is set by sysmgr or systemd already; choose another name"
                        ));
                    }
                    Ok(s.to_string())
                })
            }),
        };
        let socket_mode = match f.get("socket") {
            None => Some(SocketMode::Shared),
            Some(v) => self
                .string("socket", v)
                .and_then(|s| self.checked("socket", v, |_| SocketMode::parse(s))),
        };
        let listen = match f.get("listen") {
            None => Some(Vec::new()),
            Some(v) => self.listen(v, socket_mode.unwrap_or(SocketMode::Shared)),
        };
        let wait_ready = f
            .get("wait_ready")
            .map_or(Some(true), |v| self.boolean("wait_ready", v));
        let listen_timeout = f
            .get("listen_timeout")
            .map_or(Some(DEFAULT_LISTEN_TIMEOUT), |v| {
                self.duration("listen_timeout", v)
            });
        let kill_timeout = f
            .get("kill_timeout")
            .map_or(Some(DEFAULT_KILL_TIMEOUT), |v| {
                self.duration("kill_timeout", v)
            });
        let kill_signal = match f.get("kill_signal") {
            None => Some(Signal::INT),
            Some(v) => self
                .string("kill_signal", v)
                .and_then(|s| self.checked("kill_signal", v, |_| Signal::parse(s))),
        };
        if let (Some(v), Some(sig)) = (f.get("kill_signal"), kill_signal) {
            if sig.name() == "SIGKILL" {
                self.rep.warning(
                    v.span(),
                    "kill_signal",
                    "is `SIGKILL`: workers cannot drain, so requests in flight fail at every reload; prefer `SIGINT` or `SIGTERM`",
                );
            }
        }
        let autorestart = f
            .get("autorestart")
            .map_or(Some(true), |v| self.boolean("autorestart", v));
        let restart_delay = match f.get("restart_delay") {
            None => Some(None),
            Some(v) => self.duration("restart_delay", v).map(Some),
        };
        let max_restarts = match f.get("max_restarts") {
            None => Some(DEFAULT_MAX_RESTARTS),
            Some(v) => self.checked("max_restarts", v, |d| match int_of(d) {
                Some(n) if (1..=10_000).contains(&n) => Ok(n as u32),
                Some(n) => Err(format!("is `{n}`; give a count from 1 to 10000")),
                None => Err(format!("must be an integer, found {}", type_name(d))),
            }),
        };
        let max_memory_restart = match f.get("max_memory_restart") {
            None => Some(None),
            Some(v) => self
                .checked("max_memory_restart", v, |d| match (int_of(d), d.as_str()) {
                    (Some(n), _) => Bytes::from_int(n),
                    (None, Some(s)) => Bytes::parse(s),
                    _ => Err(format!(
                        "must be bytes or a string like `\"300M\"`, found {}",
                        type_name(d)
                    )),
                })
                .map(Some),
        };
        let stop_exit_codes = match f.get("stop_exit_codes") {
            None => Some(Vec::new()),
            Some(v) => self.exit_codes(v),
        };
        let watchdog = match f.get("watchdog") {
            None => Some(None),
            Some(v) => self.duration("watchdog", v).map(Some),
        };
        let systemd_version = match f.get("systemd_version") {
            None => Some(MIN_SYSTEMD),
            Some(v) => self.checked("systemd_version", v, |d| match int_of(d) {
                Some(n) if (i64::from(MIN_SYSTEMD)..100_000).contains(&n) => Ok(n as u32),
                Some(n) => Err(format!(
                    "is `{n}`; sysmgr's units need systemd {MIN_SYSTEMD} or newer"
                )),
                None => Err(format!("must be an integer, found {}", type_name(d))),
            }),
        };
        if let (Some(v), Some(false)) = (f.get("wait_ready"), wait_ready) {
            self.rep.warning(
                v.span(),
                "wait_ready",
                "is false: systemd counts an instance as started as soon as it runs, so `sysmgr reload` cannot wait until it serves; send `READY=1` and remove this line",
            );
        }
        let env = self.env(f, instance_var.as_deref().unwrap_or("NODE_APP_INSTANCE"));

        Some(AppSpec {
            source: self.source.to_path_buf(),
            name: name?,
            description,
            command: command?,
            cwd: cwd?,
            user,
            group,
            instances: instances?,
            instance_var: instance_var?,
            listen: listen?,
            socket_mode: socket_mode?,
            wait_ready: wait_ready?,
            listen_timeout: listen_timeout?,
            kill_timeout: kill_timeout?,
            kill_signal: kill_signal?,
            autorestart: autorestart?,
            restart_delay: restart_delay?,
            max_restarts: max_restarts?,
            max_memory_restart: max_memory_restart?,
            stop_exit_codes: stop_exit_codes?,
            watchdog: watchdog?,
            systemd_version: systemd_version?,
            env: env?,
            profile: self.opts.profile.clone(),
        })
    }

    fn command(&mut self, v: &Value<'_>, base_dir: &Path) -> Option<Vec<String>> {
        let argv: Vec<String> = match v.get_ref() {
            DeValue::String(s) => match syntax::split_shell_words(s) {
                Ok(words) => words,
                Err(e) => {
                    self.rep.error(
                        v.span(),
                        "command",
                        format!("cannot be split into words: {e}; close the quote, or write the words as an array"),
                    );
                    return None;
                }
            },
            DeValue::Array(items) => {
                let mut argv = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    match item.get_ref().as_str() {
                        Some(s) => argv.push(s.to_string()),
                        None => {
                            let key = format!("command[{i}]");
                            self.wrong_type(&key, item, "a string");
                            return None;
                        }
                    }
                }
                argv
            }
            _ => {
                self.wrong_type("command", v, "an array of strings or a string");
                return None;
            }
        };
        let Some(program) = argv.first() else {
            self.rep.error(
                v.span(),
                "command",
                "is empty; give the program and its arguments, e.g. `[\"/usr/bin/node\", \"app.js\"]`",
            );
            return None;
        };
        if program.is_empty() {
            self.rep.error(
                v.span(),
                "command",
                "has an empty program name; give a path or a program name",
            );
            return None;
        }
        if let Err((i, e)) = syntax::exec_line(&argv) {
            let what = if i == 0 {
                "program".to_string()
            } else {
                format!("argument {i}")
            };
            self.rep.error(
                v.span(),
                "command",
                format!("{what} `{}` {e}", argv[i].escape_debug()),
            );
            return None;
        }
        if program.contains('/') && !program.starts_with('/') {
            let suggested = base_dir.join(program.trim_start_matches("./"));
            self.rep.error(
                v.span(),
                "command",
                format!(
                    "starts with the relative path `{program}`; systemd needs an absolute path or a bare program name found in `PATH`: write `{}`",
                    suggested.display()
                ),
            );
            return None;
        }
        Some(argv)
    }

    fn listen(&mut self, v: &Value<'_>, mode: SocketMode) -> Option<Vec<Listen>> {
        let DeValue::Array(items) = v.get_ref() else {
            self.wrong_type("listen", v, "an array like `[\"127.0.0.1:3000\"]`");
            return None;
        };
        let mut out: Vec<(Listen, Range<usize>)> = Vec::new();
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            let key = format!("listen[{i}]");
            let (addr_value, name) = match item.get_ref() {
                DeValue::String(_) => (item, Some(FdName::http())),
                DeValue::Table(t) => {
                    let mut address = None;
                    let mut name = Some(FdName::http());
                    for (k, val) in t.iter() {
                        match &**k.get_ref() {
                            "address" => address = Some(val),
                            "name" => {
                                let key = format!("{key}.name");
                                name = self
                                    .string(&key, val)
                                    .and_then(|s| self.checked(&key, val, |_| FdName::parse(s)));
                            }
                            other => {
                                self.rep.error(
                                    k.span(),
                                    &format!("{key}.{other}"),
                                    "is not a key of a listen entry; use `address` and `name`",
                                );
                                ok = false;
                            }
                        }
                    }
                    match address {
                        Some(a) => (a, name),
                        None => {
                            self.rep.error(
                                item.span(),
                                &key,
                                "has no `address`; write `{ address = \"127.0.0.1:3000\", name = \"http\" }`",
                            );
                            ok = false;
                            continue;
                        }
                    }
                }
                _ => {
                    self.wrong_type(
                        &key,
                        item,
                        "an address string or a table with `address` and `name`",
                    );
                    ok = false;
                    continue;
                }
            };
            let address = self
                .string(&key, addr_value)
                .and_then(|s| self.checked(&key, addr_value, |_| ListenAddress::parse(s)));
            let (Some(address), Some(name)) = (address, name) else {
                ok = false;
                continue;
            };
            if mode == SocketMode::PerInstance && address.is_unix() {
                self.rep.error(
                    addr_value.span(),
                    &key,
                    format!("is the unix socket `{address}`, which instances cannot each bind with `ReusePort`; set `socket = \"shared\"`"),
                );
                ok = false;
                continue;
            }
            if let Some((earlier, _)) = out.iter().find(|(l, _)| l.address.conflicts_with(&address))
            {
                self.rep.error(
                    addr_value.span(),
                    &key,
                    format!(
                        "`{address}` is already declared as `{}`; remove one of them",
                        earlier.address
                    ),
                );
                ok = false;
                continue;
            }
            out.push((Listen { address, name }, addr_value.span()));
        }
        ok.then(|| out.into_iter().map(|(l, _)| l).collect())
    }

    fn exit_codes(&mut self, v: &Value<'_>) -> Option<Vec<u8>> {
        let one = |d: &DeValue<'_>| match int_of(d) {
            Some(n) if (0..=255).contains(&n) => Ok(n as u8),
            Some(n) => Err(format!("has `{n}`; exit codes are 0 to 255")),
            None => Err(format!("must hold integers, found {}", type_name(d))),
        };
        match v.get_ref() {
            DeValue::Array(items) => {
                let mut codes = Vec::new();
                for item in items.iter() {
                    codes.push(self.checked("stop_exit_codes", item, one)?);
                }
                Some(codes)
            }
            _ => self.checked("stop_exit_codes", v, one).map(|c| vec![c]),
        }
    }

    /// `[env]` merged with the selected profile; every table checked either way.
    fn env(&mut self, f: &Found<'_, '_>, instance_var: &str) -> Option<Vec<(String, String)>> {
        let mut ok = true;
        let mut env = match f.get("env") {
            Some(v) => self.env_table("env", v, instance_var).unwrap_or_else(|| {
                ok = false;
                Vec::new()
            }),
            None => Vec::new(),
        };
        let mut selected = None;
        for (profile, span, v) in &f.profiles {
            let table = format!("env_{profile}");
            if profile.is_empty() {
                self.rep.error(
                    span.clone(),
                    &table,
                    "names no profile; write `[env_production]`",
                );
                ok = false;
                continue;
            }
            match self.env_table(&table, v, instance_var) {
                Some(vars) if self.opts.profile.as_deref() == Some(profile) => {
                    selected = Some(vars)
                }
                Some(_) => {}
                None => ok = false,
            }
        }
        if let Some(wanted) = &self.opts.profile {
            match selected {
                Some(vars) => {
                    for (k, v) in vars {
                        match env.iter_mut().find(|(name, _)| *name == k) {
                            Some(slot) => slot.1 = v,
                            None => env.push((k, v)),
                        }
                    }
                }
                None if ok => {
                    let known: Vec<String> = f
                        .profiles
                        .iter()
                        .map(|(p, _, _)| format!("`{p}`"))
                        .collect();
                    let hint = if known.is_empty() {
                        "this file defines no profile".to_string()
                    } else {
                        format!("this file defines {}", known.join(", "))
                    };
                    self.rep.push(
                        Severity::Error,
                        0..0,
                        Some(&format!("env_{wanted}")),
                        format!("is not in the file, but `--env {wanted}` asks for it; {hint}"),
                    );
                    ok = false;
                }
                None => {}
            }
        }
        ok.then_some(env)
    }

    fn env_table(
        &mut self,
        table: &str,
        v: &Value<'_>,
        instance_var: &str,
    ) -> Option<Vec<(String, String)>> {
        let DeValue::Table(t) = v.get_ref() else {
            self.wrong_type(table, v, "a table of variables");
            return None;
        };
        let mut vars = Vec::new();
        let mut ok = true;
        for (k, val) in t.iter() {
            let name: &str = k.get_ref();
            let key = format!("{table}.{name}");
            if let Err(e) = syntax::check_env_name(name) {
                self.rep.error(k.span(), &key, format!("{e}"));
                ok = false;
                continue;
            }
            if RESERVED_ENV.contains(&name) || name == instance_var {
                self.rep.error(
                    k.span(),
                    &key,
                    "is set by sysmgr or systemd for every instance; remove it",
                );
                ok = false;
                continue;
            }
            let value = match val.get_ref() {
                DeValue::String(s) => s.to_string(),
                DeValue::Integer(_) => {
                    int_of(val.get_ref()).map_or_else(String::new, |n| n.to_string())
                }
                DeValue::Float(x) => x.as_str().to_string(),
                DeValue::Boolean(b) => b.to_string(),
                _ => {
                    self.wrong_type(&key, val, "a string, number or boolean");
                    ok = false;
                    continue;
                }
            };
            if let Err(e) = syntax::check_env_value(&value) {
                let hint = match e {
                    SyntaxError::Nul | SyntaxError::ControlInEnv(_) => {
                        "; pass binary data another way, e.g. base64"
                    }
                    _ => "",
                };
                self.rep.error(val.span(), &key, format!("{e}{hint}"));
                ok = false;
                continue;
            }
            vars.push((name.to_string(), value));
        }
        ok.then_some(vars)
    }
}

#[cfg(test)]
mod tests;
