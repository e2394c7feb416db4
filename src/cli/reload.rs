//! `sysmgr reload NAME|FILE [--surge K] [--parallel K]`: the zero-downtime rolling restart.
//!
//! By default a surge reload ([`crate::reload::surge`]): each instance's new process starts
//! beside the old one, which is stopped (and drains in the background) once the new one is
//! ready, so the reload does not wait for drains and the app never has fewer processes
//! accepting. `--surge 0`, and apps with per-instance sockets, restart each instance in
//! place ([`crate::reload::rollout`]).
//!
//! With FILE, the units are regenerated and systemd reloaded first, so a changed command,
//! environment or instance count takes effect (PM2's `reload` keeps the old environment
//! unless told `--update-env`); after the rollout the app is scaled to the file's count.
//! The rollout itself is [`crate::reload::rollout`]; this file is the command around it:
//! lock, plan, progress lines, and the report when it halts.

use std::collections::BTreeSet;
use std::num::NonZeroUsize;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use super::lifecycle::{self, LockArgs};
use crate::controller::{ControlError, PutBack};
use crate::reload::engine::human;
use crate::reload::surge::SurgeSummary;
use crate::reload::{self, Event, Options, Step, Summary};
use crate::systemd::dbus::{JobResult, ServiceResult, Systemd};
use crate::systemd::Manager;

#[derive(Debug, Args)]
pub struct ReloadArgs {
    /// The app's name, `all` (every installed app, in turn), or its app file (or PM2
    /// ecosystem file) to regenerate the units from first; every app of the file is
    /// reloaded in turn.
    #[arg(value_name = "NAME|FILE")]
    pub app: String,
    /// How many instances restart at the same time (in a surge reload, how many new
    /// processes start beside old ones, unless `--surge` says).
    #[arg(long, short = 'p', value_name = "K", default_value = "1")]
    pub parallel: NonZeroUsize,
    /// Start each new process beside the old one, at most K at a time, and stop the old one
    /// once the new one is ready (its drain runs in the background); 0 restarts each
    /// instance in place. Default: surge, `--parallel` new processes at a time, for apps
    /// with a shared socket; in place for per-instance sockets.
    #[arg(long, value_name = "K")]
    pub surge: Option<usize>,
    /// How long a new process must stay up after systemd reports it started, in ms.
    #[arg(long, value_name = "MS", default_value_t = 300)]
    pub min_ready: u64,
    #[command(flatten)]
    pub source: lifecycle::SourceArgs,
    #[command(flatten)]
    pub lock: LockArgs,
}

pub fn run(args: &ReloadArgs, manager: Manager) -> anyhow::Result<ExitCode> {
    if args.app == lifecycle::ALL {
        // Each app in turn, under its own lock; one that halts does not stop the others.
        return lifecycle::for_each_app("reload", &args.app, manager, |name| {
            reload_apps(args, manager, name).map(drop)
        });
    }
    reload_apps(args, manager, &args.app)
}

/// Reloads the apps `arg` names (a name, or every app of a file), halting at the first halt.
fn reload_apps(args: &ReloadArgs, manager: Manager, arg: &str) -> anyhow::Result<ExitCode> {
    let apps = lifecycle::prepare(arg, &args.source, manager, &args.lock, true)?;
    let opts = Options {
        parallel: args.parallel,
        min_ready: Duration::from_millis(args.min_ready),
        ..Options::default()
    };
    let mut apps = apps;
    lifecycle::runtime()?.block_on(async {
        let sd = Systemd::connect(manager).await?;
        // One app after the other; a halt stops here, the apps after it keep their version,
        // and their previous unit files if the file changed them.
        for n in 0..apps.len() {
            let mode = Mode::of(&apps[n], args.surge, args.parallel)?;
            let app = &mut apps[n];
            if let Err(e) = reload_one(&sd, app, mode, &opts, &mut printer("reload"), &mut |line| {
                eprintln!("{line}");
            })
            .await
            {
                let app = &apps[n];
                for rest in &apps[n + 1..] {
                    if let Some(put_back) = rest.put_back_unreloaded(&sd).await {
                        eprintln!(
                            "reload {}: not reloaded, as the reload of `{}` failed; {}",
                            rest.name(),
                            app.name(),
                            files_put_back(&put_back)
                        );
                    }
                }
                return Err(e);
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// How a reload moves each instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Restart in place: the old process drains, then the new one starts.
    InPlace,
    /// The new process first, at most this many beside old ones.
    Surge(NonZeroUsize),
}

impl Mode {
    /// The mode for `app`: `--surge` (`surge`) if given, else a surge of `parallel` for an
    /// app whose sockets are shared and in place for per-instance sockets, which cannot
    /// surge ([`ControlError::SurgeRefused`] when `--surge` asked for it).
    pub(crate) fn of(
        app: &crate::controller::App,
        surge: Option<usize>,
        parallel: NonZeroUsize,
    ) -> anyhow::Result<Self> {
        let per_instance = app.installed().per_instance_socket();
        Ok(match (surge.map(NonZeroUsize::new), per_instance) {
            (Some(None), _) | (None, Some(_)) => Self::InPlace,
            (Some(Some(_)), Some(socket)) => {
                return Err(ControlError::SurgeRefused {
                    app: app.name().to_string(),
                    socket: socket.to_string(),
                }
                .into());
            }
            (Some(Some(k)), None) => Self::Surge(k),
            (None, None) => Self::Surge(parallel),
        })
    }
}

/// Reloads one app opened under its lock: settles what an interrupted surge left, systemd
/// first if its unit files changed, the rollout (its events to `on_event`), then the
/// instances beyond the app's count are stopped. The lines a person reads (the closing
/// line included) go to `say`; `sysmgr monit` shows them in its status line.
pub(crate) async fn reload_one(
    sd: &Systemd,
    app: &mut crate::controller::App,
    mode: Mode,
    opts: &Options,
    on_event: &mut dyn FnMut(&Event<'_>),
    say: &mut dyn FnMut(String),
) -> anyhow::Result<()> {
    let name = app.name().to_string();
    let name = name.as_str();
    for line in app.settle_slots(sd).await? {
        say(format!("reload {name}: {line}"));
    }
    let running = app.running(sd).await?;
    super::start::say_sockets_cleared("reload", name, &app.recover_sockets(sd, "reload").await?);
    if app.reload_systemd_if_stale(sd).await? {
        say(format!(
            "reload {name}: the unit files changed on disk; reloaded systemd first"
        ));
    }
    let reloaded = match mode {
        Mode::InPlace => app.reload(sd, opts, on_event).await,
        Mode::Surge(k) => app.surge_reload(sd, k, opts, on_event).await?,
    };
    let halt = Halt {
        put_back: reloaded.put_back.as_ref(),
        source: app.installed().source.as_deref(),
        surge: reloaded.surge.as_ref(),
    };
    say(closing_line("reload", &reloaded.summary, &running, &halt));
    halt_error("reload", &reloaded.summary, &halt)?;
    // Scale down to the count in the unit directory: instances beyond it still run the
    // previous version and are stopped only now, after the new ones proved ready.
    let (started, stopped) = app.sync_timers(sd).await?;
    for timer in started {
        eprintln!("reload {name}: started {timer}");
    }
    for timer in stopped {
        eprintln!("reload {name}: stopped {timer}, which the app file no longer asks for");
    }
    let extra = app.stop_unwanted(sd, &running).await?;
    if !extra.is_empty() {
        say(format!(
            "reload {name}: stopped {} beyond the app's count: {}",
            lifecycle::instances_word(extra.len()),
            list(&extra)
        ));
    }
    Ok(())
}

fn list(instances: &[u32]) -> String {
    instances
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Progress lines on stderr: one per instance as it finishes.
pub(crate) fn printer(verb: &'static str) -> impl FnMut(&Event<'_>) {
    let mut app = String::new();
    move |event| {
        match event {
        Event::Begin {
            app: name,
            total,
            parallel,
            surge,
        } => {
            app = name.to_string();
            if *surge {
                eprintln!(
                    "{verb} {app}: {}, surge {parallel}: each new process serves before its old one drains",
                    lifecycle::instances_word(*total)
                );
            } else {
                eprintln!(
                    "{verb} {app}: {}, {parallel} at a time",
                    lifecycle::instances_word(*total)
                );
            }
        }
        Event::Restarting { .. } => {}
        Event::Drained {
            unit,
            pid,
            took,
            result,
        } => match result {
            Some(JobResult::Done) => eprintln!(
                "{verb} {app}: {unit} (pid {}) drained in {}",
                self::pid(*pid),
                human(*took)
            ),
            Some(other) => eprintln!(
                "{verb} {app}: {unit} (pid {}) stopped after {}: its stop job ended with `{other}`",
                self::pid(*pid),
                human(*took)
            ),
            None => eprintln!(
                "{verb} {app}: {unit} (pid {}): its stop could not be followed; see `systemctl status {unit}`",
                self::pid(*pid)
            ),
        },
        Event::Finished {
            index,
            total,
            report,
        } => match (&report.step, &report.failure) {
            (Step::Ready, _) => eprintln!(
                "{verb} {app}: instance {index} of {total} ({}) ready in {}, pid {} -> {}",
                report.unit,
                human(report.total),
                pid(report.old_pid),
                report.new_pid
            ),
            (_, Some(failure)) => {
                eprintln!(
                    "{verb} {app}: instance {index} of {total} ({}) failed after {}: {}; systemd's result: `{}`{}",
                    report.unit,
                    human(report.total),
                    failure.reason,
                    result_text(failure.service_result.as_ref()),
                    status(failure.service_result.as_ref(), failure.exit_status)
                );
                if failure.journal.is_empty() {
                    eprintln!(
                        "  (no journal lines for {}; see `journalctl -u {}`)",
                        report.unit, report.unit
                    );
                } else {
                    eprintln!("  last journal lines of {}:", report.unit);
                    for line in &failure.journal {
                        eprintln!("    {line}");
                    }
                    if let Some(hint) = crate::config::hardening::journal_hint(&failure.journal) {
                        eprintln!("  hint: {hint}");
                    }
                }
            }
            _ => {}
        },
    }
    }
}

fn pid(p: u32) -> String {
    if p == 0 {
        "none".into()
    } else {
        p.to_string()
    }
}

fn status(result: Option<&ServiceResult>, code: i32) -> String {
    match result {
        Some(ServiceResult::ExitCode) => format!(", exit status {code}"),
        Some(ServiceResult::Signal | ServiceResult::CoreDump) => format!(", signal {code}"),
        _ => String::new(),
    }
}

/// systemd's word for a service's result; empty when it could not be read.
fn result_text(result: Option<&ServiceResult>) -> &str {
    result.map_or("", ServiceResult::as_str)
}

/// What a halt report says besides the rollout: what the halt put back, and the app file the
/// units came from.
#[derive(Debug, Default)]
pub(crate) struct Halt<'a> {
    /// What was put back of the last good generation (`reload FILE` only).
    pub put_back: Option<&'a PutBack>,
    /// The app file named in the units' header.
    pub source: Option<&'a std::path::Path>,
    /// A surge rollout's slots: where the old processes are.
    pub surge: Option<&'a SurgeSummary>,
}

/// The closing line (on stderr), and the halt's error when the rollout halted. `running`: the instances that ran
/// before the rollout, so the report names only those still serving the previous version.
pub(crate) fn report(
    verb: &'static str,
    summary: &Summary,
    running: &BTreeSet<u32>,
    halt: &Halt<'_>,
) -> anyhow::Result<()> {
    eprintln!("{}", closing_line(verb, summary, running, halt));
    halt_error(verb, summary, halt)
}

/// The line that ends a rollout: its times when it completed, else where it halted and the
/// instances of `running` still serving the previous version.
pub(crate) fn closing_line(
    verb: &'static str,
    summary: &Summary,
    running: &BTreeSet<u32>,
    halt: &Halt<'_>,
) -> String {
    let app = &summary.app;
    if summary.completed() {
        let jobs: Vec<Duration> = summary.instances.iter().map(|i| i.total).collect();
        let (min, max) = (
            jobs.iter().min().copied().unwrap_or_default(),
            jobs.iter().max().copied().unwrap_or_default(),
        );
        let drains = match halt.surge {
            Some(surge) => format!(
                "; the old processes drained in the background, longest {}",
                human(surge.longest_drain())
            ),
            None => String::new(),
        };
        return format!(
            "{verb} {app}: {n} of {n} instances ready in {} (per instance {} to {}; controller overhead {}{drains})",
            human(summary.wall),
            human(min),
            human(max),
            human(summary.overhead()),
            n = summary.instances.len(),
        );
    }
    let failed = summary
        .failed()
        .expect("a rollout that did not complete has a failed instance");
    let skipped: Vec<&str> = summary
        .skipped()
        .filter(|r| running.contains(&r.instance))
        .map(|r| r.unit.as_str())
        .collect();
    let mut line = format!(
        "{verb} {app}: halted; {}",
        what_was_put_back(&failed.unit, halt.put_back)
    );
    if let Some(slot) = halt
        .surge
        .and_then(|s| s.slots.iter().find(|r| r.slot == failed.instance))
    {
        line += &format!(
            "; its old process, `{}`, kept serving and still runs the previous version",
            slot.old_unit
        );
    }
    if !skipped.is_empty() {
        line += &format!(
            "; not restarted, still running the previous version: {}",
            skipped.join(", ")
        )
    }
    if let Some(PutBack::Done { .. }) = halt.put_back {
        let moved: Vec<&str> = summary
            .instances
            .iter()
            .filter(|r| r.step == Step::Ready)
            .map(|r| r.unit.as_str())
            .collect();
        if !moved.is_empty() {
            line += &format!(
                "; restarted before the halt, running the new version until they restart: {}",
                moved.join(", ")
            );
        }
    }
    line
}

/// The error of a rollout that halted ([`ControlError::Halted`]), `Ok` when it completed.
pub(crate) fn halt_error(
    verb: &'static str,
    summary: &Summary,
    halt: &Halt<'_>,
) -> anyhow::Result<()> {
    let app = &summary.app;
    if summary.completed() {
        return Ok(());
    }
    let failed = summary
        .failed()
        .expect("a rollout that did not complete has a failed instance");
    // Once the files changed, the app file is what must be fixed and reloaded: the units
    // installed now are the previous version's (or, if they could not be put back, the
    // broken ones).
    let next = match (halt.put_back, halt.source) {
        (Some(_), Some(file)) => format!(
            "fix the app file and run `sysmgr {verb} {}` again",
            file.display()
        ),
        (Some(_), None) => format!("fix the app file and run `sysmgr {verb} FILE` again"),
        (None, _) => format!("fix the app and run `sysmgr {verb} {app}` again"),
    };
    let failure = failed
        .failure
        .as_ref()
        .expect("a failed instance has a failure");
    if let reload::FailureReason::Systemd(e) = &failure.reason {
        // Keep the typed cause, so "systemd not reachable" keeps its exit code.
        return Err(anyhow::Error::new(e.clone()).context(ControlError::Halted {
            verb,
            app: app.clone(),
            unit: failed.unit.clone(),
            reason: "a call to systemd failed".into(),
            next,
        }));
    }
    Err(ControlError::Halted {
        verb,
        app: app.clone(),
        unit: failed.unit.clone(),
        reason: format!(
            "{}; systemd's result: `{}`",
            failure.reason,
            result_text(failure.service_result.as_ref())
        ),
        next,
    }
    .into())
}

/// The part of the halt line that says what became of the failed `unit` and of the unit
/// files.
fn what_was_put_back(unit: &str, put_back: Option<&PutBack>) -> String {
    match put_back {
        None => format!("`{unit}` is stopped"),
        Some(failed @ PutBack::Failed(_)) => {
            format!("`{unit}` is stopped; {}", files_put_back(failed))
        }
        Some(done @ PutBack::Done { restarted, .. }) => {
            let instance = match restarted {
                Some((unit, Ok(pid))) => {
                    format!("`{unit}` runs the previous version again (pid {pid})")
                }
                Some((unit, Err(e))) => format!(
                    "`{unit}` did not start on the previous version either ({e}) and is stopped"
                ),
                None => format!("`{unit}` is stopped"),
            };
            format!("{}; {instance}", files_put_back(done))
        }
    }
}

/// What became of the unit files.
fn files_put_back(put_back: &PutBack) -> String {
    match put_back {
        PutBack::Failed(e) => format!(
            "putting back the previous version's unit files failed ({e}), the new version's stay installed"
        ),
        PutBack::Done { files, reloaded, .. } => {
            let files = files
                .iter()
                .map(|f| format!("`{}`", f.display()))
                .collect::<Vec<_>>()
                .join(", ");
            match reloaded {
                Ok(()) => format!(
                    "put back the previous version's unit files and reloaded systemd: {files}"
                ),
                Err(e) => format!(
                    "put back the previous version's unit files: {files}, but systemd was not reloaded ({e}; run `systemctl daemon-reload`)"
                ),
            }
        }
    }
}
