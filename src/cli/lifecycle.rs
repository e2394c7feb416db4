//! What the lifecycle commands (start, stop, restart, delete, scale, list, status, reload,
//! logs) share: telling an app file from an app name, finding an app's units, the per-app
//! lock, the async runtime, and the operations several commands perform (stopping units,
//! reading the state of every instance).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Args;

use crate::config::{self, AppName, ParseOptions};
use crate::install::{InstalledApp, UnitDir};
use crate::names::UnitNames;
use crate::reload::lock::{self, AppLock, Wait};
use crate::render::Manager;
use crate::systemd::dbus::{DbusError, JobMode, ServiceState, Systemd, UnitListing};

/// An app named on the command line with no sysmgr units in the unit directory.
#[derive(Debug, thiserror::Error)]
#[error("app `{name}` is not generated: `{}` holds no units of sysmgr's for it{known}; start it from its app file with `sysmgr start FILE` (or write its units with `sysmgr generate FILE`)", dir.display())]
pub struct NotGenerated {
    /// The name given.
    pub name: String,
    /// The directory looked in.
    pub dir: PathBuf,
    /// ` (apps there: a, b)` or empty.
    pub known: String,
}

/// A lifecycle command ran but its outcome failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// Some instances are not running after a start.
    #[error("{failed} of {total} instances of `{app}` are not running: {units}; see `sysmgr logs {app}`")]
    NotRunning {
        /// The app.
        app: String,
        /// How many failed.
        failed: usize,
        /// How many there are.
        total: usize,
        /// The failed units.
        units: String,
    },
    /// The rolling reload (or restart) stopped at a failed instance.
    #[error("{verb} of `{app}` halted: `{unit}` failed ({reason}); the instances not yet restarted still run the previous version; fix the app and run `sysmgr {verb} {app}` again")]
    Halted {
        /// `reload` or `restart`.
        verb: &'static str,
        /// The app.
        app: String,
        /// The failed unit.
        unit: String,
        /// Why, in words.
        reason: String,
    },
    /// A stop job did not end with `done`.
    #[error("systemd could not stop `{unit}`: the job ended with `{result}`")]
    StopFailed {
        /// The unit.
        unit: String,
        /// The job result.
        result: String,
    },
}

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

/// The unit directory of `manager`.
pub fn unit_dir(manager: Manager) -> anyhow::Result<UnitDir> {
    Ok(UnitDir::default_for(manager)?)
}

/// The installed app `name`: generated into `dir` by `sysmgr generate`, or by sysmgr's
/// systemd generator into the manager's generator directory; else [`NotGenerated`].
pub fn installed(dir: &UnitDir, manager: Manager, name: &str) -> anyhow::Result<InstalledApp> {
    if let Some(app) = dir.app(name)? {
        return Ok(app);
    }
    if let Some(generated) = crate::install::generator_dir(manager) {
        if let Some(mut app) = UnitDir::new(generated).app(name)? {
            app.from_generator = true;
            return Ok(app);
        }
    }
    let apps = dir.installed_apps()?;
    let known = if apps.is_empty() {
        String::new()
    } else {
        let names: Vec<&str> = apps.iter().map(|a| a.name.as_str()).collect();
        format!(" (apps there: {})", names.join(", "))
    };
    Err(NotGenerated {
        name: name.to_string(),
        dir: dir.path().to_path_buf(),
        known,
    }
    .into())
}

/// What `start` and `reload` begin with: the app named by NAME or FILE, locked, its units
/// (re)generated from FILE first when a file was given, and found installed.
pub struct Prepared {
    /// The app name.
    pub name: String,
    /// The app's units as found.
    pub app: InstalledApp,
    /// Held until the command ends.
    pub lock: AppLock,
}

/// Resolves `arg` (an app name or an app file), takes the lock, generates from the file (which
/// reloads systemd when anything changed), and finds the app.
pub fn prepare(
    arg: &str,
    profile: Option<&str>,
    manager: Manager,
    lock_args: &LockArgs,
) -> anyhow::Result<Prepared> {
    let target = Target::parse(arg);
    let name = target.app_name(profile, manager)?;
    let lock = lock(manager, &name, lock_args)?;
    let dir = unit_dir(manager)?;
    if let Target::File(file) = &target {
        super::generate::generate_files(std::slice::from_ref(file), None, profile, manager, true)?;
    }
    let app = installed(&dir, manager, &name)?;
    Ok(Prepared { name, app, lock })
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

/// The instance number of `NAME@N.service`.
pub fn instance_of(app: &str, unit: &str) -> Option<u32> {
    UnitNames::new(app).instance_of(unit)
}

/// The app's instance units systemd has loaded (running, failed, or merely referenced).
pub async fn loaded_instances(sd: &Systemd, app: &str) -> Result<Vec<UnitListing>, DbusError> {
    let units = sd
        .list_units(&[UnitNames::new(app).instance_pattern()])
        .await?;
    Ok(units
        .into_iter()
        .filter(|u| instance_of(app, &u.name).is_some())
        .collect())
}

/// Whether a unit counts as running for scaling and reloading: anything but stopped.
pub fn is_up(listing: &UnitListing) -> bool {
    !matches!(listing.active_state.as_str(), "inactive" | "failed")
}

/// The instances that run now, sorted.
pub async fn running_instances(sd: &Systemd, app: &str) -> Result<BTreeSet<u32>, DbusError> {
    Ok(loaded_instances(sd, app)
        .await?
        .iter()
        .filter(|u| is_up(u))
        .filter_map(|u| instance_of(app, &u.name))
        .collect())
}

/// The states of `instances` of `app`, read concurrently.
pub async fn instance_states(
    sd: &Systemd,
    app: &str,
    instances: &[u32],
) -> Result<Vec<ServiceState>, DbusError> {
    let names = UnitNames::new(app);
    futures_util::future::try_join_all(
        instances
            .iter()
            .map(|&i| names.instance(i))
            .map(|unit| async move { sd.service_state(&unit).await }),
    )
    .await
}

/// Stops `instances` of `app` and the sockets that belong to them alone (per-instance
/// sockets, `NAME@N.socket`; a shared socket keeps serving the others), and waits for every
/// stop job. With `target`, stops `NAME.target` too (and through `PartOf=`, every unit of
/// the app, shared sockets included).
pub async fn stop_instances(
    sd: &Systemd,
    app: &str,
    instances: &[u32],
    target: bool,
) -> anyhow::Result<()> {
    let names = UnitNames::new(app);
    let states = instance_states(sd, app, instances).await?;
    let mut units: Vec<String> = Vec::new();
    if target {
        units.push(names.target());
    }
    for (state, &i) in states.iter().zip(instances) {
        units.push(state.unit.clone());
        let suffix = format!("@{i}.socket");
        // Stopping the whole app stops shared sockets too (they are `PartOf=` the target;
        // naming them here makes us wait for them).
        for socket in &state.triggered_by {
            if (target || socket.ends_with(&suffix)) && !units.contains(socket) {
                units.push(socket.clone());
            }
        }
    }
    stop_units(sd, &units).await
}

/// Stops `units` and waits for all their jobs. A stop that systemd merged into a stop
/// already queued (e.g. propagated by `PartOf=`) is waited for once.
pub async fn stop_units(sd: &Systemd, units: &[String]) -> anyhow::Result<()> {
    let mut watch = sd.watch_jobs().await?;
    let mut jobs = Vec::with_capacity(units.len());
    for unit in units {
        jobs.push(sd.stop_unit(unit, JobMode::Replace).await?);
    }
    for removed in watch.wait_all(&jobs).await? {
        if removed.result.as_str() != "done" {
            return Err(ControlError::StopFailed {
                unit: removed.unit,
                result: removed.result.to_string(),
            }
            .into());
        }
    }
    Ok(())
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
