//! `sysmgr stop NAME`: stop every instance and socket of an app, and wait until they are
//! down. Like `systemctl stop NAME.target`, but it waits for the instances themselves: the
//! target is ordered after them, so its own stop job ends first. The app stays enabled; use
//! `sysmgr delete` to remove it.

use std::process::ExitCode;

use clap::Args;

use super::lifecycle::{self, LockArgs};
use crate::systemd::dbus::Systemd;
use crate::systemd::Manager;

#[derive(Debug, Args)]
pub struct StopArgs {
    /// The app.
    #[arg(value_name = "NAME")]
    pub name: String,
    #[command(flatten)]
    pub lock: LockArgs,
}

pub fn run(args: &StopArgs, manager: Manager) -> anyhow::Result<ExitCode> {
    let name = lifecycle::app_name(&args.name)?;
    let dir = lifecycle::unit_dir(manager)?;
    lifecycle::installed(&dir, manager, &name)?;
    let _lock = lifecycle::lock(manager, &name, &args.lock)?;
    lifecycle::runtime()?.block_on(async {
        let sd = Systemd::connect(manager).await?;
        let n = stop_app(&sd, &name).await?;
        eprintln!("stopped `{name}`: {} stopped", lifecycle::instances_word(n));
        Ok(ExitCode::SUCCESS)
    })
}

/// Stops the target and every loaded instance with its sockets; returns how many instances
/// were up.
pub(crate) async fn stop_app(sd: &Systemd, name: &str) -> anyhow::Result<usize> {
    let loaded: Vec<u32> = lifecycle::loaded_instances(sd, name)
        .await?
        .iter()
        .filter_map(|u| lifecycle::instance_of(name, &u.name))
        .collect();
    let up = lifecycle::running_instances(sd, name).await?.len();
    lifecycle::stop_instances(sd, name, &loaded, true).await?;
    Ok(up)
}
