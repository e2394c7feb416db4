//! `sysmgr history NAME [-n N] [--json]`: what sysmgr did to an app, read back from the
//! journal: one row per start, stop, restart, scale, delete, generate and reload, with who,
//! when, the outcome, the duration, the PIDs replaced and why a reload halted. The entries
//! are the ones [`crate::journal`] writes; this runs `journalctl -o json` like `sysmgr logs`
//! runs journalctl, and parses its lines.

use std::process::{Command, ExitCode};

use anyhow::Context as _;
use clap::Args;

use super::error::CliError;
use super::lifecycle;
use crate::journal::history;
use crate::systemd::Manager;

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// The app (it need not be installed any more).
    #[arg(value_name = "NAME")]
    pub name: String,
    /// How many of the latest actions to show.
    #[arg(long, short = 'n', value_name = "N", default_value_t = 10)]
    pub lines: usize,
    /// Print a JSON array of the entries' fields instead of the table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &HistoryArgs, manager: Manager) -> anyhow::Result<ExitCode> {
    let name = lifecycle::app_name(&args.name)?;
    let out = Command::new("journalctl")
        .args(history::journalctl_args(&name, manager, args.lines))
        .output()
        .context("cannot run `journalctl`; is systemd's journal installed?")?;
    if !out.status.success() {
        return Err(CliError::Journalctl {
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        }
        .into());
    }
    let rows = history::parse(&String::from_utf8_lossy(&out.stdout));
    if args.json {
        let json: Vec<serde_json::Value> = rows.iter().map(history::Row::to_json).collect();
        lifecycle::print_stdout(&format!("{}\n", serde_json::Value::Array(json)))?;
    } else if rows.is_empty() {
        eprintln!(
            "no history of `{name}` in the journal; sysmgr records what it does there when journald runs (`journalctl SYSLOG_IDENTIFIER=sysmgr`)"
        );
    } else {
        lifecycle::print_stdout(&history::table(&rows))?;
    }
    Ok(ExitCode::SUCCESS)
}
