//! The rollout engine: drives the [`Planner`] with answers from a [`Units`] implementation.
//!
//! Each instance goes through two async phases, and the loop applies the planner's transition
//! when a phase finishes:
//!
//! 1. *restart*: read the state (old `InvocationID` and `MainPID`, systemd's stop and start
//!    timeouts), clear its failed state and start-rate counter, `RestartUnit` and wait for the
//!    job. The controller's own wait is `TimeoutStopUSec + TimeoutStartUSec` plus a grace, so
//!    it never gives up before systemd does. Then the unit must be active with a new
//!    invocation and a new main PID.
//! 2. *settle*: the new process must still be the active one after `min_ready`; then, when
//!    the unit has a health check ([`super::health`]), it must answer it on its own socket
//!    within the check's timeout (the *probe*).
//!
//! A failure in either phase halts the rollout: nothing new begins, the phases in flight
//! finish, and the instances never begun keep serving the previous version. The
//! [`Summary`] carries per-instance timings, so a benchmark can call [`rollout`] directly.

use std::collections::BTreeMap;
use std::fmt;
use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use futures_util::future::LocalBoxFuture;
use futures_util::stream::{FuturesUnordered, StreamExt as _};
use futures_util::FutureExt as _;

use super::health::{self, Unhealthy};
use super::plan::{Phase, Planner, Step};
use super::units::{JobOutcome, Units};
use crate::names::{Generations, UnitNames};
use crate::systemd::dbus::{
    ActiveState, DbusError, JobKind, JobResult, ServiceResult, ServiceState, SubState,
};

/// How a rollout runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// How many instances restart at the same time.
    pub parallel: NonZeroUsize,
    /// How long a new process must stay up after systemd reports it started.
    pub min_ready: Duration,
    /// How many journal lines of a failed instance to collect.
    pub journal_lines: usize,
    /// How much longer than systemd's own timeouts the controller waits for a job.
    pub grace: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            parallel: NonZeroUsize::MIN,
            min_ready: Duration::from_millis(300),
            journal_lines: 10,
            grace: Duration::from_secs(5),
        }
    }
}

/// Why an instance's restart failed.
#[derive(Debug, Clone)]
pub enum FailureReason {
    /// The job (restart, or a surge's start of the new process) ended with a result other
    /// than `done`.
    Job(JobKind, JobResult),
    /// systemd had not finished the job after its own timeouts plus the grace.
    GaveUp(JobKind, Duration),
    /// The job was done but the unit is not active.
    NotRunning {
        /// The job.
        job: JobKind,
        /// `ActiveState` after the job.
        active_state: ActiveState,
        /// `SubState` after the job.
        sub_state: SubState,
    },
    /// The job was done but the same process still runs.
    NotRestarted(JobKind),
    /// The new process stopped being the active one within the min-ready window.
    ExitedEarly {
        /// The window.
        within: Duration,
    },
    /// The new process stayed up but did not pass its health check.
    Unhealthy(Box<Unhealthy>),
    /// The connection to systemd was lost while the job ran (`daemon-reexec`), so how the
    /// job ended was not seen; afterwards the unit showed this.
    Unobserved(JobKind, Box<FailureReason>),
    /// A call to systemd failed.
    Systemd(DbusError),
    /// The new process could not be made its slot's unit (surge rollout).
    Switch(String),
}

impl fmt::Display for FailureReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Job(job, result) => write!(f, "the {job} job ended with `{result}`"),
            Self::GaveUp(job, after) => write!(
                f,
                "systemd had not finished the {job} job after {}",
                human(*after)
            ),
            Self::NotRunning {
                job,
                active_state,
                sub_state,
            } => write!(
                f,
                "the {job} job was done but the unit is `{active_state}/{sub_state}`"
            ),
            Self::NotRestarted(job) => {
                write!(f, "the {job} job was done but the old process still runs")
            }
            Self::ExitedEarly { within } => {
                write!(f, "the new process did not stay up for {}", human(*within))
            }
            Self::Unhealthy(u) => write!(f, "{u}"),
            Self::Unobserved(job, after) => write!(
                f,
                "the connection to systemd was lost while the {job} job ran, and then {}",
                after
                    .to_string()
                    .trim_start_matches(&format!("the {job} job was done but "))
            ),
            Self::Systemd(e) => write!(f, "{e}"),
            Self::Switch(why) => write!(f, "the new unit could not replace the old one: {why}"),
        }
    }
}

/// What went wrong with an instance, with what systemd says about it.
#[derive(Debug, Clone)]
pub struct Failure {
    /// What the controller saw.
    pub reason: FailureReason,
    /// The service's `Result` afterwards: exit-code, signal, timeout, start-limit-hit...
    /// (`None` when its state could not be read).
    pub service_result: Option<ServiceResult>,
    /// `ExecMainStatus`: the exit status or signal of the last main process.
    pub exit_status: i32,
    /// The unit's last journal lines.
    pub journal: Vec<String>,
}

/// What happened to one instance.
#[derive(Debug, Clone)]
pub struct InstanceReport {
    /// The instance number.
    pub instance: u32,
    /// Its unit, `NAME@N.service`.
    pub unit: String,
    /// Where it ended: `Ready`, `Failed` or `Skipped`.
    pub step: Step,
    /// Main PID before the restart (0: none, or never read).
    pub old_pid: u32,
    /// Main PID after (0: none).
    pub new_pid: u32,
    /// From `RestartUnit` to systemd's `JobRemoved`: stopping the old process, starting the
    /// new one and (for `Type=notify`) its `READY=1`.
    pub job: Duration,
    /// The min-ready window spent watching the new process, and its health check.
    pub settle: Duration,
    /// From the first call about this instance to its verdict.
    pub total: Duration,
    /// Why it failed, if it did.
    pub failure: Option<Failure>,
}

impl InstanceReport {
    /// The controller's own time for this instance: everything but systemd's job and the
    /// min-ready window (state reads, reset-failed, the D-Bus round trips).
    pub fn overhead(&self) -> Duration {
        self.total.saturating_sub(self.job + self.settle)
    }
}

/// The result of a rollout.
#[derive(Debug, Clone)]
pub struct Summary {
    /// The app.
    pub app: String,
    /// The parallelism used.
    pub parallel: usize,
    /// Every instance of the plan, in order.
    pub instances: Vec<InstanceReport>,
    /// Wall time of the whole rollout.
    pub wall: Duration,
}

impl Summary {
    /// True when every instance is ready.
    pub fn completed(&self) -> bool {
        self.instances.iter().all(|i| i.step == Step::Ready)
    }

    /// The first instance that failed.
    pub fn failed(&self) -> Option<&InstanceReport> {
        self.instances.iter().find(|i| i.step == Step::Failed)
    }

    /// Instances never restarted because the rollout halted.
    pub fn skipped(&self) -> impl Iterator<Item = &InstanceReport> {
        self.instances.iter().filter(|i| i.step == Step::Skipped)
    }

    /// The controller's own time summed over the instances.
    pub fn overhead(&self) -> Duration {
        self.instances.iter().map(InstanceReport::overhead).sum()
    }
}

/// What the rollout reports while it runs.
#[derive(Debug)]
pub enum Event<'a> {
    /// The rollout begins.
    Begin {
        /// The app.
        app: &'a str,
        /// How many instances.
        total: usize,
        /// How many at a time (for a surge rollout, new processes beside old ones).
        parallel: usize,
        /// A surge rollout: each new process serves before its old one is stopped.
        surge: bool,
    },
    /// An instance's restart begins.
    Restarting {
        /// 1-based position in the plan.
        index: usize,
        /// Plan length.
        total: usize,
        /// The unit.
        unit: &'a str,
    },
    /// An instance is ready or failed.
    Finished {
        /// 1-based position in the plan.
        index: usize,
        /// Plan length.
        total: usize,
        /// What happened.
        report: &'a InstanceReport,
    },
    /// A surge rollout's old process finished draining (in the background, after its new
    /// one was ready).
    Drained {
        /// The old unit.
        unit: &'a str,
        /// Its main PID before the stop.
        pid: u32,
        /// From the stop to the job's end.
        took: Duration,
        /// How the stop job ended (`None`: a call to systemd failed).
        result: Option<JobResult>,
    },
}

/// Per-instance bookkeeping while the rollout runs.
struct Track {
    unit: String,
    index: usize,
    begun: Option<Instant>,
    old_pid: u32,
    new_pid: u32,
    job: Duration,
    settle: Duration,
    total: Duration,
    failure: Option<Failure>,
}

/// A phase that finished.
enum Done {
    Restarted {
        instance: u32,
        old_pid: u32,
        job: Duration,
        result: Result<Box<ServiceState>, FailureReason>,
    },
    Settled {
        instance: u32,
        spent: Duration,
        result: Result<(), FailureReason>,
    },
}

/// Rolls through `instances` of `app` (each as the unit of its generation in `generations`): restarts them `opts.parallel` at a time, halting at the
/// first failure. Never fails as a whole: failures are in the [`Summary`].
pub async fn rollout<U: Units>(
    units: &U,
    app: &str,
    instances: &[u32],
    generations: &Generations,
    opts: &Options,
    progress: &mut dyn FnMut(&Event<'_>),
) -> Summary {
    let started = Instant::now();
    let names = UnitNames::new(app);
    let total = instances.len();
    let mut planner = Planner::new(instances, opts.parallel);
    let mut tracks: BTreeMap<u32, Track> = instances
        .iter()
        .enumerate()
        .map(|(n, &i)| {
            (
                i,
                Track {
                    unit: names.unit_of(i, generations),
                    index: n + 1,
                    begun: None,
                    old_pid: 0,
                    new_pid: 0,
                    job: Duration::ZERO,
                    settle: Duration::ZERO,
                    total: Duration::ZERO,
                    failure: None,
                },
            )
        })
        .collect();
    progress(&Event::Begin {
        app,
        total,
        parallel: opts.parallel.get(),
        surge: false,
    });
    let mut pending: FuturesUnordered<LocalBoxFuture<'_, Done>> = FuturesUnordered::new();
    loop {
        for instance in planner.begin() {
            let track = tracks
                .get_mut(&instance)
                .expect("every planned instance is tracked");
            track.begun = Some(Instant::now());
            progress(&Event::Restarting {
                index: track.index,
                total,
                unit: &track.unit,
            });
            let unit = track.unit.clone();
            pending.push(
                restart_phase(units, unit, opts)
                    .map(move |(old_pid, job, result)| Done::Restarted {
                        instance,
                        old_pid,
                        job,
                        result,
                    })
                    .boxed_local(),
            );
        }
        if matches!(planner.phase(), Phase::Completed | Phase::Halted) {
            break;
        }
        let Some(done) = pending.next().await else {
            unreachable!(
                "bug: the rollout is {:?} with nothing in flight",
                planner.phase()
            );
        };
        let finished = match done {
            Done::Restarted {
                instance,
                old_pid,
                job,
                result,
            } => {
                let track = tracks.get_mut(&instance).expect("tracked");
                track.job = job;
                track.old_pid = old_pid;
                match result {
                    Ok(after) => {
                        planner.job_done(instance);
                        track.new_pid = after.main_pid;
                        let unit = track.unit.clone();
                        pending.push(
                            settle_phase(units, unit, *after, opts.min_ready)
                                .map(move |(spent, result)| Done::Settled {
                                    instance,
                                    spent,
                                    result,
                                })
                                .boxed_local(),
                        );
                        None
                    }
                    Err(reason) => {
                        planner.fail(instance);
                        Some((instance, reason))
                    }
                }
            }
            Done::Settled {
                instance,
                spent,
                result,
            } => {
                let track = tracks.get_mut(&instance).expect("tracked");
                track.settle = spent;
                match result {
                    Ok(()) => {
                        planner.ready(instance);
                        track.total = track.begun.map_or(Duration::ZERO, |b| b.elapsed());
                        let report = report_of(instance, track, Step::Ready);
                        progress(&Event::Finished {
                            index: track.index,
                            total,
                            report: &report,
                        });
                        None
                    }
                    Err(reason) => {
                        planner.fail(instance);
                        Some((instance, reason))
                    }
                }
            }
        };
        if let Some((instance, reason)) = finished {
            let track = tracks.get_mut(&instance).expect("tracked");
            let (failure, pid) =
                describe_failure(units, &track.unit, reason, opts.journal_lines).await;
            track.new_pid = pid;
            track.failure = Some(failure);
            track.total = track.begun.map_or(Duration::ZERO, |b| b.elapsed());
            let report = report_of(instance, track, Step::Failed);
            progress(&Event::Finished {
                index: track.index,
                total,
                report: &report,
            });
        }
    }
    let reports = planner
        .steps()
        .iter()
        .map(|&(instance, step)| report_of(instance, &tracks[&instance], step))
        .collect();
    Summary {
        app: app.to_string(),
        parallel: opts.parallel.get(),
        instances: reports,
        wall: started.elapsed(),
    }
}

fn report_of(instance: u32, track: &Track, step: Step) -> InstanceReport {
    InstanceReport {
        instance,
        unit: track.unit.clone(),
        step,
        old_pid: track.old_pid,
        new_pid: track.new_pid,
        job: track.job,
        settle: track.settle,
        total: track.total,
        failure: track.failure.clone(),
    }
}

/// Phase 1: restart and check a new process runs. Returns the main PID before, the job's
/// wall time and the state after (or why not).
async fn restart_phase<U: Units>(
    units: &U,
    unit: String,
    opts: &Options,
) -> (u32, Duration, Result<Box<ServiceState>, FailureReason>) {
    let before = match units.state(&unit).await {
        Ok(state) => state,
        Err(e) => return (0, Duration::ZERO, Err(FailureReason::Systemd(e))),
    };
    let old_pid = if before.is_running() {
        before.main_pid
    } else {
        0
    };
    // Every start counts in the crash-loop brake's streak (`max_restarts` starts in a row,
    // kept by `sysmgr exec`); a rollout must never be the reason an instance refuses to
    // start, nor be blocked by an earlier failed one.
    // Its sockets too: a failed socket would fail the restart as a dependency.
    for u in std::iter::once(&unit).chain(&before.triggered_by) {
        if let Err(e) = units.reset_failed(u).await {
            return (old_pid, Duration::ZERO, Err(FailureReason::Systemd(e)));
        }
    }
    let wait = match (before.timeout_stop, before.timeout_start) {
        (Some(stop), Some(start)) => Some(stop + start + opts.grace),
        // An infinite systemd timeout: the controller waits as long as systemd does.
        _ => None,
    };
    let job_started = Instant::now();
    let outcome = units.restart(&unit, wait).await;
    let job = job_started.elapsed();
    let result = match outcome {
        Err(e) => Err(FailureReason::Systemd(e)),
        Ok(JobOutcome::GaveUp(after)) => Err(FailureReason::GaveUp(JobKind::Restart, after)),
        Ok(JobOutcome::Finished(JobResult::Done)) => match units.state(&unit).await {
            Err(e) => Err(FailureReason::Systemd(e)),
            Ok(after) => verify_restarted(JobKind::Restart, &before, after).map(Box::new),
        },
        // A job whose end was not seen (systemd re-executed meanwhile) is judged by the
        // unit's state alone, which must show a new process.
        Ok(JobOutcome::Unobserved) => match units.state(&unit).await {
            Err(e) => Err(FailureReason::Systemd(e)),
            Ok(after) => verify_restarted(JobKind::Restart, &before, after)
                .map(Box::new)
                .map_err(|reason| FailureReason::Unobserved(JobKind::Restart, Box::new(reason))),
        },
        Ok(JobOutcome::Finished(other)) => Err(FailureReason::Job(JobKind::Restart, other)),
    };
    (old_pid, job, result)
}

/// After a `done` job: the unit must be active, with a new invocation and main process.
pub(super) fn verify_restarted(
    job: JobKind,
    before: &ServiceState,
    after: ServiceState,
) -> Result<ServiceState, FailureReason> {
    if !after.is_running() {
        return Err(FailureReason::NotRunning {
            job,
            active_state: after.active_state,
            sub_state: after.sub_state,
        });
    }
    let same_invocation =
        !before.invocation_id.is_empty() && before.invocation_id == after.invocation_id;
    let same_pid = before.is_running() && before.main_pid != 0 && before.main_pid == after.main_pid;
    if same_invocation || same_pid {
        return Err(FailureReason::NotRestarted(job));
    }
    Ok(after)
}

/// Phase 2: the new process must still be the active one after `min_ready`, and then pass
/// its health check if the unit has one.
pub(super) async fn settle_phase<U: Units>(
    units: &U,
    unit: String,
    after: ServiceState,
    min_ready: Duration,
) -> (Duration, Result<(), FailureReason>) {
    let started = Instant::now();
    if !min_ready.is_zero() {
        tokio::time::sleep(min_ready).await;
    }
    let result = match units.state(&unit).await {
        Err(e) => Err(FailureReason::Systemd(e)),
        Ok(now) if now.is_running() && now.invocation_id == after.invocation_id => {
            probe(units, &now).await
        }
        Ok(_) => Err(FailureReason::ExitedEarly { within: min_ready }),
    };
    (started.elapsed(), result)
}

/// The health gate: the unit's check, asked of the new process on its own socket.
async fn probe<U: Units>(units: &U, now: &ServiceState) -> Result<(), FailureReason> {
    match health::Check::of(now) {
        None => Ok(()),
        Some(check) => health::wait_healthy(&check, units)
            .await
            .map(drop)
            .map_err(|u| FailureReason::Unhealthy(Box::new(u))),
    }
}

/// Gathers what systemd knows about a failed instance, then stops it.
///
/// Stopping ends the `Restart=` loop of a new version that cannot start, which would
/// otherwise go on until the crash-loop brake fails the instance. The next reload starts the
/// instance again.
pub(super) async fn describe_failure<U: Units>(
    units: &U,
    unit: &str,
    reason: FailureReason,
    journal_lines: usize,
) -> (Failure, u32) {
    let state = units.state(unit).await.ok();
    let journal = if journal_lines > 0 {
        units.journal(unit, journal_lines).await
    } else {
        Vec::new()
    };
    // Best effort: the failure report matters more than a stop that systemd refuses.
    let _ = units.stop(unit).await;
    let failure = Failure {
        reason,
        service_result: state.as_ref().map(|s| s.result.clone()),
        exit_status: state.as_ref().map_or(0, |s| s.exec_main_status),
        journal,
    };
    (failure, state.map_or(0, |s| s.main_pid))
}

/// A duration the way people read it: `412 ms`, `1.2 s`, `95 s`.
pub fn human(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms < 10_000 {
        format!("{:.1} s", d.as_secs_f64())
    } else {
        format!("{} s", d.as_secs())
    }
}
