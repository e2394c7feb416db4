//! `sysmgr init NAME`: a commented app file to start from, like `pm2 init`.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;

use super::error::CliError;
use crate::config::AppName;

/// The skeleton; `@NAME@` is the app name. Every key is shown, the optional ones commented.
const SKELETON: &str = include_str!("init.toml");

#[derive(Debug, Args)]
pub struct InitArgs {
    /// The app name; the file is NAME.toml.
    pub name: String,
    /// Where to write it [default: ./NAME.toml]; `-` prints it.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Replace the file if it exists.
    #[arg(long)]
    pub force: bool,
}

/// The skeleton for app `name`.
pub fn skeleton(name: &AppName) -> String {
    SKELETON.replace("@NAME@", name.as_str())
}

pub fn run(args: &InitArgs) -> anyhow::Result<ExitCode> {
    let name = AppName::parse(&args.name).map_err(|reason| CliError::NewAppName {
        name: args.name.clone(),
        reason,
    })?;
    let text = skeleton(&name);
    let path = args
        .output
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{name}.toml")));
    if path.as_os_str() == "-" {
        std::io::stdout().write_all(text.as_bytes())?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if args.force {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    let mut file = match options.open(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(CliError::InitExists { path }.into())
        }
        other => other.with_context(|| format!("cannot write `{}`", path.display()))?,
    };
    file.write_all(text.as_bytes())
        .with_context(|| format!("cannot write `{}`", path.display()))?;
    eprintln!(
        "wrote `{}`; edit `command` and `listen`, then run `sysmgr check {0}`",
        path.display()
    );
    Ok(ExitCode::SUCCESS)
}
