//! The state of installed apps, as `sysmgr status` and `sysmgr list` show it (and as their
//! `--json` prints it). Read without the lock: looking changes nothing.
//!
//! Few round trips, and only what is shown: one `ListUnitsByPatterns` for all apps gives the
//! state of every loaded unit of theirs (instances, targets, sockets); then, per instance,
//! the six properties shown, one `Get` each ([`ServiceFigures`]), all concurrently (the client
//! bounds how many calls are in flight). The sockets that start an instance come from the
//! app's unit files ([`InstalledApp::sockets_of`]). A unit the manager has not loaded is
//! missing from the list; only its state is then read on its own.
//!
//! An app is `degraded` when any of its instances or sockets is `failed`, whatever its
//! target says: an instance the crash-loop brake stopped, or a socket systemd failed (its
//! trigger limit), leaves the other instances serving and the target `active`.

use std::collections::{BTreeSet, HashMap};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::install::InstalledApp;
use crate::names::{parse_instance, UnitNames};
use crate::systemd::dbus::{ActiveState, DbusError, ServiceFigures, Systemd, UnitListing};

/// [`AppStatus::state`] of an app with a failed instance or socket.
pub const DEGRADED: &str = "degraded";

/// One app's state.
#[derive(Debug, Serialize)]
pub struct AppStatus {
    /// The app.
    pub name: String,
    /// The app file the units were generated from.
    pub source: Option<String>,
    /// The app as a whole: [`DEGRADED`] when an instance or a socket of it is `failed`,
    /// else the state of its target.
    pub state: String,
    /// `ActiveState` of `NAME.target`.
    pub target: String,
    /// How many instances the target starts (the persisted scale).
    pub wanted: usize,
    pub instances: Vec<InstanceStatus>,
    /// The sockets that start its instances, by name, sorted.
    pub sockets: Vec<SocketStatus>,
}

/// One socket unit's state.
#[derive(Debug, Serialize)]
pub struct SocketStatus {
    pub unit: String,
    pub active_state: String,
}

impl AppStatus {
    /// True when an instance or a socket of the app is `failed`.
    pub fn degraded(&self) -> bool {
        self.state == DEGRADED
    }

    /// The failed units, instances first: what makes the app degraded.
    pub fn failed_units(&self) -> Vec<&str> {
        let failed = ActiveState::Failed.to_string();
        self.instances
            .iter()
            .filter(|i| i.active_state == failed)
            .map(|i| i.unit.as_str())
            .chain(
                self.sockets
                    .iter()
                    .filter(|s| s.active_state == failed)
                    .map(|s| s.unit.as_str()),
            )
            .collect()
    }
}

/// One instance's state.
#[derive(Debug, Serialize)]
pub struct InstanceStatus {
    pub instance: u32,
    pub unit: String,
    /// Linked into `NAME.target.wants/` (false: running beyond the persisted count).
    pub wanted: bool,
    pub active_state: String,
    pub sub_state: String,
    pub pid: Option<u32>,
    pub uptime_secs: Option<u64>,
    pub restarts: u32,
    /// `MemoryCurrent`; when systemd has no figure (no memory accounting, e.g. cgroup v1),
    /// the summed resident set of the unit's processes ([`super::memory`]).
    pub memory_bytes: Option<u64>,
    pub cpu_nsec: Option<u64>,
    /// systemd's `Result` of the last run: success, exit-code, signal, timeout...
    pub result: String,
}

impl InstanceStatus {
    fn new(instance: u32, wanted: bool, s: ServiceFigures, now_usec: u64) -> Self {
        let running = s.is_running();
        Self {
            instance,
            wanted,
            pid: (s.main_pid != 0).then_some(s.main_pid),
            uptime_secs: (running && s.active_enter_usec != 0)
                .then(|| now_usec.saturating_sub(s.active_enter_usec) / 1_000_000),
            restarts: s.n_restarts,
            memory_bytes: s
                .memory_bytes
                .or_else(|| super::memory::resident_bytes(&s.control_group, s.main_pid)),
            cpu_nsec: s.cpu_nsec,
            result: s.result.to_string(),
            active_state: s.active_state.to_string(),
            sub_state: s.sub_state.to_string(),
            unit: s.unit,
        }
    }
}

/// The state of every instance of `apps`: the wanted ones and any other that runs.
pub async fn collect(sd: &Systemd, apps: &[InstalledApp]) -> Result<Vec<AppStatus>, DbusError> {
    let patterns: Vec<String> = apps
        .iter()
        .map(|a| UnitNames::new(&a.name).units_pattern())
        .collect();
    let listed: HashMap<String, UnitListing> = if patterns.is_empty() {
        HashMap::new()
    } else {
        sd.list_units(&patterns)
            .await?
            .into_iter()
            .map(|u| (u.name.clone(), u))
            .collect()
    };
    // The instance units that run, by app: those beyond the wanted ones are shown too, and
    // so is the other generation of a slot a surge reload is moving.
    let mut up: HashMap<&str, Vec<(u32, &str)>> = HashMap::new();
    for unit in listed.values().filter(|u| u.active_state.is_up()) {
        if let Some((app, n)) = parse_instance(&unit.name) {
            up.entry(app).or_default().push((n, unit.name.as_str()));
        }
    }
    let now_usec = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros() as u64;
    let listed = &listed;
    let per_app = apps.iter().map(|app| {
        let names = UnitNames::new(&app.name);
        let wanted: BTreeSet<u32> = app.instances.iter().copied().collect();
        // (slot, unit, wanted), by slot: the wanted slots at their generation, then any
        // other unit of the app that runs.
        let mut all: BTreeSet<(u32, String, bool)> = wanted
            .iter()
            .map(|&i| (i, names.unit_of(i, &app.generations), true))
            .collect();
        for &(i, unit) in up.get(app.name.as_str()).into_iter().flatten() {
            if !all.iter().any(|(_, u, _)| u == unit) {
                all.insert((i, unit.to_string(), false));
            }
        }
        let all: Vec<(u32, String, bool)> = all.into_iter().collect();
        let socket_units: BTreeSet<String> = all
            .iter()
            .flat_map(|&(i, _, _)| app.sockets_of(i))
            .collect();
        async move {
            let target = names.target();
            let (target, states, socket_states) = futures_util::future::try_join3(
                active_state(sd, listed, &target),
                futures_util::future::try_join_all(
                    all.iter()
                        .map(|(_, unit, _)| sd.service_figures(unit, listed.get(unit))),
                ),
                futures_util::future::try_join_all(
                    socket_units
                        .iter()
                        .map(|unit| active_state(sd, listed, unit)),
                ),
            )
            .await?;
            let failed = states
                .iter()
                .map(|s| &s.active_state)
                .chain(&socket_states)
                .any(|state| *state == ActiveState::Failed);
            Ok::<_, DbusError>(AppStatus {
                name: app.name.clone(),
                source: app.source.as_ref().map(|p| p.display().to_string()),
                state: if failed {
                    DEGRADED.to_string()
                } else {
                    target.to_string()
                },
                target: target.to_string(),
                wanted: wanted.len(),
                instances: states
                    .into_iter()
                    .zip(&all)
                    .map(|(s, &(i, _, wanted))| InstanceStatus::new(i, wanted, s, now_usec))
                    .collect(),
                sockets: socket_units
                    .into_iter()
                    .zip(socket_states)
                    .map(|(unit, state)| SocketStatus {
                        unit,
                        active_state: state.to_string(),
                    })
                    .collect(),
            })
        }
    });
    futures_util::future::try_join_all(per_app).await
}

/// The `ActiveState` of `unit`: from the manager's list, or read if it is not loaded.
async fn active_state(
    sd: &Systemd,
    listed: &HashMap<String, UnitListing>,
    unit: &str,
) -> Result<ActiveState, DbusError> {
    match listed.get(unit) {
        Some(row) => Ok(row.active_state.clone()),
        None => sd.active_state(unit).await,
    }
}
