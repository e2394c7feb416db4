//! sysmgr: run multi-process web services natively on systemd.
//!
//! The library is the binary's engine, split by layer: [`config`] turns app.toml into a validated
//! [`config::AppSpec`], [`render`] turns that into unit texts (a pure function), [`install`]
//! writes them atomically into a unit directory, and [`systemd`] speaks to systemd: its
//! unit-file syntax and its D-Bus API. [`controller`] is what can be done to an installed app
//! (opened under its [`lock`]), and [`cli`] is the command line on top. What sysmgr did is
//! recorded in systemd's journal ([`journal`]).

pub mod cli;
pub mod config;
pub mod controller;
pub mod deploy;
pub mod host;
pub mod install;
pub mod journal;
pub mod lock;
pub mod names;
pub mod node;
pub mod reload;
pub mod render;
pub mod systemd;

/// What kind of failure an error is; the command line turns it into the exit code
/// (`cli::exit`). Ordered by precedence: when a chain of causes holds several, the highest
/// wins (a reload that halted because systemd went away is a systemd failure).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ErrorClass {
    /// The command ran but the outcome failed, or the machine around it did (I/O): exit 1.
    Failed,
    /// The input was wrong (bad app file, bad arguments); nothing was changed: exit 2.
    Invalid,
    /// systemd could not be reached or refused (not running, permission denied): exit 3.
    Systemd,
}

/// An error type that declares its [`ErrorClass`]: every layer's error enum, so that the exit
/// code is chosen by type, never by message text.
pub trait Classify: std::error::Error {
    /// The class of this error (for an enum, of this variant).
    fn class(&self) -> ErrorClass;
}
