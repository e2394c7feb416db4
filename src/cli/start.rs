//! `sysmgr start FILE|NAME`: from a file, generate the units, reload systemd, then start
//! `NAME.target`; by name, start the units generated earlier. The target is enabled too, so
//! the app comes back after a reboot (PM2 needs `pm2 save` and `pm2 startup` for that), unless
//! `--no-enable`; `start` says how to undo it.

use std::process::ExitCode;

use clap::Args;

use super::lifecycle::{self, LockArgs};
use crate::config::hardening;
use crate::controller::ControlError;
use crate::reload::units::journal_tail;
use crate::systemd::dbus::{SocketResult, Systemd};
use crate::systemd::Manager;

#[derive(Debug, Args)]
pub struct StartArgs {
    /// An app file (app.toml) to generate and start, a PM2 ecosystem file
    /// (`ecosystem.config.js`: every app of it), a Node script (`app.js`, PM2's quick form),
    /// or the name of an app generated earlier.
    #[arg(value_name = "FILE|NAME")]
    pub app: String,
    /// Start the app now only: do not enable `NAME.target`, so it does not start at boot.
    #[arg(long)]
    pub no_enable: bool,
    #[command(flatten)]
    pub source: lifecycle::SourceArgs,
    #[command(flatten)]
    pub lock: LockArgs,
}

pub fn run(args: &StartArgs, manager: Manager) -> anyhow::Result<ExitCode> {
    let mut apps = lifecycle::prepare(&args.app, &args.source, manager, &args.lock, false)?;
    lifecycle::runtime()?.block_on(async {
        let sd = Systemd::connect(manager).await?;
        for app in &mut apps {
            start_one(&sd, app, !args.no_enable, manager).await?;
        }
        Ok(ExitCode::SUCCESS)
    })
}

async fn start_one(
    sd: &Systemd,
    app: &mut crate::controller::App,
    enable: bool,
    manager: Manager,
) -> anyhow::Result<()> {
    for line in app.settle_slots(sd).await? {
        eprintln!("start {}: {line}", app.name());
    }
    let name = app.name();
    if enable {
        if let Some(target) = app.enable(sd).await? {
            let systemctl = match manager {
                Manager::System => "systemctl",
                Manager::User => "systemctl --user",
            };
            eprintln!(
                "start {name}: enabled `{target}`, so it starts at boot (undo: `{systemctl} disable {target}`; `sysmgr start --no-enable` skips this)"
            );
        }
    }
    say_sockets_cleared("start", name, &app.recover_sockets(sd, "start").await?);
    let states = app.start(sd).await?;
    // The target starts the app's timers; one whose file is gone (`start FILE` after
    // removing `cron_restart`) is stopped.
    let (_, stopped) = app.sync_timers(sd).await?;
    for timer in stopped {
        eprintln!("start {name}: stopped {timer}, which the app file no longer asks for");
    }
    report_states("start", "started", name, &states, manager)
}

/// Says which failed sockets [`crate::controller::App::recover_sockets`] cleared.
pub(crate) fn say_sockets_cleared(verb: &str, name: &str, cleared: &[(String, SocketResult)]) {
    for (socket, result) in cleared {
        eprintln!(
            "{verb} {name}: `{socket}` had failed (systemd's result: `{result}`) with no instance running; cleared it, so starting the instances starts it again"
        );
    }
}

/// Prints the state of each instance after a start; an error if any is not running.
pub(crate) fn report_states(
    verb: &str,
    done: &str,
    name: &str,
    states: &[(u32, crate::systemd::dbus::ServiceState)],
    manager: Manager,
) -> anyhow::Result<()> {
    let mut failed = Vec::new();
    for (i, state) in states {
        if state.is_running() {
            eprintln!(
                "{verb} {name}: instance {i} ({}) {}/{}, pid {}",
                state.unit, state.active_state, state.sub_state, state.main_pid
            );
        } else {
            eprintln!(
                "{verb} {name}: instance {i} ({}) {}/{}, systemd's result: `{}`",
                state.unit, state.active_state, state.sub_state, state.result
            );
            if let Some(hint) = hardening_hint(manager, &state.unit) {
                eprintln!("{verb} {name}: {}: {hint}", state.unit);
            }
            failed.push(state.unit.clone());
        }
    }
    if !failed.is_empty() {
        return Err(ControlError::NotRunning {
            app: name.to_string(),
            failed: failed.len(),
            total: states.len(),
            units: failed.join(", "),
        }
        .into());
    }
    eprintln!(
        "{done} `{name}`: {} running",
        lifecycle::instances_word(states.len())
    );
    Ok(())
}

/// The hint of [`hardening::journal_hint`] for a failed instance. journald may get the
/// instance's last words a moment after systemd reports the failure: one more look then.
fn hardening_hint(manager: Manager, unit: &str) -> Option<&'static str> {
    for attempt in 0..2 {
        if attempt > 0 {
            std::thread::sleep(std::time::Duration::from_millis(300));
        }
        if let Some(hint) = hardening::journal_hint(&journal_tail(manager, unit, 20)) {
            return Some(hint);
        }
    }
    None
}
