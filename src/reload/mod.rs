//! The zero-downtime rolling reload (`sysmgr reload`), usable as a library.
//!
//! Split like zincati's update agent: [`plan`] is the pure state machine (which instance
//! next, when to halt), [`engine`] drives it against a [`Units`] implementation and measures
//! each instance, [`units`] is that small trait with the zbus client as its implementation,
//! [`health`] is the optional gate a new instance passes before the rollout moves on,
//! and the caller holds [`crate::lock`] so two changes of one app never interleave.
//!
//! A benchmark calls [`rollout`] with a connected [`crate::systemd::dbus::Systemd`] and reads
//! the per-instance timings from the returned [`Summary`].

pub mod engine;
pub mod health;
pub mod plan;
pub mod surge;
pub mod units;

#[cfg(test)]
mod tests;

pub use engine::{rollout, Event, Failure, FailureReason, InstanceReport, Options, Summary};
pub use plan::{Phase, Planner, Step};
pub use units::{JobOutcome, Units};
