//! The engine against a scripted fake of [`Units`]: the ordering, halting and verification
//! rules, without systemd. (Against a real systemd: `tests/reload.rs`.)

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::time::Duration;

use super::*;
use crate::names::Generations;
use crate::systemd::dbus::{
    ActiveState, DbusError, JobKind, JobResult, LoadState, ServiceResult, ServiceState, SubState,
};

/// What the fake does when an instance is restarted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Script {
    /// A new process that stays up.
    Good,
    /// The job fails (the new command exits at once).
    JobFails,
    /// The job is done but the new process dies right after.
    DiesAfterReady,
    /// The job is "done" but nothing was restarted.
    Unchanged,
    /// systemd never finishes the job within the wait.
    Hangs,
    /// The connection was lost while the job ran: its end is not seen. `true`: the unit
    /// restarted meanwhile; `false`: it did not (it is failed).
    Unobserved(bool),
    /// A new process that stays up, with a health check command that passes.
    Healthy,
    /// A new process that stays up, with a health check command that always fails.
    Unhealthy,
}

/// The fake's check unit of an instance unit, and back.
fn check_unit(instance_unit: &str) -> String {
    instance_unit.replacen('@', "-sysmgr-check@", 1)
}

#[derive(Debug, Clone)]
struct Unit {
    pid: u32,
    invocation: u32,
    active: bool,
    script: Script,
    /// Restarts of this unit so far; after a `DiesAfterReady` restart, the state read after
    /// the job sees it running, the next one sees it gone.
    reads_since_restart: u32,
}

#[derive(Default)]
struct Fake {
    units: RefCell<BTreeMap<String, Unit>>,
    log: RefCell<Vec<String>>,
    next_pid: RefCell<u32>,
    in_flight: RefCell<usize>,
    max_in_flight: RefCell<usize>,
    waits: RefCell<Vec<Option<Duration>>>,
    timeouts: Option<(Duration, Duration)>,
}

impl Fake {
    fn new(app: &str, n: u32, scripts: &[(u32, Script)]) -> Self {
        let fake = Fake {
            timeouts: Some((Duration::from_secs(2), Duration::from_secs(30))),
            ..Default::default()
        };
        *fake.next_pid.borrow_mut() = 1000;
        for i in 1..=n {
            let script = scripts
                .iter()
                .find(|(j, _)| *j == i)
                .map_or(Script::Good, |(_, s)| *s);
            fake.units.borrow_mut().insert(
                format!("{app}@{i}.service"),
                Unit {
                    pid: 100 + i,
                    invocation: 1,
                    active: true,
                    script,
                    reads_since_restart: 0,
                },
            );
        }
        fake
    }

    fn log(&self) -> Vec<String> {
        self.log.borrow().clone()
    }
}

impl Units for Fake {
    async fn state(&self, unit: &str) -> Result<ServiceState, DbusError> {
        if unit.contains("-sysmgr-check@") {
            // A check that ran and exited 1.
            return Ok(ServiceState {
                unit: unit.to_string(),
                result: ServiceResult::ExitCode,
                exec_main_status: 1,
                ..Default::default()
            });
        }
        let mut units = self.units.borrow_mut();
        let Some(u) = units.get_mut(unit) else {
            return Err(DbusError::Call {
                action: format!("read the properties of `{unit}`"),
                source: zbus::Error::Failure("no such unit in the fake".into()),
            });
        };
        u.reads_since_restart += 1;
        if u.script == Script::DiesAfterReady && u.invocation > 1 && u.reads_since_restart > 1 {
            u.active = false;
            u.pid = 0;
        }
        let (stop, start) = self.timeouts.unzip();
        Ok(ServiceState {
            unit: unit.to_string(),
            load_state: LoadState::Loaded,
            active_state: if u.active {
                ActiveState::Active
            } else {
                ActiveState::Failed
            },
            sub_state: if u.active {
                SubState::Running
            } else {
                SubState::Failed
            },
            invocation_id: format!("{:032x}", u.invocation),
            main_pid: u.pid,
            timeout_stop: stop,
            timeout_start: start,
            result: if u.active {
                ServiceResult::Success
            } else {
                ServiceResult::ExitCode
            },
            exec_main_status: if u.active { 0 } else { 1 },
            environment: if matches!(u.script, Script::Healthy | Script::Unhealthy) {
                vec![
                    format!("SYSMGR_HEALTH_UNIT={}", check_unit(unit)),
                    "SYSMGR_HEALTH_TIMEOUT_MS=500".into(),
                ]
            } else {
                Vec::new()
            },
            ..Default::default()
        })
    }

    async fn reset_failed(&self, unit: &str) -> Result<(), DbusError> {
        self.log.borrow_mut().push(format!("reset-failed {unit}"));
        Ok(())
    }

    async fn restart(&self, unit: &str, wait: Option<Duration>) -> Result<JobOutcome, DbusError> {
        self.log.borrow_mut().push(format!("restart {unit}"));
        self.waits.borrow_mut().push(wait);
        {
            let mut n = self.in_flight.borrow_mut();
            *n += 1;
            let mut max = self.max_in_flight.borrow_mut();
            *max = (*max).max(*n);
        }
        // Let the other restarts in flight run, as a real job takes a while.
        tokio::time::sleep(Duration::from_millis(5)).await;
        *self.in_flight.borrow_mut() -= 1;
        let mut units = self.units.borrow_mut();
        let u = units.get_mut(unit).expect("restarting a known unit");
        u.reads_since_restart = 0;
        let outcome = match u.script {
            Script::Good | Script::DiesAfterReady | Script::Healthy | Script::Unhealthy => {
                *self.next_pid.borrow_mut() += 1;
                u.pid = *self.next_pid.borrow();
                u.invocation += 1;
                u.active = true;
                JobOutcome::Finished(JobResult::Done)
            }
            Script::JobFails => {
                u.pid = 0;
                u.invocation += 1;
                u.active = false;
                JobOutcome::Finished(JobResult::Failed)
            }
            Script::Unchanged => JobOutcome::Finished(JobResult::Done),
            Script::Unobserved(restarted) => {
                *self.next_pid.borrow_mut() += 1;
                u.pid = if restarted {
                    *self.next_pid.borrow()
                } else {
                    0
                };
                u.invocation += 1;
                u.active = restarted;
                JobOutcome::Unobserved
            }
            Script::Hangs => JobOutcome::GaveUp(wait.unwrap_or_default()),
        };
        Ok(outcome)
    }

    async fn start(&self, unit: &str, _wait: Option<Duration>) -> Result<JobOutcome, DbusError> {
        self.log.borrow_mut().push(format!("start {unit}"));
        let instance = unit.replacen("-sysmgr-check@", "@", 1);
        let script = self.units.borrow()[&instance].script;
        Ok(JobOutcome::Finished(if script == Script::Unhealthy {
            JobResult::Failed
        } else {
            JobResult::Done
        }))
    }

    async fn stop(&self, unit: &str) -> Result<JobResult, DbusError> {
        self.log.borrow_mut().push(format!("stop {unit}"));
        let mut units = self.units.borrow_mut();
        let Some(u) = units.get_mut(unit) else {
            return Err(DbusError::Call {
                action: format!("stop `{unit}`"),
                source: zbus::Error::Failure("no such unit in the fake".into()),
            });
        };
        u.active = false;
        u.pid = 0;
        Ok(JobResult::Done)
    }

    async fn journal(&self, unit: &str, lines: usize) -> Vec<String> {
        vec![format!("{unit}: last {lines} lines")]
    }
}

fn opts(parallel: usize) -> Options {
    Options {
        parallel: NonZeroUsize::new(parallel).unwrap(),
        min_ready: Duration::from_millis(10),
        journal_lines: 5,
        grace: Duration::from_secs(5),
    }
}

async fn run(fake: &Fake, n: u32, o: &Options) -> (Summary, Vec<String>) {
    let instances: Vec<u32> = (1..=n).collect();
    let mut events = Vec::new();
    let summary = rollout(
        fake,
        "web",
        &instances,
        &Generations::default(),
        o,
        &mut |e| {
            events.push(match e {
                Event::Begin {
                    total, parallel, ..
                } => format!("begin {total} by {parallel}"),
                Event::Restarting { index, unit, .. } => format!("restarting {index} {unit}"),
                Event::Finished { index, report, .. } => {
                    format!("finished {index} {:?}", report.step)
                }
                Event::Drained { unit, .. } => format!("drained {unit}"),
            });
        },
    )
    .await;
    (summary, events)
}

#[tokio::test]
async fn every_instance_restarts_in_order_with_a_new_pid() {
    let fake = Fake::new("web", 3, &[]);
    let (summary, events) = run(&fake, 3, &opts(1)).await;
    assert!(summary.completed());
    assert_eq!(
        fake.log(),
        [
            "reset-failed web@1.service",
            "restart web@1.service",
            "reset-failed web@2.service",
            "restart web@2.service",
            "reset-failed web@3.service",
            "restart web@3.service",
        ]
    );
    assert_eq!(
        events,
        [
            "begin 3 by 1",
            "restarting 1 web@1.service",
            "finished 1 Ready",
            "restarting 2 web@2.service",
            "finished 2 Ready",
            "restarting 3 web@3.service",
            "finished 3 Ready",
        ]
    );
    for (n, report) in summary.instances.iter().enumerate() {
        assert_eq!(report.old_pid, 101 + n as u32);
        assert_eq!(report.new_pid, 1001 + n as u32);
        assert!(report.settle >= Duration::from_millis(10));
        assert!(report.total >= report.job + report.settle);
    }
    assert_eq!(*fake.max_in_flight.borrow(), 1);
}

#[tokio::test]
async fn the_controller_waits_for_systemds_stop_and_start_timeouts_plus_grace() {
    let fake = Fake::new("web", 1, &[]);
    run(&fake, 1, &opts(1)).await;
    assert_eq!(
        *fake.waits.borrow(),
        [Some(Duration::from_secs(2 + 30 + 5))]
    );

    // An infinite systemd timeout: the controller never gives up first.
    let mut fake = Fake::new("web", 1, &[]);
    fake.timeouts = None;
    run(&fake, 1, &opts(1)).await;
    assert_eq!(*fake.waits.borrow(), [None]);
}

#[tokio::test]
async fn a_failed_job_halts_the_rollout_and_leaves_the_rest_untouched() {
    let fake = Fake::new("web", 4, &[(2, Script::JobFails)]);
    let (summary, events) = run(&fake, 4, &opts(1)).await;
    assert!(!summary.completed());
    assert_eq!(
        fake.log(),
        [
            "reset-failed web@1.service",
            "restart web@1.service",
            "reset-failed web@2.service",
            "restart web@2.service",
            "stop web@2.service",
        ],
        "the failed instance is stopped; 3 and 4 keep the old version"
    );
    assert_eq!(events.last().unwrap(), "finished 2 Failed");
    let failed = summary.failed().unwrap();
    assert_eq!(failed.unit, "web@2.service");
    let failure = failed.failure.as_ref().unwrap();
    assert!(matches!(
        failure.reason,
        FailureReason::Job(JobKind::Restart, JobResult::Failed)
    ));
    assert_eq!(
        failure.reason.to_string(),
        "the restart job ended with `failed`"
    );
    assert_eq!(failure.service_result, Some(ServiceResult::ExitCode));
    assert_eq!(failure.exit_status, 1);
    assert_eq!(failure.journal, ["web@2.service: last 5 lines"]);
    let skipped: Vec<u32> = summary.skipped().map(|r| r.instance).collect();
    assert_eq!(skipped, [3, 4]);
    let steps: Vec<Step> = summary.instances.iter().map(|r| r.step).collect();
    assert_eq!(
        steps,
        [Step::Ready, Step::Failed, Step::Skipped, Step::Skipped]
    );
}

#[tokio::test]
async fn a_process_that_dies_in_the_min_ready_window_halts_the_rollout() {
    let fake = Fake::new("web", 3, &[(1, Script::DiesAfterReady)]);
    let (summary, _) = run(&fake, 3, &opts(1)).await;
    let failed = summary.failed().unwrap();
    assert_eq!(failed.instance, 1);
    assert_eq!(
        failed.failure.as_ref().unwrap().reason.to_string(),
        "the new process did not stay up for 10 ms"
    );
    assert_eq!(summary.skipped().count(), 2);
}

#[tokio::test]
async fn a_done_job_without_a_new_process_is_a_failure() {
    let fake = Fake::new("web", 2, &[(1, Script::Unchanged)]);
    let (summary, _) = run(&fake, 2, &opts(1)).await;
    let failed = summary.failed().unwrap();
    assert!(matches!(
        failed.failure.as_ref().unwrap().reason,
        FailureReason::NotRestarted(JobKind::Restart)
    ));
}

#[tokio::test]
async fn a_job_systemd_does_not_finish_in_time_halts_with_the_wait() {
    let fake = Fake::new("web", 2, &[(1, Script::Hangs)]);
    let (summary, _) = run(&fake, 2, &opts(1)).await;
    assert_eq!(
        summary
            .failed()
            .unwrap()
            .failure
            .as_ref()
            .unwrap()
            .reason
            .to_string(),
        "systemd had not finished the restart job after 37 s"
    );
}

#[tokio::test]
async fn parallel_restarts_stay_within_k() {
    let fake = Fake::new("web", 5, &[]);
    let (summary, _) = run(&fake, 5, &opts(2)).await;
    assert!(summary.completed());
    assert_eq!(*fake.max_in_flight.borrow(), 2);
    assert_eq!(
        fake.log()
            .iter()
            .filter(|l| l.starts_with("restart"))
            .count(),
        5
    );
}

#[tokio::test]
async fn with_k_in_flight_a_failure_still_lets_the_others_finish() {
    let fake = Fake::new("web", 6, &[(2, Script::JobFails)]);
    let (summary, _) = run(&fake, 6, &opts(3)).await;
    let steps: Vec<Step> = summary.instances.iter().map(|r| r.step).collect();
    assert_eq!(
        steps,
        [
            Step::Ready,
            Step::Failed,
            Step::Ready,
            Step::Skipped,
            Step::Skipped,
            Step::Skipped
        ]
    );
}

#[tokio::test]
async fn a_systemd_error_is_a_failure_of_that_instance() {
    let fake = Fake::new("web", 1, &[]);
    // Instance 2 does not exist in the fake: reading its state fails.
    let summary = rollout(
        &fake,
        "web",
        &[1, 2],
        &Generations::default(),
        &opts(1),
        &mut |_| {},
    )
    .await;
    let failed = summary.failed().unwrap();
    assert_eq!(failed.instance, 2);
    assert!(matches!(
        failed.failure.as_ref().unwrap().reason,
        FailureReason::Systemd(_)
    ));
}

#[test]
fn durations_read_like_people_write_them() {
    assert_eq!(engine::human(Duration::from_millis(412)), "412 ms");
    assert_eq!(engine::human(Duration::from_millis(1234)), "1.2 s");
    assert_eq!(engine::human(Duration::from_secs(95)), "95 s");
}

#[tokio::test]
async fn an_unhealthy_new_process_halts_the_rollout_and_is_stopped() {
    let fake = Fake::new(
        "web",
        3,
        &[
            (1, Script::Healthy),
            (2, Script::Unhealthy),
            (3, Script::Healthy),
        ],
    );
    let (summary, events) = run(&fake, 3, &opts(1)).await;
    assert!(!summary.completed());
    let log = fake.log();
    // Instance 1's check passed at once; instance 2's was run again until its timeout.
    assert_eq!(
        log[..6],
        [
            "reset-failed web@1.service",
            "restart web@1.service",
            "reset-failed web-sysmgr-check@1.service",
            "start web-sysmgr-check@1.service",
            "reset-failed web@2.service",
            "restart web@2.service",
        ]
    );
    let runs = log
        .iter()
        .filter(|l| *l == "start web-sysmgr-check@2.service")
        .count();
    assert!((2..=4).contains(&runs), "500 ms, every 200 ms: {log:?}");
    assert_eq!(log.last().unwrap(), "stop web@2.service");
    assert!(
        !log.iter().any(|l| l.contains("@3.")),
        "3 keeps the old version"
    );
    assert_eq!(events.last().unwrap(), "finished 2 Failed");
    let failure = summary.failed().unwrap().failure.as_ref().unwrap();
    let FailureReason::Unhealthy(u) = &failure.reason else {
        panic!("{:?}", failure.reason)
    };
    assert_eq!(u.attempts as usize, runs);
    let text = failure.reason.to_string();
    assert!(
        text.starts_with(
            "the new process is not healthy: its check `web-sysmgr-check@2.service` exited with status 1 (asked "
        ) && text.ends_with("; its last output: `web-sysmgr-check@2.service: last 3 lines`"),
        "{text}"
    );
}

#[tokio::test]
async fn a_job_whose_end_was_not_seen_is_judged_by_the_units_state() {
    // systemd re-executed while instance 1 restarted (it did) and instance 2 (it failed).
    let fake = Fake::new(
        "web",
        3,
        &[
            (1, Script::Unobserved(true)),
            (2, Script::Unobserved(false)),
        ],
    );
    let (summary, _) = run(&fake, 3, &opts(1)).await;
    assert_eq!(summary.instances[0].step, Step::Ready);
    assert_eq!(summary.instances[1].step, Step::Failed);
    assert_eq!(summary.instances[2].step, Step::Skipped);
    let failure = summary.instances[1].failure.as_ref().unwrap();
    assert_eq!(
        failure.reason.to_string(),
        "the connection to systemd was lost while the restart job ran, and then the unit is `failed/failed`"
    );
}
