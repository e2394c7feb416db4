//! `sysmgr check FILE...`: validate app files and print the settings they resolve to.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::config::{AppSpec, ParseOptions, SocketMode};
use crate::render::Manager;

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The app files to check.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Merge `[env_PROFILE]` over `[env]` before printing.
    #[arg(long, value_name = "PROFILE")]
    pub env: Option<String>,
}

pub fn run(args: &CheckArgs, manager: Manager) -> anyhow::Result<ExitCode> {
    let opts = ParseOptions {
        profile: args.env.clone(),
        user_manager: manager == Manager::User,
    };
    let specs = super::generate::load_all(&args.files, &opts, "fix them and check again")?;
    let cores = super::generate::usable_cores();
    for spec in &specs {
        print!("{}", describe(spec, cores));
    }
    Ok(ExitCode::SUCCESS)
}

/// The resolved settings of one app, each with the unit setting it becomes.
pub(crate) fn describe(spec: &AppSpec, cores: std::num::NonZeroUsize) -> String {
    let mut rows: Vec<(&str, String, String)> = Vec::new();
    let mut row = |key: &'static str, value: String, unit: &str| {
        rows.push((key, value, unit.to_string()));
    };
    let name = spec.name.as_str();
    row(
        "name",
        name.into(),
        &format!("{name}@.service {name}.target"),
    );
    if let Some(d) = &spec.description {
        row("description", d.clone(), "Description=");
    }
    row("command", format!("{:?}", spec.command), "ExecStart=");
    row("cwd", spec.cwd.display().to_string(), "WorkingDirectory=");
    if let Some(u) = &spec.user {
        row("user", u.clone(), "User=");
    }
    if let Some(g) = &spec.group {
        row("group", g.clone(), "Group=");
    }
    let n = spec.instances.resolve(cores);
    row(
        "instances",
        format!("{n} ({})", spec.instances),
        &format!("{name}.target.wants/{name}@1..{n}.service"),
    );
    row("instance_var", spec.instance_var.clone(), "Environment=");
    let socket_unit = match spec.socket_mode {
        SocketMode::Shared => format!("{name}.socket"),
        SocketMode::PerInstance => format!("{name}@.socket"),
    };
    row("socket", spec.socket_mode.as_str().into(), &socket_unit);
    for l in &spec.listen {
        row(
            "listen",
            format!("{} (name `{}`)", l.address, l.name),
            "ListenStream=",
        );
    }
    row(
        "wait_ready",
        spec.wait_ready.to_string(),
        if spec.wait_ready {
            "Type=notify"
        } else {
            "Type=exec"
        },
    );
    row(
        "listen_timeout",
        spec.listen_timeout.to_string(),
        "TimeoutStartSec=",
    );
    row(
        "kill_timeout",
        spec.kill_timeout.to_string(),
        "TimeoutStopSec=",
    );
    row("kill_signal", spec.kill_signal.name().into(), "KillSignal=");
    row("autorestart", spec.autorestart.to_string(), "Restart=");
    if let Some(d) = spec.restart_delay {
        row("restart_delay", d.to_string(), "RestartSec=");
    }
    row(
        "max_restarts",
        spec.max_restarts.to_string(),
        "StartLimitBurst=",
    );
    if let Some(m) = spec.max_memory_restart {
        row("max_memory_restart", m.get().to_string(), "MemoryMax=");
    }
    if !spec.stop_exit_codes.is_empty() {
        row(
            "stop_exit_codes",
            format!("{:?}", spec.stop_exit_codes),
            "RestartPreventExitStatus=",
        );
    }
    if let Some(w) = spec.watchdog {
        row("watchdog", w.to_string(), "WatchdogSec=");
    }
    row("systemd_version", spec.systemd_version.to_string(), "");
    for (k, v) in &spec.env {
        row("env", format!("{k}={v:?}"), "Environment=");
    }
    let mut out = format!("{} (from {}", name, spec.source.display());
    if let Some(p) = &spec.profile {
        let _ = write!(out, " with --env {p}");
    }
    out.push_str("): ok\n");
    let width = rows.iter().map(|(k, _, _)| k.len()).max().unwrap_or(0);
    let vwidth = rows
        .iter()
        .map(|(_, v, _)| v.chars().count())
        .max()
        .unwrap_or(0)
        .min(48);
    for (k, v, unit) in rows {
        let line = format!("  {k:<width$}  {v:<vwidth$}  {unit}");
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}
