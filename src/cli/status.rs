//! `sysmgr status NAME [--json]`: per instance its state, PID, uptime, restarts, memory and
//! CPU time, read from systemd's unit properties. [`collect`] is shared with `sysmgr list`:
//! one `ListUnitsByPatterns` for all apps, then two `GetAll` per instance, all concurrent.

use std::collections::BTreeSet;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Args;
use serde::Serialize;

use super::lifecycle;
use crate::install::InstalledApp;
use crate::names::UnitNames;
use crate::reload::engine::human;
use crate::render::Manager;
use crate::systemd::dbus::{DbusError, ServiceState, Systemd};

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The app.
    #[arg(value_name = "NAME")]
    pub name: String,
    /// Print JSON for scripts instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// One app's state.
#[derive(Debug, Serialize)]
pub(crate) struct AppStatus {
    pub name: String,
    /// The app file the units were generated from.
    pub source: Option<String>,
    /// `ActiveState` of `NAME.target`.
    pub target: String,
    /// How many instances the target starts (the persisted scale).
    pub wanted: usize,
    pub instances: Vec<InstanceStatus>,
}

/// One instance's state.
#[derive(Debug, Serialize)]
pub(crate) struct InstanceStatus {
    pub instance: u32,
    pub unit: String,
    /// Linked into `NAME.target.wants/` (false: running beyond the persisted count).
    pub wanted: bool,
    pub active_state: String,
    pub sub_state: String,
    pub pid: Option<u32>,
    pub uptime_secs: Option<u64>,
    pub restarts: u32,
    pub memory_bytes: Option<u64>,
    pub cpu_nsec: Option<u64>,
    /// systemd's `Result` of the last run: success, exit-code, signal, timeout...
    pub result: String,
}

impl InstanceStatus {
    fn new(instance: u32, wanted: bool, s: ServiceState, now_usec: u64) -> Self {
        let running = s.is_running();
        Self {
            instance,
            wanted,
            pid: (s.main_pid != 0).then_some(s.main_pid),
            uptime_secs: (running && s.active_enter_usec != 0)
                .then(|| now_usec.saturating_sub(s.active_enter_usec) / 1_000_000),
            restarts: s.n_restarts,
            memory_bytes: s.memory_bytes,
            cpu_nsec: s.cpu_nsec,
            result: s.result,
            active_state: s.active_state,
            sub_state: s.sub_state,
            unit: s.unit,
        }
    }
}

/// The state of every instance of `apps`: the wanted ones and any other that runs.
pub(crate) async fn collect(
    sd: &Systemd,
    apps: &[InstalledApp],
) -> Result<Vec<AppStatus>, DbusError> {
    let patterns: Vec<String> = apps
        .iter()
        .map(|a| UnitNames::new(&a.name).instance_pattern())
        .collect();
    let loaded = if patterns.is_empty() {
        Vec::new()
    } else {
        sd.list_units(&patterns).await?
    };
    let now_usec = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros() as u64;
    let per_app = apps.iter().map(|app| {
        let wanted: BTreeSet<u32> = app.instances.iter().copied().collect();
        let mut all = wanted.clone();
        all.extend(
            loaded
                .iter()
                .filter(|u| lifecycle::is_up(u))
                .filter_map(|u| lifecycle::instance_of(&app.name, &u.name)),
        );
        let all: Vec<u32> = all.into_iter().collect();
        async move {
            let target = UnitNames::new(&app.name).target();
            let (target, states) = futures_util::future::try_join(
                sd.active_state(&target),
                lifecycle::instance_states(sd, &app.name, &all),
            )
            .await?;
            Ok::<_, DbusError>(AppStatus {
                name: app.name.clone(),
                source: app.source.as_ref().map(|p| p.display().to_string()),
                target: target.0,
                wanted: wanted.len(),
                instances: states
                    .into_iter()
                    .zip(&all)
                    .map(|(s, &i)| InstanceStatus::new(i, wanted.contains(&i), s, now_usec))
                    .collect(),
            })
        }
    });
    futures_util::future::try_join_all(per_app).await
}

/// The instances as a table, one row each.
pub(crate) fn table(apps: &[AppStatus]) -> String {
    let mut rows = vec![[
        "APP", "INSTANCE", "STATE", "PID", "UPTIME", "RESTARTS", "MEMORY", "CPU",
    ]
    .map(String::from)];
    for app in apps {
        for i in &app.instances {
            rows.push([
                app.name.clone(),
                format!("{}{}", i.instance, if i.wanted { "" } else { "*" }),
                format!("{}/{}", i.active_state, i.sub_state),
                i.pid.map_or("-".into(), |p| p.to_string()),
                i.uptime_secs.map_or("-".into(), uptime),
                i.restarts.to_string(),
                i.memory_bytes.map_or("-".into(), bytes),
                i.cpu_nsec
                    .map_or("-".into(), |n| human(Duration::from_nanos(n))),
            ]);
        }
    }
    let widths: Vec<usize> = (0..8)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

fn uptime(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{}s", s / 60, s % 60),
        s if s < 86_400 => format!("{}h{}m", s / 3600, s % 3600 / 60),
        s => format!("{}d{}h", s / 86_400, s % 86_400 / 3600),
    }
}

fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

pub fn run(args: &StatusArgs, manager: Manager) -> anyhow::Result<ExitCode> {
    let name = lifecycle::app_name(&args.name)?;
    let dir = lifecycle::unit_dir(manager)?;
    let app = lifecycle::installed(&dir, manager, &name)?;
    let status = lifecycle::runtime()?.block_on(async {
        let sd = Systemd::connect(manager).await?;
        collect(&sd, std::slice::from_ref(&app)).await
    })?;
    let status = status
        .into_iter()
        .next()
        .expect("one app asked, one app answered");
    let text = if args.json {
        serde_json::to_string_pretty(&status)? + "\n"
    } else {
        format!(
            "{}: {}, {} wanted{}\n{}",
            status.name,
            status.target,
            lifecycle::instances_word(status.wanted),
            status
                .source
                .as_deref()
                .map(|s| format!(", from {s}"))
                .unwrap_or_default(),
            table(std::slice::from_ref(&status))
        )
    };
    lifecycle::print_stdout(&text)?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_uptimes_read_naturally() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(3 * 1024 * 1024 + 300 * 1024), "3.3 MiB");
        assert_eq!(uptime(59), "59s");
        assert_eq!(uptime(3 * 60 + 5), "3m5s");
        assert_eq!(uptime(2 * 3600 + 60), "2h1m");
        assert_eq!(uptime(3 * 86_400 + 7200), "3d2h");
    }
}
