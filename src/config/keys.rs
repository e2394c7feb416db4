//! The one table of app.toml keys: each key's name, its documentation, and what it becomes
//! in the units.
//!
//! A key used to live in five places (the parser's list, the renderer's placeholders, the
//! template, `sysmgr check`'s own description, the docs) and they drifted apart. Here each
//! key is declared once, in [`KEYS`]; the renderer fills a template's `@KEY@` placeholder
//! from the key of that name, `sysmgr check` prints the same settings, and the key table of
//! `docs/app-toml.md` is generated from [`docs_table`] (a test keeps the file in step).
//! Checking a value into its type is validation's job (`validate.rs`); this table starts from the
//! validated [`AppSpec`].
//!
//! A placeholder alone on a line of a template (`@KILL_TIMEOUT@`) becomes the key's
//! [`Key::block`]: its settings with their comments. Inside a line
//! (`"SYSMGR_KILL_TIMEOUT_MS=@KILL_TIMEOUT@"`) it becomes the key's [`Key::inline`] value.

use std::fmt::Write as _;
use std::num::NonZeroU32;

use super::{brake, hardening, AppSpec, Hardening, HealthProbe, MemoryLimitMode, SocketMode};
use crate::names::UnitNames;
use crate::systemd::syntax;

/// One line a key puts into a unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// A comment explaining the next settings; each of its lines gets `# `.
    Comment(&'static str),
    /// `Directive=value` with the key's value; `sysmgr check` shows `Directive=`.
    Value(&'static str, String),
    /// `Directive=value` where the key chooses the value (`Type=notify`); `sysmgr check`
    /// shows the whole setting.
    Choice(&'static str, &'static str),
    /// A setting that comes with the key but does not carry it (`NotifyAccess=all`).
    Also(&'static str, &'static str),
    /// A whole `Directive=value` line the user wrote (`[unit.service]`).
    Raw(String),
}

impl Line {
    /// The line as it appears in the unit.
    fn unit_text(&self) -> String {
        match self {
            Self::Comment(text) => text.lines().map(|l| format!("# {l}\n")).collect(),
            Self::Value(d, v) => format!("{d}={v}\n"),
            Self::Choice(d, v) | Self::Also(d, v) => format!("{d}={v}\n"),
            Self::Raw(line) => format!("{line}\n"),
        }
    }

    /// What `sysmgr check` shows of it, if anything.
    fn check_text(&self) -> Option<String> {
        match self {
            Self::Value(d, _) => Some(format!("{d}=")),
            Self::Choice(d, v) => Some(format!("{d}={v}")),
            Self::Raw(line) => line.split_once('=').map(|(d, _)| format!("{d}=")),
            Self::Comment(_) | Self::Also(..) => None,
        }
    }
}

/// The row of a key in `docs/app-toml.md`.
#[derive(Debug, Clone, Copy)]
pub struct Doc {
    /// Its TOML type and default.
    pub kind: &'static str,
    /// What it becomes in the units.
    pub becomes: &'static str,
    /// What else a user should know.
    pub notes: &'static str,
}

/// What `sysmgr check` prints for a key: values, each with what it becomes.
pub type Rows = Vec<(String, String)>;

/// One app.toml key.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    /// Its TOML name.
    pub name: &'static str,
    /// Its row in the docs.
    pub doc: Doc,
    /// The settings (comments included) that replace `@KEY@` alone on a template line;
    /// `None` if the key has no such placeholder.
    pub block: Option<fn(&AppSpec) -> Vec<Line>>,
    /// The value that replaces `@KEY@` inside a template line.
    pub inline: Option<fn(&AppSpec) -> String>,
    /// What `sysmgr check` prints: the key's values, one row each (none when unset).
    pub values: fn(&AppSpec, NonZeroU32) -> Vec<String>,
    /// What the values become, for keys whose result is not a setting of [`Self::block`]
    /// (unit names, links, settings inside template lines). `None`: the settings of
    /// [`Self::block`], as [`Line`] says.
    pub becomes: Option<fn(&AppSpec, NonZeroU32) -> String>,
}

impl Key {
    /// The placeholder that stands for this key in a template: its name in capitals.
    pub fn placeholder(&self) -> String {
        self.name.to_ascii_uppercase()
    }

    /// The block text for `spec`, as the template gets it (empty: no line at all).
    pub fn block_text(&self, spec: &AppSpec) -> Option<String> {
        self.block
            .map(|f| f(spec).iter().map(Line::unit_text).collect())
    }

    /// The rows `sysmgr check` prints for this key, for `instances` instances.
    pub fn check_rows(&self, spec: &AppSpec, instances: NonZeroU32) -> Rows {
        let becomes = match (self.becomes, self.block) {
            (Some(f), _) => f(spec, instances),
            (None, Some(block)) => {
                let mut shown: Vec<String> = Vec::new();
                for text in block(spec).iter().filter_map(Line::check_text) {
                    if !shown.contains(&text) {
                        shown.push(text);
                    }
                }
                shown.join(" ")
            }
            (None, None) => String::new(),
        };
        (self.values)(spec, instances)
            .into_iter()
            .map(|v| (v, becomes.clone()))
            .collect()
    }
}

/// The key `@placeholder@` stands for, if any.
pub fn by_placeholder(placeholder: &str) -> Option<&'static Key> {
    KEYS.iter().find(|k| k.placeholder() == placeholder)
}

/// The key named `name`, if app.toml has one.
pub fn by_name(name: &str) -> Option<&'static Key> {
    KEYS.iter().find(|k| k.name == name)
}

fn one(s: impl ToString) -> Vec<String> {
    vec![s.to_string()]
}

fn optional<T>(v: Option<T>, f: impl FnOnce(T) -> String) -> Vec<String> {
    v.map(f).into_iter().collect()
}

/// Every key sysmgr understands, in the order `sysmgr check` prints them.
pub const KEYS: &[Key] = &[
    Key {
        name: "name",
        doc: Doc {
            kind: "string, required",
            becomes: "`NAME@.service`, `NAME@.socket` or `NAME.socket`, `NAME.target`",
            notes: "letters, digits, `-`, `_`, `.`; at most 64; not starting with `-` or `.`",
        },
        block: None,
        inline: Some(|s| s.name.to_string()),
        values: |s, _| one(&s.name),
        becomes: Some(|s, _| {
            let names = UnitNames::new(s.name.as_str());
            format!("{} {}", names.service_template(), names.target())
        }),
    },
    Key {
        name: "description",
        doc: Doc {
            kind: "string, default `name`",
            becomes: "`Description=`",
            notes: "`%` is escaped",
        },
        block: None,
        inline: Some(|s| syntax::free_text(s.description.as_deref().unwrap_or(s.name.as_str()))),
        values: |s, _| optional(s.description.as_ref(), Clone::clone),
        becomes: Some(|_, _| "Description=".into()),
    },
    Key {
        name: "command",
        doc: Doc {
            kind: "array of strings, or a string",
            becomes: "`ExecStart=`",
            notes: "a string is split into words like `sh` would (quotes, backslashes) but nothing is expanded and no shell runs. The program is an absolute path or a bare name looked up in `PATH`. Every word reaches the process exactly: spaces, quotes, `$`, `%`, `;`, backslashes, newlines, non-ASCII (NUL and Unicode noncharacters, which systemd refuses, are errors). Every program starts through `sysmgr exec PROGRAM ARGS...`, which gives its stdout and stderr journal streams of their own (stderr lines get `PRIORITY=3`, so `sysmgr logs --err` finds them) and then becomes the program, keeping its PID. A `node` program also gets sysmgr's Node bridge preloaded, so a PM2 app runs unchanged (docs/pm2.md)",
        },
        block: Some(command_lines),
        inline: None,
        values: |s, _| one(format!("{:?}", s.command)),
        becomes: None,
    },
    Key {
        name: "cwd",
        doc: Doc {
            kind: "path, default the app file's directory",
            becomes: "`WorkingDirectory=`",
            notes: "relative to the app file; `.` and `..` are resolved by name. A path ending in white space or a backslash is an error (systemd cannot hold it in `WorkingDirectory=`), also when it is the app file's directory",
        },
        block: Some(|s| {
            let cwd = syntax::path_value(&s.cwd.to_string_lossy());
            vec![Line::Value("WorkingDirectory", cwd)]
        }),
        inline: None,
        values: |s, _| one(s.cwd.display()),
        becomes: None,
    },
    Key {
        name: "user",
        doc: Doc {
            kind: "name or numeric id",
            becomes: "`User=`",
            notes: "system manager only",
        },
        block: Some(|s| s.user.iter().map(|u| Line::Value("User", u.clone())).collect()),
        inline: None,
        values: |s, _| optional(s.user.as_ref(), Clone::clone),
        becomes: None,
    },
    Key {
        name: "group",
        doc: Doc {
            kind: "name or numeric id",
            becomes: "`Group=`",
            notes: "system manager only",
        },
        block: Some(|s| s.group.iter().map(|g| Line::Value("Group", g.clone())).collect()),
        inline: None,
        values: |s, _| optional(s.group.as_ref(), Clone::clone),
        becomes: None,
    },
    Key {
        name: "dynamic_user",
        doc: Doc {
            kind: "bool, default `false`",
            becomes: "`DynamicUser=yes`",
            notes: "a user made up for each start instead of root: costs files of its own outside `state_directory` (they belong to nobody after a stop). Conflicts with `user`; system manager only",
        },
        block: Some(|s| {
            if s.dynamic_user {
                vec![
                    Line::Comment("A user made up for this service, not root; it owns only the state directory."),
                    Line::Choice("DynamicUser", "yes"),
                ]
            } else {
                Vec::new()
            }
        }),
        inline: None,
        values: |s, _| if s.dynamic_user { one(true) } else { Vec::new() },
        becomes: None,
    },
    Key {
        name: "instances",
        doc: Doc {
            kind: "integer, default 1",
            becomes: "links `NAME.target.wants/NAME@1..N.service`",
            notes: "`0` or `\"max\"`: one per usable core; `-1`: one fewer (at least 1). *Usable* is what this machine lets sysmgr use (CPU affinity, cgroup CPU quota), not the number of cores on the board. At most 1024",
        },
        block: None,
        inline: None,
        values: |s, n| one(format!("{n} ({})", s.instances)),
        becomes: Some(|s, n| {
            let names = UnitNames::new(s.name.as_str());
            format!("{}/{}@1..{n}.service", names.wants_dir(), s.name)
        }),
    },
    Key {
        name: "instance_var",
        doc: Doc {
            kind: "string, default `NODE_APP_INSTANCE`",
            becomes: "`Environment=`",
            notes: "the variable holding the instance number. Node apps: from 0, as PM2 counts (the bridge sets it to `SYSMGR_INSTANCE` - 1); other programs: systemd's `%i`, from 1. `SYSMGR_INSTANCE` (from 1) is always set too, and `SYSMGR_INSTANCE_VAR` names this variable",
        },
        block: None,
        // Inside the template's `Environment=` line of who the instance is.
        inline: Some(|s| {
            if s.runtime.is_node() {
                format!("\"SYSMGR_INSTANCE_VAR={}\"", s.instance_var)
            } else {
                // Named too, so `sysmgr exec` can give it the slot alone (see names.rs).
                format!(
                    "\"SYSMGR_INSTANCE_VAR={0}\" \"{0}=%i\"",
                    s.instance_var
                )
            }
        }),
        values: |s, _| one(&s.instance_var),
        becomes: Some(|_, _| "Environment=".into()),
    },
    Key {
        name: "socket",
        doc: Doc {
            kind: "`\"shared\"` (default) or `\"per-instance\"`",
            becomes: "`NAME.socket` shared through `Sockets=`, or `NAME@.socket` with `ReusePort=yes`",
            notes: "see \"Socket modes\" below; unix sockets need `\"shared\"`",
        },
        block: None,
        inline: None,
        values: |s, _| one(s.socket_mode.as_str()),
        // No `listen`, no socket unit, whatever the mode.
        becomes: Some(|s, _| match s.listen.first() {
            Some(first) => {
                let names = UnitNames::new(s.name.as_str());
                let per_instance = s.socket_mode == SocketMode::PerInstance;
                names.socket_file(0, &first.name, per_instance)
            }
            None => String::new(),
        }),
    },
    Key {
        name: "listen",
        doc: Doc {
            kind: "array, default none",
            becomes: "`ListenStream=` + `FileDescriptorName=`",
            notes: "`\"127.0.0.1:3000\"`, `\"[::1]:3000\"`, `\"3000\"` (every address, dual-stack), `\"/run/app/http.sock\"`; or `{ address = \"...\", name = \"admin\" }`. Unnamed entries are named `http`. Each name is one socket unit (`NAME.socket`, `NAME-admin.socket`). Duplicates are errors",
        },
        block: None,
        inline: None,
        values: |s, _| {
            s.listen
                .iter()
                .map(|l| format!("{} (name `{}`)", l.address, l.name))
                .collect()
        },
        becomes: Some(|_, _| "ListenStream=".into()),
    },
    Key {
        name: "wait_ready",
        doc: Doc {
            kind: "bool, default `true`",
            becomes: "`Type=notify` + `NotifyAccess=main` (`all` for deno, bun, launchers like `sh` and with `hardening = \"off\"`); `false`: `Type=simple` (`Type=exec` with `systemd_version >= 240`). Node apps: always `Type=notify` + `NotifyAccess=main` (the bridge notifies from the main process)",
            notes: "PM2's `wait_ready`: the instance is started once it sends `READY=1`. `false` warns: `sysmgr reload` can't tell when a new process serves",
        },
        block: Some(|s| {
            if s.runtime.is_node() {
                let comment = if s.wait_ready {
                    "PM2's wait_ready: sysmgr's Node bridge sends READY=1 from the main process itself\nwhen the app calls process.send('ready')."
                } else {
                    "wait_ready = false: sysmgr's Node bridge sends READY=1 from the main process itself\nonce the app listens on its sockets."
                };
                vec![
                    Line::Comment(comment),
                    Line::Choice("Type", "notify"),
                    Line::Also("NotifyAccess", "main"),
                ]
            } else if s.wait_ready && hardening::notify_access(s) == "main" {
                vec![
                    Line::Comment("PM2's wait_ready: the instance counts as started once its main process sends\nREADY=1; no other process may change its state."),
                    Line::Choice("Type", "notify"),
                    Line::Also("NotifyAccess", "main"),
                ]
            } else if s.wait_ready {
                vec![
                    Line::Comment("PM2's wait_ready: the instance counts as started once it sends READY=1,\nfrom its main process or a helper it runs."),
                    Line::Choice("Type", "notify"),
                    Line::Also("NotifyAccess", "all"),
                ]
            } else if s.systemd_version >= 240 {
                vec![
                    Line::Comment("wait_ready = false: started as soon as the program is running."),
                    Line::Choice("Type", "exec"),
                ]
            } else {
                vec![
                    Line::Comment("wait_ready = false: started as soon as the process is forked."),
                    Line::Choice("Type", "simple"),
                ]
            }
        }),
        inline: None,
        values: |s, _| one(s.wait_ready),
        becomes: None,
    },
    Key {
        name: "listen_timeout",
        doc: Doc {
            kind: "ms or `\"10s\"`, default `30s`",
            becomes: "`TimeoutStartSec=`",
            notes: "how long a new instance may take to become ready",
        },
        block: Some(|s| {
            vec![
                Line::Comment("PM2's listen_timeout: how long a new instance may take to become ready."),
                Line::Value("TimeoutStartSec", s.listen_timeout.to_string()),
            ]
        }),
        inline: None,
        values: |s, _| one(s.listen_timeout),
        becomes: None,
    },
    Key {
        name: "kill_timeout",
        doc: Doc {
            kind: "ms or `\"10s\"`, default `1600ms` (PM2's)",
            becomes: "`TimeoutStopSec=` and `SYSMGR_KILL_TIMEOUT_MS`",
            notes: "how long an instance may drain after `kill_signal` before SIGKILL; the worker library reads the variable to plan its drain",
        },
        block: Some(|s| {
            vec![
                Line::Comment("PM2's kill_timeout: after KillSignal, the worker drains for this long, then gets SIGKILL."),
                Line::Value("TimeoutStopSec", s.kill_timeout.to_string()),
            ]
        }),
        // `SYSMGR_KILL_TIMEOUT_MS`, which the worker library reads.
        inline: Some(|s| s.kill_timeout.as_millis().to_string()),
        values: |s, _| one(s.kill_timeout),
        becomes: None,
    },
    Key {
        name: "kill_signal",
        doc: Doc {
            kind: "default `SIGINT` (PM2's)",
            becomes: "`KillSignal=` and `SYSMGR_KILL_SIGNAL`",
            notes: "`SIGKILL` warns: no drain possible. The worker library drains on this signal as well as SIGINT and SIGTERM",
        },
        block: Some(|s| vec![Line::Value("KillSignal", s.kill_signal.name().into())]),
        // `SYSMGR_KILL_SIGNAL`, which the worker library reads.
        inline: Some(|s| s.kill_signal.name().into()),
        values: |s, _| one(s.kill_signal.name()),
        becomes: None,
    },
    Key {
        name: "shutdown_with_message",
        doc: Doc {
            kind: "bool, default `false`",
            becomes: "`Environment=SYSMGR_SHUTDOWN_WITH_MESSAGE=1`",
            notes: "PM2's key, Node apps only: on the kill signal the bridge also emits `process.on('message')` with `'shutdown'`, as PM2 sends it",
        },
        block: Some(|s| {
            if s.shutdown_with_message && s.runtime.is_node() {
                vec![
                    Line::Comment("PM2's shutdown_with_message: the Node bridge passes the kill signal on as the\n'shutdown' message."),
                    Line::Value("Environment", "SYSMGR_SHUTDOWN_WITH_MESSAGE=1".into()),
                ]
            } else {
                Vec::new()
            }
        }),
        inline: None,
        values: |s, _| one(s.shutdown_with_message),
        becomes: None,
    },
    Key {
        name: "autorestart",
        doc: Doc {
            kind: "bool, default `true`",
            becomes: "`Restart=always` / `Restart=no`",
            notes: "",
        },
        block: Some(|s| {
            if s.autorestart {
                vec![
                    Line::Comment("PM2's autorestart: restart after any exit that systemctl or sysmgr did not ask for."),
                    Line::Choice("Restart", "always"),
                ]
            } else {
                vec![Line::Choice("Restart", "no")]
            }
        }),
        inline: None,
        values: |s, _| one(s.autorestart),
        becomes: None,
    },
    Key {
        name: "restart_delay",
        doc: Doc {
            kind: "ms or `\"1s\"`",
            becomes: "`RestartSec=`",
            notes: "",
        },
        block: Some(|s| {
            s.restart_delay
                .iter()
                .map(|d| Line::Value("RestartSec", d.to_string()))
                .collect()
        }),
        inline: None,
        values: |s, _| optional(s.restart_delay, |d| d.to_string()),
        becomes: None,
    },
    Key {
        name: "max_restarts",
        doc: Doc {
            kind: "1..10000, default 16",
            becomes: "`SYSMGR_MAX_RESTARTS=` for `sysmgr exec`, `RestartPreventExitStatus=250`, a `RuntimeDirectory=` kept across restarts",
            notes: "the crash-loop brake (with `autorestart`): the start after this many in a row, each less than 10 s after the one before, is refused and the instance stays `failed`; only that instance (not systemd's start limit, which would fail the shared socket); `sysmgr start` and `sysmgr reload` start it again; an app's own exit status 250 is not restarted either",
        },
        block: Some(|s| {
            if !s.autorestart {
                return Vec::new();
            }
            vec![
                Line::Comment("Crash-loop brake, PM2's max_restarts: `sysmgr exec` counts this instance's starts in a\ndirectory systemd keeps across its restarts; when more than this many come in a row, each\nless than 10 s after the one before, it exits with 250 instead of starting the program,\nso the instance stays failed, alone. The directory goes when the instance stops or fails,\nand `sysmgr reload` clears the count of each instance it restarts."),
                Line::Value(
                    "Environment",
                    format!(
                        "\"{}={}\" \"{}=%t/{}\"",
                        brake::MAX_VAR,
                        s.max_restarts,
                        brake::DIR_VAR,
                        brake::DIR
                    ),
                ),
                Line::Choice("RuntimeDirectory", brake::DIR),
                Line::Choice("RuntimeDirectoryPreserve", "restart"),
                Line::Raw(format!("RestartPreventExitStatus={}", brake::EXIT_STATUS)),
            ]
        }),
        inline: None,
        values: |s, _| one(s.max_restarts),
        becomes: None,
    },
    Key {
        name: "max_memory_restart",
        doc: Doc {
            kind: "bytes or `\"300M\"`, `\"1G\"`",
            becomes: "`graceful` mode: `NAME-memory.timer` + `NAME-memory.service` (a check every 5 s) and `MemoryMax=` at 150% of it; `hard` mode: `MemoryMax=` at it",
            notes: "PM2's key. Graceful (the default, `memory_limit_mode`): every 5 s a check restarts the instances above the limit, one at a time, through systemd's normal stop (`kill_signal`, then `kill_timeout` to drain) and only once the successor is ready, like `sysmgr reload`; the kernel's `MemoryMax=` at 150% of the limit is the backstop for an instance that grows faster than that. The figure is systemd's `MemoryCurrent`, or without cgroup memory accounting the instance's summed resident set",
        },
        block: Some(|s| match (s.memory_max(), s.memory_limit_mode) {
            (Some(max), MemoryLimitMode::Graceful) => vec![
                Line::Comment("PM2's max_memory_restart, graceful: the app's memory check restarts an instance above\nthe limit through its drain; past this backstop (150% of the limit) the kernel kills it."),
                Line::Value("MemoryMax", max.to_string()),
            ],
            (Some(max), MemoryLimitMode::Hard) => vec![
                Line::Comment("PM2's max_memory_restart, hard: past this the kernel kills the instance and it restarts."),
                Line::Value("MemoryMax", max.to_string()),
            ],
            (None, _) => Vec::new(),
        }),
        inline: None,
        values: |s, _| optional(s.max_memory_restart, |m| m.get().to_string()),
        becomes: Some(|s, _| match (s.memory_max(), s.memory_limit_mode) {
            (Some(max), MemoryLimitMode::Graceful) => {
                let names = UnitNames::new(s.name.as_str());
                format!("{} MemoryMax={max}", names.memory_timer())
            }
            (Some(max), MemoryLimitMode::Hard) => format!("MemoryMax={max}"),
            (None, _) => String::new(),
        }),
    },
    Key {
        name: "memory_limit_mode",
        doc: Doc {
            kind: "`\"graceful\"` (default) or `\"hard\"`",
            becomes: "see `max_memory_restart`",
            notes: "`hard`: no check, the kernel kills the instance at the limit (requests in flight are lost)",
        },
        block: None,
        inline: None,
        values: |s, _| {
            if s.max_memory_restart.is_some() {
                one(s.memory_limit_mode.as_str())
            } else {
                Vec::new()
            }
        },
        becomes: Some(|_, _| String::new()),
    },
    Key {
        name: "cron_restart",
        doc: Doc {
            kind: "string: cron (`\"0 3 * * *\"`, 6 fields with seconds, `@daily`) or systemd calendar syntax (`\"Mon..Fri 03:00\"`)",
            becomes: "`NAME-cron.timer` (`OnCalendar=`) + `NAME-cron.service`, which runs `sysmgr reload NAME`",
            notes: "PM2's key, as a timer instead of a daemon: the graceful rolling reload at those times, while the app runs (the target starts and stops the timer). cron's fields become `OnCalendar=`'s components (names like `MON`, `JAN`, ranges, lists, steps); a day of the month and a day of the week both set is refused (cron fires on either, systemd on both). `sysmgr status` shows the next and the last run",
        },
        block: Some(|s| match &s.cron_restart {
            Some(c) => vec![
                Line::Comment("PM2's cron_restart, in systemd's calendar syntax."),
                Line::Value("OnCalendar", c.on_calendar.clone()),
            ],
            None => Vec::new(),
        }),
        inline: None,
        values: |s, _| optional(s.cron_restart.as_ref(), |c| c.written.clone()),
        becomes: None,
    },
    Key {
        name: "stop_exit_codes",
        doc: Doc {
            kind: "integer or array",
            becomes: "`RestartPreventExitStatus=`",
            notes: "exits that mean \"stopped on purpose\"",
        },
        block: Some(|s| {
            if s.stop_exit_codes.is_empty() {
                return Vec::new();
            }
            let codes: Vec<String> = s.stop_exit_codes.iter().map(u8::to_string).collect();
            vec![
                Line::Comment("PM2's stop_exit_codes: exiting with these does not restart the instance."),
                Line::Value("RestartPreventExitStatus", codes.join(" ")),
            ]
        }),
        inline: None,
        values: |s, _| {
            if s.stop_exit_codes.is_empty() {
                Vec::new()
            } else {
                one(format!("{:?}", s.stop_exit_codes))
            }
        },
        becomes: None,
    },
    Key {
        name: "watchdog",
        doc: Doc {
            kind: "ms or `\"10s\"`",
            becomes: "`WatchdogSec=`",
            notes: "the worker must send `WATCHDOG=1` that often (the worker library does)",
        },
        block: Some(|s| match s.watchdog {
            Some(w) => vec![
                Line::Comment("The worker must send WATCHDOG=1 at least this often, or it is restarted."),
                Line::Value("WatchdogSec", w.to_string()),
            ],
            None => Vec::new(),
        }),
        inline: None,
        values: |s, _| optional(s.watchdog, |w| w.to_string()),
        becomes: None,
    },
    Key {
        name: "health_check",
        doc: Doc {
            kind: "HTTP path like `\"/health\"`; or a table: `{ path = \"/health\", timeout = \"2s\" }` or `{ command = [\"/usr/local/bin/check\"], timeout = \"2s\" }` (default timeout `5s`, at most `10min`)",
            becomes: "a path: `NAME-sysmgr-health@.socket` (`ListenStream=%t/sysmgr/NAME/health-%i.sock`, fd name `sysmgr-health`) in the instance's `Sockets=`; a command: the oneshot `NAME-sysmgr-check@.service`. Both: `Environment=SYSMGR_HEALTH_*`",
            notes: "`sysmgr reload` moves on from a new instance only once it passes, asked every 200 ms until the timeout: a version that is ready but unhealthy halts the reload like one that does not start. A path: `GET path` on a socket of the instance's own answers 2xx or 3xx; the Node bridge and `sysmgr-worker` apps serving every socket answer it with no change (docs/workers.md). A command: runs with the app's user, directory, environment and hardening, `SYSMGR_INSTANCE` set to the instance asked, and exits 0",
        },
        block: Some(|s| {
            let Some(h) = &s.health_check else {
                return Vec::new();
            };
            let names = UnitNames::new(s.name.as_str());
            let timeout = format!("\"SYSMGR_HEALTH_TIMEOUT_MS={}\"", h.timeout.as_millis());
            match &h.probe {
                HealthProbe::Http(path) => {
                    let vars = [
                        syntax::env_assignment("SYSMGR_HEALTH_PATH", path)
                            .expect("the path was checked by the config"),
                        timeout,
                        // App names and instance numbers need no quoting; `%t` and `%i` expand.
                        format!("\"SYSMGR_HEALTH_SOCKET=%t/{}\"", names.health_socket_path("%i")),
                    ];
                    vec![
                        Line::Comment("health_check: `sysmgr reload` asks this instance itself for GET SYSMGR_HEALTH_PATH on\na socket of its own (fd name sysmgr-health) before it moves on to the next one."),
                        Line::Value("Sockets", names.health_socket_ref()),
                        Line::Value("Environment", vars.join(" ")),
                    ]
                }
                HealthProbe::Command(_) => vec![
                    Line::Comment("health_check: `sysmgr reload` runs this instance's check (a oneshot) before it moves\non to the next one."),
                    Line::Value(
                        "Environment",
                        format!("\"SYSMGR_HEALTH_UNIT={}\" {timeout}", names.health_command_ref()),
                    ),
                ],
            }
        }),
        inline: None,
        values: |s, _| {
            optional(s.health_check.as_ref(), |h| match &h.probe {
                HealthProbe::Http(path) => format!("GET {path} within {}", h.timeout),
                HealthProbe::Command(argv) => format!("{argv:?} within {}", h.timeout),
            })
        },
        becomes: Some(|s, _| {
            let names = UnitNames::new(s.name.as_str());
            match s.health_check.as_ref().map(|h| &h.probe) {
                Some(HealthProbe::Command(_)) => {
                    format!("{} Environment=", names.health_command_file())
                }
                _ => format!("{} Sockets= Environment=", names.health_socket_file()),
            }
        }),
    },
    Key {
        name: "systemd_version",
        doc: Doc {
            kind: "integer, default the installed systemd's (239 when none is found)",
            becomes: "",
            notes: "the oldest systemd the units must run on; only keys that version understands are emitted (the hardening profile is fuller from 247). Set it when the units are generated for other machines",
        },
        block: None,
        inline: None,
        values: |s, _| one(s.systemd_version),
        becomes: Some(|_, _| String::new()),
    },
    Key {
        name: "env",
        doc: Doc {
            kind: "table of strings, numbers, booleans",
            becomes: "`Environment=`",
            notes: "values are passed exactly (`%` escaped, quotes escaped); NUL, control characters other than tab and newline, and Unicode noncharacters (U+FFFE, U+FDD0...) are errors (systemd refuses them)",
        },
        block: Some(|s| {
            s.env
                .iter()
                .map(|(k, v)| {
                    let assignment = syntax::env_assignment(k, v)
                        .expect("environment was checked by the config");
                    Line::Value("Environment", assignment)
                })
                .collect()
        }),
        inline: None,
        values: |s, _| s.env.iter().map(|(k, v)| format!("{k}={v:?}")).collect(),
        becomes: None,
    },
    Key {
        name: "hardening",
        doc: Doc {
            kind: "`\"default\"`, `\"strict\"` or `\"off\"`",
            becomes: "the settings of docs/hardening.md",
            notes: "`default`: read-only system, no capabilities, `@system-service` system calls (exposure about 1.8 with `systemd_version >= 247`). `strict` adds no network of its own (`PrivateNetwork=yes`: serves systemd's sockets, connects nowhere), hidden homes, no `@resources` calls. `off`: none (exposure 9.8), and the default for the user manager (`--user`), which could not set up the profile's namespaces; `sysmgr check` lists what each opened setting costs",
        },
        block: Some(hardening::lines),
        inline: None,
        values: |s, _| one(s.hardening.as_str()),
        // The settings that make the level; docs/hardening.md and `sysmgr check`'s exposure
        // line give the rest.
        becomes: Some(|s, _| match s.hardening {
            Hardening::Off => String::new(),
            Hardening::Default => "ProtectSystem=strict CapabilityBoundingSet= SystemCallFilter=".into(),
            Hardening::Strict => {
                "ProtectSystem=strict CapabilityBoundingSet= SystemCallFilter= PrivateNetwork=yes".into()
            }
        }),
    },
    Key {
        name: "state_directory",
        doc: Doc {
            kind: "name, e.g. `\"web\"`",
            becomes: "`StateDirectory=`",
            notes: "`/var/lib/NAME`, made by systemd and writable by the instances (`$STATE_DIRECTORY` with systemd 240+); the place for files the app keeps. Costs nothing outside it",
        },
        block: Some(|s| match &s.state_directory {
            Some(d) => vec![
                Line::Comment("The one directory the app keeps files in, /var/lib/NAME, writable despite ProtectSystem."),
                Line::Value("StateDirectory", d.clone()),
            ],
            None => Vec::new(),
        }),
        inline: None,
        values: |s, _| optional(s.state_directory.as_ref(), Clone::clone),
        becomes: None,
    },
    Key {
        name: "writable_paths",
        doc: Doc {
            kind: "array of paths",
            becomes: "`ReadWritePaths=`",
            notes: "existing paths (relative to the app file) the instances may write despite the read-only system, e.g. an upload directory. Each one opens the hardening a little: prefer `state_directory`",
        },
        block: Some(|s| {
            if s.writable_paths.is_empty() {
                return Vec::new();
            }
            let paths: Vec<String> = s
                .writable_paths
                .iter()
                .map(|p| syntax::path_value(&p.to_string_lossy()))
                .collect();
            vec![
                Line::Comment("Writable despite ProtectSystem=strict (writable_paths)."),
                Line::Value("ReadWritePaths", paths.join(" ")),
            ]
        }),
        inline: None,
        values: |s, _| s.writable_paths.iter().map(|p| p.display().to_string()).collect(),
        becomes: None,
    },
    Key {
        name: "address_families",
        doc: Doc {
            kind: "array, e.g. `[\"AF_NETLINK\"]`",
            becomes: "`RestrictAddressFamilies=`",
            notes: "socket families allowed besides `AF_UNIX`, `AF_INET`, `AF_INET6` (`strict`: `AF_UNIX`); `AF_NETLINK` reads network interfaces, `AF_PACKET` raw traffic. No effect with `hardening = \"off\"`",
        },
        block: Some(|s| {
            if s.address_families.is_empty() || s.hardening == Hardening::Off {
                return Vec::new();
            }
            vec![
                Line::Comment("More socket families than the profile's (address_families)."),
                Line::Value("RestrictAddressFamilies", s.address_families.join(" ")),
            ]
        }),
        inline: None,
        values: |s, _| s.address_families.clone(),
        becomes: None,
    },
    Key {
        name: "unit",
        doc: Doc {
            kind: "table `[unit.service]` of `Directive = \"value\"`",
            becomes: "those settings, last in `[Service]`",
            notes: "for what sysmgr has no key for (`LimitNOFILE`, `Nice`), and to open one hardening setting (`PrivateDevices = false`). Checked: directive syntax, one line each; directives sysmgr sets from a key (`ExecStart`, `Type`, `KillSignal`, ...) are refused with the key to use",
        },
        block: Some(|s| {
            if s.unit_service.is_empty() {
                return Vec::new();
            }
            let mut out = vec![Line::Comment(
                "[unit.service] of the app file, as written; later settings override the ones above.",
            )];
            out.extend(
                s.unit_service
                    .iter()
                    .map(|(d, v)| Line::Raw(format!("{d}={v}"))),
            );
            out
        }),
        inline: None,
        values: |s, _| {
            s.unit_service
                .iter()
                .map(|(d, v)| format!("{d} = {v:?}"))
                .collect()
        },
        becomes: None,
    },
    Key {
        name: "deploy",
        doc: Doc {
            kind: "tables `[deploy.ENV]`: `hosts`, `repo`, `ref`, `path`, `ssh_options`, hooks, `serial`, `max_fail`, `keep`, `apps`, `sysmgr`",
            becomes: "nothing in the units: `sysmgr deploy ENV` (docs/deploy.md)",
            notes: "PM2's `deploy` section: hosts `user@host[:port]`, deployed `serial` at a time into immutable releases under `path`, reloaded with `sysmgr reload` on each host; the first failure (past `max_fail`) stops the rollout and switches that host back",
        },
        block: None,
        inline: None,
        values: |s, _| {
            s.deploy
                .iter()
                .map(|d| {
                    let hosts: Vec<String> = d.hosts.iter().map(ToString::to_string).collect();
                    format!("{}: {} ({})", d.name, hosts.join(", "), d.git_ref)
                })
                .collect()
        },
        becomes: Some(|_, _| String::new()),
    },
];

/// `ExecStart=`, and for Node apps what the bridge needs to know: the sockets' addresses (in
/// the order of their fds' names) and whether to wait for `process.send('ready')`.
///
/// The command was checked by the config; sysmgr's own paths (its binary, the Node bridge)
/// come from the machine, and [`crate::render::render`] refuses them before it fills any
/// template when no unit can carry them. Without a line to give, there is none.
fn command_lines(s: &AppSpec) -> Vec<Line> {
    let exec = |args: &[String]| syntax::exec_program_line(s.runtime.sysmgr(), args).ok();
    let super::Runtime::Node(bridge) = &s.runtime else {
        let mut args = vec!["exec".to_string()];
        args.extend(s.command.iter().cloned());
        let Some(exec) = exec(&args) else {
            return Vec::new();
        };
        return vec![
            Line::Comment("Started by `sysmgr exec`, which becomes the program (same PID) after giving its stdout\nand stderr journal streams of their own: stderr lines are stored with PRIORITY=3 (err),\nstdout lines with 6 (info), so `sysmgr logs --err` finds them."),
            Line::Value("ExecStart", exec),
        ];
    };
    let Ok(script) = syntax::path_argument(&bridge.script) else {
        return Vec::new();
    };
    let mut args = vec![
        "exec".to_string(),
        s.command[0].clone(),
        "--require".to_string(),
        script.to_string(),
    ];
    args.extend(s.command[1..].iter().cloned());
    let Some(exec) = exec(&args) else {
        return Vec::new();
    };
    let mut lines = vec![
        Line::Comment("Node.js, started by `sysmgr exec` (it hands Node a notify socket, then becomes Node)\nwith sysmgr's bridge preloaded: app.listen(PORT) takes systemd's socket, process.send('ready')\nsends READY=1, and the kill signal drains. The app itself is unchanged."),
        Line::Value("ExecStart", exec),
    ];
    let listen: Vec<String> = s
        .listen
        .iter()
        .map(|l| format!("{}={}", l.name, l.address))
        .collect();
    let mut vars = vec![format!("SYSMGR_WAIT_READY={}", u8::from(s.wait_ready))];
    if !listen.is_empty() {
        vars.push(format!("SYSMGR_LISTEN={}", listen.join(" ")));
    }
    let assignments: Vec<String> = vars
        .iter()
        .map(|v| {
            let (k, v) = v.split_once('=').expect("NAME=VALUE");
            syntax::env_assignment(k, v).expect("addresses and names were checked by the config")
        })
        .collect();
    lines.push(Line::Value("Environment", assignments.join(" ")));
    lines
}

/// Top-level names that are not keys but that app.toml accepts, with their docs rows.
const OTHER_DOC_ROWS: &[(&str, Doc)] = &[
    (
        "[env_PROFILE]",
        Doc {
            kind: "table",
            becomes: "merged over `[env]` with `--env PROFILE`",
            notes: "PM2's `env_production`",
        },
    ),
    (
        "exec_mode",
        Doc {
            kind: "",
            becomes: "nothing",
            notes: "accepted with a warning: every instance is its own process sharing systemd's sockets, which is PM2's cluster mode",
        },
    ),
];

/// The key table of `docs/app-toml.md`, header included.
pub fn docs_table() -> String {
    let mut out = String::from("| key | type and default | becomes | notes |\n|---|---|---|---|\n");
    let keys = KEYS.iter().map(|k| {
        let name = if k.name == "env" {
            "[env]".to_string()
        } else if k.name == "unit" {
            "[unit.service]".to_string()
        } else {
            k.name.to_string()
        };
        (name, k.doc)
    });
    let others = OTHER_DOC_ROWS.iter().map(|(n, d)| (n.to_string(), *d));
    for (name, d) in keys.chain(others) {
        let row = format!("| `{name}` | {} | {} | {} |", d.kind, d.becomes, d.notes);
        // An empty cell is written `| |`, as a person would.
        let _ = writeln!(out, "{}", row.replace("|  |", "| |"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `docs/app-toml.md` lists exactly the keys of [`KEYS`], as [`docs_table`] writes them.
    /// After changing a key, rewrite the doc's table with `SYSMGR_BLESS=1`.
    #[test]
    fn the_docs_list_exactly_the_keys_of_the_table() {
        crate::config::assert_doc_table(
            "docs/app-toml.md",
            "| key | type and default |",
            &docs_table(),
        );
    }

    /// The memory key's docs state the check's interval and the backstop as the code has them.
    #[test]
    fn the_memory_docs_state_the_interval_and_the_backstop() {
        let key = by_name("max_memory_restart").unwrap();
        let every = format!("every {} s", crate::config::MEMORY_CHECK_SECS);
        let backstop = format!("{}%", crate::config::MEMORY_BACKSTOP_PERCENT);
        for text in [key.doc.becomes, key.doc.notes] {
            assert!(text.contains(&every), "{text}");
            assert!(text.contains(&backstop), "{text}");
        }
    }

    #[test]
    fn placeholders_and_names_find_the_same_key() {
        for key in KEYS {
            assert_eq!(by_name(key.name).unwrap().name, key.name);
            assert_eq!(by_placeholder(&key.placeholder()).unwrap().name, key.name);
        }
    }
}
