//! The integration tests: one binary, one module per area. Tests that need systemd boot a
//! private one (see `support`); they run as root on a machine with systemd installed.

mod support;

mod argv_env_property;
mod cli;
mod demo;
mod deploy;
mod hardening;
mod health;
mod history;
mod lifecycle;
mod logs;
mod monit;
mod ops;
mod package;
mod pm2;
mod production;
mod reload;
mod reload_faults;
mod render;
mod sandbox;
mod socket;
mod surge;
mod systemd_units;
mod timers;
mod user_manager;
mod worker_systemd;
