//! `sysmgr import ecosystem.config.js [--output DIR]`: one commented app.toml per app of a PM2
//! ecosystem file, for the generator path (`/etc/sysmgr`) or to keep under version control.
//! Every file is checked before any is written, and none is overwritten unless `--force`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;

use super::error::CliError;
use crate::config::{self, ecosystem};
use crate::systemd::Manager;

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The PM2 ecosystem file (`ecosystem.config.js`, `.cjs`, `.mjs`, `.json`).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Where to write NAME.toml for each app [default: the current directory].
    #[arg(long, short, value_name = "DIR")]
    pub output: Option<PathBuf>,
    /// The socket of apps that declare no port (`listen`, `env.PORT`).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Replace app files that exist already.
    #[arg(long)]
    pub force: bool,
}

pub fn run(args: &ImportArgs, manager: Manager) -> anyhow::Result<ExitCode> {
    let overrides = ecosystem::Overrides {
        listen: args.listen.clone(),
        profile: None,
    };
    let apps = ecosystem::import(&args.file, &overrides)?;
    let dir = args.output.clone().unwrap_or_else(|| PathBuf::from("."));
    let opts = super::generate::parse_options(None, manager);
    let mut planned = Vec::new();
    for app in &apps {
        for w in &app.warnings {
            eprintln!("{w}");
        }
        let path = dir.join(format!("{}.toml", app.name));
        // Checked as the generator will read it, from where it will be.
        let source = std::path::absolute(&path).unwrap_or_else(|_| path.clone());
        if let Err(d) = config::parse(&app.toml, &path.display().to_string(), &source, &opts) {
            eprintln!("{d}");
            return Err(CliError::Imported {
                app: app.name.clone(),
            }
            .into());
        }
        if path.exists() && !args.force {
            return Err(CliError::ImportExists { path }.into());
        }
        planned.push((path, &app.toml));
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create `{}`", dir.display()))?;
    for (path, text) in planned {
        crate::install::write_atomically(&path, text.as_bytes())
            .with_context(|| format!("cannot write `{}`", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    eprintln!(
        "start them with `sysmgr start FILE.toml`, or copy them to /etc/sysmgr/ for the generator (`systemctl daemon-reload`)"
    );
    Ok(ExitCode::SUCCESS)
}
