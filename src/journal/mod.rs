//! sysmgr's own events in systemd's journal: who did what to which app, when, and how it went.
//!
//! systemd records what the units did; nothing recorded what *sysmgr* did: who reloaded `web`,
//! from which file, which PIDs were replaced, how long it took, why it halted. Each command
//! that changes an app now leaves structured entries in the journal, written through
//! `tracing` and `tracing-journald` (the controller and the generate step emit them; the
//! reload engine still only reports [`Event`]s, and the controller turns them into entries).
//! Every entry carries `SYSLOG_IDENTIFIER=sysmgr` and fields named `SYSMGR_*` (see
//! [`fields`] and docs/journal.md), so `journalctl SYSLOG_IDENTIFIER=sysmgr SYSMGR_APP=web`
//! finds them, and `sysmgr history` ([`history`]) reads them back.
//!
//! Logging never changes what a command does: without journald (no
//! `/run/systemd/journal/socket`) nothing is installed and every entry is dropped, and a send
//! that fails is ignored. The terminal output is the command line's, unchanged.

pub mod history;
pub mod output;

use std::path::Path;
use std::time::{Duration, Instant};

use tracing_subscriber::layer::SubscriberExt as _;

use crate::reload::{Event, InstanceReport, Step, Summary};
use crate::systemd::Manager;

/// The `SYSLOG_IDENTIFIER=` of every entry, whatever name the binary was run under.
pub const IDENTIFIER: &str = "sysmgr";

/// The tracing target of sysmgr's entries; only these reach the journal (zbus logs through
/// tracing too, and its debug output is not an event of sysmgr's).
const TARGET: &str = "sysmgr::journal";

/// journald's native socket: when it is missing, there is no journal to write to.
const JOURNALD_SOCKET: &str = "/run/systemd/journal/socket";

/// The journal field names, as `journalctl` filters by them (`journalctl SYSMGR_APP=web`).
pub mod fields {
    /// The app's name.
    pub const APP: &str = "SYSMGR_APP";
    /// `start`, `stop`, `restart`, `scale`, `delete`, `generate` or `reload`.
    pub const ACTION: &str = "SYSMGR_ACTION";
    /// `begin` (a rollout starts), `instance` (one instance of a rollout is done), `drain`
    /// (a surge reload's old process finished draining) or `summary` (the action is done:
    /// one per action).
    pub const EVENT: &str = "SYSMGR_EVENT";
    /// Summary: `ok`, `halted` (a rollout stopped at a failed instance) or `failed`.
    /// Instance: `ready` or `failed`.
    pub const OUTCOME: &str = "SYSMGR_OUTCOME";
    /// One ID shared by every entry of one command (`reload FILE` writes a `generate` and a
    /// `reload` with the same one).
    pub const RUN: &str = "SYSMGR_RUN";
    /// `system` or `user`: which service manager.
    pub const MANAGER: &str = "SYSMGR_MANAGER";
    /// The invoking user: the name of the process's real user ID.
    pub const USER: &str = "SYSMGR_USER";
    /// `SUDO_USER`, when sysmgr was run through sudo (as the environment says; informative).
    pub const SUDO_USER: &str = "SYSMGR_SUDO_USER";
    /// The app file the units were generated from.
    pub const APP_FILE: &str = "SYSMGR_APP_FILE";
    /// How long the action (summary) or the instance (instance entry) took, in ms.
    pub const DURATION_MS: &str = "SYSMGR_DURATION_MS";
    /// Instance entry: the instance number.
    pub const INSTANCE: &str = "SYSMGR_INSTANCE";
    /// Instance entry: its unit, `NAME@N.service`.
    pub const UNIT: &str = "SYSMGR_UNIT";
    /// Instance entry: the main PID before the restart (0: none).
    pub const OLD_PID: &str = "SYSMGR_OLD_PID";
    /// Instance entry: the main PID after (0: none).
    pub const NEW_PID: &str = "SYSMGR_NEW_PID";
    /// Begin and summary: how many instances the action covers.
    pub const INSTANCES: &str = "SYSMGR_INSTANCES";
    /// Begin and summary of a rollout: how many restart at a time.
    pub const PARALLEL: &str = "SYSMGR_PARALLEL";
    /// Summary of a rollout: `N:OLD>NEW` per instance replaced, space-separated. Of a
    /// start: `N:PID` per running instance.
    pub const PIDS: &str = "SYSMGR_PIDS";
    /// The unit that failed: the one a rollout halted at, or the first not running.
    pub const FAILED_UNIT: &str = "SYSMGR_FAILED_UNIT";
    /// systemd's `Result` of the failed unit: `exit-code`, `timeout`, `signal`...
    pub const SERVICE_RESULT: &str = "SYSMGR_SERVICE_RESULT";
    /// `ExecMainStatus` of the failed unit: its exit status or signal.
    pub const EXIT_STATUS: &str = "SYSMGR_EXIT_STATUS";
    /// Why it failed, in words.
    pub const REASON: &str = "SYSMGR_REASON";
    /// Summary of a halted rollout: the units never restarted, space-separated.
    pub const SKIPPED: &str = "SYSMGR_SKIPPED";
    /// Scale: the count before.
    pub const FROM: &str = "SYSMGR_FROM";
    /// Scale: the count after.
    pub const TO: &str = "SYSMGR_TO";
    /// How many instances were started (scale) or stopped (stop, scale, delete).
    pub const STARTED: &str = "SYSMGR_STARTED";
    /// See [`STARTED`].
    pub const STOPPED: &str = "SYSMGR_STOPPED";
    /// A failed action's error, with its causes.
    pub const ERROR: &str = "SYSMGR_ERROR";
}

/// Sends sysmgr's entries to the journal from now on, if there is one. Call once, first
/// thing; does nothing (and never fails) without journald.
pub fn init() {
    if !Path::new(JOURNALD_SOCKET).exists() {
        return;
    }
    // `layer()` sends an empty datagram to check that journald listens.
    let Ok(layer) = tracing_journald::layer() else {
        return;
    };
    let layer = layer
        // Our field names are the journal's as written: no `F_` prefix.
        .with_field_prefix(None)
        .with_syslog_identifier(IDENTIFIER.to_string());
    let only_ours =
        tracing_subscriber::filter::Targets::new().with_target(TARGET, tracing::Level::TRACE);
    let subscriber = tracing_subscriber::registry()
        .with(tracing_subscriber::Layer::with_filter(layer, only_ours));
    // A second call (or a library user with its own subscriber) keeps the first.
    let _ = tracing::subscriber::set_global_default(subscriber);
}

/// What was done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `sysmgr start`.
    Start,
    /// `sysmgr stop`.
    Stop,
    /// `sysmgr restart`.
    Restart,
    /// `sysmgr scale`.
    Scale,
    /// `sysmgr delete`.
    Delete,
    /// Units written by `sysmgr generate` (also by `start FILE` and `reload FILE`).
    Generate,
    /// `sysmgr reload`.
    Reload,
    /// The graceful `max_memory_restart` check restarting instances above the limit.
    MemoryRestart,
}

impl Action {
    /// The word in `SYSMGR_ACTION`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Start => "start",
            Self::Stop => "stop",
            Self::Restart => "restart",
            Self::Scale => "scale",
            Self::Delete => "delete",
            Self::Generate => "generate",
            Self::Reload => "reload",
            Self::MemoryRestart => "memory-restart",
        }
    }
}

/// One journal entry: the fields of [`fields`], each present only when set.
#[derive(Debug, Clone, Default)]
pub struct Entry {
    message: String,
    failed: bool,
    app: String,
    action: &'static str,
    event: &'static str,
    outcome: &'static str,
    run: String,
    manager: &'static str,
    user: String,
    sudo_user: Option<String>,
    app_file: Option<String>,
    duration_ms: Option<u64>,
    instance: Option<u64>,
    unit: Option<String>,
    old_pid: Option<u64>,
    new_pid: Option<u64>,
    instances: Option<u64>,
    parallel: Option<u64>,
    pids: Option<String>,
    failed_unit: Option<String>,
    service_result: Option<String>,
    exit_status: Option<i64>,
    reason: Option<String>,
    skipped: Option<String>,
    from: Option<u64>,
    to: Option<u64>,
    started: Option<u64>,
    stopped: Option<u64>,
    error: Option<String>,
}

impl Entry {
    /// Sends the entry (a no-op without [`init`] or journald). Failed outcomes are logged at
    /// `warning` priority, the rest at `notice`.
    pub fn emit(&self) {
        macro_rules! event {
            ($level:expr) => {
                tracing::event!(
                    target: TARGET,
                    $level,
                    SYSMGR_APP = self.app.as_str(),
                    SYSMGR_ACTION = self.action,
                    SYSMGR_EVENT = self.event,
                    SYSMGR_OUTCOME = self.outcome,
                    SYSMGR_RUN = self.run.as_str(),
                    SYSMGR_MANAGER = self.manager,
                    SYSMGR_USER = self.user.as_str(),
                    SYSMGR_SUDO_USER = self.sudo_user.as_deref(),
                    SYSMGR_APP_FILE = self.app_file.as_deref(),
                    SYSMGR_DURATION_MS = self.duration_ms,
                    SYSMGR_INSTANCE = self.instance,
                    SYSMGR_UNIT = self.unit.as_deref(),
                    SYSMGR_OLD_PID = self.old_pid,
                    SYSMGR_NEW_PID = self.new_pid,
                    SYSMGR_INSTANCES = self.instances,
                    SYSMGR_PARALLEL = self.parallel,
                    SYSMGR_PIDS = self.pids.as_deref(),
                    SYSMGR_FAILED_UNIT = self.failed_unit.as_deref(),
                    SYSMGR_SERVICE_RESULT = self.service_result.as_deref(),
                    SYSMGR_EXIT_STATUS = self.exit_status,
                    SYSMGR_REASON = self.reason.as_deref(),
                    SYSMGR_SKIPPED = self.skipped.as_deref(),
                    SYSMGR_FROM = self.from,
                    SYSMGR_TO = self.to,
                    SYSMGR_STARTED = self.started,
                    SYSMGR_STOPPED = self.stopped,
                    SYSMGR_ERROR = self.error.as_deref(),
                    "{}",
                    self.message
                )
            };
        }
        if self.failed {
            event!(tracing::Level::WARN);
        } else {
            event!(tracing::Level::INFO);
        }
    }
}

/// The entries of one action on one app: the fields every entry shares, and the clock.
#[derive(Debug)]
pub struct Record {
    common: Entry,
    started: Instant,
}

impl Record {
    /// Starts recording `action` on `app`.
    pub fn new(action: Action, app: &str, manager: Manager, app_file: Option<&Path>) -> Self {
        static PROCESS: std::sync::OnceLock<(String, String, Option<String>)> =
            std::sync::OnceLock::new();
        let (run, user, sudo_user) = PROCESS
            .get_or_init(|| {
                let (user, sudo) = invoking_user();
                (run_id(), user, sudo)
            })
            .clone();
        Self {
            common: Entry {
                app: app.to_string(),
                action: action.as_str(),
                run,
                manager: match manager {
                    Manager::System => "system",
                    Manager::User => "user",
                },
                user,
                sudo_user,
                app_file: app_file.map(|p| p.display().to_string()),
                ..Entry::default()
            },
            started: Instant::now(),
        }
    }

    fn entry(&self, event: &'static str, outcome: &'static str, message: String) -> Entry {
        Entry {
            event,
            outcome,
            message: format!("{} {}: {message}", self.common.action, self.common.app),
            ..self.common.clone()
        }
    }

    fn summary(&self, outcome: &'static str, message: String) -> Entry {
        Entry {
            failed: outcome != "ok",
            duration_ms: Some(ms(self.started.elapsed())),
            ..self.entry("summary", outcome, message)
        }
    }

    /// Records one event of a rollout (reload, restart): its beginning and each instance.
    pub fn rollout_event(&self, event: &Event<'_>) {
        match event {
            Event::Begin {
                total,
                parallel,
                surge,
                ..
            } => Entry {
                instances: Some(*total as u64),
                parallel: Some(*parallel as u64),
                ..self.entry(
                    "begin",
                    "",
                    if *surge {
                        format!("{total} instances, surge {parallel}: each new process serves before its old one drains")
                    } else {
                        format!("{total} instances, {parallel} at a time")
                    },
                )
            }
            .emit(),
            Event::Restarting { .. } => {}
            Event::Drained {
                unit,
                pid,
                took,
                result,
            } => {
                let done = *result == Some(crate::systemd::dbus::JobResult::Done);
                Entry {
                    failed: !done,
                    duration_ms: Some(ms(*took)),
                    unit: Some(unit.to_string()),
                    old_pid: Some(u64::from(*pid)),
                    ..self.entry(
                        "drain",
                        if done { "ok" } else { "failed" },
                        format!(
                            "`{unit}` (pid {pid}) drained in {}, after its new process was ready",
                            crate::reload::engine::human(*took)
                        ),
                    )
                }
                .emit()
            }
            Event::Finished { report, .. } => instance_entry(self, report).emit(),
        }
    }

    /// Records the end of a rollout: one summary entry.
    pub fn rollout_done(&self, summary: &Summary) {
        let replaced: Vec<String> = summary
            .instances
            .iter()
            .filter(|r| r.step == Step::Ready)
            .map(|r| format!("{}:{}>{}", r.instance, r.old_pid, r.new_pid))
            .collect();
        let base = |outcome, message| Entry {
            instances: Some(summary.instances.len() as u64),
            parallel: Some(summary.parallel as u64),
            pids: Some(replaced.join(" ")),
            duration_ms: Some(ms(summary.wall)),
            ..self.summary(outcome, message)
        };
        let Some(failed) = summary.failed() else {
            let n = summary.instances.len();
            return base(
                "ok",
                format!(
                    "{n} of {n} instances replaced in {}",
                    crate::reload::engine::human(summary.wall)
                ),
            )
            .emit();
        };
        let skipped: Vec<&str> = summary.skipped().map(|r| r.unit.as_str()).collect();
        let failure = failed.failure.as_ref();
        let result = failure
            .and_then(|f| f.service_result.as_ref())
            .map(|r| r.as_str().to_string());
        let reason = failure.map(|f| f.reason.to_string());
        Entry {
            failed_unit: Some(failed.unit.clone()),
            service_result: result.clone(),
            exit_status: failure.map(|f| i64::from(f.exit_status)),
            reason: reason.clone(),
            skipped: Some(skipped.join(" ")),
            ..base(
                "halted",
                format!(
                    "halted at `{}`: {}; systemd's result: `{}`; {} replaced, {} not restarted",
                    failed.unit,
                    reason.unwrap_or_default(),
                    result.unwrap_or_default(),
                    replaced.len(),
                    skipped.len()
                ),
            )
        }
        .emit();
    }

    /// Records a start: the instances running and the first that is not.
    pub fn started(&self, states: &[(u32, crate::systemd::dbus::ServiceState)]) {
        let pids: Vec<String> = states
            .iter()
            .filter(|(_, s)| s.is_running())
            .map(|(i, s)| format!("{i}:{}", s.main_pid))
            .collect();
        let not_running = states.iter().find(|(_, s)| !s.is_running());
        let (outcome, message) = match not_running {
            None => (
                "ok",
                format!("{} of {} instances running", pids.len(), states.len()),
            ),
            Some((_, s)) => (
                "failed",
                format!(
                    "{} of {} instances running; `{}` is {}/{}, systemd's result: `{}`",
                    pids.len(),
                    states.len(),
                    s.unit,
                    s.active_state,
                    s.sub_state,
                    s.result
                ),
            ),
        };
        Entry {
            instances: Some(states.len() as u64),
            pids: Some(pids.join(" ")),
            failed_unit: not_running.map(|(_, s)| s.unit.clone()),
            service_result: not_running.map(|(_, s)| s.result.as_str().to_string()),
            exit_status: not_running.map(|(_, s)| i64::from(s.exec_main_status)),
            ..self.summary(outcome, message)
        }
        .emit();
    }

    /// Records `stopped` instances stopped (stop, delete).
    pub fn stopped(&self, stopped: usize, message: String) {
        Entry {
            stopped: Some(stopped as u64),
            ..self.summary("ok", message)
        }
        .emit();
    }

    /// Records a scale from `from` to `to` instances.
    pub fn scaled(&self, from: u32, to: u32, started: usize, stopped: usize) {
        Entry {
            from: Some(u64::from(from)),
            to: Some(u64::from(to)),
            instances: Some(u64::from(to)),
            started: Some(started as u64),
            stopped: Some(stopped as u64),
            ..self.summary(
                "ok",
                format!("{from} -> {to} instances: started {started}, stopped {stopped}"),
            )
        }
        .emit();
    }

    /// Records units written for the app (`generate`).
    pub fn generated(&self, instances: usize, message: String) {
        Entry {
            instances: Some(instances as u64),
            ..self.summary("ok", message)
        }
        .emit();
    }

    /// Records an action that failed with `error`.
    pub fn failed(&self, error: &anyhow::Error) {
        let text = format!("{error:#}");
        Entry {
            error: Some(text.clone()),
            ..self.summary("failed", format!("failed: {text}"))
        }
        .emit();
    }
}

fn instance_entry(record: &Record, report: &InstanceReport) -> Entry {
    let took = crate::reload::engine::human(report.total);
    let mut entry = match &report.failure {
        None => record.entry(
            "instance",
            "ready",
            format!(
                "`{}` replaced in {took}, pid {} -> {}",
                report.unit, report.old_pid, report.new_pid
            ),
        ),
        Some(failure) => {
            let result = failure.service_result.as_ref().map(|r| r.as_str());
            Entry {
                failed: true,
                service_result: result.map(str::to_string),
                exit_status: Some(i64::from(failure.exit_status)),
                reason: Some(failure.reason.to_string()),
                failed_unit: Some(report.unit.clone()),
                ..record.entry(
                    "instance",
                    "failed",
                    format!(
                        "`{}` failed after {took}: {}; systemd's result: `{}`",
                        report.unit,
                        failure.reason,
                        result.unwrap_or_default()
                    ),
                )
            }
        }
    };
    entry.instance = Some(u64::from(report.instance));
    entry.unit = Some(report.unit.clone());
    entry.old_pid = Some(u64::from(report.old_pid));
    entry.new_pid = Some(u64::from(report.new_pid));
    entry.duration_ms = Some(ms(report.total));
    entry
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The name of the real user ID (its number when it has none), and `SUDO_USER` if set.
fn invoking_user() -> (String, Option<String>) {
    // SAFETY: getuid cannot fail.
    let uid = unsafe { libc::getuid() };
    let name = user_name(uid).unwrap_or_else(|| uid.to_string());
    let sudo = std::env::var("SUDO_USER").ok().filter(|s| !s.is_empty());
    (name, sudo)
}

fn user_name(uid: libc::uid_t) -> Option<String> {
    let mut buf = vec![0u8; 4096];
    // SAFETY: passwd is plain data; zeroed is a valid value for getpwuid_r to fill.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call and buf's length is passed with it.
    let rc = unsafe {
        libc::getpwuid_r(
            uid,
            &mut pwd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut found,
        )
    };
    if rc != 0 || found.is_null() {
        return None;
    }
    // SAFETY: on success pw_name points to a NUL-terminated string inside buf.
    let name = unsafe { std::ffi::CStr::from_ptr(pwd.pw_name) };
    Some(name.to_string_lossy().into_owned())
}

/// A random ID for the entries of one command: the kernel's UUID source, else the PID and
/// the time.
fn run_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/uuid")
        .map(|s| s.trim().replace('-', ""))
        .unwrap_or_else(|_| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            format!("{:x}{:x}", std::process::id(), now.as_nanos())
        })
}
