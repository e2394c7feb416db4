//! `sysmgr status NAME [--json]`: per instance its state, PID, uptime, restarts, memory and
//! CPU time, read from systemd's unit properties by [`crate::controller::status::collect`]
//! (shared with `sysmgr list`); this file prints them.
//!
//! Like `systemctl is-system-running`, which says `degraded` and exits 1 when a unit failed,
//! `sysmgr status` exits 1 ([`super::exit::FAILED`]) when an instance or a socket of the app
//! is `failed`, after printing the status as usual; a running or stopped app exits 0.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use super::lifecycle;
use crate::controller::{self, status::AppStatus, timers::Timers};
use crate::journal::{history, Action};
use crate::reload::engine::human;
use crate::systemd::dbus::Systemd;
use crate::systemd::Manager;

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The app.
    #[arg(value_name = "NAME")]
    pub name: String,
    /// Print JSON for scripts instead of a table.
    #[arg(long)]
    pub json: bool,
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

pub(crate) fn uptime(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{}s", s / 60, s % 60),
        s if s < 86_400 => format!("{}h{}m", s / 3600, s % 3600 / 60),
        s => format!("{}d{}h", s / 86_400, s % 86_400 / 3600),
    }
}

pub(crate) fn bytes(n: u64) -> String {
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
    let dir = controller::unit_dir(manager)?;
    let app = controller::find(&dir, manager, &name)?;
    // Which timers the app has: two stats, not another read of the unit directory.
    let names = crate::names::UnitNames::new(&name);
    let files: Vec<String> = [names.cron_timer(), names.memory_timer()]
        .into_iter()
        .filter(|f| dir.path().join(f).is_file())
        .collect();
    let (status, timers) = lifecycle::runtime()?.block_on(async {
        let sd = Systemd::connect(manager).await?;
        futures_util::future::try_join(
            controller::status::collect(&sd, std::slice::from_ref(&app)),
            controller::timers::collect(&sd, &name, &files),
        )
        .await
    })?;
    let status = status
        .into_iter()
        .next()
        .expect("one app asked, one app answered");
    // The last graceful memory restart, from sysmgr's entries in the journal.
    let last_restart = timers
        .memory_limit
        .as_ref()
        .and_then(|_| last_entry(&name, manager, Action::MemoryRestart));
    let text = if args.json {
        let mut json = serde_json::to_value(&status)?;
        json["cron_restart"] = serde_json::to_value(&timers.cron_restart)?;
        json["memory_limit"] = serde_json::to_value(&timers.memory_limit)?;
        if let Some(limit) = json["memory_limit"].as_object_mut() {
            limit.insert(
                "last_restart".into(),
                last_restart
                    .as_ref()
                    .map_or(serde_json::Value::Null, history::Row::to_json),
            );
        }
        serde_json::to_string_pretty(&json)? + "\n"
    } else {
        format!(
            "{}: {}{}, {} wanted{}\n{}{}",
            status.name,
            status.state,
            failed_list(&status),
            lifecycle::instances_word(status.wanted),
            status
                .source
                .as_deref()
                .map(|s| format!(", from {s}"))
                .unwrap_or_default(),
            table(std::slice::from_ref(&status)),
            timer_lines(&timers, last_restart.as_ref(), now_usec()),
        )
    };
    lifecycle::print_stdout(&text)?;
    if status.degraded() {
        return Ok(ExitCode::from(super::exit::FAILED));
    }
    Ok(ExitCode::SUCCESS)
}

fn now_usec() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros() as u64
}

/// The app's last journal entry of `action` (best effort: without journalctl, none).
fn last_entry(name: &str, manager: Manager, action: Action) -> Option<history::Row> {
    let out = std::process::Command::new("journalctl")
        .args(history::journalctl_args(name, manager, 1))
        .arg(format!(
            "{}={}",
            crate::journal::fields::ACTION,
            action.as_str()
        ))
        .output()
        .ok()?;
    history::parse(&String::from_utf8_lossy(&out.stdout)).pop()
}

/// A time as `2026-12-02 03:00:00 (in 5s)` or `(12s ago)`.
fn when(usec: u64, now_usec: u64) -> String {
    let relative = if usec >= now_usec {
        format!("in {}", uptime((usec - now_usec).div_ceil(1_000_000)))
    } else {
        format!("{} ago", uptime((now_usec - usec) / 1_000_000))
    };
    format!("{} ({relative})", history::local_time(usec))
}

/// The lines under the table for `cron_restart` and the graceful memory limit.
fn timer_lines(timers: &Timers, last_restart: Option<&history::Row>, now: u64) -> String {
    let mut out = String::new();
    if let Some(cron) = &timers.cron_restart {
        let next = cron
            .next_run_usec
            .map_or("none (the timer is stopped)".into(), |t| when(t, now));
        let last = match (cron.last_run_usec, &cron.last_result) {
            (Some(t), Some(result)) => format!("{}, {result}", when(t, now)),
            _ => "never".into(),
        };
        out.push_str(&format!(
            "cron_restart: {} ({}): next {next}; last {last}\n",
            cron.on_calendar.join(", "),
            cron.timer
        ));
    }
    if let Some(memory) = &timers.memory_limit {
        let limit = memory.limit_bytes.map_or("?".into(), bytes);
        let check = memory
            .last_check_usec
            .map_or("not yet".into(), |t| when(t, now));
        let restart = last_restart.map_or("none".into(), |row| {
            format!(
                "{}, {}: {}",
                when(row.realtime_usec, now),
                row.get("outcome"),
                row.details()
            )
        });
        out.push_str(&format!(
            "max_memory_restart: {limit}, graceful ({}, last check {check}); last restart {restart}\n",
            memory.timer
        ));
    }
    out
}

/// ` (failed: a, b)` for a degraded app, else nothing.
pub(crate) fn failed_list(status: &AppStatus) -> String {
    let failed = status.failed_units();
    if failed.is_empty() {
        return String::new();
    }
    let units: Vec<String> = failed.iter().map(|u| format!("`{u}`")).collect();
    format!(" (failed: {})", units.join(", "))
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
