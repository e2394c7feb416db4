//! `sysmgr generate FILE...`: app files in, unit files out, all or nothing.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;

use super::error::CliError;
use crate::config::{self, ecosystem, ParseOptions};
use crate::host::{self, Ports};
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
    /// For PM2 ecosystem files: the socket of apps that declare no port (`listen`,
    /// `env.PORT`), e.g. `127.0.0.1:3000`.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
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

/// Where apps come from on the command line.
#[derive(Debug, Clone)]
pub enum Input {
    /// An app.toml, or a PM2 ecosystem file (`*.config.js`, `.json`...).
    File(PathBuf),
    /// PM2's quick form, `sysmgr start app.js -i N --name NAME`.
    Script {
        /// The script Node runs.
        script: PathBuf,
        /// `-i`: a count, `max`, 0 or -1.
        instances: Option<String>,
        /// `--name`.
        name: Option<String>,
    },
}

impl Input {
    /// A file argument: PM2's quick form for a script (`app.js`), else an app or ecosystem file.
    pub fn of(path: &Path, instances: Option<&str>, name: Option<&str>) -> Self {
        if ecosystem::is_node_script(path) && !ecosystem::is_ecosystem_file(path) {
            Self::Script {
                script: path.to_path_buf(),
                instances: instances.map(str::to_string),
                name: name.map(str::to_string),
            }
        } else {
            Self::File(path.to_path_buf())
        }
    }

    fn display(&self) -> String {
        match self {
            Self::File(p) | Self::Script { script: p, .. } => p.display().to_string(),
        }
    }
}

/// Loads every input, printing warnings; fails with every input's errors if any has one.
/// `listen` is `--listen`, for ecosystem apps that declare no port. `consequence` ends the
/// summary line: what did not happen because of the errors. `checks` looks at the machine
/// too (the program, the accounts, the ports: [`crate::host`]); `None` only reads the files.
pub(crate) fn load_all(
    inputs: &[Input],
    opts: &ParseOptions,
    listen: Option<&str>,
    consequence: &str,
    checks: Option<host::Checks>,
) -> anyhow::Result<Vec<config::AppSpec>> {
    let mut specs = Vec::new();
    let mut failed = Vec::new();
    for input in inputs {
        match load_one(input, opts, listen, checks) {
            Ok(loaded) => specs.extend(loaded),
            Err(()) => failed.push(input.display()),
        }
    }
    if !failed.is_empty() {
        return Err(CliError::AppFiles {
            failed,
            total: inputs.len(),
            consequence: consequence.to_string(),
        }
        .into());
    }
    for (i, a) in specs.iter().enumerate() {
        if let Some(b) = specs[..i].iter().find(|b| b.name == a.name) {
            return Err(CliError::DuplicateApp {
                app: a.name.to_string(),
                first: b.source.clone(),
                second: a.source.clone(),
                consequence: consequence.to_string(),
            }
            .into());
        }
    }
    Ok(specs)
}

/// One input's apps, its warnings and errors printed.
fn load_one(
    input: &Input,
    opts: &ParseOptions,
    listen: Option<&str>,
    checks: Option<host::Checks>,
) -> Result<Vec<config::AppSpec>, ()> {
    // The machine's problems of a parsed app, printed; `Err` if any is an error.
    let on_host = |parsed: &config::Parsed| -> Result<(), config::Diagnostics> {
        for w in parsed.warnings.warnings() {
            eprintln!("{w}");
        }
        let Some(checks) = checks else { return Ok(()) };
        let found = host::check(&parsed.spec, &parsed.places, checks);
        if found.has_errors() {
            return Err(found);
        }
        for w in found.warnings() {
            eprintln!("{w}");
        }
        Ok(())
    };
    let overrides = ecosystem::Overrides {
        listen: listen.map(str::to_string),
        profile: opts.profile.clone(),
    };
    let (path, imported) = match input {
        Input::File(path) if !ecosystem::is_ecosystem_file(path) => {
            return match config::load(path, opts) {
                Ok(parsed) => match on_host(&parsed) {
                    Ok(()) => Ok(vec![parsed.spec]),
                    Err(d) => {
                        eprintln!("{d}");
                        Err(())
                    }
                },
                Err(e) => {
                    eprintln!("{e}");
                    Err(())
                }
            };
        }
        Input::File(path) => (path, ecosystem::import(path, &overrides)),
        Input::Script {
            script,
            instances,
            name,
        } => (
            script,
            ecosystem::quick(script, instances.as_deref(), name.as_deref(), &overrides),
        ),
    };
    let apps = imported.map_err(|e| eprintln!("sysmgr: error: {e}"))?;
    let source = std::path::absolute(path).unwrap_or_else(|_| path.clone());
    let mut specs = Vec::new();
    for app in apps {
        for w in &app.warnings {
            eprintln!("{w}");
        }
        if matches!(input, Input::Script { .. }) {
            // The quick form's app file, for the user to keep (`sysmgr start NAME.toml`).
            eprintln!(
                "sysmgr: the app file for `{}` (save it as {}.toml to keep it):\n{}",
                app.name, app.name, app.toml
            );
        }
        let display = format!("{} (app `{}`)", path.display(), app.name);
        match config::parse(&app.toml, &display, &source, opts) {
            Ok(parsed) => match on_host(&parsed) {
                Ok(()) => specs.push(parsed.spec),
                Err(d) => {
                    eprintln!("{d}\nthe app file made from it:\n{}", app.toml);
                    return Err(());
                }
            },
            Err(d) => {
                eprintln!("{d}\nthe app file made from it:\n{}", app.toml);
                return Err(());
            }
        }
    }
    Ok(specs)
}

/// How app files are read for `manager`: its profile, and where sysmgr and its Node bridge are.
pub fn parse_options(profile: Option<&str>, manager: Manager) -> ParseOptions {
    ParseOptions {
        profile: profile.map(str::to_string),
        user_manager: manager == Manager::User,
        bridge: crate::node::paths(manager),
        systemd: crate::systemd::installed_version(),
    }
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
    inputs: &[Input],
    profile: Option<&str>,
    listen: Option<&str>,
    manager: Manager,
) -> anyhow::Result<Vec<Rendered>> {
    let opts = parse_options(profile, manager);
    let checks = host::Checks {
        manager,
        ports: Ports::Skip,
    };
    let specs = load_all(inputs, &opts, listen, "nothing was written", Some(checks))?;
    Ok(render_all(&specs, manager, Flavor::Generate))
}

/// Renders and writes loaded apps (installing the Node bridge first when an app needs it);
/// reloads the manager when the units went into its live directory. Used by `generate`,
/// `start FILE` and `reload FILE`; `reload FILE` keeps the units it replaces as the last
/// good generation (`keep_last_good`), to put back if its rollout halts.
pub(crate) fn write_specs(
    specs: &[config::AppSpec],
    opts: &ParseOptions,
    output: Option<&Path>,
    manager: Manager,
    reload: bool,
    keep_last_good: bool,
) -> anyhow::Result<Generated> {
    if specs.iter().any(|s| s.runtime.is_node()) {
        let script = opts.bridge.script.display().to_string();
        if crate::node::install(&opts.bridge).with_context(|| {
            format!("cannot install sysmgr's Node bridge at `{script}`; nothing was written")
        })? {
            eprintln!("installed sysmgr's Node bridge at {script}");
        }
    }
    let apps = render_all(specs, manager, Flavor::Generate);
    let default = UnitDir::default_for(manager)?;
    let dir = output.map_or_else(|| default.clone(), |p| UnitDir::new(p.to_path_buf()));
    let report = if keep_last_good {
        dir.write_keeping_last_good(&apps)?
    } else {
        dir.write(&apps)?
    };
    for (app, spec) in apps.iter().zip(specs) {
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
    let inputs: Vec<Input> = args.files.iter().cloned().map(Input::File).collect();
    if args.dry_run {
        let apps = load_and_render(
            &inputs,
            args.env.as_deref(),
            args.listen.as_deref(),
            manager,
        )?;
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
    let opts = parse_options(args.env.as_deref(), manager);
    let specs = load_all(
        &inputs,
        &opts,
        args.listen.as_deref(),
        "nothing was written",
        Some(host::Checks {
            manager,
            ports: Ports::Skip,
        }),
    )?;
    write_specs(
        &specs,
        &opts,
        args.output.as_deref(),
        manager,
        !args.no_reload,
        false,
    )?;
    Ok(ExitCode::SUCCESS)
}
