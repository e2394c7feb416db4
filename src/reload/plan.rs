//! The rollout planner: which instance to restart next, and when to stop.
//!
//! Pure bookkeeping with no I/O and no clock, so every rule is unit-tested directly. Each
//! instance moves through named [`Step`]s, one method per transition; the rollout as a whole
//! is in a [`Phase`]. The rules both rollouts share (the budget, halting, skipping) are
//! [`Plan`]'s, generic over the step type ([`PlanStep`]): [`Planner`] is the in-place
//! rollout's, `super::surge::SurgePlanner` the surge rollout's. The engine ([`super::engine`]) does the talking to systemd and calls
//! these transitions as the answers come in.
//!
//! ```text
//!   Waiting --begin--> Restarting --job_done--> Settling --ready--> Ready
//!      |                    |                      |
//!      |                    +------fail------------+--> Failed   (phase: Rolling -> Halting)
//!      +--(halted: never begun)--> Skipped                       (phase: Halting -> Halted)
//! ```

use std::num::NonZeroUsize;

/// Where one instance is in the rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Not restarted yet: still serves the previous version.
    Waiting,
    /// The restart job is enqueued; waiting for systemd to finish it.
    Restarting,
    /// The job is done and a new process runs; watching it stay up for the min-ready window,
    /// then asking its health check, if the app has one.
    Settling,
    /// The new process is up and stayed up.
    Ready,
    /// The restart failed: the rollout halts.
    Failed,
    /// Never restarted because the rollout halted first; still serves the previous version.
    Skipped,
}

/// Where the rollout as a whole is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Restarting instances, at most `parallel` at a time.
    Rolling,
    /// An instance failed: nothing new is begun, the restarts in flight are waited for.
    Halting,
    /// Every instance is ready.
    Completed,
    /// An instance failed and nothing is in flight any more.
    Halted,
}

impl PlanStep for Step {
    const ITEM: &'static str = "instance";
    const WAITING: Self = Self::Waiting;
    const BEGUN: Self = Self::Restarting;
    const DONE: Self = Self::Ready;
    const FAILED: Self = Self::Failed;
    const SKIPPED: Self = Self::Skipped;

    fn in_budget(self) -> bool {
        matches!(self, Self::Restarting | Self::Settling)
    }

    fn in_flight(self) -> bool {
        self.in_budget()
    }
}

/// The steps a [`Plan`] moves its items through: the in-place rollout's [`Step`], and the
/// surge rollout's (`super::surge::SurgeStep`).
pub trait PlanStep: Copy + Eq + std::fmt::Debug {
    /// What the plan's items are, for messages: `instance` or `slot`.
    const ITEM: &'static str;
    /// Not begun.
    const WAITING: Self;
    /// What [`Plan::begin`] moves an item to.
    const BEGUN: Self;
    /// Finished well; the plan is complete when every item is.
    const DONE: Self;
    /// Failed: the plan halts.
    const FAILED: Self;
    /// Never begun because the plan halted.
    const SKIPPED: Self;
    /// Counts against the budget (`--parallel`, `--surge`); only such a step can fail.
    fn in_budget(self) -> bool;
    /// Still has work in flight: a halting plan waits for it.
    fn in_flight(self) -> bool;
}

/// The plan: items (instances, or slots) in order, each with its step, at most `budget` in
/// a step that counts against it. Pure bookkeeping; the step type says what counts.
#[derive(Debug, Clone)]
pub struct Plan<S> {
    items: Vec<(u32, S)>,
    budget: usize,
    halting: bool,
}

/// The in-place rollout's plan: restart jobs, `parallel` at a time.
pub type Planner = Plan<Step>;

impl<S: PlanStep> Plan<S> {
    /// A plan over `items` (in that order), at most `budget` at a time.
    pub fn new(items: &[u32], budget: NonZeroUsize) -> Self {
        Self {
            items: items.iter().map(|&i| (i, S::WAITING)).collect(),
            budget: budget.get(),
            halting: false,
        }
    }

    /// The step of `item`, if it is in the plan.
    pub fn step(&self, item: u32) -> Option<S> {
        self.items.iter().find(|(i, _)| *i == item).map(|(_, s)| *s)
    }

    /// Every item and its step, in plan order.
    pub fn steps(&self) -> &[(u32, S)] {
        &self.items
    }

    /// How many items are in `step`.
    pub fn count(&self, step: S) -> usize {
        self.items.iter().filter(|(_, s)| *s == step).count()
    }

    /// How many items count against the budget now.
    pub fn in_budget(&self) -> usize {
        self.items.iter().filter(|(_, s)| s.in_budget()).count()
    }

    /// How many items have work in flight.
    pub fn in_flight(&self) -> usize {
        self.items.iter().filter(|(_, s)| s.in_flight()).count()
    }

    /// The plan's phase.
    pub fn phase(&self) -> Phase {
        if self.halting {
            if self.in_flight() == 0 {
                Phase::Halted
            } else {
                Phase::Halting
            }
        } else if self.items.iter().all(|(_, s)| *s == S::DONE) {
            Phase::Completed
        } else {
            Phase::Rolling
        }
    }

    /// `WAITING -> BEGUN` for as many items as the budget allows, in plan order; returns
    /// them. None once the plan is halting.
    pub fn begin(&mut self) -> Vec<u32> {
        if self.halting {
            return Vec::new();
        }
        let free = self.budget.saturating_sub(self.in_budget());
        let mut begun = Vec::new();
        for (i, step) in &mut self.items {
            if begun.len() == free {
                break;
            }
            if *step == S::WAITING {
                *step = S::BEGUN;
                begun.push(*i);
            }
        }
        begun
    }

    /// A step that counts against the budget `-> FAILED`; the plan halts: every item still
    /// `WAITING` becomes `SKIPPED` and nothing new begins.
    pub fn fail(&mut self, item: u32) {
        let step = self.step_mut(item);
        assert!(
            step.in_budget(),
            "bug: {} {item} cannot fail from {step:?}",
            S::ITEM
        );
        *step = S::FAILED;
        self.halting = true;
        for (_, s) in &mut self.items {
            if *s == S::WAITING {
                *s = S::SKIPPED;
            }
        }
    }

    fn step_mut(&mut self, item: u32) -> &mut S {
        self.items
            .iter_mut()
            .find(|(i, _)| *i == item)
            .map(|(_, s)| s)
            .unwrap_or_else(|| panic!("bug: {} {item} is not in the plan", S::ITEM))
    }

    /// `from -> to` for `item`; a bug if it is not in `from`.
    pub(super) fn transition(&mut self, item: u32, from: S, to: S) {
        let step = self.step_mut(item);
        assert!(
            *step == from,
            "bug: {} {item} cannot go from {step:?} to {to:?}",
            S::ITEM
        );
        *step = to;
    }
}

impl Planner {
    /// Transition `Restarting -> Settling`: systemd finished the job and a new process runs.
    pub fn job_done(&mut self, instance: u32) {
        self.transition(instance, Step::Restarting, Step::Settling);
    }

    /// Transition `Settling -> Ready`: the new process stayed up (and is healthy).
    pub fn ready(&mut self, instance: u32) {
        self.transition(instance, Step::Settling, Step::Ready);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(n: usize) -> NonZeroUsize {
        NonZeroUsize::new(n).unwrap()
    }

    #[test]
    fn one_at_a_time_in_plan_order() {
        let mut p = Planner::new(&[1, 2, 3], k(1));
        assert_eq!(p.phase(), Phase::Rolling);
        assert_eq!(p.begin(), vec![1]);
        // Nothing more while instance 1 is in flight.
        assert_eq!(p.begin(), Vec::<u32>::new());
        p.job_done(1);
        assert_eq!(
            p.begin(),
            Vec::<u32>::new(),
            "settling still counts as in flight"
        );
        p.ready(1);
        assert_eq!(p.begin(), vec![2]);
        p.job_done(2);
        p.ready(2);
        assert_eq!(p.begin(), vec![3]);
        p.job_done(3);
        p.ready(3);
        assert_eq!(p.begin(), Vec::<u32>::new());
        assert_eq!(p.phase(), Phase::Completed);
    }

    #[test]
    fn parallel_k_keeps_at_most_k_in_flight() {
        let mut p = Planner::new(&[1, 2, 3, 4, 5], k(2));
        assert_eq!(p.begin(), vec![1, 2]);
        assert_eq!(p.in_flight(), 2);
        p.job_done(2);
        p.ready(2);
        assert_eq!(p.begin(), vec![3]);
        p.job_done(1);
        p.ready(1);
        p.job_done(3);
        p.ready(3);
        assert_eq!(p.begin(), vec![4, 5]);
        p.job_done(4);
        p.ready(4);
        p.job_done(5);
        p.ready(5);
        assert_eq!(p.phase(), Phase::Completed);
    }

    #[test]
    fn a_failure_halts_and_skips_the_rest() {
        let mut p = Planner::new(&[1, 2, 3, 4], k(1));
        assert_eq!(p.begin(), vec![1]);
        p.fail(1);
        assert_eq!(p.phase(), Phase::Halted);
        assert_eq!(p.begin(), Vec::<u32>::new());
        assert_eq!(
            p.steps(),
            &[
                (1, Step::Failed),
                (2, Step::Skipped),
                (3, Step::Skipped),
                (4, Step::Skipped)
            ]
        );
    }

    #[test]
    fn a_failure_while_others_are_in_flight_waits_for_them() {
        let mut p = Planner::new(&[1, 2, 3, 4], k(2));
        assert_eq!(p.begin(), vec![1, 2]);
        p.job_done(2);
        p.fail(2);
        assert_eq!(p.phase(), Phase::Halting, "instance 1 is still restarting");
        assert_eq!(p.begin(), Vec::<u32>::new());
        p.job_done(1);
        p.ready(1);
        assert_eq!(p.phase(), Phase::Halted);
        assert_eq!(p.step(1), Some(Step::Ready));
        assert_eq!(p.step(3), Some(Step::Skipped));
    }

    #[test]
    fn failing_in_the_settle_window_halts_too() {
        let mut p = Planner::new(&[7, 8], k(1));
        p.begin();
        p.job_done(7);
        p.fail(7);
        assert_eq!(p.phase(), Phase::Halted);
        assert_eq!(p.step(8), Some(Step::Skipped));
    }

    #[test]
    fn an_empty_plan_is_complete() {
        let mut p = Planner::new(&[], k(1));
        assert_eq!(p.begin(), Vec::<u32>::new());
        assert_eq!(p.phase(), Phase::Completed);
    }

    #[test]
    #[should_panic(expected = "bug: instance 1 cannot go from Waiting to Ready")]
    fn skipping_a_step_is_a_bug() {
        let mut p = Planner::new(&[1], k(1));
        p.ready(1);
    }

    #[test]
    #[should_panic(expected = "bug: instance 2 cannot fail from Waiting")]
    fn failing_an_instance_never_begun_is_a_bug() {
        let mut p = Planner::new(&[1, 2], k(1));
        p.fail(2);
    }
}
