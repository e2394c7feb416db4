//! `sysmgr memory-check NAME --limit BYTES` (hidden): what `NAME-memory.service` runs every
//! few seconds for `max_memory_restart` in `graceful` mode. The work is
//! [`crate::controller::App::restart_over_memory`]; this file takes the lock and prints.
//!
//! When another sysmgr holds the app's lock (a reload, a scale), this round is skipped: the
//! timer runs the check again a few seconds later, and an instance restarted meanwhile is
//! measured afresh.

use std::process::ExitCode;

use clap::Args;

use super::lifecycle::{self, LockArgs};
use crate::lock::LockError;
use crate::systemd::dbus::Systemd;
use crate::systemd::Manager;

#[derive(Debug, Args)]
pub struct MemoryCheckArgs {
    /// The app.
    #[arg(value_name = "NAME")]
    pub name: String,
    /// Restart instances using more than this many bytes.
    #[arg(long, value_name = "BYTES")]
    pub limit: u64,
}

pub fn run(args: &MemoryCheckArgs, manager: Manager) -> anyhow::Result<ExitCode> {
    let name = lifecycle::app_name(&args.name)?;
    let app = match lifecycle::open(manager, &name, &LockArgs { no_wait: true }) {
        Ok(app) => app,
        Err(e) if matches!(e.downcast_ref(), Some(LockError::Busy { .. })) => {
            eprintln!("memory-check {name}: another sysmgr is changing the app; checking again at the next run");
            return Ok(ExitCode::SUCCESS);
        }
        Err(e) => return Err(e),
    };
    lifecycle::runtime()?.block_on(async {
        let sd = Systemd::connect(manager).await?;
        let verb = "memory-restart";
        let (over, summary) = app
            .restart_over_memory(&sd, args.limit, &mut super::reload::printer(verb))
            .await?;
        for (instance, bytes) in &over {
            eprintln!(
                "memory-check {name}: instance {instance} uses {} (limit {}); restarting it through its drain",
                super::status::bytes(*bytes),
                super::status::bytes(args.limit)
            );
        }
        if let Some(summary) = summary {
            let running = over.iter().map(|(i, _)| *i).collect();
            super::reload::report(verb, &summary, &running, &super::reload::Halt::default())?;
        }
        Ok(ExitCode::SUCCESS)
    })
}
