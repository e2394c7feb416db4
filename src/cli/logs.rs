//! `sysmgr logs NAME [-n N] [-f]`: the app's journal, every instance interleaved, by running
//! `journalctl` in place of sysmgr (the journal has no D-Bus API, and journalctl already
//! does paging, colours and following well).

use std::os::unix::process::CommandExt as _;
use std::process::{Command, ExitCode};

use anyhow::Context as _;
use clap::Args;

use super::lifecycle;
use crate::names::UnitNames;
use crate::systemd::Manager;

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The app.
    #[arg(value_name = "NAME")]
    pub name: String,
    /// How many of the latest lines to show.
    #[arg(long, short = 'n', value_name = "N", default_value_t = 50)]
    pub lines: usize,
    /// Keep printing new lines as they are logged.
    #[arg(long, short = 'f')]
    pub follow: bool,
}

/// The journalctl command for the app's instances.
pub(crate) fn journalctl(args: &LogsArgs, name: &str, manager: Manager) -> Command {
    let mut cmd = Command::new("journalctl");
    let pattern = UnitNames::new(name).instance_pattern();
    match manager {
        Manager::System => cmd.args(["--unit", &pattern]),
        Manager::User => cmd.args(["--user-unit", &pattern]),
    };
    cmd.args(["--lines", &args.lines.to_string()]);
    if args.follow {
        cmd.arg("--follow");
    }
    cmd
}

pub fn run(args: &LogsArgs, manager: Manager) -> anyhow::Result<ExitCode> {
    let name = lifecycle::app_name(&args.name)?;
    let dir = crate::controller::unit_dir(manager)?;
    crate::controller::find(&dir, manager, &name)?;
    let err = journalctl(args, &name, manager).exec();
    Err(err).context("cannot run `journalctl`; is systemd's journal installed?")
}
