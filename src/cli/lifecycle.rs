//! What the lifecycle commands (start, stop, restart, delete, scale, list, status, reload,
//! logs) share on the command line: telling an app file from an app name, the `--no-wait`
//! flag and the message while waiting for the lock, opening the app, the async runtime, and
//! printing. The operations themselves are the controller's ([`crate::controller`]).

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Args;

use crate::config::{self, AppName, ParseOptions};
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

    /// The app name: validated, or read from the app file (without printing its warnings;
    /// generating prints them).
    pub fn app_name(&self, profile: Option<&str>, manager: Manager) -> anyhow::Result<String> {
        match self {
            Self::Name(name) => app_name(name),
            Self::File(path) => {
                let opts = ParseOptions {
                    profile: profile.map(str::to_string),
                    user_manager: manager == Manager::User,
                };
                match config::load(path, &opts) {
                    Ok(parsed) => Ok(parsed.spec.name.as_str().to_string()),
                    Err(e) => {
                        eprintln!("{e}");
                        Err(crate::Invalid(format!(
                            "`{}` has errors; nothing was changed",
                            path.display()
                        ))
                        .into())
                    }
                }
            }
        }
    }
}

/// Validates an app name given on the command line.
pub fn app_name(name: &str) -> anyhow::Result<String> {
    AppName::parse(name)
        .map(|n| n.as_str().to_string())
        .map_err(|e| crate::Invalid(format!("`{name}` is not a valid app name: it {e}")).into())
}

/// Takes the lock of the app named `name` and opens it: what `stop`, `restart`, `scale` and
/// `delete` begin with.
pub fn open(manager: Manager, name: &str, lock_args: &LockArgs) -> anyhow::Result<App> {
    let lock = lock(manager, name, lock_args)?;
    App::open(manager, name, lock)
}

/// What `start` and `reload` begin with: resolves `arg` (an app name or an app file), takes
/// the lock, generates from the file (which reloads systemd when anything changed), and opens
/// the app.
pub fn prepare(
    arg: &str,
    profile: Option<&str>,
    manager: Manager,
    lock_args: &LockArgs,
) -> anyhow::Result<App> {
    let target = Target::parse(arg);
    let name = target.app_name(profile, manager)?;
    let lock = lock(manager, &name, lock_args)?;
    if let Target::File(file) = &target {
        super::generate::generate_files(std::slice::from_ref(file), None, profile, manager, true)?;
    }
    App::open(manager, &name, lock)
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
