//! `sysmgr start FILE|NAME`: from a file, generate the units, reload systemd, then start
//! `NAME.target`; by name, start the units generated earlier. The target is enabled too, so
//! the app comes back after a reboot (PM2 needs `pm2 save` and `pm2 startup` for that).

use std::process::ExitCode;

use clap::Args;

use super::lifecycle::{self, LockArgs};
use crate::controller::ControlError;
use crate::systemd::dbus::Systemd;
use crate::systemd::Manager;

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
    let app = lifecycle::prepare(&args.app, args.env.as_deref(), manager, &args.lock)?;
    let name = app.name();
    lifecycle::runtime()?.block_on(async {
        let sd = Systemd::connect(manager).await?;
        if let Some(target) = app.enable(&sd).await? {
            eprintln!("start {name}: enabled `{target}`, so it starts at boot");
        }
        let states = app.start(&sd).await?;
        let mut failed = Vec::new();
        for (i, state) in &states {
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
                app: name.to_string(),
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
