//! The environment that systemd and sysmgr hand a worker, read once into a value.
//!
//! The protocol variables only make sense together (`LISTEN_PID` decides whether `LISTEN_FDS` is
//! ours, `WATCHDOG_PID` whether `WATCHDOG_USEC` is), and glibc's `setenv`/`unsetenv` are not safe
//! while another thread calls `getenv`. So a worker reads everything it needs exactly once, at the
//! top of `main` before any runtime or thread starts, into a [`WorkerEnv`]; every later consumer
//! ([`Listeners`](crate::Listeners), [`Notifier`](crate::Notifier),
//! [`DrainTiming`](crate::DrainTiming)) takes that value and never touches the process
//! environment again. Nothing here writes the environment either: `LISTEN_*` stay set, and a
//! child process ignores them because `LISTEN_PID` is not its own. Tests build a [`WorkerEnv`]
//! from explicit pairs instead of mutating theirs.

use std::ffi::{OsStr, OsString};
use std::time::Duration;

/// Variables written by systemd's socket activation (`sd_listen_fds(3)`).
pub(crate) const LISTEN_FDS: &str = "LISTEN_FDS";
pub(crate) const LISTEN_PID: &str = "LISTEN_PID";
pub(crate) const LISTEN_FDNAMES: &str = "LISTEN_FDNAMES";
/// Variables written by systemd for `Type=notify` and `WatchdogSec=` (`sd_notify(3)`).
const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";
const WATCHDOG_USEC: &str = "WATCHDOG_USEC";
const WATCHDOG_PID: &str = "WATCHDOG_PID";
/// Variables written by the units `sysmgr generate` renders.
const SYSMGR_APP: &str = "SYSMGR_APP";
const SYSMGR_INSTANCE: &str = "SYSMGR_INSTANCE";
const SYSMGR_KILL_TIMEOUT_MS: &str = "SYSMGR_KILL_TIMEOUT_MS";
/// The unit's `KillSignal=` by name (`SIGQUIT`), for apps configured with a signal other than
/// the SIGINT and SIGTERM every worker handles anyway.
const SYSMGR_KILL_SIGNAL: &str = "SYSMGR_KILL_SIGNAL";
/// Development override for the addresses bound when not socket-activated.
pub(crate) const SYSMGR_DEV_LISTEN: &str = "SYSMGR_DEV_LISTEN";

/// A variable that is present but cannot be understood.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvError {
    /// A variable that must hold a decimal number holds something else.
    #[error("environment variable `{var}` must be a decimal number, found `{value}`")]
    NotANumber {
        /// The variable's name.
        var: &'static str,
        /// Its value, lossily converted to UTF-8.
        value: String,
    },
    /// A variable that must be UTF-8 is not.
    #[error("environment variable `{var}` is not valid UTF-8: `{value}`")]
    NotUtf8 {
        /// The variable's name.
        var: &'static str,
        /// Its value, lossily converted to UTF-8.
        value: String,
    },
}

/// What systemd passed for socket activation, when it was meant for this process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ListenVars {
    /// `LISTEN_FDS`: how many fds, starting at 3.
    pub(crate) count: u32,
    /// `LISTEN_FDNAMES`, still colon-separated; absent when systemd did not set it.
    pub(crate) names: Option<String>,
}

/// Why `LISTEN_FDS` does not apply to this process; kept to explain the development fallback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NotActivated {
    /// `LISTEN_FDS` is not set at all: started by hand, not by a socket unit.
    Unset,
    /// `LISTEN_FDS` is set without `LISTEN_PID`; `sd_listen_fds(3)` ignores that, so do we.
    NoPid,
    /// `LISTEN_PID` names another process: the variables were inherited from a parent that was
    /// socket-activated itself, and the fds (if still open) are not ours to take.
    OtherPid(u32),
}

/// A snapshot of every variable a sysmgr worker reads, taken once at start.
///
/// Build it with [`WorkerEnv::from_process`] at the top of `main`, before starting an async
/// runtime or any thread, then hand it to the other constructors of this crate.
#[derive(Debug, Clone)]
pub struct WorkerEnv {
    pid: u32,
    listen: Result<ListenVars, NotActivated>,
    notify_socket: Option<OsString>,
    watchdog: Option<Duration>,
    kill_timeout: Option<Duration>,
    kill_signal: Option<String>,
    app: Option<String>,
    instance: Option<String>,
    dev_listen: Option<String>,
}

impl WorkerEnv {
    /// Reads the process environment.
    ///
    /// Only reads: nothing is set or removed, so this is safe to call at any time, but call it
    /// first thing in `main`, before any thread starts, so that the snapshot is the one systemd
    /// wrote and no other thread can be changing the environment meanwhile. The `LISTEN_*`
    /// variables are deliberately left in place: a child process ignores them because
    /// `LISTEN_PID` is not its own, and removing them is not thread-safe.
    pub fn from_process() -> Result<Self, EnvError> {
        Self::from_vars(std::process::id(), std::env::vars_os())
    }

    /// Builds the snapshot from explicit pairs, as if `pid` were this process's ID.
    ///
    /// This is what tests use, and what a program that received its environment some other way
    /// (a supervisor passing it over a pipe, say) can use. Unknown variables are ignored; for a
    /// variable given twice the last value wins, as with `execve(2)`'s environment.
    pub fn from_vars<I, K, V>(pid: u32, vars: I) -> Result<Self, EnvError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: Into<OsString>,
    {
        let mut raw = Raw::default();
        for (key, value) in vars {
            let slot = match key.as_ref().to_str() {
                Some(LISTEN_FDS) => &mut raw.listen_fds,
                Some(LISTEN_PID) => &mut raw.listen_pid,
                Some(LISTEN_FDNAMES) => &mut raw.listen_fdnames,
                Some(NOTIFY_SOCKET) => &mut raw.notify_socket,
                Some(WATCHDOG_USEC) => &mut raw.watchdog_usec,
                Some(WATCHDOG_PID) => &mut raw.watchdog_pid,
                Some(SYSMGR_APP) => &mut raw.app,
                Some(SYSMGR_INSTANCE) => &mut raw.instance,
                Some(SYSMGR_KILL_TIMEOUT_MS) => &mut raw.kill_timeout_ms,
                Some(SYSMGR_KILL_SIGNAL) => &mut raw.kill_signal,
                Some(SYSMGR_DEV_LISTEN) => &mut raw.dev_listen,
                _ => continue,
            };
            *slot = Some(value.into());
        }
        raw.parse(pid)
    }

    /// The process ID the snapshot was taken for.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Whether systemd passed listening sockets to this very process.
    pub fn is_socket_activated(&self) -> bool {
        self.listen.is_ok()
    }

    pub(crate) fn listen(&self) -> &Result<ListenVars, NotActivated> {
        &self.listen
    }

    /// `NOTIFY_SOCKET`: where `sd_notify` datagrams go; `None` outside `Type=notify` services.
    pub fn notify_socket(&self) -> Option<&OsStr> {
        self.notify_socket.as_deref()
    }

    /// The watchdog interval (`WATCHDOG_USEC`) when `WatchdogSec=` is set for this process.
    ///
    /// `None` when unset, zero, or when `WATCHDOG_PID` names another process (systemd expects
    /// pings from the main PID; a forked child must not inherit the duty).
    pub fn watchdog(&self) -> Option<Duration> {
        self.watchdog
    }

    /// `SYSMGR_KILL_TIMEOUT_MS`: how long after the kill signal systemd sends `SIGKILL`.
    pub fn kill_timeout(&self) -> Option<Duration> {
        self.kill_timeout
    }

    /// `SYSMGR_KILL_SIGNAL`: the unit's `KillSignal=` by name, e.g. `SIGQUIT`, when set.
    pub fn kill_signal(&self) -> Option<&str> {
        self.kill_signal.as_deref()
    }

    /// `SYSMGR_APP`: the app's name in the sysmgr file.
    pub fn app(&self) -> Option<&str> {
        self.app.as_deref()
    }

    /// `SYSMGR_INSTANCE`: this instance's number, 1-based, as a string (`%i` of the template).
    pub fn instance(&self) -> Option<&str> {
        self.instance.as_deref()
    }

    /// `SYSMGR_DEV_LISTEN`: addresses to bind when not socket-activated, overriding the
    /// program's defaults (see [`Listeners::from_env_or_bind`](crate::Listeners::from_env_or_bind)).
    pub fn dev_listen(&self) -> Option<&str> {
        self.dev_listen.as_deref()
    }
}

/// The variables as found, before interpretation.
#[derive(Default)]
struct Raw {
    listen_fds: Option<OsString>,
    listen_pid: Option<OsString>,
    listen_fdnames: Option<OsString>,
    notify_socket: Option<OsString>,
    watchdog_usec: Option<OsString>,
    watchdog_pid: Option<OsString>,
    app: Option<OsString>,
    instance: Option<OsString>,
    kill_timeout_ms: Option<OsString>,
    kill_signal: Option<OsString>,
    dev_listen: Option<OsString>,
}

impl Raw {
    fn parse(self, pid: u32) -> Result<WorkerEnv, EnvError> {
        let listen = match (self.listen_fds, self.listen_pid) {
            (None, _) => Err(NotActivated::Unset),
            (Some(_), None) => Err(NotActivated::NoPid),
            (Some(fds), Some(listen_pid)) => {
                let listen_pid = number::<u32>(LISTEN_PID, &listen_pid)?;
                if listen_pid == pid {
                    Ok(ListenVars {
                        count: number(LISTEN_FDS, &fds)?,
                        names: self
                            .listen_fdnames
                            .map(|v| utf8(LISTEN_FDNAMES, v))
                            .transpose()?,
                    })
                } else {
                    Err(NotActivated::OtherPid(listen_pid))
                }
            }
        };
        let watchdog_for_us = match &self.watchdog_pid {
            None => true,
            Some(v) => number::<u32>(WATCHDOG_PID, v)? == pid,
        };
        let watchdog = match &self.watchdog_usec {
            Some(v) if watchdog_for_us => Some(number::<u64>(WATCHDOG_USEC, v)?)
                .filter(|&usec| usec > 0)
                .map(Duration::from_micros),
            _ => None,
        };
        let kill_timeout = self
            .kill_timeout_ms
            .as_deref()
            .map(|v| number::<u64>(SYSMGR_KILL_TIMEOUT_MS, v).map(Duration::from_millis))
            .transpose()?;
        Ok(WorkerEnv {
            pid,
            listen,
            notify_socket: self.notify_socket.filter(|v| !v.is_empty()),
            watchdog,
            kill_timeout,
            kill_signal: self
                .kill_signal
                .map(|v| utf8(SYSMGR_KILL_SIGNAL, v))
                .transpose()?,
            app: self.app.map(|v| utf8(SYSMGR_APP, v)).transpose()?,
            instance: self
                .instance
                .map(|v| utf8(SYSMGR_INSTANCE, v))
                .transpose()?,
            dev_listen: self
                .dev_listen
                .map(|v| utf8(SYSMGR_DEV_LISTEN, v))
                .transpose()?,
        })
    }
}

fn number<T: std::str::FromStr>(var: &'static str, value: &OsStr) -> Result<T, EnvError> {
    // Digits only: `str::parse` would also take a leading `+`, which systemd never writes.
    value
        .to_str()
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| EnvError::NotANumber {
            var,
            value: value.to_string_lossy().into_owned(),
        })
}

fn utf8(var: &'static str, value: OsString) -> Result<String, EnvError> {
    value.into_string().map_err(|value| EnvError::NotUtf8 {
        var,
        value: value.to_string_lossy().into_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Result<WorkerEnv, EnvError> {
        WorkerEnv::from_vars(4242, pairs.iter().copied())
    }

    #[test]
    fn listen_vars_apply_only_to_the_pid_they_name() {
        let ours = env(&[
            ("LISTEN_FDS", "2"),
            ("LISTEN_PID", "4242"),
            ("LISTEN_FDNAMES", "http:admin"),
        ])
        .unwrap();
        assert_eq!(
            ours.listen(),
            &Ok(ListenVars {
                count: 2,
                names: Some("http:admin".into())
            })
        );
        assert!(ours.is_socket_activated());

        let inherited = env(&[("LISTEN_FDS", "2"), ("LISTEN_PID", "1")]).unwrap();
        assert_eq!(inherited.listen(), &Err(NotActivated::OtherPid(1)));
        assert!(!inherited.is_socket_activated());

        let no_pid = env(&[("LISTEN_FDS", "2")]).unwrap();
        assert_eq!(no_pid.listen(), &Err(NotActivated::NoPid));
        assert_eq!(env(&[]).unwrap().listen(), &Err(NotActivated::Unset));
    }

    #[test]
    fn malformed_numbers_are_errors_that_name_the_variable() {
        let err = env(&[("LISTEN_FDS", "two"), ("LISTEN_PID", "4242")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "environment variable `LISTEN_FDS` must be a decimal number, found `two`"
        );
        let err = env(&[("SYSMGR_KILL_TIMEOUT_MS", "+5")]).unwrap_err();
        assert_eq!(
            err,
            EnvError::NotANumber {
                var: "SYSMGR_KILL_TIMEOUT_MS",
                value: "+5".into()
            }
        );
        assert!(env(&[("WATCHDOG_USEC", "")]).is_err());
    }

    #[test]
    fn watchdog_is_ours_only_when_watchdog_pid_is_absent_or_ours() {
        let ours = env(&[("WATCHDOG_USEC", "3000000"), ("WATCHDOG_PID", "4242")]).unwrap();
        assert_eq!(ours.watchdog(), Some(Duration::from_secs(3)));
        let no_pid = env(&[("WATCHDOG_USEC", "500")]).unwrap();
        assert_eq!(no_pid.watchdog(), Some(Duration::from_micros(500)));
        let other = env(&[("WATCHDOG_USEC", "3000000"), ("WATCHDOG_PID", "7")]).unwrap();
        assert_eq!(other.watchdog(), None);
        let zero = env(&[("WATCHDOG_USEC", "0")]).unwrap();
        assert_eq!(zero.watchdog(), None);
    }

    #[test]
    fn sysmgr_variables_are_read() {
        let e = env(&[
            ("SYSMGR_APP", "web"),
            ("SYSMGR_INSTANCE", "3"),
            ("SYSMGR_KILL_TIMEOUT_MS", "1600"),
            ("SYSMGR_KILL_SIGNAL", "SIGQUIT"),
            ("NOTIFY_SOCKET", "/run/systemd/notify"),
            ("UNRELATED", "x"),
        ])
        .unwrap();
        assert_eq!(e.app(), Some("web"));
        assert_eq!(e.instance(), Some("3"));
        assert_eq!(e.kill_timeout(), Some(Duration::from_millis(1600)));
        assert_eq!(e.kill_signal(), Some("SIGQUIT"));
        assert_eq!(e.notify_socket(), Some(OsStr::new("/run/systemd/notify")));
        assert_eq!(e.pid(), 4242);
        assert_eq!(env(&[("NOTIFY_SOCKET", "")]).unwrap().notify_socket(), None);
    }
}
