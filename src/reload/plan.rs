//! The rollout planner: which instance to restart next, and when to stop.
//!
//! Pure bookkeeping with no I/O and no clock, so every rule is unit-tested directly. Each
//! instance moves through named [`Step`]s, one method per transition; the rollout as a whole
//! is in a [`Phase`]. The engine ([`super::engine`]) does the talking to systemd and calls
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

/// The plan: instances in order, each with its step.
#[derive(Debug, Clone)]
pub struct Planner {
    instances: Vec<(u32, Step)>,
    parallel: usize,
    halting: bool,
}

impl Planner {
    /// A rollout over `instances` (in that order), `parallel` at a time.
    pub fn new(instances: &[u32], parallel: NonZeroUsize) -> Self {
        Self {
            instances: instances.iter().map(|&i| (i, Step::Waiting)).collect(),
            parallel: parallel.get(),
            halting: false,
        }
    }

    /// The step of `instance`, if it is in the plan.
    pub fn step(&self, instance: u32) -> Option<Step> {
        self.instances
            .iter()
            .find(|(i, _)| *i == instance)
            .map(|(_, s)| *s)
    }

    /// Every instance and its step, in plan order.
    pub fn steps(&self) -> &[(u32, Step)] {
        &self.instances
    }

    /// How many instances are between `begin` and `Ready`/`Failed`.
    pub fn in_flight(&self) -> usize {
        self.instances
            .iter()
            .filter(|(_, s)| matches!(s, Step::Restarting | Step::Settling))
            .count()
    }

    /// The rollout's phase.
    pub fn phase(&self) -> Phase {
        if self.halting {
            if self.in_flight() == 0 {
                Phase::Halted
            } else {
                Phase::Halting
            }
        } else if self.instances.iter().all(|(_, s)| *s == Step::Ready) {
            Phase::Completed
        } else {
            Phase::Rolling
        }
    }

    /// Transition `Waiting -> Restarting` for as many instances as the parallelism allows,
    /// in plan order; returns them. None once the rollout is halting.
    pub fn begin(&mut self) -> Vec<u32> {
        if self.halting {
            return Vec::new();
        }
        let free = self.parallel.saturating_sub(self.in_flight());
        let mut begun = Vec::new();
        for (i, step) in &mut self.instances {
            if begun.len() == free {
                break;
            }
            if *step == Step::Waiting {
                *step = Step::Restarting;
                begun.push(*i);
            }
        }
        begun
    }

    /// Transition `Restarting -> Settling`: systemd finished the job and a new process runs.
    pub fn job_done(&mut self, instance: u32) {
        self.transition(instance, Step::Restarting, Step::Settling);
    }

    /// Transition `Settling -> Ready`: the new process stayed up (and is healthy).
    pub fn ready(&mut self, instance: u32) {
        self.transition(instance, Step::Settling, Step::Ready);
    }

    /// Transition `Restarting | Settling -> Failed`; the rollout halts: every instance still
    /// `Waiting` becomes `Skipped` and nothing new begins.
    pub fn fail(&mut self, instance: u32) {
        let step = self.step_mut(instance);
        assert!(
            matches!(*step, Step::Restarting | Step::Settling),
            "bug: instance {instance} cannot fail from {step:?}"
        );
        *step = Step::Failed;
        self.halting = true;
        for (_, s) in &mut self.instances {
            if *s == Step::Waiting {
                *s = Step::Skipped;
            }
        }
    }

    fn step_mut(&mut self, instance: u32) -> &mut Step {
        self.instances
            .iter_mut()
            .find(|(i, _)| *i == instance)
            .map(|(_, s)| s)
            .unwrap_or_else(|| panic!("bug: instance {instance} is not in the plan"))
    }

    fn transition(&mut self, instance: u32, from: Step, to: Step) {
        let step = self.step_mut(instance);
        assert!(
            *step == from,
            "bug: instance {instance} cannot go from {step:?} to {to:?}"
        );
        *step = to;
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
