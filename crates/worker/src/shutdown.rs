//! The kill signal and the drain deadline it starts.
//!
//! systemd stops an instance by sending `KillSignal=` (SIGINT in sysmgr's units, as PM2 does)
//! and, `TimeoutStopSec=` later, SIGKILL. The generated unit tells the worker that timeout in
//! `SYSMGR_KILL_TIMEOUT_MS`, so the worker can plan its drain: [`DrainTiming`] turns it into a
//! deadline with a safety margin and into the grace period given to idle keep-alive connections.
//!
//! [`Shutdown`] (with the `tokio` feature) is the runtime side: it catches SIGINT and SIGTERM
//! (and the unit's own kill signal from `SYSMGR_KILL_SIGNAL`), sends `STOPPING=1`, and lets any
//! number of tasks wait for the drain to begin. A second signal means "hurry": the deadline moves
//! to now, which is what a developer pressing Ctrl-C twice expects.

use std::time::Duration;

/// How long a worker may drain, derived from the unit's kill timeout.
///
/// - the **budget** is the kill timeout less a safety **margin** (a tenth of it, between 50 ms
///   and 500 ms, at most half): the time to close what is left and exit before SIGKILL,
///   whatever the scheduler does;
/// - the **idle grace** (at most 500 ms, at most half the budget) is how long a keep-alive
///   connection that carries no request is kept open after the signal, so a request already on
///   its way is answered (with `Connection: close`) instead of meeting a closed socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainTiming {
    kill_timeout: Duration,
    margin: Duration,
    idle_grace: Duration,
}

impl DrainTiming {
    /// PM2's default `kill_timeout`, used when `SYSMGR_KILL_TIMEOUT_MS` is not set (run by hand).
    pub const DEFAULT_KILL_TIMEOUT: Duration = Duration::from_millis(1600);
    /// The longest idle grace: long enough for any client that is actively reusing a connection
    /// to send its next request, short enough that a drain of idle connections is quick.
    pub const MAX_IDLE_GRACE: Duration = Duration::from_millis(500);

    /// Timing for a unit whose `TimeoutStopSec=` is `kill_timeout`.
    pub fn new(kill_timeout: Duration) -> Self {
        let margin = (kill_timeout / 10)
            .clamp(Duration::from_millis(50), Duration::from_millis(500))
            .min(kill_timeout / 2);
        let budget = kill_timeout - margin;
        Self {
            kill_timeout,
            margin,
            idle_grace: Self::MAX_IDLE_GRACE.min(budget / 2),
        }
    }

    /// Timing from `SYSMGR_KILL_TIMEOUT_MS`, or [`DEFAULT_KILL_TIMEOUT`](Self::DEFAULT_KILL_TIMEOUT).
    pub fn from_env(env: &crate::WorkerEnv) -> Self {
        Self::new(env.kill_timeout().unwrap_or(Self::DEFAULT_KILL_TIMEOUT))
    }

    /// Overrides the idle grace (capped at the budget).
    pub fn with_idle_grace(mut self, grace: Duration) -> Self {
        self.idle_grace = grace.min(self.budget());
        self
    }

    /// The unit's kill timeout.
    pub fn kill_timeout(&self) -> Duration {
        self.kill_timeout
    }

    /// Time kept in reserve before SIGKILL.
    pub fn margin(&self) -> Duration {
        self.margin
    }

    /// How long the drain may take: kill timeout less margin.
    pub fn budget(&self) -> Duration {
        self.kill_timeout - self.margin
    }

    /// How long an idle keep-alive connection stays open after the signal.
    pub fn idle_grace(&self) -> Duration {
        self.idle_grace
    }
}

#[cfg(feature = "tokio")]
pub use runtime::{Cause, Drain, Shutdown, ShutdownError};

#[cfg(feature = "tokio")]
mod runtime {
    use std::fmt;
    use std::io;
    use std::sync::Arc;

    use tokio::signal::unix::{signal, SignalKind};
    use tokio::sync::watch;
    use tokio::time::Instant;

    use super::DrainTiming;
    use crate::{Notifier, NotifyError, WorkerEnv};

    /// Why the shutdown helper could not be set up.
    #[derive(Debug, thiserror::Error)]
    pub enum ShutdownError {
        /// The notify socket is unusable.
        #[error(transparent)]
        Notify(#[from] NotifyError),
        /// `SYSMGR_KILL_SIGNAL` names no signal a worker can catch.
        #[error("`SYSMGR_KILL_SIGNAL` is `{name}`, not a signal a worker can catch; use a name such as `SIGINT`, `SIGTERM` or `SIGQUIT`")]
        UnknownSignal {
            /// The value found.
            name: String,
        },
        /// Installing a signal handler failed.
        #[error("cannot install a handler for {signal}")]
        Install {
            /// The signal's name.
            signal: &'static str,
            /// The OS error.
            #[source]
            source: io::Error,
        },
    }

    /// What started the drain.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Cause {
        /// A signal, by name (`SIGINT`).
        Signal(&'static str),
        /// [`Shutdown::trigger`] was called.
        Requested,
    }

    impl fmt::Display for Cause {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match self {
                Self::Signal(name) => f.write_str(name),
                Self::Requested => f.write_str("request"),
            }
        }
    }

    /// A drain in progress: when it began and when everything must be closed.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Drain {
        /// What started it.
        pub cause: Cause,
        /// When it started.
        pub started: Instant,
        /// When the last connection must be closed: start + [`DrainTiming::budget`], or the
        /// moment of a second signal.
        pub deadline: Instant,
        /// Whether a second signal asked to stop now.
        pub hurried: bool,
    }

    #[derive(Debug, Clone, Copy)]
    enum Phase {
        Running,
        Draining(Drain),
    }

    /// Waits for the kill signal; knows the drain deadline; tells systemd `STOPPING=1`.
    ///
    /// Clone it freely: every clone observes the same drain. Create it inside the tokio runtime
    /// (signal handlers need the runtime's driver) and before sending `READY=1`, so no signal
    /// arrives between readiness and the handlers being in place.
    #[derive(Debug, Clone)]
    pub struct Shutdown {
        inner: Arc<Inner>,
        phase: watch::Receiver<Phase>,
    }

    #[derive(Debug)]
    struct Inner {
        tx: watch::Sender<Phase>,
        notifier: Notifier,
        timing: DrainTiming,
    }

    /// The signals a worker drains on whatever the unit says: SIGINT (PM2's and sysmgr's
    /// default `KillSignal=`, and Ctrl-C) and SIGTERM (systemd's default).
    const ALWAYS: [(&str, libc::c_int); 2] = [("SIGINT", libc::SIGINT), ("SIGTERM", libc::SIGTERM)];

    /// Signals a unit may name in `KillSignal=` that a process can catch.
    const CATCHABLE: [(&str, libc::c_int); 10] = [
        ("SIGINT", libc::SIGINT),
        ("SIGTERM", libc::SIGTERM),
        ("SIGHUP", libc::SIGHUP),
        ("SIGQUIT", libc::SIGQUIT),
        ("SIGUSR1", libc::SIGUSR1),
        ("SIGUSR2", libc::SIGUSR2),
        ("SIGWINCH", libc::SIGWINCH),
        ("SIGABRT", libc::SIGABRT),
        ("SIGALRM", libc::SIGALRM),
        ("SIGPWR", libc::SIGPWR),
    ];

    impl Shutdown {
        /// The notifier, timing and kill signal from the environment snapshot.
        ///
        /// Must be called within a tokio runtime.
        pub fn from_env(env: &WorkerEnv) -> Result<Self, ShutdownError> {
            let mut signals = ALWAYS.to_vec();
            if let Some(name) = env.kill_signal() {
                let wanted = name.to_ascii_uppercase();
                let wanted = if wanted.starts_with("SIG") {
                    wanted
                } else {
                    format!("SIG{wanted}")
                };
                let found = CATCHABLE
                    .iter()
                    .find(|(n, _)| *n == wanted)
                    .ok_or_else(|| ShutdownError::UnknownSignal {
                        name: name.to_owned(),
                    })?;
                if !signals.contains(found) {
                    signals.push(*found);
                }
            }
            Self::with_signals(
                Notifier::from_env(env)?,
                DrainTiming::from_env(env),
                &signals,
            )
        }

        /// Drains on SIGINT or SIGTERM with the given notifier and timing.
        ///
        /// Must be called within a tokio runtime.
        pub fn new(notifier: Notifier, timing: DrainTiming) -> Result<Self, ShutdownError> {
            Self::with_signals(notifier, timing, &ALWAYS)
        }

        /// A shutdown that only [`trigger`](Self::trigger) starts: for tests, and for programs
        /// that decide themselves when to drain.
        pub fn manual(notifier: Notifier, timing: DrainTiming) -> Self {
            let (tx, phase) = watch::channel(Phase::Running);
            Self {
                inner: Arc::new(Inner {
                    tx,
                    notifier,
                    timing,
                }),
                phase,
            }
        }

        fn with_signals(
            notifier: Notifier,
            timing: DrainTiming,
            signals: &[(&'static str, libc::c_int)],
        ) -> Result<Self, ShutdownError> {
            let this = Self::manual(notifier, timing);
            for &(name, number) in signals {
                let mut stream = signal(SignalKind::from_raw(number)).map_err(|source| {
                    ShutdownError::Install {
                        signal: name,
                        source,
                    }
                })?;
                // The task holds only a weak reference: when every Shutdown is dropped, the
                // next signal finds nothing to drain and the task ends.
                let weak = Arc::downgrade(&this.inner);
                tokio::spawn(async move {
                    while stream.recv().await.is_some() {
                        match weak.upgrade() {
                            Some(inner) => inner.fire(Cause::Signal(name)),
                            None => break,
                        }
                    }
                });
            }
            Ok(this)
        }

        /// Starts the drain as the kill signal would; a second call hurries it.
        pub fn trigger(&self) {
            self.inner.fire(Cause::Requested);
        }

        /// Waits until the drain begins.
        pub async fn wait(&self) -> Drain {
            let mut phase = self.phase.clone();
            let drain = match *phase
                .wait_for(|p| matches!(p, Phase::Draining(_)))
                .await
                // The sender lives in `inner`, which `self` keeps alive.
                .expect("shutdown sender dropped while a receiver exists")
            {
                Phase::Draining(d) => d,
                Phase::Running => unreachable!("wait_for returned a running phase"),
            };
            drain
        }

        /// Waits until a second signal (or trigger) asks to stop at once.
        pub async fn hurried(&self) -> Drain {
            let mut phase = self.phase.clone();
            let drain = match *phase
                .wait_for(|p| matches!(p, Phase::Draining(d) if d.hurried))
                .await
                .expect("shutdown sender dropped while a receiver exists")
            {
                Phase::Draining(d) => d,
                Phase::Running => unreachable!("wait_for returned a running phase"),
            };
            drain
        }

        /// The drain in progress, if it has begun.
        pub fn drain(&self) -> Option<Drain> {
            match *self.phase.borrow() {
                Phase::Running => None,
                Phase::Draining(d) => Some(d),
            }
        }

        /// The notifier, for `READY=1` and `STATUS=`.
        pub fn notifier(&self) -> &Notifier {
            &self.inner.notifier
        }

        /// The timing derived from the kill timeout.
        pub fn timing(&self) -> DrainTiming {
            self.inner.timing
        }
    }

    impl Inner {
        fn fire(&self, cause: Cause) {
            let now = Instant::now();
            let mut first = false;
            self.tx.send_modify(|phase| match phase {
                Phase::Running => {
                    first = true;
                    *phase = Phase::Draining(Drain {
                        cause,
                        started: now,
                        deadline: now + self.timing.budget(),
                        hurried: false,
                    });
                }
                Phase::Draining(d) => {
                    d.deadline = d.deadline.min(now);
                    d.hurried = true;
                }
            });
            if first {
                // Errors are reported, not fatal: the drain matters more than the notice.
                if let Err(err) = self.notifier.stopping() {
                    eprintln!("sysmgr-worker: {err}");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timing_keeps_a_margin_and_a_bounded_grace() {
        let t = DrainTiming::new(Duration::from_millis(1600));
        assert_eq!(t.margin(), Duration::from_millis(160));
        assert_eq!(t.budget(), Duration::from_millis(1440));
        assert_eq!(t.idle_grace(), Duration::from_millis(500));
        let long = DrainTiming::new(Duration::from_secs(30));
        assert_eq!(long.margin(), Duration::from_millis(500));
        assert_eq!(long.idle_grace(), Duration::from_millis(500));
        let short = DrainTiming::new(Duration::from_millis(300));
        assert_eq!(short.margin(), Duration::from_millis(50));
        assert_eq!(short.idle_grace(), Duration::from_millis(125));
        let tiny = DrainTiming::new(Duration::from_millis(40));
        assert_eq!(tiny.margin(), Duration::from_millis(20));
        assert_eq!(tiny.budget(), Duration::from_millis(20));
        assert_eq!(
            t.with_idle_grace(Duration::from_secs(9)).idle_grace(),
            Duration::from_millis(1440)
        );
    }

    #[test]
    fn timing_comes_from_the_unit_or_pm2s_default() {
        let env = crate::WorkerEnv::from_vars(1, [("SYSMGR_KILL_TIMEOUT_MS", "5000")]).unwrap();
        assert_eq!(
            DrainTiming::from_env(&env).kill_timeout(),
            Duration::from_secs(5)
        );
        let env = crate::WorkerEnv::from_vars(1, std::iter::empty::<(&str, &str)>()).unwrap();
        assert_eq!(
            DrainTiming::from_env(&env).kill_timeout(),
            DrainTiming::DEFAULT_KILL_TIMEOUT
        );
    }

    #[cfg(feature = "tokio")]
    mod runtime {
        use super::super::*;
        use crate::Notifier;
        use std::os::unix::net::UnixDatagram;

        #[tokio::test]
        async fn a_trigger_starts_the_drain_once_and_a_second_hurries_it() {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("notify");
            let rx = UnixDatagram::bind(&path).unwrap();
            let n = Notifier::to_socket(path.as_os_str()).unwrap();
            let s = Shutdown::manual(n, DrainTiming::new(Duration::from_millis(1000)));
            assert_eq!(s.drain(), None);
            let waiter = tokio::spawn({
                let s = s.clone();
                async move { s.wait().await }
            });
            s.trigger();
            let d = waiter.await.unwrap();
            assert_eq!(d.cause, Cause::Requested);
            assert_eq!(d.deadline - d.started, Duration::from_millis(900));
            assert!(!d.hurried);
            s.trigger();
            let h = s.hurried().await;
            assert!(h.hurried && h.deadline <= tokio::time::Instant::now());
            assert_eq!(h.started, d.started);
            let mut buf = [0u8; 64];
            rx.set_nonblocking(true).unwrap();
            let n = rx.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"STOPPING=1");
            // Only one STOPPING=1, however many signals.
            assert!(rx.recv(&mut buf).is_err());
        }

        #[tokio::test]
        async fn an_unknown_kill_signal_is_an_error_naming_it() {
            // Real signals are tested in child processes (tests/worker.rs): a SIGINT sent to
            // this test binary would reach every test running in it.
            let env =
                crate::WorkerEnv::from_vars(std::process::id(), [("SYSMGR_KILL_SIGNAL", "SIGFOO")])
                    .unwrap();
            let err = Shutdown::from_env(&env).unwrap_err();
            assert_eq!(
                err.to_string(),
                "`SYSMGR_KILL_SIGNAL` is `SIGFOO`, not a signal a worker can catch; use a name \
                 such as `SIGINT`, `SIGTERM` or `SIGQUIT`"
            );
        }
    }
}
