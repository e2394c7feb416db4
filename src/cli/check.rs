//! `sysmgr check FILE...`: validate app files and print the settings they resolve to.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::generate::Input;
use crate::config::{keys, AppSpec};
use crate::systemd::Manager;

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The app files to check.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Merge `[env_PROFILE]` over `[env]` before printing.
    #[arg(long, value_name = "PROFILE")]
    pub env: Option<String>,
    /// For PM2 ecosystem files: the socket of apps that declare no port.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
}

pub fn run(args: &CheckArgs, manager: Manager) -> anyhow::Result<ExitCode> {
    let opts = super::lifecycle::parse_options(args.env.as_deref(), manager);
    let inputs: Vec<Input> = args.files.iter().cloned().map(Input::File).collect();
    let specs = super::generate::load_all(
        &inputs,
        &opts,
        args.listen.as_deref(),
        "fix them and check again",
    )?;
    let cores = super::generate::usable_cores();
    for spec in &specs {
        print!("{}", describe(spec, cores));
    }
    Ok(ExitCode::SUCCESS)
}

/// The resolved settings of one app, each with the unit setting it becomes: the rows of the
/// key table ([`keys::KEYS`]), which the renderer fills the units from.
pub(crate) fn describe(spec: &AppSpec, cores: std::num::NonZeroUsize) -> String {
    let n = spec.instances.resolve(cores);
    let rows: Vec<(&str, String, String)> = keys::KEYS
        .iter()
        .flat_map(|key| {
            key.check_rows(spec, n)
                .into_iter()
                .map(|(value, unit)| (key.name, value, unit))
        })
        .collect();
    let name = spec.name.as_str();
    let mut out = format!("{} (from {}", name, spec.source.display());
    if let Some(p) = &spec.profile {
        let _ = write!(out, " with --env {p}");
    }
    out.push_str("): ok\n");
    let width = rows.iter().map(|(k, _, _)| k.len()).max().unwrap_or(0);
    let vwidth = rows
        .iter()
        .map(|(_, v, _)| v.chars().count())
        .max()
        .unwrap_or(0)
        .min(48);
    for (k, v, unit) in rows {
        let line = format!("  {k:<width$}  {v:<vwidth$}  {unit}");
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}
