//! `sysmgr start FILE|NAME`: from a file, generate the units, reload systemd, then start
//! `NAME.target`; by name, start the units generated earlier. The target is enabled too, so
//! the app comes back after a reboot (PM2 needs `pm2 save` and `pm2 startup` for that).

use std::process::ExitCode;

use clap::Args;

use super::lifecycle::{self, ControlError, LockArgs};
use crate::names::UnitNames;
use crate::render::Manager;
use crate::systemd::dbus::{JobMode, Systemd};

#[derive(Debug, Args)]
pub struct StartArgs {
    /// An app file (app.toml) to generate and start, or the name of an app generated earlier.
    #[arg(value_name = "FILE|NAME")]
    pub app: String,
    /// With FILE: merge `[env_PROFILE]` over `[env]`, like `pm2 start --env PROFILE`.
    #[arg(long, value_name = "PROFILE")]
    pub env: Option<String>,
    #[command(flatten)]
    pub lock: LockArgs,
}

pub fn run(args: &StartArgs, manager: Manager) -> anyhow::Result<ExitCode> {
    let lifecycle::Prepared {
        name,
        app,
        lock: _lock,
    } = lifecycle::prepare(&args.app, args.env.as_deref(), manager, &args.lock)?;
    lifecycle::runtime()?.block_on(async {
        let sd = Systemd::connect(manager).await?;
        let names = UnitNames::new(&name);
        let target_unit = names.target();
        // A generator's units cannot be enabled; the generator links the target into the
        // default target itself.
        if !app.from_generator
            && sd
                .enable_unit_files(std::slice::from_ref(&target_unit))
                .await?
        {
            eprintln!("start {name}: enabled `{target_unit}`, so it starts at boot");
        }
        // Clear failures left from earlier runs, so the start limit does not refuse the start.
        for &i in &app.instances {
            sd.reset_failed_unit(&names.instance(i)).await?;
        }
        let mut watch = sd.watch_jobs().await?;
        let job = sd.start_unit(&target_unit, JobMode::Replace).await?;
        // The target is ordered after its instances, so its job ends once they started
        // (or failed: `Wants=` does not propagate failure, the states below tell).
        watch.wait(&job).await?;
        let states = lifecycle::instance_states(&sd, &name, &app.instances).await?;
        let mut failed = Vec::new();
        for (state, i) in states.iter().zip(&app.instances) {
            if state.is_running() {
                eprintln!(
                    "start {name}: instance {i} ({}) {}/{}, pid {}",
                    state.unit, state.active_state, state.sub_state, state.main_pid
                );
            } else {
                eprintln!(
                    "start {name}: instance {i} ({}) {}/{}, systemd's result: `{}`",
                    state.unit, state.active_state, state.sub_state, state.result
                );
                failed.push(state.unit.clone());
            }
        }
        if !failed.is_empty() {
            return Err(ControlError::NotRunning {
                app: name.clone(),
                failed: failed.len(),
                total: states.len(),
                units: failed.join(", "),
            }
            .into());
        }
        eprintln!(
            "started `{name}`: {} running",
            lifecycle::instances_word(states.len())
        );
        Ok(ExitCode::SUCCESS)
    })
}
