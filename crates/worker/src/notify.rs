//! `sd_notify(3)` datagrams: how a worker tells systemd it is ready, stopping or alive.
//!
//! The protocol is one `AF_UNIX` datagram of newline-separated `KEY=VALUE` assignments sent to the
//! socket named by `NOTIFY_SOCKET` (a path, or `@name` for the abstract namespace). That is a few
//! lines on top of std's [`UnixDatagram`], so this crate writes them itself instead of depending on
//! `sd-notify` (re-evaluated with its 0.5: docs/architecture.md). The address is resolved once
//! from the [`WorkerEnv`] snapshot, where `sd_notify::notify` reads `NOTIFY_SOCKET` from the live
//! environment on every call, from whatever thread sends; abstract names (`@name`) go through
//! [`SocketAddrExt`](std::os::linux::net::SocketAddrExt), where that crate connects to them as a
//! file path and fails; one socket serves every datagram, where it opens one per call; and tests
//! aim a [`Notifier`] at their own socket without touching the process environment, which its
//! API cannot. `tests/third_party.rs` shows the abstract-address difference with real processes.
//!
//! Outside a `Type=notify` service there is no `NOTIFY_SOCKET` and every call is a no-op, so the
//! same binary runs by hand during development.

use std::ffi::OsStr;
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::Arc;
use std::time::Duration;

use crate::WorkerEnv;

/// A notification that could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// `NOTIFY_SOCKET` is neither an absolute path nor an `@abstract` name.
    #[error(
        "`NOTIFY_SOCKET` must be an absolute path or start with `@`, found `{socket}`; \
         is this an old or unusual service manager?"
    )]
    UnsupportedAddress {
        /// The value found.
        socket: String,
    },
    /// The address does not fit in a `sockaddr_un`.
    #[error("`NOTIFY_SOCKET` value `{socket}` is not a valid unix socket address")]
    InvalidAddress {
        /// The value found.
        socket: String,
        /// Why std rejected it.
        #[source]
        source: io::Error,
    },
    /// The datagram socket could not be created.
    #[error("cannot create a datagram socket for notifications")]
    Socket(#[source] io::Error),
    /// A state contains a newline, which would smuggle in another assignment.
    #[error("notification `{state}` contains a newline; send one assignment per call")]
    Newline {
        /// The rejected state.
        state: String,
    },
    /// `sendto(2)` failed, typically because the service manager is gone.
    #[error("cannot send `{state}` to `{socket}`")]
    Send {
        /// What was being sent.
        state: String,
        /// Where to.
        socket: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// Sends `sd_notify` states to the service manager; a no-op when there is none.
///
/// Cloning is cheap and every clone shares one socket, so hand a clone to each task that needs
/// it (the watchdog pinger, the shutdown path).
#[derive(Debug, Clone, Default)]
pub struct Notifier {
    target: Option<Arc<Target>>,
    watchdog: Option<Duration>,
}

#[derive(Debug)]
struct Target {
    socket: UnixDatagram,
    addr: SocketAddr,
    /// The address as given, for error messages.
    display: String,
}

impl Notifier {
    /// A notifier for the `NOTIFY_SOCKET` and `WATCHDOG_USEC` found at start.
    pub fn from_env(env: &WorkerEnv) -> Result<Self, NotifyError> {
        match env.notify_socket() {
            Some(socket) => Ok(Self::to_socket(socket)?.with_watchdog(env.watchdog())),
            None => Ok(Self::disabled()),
        }
    }

    /// A notifier sending to `socket`: an absolute path, or `@name` for an abstract address.
    pub fn to_socket(socket: &OsStr) -> Result<Self, NotifyError> {
        let display = socket.to_string_lossy().into_owned();
        let bytes = socket.as_bytes();
        let addr = match bytes.first() {
            Some(b'/') => SocketAddr::from_pathname(socket),
            // `@` stands for the leading NUL of Linux's abstract namespace.
            Some(b'@') => SocketAddr::from_abstract_name(&bytes[1..]),
            _ => return Err(NotifyError::UnsupportedAddress { socket: display }),
        }
        .map_err(|source| NotifyError::InvalidAddress {
            socket: display.clone(),
            source,
        })?;
        // Unbound: systemd identifies the sender by SCM_CREDENTIALS, which the kernel attaches
        // because systemd's socket has SO_PASSCRED; std creates it with SOCK_CLOEXEC.
        let socket = UnixDatagram::unbound().map_err(NotifyError::Socket)?;
        Ok(Self {
            target: Some(Arc::new(Target {
                socket,
                addr,
                display,
            })),
            watchdog: None,
        })
    }

    /// A notifier that sends nothing, for processes not run as `Type=notify`.
    pub fn disabled() -> Self {
        Self::default()
    }

    /// Records the watchdog interval, as `WATCHDOG_USEC` would.
    pub fn with_watchdog(mut self, interval: Option<Duration>) -> Self {
        self.watchdog = interval;
        self
    }

    /// Whether datagrams go anywhere.
    pub fn is_enabled(&self) -> bool {
        self.target.is_some()
    }

    /// The watchdog interval when `WatchdogSec=` applies to this process; ping at least twice
    /// per interval (see [`Notifier::watchdog`]).
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog
    }

    /// `READY=1`: the worker accepts and serves; a `Type=notify` unit becomes active.
    pub fn ready(&self) -> Result<(), NotifyError> {
        self.send("READY=1")
    }

    /// `STOPPING=1`: the worker began its drain; `systemctl` shows the unit as deactivating.
    pub fn stopping(&self) -> Result<(), NotifyError> {
        self.send("STOPPING=1")
    }

    /// `STATUS=...`: a one-line status shown by `systemctl status`.
    pub fn status(&self, status: &str) -> Result<(), NotifyError> {
        if self.target.is_none() {
            return Ok(());
        }
        self.send(&format!("STATUS={status}"))
    }

    /// `EXTEND_TIMEOUT_USEC=...`: asks for `by` more time than the current start or stop timeout,
    /// counted from now. Use it when a slow start or drain is expected and legitimate.
    pub fn extend_timeout(&self, by: Duration) -> Result<(), NotifyError> {
        if self.target.is_none() {
            return Ok(());
        }
        self.send(&format!("EXTEND_TIMEOUT_USEC={}", by.as_micros()))
    }

    /// `WATCHDOG=1`: proves liveness when `WatchdogSec=` is set; systemd ignores it otherwise.
    pub fn watchdog(&self) -> Result<(), NotifyError> {
        self.send("WATCHDOG=1")
    }

    /// Sends one raw assignment such as `RELOADING=1`; the typed methods cover the usual ones.
    pub fn send(&self, state: &str) -> Result<(), NotifyError> {
        let Some(target) = &self.target else {
            return Ok(());
        };
        if state.contains('\n') {
            return Err(NotifyError::Newline {
                state: state.to_owned(),
            });
        }
        // Blocking send, as sd_notify(3) does: the datagram is tiny and systemd drains its
        // queue quickly; a full queue is a manager in trouble, and waiting is the right answer.
        match target.socket.send_to_addr(state.as_bytes(), &target.addr) {
            Ok(_) => Ok(()),
            Err(source) => Err(NotifyError::Send {
                state: state.to_owned(),
                socket: target.display.clone(),
                source,
            }),
        }
    }

    /// Pings `WATCHDOG=1` at half the watchdog interval until the returned future is dropped;
    /// returns at once when no watchdog applies.
    ///
    /// Run it on the same runtime as the work it vouches for: a stalled event loop then misses
    /// pings and systemd restarts the instance, which is the point of the watchdog.
    #[cfg(feature = "tokio")]
    pub async fn keep_watchdog_alive(self) {
        let Some(interval) = self.watchdog else {
            return;
        };
        let mut ticks = tokio::time::interval(interval / 2);
        // A late tick after a stall must not turn into a burst of pings.
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            if let Err(err) = self.watchdog() {
                eprintln!("sysmgr-worker: {err}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixDatagram;

    /// A bound datagram socket standing in for systemd's notify socket.
    struct Receiver {
        _dir: tempfile::TempDir,
        path: std::path::PathBuf,
        socket: UnixDatagram,
    }

    impl Receiver {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("notify");
            let socket = UnixDatagram::bind(&path).unwrap();
            socket
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            Self {
                _dir: dir,
                path,
                socket,
            }
        }

        fn next(&self) -> Vec<u8> {
            let mut buf = [0u8; 512];
            let n = self.socket.recv(&mut buf).unwrap();
            buf[..n].to_vec()
        }

        fn assert_empty(&self) {
            self.socket.set_nonblocking(true).unwrap();
            let mut buf = [0u8; 512];
            let got = self.socket.recv(&mut buf);
            assert_eq!(
                got.map_err(|e| e.kind()).map(|n| buf[..n].to_vec()),
                Err(io::ErrorKind::WouldBlock)
            );
        }
    }

    #[test]
    fn each_state_is_one_exact_datagram() {
        let rx = Receiver::new();
        let n = Notifier::to_socket(rx.path.as_os_str()).unwrap();
        n.ready().unwrap();
        n.stopping().unwrap();
        n.status("draining 3 connections").unwrap();
        n.extend_timeout(Duration::from_millis(1500)).unwrap();
        n.watchdog().unwrap();
        n.send("RELOADING=1").unwrap();
        assert_eq!(rx.next(), b"READY=1");
        assert_eq!(rx.next(), b"STOPPING=1");
        assert_eq!(rx.next(), b"STATUS=draining 3 connections");
        assert_eq!(rx.next(), b"EXTEND_TIMEOUT_USEC=1500000");
        assert_eq!(rx.next(), b"WATCHDOG=1");
        assert_eq!(rx.next(), b"RELOADING=1");
        rx.assert_empty();
    }

    #[test]
    fn abstract_names_use_the_abstract_namespace() {
        let name = format!("sysmgr-worker-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let rx = UnixDatagram::bind_addr(&addr).unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let n = Notifier::to_socket(OsStr::new(&format!("@{name}"))).unwrap();
        n.ready().unwrap();
        let mut buf = [0u8; 64];
        let len = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1");
    }

    #[test]
    fn from_env_takes_socket_and_watchdog_from_the_snapshot() {
        let rx = Receiver::new();
        let env = WorkerEnv::from_vars(
            10,
            [
                ("NOTIFY_SOCKET", rx.path.as_os_str()),
                ("WATCHDOG_USEC", OsStr::new("2000000")),
                ("WATCHDOG_PID", OsStr::new("10")),
            ],
        )
        .unwrap();
        let n = Notifier::from_env(&env).unwrap();
        assert!(n.is_enabled());
        assert_eq!(n.watchdog_interval(), Some(Duration::from_secs(2)));
        n.ready().unwrap();
        assert_eq!(rx.next(), b"READY=1");
    }

    #[test]
    fn without_notify_socket_every_call_is_a_no_op() {
        let env = WorkerEnv::from_vars(10, [("WATCHDOG_USEC", "1000")]).unwrap();
        let n = Notifier::from_env(&env).unwrap();
        assert!(!n.is_enabled());
        n.ready().unwrap();
        n.status("x").unwrap();
        n.send("a\nb").unwrap();
    }

    #[test]
    fn newlines_and_bad_addresses_are_rejected() {
        let rx = Receiver::new();
        let n = Notifier::to_socket(rx.path.as_os_str()).unwrap();
        let err = n.status("a\nREADY=1").unwrap_err();
        assert_eq!(
            err.to_string(),
            "notification `STATUS=a\nREADY=1` contains a newline; send one assignment per call"
        );
        rx.assert_empty();
        let err = Notifier::to_socket(OsStr::new("run/notify")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "`NOTIFY_SOCKET` must be an absolute path or start with `@`, found `run/notify`; \
             is this an old or unusual service manager?"
        );
    }

    #[test]
    fn a_vanished_manager_is_a_send_error_naming_the_socket() {
        let rx = Receiver::new();
        let n = Notifier::to_socket(rx.path.as_os_str()).unwrap();
        let path = rx.path.display().to_string();
        drop(rx);
        let err = n.ready().unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("cannot send `READY=1` to `{path}`")
        );
        assert!(matches!(err, NotifyError::Send { .. }));
    }

    #[cfg(feature = "tokio")]
    #[tokio::test(start_paused = true)]
    async fn the_watchdog_is_pinged_at_half_the_interval() {
        let rx = Receiver::new();
        let n = Notifier::to_socket(rx.path.as_os_str())
            .unwrap()
            .with_watchdog(Some(Duration::from_secs(10)));
        let pinger = tokio::spawn(n.keep_watchdog_alive());
        // The first tick is immediate, then every 5 s of (paused, auto-advanced) time.
        tokio::time::sleep(Duration::from_millis(12_500)).await;
        pinger.abort();
        for _ in 0..3 {
            assert_eq!(rx.next(), b"WATCHDOG=1");
        }
        rx.assert_empty();
    }
}
