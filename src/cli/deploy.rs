//! `sysmgr deploy ENV setup | update | revert [N] | list | exec CMD`: the app file's
//! `[deploy.ENV]` (or an ecosystem file's `deploy` section) rolled out host by host. What
//! happens on the hosts is `crate::deploy`; this file loads the file, runs it and prints.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::generate::Input;
use crate::config::deploy::DeployEnv;
use crate::config::AppSpec;
use crate::deploy::{self, Action, DeployError, Ssh};
use crate::systemd::Manager;

#[derive(Debug, Args)]
pub struct DeployArgs {
    /// The environment: a `[deploy.ENV]` table of the app file.
    #[arg(value_name = "ENV")]
    pub env: String,
    #[command(subcommand)]
    pub action: DeployAction,
    /// The app file (or PM2 ecosystem file) with the `[deploy.ENV]` table.
    #[arg(
        long,
        short,
        value_name = "FILE",
        default_value = "app.toml",
        global = true
    )]
    pub file: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum DeployAction {
    /// Prepare each host: `path/releases` and a mirror of the repository in `path/repo`.
    Setup,
    /// Deploy the ref as a new release on each host, `serial` at a time, and reload there.
    Update {
        /// Deploy this branch, tag or commit instead of the file's `ref`.
        #[arg(long = "ref", value_name = "REF")]
        git_ref: Option<String>,
    },
    /// Switch each host back N releases (default 1) and reload there.
    Revert {
        /// How many releases back.
        #[arg(value_name = "N", default_value_t = 1)]
        back: usize,
    },
    /// Each host's releases, the current one marked.
    List,
    /// Run a command on each host in the current release (`/bin/sh -c CMD`).
    Exec {
        /// The command.
        #[arg(value_name = "CMD")]
        command: String,
    },
}

/// The first app of `file` that has `[deploy]` tables (an ecosystem file gives its section
/// to its first app), or the first app.
pub(crate) fn load(file: &std::path::Path, manager: Manager) -> anyhow::Result<AppSpec> {
    let opts = super::generate::parse_options(None, manager);
    let specs = super::generate::load_all(
        &[Input::File(file.to_path_buf())],
        &opts,
        None,
        "nothing was deployed",
        None,
    )?;
    let first = specs.iter().position(|s| !s.deploy.is_empty()).unwrap_or(0);
    Ok(specs
        .into_iter()
        .nth(first)
        .expect("load_all gives an app or an error"))
}

/// `YYYYMMDDTHHMMSSZ` for the release names, from the clock.
fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    deploy::plan::utc_stamp(secs)
}

pub fn run(args: &DeployArgs, manager: Manager) -> anyhow::Result<ExitCode> {
    let spec = load(&args.file, manager)?;
    let file = args.file.display().to_string();
    let env: &DeployEnv = deploy::find(&spec.deploy, &file, &args.env)?;
    let verb = match &args.action {
        DeployAction::Setup => "setup",
        DeployAction::Update { .. } => "update",
        DeployAction::Revert { .. } => "revert",
        DeployAction::List => return list(env),
        DeployAction::Exec { command } => return exec(env, command),
    };
    let action = match &args.action {
        DeployAction::Setup => Action::Setup,
        DeployAction::Update { git_ref } => Action::Update {
            git_ref: git_ref.clone().unwrap_or_else(|| env.git_ref.clone()),
            utc: utc_now(),
        },
        DeployAction::Revert { back } => Action::Revert { back: *back },
        _ => unreachable!("list and exec returned above"),
    };
    eprintln!(
        "deploy {} {verb}: {} host(s), {} at a time, stopping after {} failure(s)",
        env.name,
        env.hosts.len(),
        env.serial,
        env.max_fail + 1
    );
    let reports = deploy::rollout(env, &action, &Ssh::new(), &mut |r| {
        eprintln!("deploy {} {verb}: {}", env.name, r.line());
    })?;
    let failed = reports.iter().filter(|r| r.state.failed()).count();
    let untouched: Vec<String> = reports
        .iter()
        .filter(|r| r.state == deploy::HostState::Untouched)
        .map(|r| r.host.to_string())
        .collect();
    if !untouched.is_empty() {
        eprintln!(
            "deploy {} {verb}: untouched: {}",
            env.name,
            untouched.join(", ")
        );
    }
    if failed > 0 {
        return Err(DeployError::Failed {
            env: env.name.clone(),
            failed,
            total: reports.len(),
        }
        .into());
    }
    Ok(ExitCode::SUCCESS)
}

fn list(env: &DeployEnv) -> anyhow::Result<ExitCode> {
    let mut ok = true;
    for (host, result) in deploy::list(env, &Ssh::new())? {
        match result {
            Ok((current, releases)) => {
                println!("{host}:");
                if releases.is_empty() {
                    println!("  (no release)");
                }
                for r in releases {
                    let mark = if r == current { "*" } else { " " };
                    println!("{mark} {r}");
                }
            }
            Err(output) => {
                ok = false;
                eprintln!("deploy {} list: {host}: {output}", env.name);
            }
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(super::exit::FAILED)
    })
}

fn exec(env: &DeployEnv, command: &str) -> anyhow::Result<ExitCode> {
    let mut ok = true;
    for (host, out) in deploy::exec(env, command, &Ssh::new())? {
        for line in out.stdout.lines() {
            println!("{host}: {line}");
        }
        for line in out.stderr.lines() {
            eprintln!("{host}: {line}");
        }
        if out.code != Some(0) {
            ok = false;
            eprintln!(
                "deploy {} exec: {host}: exited with {}",
                env.name,
                out.code.map_or("a signal".to_string(), |c| c.to_string())
            );
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(super::exit::FAILED)
    })
}
