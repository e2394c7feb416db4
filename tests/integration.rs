//! The integration tests: one binary, one module per area. Tests that need systemd boot a
//! private one (see `support`); they run as root on a machine with systemd installed.

mod support;

mod cli;
mod demo;
mod hardening;
mod history;
mod lifecycle;
mod logs;
mod monit;
mod ops;
mod package;
mod pm2;
mod production;
mod reload;
mod render;
mod sandbox;
mod surge;
mod systemd_units;
mod user_manager;
mod worker_systemd;
