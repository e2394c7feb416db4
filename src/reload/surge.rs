//! The surge rollout: each slot's new process starts *next to* the old one, and the old one
//! is stopped (and drains) only once the new one is ready, while the rollout moves on.
//!
//! A slot `N` runs as one unit at a time, a generation of the template: `NAME@N.service`
//! (generation 0) or `NAME@N:1.service` (generation 1); a surge step alternates between the
//! two ([`next_generation`]), so the names stay bounded and `%i` is `N` or `N:1`, of which
//! `sysmgr exec` gives the worker the slot alone (`SYSMGR_INSTANCE=N`, see
//! [`crate::names::split_instance`]). One step, for slot `N` running `old`:
//!
//! 1. clear `new`'s failed state, `StartUnit(new)` and wait for the job (`Type=notify`: until
//!    `READY=1`), then `new` must be active with a main PID;
//! 2. `new` must still be the active invocation after the min-ready window;
//! 3. [`SurgeUnits::switch`]: `new` becomes the slot's unit in place of `old` (the wants link);
//! 4. `StopUnit(old)`: the old process drains in the background, and the next slot begins.
//!
//! At most `surge` new processes are between 1 and 3 at once: the app never has more than
//! `N + surge` processes accepting connections, and never fewer than `N`. A draining process
//! no longer accepts, so drains do not count against the budget; the rollout ends when the
//! last one finished (and its unit is cleared if the drain ended in a kill), so nothing is
//! left running or failed behind it. A failure in 1-3 halts: the new process is stopped, the
//! old one keeps serving, nothing new begins, the drains in flight finish.
//!
//! [`SurgePlanner`] is the bookkeeping (pure, unit-tested), [`surge_rollout`] the engine over
//! [`SurgeUnits`].
//!
//! Not wired into `sysmgr reload` yet: the controller, `scale`, `status`, `list`, `logs`,
//! `monit` and the generator still know one unit per slot, `NAME@N.service`.

use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use futures_util::future::LocalBoxFuture;
use futures_util::stream::{FuturesUnordered, StreamExt as _};
use futures_util::FutureExt as _;

use super::engine::{
    describe_failure, settle_phase, verify_restarted, Failure, FailureReason, InstanceReport,
    Options, Summary,
};
use super::plan::{Phase, Plan, PlanStep, Step};
use super::units::{JobOutcome, Units};
use crate::names::{Generations, UnitNames};
use crate::systemd::dbus::{DbusError, JobKind, JobResult};

/// The generation a surge step starts for a slot whose unit is generation `current`: the
/// other of the two colours 0 and 1.
pub fn next_generation(current: u32) -> u32 {
    u32::from(current == 0)
}

/// Where one slot is in a surge rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SurgeStep {
    /// Not begun: the old process serves.
    Waiting,
    /// The new process is starting, settling or being switched in; the old one serves.
    Surging,
    /// The new process serves; the old one drains.
    Draining,
    /// The old process is gone.
    Done,
    /// The new process failed and was stopped; the old one serves.
    Failed,
    /// Never begun because the rollout halted; the old process serves.
    Skipped,
}

impl PlanStep for SurgeStep {
    const ITEM: &'static str = "slot";
    const WAITING: Self = Self::Waiting;
    const BEGUN: Self = Self::Surging;
    const DONE: Self = Self::Done;
    const FAILED: Self = Self::Failed;
    const SKIPPED: Self = Self::Skipped;

    /// Only new processes beside old ones count: a draining one no longer accepts.
    fn in_budget(self) -> bool {
        self == Self::Surging
    }

    fn in_flight(self) -> bool {
        matches!(self, Self::Surging | Self::Draining)
    }
}

/// The surge rollout's plan: slots, at most `surge` new processes beside old ones.
pub type SurgePlanner = Plan<SurgeStep>;

impl SurgePlanner {
    /// New processes running beside their slot's old one: at most `surge`.
    pub fn extra(&self) -> usize {
        self.in_budget()
    }

    /// Old processes draining.
    pub fn draining(&self) -> usize {
        self.count(SurgeStep::Draining)
    }

    /// `Surging -> Draining`: the new process serves and is the slot's unit; the old one was
    /// asked to stop. Frees a place in the budget.
    pub fn switched(&mut self, slot: u32) {
        self.transition(slot, SurgeStep::Surging, SurgeStep::Draining);
    }

    /// `Draining -> Done`: the old process is gone.
    pub fn drained(&mut self, slot: u32) {
        self.transition(slot, SurgeStep::Draining, SurgeStep::Done);
    }
}

/// What the surge rollout needs beyond [`Units`].
#[allow(async_fn_in_trait)]
pub trait SurgeUnits: Units {
    /// Makes `to` the unit of `slot` in place of `from` wherever the app's instances are
    /// persisted (the wants links), so the next start and every command see `to`. All or
    /// nothing: on an error, `from` is still the slot's unit.
    async fn switch(&self, slot: u32, from: &str, to: &str) -> Result<(), String>;
}

/// What happened to one slot.
#[derive(Debug, Clone)]
pub struct SlotReport {
    /// The slot (the instance number its workers see).
    pub slot: u32,
    /// The unit that ran before, `NAME@N.service` or `NAME@N:1.service`.
    pub old_unit: String,
    /// The unit started next to it.
    pub new_unit: String,
    /// Where it ended: `Done`, `Failed` or `Skipped`.
    pub step: SurgeStep,
    /// Main PID of the old unit (0: none).
    pub old_pid: u32,
    /// Main PID of the new unit (0: none).
    pub new_pid: u32,
    /// From `StartUnit` to systemd's `JobRemoved` (for `Type=notify`, `READY=1`).
    pub start: Duration,
    /// The min-ready window.
    pub settle: Duration,
    /// From the step's begin until the new process was the slot's unit and the old one was
    /// asked to stop: what the rollout waited for this slot.
    pub surge: Duration,
    /// The old process's drain, in the background (from `StopUnit` to the job's end).
    pub drain: Duration,
    /// How the old unit's stop job ended (`None`: not stopped).
    pub drain_result: Option<JobResult>,
    /// Why the new process failed, if it did.
    pub failure: Option<Failure>,
}

/// The result of a surge rollout.
#[derive(Debug, Clone)]
pub struct SurgeSummary {
    /// The app.
    pub app: String,
    /// The surge budget used.
    pub surge: usize,
    /// Every slot of the plan, in order.
    pub slots: Vec<SlotReport>,
    /// The most old processes that drained at once.
    pub max_draining: usize,
    /// Wall time of the whole rollout, the last drain included.
    pub wall: Duration,
}

impl SlotReport {
    /// The slot as the in-place rollout reports an instance, so the closing line, the
    /// journal and `monit` read both the same way: the new unit for a slot that moved or
    /// failed, the old one for a slot never begun.
    pub fn as_instance_report(&self) -> InstanceReport {
        let step = match self.step {
            SurgeStep::Draining | SurgeStep::Done => Step::Ready,
            SurgeStep::Failed => Step::Failed,
            SurgeStep::Waiting | SurgeStep::Surging | SurgeStep::Skipped => Step::Skipped,
        };
        InstanceReport {
            instance: self.slot,
            unit: if step == Step::Skipped {
                self.old_unit.clone()
            } else {
                self.new_unit.clone()
            },
            step,
            old_pid: self.old_pid,
            new_pid: self.new_pid,
            job: self.start,
            settle: self.settle,
            total: self.surge,
            failure: self.failure.clone(),
        }
    }
}

impl SurgeSummary {
    /// The rollout as the in-place one reports it ([`SlotReport::as_instance_report`]); its
    /// wall time includes the last drain.
    pub fn as_summary(&self) -> Summary {
        Summary {
            app: self.app.clone(),
            parallel: self.surge,
            instances: self
                .slots
                .iter()
                .map(SlotReport::as_instance_report)
                .collect(),
            wall: self.wall,
        }
    }

    /// The longest drain of an old process.
    pub fn longest_drain(&self) -> Duration {
        self.slots.iter().map(|s| s.drain).max().unwrap_or_default()
    }

    /// True when every slot is done.
    pub fn completed(&self) -> bool {
        self.slots.iter().all(|s| s.step == SurgeStep::Done)
    }

    /// The slot that failed.
    pub fn failed(&self) -> Option<&SlotReport> {
        self.slots.iter().find(|s| s.step == SurgeStep::Failed)
    }
}

/// What the surge rollout reports while it runs.
#[derive(Debug)]
pub enum SurgeEvent<'a> {
    /// A slot's new unit is being started.
    Starting {
        /// The slot.
        slot: u32,
        /// Its new unit.
        unit: &'a str,
    },
    /// A slot's new process serves and its old one drains.
    Switched {
        /// What happened so far.
        report: &'a SlotReport,
    },
    /// A slot's new process failed (and was stopped) or its old one finished draining.
    Finished {
        /// What happened.
        report: &'a SlotReport,
    },
}

/// A step that finished.
enum Done {
    Surged {
        slot: u32,
        measured: Measured,
        result: Result<u32, FailureReason>,
    },
    Drained {
        slot: u32,
        took: Duration,
        result: Result<JobResult, DbusError>,
    },
}

/// Timings of a step, whatever its outcome.
#[derive(Default)]
struct Measured {
    old_pid: u32,
    start: Duration,
    settle: Duration,
}

/// Rolls `slots` of `app` over by surge: `current` has the generation each slot runs now. Never fails as a whole: failures are in the
/// [`SurgeSummary`].
pub async fn surge_rollout<U: SurgeUnits>(
    units: &U,
    app: &str,
    slots: &[u32],
    current: &Generations,
    surge: NonZeroUsize,
    opts: &Options,
    progress: &mut dyn FnMut(&SurgeEvent<'_>),
) -> SurgeSummary {
    let started = Instant::now();
    let names = UnitNames::new(app);
    let mut planner = SurgePlanner::new(slots, surge);
    let mut reports: BTreeMap<u32, (SlotReport, Option<Instant>)> = slots
        .iter()
        .map(|&slot| {
            let old = current.of(slot);
            let report = SlotReport {
                slot,
                old_unit: names.slot_unit(slot, old),
                new_unit: names.slot_unit(slot, next_generation(old)),
                step: SurgeStep::Waiting,
                old_pid: 0,
                new_pid: 0,
                start: Duration::ZERO,
                settle: Duration::ZERO,
                surge: Duration::ZERO,
                drain: Duration::ZERO,
                drain_result: None,
                failure: None,
            };
            (slot, (report, None))
        })
        .collect();
    let mut max_draining = 0;
    let mut pending: FuturesUnordered<LocalBoxFuture<'_, Done>> = FuturesUnordered::new();
    loop {
        for slot in planner.begin() {
            let (report, begun) = reports.get_mut(&slot).expect("every slot is reported");
            *begun = Some(Instant::now());
            progress(&SurgeEvent::Starting {
                slot,
                unit: &report.new_unit,
            });
            let (old, new) = (report.old_unit.clone(), report.new_unit.clone());
            pending.push(
                surge_step(units, slot, old, new, opts)
                    .map(move |(measured, result)| Done::Surged {
                        slot,
                        measured,
                        result,
                    })
                    .boxed_local(),
            );
        }
        max_draining = max_draining.max(planner.draining());
        if matches!(planner.phase(), Phase::Completed | Phase::Halted) {
            break;
        }
        let Some(done) = pending.next().await else {
            unreachable!(
                "bug: the surge rollout is {:?} with nothing in flight",
                planner.phase()
            );
        };
        match done {
            Done::Surged {
                slot,
                measured,
                result,
            } => {
                let (report, begun) = reports.get_mut(&slot).expect("reported");
                report.surge = begun.map_or(Duration::ZERO, |b| b.elapsed());
                report.old_pid = measured.old_pid;
                report.start = measured.start;
                report.settle = measured.settle;
                match result {
                    Ok(new_pid) => {
                        planner.switched(slot);
                        report.new_pid = new_pid;
                        report.step = SurgeStep::Draining;
                        progress(&SurgeEvent::Switched { report });
                        let old = report.old_unit.clone();
                        pending.push(
                            drain(units, old)
                                .map(move |(took, result)| Done::Drained { slot, took, result })
                                .boxed_local(),
                        );
                    }
                    Err(reason) => {
                        planner.fail(slot);
                        let (failure, pid) =
                            describe_failure(units, &report.new_unit, reason, opts.journal_lines)
                                .await;
                        // Stopped by then; not left failed behind either.
                        let _ = units.reset_failed(&report.new_unit).await;
                        report.new_pid = pid;
                        report.failure = Some(failure);
                        report.step = SurgeStep::Failed;
                        progress(&SurgeEvent::Finished { report });
                    }
                }
            }
            Done::Drained { slot, took, result } => {
                planner.drained(slot);
                let (report, _) = reports.get_mut(&slot).expect("reported");
                report.drain = took;
                report.drain_result = result.ok();
                report.step = SurgeStep::Done;
                progress(&SurgeEvent::Finished { report });
            }
        }
    }
    let slots = planner
        .steps()
        .iter()
        .map(|&(slot, step)| {
            let mut report = reports[&slot].0.clone();
            report.step = step;
            report
        })
        .collect();
    SurgeSummary {
        app: app.to_string(),
        surge: surge.get(),
        slots,
        max_draining,
        wall: started.elapsed(),
    }
}

/// Steps 1 to 3 of a slot: start `new` beside `old`, let it settle, switch it in (the old
/// one is then stopped by [`drain`]). Returns the timings and the new main PID, or why not.
async fn surge_step<U: SurgeUnits>(
    units: &U,
    slot: u32,
    old: String,
    new: String,
    opts: &Options,
) -> (Measured, Result<u32, FailureReason>) {
    let mut measured = Measured::default();
    let result = surge_step_in(units, slot, &old, &new, opts, &mut measured).await;
    (measured, result)
}

async fn surge_step_in<U: SurgeUnits>(
    units: &U,
    slot: u32,
    old: &str,
    new: &str,
    opts: &Options,
    measured: &mut Measured,
) -> Result<u32, FailureReason> {
    let before = units.state(old).await.map_err(FailureReason::Systemd)?;
    measured.old_pid = if before.is_running() {
        before.main_pid
    } else {
        0
    };
    // The new unit may be failed from an earlier attempt (and its brake's streak counts
    // every start); its sockets are the old one's, already checked by the old unit running.
    units
        .reset_failed(new)
        .await
        .map_err(FailureReason::Systemd)?;
    let idle = units.state(new).await.map_err(FailureReason::Systemd)?;
    let wait = before.timeout_start.map(|start| start + opts.grace);
    let job_started = Instant::now();
    let outcome = units.start(new, wait).await;
    measured.start = job_started.elapsed();
    let after = match outcome.map_err(FailureReason::Systemd)? {
        JobOutcome::GaveUp(after) => return Err(FailureReason::GaveUp(JobKind::Start, after)),
        JobOutcome::Finished(JobResult::Done) => verify_restarted(
            JobKind::Start,
            &idle,
            units.state(new).await.map_err(FailureReason::Systemd)?,
        )?,
        // Not seen to end (systemd re-executed meanwhile): the unit's state must show a new
        // process.
        JobOutcome::Unobserved => verify_restarted(
            JobKind::Start,
            &idle,
            units.state(new).await.map_err(FailureReason::Systemd)?,
        )
        .map_err(|reason| FailureReason::Unobserved(JobKind::Start, Box::new(reason)))?,
        JobOutcome::Finished(other) => return Err(FailureReason::Job(JobKind::Start, other)),
    };
    let main_pid = after.main_pid;
    let (settle, settled) = settle_phase(units, new.to_string(), after, opts.min_ready).await;
    measured.settle = settle;
    settled?;
    units
        .switch(slot, old, new)
        .await
        .map_err(FailureReason::Switch)?;
    Ok(main_pid)
}

/// Stops `old` and waits for its drain; then clears what it leaves (its failed state if
/// systemd had to kill it, and the crash-loop brake's streak), so nothing stays behind.
async fn drain<U: Units>(units: &U, old: String) -> (Duration, Result<JobResult, DbusError>) {
    let started = Instant::now();
    let result = units.stop(&old).await;
    let took = started.elapsed();
    if matches!(units.state(&old).await, Ok(s) if !s.active_state.is_up()) {
        let _ = units.reset_failed(&old).await;
    }
    (took, result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    use crate::systemd::dbus::{ActiveState, ServiceState, SubState};

    /// Units that start at once with a new PID, stop after `drain`, and a switch that fails
    /// for `bad_switch`. Logs every call, and the most new processes surging at once.
    #[derive(Default)]
    struct Fake {
        running: RefCell<BTreeMap<String, u32>>,
        log: RefCell<Vec<String>>,
        next_pid: RefCell<u32>,
        surging: RefCell<usize>,
        max_surging: RefCell<usize>,
        drain: Duration,
        bad_switch: Option<u32>,
    }

    impl Units for Fake {
        async fn state(&self, unit: &str) -> Result<ServiceState, DbusError> {
            let pid = self.running.borrow().get(unit).copied();
            Ok(ServiceState {
                unit: unit.to_string(),
                active_state: if pid.is_some() {
                    ActiveState::Active
                } else {
                    ActiveState::Inactive
                },
                sub_state: if pid.is_some() {
                    SubState::Running
                } else {
                    SubState::Dead
                },
                main_pid: pid.unwrap_or(0),
                invocation_id: pid.map_or(String::new(), |p| p.to_string()),
                timeout_start: Some(Duration::from_secs(5)),
                ..Default::default()
            })
        }
        async fn reset_failed(&self, _unit: &str) -> Result<(), DbusError> {
            Ok(())
        }
        async fn restart(&self, _: &str, _: Option<Duration>) -> Result<JobOutcome, DbusError> {
            unreachable!("a surge never restarts")
        }
        async fn start(&self, unit: &str, _: Option<Duration>) -> Result<JobOutcome, DbusError> {
            self.log.borrow_mut().push(format!("start {unit}"));
            *self.surging.borrow_mut() += 1;
            let now = *self.surging.borrow();
            let max = (*self.max_surging.borrow()).max(now);
            *self.max_surging.borrow_mut() = max;
            tokio::time::sleep(Duration::from_millis(5)).await;
            *self.next_pid.borrow_mut() += 1;
            let pid = *self.next_pid.borrow();
            self.running.borrow_mut().insert(unit.to_string(), pid);
            Ok(JobOutcome::Finished(JobResult::Done))
        }
        async fn stop(&self, unit: &str) -> Result<JobResult, DbusError> {
            self.log.borrow_mut().push(format!("stop {unit}"));
            tokio::time::sleep(self.drain).await;
            self.running.borrow_mut().remove(unit);
            self.log.borrow_mut().push(format!("gone {unit}"));
            Ok(JobResult::Done)
        }
        async fn journal(&self, _unit: &str, _lines: usize) -> Vec<String> {
            Vec::new()
        }
    }

    impl SurgeUnits for Fake {
        async fn switch(&self, slot: u32, from: &str, to: &str) -> Result<(), String> {
            *self.surging.borrow_mut() -= 1;
            if self.bad_switch == Some(slot) {
                return Err("read-only file system".into());
            }
            self.log.borrow_mut().push(format!("switch {from} -> {to}"));
            Ok(())
        }
    }

    fn fake(n: u32, drain: Duration, bad_switch: Option<u32>) -> Fake {
        let f = Fake {
            drain,
            bad_switch,
            ..Default::default()
        };
        *f.next_pid.borrow_mut() = 1000;
        for i in 1..=n {
            f.running
                .borrow_mut()
                .insert(format!("web@{i}.service"), 100 + i);
        }
        f
    }

    fn run(f: &Fake, n: u32, surge: usize) -> SurgeSummary {
        let slots: Vec<u32> = (1..=n).collect();
        let opts = Options {
            min_ready: Duration::from_millis(1),
            ..Options::default()
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(surge_rollout(
            f,
            "web",
            &slots,
            &Generations::default(),
            NonZeroUsize::new(surge).unwrap(),
            &opts,
            &mut |_| {},
        ))
    }

    #[test]
    fn the_next_slot_starts_while_the_old_process_drains() {
        let f = fake(3, Duration::from_millis(200), None);
        let summary = run(&f, 3, 1);
        assert!(summary.completed(), "{summary:#?}");
        assert_eq!(*f.max_surging.borrow(), 1);
        assert_eq!(summary.max_draining, 3, "all three drains overlap");
        let log = f.log.borrow();
        // Slot 2 starts before slot 1's old process is gone.
        let pos = |line: &str| log.iter().position(|l| l == line).unwrap();
        assert!(
            pos("start web@2:1.service") < pos("gone web@1.service"),
            "{log:?}"
        );
        assert!(pos("switch web@1.service -> web@1:1.service") < pos("stop web@1.service"));
        let running: Vec<String> = f.running.borrow().keys().cloned().collect();
        assert_eq!(
            running,
            ["web@1:1.service", "web@2:1.service", "web@3:1.service"]
        );
        for slot in &summary.slots {
            assert_eq!(slot.old_pid, 100 + slot.slot);
            assert!(slot.new_pid > 1000);
        }
    }

    #[test]
    fn a_failed_switch_stops_the_new_process_and_keeps_the_old_one() {
        let f = fake(3, Duration::ZERO, Some(2));
        let summary = run(&f, 3, 1);
        let failed = summary.failed().expect("slot 2 failed");
        assert_eq!(failed.slot, 2);
        assert_eq!(
            failed.failure.as_ref().unwrap().reason.to_string(),
            "the new unit could not replace the old one: read-only file system"
        );
        assert_eq!(summary.slots[2].step, SurgeStep::Skipped);
        let running: Vec<String> = f.running.borrow().keys().cloned().collect();
        assert_eq!(
            running,
            ["web@1:1.service", "web@2.service", "web@3.service"]
        );
    }

    fn k(n: usize) -> NonZeroUsize {
        NonZeroUsize::new(n).unwrap()
    }

    #[test]
    fn generations_alternate_between_two_colours() {
        assert_eq!(next_generation(0), 1);
        assert_eq!(next_generation(1), 0);
        assert_eq!(next_generation(7), 0);
    }

    #[test]
    fn a_drain_frees_no_place_but_a_switch_does() {
        let mut p = SurgePlanner::new(&[1, 2, 3], k(1));
        assert_eq!(p.begin(), vec![1]);
        assert_eq!(p.begin(), Vec::<u32>::new(), "one new process at a time");
        p.switched(1);
        assert_eq!((p.extra(), p.draining()), (0, 1));
        assert_eq!(p.begin(), vec![2], "the next slot begins while 1 drains");
        p.switched(2);
        assert_eq!(p.begin(), vec![3]);
        assert_eq!((p.extra(), p.draining()), (1, 2));
        p.switched(3);
        assert_eq!(p.phase(), Phase::Rolling, "drains still run");
        p.drained(2);
        p.drained(1);
        assert_eq!(p.phase(), Phase::Rolling);
        p.drained(3);
        assert_eq!(p.phase(), Phase::Completed);
    }

    #[test]
    fn surge_k_keeps_at_most_k_new_processes() {
        let mut p = SurgePlanner::new(&[1, 2, 3, 4, 5], k(2));
        assert_eq!(p.begin(), vec![1, 2]);
        assert_eq!(p.extra(), 2);
        p.switched(2);
        assert_eq!(p.begin(), vec![3]);
        assert_eq!(p.extra(), 2);
    }

    #[test]
    fn a_failure_halts_after_the_drains_in_flight() {
        let mut p = SurgePlanner::new(&[1, 2, 3, 4], k(1));
        p.begin();
        p.switched(1);
        assert_eq!(p.begin(), vec![2]);
        p.fail(2);
        assert_eq!(p.phase(), Phase::Halting, "slot 1's old process drains");
        assert_eq!(p.begin(), Vec::<u32>::new());
        p.drained(1);
        assert_eq!(p.phase(), Phase::Halted);
        assert_eq!(
            p.steps(),
            &[
                (1, SurgeStep::Done),
                (2, SurgeStep::Failed),
                (3, SurgeStep::Skipped),
                (4, SurgeStep::Skipped)
            ]
        );
    }

    #[test]
    #[should_panic(expected = "bug: slot 1 cannot go from Waiting to Done")]
    fn draining_a_slot_never_switched_is_a_bug() {
        let mut p = SurgePlanner::new(&[1], k(1));
        p.drained(1);
    }
}
