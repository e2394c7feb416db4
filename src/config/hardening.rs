//! The hardening profile every generated service gets unless the app says `hardening = "off"`.
//!
//! `systemd-analyze security` rated an unhardened instance 9.8 of 10; a hand-written drop-in
//! brought it to 1.8 with the worker still serving. This module is that drop-in, as data: one
//! table ([`SETTINGS`]) of the settings, the systemd version that understands each (a setting
//! newer than `systemd_version` is not emitted), why it is there and what opening it costs.
//! The key table renders it (`hardening`), `sysmgr check` prints the cost of what an app
//! opened, and the table of `docs/hardening.md` is generated from it (a test keeps it in step).
//!
//! Two settings depend on the program, decided by the basename of `command`'s program:
//! `MemoryDenyWriteExecute=yes` kills JIT runtimes at start (V8 needs writable and executable
//! pages), so it is set only for programs that are neither a known JIT runtime nor a launcher
//! whose real program sysmgr cannot see (a shell, `env`, `sysmgr exec`); and `NotifyAccess=main`
//! (see [`notify_access`]).

use std::borrow::Cow;
use std::fmt::Write as _;
use std::path::Path;

use super::keys::Line;
use super::types::Hardening;
use super::AppSpec;

/// Programs that compile to machine code at run time: `MemoryDenyWriteExecute=yes` would kill
/// them (Node's V8 at start). CPython has no JIT unless built with `--enable-experimental-jit`.
pub const JIT_RUNTIMES: &[&str] = &[
    "node", "nodejs", "deno", "bun", "java", "dotnet", "mono", "pypy", "pypy3", "luajit", "php",
    "php-fpm", "ruby", "julia", "erl", "beam.smp", "elixir", "iex", "mix",
];

/// Programs that run another program sysmgr cannot see (a shell's script, `env node`, the node
/// bridge `sysmgr exec`): treated like a JIT runtime, and like a sender of `READY=1` from a child.
pub const LAUNCHERS: &[&str] = &[
    "sh",
    "bash",
    "dash",
    "zsh",
    "ksh",
    "fish",
    "env",
    "sysmgr",
    "npm",
    "npx",
    "yarn",
    "pnpm",
    "nice",
    "nohup",
    "timeout",
    "setsid",
    "stdbuf",
    "tini",
    "dumb-init",
];

/// Runtimes whose usual way to send `READY=1` is a child process (`systemd-notify`): they
/// have no unix datagram sockets. Node is not among them: its apps run through sysmgr's
/// bridge, which sends from the main process (see the `wait_ready` key).
const NOTIFY_FROM_CHILD: &[&str] = &["deno", "bun"];

/// The basename of the program `command` runs.
fn program(spec: &AppSpec) -> &str {
    let argv0 = spec.command.first().map_or("", String::as_str);
    Path::new(argv0)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(argv0)
}

/// Whether the program may need writable and executable memory (a JIT, or unknown).
pub fn may_jit(spec: &AppSpec) -> bool {
    let p = program(spec);
    JIT_RUNTIMES.contains(&p) || LAUNCHERS.contains(&p)
}

/// `NotifyAccess=` for a hardened app with `wait_ready`: `main` unless its program is a
/// launcher or a runtime that notifies from a child (then `all`, as the unhardened units).
pub fn notify_access(spec: &AppSpec) -> &'static str {
    // sysmgr's Node bridge sends from the main process, hardened or not.
    if spec.runtime.is_node() {
        return "main";
    }
    let p = program(spec);
    if spec.hardening == Hardening::Off || LAUNCHERS.contains(&p) || NOTIFY_FROM_CHILD.contains(&p)
    {
        "all"
    } else {
        "main"
    }
}

/// What decides the value of a setting for one app.
pub struct Facts {
    /// `default` or `strict`.
    pub level: Hardening,
    /// The working directory, the program, sysmgr itself (every instance starts through
    /// `sysmgr exec`) or the Node bridge is below a home directory.
    pub in_home: bool,
    /// The same, below `/tmp` or `/var/tmp`.
    pub in_tmp: bool,
    /// See [`may_jit`].
    pub may_jit: bool,
}

impl Facts {
    /// The facts of `spec`.
    pub fn of(spec: &AppSpec) -> Self {
        let mut paths = vec![
            spec.cwd.as_path(),
            Path::new(spec.command[0].as_str()),
            spec.runtime.sysmgr(),
        ];
        if let super::Runtime::Node(bridge) = &spec.runtime {
            paths.push(&bridge.script);
        }
        let below = |roots: &[&str]| paths.iter().any(|p| roots.iter().any(|r| p.starts_with(r)));
        Self {
            level: spec.hardening,
            in_home: below(&["/home", "/root", "/run/user"]),
            in_tmp: below(&["/tmp", "/var/tmp"]),
            may_jit: may_jit(spec),
        }
    }

    fn strict(&self) -> bool {
        self.level == Hardening::Strict
    }
}

/// One setting of the profile.
pub struct Setting {
    /// The directive.
    pub directive: &'static str,
    /// Its value as the docs show it.
    pub shown: &'static str,
    /// Its value for an app; `None`: not set for it.
    pub value: fn(&Facts) -> Option<Cow<'static, str>>,
    /// The first systemd version that understands it.
    pub since: u32,
    /// Why it is there (the comment above it in the unit, and the docs).
    pub why: &'static str,
    /// What the app gets if it is opened.
    pub cost: &'static str,
}

fn yes(_: &Facts) -> Option<Cow<'static, str>> {
    Some("yes".into())
}

/// The profile, in the order of the unit.
pub const SETTINGS: &[Setting] = &[
    Setting {
        directive: "PrivateTmp",
        shown: "yes (not when `cwd`, the program or sysmgr itself is below /tmp)",
        value: |f| (!f.in_tmp).then_some("yes".into()),
        since: 0,
        why: "its own /tmp and /var/tmp, emptied when it stops: no temp-file races with other services",
        cost: "shares /tmp and /var/tmp with every other process",
    },
    Setting {
        directive: "PrivateDevices",
        shown: "yes",
        value: yes,
        since: 0,
        why: "a /dev with only null, zero, random, urandom, tty and friends: no disks, no hardware",
        cost: "sees every device node of the machine (raw disks included, as root)",
    },
    Setting {
        directive: "PrivateMounts",
        shown: "yes",
        value: yes,
        since: 239,
        why: "mounts made inside stay inside and the host's new mounts do not leak in",
        cost: "can install mounts the whole system sees",
    },
    Setting {
        directive: "ProtectSystem",
        shown: "strict",
        value: |_| Some("strict".into()),
        since: 232,
        why: "the whole file system is read-only (`cwd` stays readable); writable places are explicit: `state_directory`, `writable_paths`",
        cost: "can write wherever its user may: /etc, /usr, the app's own code",
    },
    Setting {
        directive: "ProtectHome",
        shown: "read-only (`strict`: yes, unless `cwd`, the program or sysmgr itself is below a home)",
        value: |f| {
            Some(if f.strict() && !f.in_home {
                "yes".into()
            } else {
                "read-only".into()
            })
        },
        since: 0,
        why: "home directories are read-only (`strict`: hidden)",
        cost: "can change every user's files, SSH keys included",
    },
    Setting {
        directive: "NoNewPrivileges",
        shown: "yes",
        value: yes,
        since: 0,
        why: "neither it nor its children can gain privileges through setuid programs",
        cost: "a setuid program it runs (sudo, ping) runs with more privileges than the app",
    },
    Setting {
        directive: "CapabilityBoundingSet",
        shown: "(empty)",
        value: |_| Some("".into()),
        since: 0,
        why: "no capability even as root: systemd binds the port, so the app needs no `CAP_NET_BIND_SERVICE`",
        cost: "as root, may do nearly anything the kernel allows",
    },
    Setting {
        directive: "RestrictAddressFamilies",
        shown: "AF_UNIX AF_INET AF_INET6 (`strict`: AF_UNIX) + `address_families`",
        value: |f| {
            Some(if f.strict() {
                "AF_UNIX".into()
            } else {
                "AF_UNIX AF_INET AF_INET6".into()
            })
        },
        since: 0,
        why: "sockets of these families only: AF_UNIX for the journal and the notify socket, IP for clients and databases",
        cost: "can open netlink, packet (raw traffic) and other exotic sockets",
    },
    Setting {
        directive: "SystemCallFilter",
        shown: "@system-service",
        value: |_| Some("@system-service".into()),
        since: 235,
        why: "the system calls of ordinary services only",
        cost: "can make any system call: a larger kernel surface for an exploit",
    },
    Setting {
        directive: "SystemCallFilter",
        shown: "~@privileged (`strict`: ~@privileged @resources)",
        value: |f| {
            Some(if f.strict() {
                "~@privileged @resources".into()
            } else {
                "~@privileged".into()
            })
        },
        since: 235,
        why: "minus the calls that need privileges (chown, setuid, mount...) or change resource limits (`strict`)",
        cost: "may call chown, setuid and the like (which fail without capabilities anyway)",
    },
    Setting {
        directive: "SystemCallErrorNumber",
        shown: "EPERM",
        value: |_| Some("EPERM".into()),
        since: 0,
        why: "a filtered call fails with EPERM, which programs handle, instead of killing the process",
        cost: "",
    },
    Setting {
        directive: "SystemCallArchitectures",
        shown: "native",
        value: |_| Some("native".into()),
        since: 0,
        why: "no 32-bit system calls on a 64-bit machine, a way around the filter",
        cost: "can use the other ABIs' system calls, which the filter does not see",
    },
    Setting {
        directive: "ProtectKernelTunables",
        shown: "yes",
        value: yes,
        since: 232,
        why: "/proc/sys and /sys are read-only",
        cost: "as root, can change kernel settings",
    },
    Setting {
        directive: "ProtectKernelModules",
        shown: "yes",
        value: yes,
        since: 232,
        why: "no kernel module loading",
        cost: "as root, can load kernel modules",
    },
    Setting {
        directive: "ProtectKernelLogs",
        shown: "yes",
        value: yes,
        since: 244,
        why: "no access to the kernel log (kernel addresses)",
        cost: "can read the kernel log",
    },
    Setting {
        directive: "ProtectControlGroups",
        shown: "yes",
        value: yes,
        since: 232,
        why: "the cgroup tree is read-only: it cannot lift its own memory limit",
        cost: "as root, can change its own and others' resource limits",
    },
    Setting {
        directive: "ProtectClock",
        shown: "yes",
        value: yes,
        since: 245,
        why: "cannot set the clock",
        cost: "as root, can set the system clock (TLS and logs depend on it)",
    },
    Setting {
        directive: "ProtectHostname",
        shown: "yes",
        value: yes,
        since: 242,
        why: "cannot change the host name",
        cost: "as root, can change the host name",
    },
    Setting {
        directive: "ProtectProc",
        shown: "invisible",
        value: |_| Some("invisible".into()),
        since: 247,
        why: "other users' processes are hidden in /proc",
        cost: "sees every process of the machine and their command lines",
    },
    Setting {
        directive: "ProcSubset",
        shown: "pid",
        value: |_| Some("pid".into()),
        since: 247,
        why: "/proc shows processes only, not the kernel's other files (/proc/kcore, ...)",
        cost: "reads all of /proc (also needed by programs that read /proc/cpuinfo or /proc/meminfo)",
    },
    Setting {
        directive: "RestrictNamespaces",
        shown: "yes",
        value: yes,
        since: 233,
        why: "cannot create namespaces (a common first step of kernel exploits)",
        cost: "can create user and other namespaces",
    },
    Setting {
        directive: "RestrictRealtime",
        shown: "yes",
        value: yes,
        since: 231,
        why: "no real-time scheduling, which could starve the machine",
        cost: "can starve the machine with real-time threads",
    },
    Setting {
        directive: "RestrictSUIDSGID",
        shown: "yes",
        value: yes,
        since: 242,
        why: "cannot create setuid or setgid files",
        cost: "can leave setuid files behind",
    },
    Setting {
        directive: "LockPersonality",
        shown: "yes",
        value: yes,
        since: 235,
        why: "cannot change its execution domain (personality(2))",
        cost: "can switch to legacy execution domains",
    },
    Setting {
        directive: "MemoryDenyWriteExecute",
        shown: "yes, not for JIT runtimes and launchers (see below)",
        value: |f| (!f.may_jit).then_some("yes".into()),
        since: 231,
        why: "no memory both writable and executable: injected code cannot run",
        cost: "injected code can be written to memory and run",
    },
    Setting {
        directive: "UMask",
        shown: "0077",
        value: |_| Some("0077".into()),
        since: 0,
        why: "files it creates are readable by its user only",
        cost: "files it creates are readable by everyone",
    },
    Setting {
        directive: "PrivateNetwork",
        shown: "`strict` only: yes",
        value: |f| f.strict().then_some("yes".into()),
        since: 0,
        why: "`strict`: no network of its own; it serves the sockets systemd hands over and makes no outgoing connection",
        cost: "can connect anywhere (databases, the internet)",
    },
];

/// The comment, settings and openings of the profile for `spec`, as the unit gets them.
pub fn lines(spec: &AppSpec) -> Vec<Line> {
    if spec.hardening == Hardening::Off {
        return Vec::new();
    }
    let facts = Facts::of(spec);
    let mut out = vec![Line::Comment(
        "Hardening (`hardening`, docs/hardening.md): a read-only system, no privileges, few\n\
         system calls. Open a setting with `[unit.service]` in the app file.",
    )];
    for s in SETTINGS {
        if s.since > spec.systemd_version {
            continue;
        }
        if let Some(value) = (s.value)(&facts) {
            out.push(Line::Value(s.directive, value.into_owned()));
        }
    }
    out
}

/// The profile's settings that `spec` does not get, each with what that costs: all of them
/// with `hardening = "off"`, else the ones an app's `[unit.service]` sets to something else,
/// and the ones left out for the program or the paths (`MemoryDenyWriteExecute`, `PrivateTmp`).
pub fn opened(spec: &AppSpec) -> Vec<(String, &'static str)> {
    let facts = Facts::of(spec);
    let mut out: Vec<(String, &'static str)> = Vec::new();
    for s in SETTINGS.iter().filter(|s| !s.cost.is_empty()) {
        let value = (s.value)(&facts);
        let what = if spec.hardening == Hardening::Off {
            if value.is_none() || s.directive == "PrivateNetwork" {
                continue;
            }
            format!("{}= not set", s.directive)
        } else if s.since > spec.systemd_version {
            if value.is_none() {
                continue;
            }
            format!(
                "{}= not set (needs systemd {}, `systemd_version` is {})",
                s.directive, s.since, spec.systemd_version
            )
        } else if let Some((_, v)) = spec
            .unit_service
            .iter()
            .find(|(d, v)| d == s.directive && value.as_deref() != Some(v.as_str()))
        {
            format!("{}={v} (`[unit.service]`)", s.directive)
        } else if value.is_none() && matches!(s.directive, "MemoryDenyWriteExecute" | "PrivateTmp")
        {
            let why = if s.directive == "PrivateTmp" {
                "`cwd`, the program or sysmgr itself is below /tmp"
            } else {
                "the program may be a JIT runtime"
            };
            format!("{}= not set ({why})", s.directive)
        } else {
            continue;
        };
        if !out.iter().any(|(w, _)| *w == what) {
            out.push((what, s.cost));
        }
    }
    out
}

/// What to do about a failed instance whose journal shows the profile in the way: a write
/// refused with `EROFS` ("Read-only file system", as libc, Python and Node word it) means the
/// app writes outside the places `state_directory` and `writable_paths` open.
pub fn journal_hint(journal: &[String]) -> Option<&'static str> {
    journal
        .iter()
        .any(|l| l.to_ascii_lowercase().contains("read-only file system"))
        .then_some(
            "it wrote to a read-only file system: the hardening profile (`ProtectSystem=strict`) \
             makes everything read-only; give the app a place to write with \
             `state_directory = \"NAME\"` (/var/lib/NAME) or `writable_paths = [\"/path\"]` in its \
             app file (docs/hardening.md)",
        )
}

/// The table of `docs/hardening.md`, header included.
pub fn docs_table() -> String {
    let mut out = String::from(
        "| setting | value | since systemd | why | opening it costs |\n|---|---|---|---|---|\n",
    );
    for s in SETTINGS {
        let since = if s.since == 0 {
            "any".to_string()
        } else {
            s.since.to_string()
        };
        let cost = if s.cost.is_empty() { "-" } else { s.cost };
        let _ = writeln!(
            out,
            "| `{}=` | {} | {since} | {} | {cost} |",
            s.directive, s.shown, s.why
        );
    }
    out
}

/// Directives of `[Service]` that sysmgr sets from a key: `[unit.service]` may not set them,
/// and the error names the key.
pub const OWNED: &[(&str, &str)] = &[
    ("ExecStart", "command"),
    ("WorkingDirectory", "cwd"),
    ("User", "user"),
    ("Group", "group"),
    ("DynamicUser", "dynamic_user"),
    ("Type", "wait_ready"),
    ("Sockets", "listen"),
    ("NonBlocking", "listen"),
    ("Environment", "env"),
    ("EnvironmentFile", "env"),
    ("TimeoutStartSec", "listen_timeout"),
    ("TimeoutStopSec", "kill_timeout"),
    ("TimeoutSec", "listen_timeout` and `kill_timeout"),
    ("KillSignal", "kill_signal"),
    ("KillMode", "kill_signal"),
    ("Restart", "autorestart"),
    ("RestartSec", "restart_delay"),
    ("StartLimitBurst", "max_restarts"),
    ("StartLimitIntervalSec", "max_restarts"),
    ("MemoryMax", "max_memory_restart"),
    ("RestartPreventExitStatus", "stop_exit_codes"),
    ("RuntimeDirectoryPreserve", "max_restarts"),
    ("WatchdogSec", "watchdog"),
    ("SyslogIdentifier", "name"),
    ("StateDirectory", "state_directory"),
    ("ReadWritePaths", "writable_paths"),
    ("RestrictAddressFamilies", "address_families"),
];

#[cfg(test)]
mod tests {
    use super::*;

    /// `docs/hardening.md` shows exactly [`SETTINGS`]; re-bless with `SYSMGR_BLESS=1`.
    #[test]
    fn the_docs_show_exactly_the_profile() {
        crate::config::assert_doc_table("docs/hardening.md", "| setting | value |", &docs_table());
    }

    #[test]
    fn a_read_only_write_in_the_journal_names_the_keys_to_set() {
        let lines = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        for line in [
            "sh: 1: cannot create state.txt: Read-only file system",
            "OSError: [Errno 30] Read-only file system: 'state.txt'",
            "Error: EROFS: read-only file system, open 'state.txt'",
        ] {
            let hint = journal_hint(&lines(&["starting", line])).unwrap();
            assert!(hint.contains("`state_directory = \"NAME\"`"), "{hint}");
            assert!(hint.contains("`writable_paths = [\"/path\"]`"), "{hint}");
        }
        assert_eq!(journal_hint(&lines(&["Permission denied"])), None);
    }

    /// A sysmgr run from a checkout in /tmp or a home (`cargo install` puts it in
    /// `~/.cargo/bin`) must stay reachable: every instance starts through `sysmgr exec`.
    #[test]
    fn sysmgr_itself_below_tmp_or_a_home_keeps_its_path_visible() {
        let spec_with = |sysmgr: &str, level: &str| {
            let text =
                format!("name = \"web\"\ncommand = [\"/usr/bin/app\"]\nhardening = \"{level}\"\n");
            let mut spec = crate::config::tests::ok(&text);
            spec.runtime = crate::config::Runtime::of(
                &spec.command,
                &crate::config::BridgePaths {
                    sysmgr: sysmgr.into(),
                    ..crate::config::BridgePaths::default()
                },
            );
            spec
        };
        let private_tmp = |spec: &AppSpec| (SETTINGS[0].value)(&Facts::of(spec));
        assert_eq!(SETTINGS[0].directive, "PrivateTmp");
        assert_eq!(
            private_tmp(&spec_with("/usr/bin/sysmgr", "default")).as_deref(),
            Some("yes")
        );
        assert_eq!(
            private_tmp(&spec_with("/tmp/ci/target/debug/sysmgr", "default")),
            None
        );
        let home = |sysmgr| {
            let spec = spec_with(sysmgr, "strict");
            let setting = SETTINGS
                .iter()
                .find(|s| s.directive == "ProtectHome")
                .unwrap();
            (setting.value)(&Facts::of(&spec))
        };
        assert_eq!(home("/usr/bin/sysmgr").as_deref(), Some("yes"));
        assert_eq!(
            home("/root/.cargo/bin/sysmgr").as_deref(),
            Some("read-only")
        );
    }

    #[test]
    fn every_owned_directive_names_a_key() {
        for (directive, key) in OWNED {
            let first = key.split('`').next().unwrap();
            assert!(
                super::super::keys::by_name(first).is_some(),
                "`{directive}` names `{key}`, not a key"
            );
        }
    }
}
