//! The health gate of a rollout: `GET PATH` on the new instance's own socket.
//!
//! A process that sent `READY=1` may still be broken (its database unreachable, a bad
//! configuration it only notices per request). An app with `health_check` gets a socket of
//! each instance's own from systemd (`NAME-sysmgr-health@N.socket`, fd name `sysmgr-health`),
//! so the probe reaches the new process itself and not whichever instance the shared socket
//! hands the connection to. The unit carries what to ask in its environment
//! (`SYSMGR_HEALTH_PATH`, `SYSMGR_HEALTH_TIMEOUT_MS`, `SYSMGR_HEALTH_SOCKET`), so the check
//! is the one systemd loaded, also for `sysmgr reload NAME` without the app file.
//!
//! The client is a few lines of HTTP/1.1 over a unix stream (one request, `Connection:
//! close`, the status line read back), not an HTTP library: the answer's status is all the
//! gate needs. It asks every [`INTERVAL`] until an answer is 2xx or 3xx or the timeout has
//! passed, like a readiness probe: an app still warming up gets the whole timeout.

use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::UnixStream;

use crate::systemd::dbus::ServiceState;

/// The unit's variable with the path to ask for.
pub const PATH_VAR: &str = "SYSMGR_HEALTH_PATH";
/// The unit's variable with the timeout, in ms.
pub const TIMEOUT_VAR: &str = "SYSMGR_HEALTH_TIMEOUT_MS";
/// The unit's variable with the instance's health socket.
pub const SOCKET_VAR: &str = "SYSMGR_HEALTH_SOCKET";

/// The pause between two attempts.
pub const INTERVAL: Duration = Duration::from_millis(200);

/// The timeout when the unit's variable is missing or unreadable (a unit edited by hand).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// The most of an answer read to find its status line.
const MAX_STATUS_LINE: usize = 8 * 1024;

/// What to ask an instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// The HTTP path (and query).
    pub path: String,
    /// How long the instance has to answer 2xx or 3xx.
    pub timeout: Duration,
    /// The instance's own health socket.
    pub socket: PathBuf,
}

impl Check {
    /// The check a unit declares in its environment; `None` when it has none.
    pub fn of(state: &ServiceState) -> Option<Self> {
        let path = state.env_var(PATH_VAR)?;
        let socket = state.env_var(SOCKET_VAR)?;
        let timeout = state
            .env_var(TIMEOUT_VAR)
            .and_then(|t| t.parse().ok())
            .filter(|&ms: &u64| ms > 0)
            .map_or(DEFAULT_TIMEOUT, Duration::from_millis);
        Some(Self {
            path: path.to_string(),
            timeout,
            socket: PathBuf::from(socket),
        })
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
    /// Something that is not an HTTP answer (its start).
    NotHttp(String),
    /// The socket could not be reached.
    Connect(String),
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
            Self::NotHttp(start) => write!(f, "got an answer that is not HTTP: `{start}`"),
            Self::Connect(e) => write!(f, "could not connect: {e}"),
        }
    }
}

/// Why an instance did not pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unhealthy {
    /// The path asked for.
    pub path: String,
    /// How long it was asked.
    pub after: Duration,
    /// How many times.
    pub attempts: u32,
    /// The last answer.
    pub last: Answer,
}

impl fmt::Display for Unhealthy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let times = if self.attempts == 1 { "time" } else { "times" };
        write!(
            f,
            "the new process is not healthy: `GET {}` on its own socket {} (asked {} {times} in {})",
            self.path,
            self.last,
            self.attempts,
            super::engine::human(self.after)
        )
    }
}

/// Asks until an answer is 2xx or 3xx (`Ok`: how long it took) or the timeout has passed.
pub async fn wait_healthy(check: &Check) -> Result<Duration, Unhealthy> {
    let started = Instant::now();
    let deadline = started + check.timeout;
    let mut attempts = 0;
    loop {
        attempts += 1;
        let left = deadline.saturating_duration_since(Instant::now());
        let last = match tokio::time::timeout(left, ask(check)).await {
            Ok(Answer::Status(code, _)) if (200..400).contains(&code) => {
                return Ok(started.elapsed())
            }
            Ok(answer) => answer,
            Err(_) => Answer::Silent,
        };
        if Instant::now() + INTERVAL >= deadline {
            return Err(Unhealthy {
                path: check.path.clone(),
                after: started.elapsed(),
                attempts,
                last,
            });
        }
        tokio::time::sleep(INTERVAL).await;
    }
}

/// One request; the answer's status line.
async fn ask(check: &Check) -> Answer {
    let mut stream = match UnixStream::connect(&check.socket).await {
        Ok(s) => s,
        Err(e) => return Answer::Connect(format!("`{}`: {e}", check.socket.display())),
    };
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: sysmgr-health-check\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        check.path
    );
    if let Err(e) = stream.write_all(request.as_bytes()).await {
        return Answer::Connect(format!("`{}`: {e}", check.socket.display()));
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
            path: "/health?deep=1".into(),
            timeout: Duration::from_millis(timeout_ms),
            socket,
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
        let took = rt().block_on(wait_healthy(&check(path, 3000))).unwrap();
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
        let err = rt().block_on(wait_healthy(&check(path, 700))).unwrap_err();
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
        let err = rt().block_on(wait_healthy(&check(path, 300))).unwrap_err();
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
        let err = rt().block_on(wait_healthy(&check(path, 100))).unwrap_err();
        assert_eq!(err.last, Answer::NotHttp("SSH-2.0-OpenSSH".into()));

        let err = rt()
            .block_on(wait_healthy(&check("/nonexistent/health.sock".into(), 100)))
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
                path: "/health".into(),
                timeout: Duration::from_secs(2),
                socket: "/run/sysmgr/web/health-3.sock".into(),
            })
        );
        state.environment.retain(|a| !a.starts_with(SOCKET_VAR));
        assert_eq!(Check::of(&state), None);
    }
}
