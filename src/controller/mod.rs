//! The controller: an installed app and what can be done to it, as a library.
//!
//! The command line used to hold these operations (`cli/lifecycle.rs` and one file per
//! command); now `cli/` parses, calls and prints, and this layer does the work, so a deploy
//! tool or a test can call it too. It prints nothing: operations return what happened, and the
//! caller words it.
//!
//! An [`App`] is *opened* with the app's [`AppLock`] already held, and reads the installed
//! app (its units, its instance list) only then: whatever it read cannot change under it
//! until it is dropped. Read-only views ([`find`], [`status::collect`]) take no lock, so an
//! unprivileged user can still look.
//!
//! Every operation that changes the app also leaves its entries in the journal
//! ([`crate::journal`]): the rollout's events as they come, and one summary per operation.

pub mod memory;
pub mod status;
pub mod surge;
pub mod timers;

use std::collections::{BTreeMap, BTreeSet};
use std::num::{NonZeroU32, NonZeroUsize};
use std::path::PathBuf;

use crate::install::{InstalledApp, UnitDir};
use crate::journal::{Action, Record};
use crate::lock::AppLock;
use crate::names::UnitNames;
use crate::reload::surge::{surge_rollout, SurgeEvent, SurgeStep, SurgeSummary};
use crate::reload::{self, Event, Options, Step, Summary};
use crate::systemd::dbus::{
    ActiveState, DbusError, JobEnd, JobKind, JobMode, JobResult, ServiceState, SocketResult,
    Systemd, UnitListing,
};
use crate::systemd::Manager;
use surge::SurgeSlots;

/// How many jobs of its own sysmgr keeps queued in systemd at once. Over the bus, systemd
/// watches the client behind every queued job with a match rule on its own bus connection,
/// and dbus-daemon allows it 512: past that, job signals went missing (seen: `scale` from 512
/// to 1024 instances over the bus waited forever for jobs systemd had finished).
const JOB_WINDOW: usize = 128;

/// Why an operation on an installed app failed: the app is not there, or the operation ran
/// and its outcome failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// An app named on the command line with no sysmgr units in the unit directory.
    #[error("app `{name}` is not generated: `{}` holds no units of sysmgr's for it{known}; start it from its app file with `sysmgr start FILE` (or write its units with `sysmgr generate FILE`)", dir.display())]
    NotGenerated {
        /// The name given.
        name: String,
        /// The directory looked in.
        dir: PathBuf,
        /// ` (apps there: a, b)` or empty.
        known: String,
    },
    /// Some instances are not running after a start.
    #[error("{failed} of {total} instances of `{app}` are not running: {units}; see `sysmgr logs {app}`")]
    NotRunning {
        /// The app.
        app: String,
        /// How many failed.
        failed: usize,
        /// How many there are.
        total: usize,
        /// The failed units.
        units: String,
    },
    /// The rolling reload (or restart) stopped at a failed instance.
    #[error("{verb} of `{app}` halted: `{unit}` failed ({reason}); the instances not yet restarted still run the previous version; {next}")]
    Halted {
        /// `reload` or `restart`.
        verb: &'static str,
        /// The app.
        app: String,
        /// The failed unit.
        unit: String,
        /// Why, in words.
        reason: String,
        /// What to do: fix the app and run which command again.
        next: String,
    },
    /// A scale failed; says what it changed (the cause follows in the chain).
    #[error("cannot scale `{app}` from {from} to {to}; {changed}")]
    ScaleFailed {
        /// The app.
        app: String,
        /// The count before.
        from: u32,
        /// The count asked for.
        to: u32,
        /// What was changed: `nothing was changed`, or the count on disk and the instances
        /// started and stopped.
        changed: String,
    },
    /// A shared socket that systemd failed while instances still serve on the listening
    /// socket they inherited: systemd closed its side, and cannot bind the address again
    /// until they stop (the shared socket has no `ReusePort=`).
    #[error("cannot {verb} `{app}` without stopping it: its socket `{socket}` failed (systemd's result: `{result}`) and systemd closed it, while {holders} still serve on the listening socket they inherited; systemd cannot listen on that address again until they stop; `sysmgr restart {app}` stops every instance and starts the app again (connections are refused for that moment)")]
    SocketWedged {
        /// `start` or `reload`.
        verb: &'static str,
        /// The app.
        app: String,
        /// The failed socket.
        socket: String,
        /// systemd's `Result` of the socket.
        result: SocketResult,
        /// The running instances, listed.
        holders: String,
    },
    /// A surge reload moved instances to their next generation, then systemd could not be
    /// reloaded to read the moved wants links.
    #[error("every new process of `{app}` serves, but systemd could not be reloaded to read the moved wants links ({cause}); run `systemctl daemon-reload`, or `sysmgr start {app}` may start the previous generation's units beside them")]
    NotReloaded {
        /// The app.
        app: String,
        /// Why.
        cause: String,
    },
    /// `--surge` asked of an app with per-instance sockets.
    #[error("cannot surge-reload `{app}`: `{socket}` gives each instance a listening socket of its own, so a new process beside the old one would listen apart, and stopping the old one would drop the connections queued on its socket; reload it in place with `--surge 0`")]
    SurgeRefused {
        /// The app.
        app: String,
        /// The per-instance socket template.
        socket: String,
    },
    /// A stop job did not end with `done`.
    #[error("systemd could not stop `{unit}`: the job ended with `{result}`")]
    StopFailed {
        /// The unit.
        unit: String,
        /// The job result.
        result: String,
    },
}

/// What a reload did: the rollout, and what its halt put back.
#[derive(Debug, Clone)]
pub struct Reloaded {
    /// The rollout.
    pub summary: Summary,
    /// For a surge rollout, what it did slot by slot (the drains included).
    pub surge: Option<SurgeSummary>,
    /// `None` when the rollout completed, or halted with no last good generation kept (the
    /// unit files did not change).
    pub put_back: Option<PutBack>,
}

/// What a halted reload put back of the last good generation it kept.
#[derive(Debug, Clone)]
pub enum PutBack {
    /// The kept files could not be put back (why): the new version's stay installed.
    Failed(String),
    /// The kept files are back.
    Done {
        /// The files and links written back, and the new version's files removed.
        files: Vec<PathBuf>,
        /// Whether systemd re-read them (why not, if it did not).
        reloaded: Result<(), String>,
        /// The failed instance, started again on the previous version: its main PID, or
        /// why it did not start (it is stopped then). `None` when it was not tried: systemd
        /// was not reloaded, or the previous version did not want that instance.
        restarted: Option<(String, Result<u32, String>)>,
    },
}

/// How a failed scale left the app.
#[derive(Debug)]
enum ScaleOutcome {
    /// No instance moved and the old count is back on disk.
    Restored,
    /// No instance moved, but the new count stays on disk (why putting it back failed).
    NotRestored(Option<String>),
    /// Instances were started or stopped: the running ones before and now, or why they
    /// could not be read back.
    Moved(Result<(BTreeSet<u32>, BTreeSet<u32>), String>),
}

/// The `changed` of [`ControlError::ScaleFailed`]. `wants` names where the count is kept.
fn what_scale_changed(
    names: &UnitNames,
    from: u32,
    to: u32,
    wants: &str,
    outcome: ScaleOutcome,
) -> String {
    let name = names.app();
    let back = format!("`sysmgr scale {name} {from}` goes back");
    match outcome {
        ScaleOutcome::Restored => "nothing was changed".to_string(),
        ScaleOutcome::NotRestored(why) => {
            let why = why.map_or(String::new(), |e| {
                format!(", and putting {from} back failed ({e})")
            });
            format!("no instance was started or stopped, but the count on disk is {to} ({wants}){why}; {back}")
        }
        ScaleOutcome::Moved(read) => {
            let moved = match read {
                Ok((before, now)) => {
                    let units = |set: Vec<u32>| {
                        if set.is_empty() {
                            "none".to_string()
                        } else {
                            set.iter()
                                .map(|&i| format!("`{}`", names.instance(i)))
                                .collect::<Vec<_>>()
                                .join(", ")
                        }
                    };
                    format!(
                        "started {}, stopped {}",
                        units(now.difference(&before).copied().collect()),
                        units(before.difference(&now).copied().collect())
                    )
                }
                Err(e) => format!(
                    "instances may have been started or stopped, which could not be read back ({e})"
                ),
            };
            format!(
                "changed: the count on disk is {to} ({wants}), {moved}; once the cause is fixed `sysmgr scale {name} {to}` finishes it, {back}"
            )
        }
    }
}

/// The unit directory of `manager`.
pub fn unit_dir(manager: Manager) -> anyhow::Result<UnitDir> {
    Ok(UnitDir::default_for(manager)?)
}

/// The installed app `name`, read without the lock (for looking only): generated into
/// `dir` by `sysmgr generate`, or by sysmgr's systemd generator into the manager's
/// generator directory; else [`ControlError::NotGenerated`].
pub fn find(dir: &UnitDir, manager: Manager, name: &str) -> anyhow::Result<InstalledApp> {
    if let Some(app) = dir.app(name)? {
        return Ok(app);
    }
    if let Some(generated) = manager.generator_dir() {
        if let Some(mut app) = UnitDir::new(generated).app(name)? {
            app.from_generator = true;
            return Ok(app);
        }
    }
    let apps = dir.installed_apps()?;
    let known = if apps.is_empty() {
        String::new()
    } else {
        let names: Vec<&str> = apps.iter().map(|a| a.name.as_str()).collect();
        format!(" (apps there: {})", names.join(", "))
    };
    Err(ControlError::NotGenerated {
        name: name.to_string(),
        dir: dir.path().to_path_buf(),
        known,
    }
    .into())
}

/// An installed app, opened under its lock.
#[derive(Debug)]
pub struct App {
    manager: Manager,
    dir: UnitDir,
    installed: InstalledApp,
    names: UnitNames,
    _lock: AppLock,
}

/// What [`App::scale`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scaled {
    /// The app is stopped: only the persisted count changed.
    CountOnly {
        /// The new count.
        to: u32,
    },
    /// Instances were started or stopped to match the new count.
    Now {
        /// The count before.
        from: u32,
        /// The new count.
        to: u32,
        /// How many were started.
        started: usize,
        /// How many were stopped.
        stopped: usize,
    },
}

/// What [`App::delete`] did.
#[derive(Debug, Clone)]
pub struct Deleted {
    /// How many instances were up and are now stopped.
    pub stopped: usize,
    /// The files and links removed.
    pub removed: Vec<PathBuf>,
    /// The directory they were removed from.
    pub dir: PathBuf,
}

impl App {
    /// Opens the installed app `name`. Takes the held `lock` as proof that nothing else
    /// changes the app while it is read and acted on.
    pub fn open(manager: Manager, name: &str, lock: AppLock) -> anyhow::Result<Self> {
        let dir = unit_dir(manager)?;
        let installed = find(&dir, manager, name)?;
        Ok(Self {
            manager,
            dir,
            names: UnitNames::new(name),
            installed,
            _lock: lock,
        })
    }

    /// The app's name.
    pub fn name(&self) -> &str {
        &self.installed.name
    }

    /// The app as found installed.
    pub fn installed(&self) -> &InstalledApp {
        &self.installed
    }

    /// The instances the target starts (the persisted count), sorted.
    pub fn instances(&self) -> &[u32] {
        &self.installed.instances
    }

    /// The unit instance `slot` runs as: `NAME@N.service`, or `NAME@N:1.service` after a
    /// surge reload moved it to its next generation.
    pub fn unit(&self, slot: u32) -> String {
        self.names.unit_of(slot, &self.installed.generations)
    }

    /// The units of the wanted instances, in order.
    fn wanted_units(&self) -> Vec<String> {
        self.instances().iter().map(|&i| self.unit(i)).collect()
    }

    /// Enables `NAME.target` so the app starts at boot; returns the target's name if that
    /// changed anything. A generator's units cannot be enabled (the generator links the
    /// target into the default target itself): nothing to do.
    pub async fn enable(&self, sd: &Systemd) -> Result<Option<String>, DbusError> {
        let target = self.names.target();
        if self.installed.from_generator {
            return Ok(None);
        }
        let changed = sd.enable_unit_files(std::slice::from_ref(&target)).await?;
        Ok(changed.then_some(target))
    }

    /// The journal entries of `action` on this app.
    fn record(&self, action: Action) -> Record {
        Record::new(
            action,
            self.name(),
            self.manager,
            self.installed.source.as_deref(),
        )
    }

    /// Starts `NAME.target` and returns the state of every wanted instance afterwards
    /// (with its instance number); the caller tells which ones run.
    pub async fn start(&self, sd: &Systemd) -> Result<Vec<(u32, ServiceState)>, DbusError> {
        let record = self.record(Action::Start);
        let result = self.start_target(sd).await;
        match &result {
            Ok(states) => record.started(states),
            Err(e) => record.failed(&anyhow::Error::new(e.clone())),
        }
        result
    }

    async fn start_target(&self, sd: &Systemd) -> Result<Vec<(u32, ServiceState)>, DbusError> {
        // Clear failures left from earlier runs, so the start limit does not refuse the start.
        // Concurrently: the client bounds how many calls are in flight.
        let units = self.wanted_units();
        futures_util::future::try_join_all(units.iter().map(|unit| sd.reset_failed_unit(unit)))
            .await?;
        // The target is ordered after its instances, so its job ends once they started
        // (or failed: `Wants=` does not propagate failure, the states tell). Followed by
        // `run_job`, which also polls the target's job: a `daemon-reexec` meanwhile drops the
        // connection or the subscription, and the job's signal never comes. However it
        // ended (even unobserved), the instances' states below say what runs.
        sd.run_job(JobKind::Start, &self.names.target(), JobMode::Replace, None)
            .await?;
        let states = unit_states(sd, &units).await?;
        Ok(self.instances().iter().copied().zip(states).collect())
    }

    /// Clears the app's sockets that systemd failed, so that starting an instance starts
    /// them again; returns them with systemd's reason. A shared socket cannot listen again
    /// while instances still hold the listening socket it handed them (systemd closed only
    /// its own copy, and the address stays bound): then nothing is changed and the error is
    /// [`ControlError::SocketWedged`]. No instance can fail a socket any more (their
    /// crash-loop brake is `sysmgr exec`'s), but systemd's trigger limit still can, and so
    /// can an address taken by another program.
    pub async fn recover_sockets(
        &self,
        sd: &Systemd,
        verb: &'static str,
    ) -> anyhow::Result<Vec<(String, SocketResult)>> {
        // One call: systemd keeps a failed unit loaded, so the manager's list has every failed
        // socket. Reading each instance instead would load (and unload) every instance unit
        // one by one, which takes systemd minutes for a thousand of them.
        let files: BTreeSet<String> = self
            .dir
            .app_files(self.name())?
            .iter()
            .filter_map(|p| p.file_name().map(|f| f.to_string_lossy().into_owned()))
            .collect();
        let ours = |unit: &str| {
            files.contains(unit)
                || unit.split_once('@').is_some_and(|(stem, rest)| {
                    rest.split_once('.')
                        .is_some_and(|(_, suffix)| files.contains(&format!("{stem}@.{suffix}")))
                })
        };
        let listed = sd.list_units(&[format!("{}*.socket", self.name())]).await?;
        let mut failed = Vec::new();
        for row in listed {
            if row.active_state == ActiveState::Failed && ours(&row.name) {
                let result = sd.socket_result(&row.name).await?;
                failed.push((row.name, result));
            }
        }
        if failed.is_empty() {
            return Ok(failed);
        }
        // Per-instance sockets (`NAME@N.socket`) have `ReusePort=`: they bind again beside the
        // old one. A shared one cannot while any instance runs.
        let running = running_units(sd, self.name()).await?;
        if let Some((socket, result)) = failed.iter().find(|(s, _)| !s.contains('@')) {
            if !running.is_empty() {
                let holders: Vec<String> = running.into_iter().map(|(_, unit)| unit).collect();
                return Err(ControlError::SocketWedged {
                    verb,
                    app: self.name().to_string(),
                    socket: socket.clone(),
                    result: result.clone(),
                    holders: holders.join(", "),
                }
                .into());
            }
        }
        for (socket, _) in &failed {
            sd.reset_failed_unit(socket).await?;
        }
        Ok(failed)
    }

    /// Stops every instance and the sockets, then starts the app again: the only way back
    /// for a shared socket that failed while instances held it ([`ControlError::SocketWedged`]).
    /// Returns the state of every wanted instance afterwards, like [`Self::start`].
    pub async fn restart_stopped(&self, sd: &Systemd) -> anyhow::Result<Vec<(u32, ServiceState)>> {
        let record = self.record(Action::Restart);
        let result = async {
            self.stop_all(sd).await?;
            self.recover_sockets(sd, "restart").await?;
            Ok::<_, anyhow::Error>(self.start_target(sd).await?)
        }
        .await;
        match &result {
            Ok(states) => record.started(states),
            Err(e) => record.failed(e),
        }
        result
    }

    /// Stops the target and every loaded instance with its sockets; returns how many
    /// instances were up.
    pub async fn stop(&self, sd: &Systemd) -> anyhow::Result<usize> {
        let record = self.record(Action::Stop);
        let result = self.stop_all(sd).await;
        match &result {
            Ok(n) => record.stopped(*n, format!("{n} instances stopped")),
            Err(e) => record.failed(e),
        }
        result
    }

    async fn stop_all(&self, sd: &Systemd) -> anyhow::Result<usize> {
        let name = self.name();
        let loaded: Vec<String> = loaded_instances(sd, name)
            .await?
            .into_iter()
            .map(|u| u.name)
            .collect();
        let up = running_units(sd, name).await?.len();
        stop_instances(sd, name, &loaded, true).await?;
        Ok(up)
    }

    /// The instances that run now.
    pub async fn running(&self, sd: &Systemd) -> Result<BTreeSet<u32>, DbusError> {
        running_instances(sd, self.name()).await
    }

    /// Restarts every wanted instance at once, verified like in a reload.
    pub async fn restart(&self, sd: &Systemd, on_event: &mut dyn FnMut(&Event<'_>)) -> Summary {
        let opts = Options {
            parallel: std::num::NonZeroUsize::new(self.instances().len())
                .unwrap_or(std::num::NonZeroUsize::MIN),
            ..Options::default()
        };
        self.recorded_rollout(Action::Restart, sd, self.instances(), &opts, on_event)
            .await
    }

    /// Restarts one instance (`NAME@N.service`, wanted or beyond the count), verified like
    /// in a reload: systemd stops it through its kill signal (the worker drains) and starts
    /// it again, and the instance counts once it is ready.
    pub async fn restart_instance(
        &self,
        sd: &Systemd,
        instance: u32,
        on_event: &mut dyn FnMut(&Event<'_>),
    ) -> Summary {
        self.recorded_rollout(
            Action::Restart,
            sd,
            &[instance],
            &Options::default(),
            on_event,
        )
        .await
    }

    /// A rollout whose events also go to the journal, with a summary at the end.
    async fn recorded_rollout(
        &self,
        action: Action,
        sd: &Systemd,
        instances: &[u32],
        opts: &Options,
        on_event: &mut dyn FnMut(&Event<'_>),
    ) -> Summary {
        let record = self.record(action);
        let mut both = |event: &Event<'_>| {
            record.rollout_event(event);
            on_event(event);
        };
        let summary = reload::rollout(
            sd,
            self.name(),
            instances,
            &self.installed.generations,
            opts,
            &mut both,
        )
        .await;
        record.rollout_done(&summary);
        summary
    }

    /// The graceful `max_memory_restart` check: restarts the running instances whose memory
    /// is above `limit` bytes, one at a time, through the rollout of `sysmgr reload` (systemd's
    /// normal stop: `KillSignal=`, then `TimeoutStopSec=` to drain, and the next one only once
    /// the successor is ready). The figure is `MemoryCurrent`, or without memory accounting
    /// the summed resident set ([`memory`]). Returns the instances found above the limit
    /// with their figures, and the rollout when there were any.
    pub async fn restart_over_memory(
        &self,
        sd: &Systemd,
        limit: u64,
        on_event: &mut dyn FnMut(&Event<'_>),
    ) -> Result<(Vec<(u32, u64)>, Option<Summary>), DbusError> {
        let states = unit_states(sd, &self.wanted_units()).await?;
        let over: Vec<(u32, u64)> = self
            .instances()
            .iter()
            .zip(&states)
            .filter(|(_, s)| s.is_running())
            .filter_map(|(&i, s)| {
                let bytes = s
                    .memory_bytes
                    .or_else(|| memory::resident_bytes(&s.control_group, s.main_pid))?;
                (bytes > limit).then_some((i, bytes))
            })
            .collect();
        if over.is_empty() {
            return Ok((over, None));
        }
        let instances: Vec<u32> = over.iter().map(|(i, _)| *i).collect();
        let summary = self
            .recorded_rollout(
                Action::MemoryRestart,
                sd,
                &instances,
                &Options::default(),
                on_event,
            )
            .await;
        Ok((over, Some(summary)))
    }

    /// Brings the app's timers in line with its unit files: while the target is active,
    /// starts the installed ones (a `reload FILE` that added `cron_restart`), and stops any
    /// that runs without its file (one that removed it). Returns the timers started and
    /// stopped.
    pub async fn sync_timers(&self, sd: &Systemd) -> anyhow::Result<(Vec<String>, Vec<String>)> {
        let files: Vec<String> = self
            .dir
            .app_files(self.name())?
            .iter()
            .filter_map(|p| p.file_name().map(|f| f.to_string_lossy().into_owned()))
            .collect();
        let target_up = sd.active_state(&self.names.target()).await?.is_up();
        let (mut start, mut stop) = (Vec::new(), Vec::new());
        for timer in [self.names.cron_timer(), self.names.memory_timer()] {
            let up = sd.active_state(&timer).await?.is_up();
            let installed = files.contains(&timer);
            if installed && target_up && !up {
                start.push(timer);
            } else if !installed && up {
                stop.push(timer);
            }
        }
        // At most two, each started at once; followed like any job (see `start_target`).
        for unit in &start {
            sd.run_job(JobKind::Start, unit, JobMode::Replace, None)
                .await?;
        }
        stop_units(sd, &stop).await?;
        Ok((start, stop))
    }

    /// Reloads systemd if the unit files of any wanted instance, of its sockets or of the
    /// target changed on disk since systemd read them (`generate --no-reload`, or a
    /// `reload FILE` killed between writing them and reloading systemd): restarting would
    /// bring back the old version. Returns whether it did.
    pub async fn reload_systemd_if_stale(&self, sd: &Systemd) -> Result<bool, DbusError> {
        let states = unit_states(sd, &self.wanted_units()).await?;
        let mut others: BTreeSet<&str> = states
            .iter()
            .flat_map(|s| s.triggered_by.iter().map(String::as_str))
            .collect();
        let target = self.names.target();
        others.insert(&target);
        let mut stale = states.iter().any(|s| s.need_daemon_reload);
        for unit in others {
            if stale {
                break;
            }
            stale = sd.need_daemon_reload(unit).await?;
        }
        if stale {
            sd.reload().await?;
        }
        Ok(stale)
    }

    /// The rolling reload of every wanted instance. A rollout that completes forgets the
    /// last good generation `reload FILE` kept (the new units proved themselves); one that
    /// halts puts it back, reloads systemd and starts the failed instance again on it, so
    /// that every instance runs, and restarts into, the version that worked.
    pub async fn reload(
        &self,
        sd: &Systemd,
        opts: &Options,
        on_event: &mut dyn FnMut(&Event<'_>),
    ) -> Reloaded {
        let summary = self
            .recorded_rollout(Action::Reload, sd, self.instances(), opts, on_event)
            .await;
        let put_back = if summary.completed() {
            // Best effort: kept files left behind are only put back by a later halt.
            let _ = self.dir.forget_last_good(self.name());
            None
        } else {
            let failed = summary.failed().map(|f| (f.instance, f.unit.clone()));
            self.put_back_last_good(sd, failed, opts.grace).await
        };
        Reloaded {
            summary,
            put_back,
            surge: None,
        }
    }

    /// The surge reload of every wanted instance ([`crate::reload::surge`]): each slot's next
    /// generation starts beside the old process, and the old one drains in the background
    /// once the new one is ready (and healthy), at most `surge` new processes at a time.
    /// Afterwards systemd is reloaded so `NAME.target` wants the generations that run. A
    /// halt stops the new process of the failing slot (the old one keeps serving) and puts
    /// back the last good unit files, like [`Self::reload`].
    pub async fn surge_reload(
        &self,
        sd: &Systemd,
        surge: NonZeroUsize,
        opts: &Options,
        on_event: &mut dyn FnMut(&Event<'_>),
    ) -> anyhow::Result<Reloaded> {
        let record = self.record(Action::Reload);
        let links = self.links_dir()?;
        let slots = if self.installed.from_generator {
            SurgeSlots::from_generator(
                sd,
                &links,
                self.name(),
                self.manager,
                self.installed.generations.clone(),
            )
        } else {
            SurgeSlots::new(sd, &links, self.name())
        };
        let total = self.instances().len();
        let mut both = |event: &Event<'_>| {
            record.rollout_event(event);
            on_event(event);
        };
        both(&Event::Begin {
            app: self.name(),
            total,
            parallel: surge.get(),
            surge: true,
        });
        let index: BTreeMap<u32, usize> = self
            .instances()
            .iter()
            .enumerate()
            .map(|(n, &slot)| (slot, n + 1))
            .collect();
        let surged = surge_rollout(
            &slots,
            self.name(),
            self.instances(),
            &self.installed.generations,
            surge,
            opts,
            &mut |event| match event {
                SurgeEvent::Starting { slot, unit } => both(&Event::Restarting {
                    index: index[slot],
                    total,
                    unit,
                }),
                SurgeEvent::Switched { report } => both(&Event::Finished {
                    index: index[&report.slot],
                    total,
                    report: &report.as_instance_report(),
                }),
                SurgeEvent::Finished { report } => match report.step {
                    SurgeStep::Done => both(&Event::Drained {
                        unit: &report.old_unit,
                        pid: report.old_pid,
                        took: report.drain,
                        result: report.drain_result.clone(),
                    }),
                    _ => both(&Event::Finished {
                        index: index[&report.slot],
                        total,
                        report: &report.as_instance_report(),
                    }),
                },
            },
        )
        .await;
        let summary = surged.as_summary();
        record.rollout_done(&summary);
        let moved = summary.instances.iter().any(|r| r.step == Step::Ready);
        let put_back = if summary.completed() {
            let _ = self.dir.forget_last_good(self.name());
            None
        } else {
            // The failed slot's old process still runs: nothing to start again.
            self.put_back_last_good(sd, None, opts.grace).await
        };
        // The put-back reloaded systemd already (if it could).
        if moved && put_back.is_none() {
            sd.reload().await.map_err(|e| ControlError::NotReloaded {
                app: self.name().to_string(),
                cause: e.to_string(),
            })?;
        }
        Ok(Reloaded {
            summary,
            put_back,
            surge: Some(surged),
        })
    }

    /// Where the app's wants links are: the unit directory, or the generator's.
    fn links_dir(&self) -> anyhow::Result<UnitDir> {
        if !self.installed.from_generator {
            return Ok(self.dir.clone());
        }
        let dir = self
            .manager
            .generator_dir()
            .ok_or_else(|| anyhow::anyhow!("no generator directory for this manager"))?;
        Ok(UnitDir::new(dir))
    }

    /// Settles slots a surge reload left with two generations (it was killed between
    /// starting a new process and stopping the old one): the slot keeps the generation its
    /// wants link names (with two links, the later started of the two, which was ready
    /// before it was linked), the other is stopped and unlinked. Returns what it did, one
    /// line each; reloads systemd if a link changed.
    pub async fn settle_slots(&mut self, sd: &Systemd) -> anyhow::Result<Vec<String>> {
        let links = self.links_dir()?;
        let linked = links.slot_links(self.name())?;
        let up = running_units(sd, self.name()).await?;
        let mut done = Vec::new();
        let mut generations = self.installed.generations.clone();
        let mut relinked = false;
        let slots: BTreeSet<u32> = linked.iter().map(|&(slot, _)| slot).collect();
        for slot in slots {
            let gens: Vec<u32> = linked
                .iter()
                .filter(|&&(s, _)| s == slot)
                .map(|&(_, g)| g)
                .collect();
            let running: Vec<&String> = up
                .iter()
                .filter(|(s, _)| *s == slot)
                .map(|(_, unit)| unit)
                .collect();
            if gens.len() < 2 && running.len() < 2 {
                continue;
            }
            let unit_of = |g: u32| self.names.slot_unit(slot, g);
            // Linked and running; with two, the later started.
            let mut candidates = Vec::new();
            for &g in &gens {
                let unit = unit_of(g);
                if running.contains(&&unit) {
                    let state = sd.service_state(&unit).await?;
                    candidates.push((state.active_enter_usec, g));
                }
            }
            candidates.sort_unstable();
            let keep = match candidates.last() {
                Some(&(_, g)) => g,
                None => gens[0],
            };
            for &g in gens.iter().filter(|&&g| g != keep) {
                links.remove_slot_link(self.name(), slot, g)?;
                relinked = true;
            }
            generations.set(slot, keep);
            let kept = unit_of(keep);
            let others: Vec<String> = running
                .iter()
                .filter(|u| ***u != kept)
                .map(|u| u.to_string())
                .collect();
            if !others.is_empty() && running.contains(&&kept) {
                stop_units(sd, &others).await?;
                done.push(format!(
                    "instance {slot} ran twice after an interrupted reload: kept {kept}, stopped {}",
                    others.join(", ")
                ));
            } else if gens.len() > 1 {
                done.push(format!(
                    "instance {slot} was linked twice after an interrupted reload: kept {kept}"
                ));
            }
        }
        if relinked {
            if self.installed.from_generator {
                crate::install::write_generations(self.manager, self.name(), &generations)?;
            }
            sd.reload().await?;
        }
        self.installed.generations = generations;
        Ok(done)
    }

    /// For an app whose units `reload FILE` wrote but which it did not roll, because an app
    /// before it halted: its kept generation back in place, systemd reloaded. Its instances
    /// never left the previous version.
    pub async fn put_back_unreloaded(&self, sd: &Systemd) -> Option<PutBack> {
        self.put_back_last_good(sd, None, Options::default().grace)
            .await
    }

    /// After a halt: the kept generation back in place, systemd reloaded, the `failed`
    /// instance (number and unit) started on it.
    async fn put_back_last_good(
        &self,
        sd: &Systemd,
        failed: Option<(u32, String)>,
        grace: std::time::Duration,
    ) -> Option<PutBack> {
        let wanted = match self.dir.last_good(self.name()) {
            Ok(None) => return None,
            Ok(Some(kept)) => kept.links,
            Err(e) => return Some(PutBack::Failed(e.to_string())),
        };
        let record = self.record(Action::Generate);
        let files: Vec<PathBuf> = match self.dir.restore_last_good(self.name()) {
            Ok(None) => return None,
            Ok(Some(report)) => report.written.into_iter().chain(report.removed).collect(),
            Err(e) => {
                let why = e.to_string();
                record.failed(
                    &anyhow::Error::new(e)
                        .context("cannot put back the previous version's unit files"),
                );
                return Some(PutBack::Failed(why));
            }
        };
        let named: Vec<String> = files.iter().map(|f| format!("`{}`", f.display())).collect();
        record.generated(
            wanted.len(),
            format!(
                "put back the previous version's unit files after a halted reload: {}",
                named.join(", ")
            ),
        );
        let reloaded = sd.reload().await.map_err(|e| e.to_string());
        let restarted = match (&reloaded, failed) {
            (Ok(()), Some((instance, unit)))
                if wanted
                    .iter()
                    .any(|l| self.names.linked_instance(&l.path, &l.target) == Some(instance)) =>
            {
                let started = start_verified(sd, &unit, grace).await;
                if started.is_err() {
                    // As after the halt: a unit that cannot start must not loop.
                    let _ = sd
                        .run_job(JobKind::Stop, &unit, JobMode::Replace, None)
                        .await;
                }
                Some((unit, started))
            }
            _ => None,
        };
        Some(PutBack::Done {
            files,
            reloaded,
            restarted,
        })
    }

    /// Stops the instances of `running` beyond the app's count (with their own sockets);
    /// returns them.
    pub async fn stop_unwanted(
        &self,
        sd: &Systemd,
        running: &BTreeSet<u32>,
    ) -> anyhow::Result<Vec<u32>> {
        let wanted: BTreeSet<u32> = self.instances().iter().copied().collect();
        let extra: Vec<u32> = running.difference(&wanted).copied().collect();
        if !extra.is_empty() {
            let units: Vec<String> = running_units(sd, self.name())
                .await?
                .into_iter()
                .filter(|(slot, _)| extra.contains(slot))
                .map(|(_, unit)| unit)
                .collect();
            stop_instances(sd, self.name(), &units, false).await?;
        }
        Ok(extra)
    }

    /// Persists a new count: the links in `NAME.target.wants/`, or the generator's scale
    /// file.
    fn persist_count(&self, new: NonZeroU32) -> anyhow::Result<()> {
        if self.installed.from_generator {
            // The generator rebuilds its links on every reload; it reads the count from here.
            crate::install::write_scale(self.manager, self.name(), new)?;
        } else {
            self.dir.set_instances(self.name(), new)?;
        }
        Ok(())
    }

    /// Persists the new count, reloads systemd, then starts the new instances or stops the
    /// ones beyond the count with their per-instance sockets. A stopped app only has its
    /// count changed. A failure changes nothing when it comes before any instance was
    /// started or stopped (the count on disk is put back); after that, its error
    /// ([`ControlError::ScaleFailed`]) says what changed: the count, and the instances that
    /// run now and did not before or the other way round.
    pub async fn scale(&self, sd: &Systemd, new: NonZeroU32) -> anyhow::Result<Scaled> {
        let record = self.record(Action::Scale);
        let mut before = None;
        let result = match self.persist_count(new) {
            Ok(()) => self.apply_count(sd, new, &mut before).await,
            Err(e) => Err(e),
        };
        let result = match result {
            Err(e) => Err(self.scale_failed(sd, e, new, before).await),
            ok => ok,
        };
        match &result {
            Ok(Scaled::CountOnly { to }) => {
                record.scaled(self.installed.instances.len() as u32, *to, 0, 0);
            }
            Ok(Scaled::Now {
                from,
                to,
                started,
                stopped,
            }) => record.scaled(*from, *to, *started, *stopped),
            Err(e) => record.failed(e),
        }
        result
    }

    /// The error of a failed scale, with what it changed. `before` is the instances that ran
    /// before the first one was started or stopped, `None` if none was.
    async fn scale_failed(
        &self,
        sd: &Systemd,
        cause: anyhow::Error,
        new: NonZeroU32,
        before: Option<BTreeSet<u32>>,
    ) -> anyhow::Error {
        let name = self.name();
        let from = self.installed.instances.len() as u32;
        let to = new.get();
        let wants = if self.installed.from_generator {
            "sysmgr's generator count".to_string()
        } else {
            format!("`{}/`", self.names.wants_dir())
        };
        let outcome = match before {
            None => match NonZeroU32::new(from).map(|old| self.persist_count(old)) {
                Some(Ok(())) => {
                    // systemd may have read the new links already; let it read the old ones.
                    let _ = sd.reload().await;
                    ScaleOutcome::Restored
                }
                Some(Err(e)) => ScaleOutcome::NotRestored(Some(format!("{e:#}"))),
                None => ScaleOutcome::NotRestored(None),
            },
            Some(before) => ScaleOutcome::Moved(
                running_instances(sd, name)
                    .await
                    .map(|now| (before, now))
                    .map_err(|e| e.to_string()),
            ),
        };
        let changed = what_scale_changed(&self.names, from, to, &wants, outcome);
        cause.context(ControlError::ScaleFailed {
            app: name.to_string(),
            from,
            to,
            changed,
        })
    }

    /// Applies the count just persisted; sets `before` to the running instances just before
    /// the first is started or stopped.
    async fn apply_count(
        &self,
        sd: &Systemd,
        new: NonZeroU32,
        before: &mut Option<BTreeSet<u32>>,
    ) -> anyhow::Result<Scaled> {
        let name = self.name().to_string();
        let current = self.installed.instances.len() as u32;
        // The target's Wants= changed on disk (or the generator will change it now).
        sd.reload().await?;
        let target_state = sd.active_state(&self.names.target()).await?;
        let up = running_units(sd, &name).await?;
        let running: BTreeSet<u32> = up.iter().map(|&(slot, _)| slot).collect();
        let n = new.get();
        if target_state != ActiveState::Active && running.is_empty() {
            return Ok(Scaled::CountOnly { to: n });
        }
        let to_stop: Vec<String> = up
            .into_iter()
            .filter(|&(slot, _)| slot > n)
            .map(|(_, unit)| unit)
            .collect();
        let to_start: Vec<u32> = (1..=n).filter(|i| !running.contains(i)).collect();
        let start_units: Vec<String> = to_start.iter().map(|&i| self.unit(i)).collect();
        if !to_stop.is_empty() || !to_start.is_empty() {
            *before = Some(running.clone());
        }
        if !to_stop.is_empty() {
            stop_instances(sd, &name, &to_stop, false).await?;
        }
        if !to_start.is_empty() {
            for window in start_units.chunks(JOB_WINDOW) {
                futures_util::future::try_join_all(
                    window.iter().map(|unit| sd.reset_failed_unit(unit)),
                )
                .await?;
                // However each start ended (even unobserved), the states below say what runs.
                sd.run_jobs(JobKind::Start, window, JobMode::Replace, None)
                    .await?;
            }
            let states = unit_states(sd, &start_units).await?;
            let failed: Vec<String> = states
                .iter()
                .filter(|s| !s.is_running())
                .map(|s| format!("{} (`{}`)", s.unit, s.result))
                .collect();
            if !failed.is_empty() {
                return Err(ControlError::NotRunning {
                    app: name,
                    failed: failed.len(),
                    total: to_start.len(),
                    units: failed.join(", "),
                }
                .into());
            }
        }
        Ok(Scaled::Now {
            from: current,
            to: n,
            started: to_start.len(),
            stopped: to_stop.len(),
        })
    }

    /// Stops the app, disables it, removes the units sysmgr generated for it and reloads
    /// systemd. The caller refuses apps made by the generator first (their files are not
    /// sysmgr's to remove).
    pub async fn delete(self, sd: &Systemd) -> anyhow::Result<Deleted> {
        let record = self.record(Action::Delete);
        let result = self.remove(sd).await;
        match &result {
            Ok(d) => record.stopped(
                d.stopped,
                format!(
                    "{} instances stopped, {} files and links removed from `{}`",
                    d.stopped,
                    d.removed.len(),
                    d.dir.display()
                ),
            ),
            Err(e) => record.failed(e),
        }
        result
    }

    async fn remove(self, sd: &Systemd) -> anyhow::Result<Deleted> {
        let stopped = self.stop_all(sd).await?;
        let name = self.name();
        // Failed instances stay in systemd's memory after their files are gone; clear them.
        for unit in loaded_instances(sd, name).await? {
            sd.reset_failed_unit(&unit.name).await?;
        }
        // So do the timers' services, e.g. a cron reload that halted.
        for unit in [self.names.cron_service(), self.names.memory_service()] {
            if sd.active_state(&unit).await? == ActiveState::Failed {
                sd.reset_failed_unit(&unit).await?;
            }
        }
        sd.disable_unit_files(&[self.names.target()]).await?;
        let removed = self.dir.remove_app(name)?;
        sd.reload().await?;
        Ok(Deleted {
            stopped,
            removed,
            dir: self.dir.path().to_path_buf(),
        })
    }
}

/// Starts `unit` and waits for it to run, at most its stop and start timeouts plus `grace`
/// (as the rollout would); its main PID, or why it does not run.
async fn start_verified(
    sd: &Systemd,
    unit: &str,
    grace: std::time::Duration,
) -> Result<u32, String> {
    let before = sd.service_state(unit).await.map_err(|e| e.to_string())?;
    sd.reset_failed_unit(unit)
        .await
        .map_err(|e| e.to_string())?;
    let limit = match (before.timeout_stop, before.timeout_start) {
        (Some(stop), Some(start)) => Some(stop + start + grace),
        _ => None,
    };
    match sd
        .run_job(JobKind::Start, unit, JobMode::Replace, limit)
        .await
    {
        Err(e) => return Err(e.to_string()),
        Ok(JobEnd::Removed(JobResult::Done) | JobEnd::Unobserved) => {}
        Ok(JobEnd::Removed(other)) => return Err(format!("the start job ended with `{other}`")),
        Ok(JobEnd::GaveUp(after)) => {
            return Err(format!(
                "systemd had not finished the start job after {}",
                reload::engine::human(after)
            ))
        }
    }
    let after = sd.service_state(unit).await.map_err(|e| e.to_string())?;
    if after.is_running() {
        Ok(after.main_pid)
    } else {
        Err(format!(
            "it is `{}/{}`, systemd's result: `{}`",
            after.active_state, after.sub_state, after.result
        ))
    }
}

/// The instance number (slot) of `NAME@N.service` or `NAME@N:G.service`.
pub fn instance_of(app: &str, unit: &str) -> Option<u32> {
    UnitNames::new(app).instance_of(unit)
}

/// The app's instance units systemd has loaded (running, failed, or merely referenced), of
/// every generation.
pub async fn loaded_instances(sd: &Systemd, app: &str) -> Result<Vec<UnitListing>, DbusError> {
    let units = sd
        .list_units(&[UnitNames::new(app).instance_pattern()])
        .await?;
    Ok(units
        .into_iter()
        .filter(|u| instance_of(app, &u.name).is_some())
        .collect())
}

/// The instance units that run now (anything but stopped), with their slots, by slot: one
/// per slot, or two for a slot a surge reload is moving (or was killed while moving).
pub async fn running_units(sd: &Systemd, app: &str) -> Result<Vec<(u32, String)>, DbusError> {
    let mut up: Vec<(u32, String)> = loaded_instances(sd, app)
        .await?
        .into_iter()
        .filter(|u| u.active_state.is_up())
        .filter_map(|u| instance_of(app, &u.name).map(|slot| (slot, u.name)))
        .collect();
    up.sort();
    Ok(up)
}

/// The instances (slots) that run now, sorted.
pub async fn running_instances(sd: &Systemd, app: &str) -> Result<BTreeSet<u32>, DbusError> {
    Ok(running_units(sd, app)
        .await?
        .into_iter()
        .map(|(slot, _)| slot)
        .collect())
}

/// The states of `units`, read concurrently (the client bounds the calls in flight, so a
/// thousand instances are read a few dozen at a time).
pub async fn unit_states(sd: &Systemd, units: &[String]) -> Result<Vec<ServiceState>, DbusError> {
    futures_util::future::try_join_all(units.iter().map(|unit| sd.service_state(unit))).await
}

/// Stops the instance `units` of `app` and the sockets that belong to them alone
/// (per-instance sockets, `NAME@N.socket`; a shared socket keeps serving the others), and
/// waits for every stop job. With `target`, stops `NAME.target` too (and through `PartOf=`,
/// every unit of the app, shared sockets included).
pub async fn stop_instances(
    sd: &Systemd,
    app: &str,
    instances: &[String],
    target: bool,
) -> anyhow::Result<()> {
    let names = UnitNames::new(app);
    let states = unit_states(sd, instances).await?;
    let mut units: Vec<String> = Vec::new();
    if target {
        units.push(names.target());
    }
    let prefix = format!("{app}@");
    for state in &states {
        units.push(state.unit.clone());
        let instance = state
            .unit
            .strip_prefix(&prefix)
            .and_then(|rest| rest.strip_suffix(".service"))
            .unwrap_or_default();
        let suffix = format!("@{instance}.socket");
        // Stopping the whole app stops shared sockets too (they are `PartOf=` the target;
        // naming them here makes us wait for them).
        for socket in &state.triggered_by {
            if (target || socket.ends_with(&suffix)) && !units.contains(socket) {
                units.push(socket.clone());
            }
        }
    }
    stop_units(sd, &units).await
}

/// Stops `units` and waits for all their jobs, 128 at a time (`JOB_WINDOW`), followed by
/// signal and by polling ([`Systemd::run_jobs`]), so a `daemon-reexec` meanwhile cannot hang
/// the wait. A stop that systemd merged into a stop already queued (e.g. propagated by
/// `PartOf=`) is waited for once; one whose end was not seen is judged by the unit's state.
pub async fn stop_units(sd: &Systemd, units: &[String]) -> anyhow::Result<()> {
    for window in units.chunks(JOB_WINDOW) {
        let ends = sd
            .run_jobs(JobKind::Stop, window, JobMode::Replace, None)
            .await?;
        for (unit, end) in window.iter().zip(ends) {
            let result = match end {
                JobEnd::Removed(result) => result,
                JobEnd::Unobserved | JobEnd::GaveUp(_) => {
                    if sd.active_state(unit).await?.is_up() {
                        JobResult::Failed
                    } else {
                        JobResult::Done
                    }
                }
            };
            if result != JobResult::Done {
                return Err(ControlError::StopFailed {
                    unit: unit.clone(),
                    result: result.to_string(),
                }
                .into());
            }
        }
    }
    Ok(())
}

impl crate::Classify for ControlError {
    fn class(&self) -> crate::ErrorClass {
        match self {
            Self::NotGenerated { .. } | Self::SurgeRefused { .. } => crate::ErrorClass::Invalid,
            Self::NotRunning { .. }
            | Self::NotReloaded { .. }
            | Self::SocketWedged { .. }
            | Self::Halted { .. }
            | Self::StopFailed { .. }
            | Self::ScaleFailed { .. } => crate::ErrorClass::Failed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_scale_says_what_it_changed() {
        let names = UnitNames::new("web");
        let wants = "`web.target.wants/`";
        let said = |outcome| what_scale_changed(&names, 2, 4, wants, outcome);
        assert_eq!(said(ScaleOutcome::Restored), "nothing was changed");
        assert_eq!(
            said(ScaleOutcome::NotRestored(Some("cannot remove `x`: Permission denied".into()))),
            "no instance was started or stopped, but the count on disk is 4 (`web.target.wants/`), and putting 2 back failed (cannot remove `x`: Permission denied); `sysmgr scale web 2` goes back"
        );
        assert_eq!(
            said(ScaleOutcome::NotRestored(None)),
            "no instance was started or stopped, but the count on disk is 4 (`web.target.wants/`); `sysmgr scale web 2` goes back"
        );
        assert_eq!(
            said(ScaleOutcome::Moved(Ok(([1, 2].into(), [1, 2, 3].into())))),
            "changed: the count on disk is 4 (`web.target.wants/`), started `web@3.service`, stopped none; once the cause is fixed `sysmgr scale web 4` finishes it, `sysmgr scale web 2` goes back"
        );
        assert_eq!(
            what_scale_changed(&names, 5, 3, wants, ScaleOutcome::Moved(Ok(([1, 2, 3, 4, 5].into(), [1, 2, 3, 5].into())))),
            "changed: the count on disk is 3 (`web.target.wants/`), started none, stopped `web@4.service`; once the cause is fixed `sysmgr scale web 3` finishes it, `sysmgr scale web 5` goes back"
        );
        assert_eq!(
            said(ScaleOutcome::Moved(Err("the bus went away".into()))),
            "changed: the count on disk is 4 (`web.target.wants/`), instances may have been started or stopped, which could not be read back (the bus went away); once the cause is fixed `sysmgr scale web 4` finishes it, `sysmgr scale web 2` goes back"
        );
    }

    #[test]
    fn instance_numbers_come_from_the_unit_name_of_this_app_only() {
        assert_eq!(instance_of("web", "web@12.service"), Some(12));
        assert_eq!(instance_of("web", "web-admin@1.service"), None);
        assert_eq!(instance_of("web", "web@.service"), None);
        assert_eq!(instance_of("web", "web@1.socket"), None);
    }
}
