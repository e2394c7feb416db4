//! `sysmgr-generator`: the same rendering as `sysmgr generate`, run by systemd itself.
//!
//! Installed as `/usr/lib/systemd/system-generators/sysmgr-generator` (and in
//! `user-generators/`), a link to the `sysmgr` binary, the way podman's quadlet works: on boot
//! and on every `daemon-reload`, systemd runs it with three output directories (see
//! systemd.generator(7)). It reads the app files in `/etc/sysmgr`, `/run/sysmgr` and
//! `/usr/lib/sysmgr` (a file in an earlier directory hides one of the same name in a later
//! one), and writes units plus `NAME.target.wants/` links into the first, "normal" directory,
//! and hooks `NAME.target` into the default target. As a user generator it reads the user's
//! own `~/.config/sysmgr` and `/etc/sysmgr/user`, `/usr/lib/sysmgr/user`, never the system's
//! apps (those would start once in every user's manager). A count set by `sysmgr scale`
//! ([`crate::install::read_scale`]) replaces the file's `instances`.
//!
//! Generators run very early and must not
//! talk to D-Bus or wait on anything; messages go to the kernel log, as systemd's own
//! generators do. One bad file does not stop the others; the exit code is 1 if any failed.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::config;
use crate::install::UnitDir;
use crate::render::{self, Flavor};
use crate::systemd::Manager;

/// Where the system generator looks for app files, most important first.
pub const SEARCH_DIRS: &[&str] = &["/etc/sysmgr", "/run/sysmgr", "/usr/lib/sysmgr"];

/// Where the user generator looks, after the user's own `~/.config/sysmgr`.
pub const USER_SEARCH_DIRS: &[&str] = &["/etc/sysmgr/user", "/usr/lib/sysmgr/user"];

/// The directories the generator of `manager` reads, most important first.
pub fn search_dirs(manager: Manager) -> Vec<PathBuf> {
    match manager {
        Manager::System => SEARCH_DIRS.iter().map(PathBuf::from).collect(),
        Manager::User => crate::systemd::manager::user_config_dir()
            .map(|c| c.join("sysmgr"))
            .into_iter()
            .chain(USER_SEARCH_DIRS.iter().map(PathBuf::from))
            .collect(),
    }
}

/// The names this binary answers to as a generator.
pub(crate) fn invoked_as_generator(argv0: Option<&OsString>) -> bool {
    argv0
        .and_then(|a| Path::new(a).file_name().map(|n| n.to_os_string()))
        .is_some_and(|n| n == "sysmgr-generator" || n == "sysmgr-user-generator")
}

/// Writes to `/dev/kmsg` with a syslog priority, falling back to stderr (as systemd's
/// generators do when the kernel log cannot be opened, e.g. in a container).
struct Log {
    kmsg: Option<std::fs::File>,
}

impl Log {
    fn open() -> Self {
        let kmsg = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/kmsg")
            .ok();
        Self { kmsg }
    }

    /// `priority`: 3 error, 4 warning, 6 info.
    fn line(&mut self, priority: u8, message: &str) {
        for line in message.lines() {
            let written = self.kmsg.as_mut().is_some_and(|k| {
                k.write_all(
                    format!(
                        "<{priority}>sysmgr-generator[{}]: {line}\n",
                        std::process::id()
                    )
                    .as_bytes(),
                )
                .is_ok()
            });
            if !written {
                eprintln!("sysmgr-generator: {line}");
            }
        }
    }
}

/// The app files to read: `*.toml` in [`SEARCH_DIRS`], by file name, earlier dirs winning.
pub fn app_files(dirs: &[&Path]) -> Vec<PathBuf> {
    let mut by_name: BTreeMap<OsString, PathBuf> = BTreeMap::new();
    for dir in dirs.iter().rev() {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "toml") && path.is_file() {
                by_name.insert(entry.file_name(), path);
            }
        }
    }
    by_name.into_values().collect()
}

/// Runs the generator; `args` are the output directories systemd passes.
pub fn main(args: &[OsString]) -> ExitCode {
    let mut log = Log::open();
    let Some(normal) = args.first() else {
        log.line(
            3,
            "expected the output directories as arguments (see systemd.generator(7))",
        );
        return ExitCode::FAILURE;
    };
    let manager = if std::env::var_os("SYSTEMD_SCOPE").is_some_and(|s| s == "user")
        || std::env::args_os()
            .next()
            .is_some_and(|a| a.to_string_lossy().contains("user-generator"))
    {
        Manager::User
    } else {
        Manager::System
    };
    let dirs = search_dirs(manager);
    let dirs: Vec<&Path> = dirs.iter().map(PathBuf::as_path).collect();
    match run(
        &app_files(&dirs),
        Path::new(normal),
        manager,
        &mut |p, m| log.line(p, m),
    ) {
        true => ExitCode::SUCCESS,
        false => ExitCode::FAILURE,
    }
}

/// What the journal gets for an app file that gave no units, and why.
fn skipped(why: &dyn std::fmt::Display, file: &Path) -> String {
    format!(
        "{why}\nskipped `{}`: no units generated from it",
        file.display()
    )
}

/// Renders and writes every file into `out`; `log(priority, message)` reports. Returns
/// false if any file failed. Files are independent: each is written on its own.
pub fn run(files: &[PathBuf], out: &Path, manager: Manager, log: &mut dyn FnMut(u8, &str)) -> bool {
    let opts = super::generate::parse_options(None, manager);
    let dir = UnitDir::new(out.to_path_buf());
    let cores = super::generate::usable_cores();
    let mut ok = true;
    let mut seen: BTreeMap<String, PathBuf> = BTreeMap::new();
    for file in files {
        let parsed = match config::load(file, &opts) {
            Ok(parsed) => parsed,
            Err(e) => {
                log(3, &skipped(&e, file));
                ok = false;
                continue;
            }
        };
        for w in parsed.warnings.warnings() {
            log(4, &w.to_string());
        }
        let spec = parsed.spec;
        if let Some(first) = seen.get(spec.name.as_str()) {
            log(
                3,
                &format!(
                    "`{}` defines the app `{}` again (first defined in `{}`); skipped",
                    file.display(),
                    spec.name,
                    first.display()
                ),
            );
            ok = false;
            continue;
        }
        seen.insert(spec.name.to_string(), file.clone());
        let count = crate::install::read_scale(manager, spec.name.as_str())
            .unwrap_or_else(|| spec.instances.resolve(cores));
        let mut rendered = match render::render(&spec, count, manager, Flavor::Generator) {
            Ok(rendered) => rendered,
            Err(e) => {
                log(3, &skipped(&e, file));
                ok = false;
                continue;
            }
        };
        // Each slot linked at the generation that runs (a surge reload moves them).
        let generations = crate::install::read_generations(manager, spec.name.as_str());
        rendered.links = crate::names::UnitNames::new(spec.name.as_str())
            .links_at(&rendered.links, &generations);
        if let Err(e) = dir.write(std::slice::from_ref(&rendered)) {
            log(
                3,
                &format!("cannot write the units of `{}`: {e}", spec.name),
            );
            ok = false;
        }
    }
    ok
}
