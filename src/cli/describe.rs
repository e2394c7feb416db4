//! `sysmgr describe NAME [--json]`: where an app comes from and what it is made of, like
//! `pm2 describe`: the app file its units were generated from, the unit files and their
//! paths, the instance count (wanted and running), its health check as systemd loaded it,
//! and how its last reload went, from
//! sysmgr's own entries in the journal (`sysmgr history`).

use std::fmt::Write as _;
use std::process::{Command, ExitCode};

use clap::Args;
use serde_json::{json, Value};

use super::lifecycle;
use crate::install::UnitDir;
use crate::journal::history;
use crate::reload::engine::human;
use crate::reload::health::{self, Probe};
use crate::systemd::dbus::Systemd;
use crate::systemd::Manager;

#[derive(Debug, Args)]
pub struct DescribeArgs {
    /// The app.
    #[arg(value_name = "NAME")]
    pub name: String,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &DescribeArgs, manager: Manager) -> anyhow::Result<ExitCode> {
    let name = lifecycle::app_name(&args.name)?;
    let dir = crate::controller::unit_dir(manager)?;
    let app = crate::controller::find(&dir, manager, &name)?;
    let unit_dir = match (app.from_generator, manager.generator_dir()) {
        (true, Some(generated)) => UnitDir::new(generated),
        _ => dir,
    };
    let files = unit_dir.app_files(&name)?;
    let (status, health) = lifecycle::runtime()?.block_on(async {
        let sd = Systemd::connect(manager).await?;
        let status = crate::controller::status::collect(&sd, std::slice::from_ref(&app)).await?;
        // The check as systemd loaded it: what the next reload asks.
        let health = match app.instances.first() {
            Some(&i) => {
                let unit = crate::names::UnitNames::new(&name).unit_of(i, &app.generations);
                sd.service_state(&unit)
                    .await
                    .ok()
                    .and_then(|s| health::Check::of(&s))
            }
            None => None,
        };
        anyhow::Ok((status, health))
    })?;
    let running = status.first().map_or(0, |s| {
        s.instances
            .iter()
            .filter(|i| i.active_state == "active")
            .count()
    });
    let reload = last_reload(&name, manager);
    let source = app.source.as_ref().map(|s| s.display().to_string());
    let made_by = if app.from_generator {
        "sysmgr's systemd generator"
    } else {
        "sysmgr start/generate"
    };
    if args.json {
        let value = json!({
            "name": name,
            "source": source,
            "unit_dir": unit_dir.path().display().to_string(),
            "from_generator": app.from_generator,
            "unit_files": files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>(),
            "wanted": app.instances.len(),
            "running": running,
            "health_check": health.as_ref().map_or(Value::Null, |h| {
                let (path, unit) = match &h.probe {
                    Probe::Http { path, .. } => (Some(path), None),
                    Probe::Unit(unit) => (None, Some(unit)),
                };
                json!({
                    "path": path,
                    "command_unit": unit,
                    "timeout_ms": h.timeout.as_millis(),
                })
            }),
            "last_reload": reload.as_ref().map(history::Row::to_json).unwrap_or(Value::Null),
        });
        lifecycle::print_stdout(&format!("{value:#}\n"))?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = String::new();
    let _ = writeln!(out, "app          {name}");
    let _ = writeln!(
        out,
        "app file     {}",
        source.as_deref().unwrap_or("(not recorded)")
    );
    let _ = writeln!(
        out,
        "units        {} (written by {made_by})",
        unit_dir.path().display()
    );
    for (i, f) in files.iter().enumerate() {
        let label = if i == 0 { "unit files" } else { "" };
        let _ = writeln!(out, "{label:<12} {}", f.display());
    }
    let _ = writeln!(
        out,
        "instances    {} wanted, {running} running",
        app.instances.len()
    );
    let health = match &health {
        Some(h) => {
            let within = human(h.timeout);
            match &h.probe {
                Probe::Http { path, .. } => {
                    format!(
                        "GET {path} on each new instance's own socket, 2xx or 3xx within {within}"
                    )
                }
                Probe::Unit(unit) => format!("`{unit}` (a command) exits 0 within {within}"),
            }
        }
        None => "none (`health_check` in the app file)".into(),
    };
    let _ = writeln!(out, "health check {health}");
    let reload = match &reload {
        Some(row) => {
            let details = row.details();
            let details = if details.is_empty() {
                String::new()
            } else {
                format!(": {details}")
            };
            format!(
                "{} by {}, {} ({}){details}",
                history::local_time(row.realtime_usec),
                row.who(),
                row.get("outcome"),
                row.duration(),
            )
        }
        None => "none recorded (`sysmgr history` reads sysmgr's entries in the journal)".into(),
    };
    let _ = writeln!(out, "last reload  {reload}");
    lifecycle::print_stdout(&out)?;
    Ok(ExitCode::SUCCESS)
}

/// The last reload in sysmgr's journal entries, if journald has any (best effort: without
/// journalctl, `describe` still says the rest).
fn last_reload(name: &str, manager: Manager) -> Option<history::Row> {
    let out = Command::new("journalctl")
        .args(history::journalctl_args(name, manager, 1))
        .arg(format!("{}=reload", crate::journal::fields::ACTION))
        .output()
        .ok()?;
    history::parse(&String::from_utf8_lossy(&out.stdout)).pop()
}
