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
    /// The app, `all` (every installed app, in turn), or an app file or PM2 ecosystem file
    /// (every app of it).
    #[arg(value_name = "NAME|FILE")]
    pub name: String,
    #[command(flatten)]
    pub lock: LockArgs,
}

pub fn run(args: &StopArgs, manager: Manager) -> anyhow::Result<ExitCode> {
    lifecycle::for_each_app("stop", &args.name, manager, |name| {
        run_one(args, manager, name).map(drop)
    })
}

fn run_one(args: &StopArgs, manager: Manager, name: &str) -> anyhow::Result<ExitCode> {
    let app = lifecycle::open(manager, name, &args.lock)?;
    lifecycle::runtime()?.block_on(async {
        let sd = Systemd::connect(manager).await?;
        let n = app.stop(&sd).await?;
        eprintln!("stopped `{name}`: {} stopped", lifecycle::instances_word(n));
        Ok(ExitCode::SUCCESS)
    })
}
