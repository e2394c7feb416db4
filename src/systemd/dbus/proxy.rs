//! The wire side of the boundary: zbus proxy traits for exactly the systemd methods and
//! properties sysmgr uses, and the structs their replies deserialize into.
//!
//! Everything here mirrors systemd's D-Bus API one to one (names, argument order, D-Bus
//! types), so a reader can check it against `busctl introspect org.freedesktop.systemd1`.
//! The client in [`super`] turns these into sysmgr's own types. Property names are checked
//! by serde: a misspelt or missing property fails the read ("missing field"), it never
//! becomes an empty string or a zero.

use serde::Deserialize;
use zbus::{as_variant, OwnedObjectPath, OwnedVariant, Type};

/// `org.freedesktop.systemd1.Manager`, the methods sysmgr calls and the signal it watches.
#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Manager",
    default_service = "org.freedesktop.systemd1",
    default_path = "/org/freedesktop/systemd1"
)]
pub(crate) trait SystemdManager {
    /// Asks systemd to emit job signals to this client.
    fn subscribe(&self) -> zbus::Result<()>;

    /// `daemon-reload`; the reply comes once the reload is complete.
    fn reload(&self) -> zbus::Result<()>;

    /// Enqueues a start job.
    fn start_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;

    /// Enqueues a stop job.
    fn stop_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;

    /// Enqueues a restart job.
    fn restart_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;

    /// `systemctl reset-failed UNIT`.
    fn reset_failed_unit(&self, name: &str) -> zbus::Result<()>;

    /// `systemctl enable`: (carries install info, changes).
    fn enable_unit_files(
        &self,
        files: &[String],
        runtime: bool,
        force: bool,
    ) -> zbus::Result<(bool, Vec<UnitFileChange>)>;

    /// `systemctl disable`.
    fn disable_unit_files(
        &self,
        files: &[String],
        runtime: bool,
    ) -> zbus::Result<Vec<UnitFileChange>>;

    /// The loaded units in any of `states` (all when empty) matching any of `patterns`.
    fn list_units_by_patterns(
        &self,
        states: &[&str],
        patterns: &[String],
    ) -> zbus::Result<Vec<UnitRow>>;

    /// A job finished: its id, object path, unit and result.
    #[zbus(signal)]
    fn job_removed(
        &self,
        id: u32,
        job: OwnedObjectPath,
        unit: String,
        result: String,
    ) -> zbus::Result<()>;
}

/// `org.freedesktop.DBus.Properties` on a unit object: one `GetAll` per interface sysmgr reads
/// whole, and `Get` for single properties (see [`super::ServiceFigures`] for why).
#[zbus::proxy(
    interface = "org.freedesktop.DBus.Properties",
    default_service = "org.freedesktop.systemd1",
    default_path = "/org/freedesktop/systemd1"
)]
pub(crate) trait UnitProperties {
    /// `GetAll("org.freedesktop.systemd1.Unit")`.
    #[zbus(name = "GetAll")]
    fn get_all_unit(&self, interface: &str) -> zbus::Result<UnitProps>;

    /// `GetAll("org.freedesktop.systemd1.Service")`.
    #[zbus(name = "GetAll")]
    fn get_all_service(&self, interface: &str) -> zbus::Result<ServiceProps>;

    /// `GetAll("org.freedesktop.systemd1.Socket")`.
    #[zbus(name = "GetAll")]
    fn get_all_socket(&self, interface: &str) -> zbus::Result<SocketProps>;

    /// `GetAll("org.freedesktop.systemd1.Timer")`.
    #[zbus(name = "GetAll")]
    fn get_all_timer(&self, interface: &str) -> zbus::Result<TimerProps>;

    /// `GetAll("org.freedesktop.systemd1.Service")`, for its `ExecStart`.
    #[zbus(name = "GetAll")]
    fn get_all_service_exec(&self, interface: &str) -> zbus::Result<ServiceExecProps>;

    /// `Get(interface, property)`: one property, its type checked by the caller.
    fn get(&self, interface: &str, property: &str) -> zbus::Result<OwnedVariant>;
}

/// A service's `ExecStart` property.
#[derive(Debug, Clone, Deserialize, Type)]
#[zbus(signature = "a{sv}")]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ServiceExecProps {
    #[serde(with = "as_variant")]
    pub exec_start: Vec<ExecCommand>,
}

/// The interface [`UnitPropertiesProxy::get_all_timer`] must be given.
pub(crate) const TIMER_IFACE: &str = "org.freedesktop.systemd1.Timer";

/// The `org.freedesktop.systemd1.Timer` properties sysmgr reads.
#[derive(Debug, Clone, Deserialize, Type)]
#[zbus(signature = "a{sv}")]
#[serde(rename_all = "PascalCase")]
pub(crate) struct TimerProps {
    #[serde(rename = "NextElapseUSecRealtime", with = "as_variant")]
    pub next_elapse_usec_realtime: u64,
    #[serde(rename = "LastTriggerUSec", with = "as_variant")]
    pub last_trigger_usec: u64,
    /// `(base, expression, next elapse)`: `("OnCalendar", "*-*-* 03:00:00", ...)`.
    #[serde(with = "as_variant")]
    pub timers_calendar: Vec<(String, String, u64)>,
}

/// One `ExecStart` entry: path, argv, ignore failure, then timestamps and status.
pub(crate) type ExecCommand = (String, Vec<String>, bool, u64, u64, u64, u64, u32, i32, i32);

/// The interface [`UnitPropertiesProxy::get_all_unit`] must be given.
pub(crate) const UNIT_IFACE: &str = "org.freedesktop.systemd1.Unit";
/// The interface [`UnitPropertiesProxy::get_all_service`] must be given.
pub(crate) const SERVICE_IFACE: &str = "org.freedesktop.systemd1.Service";
/// The interface [`UnitPropertiesProxy::get_all_socket`] must be given.
pub(crate) const SOCKET_IFACE: &str = "org.freedesktop.systemd1.Socket";

/// One change `EnableUnitFiles`/`DisableUnitFiles` made: `(type, file, destination)`.
// The wire struct has every field systemd sends; sysmgr only counts the changes.
#[allow(dead_code)]
#[derive(Debug, Clone, Deserialize, Type)]
pub(crate) struct UnitFileChange {
    /// `symlink` or `unlink`.
    pub change: String,
    /// The link.
    pub file: String,
    /// What it points to.
    pub destination: String,
}

/// One row of `ListUnitsByPatterns` (`ssssssouso`).
// Every column systemd sends, in order; sysmgr reads the name and the three states.
#[allow(dead_code)]
#[derive(Debug, Clone, Deserialize, Type)]
pub(crate) struct UnitRow {
    pub name: String,
    pub description: String,
    pub load_state: String,
    pub active_state: String,
    pub sub_state: String,
    pub following: String,
    pub path: OwnedObjectPath,
    pub job_id: u32,
    pub job_type: String,
    pub job_path: OwnedObjectPath,
}

/// The `org.freedesktop.systemd1.Unit` properties sysmgr reads, by their D-Bus names. Every
/// field is required: systemd's `GetAll` returns all of them, so a missing one is a bug here.
#[derive(Debug, Clone, Deserialize, Type)]
#[zbus(signature = "a{sv}")]
#[serde(rename_all = "PascalCase")]
pub(crate) struct UnitProps {
    #[serde(with = "as_variant")]
    pub load_state: String,
    #[serde(with = "as_variant")]
    pub active_state: String,
    #[serde(with = "as_variant")]
    pub sub_state: String,
    #[serde(rename = "InvocationID", with = "as_variant")]
    pub invocation_id: Vec<u8>,
    #[serde(with = "as_variant")]
    pub active_enter_timestamp: u64,
    #[serde(with = "as_variant")]
    pub need_daemon_reload: bool,
    #[serde(with = "as_variant")]
    pub triggered_by: Vec<String>,
}

/// The `org.freedesktop.systemd1.Service` properties sysmgr reads, by their D-Bus names.
#[derive(Debug, Clone, Deserialize, Type)]
#[zbus(signature = "a{sv}")]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ServiceProps {
    #[serde(rename = "MainPID", with = "as_variant")]
    pub main_pid: u32,
    #[serde(rename = "NRestarts", with = "as_variant")]
    pub n_restarts: u32,
    #[serde(with = "as_variant")]
    pub memory_current: u64,
    #[serde(with = "as_variant")]
    pub control_group: String,
    #[serde(rename = "CPUUsageNSec", with = "as_variant")]
    pub cpu_usage_nsec: u64,
    #[serde(rename = "TimeoutStartUSec", with = "as_variant")]
    pub timeout_start_usec: u64,
    #[serde(rename = "TimeoutStopUSec", with = "as_variant")]
    pub timeout_stop_usec: u64,
    #[serde(with = "as_variant")]
    pub result: String,
    #[serde(with = "as_variant")]
    pub exec_main_status: i32,
    #[serde(with = "as_variant")]
    pub environment: Vec<String>,
}

/// The `org.freedesktop.systemd1.Socket` properties sysmgr reads, by their D-Bus names.
#[derive(Debug, Clone, Deserialize, Type)]
#[zbus(signature = "a{sv}")]
#[serde(rename_all = "PascalCase")]
pub(crate) struct SocketProps {
    #[serde(with = "as_variant")]
    pub result: String,
}
