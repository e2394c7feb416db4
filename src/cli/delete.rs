//! `sysmgr delete NAME`: stop the app, disable it, remove the units sysmgr generated for it,
//! and reload systemd, like `pm2 delete`. Only files carrying sysmgr's header are removed.

use std::process::ExitCode;

use clap::Args;

use super::error::CliError;
use super::lifecycle::{self, LockArgs};
use crate::systemd::dbus::Systemd;
use crate::systemd::Manager;

#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// The app, `all` (every installed app, in turn), or an app file or PM2 ecosystem file
    /// (every app of it).
    #[arg(value_name = "NAME|FILE")]
    pub name: String,
    #[command(flatten)]
    pub lock: LockArgs,
}

pub fn run(args: &DeleteArgs, manager: Manager) -> anyhow::Result<ExitCode> {
    lifecycle::for_each_app("delete", &args.name, manager, |name| {
        run_one(args, manager, name).map(drop)
    })
}

fn run_one(args: &DeleteArgs, manager: Manager, name: &str) -> anyhow::Result<ExitCode> {
    let app = lifecycle::open(manager, name, &args.lock)?;
    if app.installed().from_generator {
        return Err(CliError::FromGenerator {
            app: name.to_string(),
            app_file: app.installed().source.clone(),
        }
        .into());
    }
    lifecycle::runtime()?.block_on(async {
        let sd = Systemd::connect(manager).await?;
        let deleted = app.delete(&sd).await?;
        eprintln!(
            "deleted `{name}`: stopped {}, removed {} files and links from `{}`",
            lifecycle::instances_word(deleted.stopped),
            deleted.removed.len(),
            deleted.dir.display()
        );
        Ok(ExitCode::SUCCESS)
    })
}
