//! `sysmgr delete NAME`: stop the app, disable it, remove the units sysmgr generated for it,
//! and reload systemd, like `pm2 delete`. Only files carrying sysmgr's header are removed.

use std::process::ExitCode;

use clap::Args;

use super::lifecycle::{self, LockArgs};
use crate::names::UnitNames;
use crate::render::Manager;
use crate::systemd::dbus::Systemd;

#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// The app.
    #[arg(value_name = "NAME")]
    pub name: String,
    #[command(flatten)]
    pub lock: LockArgs,
}

pub fn run(args: &DeleteArgs, manager: Manager) -> anyhow::Result<ExitCode> {
    let name = lifecycle::app_name(&args.name)?;
    let dir = lifecycle::unit_dir(manager)?;
    let app = lifecycle::installed(&dir, manager, &name)?;
    if app.from_generator {
        let source = app.source.map_or_else(
            || "its app file".to_string(),
            |s| format!("`{}`", s.display()),
        );
        return Err(crate::Invalid(format!(
            "`{name}` comes from {source} through sysmgr's systemd generator; remove that file and run `systemctl daemon-reload` (or `sysmgr stop {name}` to stop it)"
        ))
        .into());
    }
    let _lock = lifecycle::lock(manager, &name, &args.lock)?;
    lifecycle::runtime()?.block_on(async {
        let sd = Systemd::connect(manager).await?;
        let stopped = super::stop::stop_app(&sd, &name).await?;
        let names = UnitNames::new(&name);
        // Failed instances stay in systemd's memory after their files are gone; clear them.
        for unit in lifecycle::loaded_instances(&sd, &name).await? {
            sd.reset_failed_unit(&unit.name).await?;
        }
        sd.disable_unit_files(&[names.target()]).await?;
        let removed = dir.remove_app(&name)?;
        sd.reload().await?;
        eprintln!(
            "deleted `{name}`: stopped {}, removed {} files and links from `{}`",
            lifecycle::instances_word(stopped),
            removed.len(),
            dir.path().display()
        );
        Ok(ExitCode::SUCCESS)
    })
}
