//! The surge rollout's view of an installed app: systemd for the units, the app's wants
//! links for which generation is each slot's ([`crate::reload::surge`]).

use std::cell::RefCell;
use std::time::Duration;

use crate::install::UnitDir;
use crate::names::{Generations, UnitNames};
use crate::reload::surge::SurgeUnits;
use crate::reload::{JobOutcome, Units};
use crate::systemd::dbus::{DbusError, JobResult, ServiceState, Systemd};
use crate::systemd::Manager;

/// [`SurgeUnits`] over systemd and the app's wants links.
///
/// The links are in `dir`: the unit directory `sysmgr generate` wrote, or for an app made
/// by sysmgr's generator, the generator's directory, which systemd empties before every
/// run; for those the generations are also recorded where the generator reads them
/// ([`crate::install::write_generations`]), so the next `daemon-reload` links the same.
#[derive(Debug)]
pub struct SurgeSlots<'a> {
    sd: &'a Systemd,
    dir: &'a UnitDir,
    names: UnitNames,
    /// `Some` for an app made by the generator: its manager, and the generations recorded.
    generator: Option<(Manager, RefCell<Generations>)>,
}

impl<'a> SurgeSlots<'a> {
    /// The slots of `app`, whose wants links are in `dir` (written by `sysmgr generate`).
    pub fn new(sd: &'a Systemd, dir: &'a UnitDir, app: &str) -> Self {
        Self {
            sd,
            dir,
            names: UnitNames::new(app),
            generator: None,
        }
    }

    /// The slots of `app` made by sysmgr's generator into `dir`, now at `generations`.
    pub fn from_generator(
        sd: &'a Systemd,
        dir: &'a UnitDir,
        app: &str,
        manager: Manager,
        generations: Generations,
    ) -> Self {
        Self {
            generator: Some((manager, RefCell::new(generations))),
            ..Self::new(sd, dir, app)
        }
    }
}

impl Units for SurgeSlots<'_> {
    async fn state(&self, unit: &str) -> Result<ServiceState, DbusError> {
        Units::state(self.sd, unit).await
    }

    async fn reset_failed(&self, unit: &str) -> Result<(), DbusError> {
        Units::reset_failed(self.sd, unit).await
    }

    async fn restart(&self, unit: &str, wait: Option<Duration>) -> Result<JobOutcome, DbusError> {
        Units::restart(self.sd, unit, wait).await
    }

    async fn start(&self, unit: &str, wait: Option<Duration>) -> Result<JobOutcome, DbusError> {
        Units::start(self.sd, unit, wait).await
    }

    async fn stop(&self, unit: &str) -> Result<JobResult, DbusError> {
        Units::stop(self.sd, unit).await
    }

    async fn journal(&self, unit: &str, lines: usize) -> Vec<String> {
        Units::journal(self.sd, unit, lines).await
    }
}

impl SurgeUnits for SurgeSlots<'_> {
    async fn switch(&self, slot: u32, from: &str, to: &str) -> Result<(), String> {
        let generation = |unit: &str| {
            self.names
                .slot_of(unit)
                .filter(|&(s, _)| s == slot)
                .map(|(_, g)| g)
                .ok_or_else(|| format!("bug: `{unit}` is not a unit of slot {slot}"))
        };
        let (from, to) = (generation(from)?, generation(to)?);
        let app = self.names.app();
        self.dir
            .switch_slot(app, slot, from, to)
            .map_err(|e| e.to_string())?;
        if let Some((manager, generations)) = &self.generator {
            let mut next = generations.borrow().clone();
            next.set(slot, to);
            if let Err(e) = crate::install::write_generations(*manager, app, &next) {
                // All or nothing: the link goes back too.
                let _ = self.dir.switch_slot(app, slot, to, from);
                return Err(e.to_string());
            }
            *generations.borrow_mut() = next;
        }
        Ok(())
    }
}
