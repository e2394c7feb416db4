//! `sysmgr reload NAME|FILE [--parallel K]`: the zero-downtime rolling restart.
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
use crate::controller::ControlError;
use crate::reload::engine::human;
use crate::reload::{self, Event, Options, Step, Summary};
use crate::systemd::dbus::{ServiceResult, Systemd};
use crate::systemd::Manager;

#[derive(Debug, Args)]
pub struct ReloadArgs {
    /// The app's name, `all` (every installed app, in turn), or its app file (or PM2
    /// ecosystem file) to regenerate the units from first; every app of the file is
    /// reloaded in turn.
    #[arg(value_name = "NAME|FILE")]
    pub app: String,
    /// How many instances restart at the same time.
    #[arg(long, short = 'p', value_name = "K", default_value = "1")]
    pub parallel: NonZeroUsize,
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
    let apps = lifecycle::prepare(arg, &args.source, manager, &args.lock)?;
    let opts = Options {
        parallel: args.parallel,
        min_ready: Duration::from_millis(args.min_ready),
        ..Options::default()
    };
    lifecycle::runtime()?.block_on(async {
        let sd = Systemd::connect(manager).await?;
        // One app after the other; a halt stops here, the apps after it keep their version.
        for app in &apps {
            reload_one(&sd, app, &opts).await?;
        }
        Ok(ExitCode::SUCCESS)
    })
}

async fn reload_one(
    sd: &Systemd,
    app: &crate::controller::App,
    opts: &Options,
) -> anyhow::Result<()> {
    let name = app.name();
    let running = app.running(sd).await?;
    if app.reload_systemd_if_stale(sd).await? {
        eprintln!("reload {name}: the unit files changed on disk; reloaded systemd first");
    }
    let summary = app.reload(sd, opts, &mut printer("reload")).await;
    report("reload", &summary, &running)?;
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
        eprintln!(
            "reload {name}: stopped {} beyond the app's count: {}",
            lifecycle::instances_word(extra.len()),
            list(&extra)
        );
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
    move |event| match event {
        Event::Begin {
            app: name,
            total,
            parallel,
        } => {
            app = name.to_string();
            eprintln!(
                "{verb} {app}: {}, {parallel} at a time",
                lifecycle::instances_word(*total)
            );
        }
        Event::Restarting { .. } => {}
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

/// The closing line, or the halt report and its error. `running`: the instances that ran
/// before the rollout, so the report names only those still serving the previous version.
pub(crate) fn report(
    verb: &'static str,
    summary: &Summary,
    running: &BTreeSet<u32>,
) -> anyhow::Result<()> {
    let app = &summary.app;
    if summary.completed() {
        let jobs: Vec<Duration> = summary.instances.iter().map(|i| i.total).collect();
        let (min, max) = (
            jobs.iter().min().copied().unwrap_or_default(),
            jobs.iter().max().copied().unwrap_or_default(),
        );
        eprintln!(
            "{verb} {app}: {n} of {n} instances ready in {} (per instance {} to {}; controller overhead {})",
            human(summary.wall),
            human(min),
            human(max),
            human(summary.overhead()),
            n = summary.instances.len(),
        );
        return Ok(());
    }
    let failed = summary
        .failed()
        .expect("a rollout that did not complete has a failed instance");
    let skipped: Vec<&str> = summary
        .skipped()
        .filter(|r| running.contains(&r.instance))
        .map(|r| r.unit.as_str())
        .collect();
    if skipped.is_empty() {
        eprintln!("{verb} {app}: halted; `{}` is stopped", failed.unit);
    } else {
        eprintln!(
            "{verb} {app}: halted; `{}` is stopped; not restarted, still running the previous version: {}",
            failed.unit,
            skipped.join(", ")
        );
    }
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
    }
    .into())
}
