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
pub mod install;
pub mod journal;
pub mod lock;
pub mod names;
pub mod node;
pub mod reload;
pub mod render;
pub mod systemd;

/// Input that sysmgr refuses (bad arguments, bad names): nothing was changed. Maps to exit
/// code 2, like a bad app file.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);
