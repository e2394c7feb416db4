//! The surge rollout's view of an installed app: systemd for the units, the unit directory
//! for the slot's wants link ([`crate::reload::surge`]).

use std::time::Duration;

use crate::install::UnitDir;
use crate::names::UnitNames;
use crate::reload::surge::SurgeUnits;
use crate::reload::{JobOutcome, Units};
use crate::systemd::dbus::{DbusError, JobResult, ServiceState, Systemd};

/// [`SurgeUnits`] over systemd and the app's unit directory.
#[derive(Debug)]
pub struct SurgeSlots<'a> {
    sd: &'a Systemd,
    dir: &'a UnitDir,
    names: UnitNames,
}

impl<'a> SurgeSlots<'a> {
    /// The slots of `app`, whose wants links are in `dir`.
    pub fn new(sd: &'a Systemd, dir: &'a UnitDir, app: &str) -> Self {
        Self {
            sd,
            dir,
            names: UnitNames::new(app),
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
        self.dir
            .switch_slot(self.names.app(), slot, generation(from)?, generation(to)?)
            .map_err(|e| e.to_string())
    }
}
