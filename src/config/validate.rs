//! Stage 2 of reading app.toml: each known key checked into a small validated type.
//!
//! One method per key (or per group of keys that depend on each other, like `socket` and
//! `listen`); every problem is reported with the key and the span of the offending value, and
//! checking goes on after an error so that a file's problems are all reported at once.

use std::num::NonZeroU32;
use std::ops::Range;
use std::path::Path;

use toml::de::DeValue;

use super::diag::{Reporter, Severity};
use super::raw::{int_of, type_name, Found, Value};
use super::types::{
    self, AppName, Bytes, FdName, Hardening, HealthCheck, HealthProbe, Instances, ListenAddress,
    MemoryLimitMode, Millis, Signal, SocketMode,
};
use super::Schedule;
use super::{derive, hardening, AppSpec, Listen, ParseOptions, Runtime};
use super::{DEFAULT_KILL_TIMEOUT, DEFAULT_LISTEN_TIMEOUT, DEFAULT_MAX_RESTARTS, MIN_SYSTEMD};
use crate::systemd::syntax::{self, SyntaxError};

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
    "SYSMGR_HEALTH_PATH",
    "SYSMGR_HEALTH_TIMEOUT_MS",
    "SYSMGR_HEALTH_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "MAINPID",
    "INVOCATION_ID",
];

/// Checks the keys `found` in a document into an [`AppSpec`], reporting into `rep`; `None`
/// when a required value is missing or wrong.
pub(super) fn validate(
    found: &Found<'_, '_>,
    rep: &mut Reporter<'_>,
    source: &Path,
    opts: &ParseOptions,
) -> Option<AppSpec> {
    Checker { rep, source, opts }.build(found)
}

/// Walks the document and builds the spec, reporting into `rep`.
struct Checker<'r, 'a> {
    rep: &'r mut Reporter<'a>,
    source: &'r Path,
    opts: &'r ParseOptions,
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
            Some(v) => {
                self.rep.mark("command", v.span());
                self.command(v, base_dir)
            }
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
            // The file's directory is not checked by anything the user wrote: say where it
            // comes from.
            None => match types::unit_path(base_dir) {
                Ok(dir) => Some(dir),
                Err(why) => {
                    self.rep.error(
                        whole.clone(),
                        "cwd",
                        format!(
                            "is not set, so it is the app file's directory `{}`, which {why}; set `cwd`, or move the file",
                            base_dir.display().to_string().escape_debug()
                        ),
                    );
                    None
                }
            },
        };
        let account = |this: &mut Self, key: &str| -> Option<String> {
            let v = f.get(key)?;
            this.rep.mark(key, v.span());
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
        let memory_limit_mode = match f.get("memory_limit_mode") {
            None => Some(MemoryLimitMode::Graceful),
            Some(v) => self.string("memory_limit_mode", v).and_then(|s| {
                let mode = self.checked("memory_limit_mode", v, |_| MemoryLimitMode::parse(s))?;
                if f.get("max_memory_restart").is_none() {
                    self.rep.warning(
                        v.span(),
                        "memory_limit_mode",
                        "has no effect without `max_memory_restart`; add the limit or remove this line",
                    );
                }
                Some(mode)
            }),
        };
        let cron_restart = match f.get("cron_restart") {
            None => Some(None),
            Some(v) => self
                .string("cron_restart", v)
                .and_then(|s| self.checked("cron_restart", v, |_| Schedule::parse(s)))
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
        let health_check = match f.get("health_check") {
            None => Some(None),
            Some(v) => self.health_check(v, base_dir).map(Some),
        };
        let systemd_version = match f.get("systemd_version") {
            None => Some(
                self.opts
                    .systemd
                    .map_or(MIN_SYSTEMD, |v| v.max(MIN_SYSTEMD)),
            ),
            Some(v) => self.checked("systemd_version", v, |d| match int_of(d) {
                Some(n) if (i64::from(MIN_SYSTEMD)..100_000).contains(&n) => Ok(n as u32),
                Some(n) => Err(format!(
                    "is `{n}`; sysmgr's units need systemd {MIN_SYSTEMD} or newer"
                )),
                None => Err(format!("must be an integer, found {}", type_name(d))),
            }),
        };
        let runtime = command
            .as_deref()
            .map(|c| Runtime::of(c, &self.opts.bridge));
        let node = runtime.as_ref().is_some_and(Runtime::is_node);
        let shutdown_with_message = f
            .get("shutdown_with_message")
            .map_or(Some(false), |v| self.boolean("shutdown_with_message", v));
        if let (Some(v), Some(true), Some(false)) = (
            f.get("shutdown_with_message"),
            shutdown_with_message,
            runtime.as_ref().map(Runtime::is_node),
        ) {
            self.rep.warning(
                v.span(),
                "shutdown_with_message",
                "has no effect: the `shutdown` message is sent by sysmgr's Node bridge, and `command` does not run `node`; handle the kill signal instead",
            );
        }
        // A Node app is ready when it listens (the bridge says so), not when it was forked.
        if let (Some(v), Some(false), false) = (f.get("wait_ready"), wait_ready, node) {
            self.rep.warning(
                v.span(),
                "wait_ready",
                "is false: systemd counts an instance as started as soon as it runs, so `sysmgr reload` cannot wait until it serves; send `READY=1` and remove this line",
            );
        }
        let env = self.env(f, instance_var.as_deref().unwrap_or("NODE_APP_INSTANCE"));
        let hardening = match f.get("hardening") {
            // A user manager could not set up the profile's namespaces in the tests (every
            // instance failed to start), so its units stay as they were unless asked.
            None if self.opts.user_manager => Some(Hardening::Off),
            None => Some(Hardening::Default),
            Some(v) => self
                .string("hardening", v)
                .and_then(|s| self.checked("hardening", v, |_| Hardening::parse(s))),
        };
        let dynamic_user = match f.get("dynamic_user") {
            None => Some(false),
            Some(v) => self.boolean("dynamic_user", v).and_then(|on| {
                if !on {
                    return Some(false);
                }
                if self.opts.user_manager {
                    self.rep.error(
                        v.span(),
                        "dynamic_user",
                        "cannot be set for the user manager (`--user`): its services run as that user; remove it",
                    );
                    return None;
                }
                if f.get("user").is_some() {
                    self.rep.error(
                        v.span(),
                        "dynamic_user",
                        "conflicts with `user`: systemd makes up the user of a dynamic-user service; remove one of them",
                    );
                    return None;
                }
                Some(true)
            }),
        };
        let state_directory = match f.get("state_directory") {
            None => Some(None),
            Some(v) => self
                .string("state_directory", v)
                .and_then(|s| {
                    self.checked("state_directory", v, |_| types::check_state_directory(s))
                        .map(|()| s.to_string())
                })
                .map(Some),
        };
        let writable_paths = match f.get("writable_paths") {
            None => Some(Vec::new()),
            Some(v) => self.strings("writable_paths", v).and_then(|paths| {
                let mut out = Vec::new();
                for p in paths {
                    let unlistable = |p: &str| p.contains(char::is_whitespace) || p.contains('"') || p.contains('\\');
                    if unlistable(&p) {
                        self.rep.error(
                            v.span(),
                            "writable_paths",
                            format!("has `{}`; paths with spaces, quotes or backslashes cannot be listed in `ReadWritePaths=`", p.escape_debug()),
                        );
                        return None;
                    }
                    let path = self.checked("writable_paths", v, |_| types::absolute_dir(base_dir, &p))?;
                    // A relative path takes the app file's directory, which may hold a space.
                    let resolved = path.to_string_lossy();
                    if unlistable(&resolved) {
                        self.rep.error(
                            v.span(),
                            "writable_paths",
                            format!("has `{p}`, which is `{}` from the app file's directory; paths with spaces, quotes or backslashes cannot be listed in `ReadWritePaths=`: write an absolute path", resolved.escape_debug()),
                        );
                        return None;
                    }
                    out.push(path);
                }
                Some(out)
            }),
        };
        let address_families = match f.get("address_families") {
            None => Some(Vec::new()),
            Some(v) => self.strings("address_families", v).and_then(|families| {
                for a in &families {
                    self.checked("address_families", v, |_| types::check_address_family(a))?;
                }
                if hardening == Some(Hardening::Off) {
                    self.rep.warning(
                        v.span(),
                        "address_families",
                        "has no effect with `hardening = \"off\"`: every family is allowed; remove it",
                    );
                }
                Some(families)
            }),
        };
        let unit_service = match f.get("unit") {
            None => Some(Vec::new()),
            Some(v) => self.unit_tables(v),
        };
        let deploy = match f.get("deploy") {
            None => Some(Vec::new()),
            Some(v) => super::deploy::check(self.rep, v),
        };

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
            memory_limit_mode: memory_limit_mode?,
            cron_restart: cron_restart?,
            stop_exit_codes: stop_exit_codes?,
            watchdog: watchdog?,
            health_check: health_check?,
            systemd_version: systemd_version?,
            env: env?,
            profile: self.opts.profile.clone(),
            runtime: runtime?,
            shutdown_with_message: shutdown_with_message?,
            hardening: hardening?,
            dynamic_user: dynamic_user?,
            state_directory: state_directory?,
            writable_paths: writable_paths?,
            address_families: address_families?,
            unit_service: unit_service?,
            deploy: deploy?,
        })
    }

    /// An array of strings.
    fn strings(&mut self, key: &str, v: &Value<'_>) -> Option<Vec<String>> {
        let DeValue::Array(items) = v.get_ref() else {
            self.wrong_type(key, v, "an array of strings");
            return None;
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            out.push(self.string(&format!("{key}[{i}]"), item)?.to_string());
        }
        Some(out)
    }

    /// `[unit]`: only `[unit.service]`, raw settings for `[Service]` that sysmgr has no key
    /// for; each checked to be one line systemd reads as written, and none that sysmgr sets.
    fn unit_tables(&mut self, v: &Value<'_>) -> Option<Vec<(String, String)>> {
        let DeValue::Table(t) = v.get_ref() else {
            self.wrong_type("unit", v, "a table: `[unit.service]`");
            return None;
        };
        let mut out = Vec::new();
        let mut ok = true;
        for (section, table) in t.iter() {
            let section: &str = section.get_ref();
            let key = format!("unit.{section}");
            if section != "service" {
                self.rep.error(
                    table.span(),
                    &key,
                    "is not supported; only `[unit.service]` settings pass through to the units",
                );
                ok = false;
                continue;
            }
            let DeValue::Table(settings) = table.get_ref() else {
                self.wrong_type(&key, table, "a table of `Directive = \"value\"`");
                ok = false;
                continue;
            };
            for (k, val) in settings.iter() {
                let directive: &str = k.get_ref();
                let key = format!("unit.service.{directive}");
                let name_ok = directive.starts_with(|c: char| c.is_ascii_uppercase())
                    && directive.chars().all(|c| c.is_ascii_alphanumeric());
                if !name_ok {
                    self.rep.error(
                        k.span(),
                        &key,
                        "is not a systemd directive name (a capital letter, then letters and digits, like `LimitNOFILE`)",
                    );
                    ok = false;
                    continue;
                }
                if let Some((_, owner)) = hardening::OWNED.iter().find(|(d, _)| *d == directive) {
                    self.rep.error(
                        k.span(),
                        &key,
                        format!("is set by sysmgr from `{owner}`; set `{owner}` instead"),
                    );
                    ok = false;
                    continue;
                }
                let value = match val.get_ref() {
                    DeValue::String(s) => s.to_string(),
                    DeValue::Integer(_) => {
                        int_of(val.get_ref()).map_or_else(String::new, |n| n.to_string())
                    }
                    DeValue::Boolean(b) => if *b { "yes" } else { "no" }.to_string(),
                    _ => {
                        self.wrong_type(&key, val, "a string, integer or boolean");
                        ok = false;
                        continue;
                    }
                };
                if let Some(c) = value.chars().find(|&c| syntax::is_noncharacter(c)) {
                    self.rep.error(
                        val.span(),
                        &key,
                        format!("contains the noncharacter U+{:04X}, which systemd refuses in unit files", u32::from(c)),
                    );
                    ok = false;
                    continue;
                }
                if value.contains(|c: char| c.is_control()) {
                    self.rep.error(
                        val.span(),
                        &key,
                        "contains a newline or control character; a setting is one line",
                    );
                    ok = false;
                    continue;
                }
                if value.ends_with('\\') {
                    self.rep.error(
                        val.span(),
                        &key,
                        "ends with a backslash, which would continue the setting on the next line; remove it",
                    );
                    ok = false;
                    continue;
                }
                out.push((directive.to_string(), value));
            }
        }
        ok.then_some(out)
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
            self.rep.mark(&key, addr_value.span());
            out.push((Listen { address, name }, addr_value.span()));
        }
        ok.then(|| out.into_iter().map(|(l, _)| l).collect())
    }

    /// `"/health"`, or a table: `{ path = "/health", timeout = "2s" }` or
    /// `{ command = ["/usr/local/bin/check"], timeout = "2s" }`.
    fn health_check(&mut self, v: &Value<'_>, base_dir: &Path) -> Option<HealthCheck> {
        const KEY: &str = "health_check";
        let t = match v.get_ref() {
            DeValue::String(_) => {
                let path = self.health_path(KEY, v)?;
                return Some(HealthCheck {
                    probe: HealthProbe::Http(path),
                    timeout: HealthCheck::DEFAULT_TIMEOUT,
                });
            }
            DeValue::Table(t) => t,
            _ => {
                self.wrong_type(
                    KEY,
                    v,
                    "an HTTP path like `\"/health\"` or a table like `{ path = \"/health\", timeout = \"2s\" }`",
                );
                return None;
            }
        };
        let mut probe: Option<Option<HealthProbe>> = None;
        let mut timeout = Some(HealthCheck::DEFAULT_TIMEOUT);
        let mut ok = true;
        for (k, val) in t.iter() {
            let name: &str = k.get_ref();
            let key = format!("{KEY}.{name}");
            match name {
                "path" | "command" if probe.is_some() => {
                    let other = if name == "path" { "command" } else { "path" };
                    self.rep.error(
                        k.span(),
                        &key,
                        format!("cannot be given with `{other}`: a health check is an HTTP `path` or a `command`; keep one"),
                    );
                    ok = false;
                }
                "path" => probe = Some(self.health_path(&key, val).map(HealthProbe::Http)),
                "command" => {
                    probe = Some(
                        self.health_command(&key, val, base_dir)
                            .map(HealthProbe::Command),
                    )
                }
                "timeout" => {
                    timeout = self.duration(&key, val).and_then(|t| {
                        if t > HealthCheck::MAX_TIMEOUT {
                            self.rep.error(
                                val.span(),
                                &key,
                                format!("is {t}; give at most {}: the reload waits this long for each instance", HealthCheck::MAX_TIMEOUT),
                            );
                            return None;
                        }
                        Some(t)
                    });
                }
                other => {
                    self.rep.error(
                        k.span(),
                        &format!("{KEY}.{other}"),
                        "is not a key of a health check; use `path` or `command`, and `timeout`",
                    );
                    ok = false;
                }
            }
        }
        let Some(probe) = probe else {
            self.rep.error(
                v.span(),
                KEY,
                "has neither `path` nor `command`; write `{ path = \"/health\", timeout = \"2s\" }`",
            );
            return None;
        };
        let probe = probe?;
        ok.then_some(HealthCheck {
            probe,
            timeout: timeout?,
        })
    }

    fn health_path(&mut self, key: &str, v: &Value<'_>) -> Option<String> {
        let path = self.string(key, v)?;
        self.checked(key, v, |_| HealthCheck::check_path(path))?;
        Some(path.to_string())
    }

    /// The check's argv: what `command` accepts, a program found the same way.
    fn health_command(&mut self, key: &str, v: &Value<'_>, base_dir: &Path) -> Option<Vec<String>> {
        let argv: Vec<String> = match v.get_ref() {
            DeValue::String(s) => match syntax::split_shell_words(s) {
                Ok(words) => words,
                Err(e) => {
                    self.rep.error(
                        v.span(),
                        key,
                        format!("cannot be split into words: {e}; close the quote, or write the words as an array"),
                    );
                    return None;
                }
            },
            DeValue::Array(_) => self.strings(key, v)?,
            _ => {
                self.wrong_type(key, v, "an array of strings or a string");
                return None;
            }
        };
        let Some(program) = argv.first().filter(|p| !p.is_empty()) else {
            self.rep.error(
                v.span(),
                key,
                "is empty; give the program and its arguments, e.g. `[\"/usr/bin/curl\", \"-fsS\", \"http://127.0.0.1:3000/health\"]`",
            );
            return None;
        };
        if let Err((i, e)) = syntax::exec_line(&argv) {
            let what = if i == 0 {
                "program".to_string()
            } else {
                format!("argument {i}")
            };
            self.rep.error(
                v.span(),
                key,
                format!("{what} `{}` {e}", argv[i].escape_debug()),
            );
            return None;
        }
        if program.contains('/') && !program.starts_with('/') {
            let suggested = base_dir.join(program.trim_start_matches("./"));
            self.rep.error(
                v.span(),
                key,
                format!(
                    "starts with the relative path `{program}`; systemd needs an absolute path or a bare program name found in `PATH`: write `{}`",
                    suggested.display()
                ),
            );
            return None;
        }
        Some(argv)
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
                Some(vars) => env = derive::merge_env(env, vars),
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
