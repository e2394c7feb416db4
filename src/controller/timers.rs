//! The state of an app's timers, as `sysmgr status` shows it: `cron_restart`'s
//! (`NAME-cron.timer`: next and last run, the last run's result) and the graceful
//! `max_memory_restart` check's (`NAME-memory.timer`: the limit, the last check). Read
//! without the lock, like [`super::status`].

use serde::Serialize;

use crate::names::{UnitNames, MEMORY_CHECK_COMMAND};
use crate::systemd::dbus::{DbusError, Systemd};

/// `cron_restart`'s timer.
#[derive(Debug, Clone, Serialize)]
pub struct CronStatus {
    /// `NAME-cron.timer`.
    pub timer: String,
    /// Its `ActiveState`: `active` while it waits for the next run.
    pub state: String,
    /// The schedule, as systemd normalized it (`OnCalendar=`).
    pub on_calendar: Vec<String>,
    /// When it runs next, µs since the epoch; null when it will not (the app is stopped).
    pub next_run_usec: Option<u64>,
    /// When it last ran, µs since the epoch; null when never.
    pub last_run_usec: Option<u64>,
    /// systemd's `Result` of the last run of `NAME-cron.service` (`success`, `exit-code`:
    /// the reload halted); null when it never ran.
    pub last_result: Option<String>,
}

/// The graceful `max_memory_restart` check.
#[derive(Debug, Clone, Serialize)]
pub struct MemoryLimitStatus {
    /// `NAME-memory.timer`.
    pub timer: String,
    /// Its `ActiveState`.
    pub state: String,
    /// The limit the check restarts instances above, in bytes (from the check's command).
    pub limit_bytes: Option<u64>,
    /// When the check last ran, µs since the epoch.
    pub last_check_usec: Option<u64>,
}

/// An app's timers; each `None` when the app has no such timer.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Timers {
    pub cron_restart: Option<CronStatus>,
    pub memory_limit: Option<MemoryLimitStatus>,
}

/// The state of the timers of `app` that `files` (its unit file names) include.
pub async fn collect(sd: &Systemd, app: &str, files: &[String]) -> Result<Timers, DbusError> {
    let names = UnitNames::new(app);
    let has = |unit: &str| files.iter().any(|f| f == unit);
    let mut timers = Timers::default();
    if has(&names.cron_timer()) {
        let (timer, service) = futures_util::future::try_join(
            sd.timer_state(&names.cron_timer()),
            sd.service_state(&names.cron_service()),
        )
        .await?;
        timers.cron_restart = Some(CronStatus {
            timer: timer.unit,
            state: timer.active_state.to_string(),
            on_calendar: timer.calendar,
            next_run_usec: timer.next_elapse_usec,
            last_run_usec: timer.last_trigger_usec,
            last_result: timer.last_trigger_usec.map(|_| service.result.to_string()),
        });
    }
    if has(&names.memory_timer()) {
        let (timer, exec) = futures_util::future::try_join(
            sd.timer_state(&names.memory_timer()),
            sd.exec_start(&names.memory_service()),
        )
        .await?;
        timers.memory_limit = Some(MemoryLimitStatus {
            timer: timer.unit,
            state: timer.active_state.to_string(),
            limit_bytes: exec.iter().find_map(|argv| limit_of(argv)),
            last_check_usec: timer.last_trigger_usec,
        });
    }
    Ok(timers)
}

/// The `--limit` of a `sysmgr memory-check NAME --limit BYTES` command line.
fn limit_of(argv: &[String]) -> Option<u64> {
    if !argv.iter().any(|a| a == MEMORY_CHECK_COMMAND) {
        return None;
    }
    let at = argv.iter().position(|a| a == "--limit")?;
    argv.get(at + 1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_is_read_from_the_check_command() {
        let argv = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
        assert_eq!(
            limit_of(&argv(
                "/usr/bin/sysmgr --user memory-check web --limit 314572800"
            )),
            Some(314_572_800)
        );
        assert_eq!(limit_of(&argv("/usr/bin/sysmgr reload web")), None);
        assert_eq!(limit_of(&argv("/usr/bin/sysmgr memory-check web")), None);
    }
}
