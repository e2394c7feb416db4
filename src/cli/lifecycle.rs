//! What the lifecycle commands (start, stop, restart, delete, scale, list, status, reload,
//! logs) share on the command line: telling an app file from an app name, the `--no-wait`
//! flag and the message while waiting for the lock, opening the app, the async runtime, and
//! printing. The operations themselves are the controller's ([`crate::controller`]).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;

use super::error::CliError;
use super::generate::{load_all, parse_options, write_specs, Input};
use crate::config::AppName;
use crate::controller::App;
use crate::lock::{self, AppLock, Wait};
use crate::systemd::Manager;

/// The `--no-wait` flag of commands that change an app.
#[derive(Debug, Clone, Args)]
pub struct LockArgs {
    /// If another sysmgr is changing this app (e.g. a reload), fail at once instead of
    /// waiting for it to finish.
    #[arg(long)]
    pub no_wait: bool,
}

/// What the user named: an app file or an installed app.
#[derive(Debug, Clone)]
pub enum Target {
    /// An app.toml.
    File(PathBuf),
    /// An app name.
    Name(String),
}

impl Target {
    /// A path if it looks like one (has a `/`, ends in `.toml`, or is an existing file),
    /// else a name.
    pub fn parse(arg: &str) -> Self {
        let path = Path::new(arg);
        if arg.contains('/') || arg.ends_with(".toml") || path.is_file() {
            Self::File(path.to_path_buf())
        } else {
            Self::Name(arg.to_string())
        }
    }
}

/// Validates an app name given on the command line.
pub fn app_name(name: &str) -> anyhow::Result<String> {
    AppName::parse(name)
        .map(|n| n.as_str().to_string())
        .map_err(|reason| {
            CliError::AppName {
                name: name.to_string(),
                reason,
            }
            .into()
        })
}

/// Takes the lock of the app named `name` and opens it: what `stop`, `restart`, `scale` and
/// `delete` begin with.
pub fn open(manager: Manager, name: &str, lock_args: &LockArgs) -> anyhow::Result<App> {
    let lock = lock(manager, name, lock_args)?;
    App::open(manager, name, lock)
}

/// Where the apps of `start` and `reload` come from, besides the argument.
#[derive(Debug, Clone, Args)]
pub struct SourceArgs {
    /// With FILE: merge `[env_PROFILE]` over `[env]`, like `pm2 start --env PROFILE`
    /// (`env_PROFILE` of an ecosystem file).
    #[arg(long, value_name = "PROFILE")]
    pub env: Option<String>,
    /// With an ecosystem file or a script: the socket of apps that declare no port
    /// (`listen`, `env.PORT`), e.g. `127.0.0.1:3000` or `3000`.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// With a script (`sysmgr start app.js`): how many instances, like `pm2 start -i`
    /// (`max` or 0: one per core, -1: one fewer).
    #[arg(long, short = 'i', value_name = "N", allow_hyphen_values = true)]
    pub instances: Option<String>,
    /// With a script: the app's name (default: the script's name).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
}

/// What `start` and `reload` begin with: resolves `arg` (an app name, an app file, a PM2
/// ecosystem file or a script), takes the lock of every app it holds, generates their units
/// (which reloads systemd when anything changed; `reload` keeps the units replaced as the
/// last good generation, `keep_last_good`), and opens them.
pub fn prepare(
    arg: &str,
    source: &SourceArgs,
    manager: Manager,
    lock_args: &LockArgs,
    keep_last_good: bool,
) -> anyhow::Result<Vec<App>> {
    let path = match Target::parse(arg) {
        Target::Name(name) => {
            let name = app_name(&name)?;
            let lock = lock(manager, &name, lock_args)?;
            return Ok(vec![App::open(manager, &name, lock)?]);
        }
        Target::File(path) => path,
    };
    let opts = parse_options(source.env.as_deref(), manager);
    let input = Input::of(&path, source.instances.as_deref(), source.name.as_deref());
    let specs = load_all(
        &[input],
        &opts,
        source.listen.as_deref(),
        "nothing was changed",
        // The app may hold its port itself (its socket unit or its instances), which is
        // never reported; another program on it is a warning: the start says what fails.
        Some(crate::host::Checks {
            manager,
            ports: crate::host::Ports::Warn,
        }),
    )?;
    // In name order, so two commands on overlapping files cannot wait for each other.
    let mut names: Vec<String> = specs.iter().map(|s| s.name.as_str().to_string()).collect();
    names.sort();
    let mut locks = Vec::with_capacity(names.len());
    for name in names {
        let held = lock(manager, &name, lock_args)?;
        locks.push((name, held));
    }
    write_specs(&specs, &opts, None, manager, true, keep_last_good)?;
    locks
        .into_iter()
        .map(|(name, held)| App::open(manager, &name, held))
        .collect()
}

/// The word that names every installed app (`sysmgr stop all`, as `pm2 stop all`); no app can
/// be called that ([`crate::config::AppName::parse`] refuses it).
pub const ALL: &str = "all";

/// Every installed app's name, sorted: generated with `sysmgr generate`/`start`, or by
/// sysmgr's systemd generator.
pub fn all_app_names(manager: Manager) -> anyhow::Result<Vec<String>> {
    let dir = crate::controller::unit_dir(manager)?;
    let mut names: Vec<String> = dir.installed_apps()?.into_iter().map(|a| a.name).collect();
    if let Some(generated) = manager.generator_dir() {
        let generated = crate::install::UnitDir::new(generated).installed_apps()?;
        names.extend(generated.into_iter().map(|a| a.name));
    }
    names.sort();
    names.dedup();
    Ok(names)
}

/// Runs `each` on every app `arg` names ([`app_names`]; `all` is every installed app) and
/// says how it went. With several apps, one that fails does not stop the others: its error
/// is printed at once and the command fails at the end, naming the apps that failed.
pub fn for_each_app(
    verb: &str,
    arg: &str,
    manager: Manager,
    mut each: impl FnMut(&str) -> anyhow::Result<()>,
) -> anyhow::Result<ExitCode> {
    let names = app_names(arg, manager)?;
    if arg == ALL && names.is_empty() {
        eprintln!("{verb} all: no apps are installed");
        return Ok(ExitCode::SUCCESS);
    }
    if names.len() == 1 {
        each(&names[0])?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut failed = Vec::new();
    for name in &names {
        if let Err(err) = each(name) {
            super::report(&err.context(format!("{verb} `{name}` failed")));
            failed.push(format!("`{name}`"));
        }
    }
    if failed.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    // A failed outcome (exit code 1): each app's own error was printed above.
    Err(anyhow::anyhow!(
        "{verb} {arg}: {} of {} apps failed: {}; the others were done",
        failed.len(),
        names.len(),
        failed.join(", ")
    ))
}

/// The apps an argument names: `all` (every installed app), one name, or every app of an app
/// file or ecosystem file (`sysmgr stop ecosystem.config.js`, as PM2 does).
pub fn app_names(arg: &str, manager: Manager) -> anyhow::Result<Vec<String>> {
    if arg == ALL {
        return all_app_names(manager);
    }
    match Target::parse(arg) {
        // A name, or something that looks like a path but is no file: say what a name is.
        Target::Name(_) => Ok(vec![app_name(arg)?]),
        Target::File(path) if !path.is_file() => Ok(vec![app_name(arg)?]),
        Target::File(path) => {
            let opts = parse_options(None, manager);
            // Only the names are used: an app without a port gets a stand-in one, so that
            // `stop ecosystem.config.js` works without the `--listen` it was started with.
            let specs = load_all(
                &[Input::File(path)],
                &opts,
                Some("127.0.0.1:1"),
                "nothing was changed",
                None,
            )?;
            Ok(specs.iter().map(|s| s.name.as_str().to_string()).collect())
        }
    }
}

/// Takes the app's lock, waiting (with a message) unless `--no-wait`.
pub fn lock(manager: Manager, app: &str, args: &LockArgs) -> anyhow::Result<AppLock> {
    let dir = lock::lock_dir(manager)?;
    let wait = if args.no_wait {
        Wait::Refuse
    } else {
        Wait::Block
    };
    Ok(AppLock::acquire(&dir, app, wait, |holder| {
        let who = holder.map(|p| format!(" (pid {p})")).unwrap_or_default();
        eprintln!(
            "sysmgr: another sysmgr{who} is changing `{app}`; waiting for it to finish (--no-wait fails instead)"
        );
    })?)
}

/// A current-thread runtime: the controller does one thing at a time, and its futures need
/// not be `Send`.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Prints to stdout; a reader that went away (`sysmgr list | head`) is not an error.
pub fn print_stdout(text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(anyhow::Error::new(e).context("cannot write to stdout"))
        }
        _ => Ok(()),
    }
}

/// `1 instance`, `3 instances`.
pub fn instances_word(n: usize) -> String {
    format!("{n} instance{}", if n == 1 { "" } else { "s" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_and_names_are_told_apart() {
        assert!(matches!(Target::parse("web"), Target::Name(n) if n == "web"));
        assert!(matches!(Target::parse("app.toml"), Target::File(_)));
        assert!(matches!(Target::parse("./web"), Target::File(_)));
        assert!(matches!(
            Target::parse("/srv/web/app.toml"),
            Target::File(_)
        ));
    }
}
