//! systemd's D-Bus API, narrowed to the calls sysmgr makes.
//!
//! The wire side is `proxy.rs`: zbus proxy traits for exactly the methods called and structs
//! for exactly the properties read, so a misspelt method or property cannot pass silently.
//! This file is the client on top: each method returns sysmgr's own named types (states as
//! the enums of [`crate::systemd::state`], never raw tuples or strings to compare) and maps
//! D-Bus errors to [`DbusError`] variants a person can act on (systemd not reachable,
//! permission denied, no such unit). No property caching happens behind our back: the state
//! the controller acts on ([`ServiceState`]) is read with one `Properties.GetAll` per
//! interface, the two interfaces of a service concurrently; what `status` and `list` show
//! ([`ServiceFigures`]) with one `Properties.Get` per property, all concurrently, since
//! systemd computes every property of an interface for `GetAll`.
//!
//! Jobs are watched the race-free way: [`Systemd::connect`] calls `Subscribe`, and a
//! [`JobWatch`] (the `JobRemoved` signal stream) is opened *before* the job is enqueued, so
//! the signal cannot slip past between the reply carrying the job path and the stream opening.
//! [`Systemd::run_jobs`] (and [`Systemd::run_job`], its one-unit form) also reads the units'
//! queued jobs every [`JOB_POLL`], so a job whose signal can no longer come (`daemon-reexec` dropped the connection or the subscription) is
//! still seen to end; a call that finds the connection lost reconnects ([`RECONNECT_WAIT`]).
//!
//! Where systemd is reached, the way `systemctl` does it: as root, the system manager's own
//! peer-to-peer socket `/run/systemd/private` (it works with dbus stopped, masked or not
//! installed, and before systemd has joined the bus); for `--user`, the user manager's
//! `$XDG_RUNTIME_DIR/systemd/private`; otherwise the bus. On the bus, a systemd that has not
//! taken its name yet (dbus is socket-activated and systemd joins it a moment after it
//! starts) is waited for, up to [`COLD_BUS_WAIT`]. An explicit `DBUS_SYSTEM_BUS_ADDRESS`
//! chooses the system bus, also for root: the benchmarks and tests point sysmgr at a private
//! systemd that way, and must never reach the host's.
//!
//! Every call holds one of [`MAX_CALLS_IN_FLIGHT`] permits while its reply is pending:
//! dbus-daemon refuses a connection's 129th pending reply (`LimitsExceeded`), and status,
//! start and stop of a thousand instances fan out that many reads and jobs.

mod private;
mod proxy;

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use tokio::sync::{Semaphore, SemaphorePermit};
use zbus::message::Type as MessageType;
use zbus::proxy::CacheProperties;
use zbus::{Connection, MatchRule, MessageStream, OwnedObjectPath};

use self::proxy::{
    ServiceProps, SystemdManagerProxy, UnitPropertiesProxy, UnitProps, SERVICE_IFACE, SOCKET_IFACE,
    TIMER_IFACE, UNIT_IFACE,
};
use super::Manager;
pub use crate::systemd::state::{
    ActiveState, JobResult, LoadState, ServiceResult, SocketResult, SubState,
};

const DESTINATION: &str = "org.freedesktop.systemd1";
const MANAGER_PATH: &str = "/org/freedesktop/systemd1";
const MANAGER_IFACE: &str = "org.freedesktop.systemd1.Manager";
const UNIT_PATH_PREFIX: &str = "/org/freedesktop/systemd1/unit";

/// The system manager's peer-to-peer socket, what `systemctl` uses as root.
pub const SYSTEM_PRIVATE_SOCKET: &str = "/run/systemd/private";

/// How long a bus on which systemd has not (yet, or again) taken its name is waited for:
/// dbus is socket-activated, and systemd joins it some 40 ms after it started. Long enough
/// for a loaded machine, short enough that a systemd that will never come is reported soon.
pub const COLD_BUS_WAIT: Duration = Duration::from_secs(5);

/// How long connecting to and authenticating on the private socket may take before the bus is
/// tried instead. systemd answers it from its main loop, which a long `daemon-reload` holds.
const PRIVATE_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// At most this many calls to systemd wait for their replies at once, on one connection:
/// well under dbus-daemon's default of 128 pending replies per connection, and enough to
/// read a thousand units' properties in a few dozen round trips.
pub const MAX_CALLS_IN_FLIGHT: usize = 32;

/// How long a lost connection is tried again before the call that lost it fails: systemd
/// re-executing (`daemon-reexec`) is back within a second on a loaded machine.
pub const RECONNECT_WAIT: Duration = Duration::from_secs(10);

/// The pause between two attempts to reconnect.
const RECONNECT_PAUSE: Duration = Duration::from_millis(100);

/// How often a job that is being waited for is looked up on its unit, besides waiting for
/// its `JobRemoved`: the signal never comes when the connection or the subscription was
/// lost (`daemon-reexec`) while the job ran.
pub const JOB_POLL: Duration = Duration::from_millis(500);

/// How many signals a job stream buffers. Every job on the machine emits `JobRemoved`; a busy
/// manager must not push ours out of the queue while we are busy elsewhere.
const JOB_STREAM_QUEUE: usize = 4096;

/// Why a call to systemd failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DbusError {
    /// No bus, or no systemd on it (and, if it was tried, no private socket either).
    #[error("{}", unreachable_message(*manager, via))]
    Unreachable {
        /// The manager we tried.
        manager: Manager,
        /// How it was tried.
        via: Via,
        /// What zbus said (about the bus, when both were tried).
        #[source]
        source: zbus::Error,
    },
    /// systemd (or polkit) refused the call.
    #[error("permission denied: systemd refused to {action}; run as root, or use --user for your own service manager")]
    PermissionDenied {
        /// What was refused, e.g. "restart `web@1.service`".
        action: String,
        /// What zbus said.
        #[source]
        source: zbus::Error,
    },
    /// The unit does not exist or is not loaded.
    #[error("systemd has no unit `{unit}`")]
    NoSuchUnit {
        /// The unit.
        unit: String,
        /// What zbus said.
        #[source]
        source: zbus::Error,
    },
    /// Any other failed call.
    #[error("systemd failed to {action}")]
    Call {
        /// What was being done.
        action: String,
        /// What zbus said.
        #[source]
        source: zbus::Error,
    },
    /// The signal stream ended: the connection to the bus was lost.
    #[error("lost the connection to systemd while waiting for {what}; is systemd still running?")]
    Disconnected {
        /// What we were waiting for.
        what: String,
    },
}

/// How sysmgr talks (or tried to talk) to a manager.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    /// The system or session bus.
    Bus,
    /// The manager's own peer-to-peer socket.
    Private(PathBuf),
    /// The private socket did not answer, and then neither did the bus.
    Neither(PathBuf),
}

fn unreachable_message(manager: Manager, via: &Via) -> String {
    match (manager, via) {
        (Manager::System, Via::Bus) => {
            "systemd is not reachable on the system bus; is systemd running (with dbus) on this machine?".into()
        }
        (Manager::User, Via::Bus) => {
            "the user's systemd is not reachable on the session bus; is `systemd --user` running, and is there a session bus (`DBUS_SESSION_BUS_ADDRESS` or `$XDG_RUNTIME_DIR/bus`)?".into()
        }
        (Manager::System, Via::Private(path)) => format!(
            "lost the connection to systemd on `{}`; is systemd still running?",
            path.display()
        ),
        (Manager::User, Via::Private(path)) => format!(
            "lost the connection to the user's systemd on `{}`; is `systemd --user` still running?",
            path.display()
        ),
        (Manager::System, Via::Neither(path)) => format!(
            "systemd is not reachable: neither its private socket `{}` nor the system bus answered; is systemd running on this machine?",
            path.display()
        ),
        (Manager::User, Via::Neither(path)) => format!(
            "the user's systemd is not reachable: neither its private socket `{}` nor the session bus answered; is `systemd --user` running?",
            path.display()
        ),
    }
}

impl DbusError {
    /// True when the connection to systemd is gone (systemd re-executed, restarted, or left
    /// the bus): a new connection may work.
    pub fn is_connection_lost(&self) -> bool {
        matches!(self, Self::Unreachable { .. } | Self::Disconnected { .. })
    }

    /// True when systemd could not be used at all (not reachable, or not allowed), as opposed
    /// to a unit or job that failed; the CLI maps these to their own exit code.
    pub fn is_systemd_unavailable(&self) -> bool {
        matches!(
            self,
            Self::Unreachable { .. } | Self::PermissionDenied { .. } | Self::Disconnected { .. }
        )
    }
}

/// How an enqueued job should treat jobs already queued for the unit (systemd's job modes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobMode {
    /// Replace conflicting queued jobs: what `systemctl` uses.
    Replace,
    /// Fail if a conflicting job is queued.
    Fail,
}

impl JobMode {
    fn as_str(self) -> &'static str {
        match self {
            Self::Replace => "replace",
            Self::Fail => "fail",
        }
    }
}

/// A job systemd enqueued, named by its object path.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobPath(pub String);

impl From<OwnedObjectPath> for JobPath {
    fn from(path: OwnedObjectPath) -> Self {
        Self(path.as_str().to_string())
    }
}

/// The `JobRemoved` signal: a job finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRemoved {
    /// The job's number.
    pub id: u32,
    /// The job's object path.
    pub job: JobPath,
    /// The unit it was for.
    pub unit: String,
    /// How it ended.
    pub result: JobResult,
}

/// One row of `ListUnitsByPatterns`: a unit loaded in the manager.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitListing {
    /// Unit name, e.g. `web@1.service`.
    pub name: String,
    /// `LoadState`.
    pub load_state: LoadState,
    /// `ActiveState`.
    pub active_state: ActiveState,
    /// `SubState` (sysmgr lists services only).
    pub sub_state: SubState,
    /// The job queued for it, if any.
    pub job: Option<JobPath>,
}

impl From<proxy::UnitRow> for UnitListing {
    fn from(row: proxy::UnitRow) -> Self {
        Self {
            load_state: LoadState::parse(&row.load_state),
            active_state: ActiveState::parse(&row.active_state),
            sub_state: SubState::parse(&row.sub_state),
            job: (row.job_id != 0).then(|| JobPath::from(row.job_path)),
            name: row.name,
        }
    }
}

/// What sysmgr reads of a service unit: its `Unit` and `Service` properties, by name.
///
/// Values systemd reports as "unset" (`UINT64_MAX` for memory and CPU, infinity for
/// timeouts) are `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceState {
    /// Unit name.
    pub unit: String,
    /// `LoadState`.
    pub load_state: LoadState,
    /// `ActiveState`.
    pub active_state: ActiveState,
    /// `SubState`.
    pub sub_state: SubState,
    /// `InvocationID` in hex; empty when the unit never ran. New for every start.
    pub invocation_id: String,
    /// `ActiveEnterTimestamp`, µs since the epoch; 0 when never active.
    pub active_enter_usec: u64,
    /// `NeedDaemonReload`: the unit files changed on disk since systemd read them.
    pub need_daemon_reload: bool,
    /// `TriggeredBy`: the socket units that start it.
    pub triggered_by: Vec<String>,
    /// `MainPID`; 0 when no process runs.
    pub main_pid: u32,
    /// `NRestarts`: automatic restarts (by `Restart=`) since the unit was loaded.
    pub n_restarts: u32,
    /// `MemoryCurrent`, bytes.
    pub memory_bytes: Option<u64>,
    /// `ControlGroup`: the unit's cgroup, relative to the hierarchy systemd manages (empty
    /// when the unit has none, e.g. stopped).
    pub control_group: String,
    /// `CPUUsageNSec`, ns.
    pub cpu_nsec: Option<u64>,
    /// `TimeoutStartUSec` (`TimeoutStartSec=`, sysmgr's `listen_timeout`).
    pub timeout_start: Option<Duration>,
    /// `TimeoutStopUSec` (`TimeoutStopSec=`, sysmgr's `kill_timeout`).
    pub timeout_stop: Option<Duration>,
    /// The service's `Result` of its last run.
    pub result: ServiceResult,
    /// `ExecMainStatus`: exit status or signal number of the last main process.
    pub exec_main_status: i32,
    /// `Environment`: the unit's `Environment=` assignments (`NAME=VALUE`, specifiers
    /// expanded), as systemd loaded them.
    pub environment: Vec<String>,
}

impl ServiceState {
    /// The value of `name` in the unit's `Environment=`, the last assignment winning.
    pub fn env_var(&self, name: &str) -> Option<&str> {
        self.environment
            .iter()
            .rev()
            .find_map(|a| a.strip_prefix(name)?.strip_prefix('='))
    }

    /// Active and running (for `Type=notify`, after `READY=1`).
    pub fn is_running(&self) -> bool {
        self.active_state == ActiveState::Active
    }

    fn from_props(unit: &str, u: UnitProps, s: ServiceProps) -> Self {
        Self {
            unit: unit.to_string(),
            load_state: LoadState::parse(&u.load_state),
            active_state: ActiveState::parse(&u.active_state),
            sub_state: SubState::parse(&u.sub_state),
            invocation_id: u.invocation_id.iter().map(|b| format!("{b:02x}")).collect(),
            active_enter_usec: u.active_enter_timestamp,
            need_daemon_reload: u.need_daemon_reload,
            triggered_by: u.triggered_by,
            main_pid: s.main_pid,
            n_restarts: s.n_restarts,
            memory_bytes: set(s.memory_current),
            control_group: s.control_group,
            cpu_nsec: set(s.cpu_usage_nsec),
            timeout_start: set(s.timeout_start_usec).map(Duration::from_micros),
            timeout_stop: set(s.timeout_stop_usec).map(Duration::from_micros),
            result: ServiceResult::parse(&s.result),
            exec_main_status: s.exec_main_status,
            environment: s.environment,
        }
    }
}

/// What sysmgr reads of a timer unit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TimerState {
    /// Unit name.
    pub unit: String,
    /// `LoadState`.
    pub load_state: LoadState,
    /// `ActiveState`: a timer waiting for its next elapse is `active`.
    pub active_state: ActiveState,
    /// `NextElapseUSecRealtime`, µs since the epoch; `None` when it will not fire.
    pub next_elapse_usec: Option<u64>,
    /// `LastTriggerUSec`, µs since the epoch; `None` when it never fired.
    pub last_trigger_usec: Option<u64>,
    /// The `OnCalendar=` expressions, as systemd normalized them.
    pub calendar: Vec<String>,
}

/// What `sysmgr status` and `list` show of a service instance: its states (usually from the
/// manager's unit list, [`Systemd::list_units`]) and five figures.
///
/// Read with one `Properties.Get` per property ([`Systemd::service_figures`]), not `GetAll`:
/// for `GetAll` systemd computes every property of the interface, and the `Service`
/// interface's include a dozen cgroup reads (memory, tasks, IO and IP counters) and the
/// unit's whole command lines and environment. Against systemd 252, the two `GetAll` of 64
/// instances cost systemd about 32 ms of CPU, the six `Get` each about 5.5 ms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceFigures {
    /// Unit name.
    pub unit: String,
    /// `ActiveState`.
    pub active_state: ActiveState,
    /// `SubState`.
    pub sub_state: SubState,
    /// `ActiveEnterTimestamp`, µs since the epoch; 0 when never active.
    pub active_enter_usec: u64,
    /// `MainPID`; 0 when no process runs.
    pub main_pid: u32,
    /// `NRestarts`: automatic restarts (by `Restart=`) since the unit was loaded.
    pub n_restarts: u32,
    /// `MemoryCurrent`, bytes.
    pub memory_bytes: Option<u64>,
    /// `CPUUsageNSec`, ns.
    pub cpu_nsec: Option<u64>,
    /// The service's `Result` of its last run.
    pub result: ServiceResult,
    /// `ControlGroup`, read only when systemd gives no `MemoryCurrent` (no memory
    /// accounting): where the memory fallback finds the unit's processes. Empty otherwise.
    pub control_group: String,
}

impl ServiceFigures {
    /// Active and running (for `Type=notify`, after `READY=1`).
    pub fn is_running(&self) -> bool {
        self.active_state == ActiveState::Active
    }
}

/// systemd's "unset" for counters and "infinity" for timeouts are both `UINT64_MAX`.
fn set(value: u64) -> Option<u64> {
    (value != u64::MAX).then_some(value)
}

/// A connection to one service manager, that reconnects when the manager drops it.
///
/// `systemctl daemon-reexec` (Debian runs it on every systemd upgrade) closes every
/// connection to the private socket, and on the bus systemd leaves and rejoins under a new
/// unique name; job objects survive it, signal subscriptions do not. A call that finds the
/// connection lost reconnects (for at most [`RECONNECT_WAIT`]) and is sent once more on the
/// new connection; clones share the connection, so one reconnect serves them all.
#[derive(Debug, Clone)]
pub struct Systemd {
    manager: Manager,
    /// Where the connection was made, to make it again.
    endpoints: Endpoints,
    /// The connection in use, replaced by a reconnect.
    link: Arc<std::sync::Mutex<Link>>,
    /// Held while reconnecting, so that calls that all lost the connection make one new one.
    reconnecting: Arc<tokio::sync::Mutex<()>>,
    /// One permit per call in flight (see [`MAX_CALLS_IN_FLIGHT`]), shared by clones.
    calls: Arc<Semaphore>,
}

/// One connection to the manager.
#[derive(Debug, Clone)]
struct Link {
    conn: Connection,
    /// The private socket or the bus.
    via: Via,
    /// On the bus, systemd's unique name, so job signals are only taken from systemd itself.
    /// On the private socket there are no names: only systemd is at the other end.
    owner: Option<String>,
    /// The manager object (`/org/freedesktop/systemd1`).
    proxy: SystemdManagerProxy<'static>,
    /// Counts the reconnects: a call that lost generation `n` reconnects only if nobody made
    /// generation `n + 1` meanwhile.
    generation: u64,
}

/// Where to look for a manager; [`Endpoints::for_manager`] reads it from the process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    /// The manager's private socket, tried first when set.
    pub private: Option<PathBuf>,
    /// How long to wait for systemd to take its name on the bus.
    pub cold_bus_wait: Duration,
    /// A bus address to use instead of the manager's own bus (e.g. a private systemd's,
    /// reached from outside its namespaces); `None`: the system or session bus.
    pub bus: Option<String>,
}

impl Endpoints {
    /// What `systemctl` would use: the system manager's private socket for root (unless
    /// `DBUS_SYSTEM_BUS_ADDRESS` names a bus), the user manager's under `$XDG_RUNTIME_DIR`.
    pub fn for_manager(manager: Manager) -> Self {
        let private = match manager {
            Manager::System => {
                // SAFETY: geteuid has no preconditions and cannot fail.
                let root = unsafe { libc::geteuid() } == 0;
                let bus_named =
                    std::env::var_os("DBUS_SYSTEM_BUS_ADDRESS").is_some_and(|a| !a.is_empty());
                (root && !bus_named).then(|| PathBuf::from(SYSTEM_PRIVATE_SOCKET))
            }
            Manager::User => super::manager::user_runtime_dir().map(|d| d.join("systemd/private")),
        };
        Self {
            private,
            cold_bus_wait: COLD_BUS_WAIT,
            bus: None,
        }
    }
}

/// Is `e` systemd missing from a bus that works (not yet joined, or left for a restart)?
fn systemd_not_on_bus(e: &zbus::fdo::Error) -> bool {
    matches!(
        e,
        zbus::fdo::Error::NameHasNoOwner(_) | zbus::fdo::Error::ServiceUnknown(_)
    )
}

/// A peer-to-peer connection to the manager's private socket, bounded in time.
async fn connect_private(path: &Path) -> zbus::Result<Connection> {
    let connect = async {
        let stream = tokio::net::UnixStream::connect(path)
            .await
            .map_err(|e| zbus::Error::InputOutput(Arc::new(e)))?;
        zbus::connection::Builder::socket(private::split(stream))
            .p2p()
            .build()
            .await
    };
    match tokio::time::timeout(PRIVATE_CONNECT_TIMEOUT, connect).await {
        Ok(result) => result,
        Err(_) => Err(zbus::Error::InputOutput(Arc::new(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!(
                "no answer on `{}` within {}s",
                path.display(),
                PRIVATE_CONNECT_TIMEOUT.as_secs()
            ),
        )))),
    }
}

/// Connects to the bus and waits (up to `wait`) for systemd's name on it; returns the
/// connection and systemd's unique name.
async fn connect_bus(
    manager: Manager,
    wait: Duration,
    address: Option<&str>,
) -> zbus::Result<(Connection, String)> {
    let conn = match (address, manager) {
        (Some(address), _) => zbus::connection::Builder::address(address).build().await,
        (None, Manager::System) => Connection::system().await,
        (None, Manager::User) => Connection::session().await,
    }?;
    let bus = zbus::fdo::DBusProxy::builder(&conn)
        .cache_properties(CacheProperties::No)
        .build()
        .await?;
    let destination = zbus::names::BusName::try_from(DESTINATION)?;
    let deadline = Instant::now() + wait;
    loop {
        match bus.get_name_owner(destination.clone()).await {
            Ok(owner) => return Ok((conn, owner.to_string())),
            Err(e) if systemd_not_on_bus(&e) && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

impl Systemd {
    /// Connects to `manager` where `systemctl` would (see [`Endpoints::for_manager`]) and
    /// subscribes to its job signals.
    pub async fn connect(manager: Manager) -> Result<Self, DbusError> {
        Self::connect_to(manager, &Endpoints::for_manager(manager)).await
    }

    /// Connects to `manager` through `endpoints`: the private socket if one is given and
    /// answers, else the bus (the system bus honours `DBUS_SYSTEM_BUS_ADDRESS`).
    pub async fn connect_to(manager: Manager, endpoints: &Endpoints) -> Result<Self, DbusError> {
        let calls = Arc::new(Semaphore::new(MAX_CALLS_IN_FLIGHT));
        let link = Self::open_link(manager, endpoints, &calls, 0).await?;
        Ok(Self {
            manager,
            endpoints: endpoints.clone(),
            link: Arc::new(std::sync::Mutex::new(link)),
            reconnecting: Arc::new(tokio::sync::Mutex::new(())),
            calls,
        })
    }

    /// A new connection, subscribed to job signals.
    async fn open_link(
        manager: Manager,
        endpoints: &Endpoints,
        calls: &Semaphore,
        generation: u64,
    ) -> Result<Link, DbusError> {
        // A socket file that is not there was not tried: the message then names the bus only.
        let private = endpoints.private.as_deref().filter(|p| p.exists());
        let mut tried_private = None;
        if let Some(path) = private {
            match connect_private(path).await {
                Ok(conn) => {
                    let via = Via::Private(path.to_path_buf());
                    return Self::finish(conn, manager, via, None, calls, generation).await;
                }
                Err(_) => tried_private = Some(path.to_path_buf()),
            }
        }
        let via = tried_private.map_or(Via::Bus, Via::Neither);
        let (conn, owner) = connect_bus(manager, endpoints.cold_bus_wait, endpoints.bus.as_deref())
            .await
            .map_err(|source| DbusError::Unreachable {
                manager,
                via: via.clone(),
                source,
            })?;
        Self::finish(conn, manager, Via::Bus, Some(owner), calls, generation).await
    }

    async fn finish(
        conn: Connection,
        manager: Manager,
        via: Via,
        owner: Option<String>,
        calls: &Semaphore,
        generation: u64,
    ) -> Result<Link, DbusError> {
        let proxy = SystemdManagerProxy::builder(&conn)
            .cache_properties(CacheProperties::No)
            .build()
            .await
            .map_err(|source| DbusError::Unreachable {
                manager,
                via: via.clone(),
                source,
            })?;
        // systemd only emits job signals on the bus while some client is subscribed (its
        // private connections always get them; subscribing there is accepted and harmless).
        let permit = calls
            .acquire()
            .await
            .expect("the call semaphore is never closed");
        proxy
            .subscribe()
            .await
            .map_err(|e| classify(manager, &via, e, None, || "subscribe to job signals".into()))?;
        drop(permit);
        Ok(Link {
            conn,
            via,
            owner,
            proxy,
            generation,
        })
    }

    /// The connection in use now.
    fn link(&self) -> Link {
        self.link
            .lock()
            .expect("the link lock is never poisoned")
            .clone()
    }

    /// Replaces the lost connection `lost` with a new one, trying for at most
    /// [`RECONNECT_WAIT`] (systemd re-executing takes well under a second). A connection
    /// another call made since is used as it is.
    async fn reconnect(&self, lost: u64) -> Result<(), DbusError> {
        let _one = self.reconnecting.lock().await;
        if self.link().generation != lost {
            return Ok(());
        }
        let deadline = Instant::now() + RECONNECT_WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let attempt = tokio::time::timeout(
                left,
                Self::open_link(self.manager, &self.endpoints, &self.calls, lost + 1),
            )
            .await;
            match attempt {
                Ok(Ok(link)) => {
                    *self.link.lock().expect("the link lock is never poisoned") = link;
                    return Ok(());
                }
                Ok(Err(_)) if Instant::now() + RECONNECT_PAUSE < deadline => {
                    tokio::time::sleep(RECONNECT_PAUSE).await;
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => {
                    return Err(DbusError::Disconnected {
                        what: format!(
                            "a new connection (none within {} s)",
                            RECONNECT_WAIT.as_secs()
                        ),
                    })
                }
            }
        }
    }

    /// Runs `call` on the connection in use; if it finds the connection lost, reconnects
    /// and runs it once more. Only for calls that may be repeated: reads, `ResetFailedUnit`,
    /// `Reload`, and enqueuing a job (a `RestartUnit` whose reply was lost was either never
    /// enqueued, or is merged with its repetition by systemd; the rollout checks the unit
    /// restarted either way).
    async fn call<'a, T, F, Fut>(&'a self, call: F) -> Result<T, DbusError>
    where
        F: Fn(Link) -> Fut,
        Fut: std::future::Future<Output = Result<T, DbusError>> + 'a,
    {
        let link = self.link();
        let generation = link.generation;
        match call(link).await {
            Err(e) if e.is_connection_lost() => {
                self.reconnect(generation).await?;
                call(self.link()).await
            }
            other => other,
        }
    }

    /// How this connection reaches the manager now.
    pub fn via(&self) -> Via {
        self.link().via
    }

    /// A permit for one call in flight; held until its reply is in.
    async fn permit(&self) -> SemaphorePermit<'_> {
        // The semaphore is never closed, so acquiring cannot fail.
        self.calls
            .acquire()
            .await
            .expect("the call semaphore is never closed")
    }

    /// The manager this talks to.
    pub fn manager(&self) -> Manager {
        self.manager
    }

    fn classify(
        &self,
        link: &Link,
        e: zbus::Error,
        unit: Option<&str>,
        action: impl FnOnce() -> String,
    ) -> DbusError {
        classify(self.manager, &link.via, e, unit, action)
    }

    /// `daemon-reload`: re-reads unit files. systemd replies once the reload is complete.
    pub async fn reload(&self) -> Result<(), DbusError> {
        self.call(|link| async move {
            let _permit = self.permit().await;
            link.proxy
                .reload()
                .await
                .map_err(|e| self.classify(&link, e, None, || "reload its unit files".into()))
        })
        .await
    }

    /// Enqueues a job of `kind` for `unit`; [`Systemd::run_jobs`] follows it to its end.
    async fn enqueue(
        &self,
        kind: JobKind,
        unit: &str,
        mode: JobMode,
    ) -> Result<JobPath, DbusError> {
        self.call(|link| async move {
            let _permit = self.permit().await;
            let (proxy, mode) = (&link.proxy, mode.as_str());
            let reply = match kind {
                JobKind::Start => proxy.start_unit(unit, mode).await,
                JobKind::Stop => proxy.stop_unit(unit, mode).await,
                JobKind::Restart => proxy.restart_unit(unit, mode).await,
            };
            reply.map(JobPath::from).map_err(|e| {
                self.classify(&link, e, Some(unit), || format!("{} `{unit}`", kind.verb()))
            })
        })
        .await
    }

    /// Enqueues a job of `kind` for `unit` and follows it to its end, for at most `limit`
    /// (`None`: as long as systemd takes): [`Self::run_jobs`] for one unit.
    pub async fn run_job(
        &self,
        kind: JobKind,
        unit: &str,
        mode: JobMode,
        limit: Option<Duration>,
    ) -> Result<JobEnd, DbusError> {
        let mut ends = self
            .run_jobs(kind, &[unit.to_string()], mode, limit)
            .await?;
        Ok(ends.pop().expect("one end per unit"))
    }

    /// Enqueues a `kind` job for each of `units` (the caller bounds how many) and follows
    /// every one to its end, for at most `limit` (`None`: as long as systemd takes); returns
    /// each unit's end, in the order given. A job systemd merged into another (one path for
    /// two units) ends for both.
    ///
    /// The jobs are followed by their `JobRemoved` signals, and every [`JOB_POLL`] also by
    /// one `ListUnitsByPatterns` of the units still pending: a connection that is lost
    /// meanwhile is made again and the jobs looked up on the new one. When a unit no longer
    /// has a job and no signal said how it ended (`daemon-reexec` dropped the connection or
    /// the subscription), its end is [`JobEnd::Unobserved`]: the caller reads the unit's
    /// state to know. Past `limit`, the jobs still pending end [`JobEnd::GaveUp`].
    pub async fn run_jobs(
        &self,
        kind: JobKind,
        units: &[String],
        mode: JobMode,
        limit: Option<Duration>,
    ) -> Result<Vec<JobEnd>, DbusError> {
        use tokio::time::Instant;
        let deadline = limit.map(|l| Instant::now() + l);
        // The stream is open before the jobs exist, so no JobRemoved can be missed.
        let mut watch = Some(self.watch_jobs().await?);
        let jobs = futures_util::future::try_join_all(
            units.iter().map(|unit| self.enqueue(kind, unit, mode)),
        )
        .await?;
        let mut ends: Vec<Option<JobEnd>> = vec![None; units.len()];
        let mut removed: HashMap<JobPath, JobResult> = HashMap::new();
        let mut next_poll = Instant::now() + JOB_POLL;
        loop {
            if let Some(w) = &mut watch {
                for (end, job) in ends.iter_mut().zip(&jobs) {
                    if end.is_none() {
                        if let Some(r) = w.already(job) {
                            removed.insert(job.clone(), r.result);
                        }
                        if let Some(result) = removed.get(job) {
                            *end = Some(JobEnd::Removed(result.clone()));
                        }
                    }
                }
            }
            if ends.iter().all(Option::is_some) {
                return Ok(ends.into_iter().flatten().collect());
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                let gave_up = JobEnd::GaveUp(limit.unwrap_or_default());
                return Ok(ends
                    .into_iter()
                    .map(|end| end.unwrap_or_else(|| gave_up.clone()))
                    .collect());
            }
            let wake = deadline.map_or(next_poll, |d| d.min(next_poll));
            match &mut watch {
                Some(w) => match tokio::time::timeout_at(wake, w.next()).await {
                    // A signal came: see above whose it is.
                    Ok(Ok(())) => continue,
                    // The stream ended with the connection; the polls below carry on.
                    Ok(Err(e)) if e.is_connection_lost() => watch = None,
                    Ok(Err(e)) => return Err(e),
                    Err(_) => {}
                },
                None => tokio::time::sleep_until(wake).await,
            }
            if watch.is_some() && Instant::now() < next_poll {
                // Woken by the limit: the top of the loop ends it.
                continue;
            }
            next_poll = Instant::now() + JOB_POLL;
            let pending: Vec<String> = units
                .iter()
                .zip(&ends)
                .filter(|(_, end)| end.is_none())
                .map(|(unit, _)| unit.clone())
                .collect();
            // `list_units` reconnects when it finds the connection lost; a new connection
            // gets a new stream, for the signals of the jobs still queued.
            let generation = self.link().generation;
            let queued: BTreeSet<String> = self
                .list_units(&pending)
                .await?
                .into_iter()
                .filter(|row| row.job.is_some())
                .map(|row| row.name)
                .collect();
            if watch.is_none() || self.link().generation != generation {
                watch = self.watch_jobs().await.ok();
            }
            for ((unit, end), job) in units.iter().zip(ends.iter_mut()).zip(&jobs) {
                // Still queued or running (the same job, or one that took its place after
                // systemd re-executed): not settled yet.
                if end.is_some() || queued.contains(unit) {
                    continue;
                }
                // Gone: a signal sent before the reply that says so is in the stream now.
                let seen = watch.as_mut().and_then(|w| w.already(job));
                *end = Some(
                    match seen.map(|r| r.result).or_else(|| removed.get(job).cloned()) {
                        Some(result) => JobEnd::Removed(result),
                        None => JobEnd::Unobserved,
                    },
                );
            }
        }
    }

    /// Clears a unit's failed state and its start-rate counter (`systemctl reset-failed`).
    /// A unit that is not loaded has nothing to clear and is not an error.
    pub async fn reset_failed_unit(&self, unit: &str) -> Result<(), DbusError> {
        let result = self
            .call(|link| async move {
                let _permit = self.permit().await;
                link.proxy.reset_failed_unit(unit).await.map_err(|e| {
                    self.classify(&link, e, Some(unit), || {
                        format!("reset the failed state of `{unit}`")
                    })
                })
            })
            .await;
        match result {
            Ok(()) | Err(DbusError::NoSuchUnit { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// `systemctl enable` for unit files in the unit path; returns whether anything changed.
    pub async fn enable_unit_files(&self, units: &[String]) -> Result<bool, DbusError> {
        let link = self.link();
        let _permit = self.permit().await;
        let (_carries_install_info, changes) = link
            .proxy
            .enable_unit_files(units, false, false)
            .await
            .map_err(|e| {
                self.classify(&link, e, None, || format!("enable `{}`", units.join(" ")))
            })?;
        Ok(!changes.is_empty())
    }

    /// `systemctl disable`; returns whether anything changed.
    pub async fn disable_unit_files(&self, units: &[String]) -> Result<bool, DbusError> {
        let link = self.link();
        let _permit = self.permit().await;
        let changes = link
            .proxy
            .disable_unit_files(units, false)
            .await
            .map_err(|e| {
                self.classify(&link, e, None, || format!("disable `{}`", units.join(" ")))
            })?;
        Ok(!changes.is_empty())
    }

    /// The loaded units whose names match any of the shell-style `patterns`.
    pub async fn list_units(&self, patterns: &[String]) -> Result<Vec<UnitListing>, DbusError> {
        self.call(|link| async move {
            let _permit = self.permit().await;
            let rows = link
                .proxy
                .list_units_by_patterns(&[], patterns)
                .await
                .map_err(|e| self.classify(&link, e, None, || "list units".into()))?;
            Ok(rows.into_iter().map(UnitListing::from).collect())
        })
        .await
    }

    /// The `Properties` proxy of one unit's object.
    async fn properties(
        &self,
        link: &Link,
        unit: &str,
    ) -> Result<UnitPropertiesProxy<'static>, DbusError> {
        UnitPropertiesProxy::builder(&link.conn)
            .path(unit_path(unit))
            .cache_properties(CacheProperties::No)
            .build()
            .await
            .map_err(|e| self.classify(link, e, Some(unit), || read_action(unit)))
    }

    /// The state of a service unit: its `Unit` and `Service` properties, read with two
    /// concurrent `GetAll` calls. A unit systemd does not know yet is loaded by the lookup
    /// (its `load_state` then says `not-found` if there is no such file).
    pub async fn service_state(&self, unit: &str) -> Result<ServiceState, DbusError> {
        self.call(|link| async move {
            let props = self.properties(&link, unit).await?;
            let (unit_props, service_props) = futures_util::future::try_join(
                async {
                    let _permit = self.permit().await;
                    props.get_all_unit(UNIT_IFACE).await
                },
                async {
                    let _permit = self.permit().await;
                    props.get_all_service(SERVICE_IFACE).await
                },
            )
            .await
            .map_err(|e| self.classify(&link, e, Some(unit), || read_action(unit)))?;
            Ok(ServiceState::from_props(unit, unit_props, service_props))
        })
        .await
    }

    /// A timer unit's state: its `Unit` and `Timer` properties.
    pub async fn timer_state(&self, unit: &str) -> Result<TimerState, DbusError> {
        self.call(|link| async move {
            let props = self.properties(&link, unit).await?;
            let (unit_props, timer) = futures_util::future::try_join(
                async {
                    let _permit = self.permit().await;
                    props.get_all_unit(UNIT_IFACE).await
                },
                async {
                    let _permit = self.permit().await;
                    props.get_all_timer(TIMER_IFACE).await
                },
            )
            .await
            .map_err(|e| self.classify(&link, e, Some(unit), || read_action(unit)))?;
            Ok(TimerState {
                unit: unit.to_string(),
                load_state: LoadState::parse(&unit_props.load_state),
                active_state: ActiveState::parse(&unit_props.active_state),
                // 0 when there is none: the timer is stopped, or has never fired.
                next_elapse_usec: Some(timer.next_elapse_usec_realtime)
                    .filter(|&t| t != 0 && t != u64::MAX),
                last_trigger_usec: Some(timer.last_trigger_usec).filter(|&t| t != 0),
                calendar: timer
                    .timers_calendar
                    .into_iter()
                    .filter(|(base, _, _)| base == "OnCalendar")
                    .map(|(_, spec, _)| spec)
                    .collect(),
            })
        })
        .await
    }

    /// The argument lists of a service's `ExecStart=` commands.
    pub async fn exec_start(&self, unit: &str) -> Result<Vec<Vec<String>>, DbusError> {
        self.call(|link| async move {
            let props = self.properties(&link, unit).await?;
            let _permit = self.permit().await;
            let props = props
                .get_all_service_exec(SERVICE_IFACE)
                .await
                .map_err(|e| self.classify(&link, e, Some(unit), || read_action(unit)))?;
            Ok(props.exec_start.into_iter().map(|c| c.1).collect())
        })
        .await
    }

    /// The `ActiveState` of any unit (sockets, targets), with one `Get`.
    pub async fn active_state(&self, unit: &str) -> Result<ActiveState, DbusError> {
        self.call(|link| async move {
            let props = self.properties(&link, unit).await?;
            let state: String = self
                .get(&props, UNIT_IFACE, "ActiveState")
                .await
                .map_err(|e| self.classify(&link, e, Some(unit), || read_action(unit)))?;
            Ok(ActiveState::parse(&state))
        })
        .await
    }

    /// `NeedDaemonReload` of any unit: its files changed on disk since systemd read them.
    pub async fn need_daemon_reload(&self, unit: &str) -> Result<bool, DbusError> {
        Ok(self.unit_props(unit).await?.need_daemon_reload)
    }

    /// The `Unit` properties of any unit, with one `GetAll`.
    async fn unit_props(&self, unit: &str) -> Result<UnitProps, DbusError> {
        self.call(|link| async move {
            let props = self.properties(&link, unit).await?;
            let _permit = self.permit().await;
            props
                .get_all_unit(UNIT_IFACE)
                .await
                .map_err(|e| self.classify(&link, e, Some(unit), || read_action(unit)))
        })
        .await
    }

    /// A socket unit's `Result`: why systemd failed it, if it did.
    pub async fn socket_result(&self, unit: &str) -> Result<SocketResult, DbusError> {
        self.call(|link| async move {
            let props = self.properties(&link, unit).await?;
            let _permit = self.permit().await;
            let props = props
                .get_all_socket(SOCKET_IFACE)
                .await
                .map_err(|e| self.classify(&link, e, Some(unit), || read_action(unit)))?;
            Ok(SocketResult::parse(&props.result))
        })
        .await
    }

    /// What `status` shows of the service `unit`, one `Get` per property, all concurrently
    /// (each holds a permit: see [`MAX_CALLS_IN_FLIGHT`]). `listed` is the unit's row of
    /// [`Self::list_units`]; a unit the manager has not loaded has none, and its states are
    /// read too (which loads it, as any read of its properties does). `ControlGroup` is read
    /// only when systemd has no memory figure (see [`ServiceFigures::control_group`]).
    pub async fn service_figures(
        &self,
        unit: &str,
        listed: Option<&UnitListing>,
    ) -> Result<ServiceFigures, DbusError> {
        use futures_util::future::{try_join, try_join3};
        self.call(|link| async move {
            let props = self.properties(&link, unit).await?;
            let states = async {
                match listed {
                    Some(row) => Ok((row.active_state.clone(), row.sub_state.clone())),
                    None => {
                        let (active, sub) = try_join(
                            self.get::<String>(&props, UNIT_IFACE, "ActiveState"),
                            self.get::<String>(&props, UNIT_IFACE, "SubState"),
                        )
                        .await?;
                        Ok((ActiveState::parse(&active), SubState::parse(&sub)))
                    }
                }
            };
            let classify = |e| self.classify(&link, e, Some(unit), || read_action(unit));
            let (
                (active_state, sub_state),
                (active_enter_usec, main_pid, n_restarts),
                (memory, cpu, result),
            ) = try_join3(
                states,
                try_join3(
                    self.get::<u64>(&props, UNIT_IFACE, "ActiveEnterTimestamp"),
                    self.get::<u32>(&props, SERVICE_IFACE, "MainPID"),
                    self.get::<u32>(&props, SERVICE_IFACE, "NRestarts"),
                ),
                try_join3(
                    self.get::<u64>(&props, SERVICE_IFACE, "MemoryCurrent"),
                    self.get::<u64>(&props, SERVICE_IFACE, "CPUUsageNSec"),
                    self.get::<String>(&props, SERVICE_IFACE, "Result"),
                ),
            )
            .await
            .map_err(classify)?;
            let memory_bytes = set(memory);
            let control_group = if memory_bytes.is_none() && main_pid != 0 {
                self.get::<String>(&props, SERVICE_IFACE, "ControlGroup")
                    .await
                    .map_err(classify)?
            } else {
                String::new()
            };
            Ok(ServiceFigures {
                unit: unit.to_string(),
                active_state,
                sub_state,
                active_enter_usec,
                main_pid,
                n_restarts,
                memory_bytes,
                cpu_nsec: set(cpu),
                result: ServiceResult::parse(&result),
                control_group,
            })
        })
        .await
    }

    /// One property of `interface`, holding a permit while the call is in flight; a value of
    /// another D-Bus type than `T` is an error, never a default.
    async fn get<T>(
        &self,
        props: &UnitPropertiesProxy<'_>,
        interface: &str,
        property: &str,
    ) -> zbus::Result<T>
    where
        T: TryFrom<zbus::OwnedVariant, Error = zbus::Error>,
    {
        let value = {
            let _permit = self.permit().await;
            props.get(interface, property).await?
        };
        T::try_from(value)
    }

    /// Opens the `JobRemoved` stream. Do this before enqueuing the jobs to wait for.
    async fn watch_jobs(&self) -> Result<JobWatch, DbusError> {
        self.call(|link| async move {
            let action = || "watch job signals".to_string();
            // A match rule of our own rather than the proxy's `receive_job_removed`: it
            // names systemd's unique name and gets a deep queue (see `JOB_STREAM_QUEUE`).
            // On the private socket, signals carry no sender (and come from systemd alone).
            let mut rule = MatchRule::builder().msg_type(MessageType::Signal);
            if let Some(owner) = &link.owner {
                rule = rule.sender(owner.as_str());
            }
            let rule = rule
                .path(MANAGER_PATH)
                .interface(MANAGER_IFACE)
                .member("JobRemoved")
                .build()
                .map_err(|e| self.classify(&link, e, None, action))?;
            let stream = MessageStream::for_match_rule(
                rule,
                &link.conn,
                std::num::NonZeroUsize::new(JOB_STREAM_QUEUE),
            )
            .await
            .map_err(|e| self.classify(&link, e, None, action))?;
            Ok(JobWatch {
                stream,
                manager: self.manager,
                via: link.via.clone(),
                seen: HashMap::new(),
            })
        })
        .await
    }
}

/// The jobs [`Systemd::run_job`] enqueues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    /// `StartUnit`.
    Start,
    /// `StopUnit`.
    Stop,
    /// `RestartUnit`.
    Restart,
}

impl std::fmt::Display for JobKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.verb())
    }
}

impl JobKind {
    /// `start`, `stop` or `restart`.
    pub fn verb(self) -> &'static str {
        match self {
            Self::Start => "start",
            Self::Stop => "stop",
            Self::Restart => "restart",
        }
    }
}

/// How a job [`Systemd::run_job`] followed ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobEnd {
    /// systemd removed it with this result.
    Removed(JobResult),
    /// The unit has no job any more, but no signal said how it ended: the connection (or
    /// the subscription) was lost while it ran. The unit's state tells.
    Unobserved,
    /// systemd had not finished it within the limit.
    GaveUp(Duration),
}

fn read_action(unit: &str) -> String {
    format!("read the properties of `{unit}`")
}

/// The `JobRemoved` signals since it was opened.
pub struct JobWatch {
    stream: MessageStream,
    manager: Manager,
    via: Via,
    /// Jobs that ended while we waited for another one.
    seen: HashMap<JobPath, JobRemoved>,
}

impl std::fmt::Debug for JobWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobWatch")
            .field("seen", &self.seen)
            .finish()
    }
}

impl JobWatch {
    /// The end of `job`, if its signal is already here (never waits).
    fn already(&mut self, job: &JobPath) -> Option<JobRemoved> {
        use futures_util::FutureExt as _;
        // Each poll takes a signal the stream already holds; another job's is kept for a
        // later call.
        while let Some(Some(Ok(msg))) = self.stream.next().now_or_never() {
            if let Some(removed) = job_removed(msg) {
                self.seen.insert(removed.job.clone(), removed);
            }
        }
        self.seen.remove(job)
    }

    /// Waits for the next signal and keeps it if it is a `JobRemoved` (for [`Self::already`]).
    async fn next(&mut self) -> Result<(), DbusError> {
        let Some(msg) = self.stream.next().await else {
            return Err(DbusError::Disconnected {
                what: "job signals".into(),
            });
        };
        let msg = msg.map_err(|e| {
            classify(self.manager, &self.via, e, None, || {
                "read job signals".into()
            })
        })?;
        if let Some(removed) = job_removed(msg) {
            self.seen.insert(removed.job.clone(), removed);
        }
        Ok(())
    }
}

/// The `JobRemoved` a signal carries; a malformed signal is not ours to fail on (systemd's
/// own are well-formed).
fn job_removed(msg: zbus::Message) -> Option<JobRemoved> {
    let signal = proxy::JobRemoved::from_message(msg)?;
    let args = signal.args().ok()?;
    Some(JobRemoved {
        id: args.id,
        job: JobPath::from(args.job),
        unit: args.unit,
        result: JobResult::parse(&args.result),
    })
}

/// Maps a zbus error to what a person can act on.
fn classify(
    manager: Manager,
    via: &Via,
    e: zbus::Error,
    unit: Option<&str>,
    action: impl FnOnce() -> String,
) -> DbusError {
    use zbus::fdo::Error as Fdo;
    match &e {
        zbus::Error::Connection(..)
        | zbus::Error::InputOutput(_)
        | zbus::Error::Address(_)
        | zbus::Error::Handshake(_) => DbusError::Unreachable {
            manager,
            via: via.clone(),
            source: e,
        },
        zbus::Error::FDO(fdo) => match **fdo {
            Fdo::AccessDenied(_) | Fdo::InteractiveAuthorizationRequired(_) => {
                DbusError::PermissionDenied {
                    action: action(),
                    source: e,
                }
            }
            // NoReply: systemd left the bus before answering (it re-executes).
            Fdo::ServiceUnknown(_)
            | Fdo::NameHasNoOwner(_)
            | Fdo::Disconnected(_)
            | Fdo::NoReply(_)
            | Fdo::NoServer(_) => DbusError::Unreachable {
                manager,
                via: via.clone(),
                source: e,
            },
            _ => DbusError::Call {
                action: action(),
                source: e,
            },
        },
        zbus::Error::MethodError(name, _, _) => match name.as_str() {
            "org.freedesktop.systemd1.NoSuchUnit" | "org.freedesktop.systemd1.LoadFailed"
                if unit.is_some() =>
            {
                DbusError::NoSuchUnit {
                    unit: unit.unwrap_or_default().to_string(),
                    source: e,
                }
            }
            // polkit's refusals arrive under systemd's own names on some versions.
            "org.freedesktop.systemd1.InteractiveAuthorizationRequired"
            | "org.freedesktop.PolicyKit1.Error.NotAuthorized" => DbusError::PermissionDenied {
                action: action(),
                source: e,
            },
            _ => DbusError::Call {
                action: action(),
                source: e,
            },
        },
        _ => DbusError::Call {
            action: action(),
            source: e,
        },
    }
}

/// The object path of a unit, as systemd derives it (`sd_bus_path_encode`): every byte that is
/// not an ASCII letter, or a digit after the first position, becomes `_` and two hex digits.
/// Computing it saves the `GetUnit` round trip.
pub fn unit_path(unit: &str) -> String {
    let mut out = String::with_capacity(UNIT_PATH_PREFIX.len() + 1 + unit.len() * 3);
    out.push_str(UNIT_PATH_PREFIX);
    out.push('/');
    if unit.is_empty() {
        out.push('_');
        return out;
    }
    for (i, b) in unit.bytes().enumerate() {
        if b.is_ascii_alphabetic() || (i > 0 && b.is_ascii_digit()) {
            out.push(b as char);
        } else {
            out.push('_');
            out.push_str(&format!("{b:02x}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_paths_are_escaped_like_systemd_does() {
        // Values from `busctl tree org.freedesktop.systemd1` on systemd 252.
        assert_eq!(
            unit_path("web@1.service"),
            "/org/freedesktop/systemd1/unit/web_401_2eservice"
        );
        assert_eq!(
            unit_path("dbus.socket"),
            "/org/freedesktop/systemd1/unit/dbus_2esocket"
        );
        assert_eq!(
            unit_path("1x-y.target"),
            "/org/freedesktop/systemd1/unit/_31x_2dy_2etarget"
        );
        assert_eq!(unit_path(""), "/org/freedesktop/systemd1/unit/_");
    }

    #[test]
    fn a_misspelt_or_missing_property_is_an_error_not_a_default() {
        use zbus::wire::{serialized::Context, to_bytes, LE};
        let ctxt = Context::new(LE, 0);
        // systemd's reply, but for a property sysmgr reads that is missing (or misspelt here).
        let mut props: HashMap<&str, zbus::Variant<'_>> = HashMap::new();
        props.insert("ActiveState", zbus::Variant::from("active"));
        let bytes = to_bytes(ctxt, &props).unwrap();
        let err = bytes
            .deserialize::<UnitProps>()
            .map(|(p, _)| p)
            .unwrap_err();
        assert!(err.to_string().contains("LoadState"), "{err}");
    }
}
