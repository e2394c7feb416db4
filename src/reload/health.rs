//! The health gate of a rollout: `GET PATH` on the new instance's own socket, or a check
//! command run as a oneshot unit.
//!
//! A process that sent `READY=1` may still be broken (its database unreachable, a bad
//! configuration it only notices per request). An app with `health_check` gets a socket of
//! each instance's own from systemd (`NAME-sysmgr-health@N.socket`, fd name `sysmgr-health`),
//! so the probe reaches the new process itself and not whichever instance the shared socket
//! hands the connection to. The unit carries what to ask in its environment
//! (`SYSMGR_HEALTH_PATH`, `SYSMGR_HEALTH_TIMEOUT_MS`, `SYSMGR_HEALTH_SOCKET`), so the check
//! is the one systemd loaded, also for `sysmgr reload NAME` without the app file.
//!
//! A command check is `NAME-sysmgr-check@N.service` (`SYSMGR_HEALTH_UNIT`): a oneshot with
//! the app's user, directory, environment and hardening, whose start job ends `done` when the
//! command exits 0. systemd runs it, so it never runs as root unless the app does.
//!
//! The client is a few lines of HTTP/1.1 over a unix stream (one request, `Connection:
//! close`, the status line read back), not an HTTP library: the answer's status is all the
//! gate needs. It asks every [`INTERVAL`] until an answer is 2xx or 3xx or the timeout has
//! passed, like a readiness probe: an app still warming up gets the whole timeout.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::UnixStream;

use super::units::{JobOutcome, Units};
use crate::systemd::dbus::{JobResult, ServiceState};

/// The unit's variable with the path to ask for.
pub const PATH_VAR: &str = "SYSMGR_HEALTH_PATH";
/// The unit's variable with the timeout, in ms.
pub const TIMEOUT_VAR: &str = "SYSMGR_HEALTH_TIMEOUT_MS";
/// The unit's variable with the instance's health socket.
pub const SOCKET_VAR: &str = "SYSMGR_HEALTH_SOCKET";
/// The unit's variable with the oneshot that runs the check command.
pub const UNIT_VAR: &str = "SYSMGR_HEALTH_UNIT";

/// The pause between two attempts.
pub const INTERVAL: Duration = Duration::from_millis(200);

/// The timeout when the unit's variable is missing or unreadable (a unit edited by hand).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// The most of an answer read to find its status line.
const MAX_STATUS_LINE: usize = 8 * 1024;

/// How the instance is asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// `GET path` on the instance's own socket.
    Http {
        /// The HTTP path (and query).
        path: String,
        /// The instance's own health socket.
        socket: PathBuf,
    },
    /// The oneshot unit that runs the check command for this instance.
    Unit(String),
}

/// What to ask an instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// How.
    pub probe: Probe,
    /// How long the instance has to pass.
    pub timeout: Duration,
}

impl Check {
    /// The check a unit declares in its environment; `None` when it has none.
    pub fn of(state: &ServiceState) -> Option<Self> {
        let probe = match state.env_var(UNIT_VAR) {
            Some(unit) => Probe::Unit(unit.to_string()),
            None => Probe::Http {
                path: state.env_var(PATH_VAR)?.to_string(),
                socket: PathBuf::from(state.env_var(SOCKET_VAR)?),
            },
        };
        let timeout = state
            .env_var(TIMEOUT_VAR)
            .and_then(|t| t.parse().ok())
            .filter(|&ms: &u64| ms > 0)
            .map_or(DEFAULT_TIMEOUT, Duration::from_millis);
        Some(Self { probe, timeout })
    }

    /// What is asked, for messages.
    fn what(&self) -> String {
        match &self.probe {
            Probe::Http { path, .. } => format!("`GET {path}` on its own socket"),
            Probe::Unit(unit) => format!("its check `{unit}`"),
        }
    }
}

/// What the last attempt got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// An HTTP status line, e.g. `HTTP/1.1 500 Internal Server Error`, with its code.
    Status(u16, String),
    /// No (whole) status line before the time ran out.
    Silent,
    /// The connection closed before a status line came.
    Closed,
    /// The check command was still running when the time ran out.
    Running,
    /// Something that is not an HTTP answer (its start).
    NotHttp(String),
    /// The socket could not be reached.
    Connect(String),
    /// The check command's job did not end `done`: systemd's `Result` and the exit status.
    Exited {
        /// The job's result (`failed`, `timeout`...).
        job: String,
        /// The service's `Result` (`exit-code`, `signal`, `timeout`...).
        result: String,
        /// `ExecMainStatus`.
        status: i32,
    },
    /// systemd could not run the check.
    Systemd(String),
}

impl fmt::Display for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Status(_, line) => write!(f, "answered `{line}`"),
            Self::Silent => write!(
                f,
                "got no answer (does the app serve HTTP on its `sysmgr-health` socket? see docs/workers.md)"
            ),
            Self::Closed => write!(f, "got the connection closed without an answer"),
            Self::Running => write!(f, "was still running when the time ran out"),
            Self::NotHttp(start) => write!(f, "got an answer that is not HTTP: `{start}`"),
            Self::Connect(e) => write!(f, "could not connect: {e}"),
            Self::Exited {
                result, status, ..
            } if result == "exit-code" => write!(f, "exited with status {status}"),
            Self::Exited { job, result, .. } => {
                write!(f, "ended with `{job}` (systemd's result: `{result}`)")
            }
            Self::Systemd(e) => write!(f, "could not be run: {e}"),
        }
    }
}

/// Why an instance did not pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unhealthy {
    /// What was asked: `` `GET /health` on its own socket``, `` its check `UNIT` ``.
    pub what: String,
    /// How long it was asked.
    pub after: Duration,
    /// How many times.
    pub attempts: u32,
    /// The last answer.
    pub last: Answer,
    /// A check command's last output lines (empty for HTTP).
    pub output: Vec<String>,
}

impl fmt::Display for Unhealthy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let times = if self.attempts == 1 { "time" } else { "times" };
        write!(
            f,
            "the new process is not healthy: {} {} (asked {} {times} in {})",
            self.what,
            self.last,
            self.attempts,
            super::engine::human(self.after)
        )?;
        match self.output.last() {
            Some(line) => write!(f, "; its last output: `{line}`"),
            None => Ok(()),
        }
    }
}

/// Asks until the instance passes (`Ok`: how long it took) or the timeout has passed.
pub async fn wait_healthy<U: Units>(check: &Check, units: &U) -> Result<Duration, Unhealthy> {
    let started = Instant::now();
    let deadline = started + check.timeout;
    let mut attempts = 0;
    let mut last = None;
    loop {
        attempts += 1;
        let left = deadline.saturating_duration_since(Instant::now());
        let attempt = async {
            match &check.probe {
                Probe::Http { path, socket } => ask(path, socket).await,
                Probe::Unit(unit) => run(units, unit, left).await,
            }
        };
        last = match tokio::time::timeout(left, attempt).await {
            Ok(None) => return Ok(started.elapsed()),
            Ok(Some(answer)) => Some(answer),
            // An attempt cut short by the deadline says less than a whole one before it.
            Err(_) => last.or(Some(match check.probe {
                Probe::Http { .. } => Answer::Silent,
                Probe::Unit(_) => Answer::Running,
            })),
        };
        if Instant::now() + INTERVAL >= deadline {
            let last = last.expect("an attempt was made");
            let output = match &check.probe {
                Probe::Unit(unit) => {
                    if last == Answer::Running {
                        // Still running: systemd's TimeoutStartSec= ends it too.
                        let _ = units.stop(unit).await;
                    }
                    let output = units.journal(unit, 3).await;
                    // Its output stays in the journal; a failed check left behind would make
                    // the app look degraded.
                    let _ = units.reset_failed(unit).await;
                    output
                }
                Probe::Http { .. } => Vec::new(),
            };
            return Err(Unhealthy {
                what: check.what(),
                after: started.elapsed(),
                attempts,
                last,
                output,
            });
        }
        tokio::time::sleep(INTERVAL).await;
    }
}

/// One run of the check unit: `None` when it passed.
async fn run<U: Units>(units: &U, unit: &str, left: Duration) -> Option<Answer> {
    // A failed run before (or a check left failed by an earlier reload) would fail the start.
    if let Err(e) = units.reset_failed(unit).await {
        return Some(Answer::Systemd(e.to_string()));
    }
    match units.start(unit, Some(left)).await {
        Ok(JobOutcome::Finished(JobResult::Done)) => None,
        Ok(JobOutcome::Finished(job)) => {
            let state = units.state(unit).await.ok();
            Some(Answer::Exited {
                job: job.to_string(),
                result: state
                    .as_ref()
                    .map_or_else(String::new, |s| s.result.as_str().to_string()),
                status: state.map_or(0, |s| s.exec_main_status),
            })
        }
        Ok(JobOutcome::GaveUp(_)) => Some(Answer::Running),
        // systemd re-executed while the check ran: ask again.
        Ok(JobOutcome::Unobserved) => Some(Answer::Systemd(
            "the connection to systemd was lost while the check ran".into(),
        )),
        Err(e) => Some(Answer::Systemd(e.to_string())),
    }
}

/// One request: `None` when the answer is 2xx or 3xx, else what came.
async fn ask(path: &str, socket: &Path) -> Option<Answer> {
    match status_of(path, socket).await {
        Answer::Status(code, _) if (200..400).contains(&code) => None,
        other => Some(other),
    }
}

/// One request; the answer's status line.
async fn status_of(path: &str, socket: &Path) -> Answer {
    let mut stream = match UnixStream::connect(socket).await {
        Ok(s) => s,
        Err(e) => return Answer::Connect(format!("`{}`: {e}", socket.display())),
    };
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: sysmgr-health-check\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    );
    if let Err(e) = stream.write_all(request.as_bytes()).await {
        return Answer::Connect(format!("`{}`: {e}", socket.display()));
    }
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(end) = buf.windows(2).position(|w| w == b"\r\n") {
            return status_line(&buf[..end]);
        }
        if buf.len() >= MAX_STATUS_LINE {
            return status_line(&buf);
        }
        match stream.read(&mut chunk).await {
            Ok(0) if buf.is_empty() => return Answer::Closed,
            Ok(0) => return status_line(&buf),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(_) if buf.is_empty() => return Answer::Closed,
            Err(_) => return status_line(&buf),
        }
    }
}

/// `HTTP/1.1 200 OK` -> its code; anything else is not HTTP.
fn status_line(line: &[u8]) -> Answer {
    let text = String::from_utf8_lossy(line);
    let mut words = text.splitn(3, ' ');
    let version = words.next().unwrap_or_default();
    let code = words.next().and_then(|c| {
        (c.len() == 3 && c.bytes().all(|b| b.is_ascii_digit()))
            .then(|| c.parse::<u16>().ok())
            .flatten()
    });
    match code {
        Some(code) if version.starts_with("HTTP/") => Answer::Status(code, text.into_owned()),
        _ => Answer::NotHttp(text.chars().take(60).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read as _, Write as _};
    use std::os::unix::net::UnixListener;

    /// A server on a real unix socket that answers each connection with the next of
    /// `answers` (`None`: reads the request and stays silent), recording the requests.
    fn server(
        answers: Vec<Option<&'static str>>,
    ) -> (
        tempfile::TempDir,
        PathBuf,
        std::thread::JoinHandle<Vec<String>>,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("health.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let handle = std::thread::spawn(move || {
            let mut requests = Vec::new();
            let mut held = Vec::new();
            for answer in answers {
                let (mut conn, _) = listener.accept().unwrap();
                let mut buf = vec![0u8; 4096];
                let n = conn.read(&mut buf).unwrap();
                requests.push(String::from_utf8_lossy(&buf[..n]).into_owned());
                match answer {
                    Some(a) => conn.write_all(a.as_bytes()).unwrap(),
                    None => held.push(conn),
                }
            }
            if !held.is_empty() {
                // Silent to the end of the client's timeout.
                std::thread::sleep(Duration::from_secs(1));
            }
            requests
        });
        (dir, path, handle)
    }

    fn check(socket: PathBuf, timeout_ms: u64) -> Check {
        Check {
            probe: Probe::Http {
                path: "/health?deep=1".into(),
                socket,
            },
            timeout: Duration::from_millis(timeout_ms),
        }
    }

    /// No unit is ever touched by an HTTP check.
    struct NoUnits;

    impl Units for NoUnits {
        async fn state(&self, _: &str) -> Result<ServiceState, crate::systemd::dbus::DbusError> {
            unreachable!()
        }
        async fn reset_failed(&self, _: &str) -> Result<(), crate::systemd::dbus::DbusError> {
            unreachable!()
        }
        async fn restart(
            &self,
            _: &str,
            _: Option<Duration>,
        ) -> Result<JobOutcome, crate::systemd::dbus::DbusError> {
            unreachable!()
        }
        async fn start(
            &self,
            _: &str,
            _: Option<Duration>,
        ) -> Result<JobOutcome, crate::systemd::dbus::DbusError> {
            unreachable!()
        }
        async fn stop(&self, _: &str) -> Result<JobResult, crate::systemd::dbus::DbusError> {
            unreachable!()
        }
        async fn journal(&self, _: &str, _: usize) -> Vec<String> {
            unreachable!()
        }
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn a_2xx_after_a_500_passes_and_the_request_is_plain_http() {
        let (_dir, path, server) = server(vec![
            Some("HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n"),
            Some("HTTP/1.1 204 No Content\r\n\r\n"),
        ]);
        let took = rt()
            .block_on(wait_healthy(&check(path, 3000), &NoUnits))
            .unwrap();
        assert!(took >= INTERVAL, "asked again after the interval: {took:?}");
        let requests = server.join().unwrap();
        assert_eq!(
            requests[0],
            "GET /health?deep=1 HTTP/1.1\r\nHost: localhost\r\nUser-Agent: sysmgr-health-check\r\nAccept: */*\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn a_lasting_500_fails_with_its_status_line_after_the_timeout() {
        let answers = vec![Some("HTTP/1.1 500 Internal Server Error\r\n\r\n"); 64];
        let (_dir, path, _server) = server(answers);
        let started = Instant::now();
        let err = rt()
            .block_on(wait_healthy(&check(path, 700), &NoUnits))
            .unwrap_err();
        assert!(started.elapsed() < Duration::from_millis(1500));
        assert_eq!(
            err.last,
            Answer::Status(500, "HTTP/1.1 500 Internal Server Error".into())
        );
        assert!(err.attempts >= 2 && err.attempts <= 5, "{err:?}");
        let text = err.to_string();
        assert!(
            text.starts_with("the new process is not healthy: `GET /health?deep=1` on its own socket answered `HTTP/1.1 500 Internal Server Error` (asked "),
            "{text}"
        );
    }

    #[test]
    fn silence_non_http_and_no_socket_are_named() {
        let (_dir, path, _server) = server(vec![None]);
        let err = rt()
            .block_on(wait_healthy(&check(path, 300), &NoUnits))
            .unwrap_err();
        assert_eq!(err.last, Answer::Silent);
        assert_eq!(
            (
                err.attempts,
                err.to_string()
                    .contains("does the app serve HTTP on its `sysmgr-health` socket?")
            ),
            (1, true)
        );

        let (_dir, path, _server) = server(vec![Some("SSH-2.0-OpenSSH\r\n")]);
        let err = rt()
            .block_on(wait_healthy(&check(path, 100), &NoUnits))
            .unwrap_err();
        assert_eq!(err.last, Answer::NotHttp("SSH-2.0-OpenSSH".into()));

        let err = rt()
            .block_on(wait_healthy(
                &check("/nonexistent/health.sock".into(), 100),
                &NoUnits,
            ))
            .unwrap_err();
        assert_eq!(
            err.last.to_string(),
            "could not connect: `/nonexistent/health.sock`: No such file or directory (os error 2)"
        );
    }

    #[test]
    fn the_check_is_read_from_the_units_environment() {
        let mut state = ServiceState {
            environment: vec![
                "SYSMGR_APP=web".into(),
                "SYSMGR_HEALTH_PATH=/health".into(),
                "SYSMGR_HEALTH_TIMEOUT_MS=2000".into(),
                "SYSMGR_HEALTH_SOCKET=/run/sysmgr/web/health-3.sock".into(),
            ],
            ..ServiceState::default()
        };
        assert_eq!(
            Check::of(&state),
            Some(Check {
                probe: Probe::Http {
                    path: "/health".into(),
                    socket: "/run/sysmgr/web/health-3.sock".into(),
                },
                timeout: Duration::from_secs(2),
            })
        );
        state.environment.retain(|a| !a.starts_with(SOCKET_VAR));
        assert_eq!(Check::of(&state), None);
        state.environment = vec!["SYSMGR_HEALTH_UNIT=web-sysmgr-check@3.service".into()];
        assert_eq!(
            Check::of(&state),
            Some(Check {
                probe: Probe::Unit("web-sysmgr-check@3.service".into()),
                timeout: DEFAULT_TIMEOUT,
            })
        );
    }
}
