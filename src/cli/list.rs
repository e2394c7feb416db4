//! `sysmgr list [--json]`: every app sysmgr generated, with the state of each instance, like
//! `pm2 list`. The rows come from
//! [`crate::controller::status::collect`].

use std::process::ExitCode;

use clap::Args;

use super::lifecycle;
use crate::systemd::dbus::Systemd;
use crate::systemd::Manager;

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Print JSON for scripts instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &ListArgs, manager: Manager) -> anyhow::Result<ExitCode> {
    let dir = crate::controller::unit_dir(manager)?;
    let apps = dir.installed_apps()?;
    let status = lifecycle::runtime()?.block_on(async {
        let sd = Systemd::connect(manager).await?;
        crate::controller::status::collect(&sd, &apps).await
    })?;
    if args.json {
        lifecycle::print_stdout(&(serde_json::to_string_pretty(&status)? + "\n"))?;
    } else if status.is_empty() {
        eprintln!(
            "no apps: `{}` holds no units of sysmgr's; start one with `sysmgr start FILE`",
            dir.path().display()
        );
    } else {
        let mut text = super::status::table(&status);
        // The table has a row per instance; a failed socket shows only here.
        for app in status.iter().filter(|a| a.degraded()) {
            text.push_str(&format!(
                "{}: {}{}\n",
                app.name,
                app.state,
                super::status::failed_list(app)
            ));
        }
        lifecycle::print_stdout(&text)?;
    }
    Ok(ExitCode::SUCCESS)
}
