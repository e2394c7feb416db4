//! What the rollout needs from a service manager, as a small trait.
//!
//! The engine only restarts units (and starts a health check's oneshot), reads their state, clears failed state and reads a few
//! log lines. [`Systemd`] (the zbus client) is the implementation sysmgr ships; the engine's
//! unit tests use a scripted fake, and the integration tests run the real one against a real
//! systemd.

use std::process::Command;
use std::time::Duration;

use crate::systemd::dbus::{DbusError, JobEnd, JobKind, JobMode, JobResult, ServiceState, Systemd};
use crate::systemd::Manager;

/// How a restart job ended, as far as the controller saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobOutcome {
    /// systemd removed the job with this result.
    Finished(JobResult),
    /// systemd had not finished the job when the controller's own wait ran out.
    GaveUp(Duration),
    /// The job is gone, but how it ended was not seen: the connection to systemd was lost
    /// while it ran (`daemon-reexec`). The unit's state tells whether it restarted.
    Unobserved,
}

/// The operations the rollout performs on units.
///
/// Futures are not `Send`: the controller runs on a current-thread runtime.
#[allow(async_fn_in_trait)]
pub trait Units {
    /// The unit's state now.
    async fn state(&self, unit: &str) -> Result<ServiceState, DbusError>;
    /// Clears the unit's failed state and start-rate counter (the crash-loop brake's streak).
    async fn reset_failed(&self, unit: &str) -> Result<(), DbusError>;
    /// Restarts the unit and waits for the job to end, at most `wait` (`None`: as long as
    /// systemd takes).
    async fn restart(&self, unit: &str, wait: Option<Duration>) -> Result<JobOutcome, DbusError>;
    /// Starts the unit and waits for the job to end, at most `wait` (`None`: as long as
    /// systemd takes; a oneshot: until its command exits, `Type=notify`: until `READY=1`).
    async fn start(&self, unit: &str, wait: Option<Duration>) -> Result<JobOutcome, DbusError>;
    /// Stops the unit and waits for the job to end.
    async fn stop(&self, unit: &str) -> Result<JobResult, DbusError>;
    /// The last `lines` lines the unit logged, oldest first; empty if unavailable.
    async fn journal(&self, unit: &str, lines: usize) -> Vec<String>;
}

impl Units for Systemd {
    async fn state(&self, unit: &str) -> Result<ServiceState, DbusError> {
        self.service_state(unit).await
    }

    async fn reset_failed(&self, unit: &str) -> Result<(), DbusError> {
        self.reset_failed_unit(unit).await?;
        forget_streak(self.manager(), unit);
        Ok(())
    }

    async fn restart(&self, unit: &str, wait: Option<Duration>) -> Result<JobOutcome, DbusError> {
        job(self, JobKind::Restart, unit, wait).await
    }

    async fn start(&self, unit: &str, wait: Option<Duration>) -> Result<JobOutcome, DbusError> {
        job(self, JobKind::Start, unit, wait).await
    }

    async fn stop(&self, unit: &str) -> Result<JobResult, DbusError> {
        match self
            .run_job(JobKind::Stop, unit, JobMode::Replace, None)
            .await?
        {
            JobEnd::Removed(result) => Ok(result),
            // Not seen: the unit's state says whether it stopped.
            JobEnd::Unobserved | JobEnd::GaveUp(_) => {
                let state = self.service_state(unit).await?;
                Ok(if state.active_state.is_up() {
                    JobResult::Failed
                } else {
                    JobResult::Done
                })
            }
        }
    }

    async fn journal(&self, unit: &str, lines: usize) -> Vec<String> {
        journal_tail(self.manager(), unit, lines)
    }
}

/// Runs a start or restart job and follows it to its end (by signal, and by polling when
/// the connection is lost), at most `wait`.
async fn job(
    sd: &Systemd,
    kind: JobKind,
    unit: &str,
    wait: Option<Duration>,
) -> Result<JobOutcome, DbusError> {
    Ok(
        match sd.run_job(kind, unit, JobMode::Replace, wait).await? {
            JobEnd::Removed(result) => JobOutcome::Finished(result),
            JobEnd::GaveUp(after) => JobOutcome::GaveUp(after),
            JobEnd::Unobserved => JobOutcome::Unobserved,
        },
    )
}

/// Forgets the crash-loop brake's streak of `unit` (`config::brake`), so that a restart the
/// rollout asks for is not refused for the crashes before it. systemd keeps the file across
/// restarts, manual ones too; there is none when the unit is stopped, or is not an instance.
fn forget_streak(manager: Manager, unit: &str) {
    if let Some(runtime_dir) = manager.runtime_dir() {
        let _ = std::fs::remove_file(crate::config::brake::file(&runtime_dir, unit));
    }
}

/// The last `lines` journal lines of `unit`, by running `journalctl` (the journal has no
/// D-Bus API). Only used on the failure path, so blocking for a moment is fine.
pub fn journal_tail(manager: Manager, unit: &str, lines: usize) -> Vec<String> {
    let mut cmd = Command::new("journalctl");
    match manager {
        Manager::System => cmd.arg("--unit"),
        Manager::User => cmd.arg("--user-unit"),
    };
    cmd.args([
        unit,
        "--lines",
        &lines.to_string(),
        "--no-pager",
        "--output",
        "cat",
    ]);
    match cmd.output() {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.is_empty() && *l != "-- No entries --")
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
}
