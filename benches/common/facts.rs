//! The machine facts both benchmarks record at the top of a run (`benches/list`,
//! `benches/reload`). Shared as a file (`#[path = "../common/facts.rs"] mod facts;`), like
//! `table.rs`.

use std::process::Command;

/// A file's contents, trimmed; `unknown` when it cannot be read.
pub fn read(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// The CPU's model name, from `/proc/cpuinfo`; `unknown` without one.
pub fn cpu_model() -> String {
    read("/proc/cpuinfo")
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map_or_else(|| "unknown".into(), |s| s.trim().to_string())
}

/// Now, as `2026-12-02 04:09 UTC`; empty if `date` cannot run.
pub fn utc_now() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}
