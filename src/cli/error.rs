//! What the command line itself refuses or fails at, before or around the layers below:
//! arguments and app names, files that exist, apps defined twice, counts out of range.

use std::path::PathBuf;

use crate::config::types::MAX_INSTANCES;
use crate::{Classify, ErrorClass};

/// An error of the command line. Every variant but [`CliError::Journalctl`] is bad input:
/// nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// An app name given on the command line is not valid.
    #[error("`{name}` is not a valid app name: it {reason}")]
    AppName {
        /// The name given.
        name: String,
        /// What is wrong with it (`AppName::parse`'s message).
        reason: String,
    },
    /// The name given to `sysmgr init` is not valid.
    #[error("the app name {reason}")]
    NewAppName {
        /// The name given.
        name: String,
        /// What is wrong with it (`AppName::parse`'s message, which quotes the name).
        reason: String,
    },
    /// `sysmgr init` would overwrite a file.
    #[error("`{}` exists; choose another name with --output, or replace it with --force", path.display())]
    InitExists {
        /// The file.
        path: PathBuf,
    },
    /// `sysmgr import` would overwrite an app file.
    #[error("`{}` exists; move it away or pass --force; nothing was written", path.display())]
    ImportExists {
        /// The app file.
        path: PathBuf,
    },
    /// An app file made by `sysmgr import` does not pass the checks.
    #[error("the app file made for `{app}` has errors; nothing was written")]
    Imported {
        /// The app.
        app: String,
    },
    /// Some of the app files given have errors (printed before).
    #[error(
        "{} of {total} app files {} errors ({}); {consequence}",
        failed.len(),
        if failed.len() == 1 { "has" } else { "have" },
        failed.join(", ")
    )]
    AppFiles {
        /// The files with errors, as named.
        failed: Vec<String>,
        /// How many files were given.
        total: usize,
        /// What did not happen because of the errors.
        consequence: String,
    },
    /// Two app files (or apps of ecosystem files) define the same app.
    #[error("`{}` and `{}` both define the app `{app}`; app names must be unique; {consequence}", first.display(), second.display())]
    DuplicateApp {
        /// The app.
        app: String,
        /// The file that defines it first.
        first: PathBuf,
        /// The file that defines it again.
        second: PathBuf,
        /// What did not happen because of it.
        consequence: String,
    },
    /// `sysmgr scale` to fewer than one instance.
    #[error("cannot scale `{app}` to {wanted} instances (it has {current}); at least 1 must run; use `sysmgr stop {app}` to stop it")]
    ScaleBelowOne {
        /// The app.
        app: String,
        /// The count asked for.
        wanted: i64,
        /// The count now.
        current: u32,
    },
    /// `sysmgr scale` beyond the limit.
    #[error("cannot scale `{app}` to {wanted} instances; at most {MAX_INSTANCES} are allowed")]
    ScaleAboveMax {
        /// The app.
        app: String,
        /// The count asked for.
        wanted: i64,
    },
    /// `sysmgr delete` of an app that sysmgr's systemd generator makes from an app file.
    #[error("`{app}` comes from {} through sysmgr's systemd generator; remove that file and run `systemctl daemon-reload` (or `sysmgr stop {app}` to stop it)", app_file.as_ref().map_or_else(|| "its app file".to_string(), |s| format!("`{}`", s.display())))]
    FromGenerator {
        /// The app.
        app: String,
        /// The app file it comes from, if the units say.
        app_file: Option<PathBuf>,
    },
    /// `journalctl` ran and failed.
    #[error("`journalctl` failed ({status}): {stderr}")]
    Journalctl {
        /// How it exited.
        status: std::process::ExitStatus,
        /// What it said, trimmed.
        stderr: String,
    },
    /// An installed app whose units do not record the app file they came from.
    #[error("`{app}`'s units do not record its app file; give the file instead of the name")]
    NoSource {
        /// The app.
        app: String,
    },
    /// `sysmgr nginx` for an app with no TCP socket.
    #[error("`{app}` listens on no TCP port (only unix sockets, or none); nginx needs `listen = [\"3000\"]` or an address with a port")]
    NoTcpListen {
        /// The app.
        app: String,
    },
}

impl Classify for CliError {
    fn class(&self) -> ErrorClass {
        match self {
            Self::Journalctl { .. } => ErrorClass::Failed,
            _ => ErrorClass::Invalid,
        }
    }
}

#[cfg(test)]
mod messages;
