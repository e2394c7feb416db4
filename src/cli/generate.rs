//! `sysmgr generate FILE...`: app files in, unit files out, all or nothing.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;

use crate::config::{self, ParseOptions};
use crate::install::{UnitDir, WriteReport};
use crate::render::{self, Flavor, Rendered};
use crate::systemd::Manager;

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// The app files (app.toml) to generate units from.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Where to write the units [default: /etc/systemd/system, with --user
    /// ~/.config/systemd/user].
    #[arg(long, short, value_name = "DIR")]
    pub output: Option<PathBuf>,
    /// Merge `[env_PROFILE]` over `[env]`, like `pm2 start --env PROFILE`.
    #[arg(long, value_name = "PROFILE")]
    pub env: Option<String>,
    /// Print every unit under a `---PATH---` header instead of writing.
    #[arg(long)]
    pub dry_run: bool,
    /// Do not ask the running service manager to reload after writing.
    #[arg(long)]
    pub no_reload: bool,
}

/// What the generate step produced, for commands that generate and then act (`start FILE`,
/// `reload FILE`).
#[derive(Debug)]
pub struct Generated {
    /// The rendered apps, in the order of the files.
    pub apps: Vec<Rendered>,
    /// The directory written to.
    pub dir: UnitDir,
    /// What changed on disk.
    pub report: WriteReport,
}

/// Loads every file, printing warnings; fails with every file's errors if any file has one.
/// `consequence` ends the summary line: what did not happen because of the errors.
pub(crate) fn load_all(
    files: &[PathBuf],
    opts: &ParseOptions,
    consequence: &str,
) -> anyhow::Result<Vec<config::AppSpec>> {
    let mut specs = Vec::new();
    let mut failed = Vec::new();
    for file in files {
        match config::load(file, opts) {
            Ok(parsed) => {
                for w in parsed.warnings.warnings() {
                    eprintln!("{w}");
                }
                specs.push(parsed.spec);
            }
            Err(e) => {
                eprintln!("{e}");
                failed.push(file.display().to_string());
            }
        }
    }
    if !failed.is_empty() {
        return Err(crate::Invalid(format!(
            "{} of {} app files {} errors ({}); {consequence}",
            failed.len(),
            files.len(),
            if failed.len() == 1 { "has" } else { "have" },
            failed.join(", ")
        ))
        .into());
    }
    for (i, a) in specs.iter().enumerate() {
        if let Some(b) = specs[..i].iter().find(|b| b.name == a.name) {
            return Err(crate::Invalid(format!(
                "`{}` and `{}` both define the app `{}`; app names must be unique; {consequence}",
                b.source.display(),
                a.source.display(),
                a.name
            ))
            .into());
        }
    }
    Ok(specs)
}

/// Renders validated specs for `manager`, resolving per-core instance counts on this machine.
pub(crate) fn render_all(
    specs: &[config::AppSpec],
    manager: Manager,
    flavor: Flavor,
) -> Vec<Rendered> {
    let cores = usable_cores();
    specs
        .iter()
        .map(|s| render::render(s, s.instances.resolve(cores), manager, flavor))
        .collect()
}

/// The cores this process may use: CPU affinity and cgroup CPU quota, which is what std's
/// `available_parallelism` reads on Linux, not the number on the board.
pub fn usable_cores() -> std::num::NonZeroUsize {
    std::thread::available_parallelism().unwrap_or(std::num::NonZeroUsize::MIN)
}

/// Loads every file (printing warnings) and renders the units for `manager`.
fn load_and_render(
    files: &[PathBuf],
    profile: Option<&str>,
    manager: Manager,
) -> anyhow::Result<(Vec<config::AppSpec>, Vec<Rendered>)> {
    let opts = ParseOptions {
        profile: profile.map(str::to_string),
        user_manager: manager == Manager::User,
    };
    let specs = load_all(files, &opts, "nothing was written")?;
    let rendered = render_all(&specs, manager, Flavor::Generate);
    Ok((specs, rendered))
}

/// Loads, renders and writes; reloads the manager when the units went into its live
/// directory. Used by `generate`, `start FILE` and `reload FILE`.
pub(crate) fn generate_files(
    files: &[PathBuf],
    output: Option<&Path>,
    profile: Option<&str>,
    manager: Manager,
    reload: bool,
) -> anyhow::Result<Generated> {
    let (specs, apps) = load_and_render(files, profile, manager)?;
    let default = UnitDir::default_for(manager)?;
    let dir = output.map_or_else(|| default.clone(), |p| UnitDir::new(p.to_path_buf()));
    let report = dir.write(&apps)?;
    for (app, spec) in apps.iter().zip(&specs) {
        let n = app.links.len();
        crate::journal::Record::new(
            crate::journal::Action::Generate,
            &app.app,
            manager,
            Some(&spec.source),
        )
        .generated(
            n,
            format!(
                "{} unit files in `{}`{}",
                app.files.len(),
                dir.path().display(),
                if report.changed() { "" } else { ", unchanged" }
            ),
        );
        eprintln!(
            "generated `{}`: {} unit files, {n} instance{} in {}",
            app.app,
            app.files.len(),
            if n == 1 { "" } else { "s" },
            dir.path().display()
        );
    }
    if report.changed() && reload {
        if dir == default && manager_is_running(manager) {
            reload_manager(manager).context("the units were written, but systemd was not reloaded; run `systemctl daemon-reload`")?;
            eprintln!("reloaded systemd");
        } else if dir == default {
            eprintln!("systemd is not running here; the units take effect when it starts");
        }
    }
    Ok(Generated { apps, dir, report })
}

/// Whether the manager whose live directory we write to is up, so a reload makes sense.
fn manager_is_running(manager: Manager) -> bool {
    match manager {
        // sd_booted(3): the system manager creates this directory when it starts.
        Manager::System => Path::new("/run/systemd/system").is_dir(),
        Manager::User => std::env::var_os("XDG_RUNTIME_DIR")
            .is_some_and(|d| Path::new(&d).join("systemd/private").exists()),
    }
}

/// Asks the manager to re-read its units (`systemctl daemon-reload`) over D-Bus.
pub(crate) fn reload_manager(manager: Manager) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(crate::systemd::manager_reload(manager))
}

pub fn run(args: &GenerateArgs, manager: Manager) -> anyhow::Result<ExitCode> {
    if args.dry_run {
        let (_, apps) = load_and_render(&args.files, args.env.as_deref(), manager)?;
        let dir = match &args.output {
            Some(p) => p.clone(),
            None => UnitDir::default_for(manager)?.path().to_path_buf(),
        };
        let mut out = std::io::stdout().lock();
        for app in &apps {
            for file in &app.files {
                writeln!(out, "---{}---", dir.join(&file.name).display())?;
                out.write_all(file.contents.as_bytes())?;
            }
            for link in &app.links {
                writeln!(out, "---{}---", dir.join(&link.path).display())?;
                writeln!(out, "-> {}", link.target)?;
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    generate_files(
        &args.files,
        args.output.as_deref(),
        args.env.as_deref(),
        manager,
        !args.no_reload,
    )?;
    Ok(ExitCode::SUCCESS)
}
