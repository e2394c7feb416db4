//! The command line: one clap derive at the root, one file per subcommand, one `match` to
//! dispatch. Commands return an [`ExitCode`]; errors travel up as `anyhow` chains and are mapped
//! to exit codes by their type in `exit_code`.

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::systemd::Manager;
use crate::{Classify, ErrorClass};

mod assets;
mod check;
mod delete;
mod deploy;
mod describe;
mod error;
mod exec;
pub mod generate;
pub mod generator;
mod history;
mod import;
mod init;
pub mod lifecycle;
mod list;
mod logs;
mod memory_check;
mod monit;
mod nginx;
mod reload;
mod restart;
mod scale;
mod start;
mod status;
mod stop;

/// Run multi-process web services natively on systemd.
#[derive(Debug, Parser)]
#[command(name = "sysmgr", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub manager: ManagerArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Options shared by every command.
#[derive(Debug, Clone, Args)]
pub struct ManagerArgs {
    /// Use the user's service manager (`systemctl --user`) instead of the system's.
    #[arg(long, global = true)]
    pub user: bool,
}

impl ManagerArgs {
    /// The manager chosen.
    pub fn manager(&self) -> Manager {
        if self.user {
            Manager::User
        } else {
            Manager::System
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a commented app file to start from, like `pm2 init`.
    Init(init::InitArgs),
    /// Turn a PM2 ecosystem file into one commented app.toml per app.
    Import(import::ImportArgs),
    /// Validate app files and print the resolved settings; writes nothing.
    Check(check::CheckArgs),
    /// Turn app files into systemd units: NAME@.service, NAME@.socket, NAME.target.
    Generate(generate::GenerateArgs),
    /// Start an app: from its file (generate, reload systemd, start), or by name.
    Start(start::StartArgs),
    /// Stop every instance and socket of an app.
    Stop(stop::StopArgs),
    /// Restart every instance at once (sockets stay open), like `pm2 restart`.
    Restart(restart::RestartArgs),
    /// Zero-downtime rolling restart, instance by instance, halting at the first failure.
    Reload(reload::ReloadArgs),
    /// Change how many instances run, now and after a reboot.
    Scale(scale::ScaleArgs),
    /// Stop an app and remove its generated units.
    Delete(delete::DeleteArgs),
    /// Every app with the state of each instance (also `ls`).
    #[command(visible_alias = "ls")]
    List(list::ListArgs),
    /// One app's instances: state, PID, uptime, restarts, memory, CPU.
    Status(status::StatusArgs),
    /// Where an app comes from: its app file, unit files, instances and last reload.
    Describe(describe::DescribeArgs),
    /// Show an app's journal (all instances, each line tagged with its instance), via journalctl.
    Logs(logs::LogsArgs),
    /// A live view of every instance (or one app's): CPU, memory, restarts, the selected
    /// instance's journal; keys reload, restart one instance, scale by one.
    Monit(monit::MonitArgs),
    /// Ship the app to the hosts of `[deploy.ENV]`: immutable releases, rolled host by host.
    Deploy(deploy::DeployArgs),
    /// Print an nginx upstream and server block for the app (one server per deploy host).
    Nginx(nginx::NginxArgs),
    /// What sysmgr did to an app: its last reloads, starts, scales..., from the journal.
    History(history::HistoryArgs),
    /// Print a completion script for bash, zsh, fish, elvish or powershell.
    Completions(assets::CompletionsArgs),
    /// Write the man pages (sysmgr.1 and one per command) into DIR; the packages ship them.
    #[command(hide = true)]
    Man(assets::ManArgs),
    /// Start an instance's program with a notify socket for it (what Node apps' units run).
    #[command(hide = true)]
    Exec(exec::ExecArgs),
    /// Restart the instances above `max_memory_restart` through their drain (what
    /// `NAME-memory.service` runs).
    #[command(hide = true, name = crate::names::MEMORY_CHECK_COMMAND)]
    MemoryCheck(memory_check::MemoryCheckArgs),
}

impl Command {
    /// True for the commands that change no app, so record no event in the journal.
    fn only_reads(&self) -> bool {
        matches!(
            self,
            Self::List(_)
                | Self::Status(_)
                | Self::Describe(_)
                | Self::Logs(_)
                | Self::Monit(_)
                | Self::History(_)
                | Self::Check(_)
                | Self::Completions(_)
                | Self::Man(_)
        )
    }
}

/// Parses the command line and runs the command. `argv0` decides whether this process was
/// started as the systemd generator (`sysmgr-generator`).
pub fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if generator::invoked_as_generator(args.first()) {
        return generator::main(&args[1..]);
    }
    let cli = Cli::parse();
    // sysmgr's own events go to the journal when there is one (never the generator's: it
    // runs before journald at boot and changes no app). Commands that only look record
    // nothing, and skip connecting to journald: `list` and `status` should start at once.
    if !cli.command.only_reads() {
        crate::journal::init();
    }
    let result = match cli.command {
        Command::Init(args) => init::run(&args),
        Command::Check(args) => check::run(&args, cli.manager.manager()),
        Command::Import(args) => import::run(&args, cli.manager.manager()),
        Command::Generate(args) => generate::run(&args, cli.manager.manager()),
        Command::Start(args) => start::run(&args, cli.manager.manager()),
        Command::Stop(args) => stop::run(&args, cli.manager.manager()),
        Command::Restart(args) => restart::run(&args, cli.manager.manager()),
        Command::Reload(args) => reload::run(&args, cli.manager.manager()),
        Command::Scale(args) => scale::run(&args, cli.manager.manager()),
        Command::Delete(args) => delete::run(&args, cli.manager.manager()),
        Command::List(args) => list::run(&args, cli.manager.manager()),
        Command::Status(args) => status::run(&args, cli.manager.manager()),
        Command::Describe(args) => describe::run(&args, cli.manager.manager()),
        Command::Logs(args) => logs::run(&args, cli.manager.manager()),
        Command::Monit(args) => monit::run(&args, cli.manager.manager()),
        Command::History(args) => history::run(&args, cli.manager.manager()),
        Command::Deploy(args) => deploy::run(&args, cli.manager.manager()),
        Command::Nginx(args) => nginx::run(&args, cli.manager.manager()),
        Command::Completions(args) => assets::completions(&args),
        Command::Man(args) => assets::man(&args),
        Command::Exec(args) => exec::run(&args),
        Command::MemoryCheck(args) => memory_check::run(&args, cli.manager.manager()),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            report(&err);
            ExitCode::from(exit_code(&err))
        }
    }
}

/// Prints an error and its whole cause chain, the way people read it.
pub(crate) fn report(err: &anyhow::Error) {
    eprintln!("sysmgr: error: {err}");
    for cause in err.chain().skip(1) {
        eprintln!("  caused by: {cause}");
    }
}

/// Exit codes, chosen by the error's type, never by its text.
pub mod exit {
    /// The command ran and did what was asked.
    pub const OK: u8 = 0;
    /// The command ran but the outcome failed (a reload halted, a unit failed).
    pub const FAILED: u8 = 1;
    /// The input was wrong (bad app file, bad arguments); nothing was changed.
    pub const INVALID: u8 = 2;
    /// systemd could not be reached or refused (not running, permission denied).
    pub const SYSTEMD: u8 = 3;
}

/// The exit code of a failed command: the highest [`ErrorClass`] that any error in the chain
/// declares (see [`ErrorClass`] for the order); [`exit::FAILED`] if none does.
fn exit_code(err: &anyhow::Error) -> u8 {
    // A typed error given as `.context(..)` is an anyhow wrapper in `chain()`; anyhow's own
    // downcast still finds the outermost one.
    let class = err
        .chain()
        .filter_map(class_of)
        .chain(class_of(err))
        .max()
        .unwrap_or(ErrorClass::Failed);
    exit_code_of(class)
}

/// The exit code of one class.
const fn exit_code_of(class: ErrorClass) -> u8 {
    match class {
        ErrorClass::Failed => exit::FAILED,
        ErrorClass::Invalid => exit::INVALID,
        ErrorClass::Systemd => exit::SYSTEMD,
    }
}

/// Something that may hold one of the library's error types: a cause in a chain, or the
/// `anyhow::Error` itself.
trait Holds {
    fn holds<E: Classify + Send + Sync + 'static>(&self) -> Option<&E>;
}

impl Holds for dyn std::error::Error + 'static {
    fn holds<E: Classify + Send + Sync + 'static>(&self) -> Option<&E> {
        self.downcast_ref()
    }
}

impl Holds for anyhow::Error {
    fn holds<E: Classify + Send + Sync + 'static>(&self) -> Option<&E> {
        self.downcast_ref()
    }
}

/// The class of an error, if its type is one of the library's: each layer's enum, listed
/// once here (`anyhow` can only downcast to concrete types, hence the list).
fn class_of<H: Holds + ?Sized>(err: &H) -> Option<ErrorClass> {
    fn ask<E: Classify + Send + Sync + 'static>(err: &(impl Holds + ?Sized)) -> Option<ErrorClass> {
        err.holds::<E>().map(Classify::class)
    }
    ask::<error::CliError>(err)
        .or_else(|| ask::<crate::config::LoadError>(err))
        .or_else(|| ask::<crate::config::Diagnostics>(err))
        .or_else(|| ask::<crate::config::ecosystem::EcosystemError>(err))
        .or_else(|| ask::<crate::controller::ControlError>(err))
        .or_else(|| ask::<crate::install::InstallError>(err))
        .or_else(|| ask::<crate::lock::LockError>(err))
        .or_else(|| ask::<crate::systemd::dbus::DbusError>(err))
        .or_else(|| ask::<crate::deploy::DeployError>(err))
}
