//! Helpers for the worker tests: a minimal HTTP/1.1 keep-alive client that reports exactly what
//! came over the wire, a test service, and child processes with activated fds.
//!
//! The client is written here rather than taken from sysmgr-load so that these tests see the raw
//! `Connection` header and every way a request can fail, with nothing retried behind their back.

#![allow(dead_code)]

use std::convert::Infallible;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Output};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// What one response said.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub close: bool,
    pub body: String,
}

/// Why a request failed, in the client's words.
#[derive(Debug)]
pub enum Failure {
    Io(std::io::Error),
    /// The server closed the connection before any byte of the response.
    ClosedBeforeResponse,
    /// Bytes that are not an HTTP/1.1 response.
    Garbled(String),
    Timeout,
}

/// One keep-alive connection.
pub struct Client<S> {
    stream: S,
    buf: Vec<u8>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    pub fn new(stream: S) -> Self {
        Self {
            stream,
            buf: Vec::with_capacity(1024),
        }
    }

    /// Sends raw bytes (part of a request, say).
    pub async fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes).await
    }

    /// Sends `GET path` and reads the response, within 10 s.
    pub async fn get(&mut self, path: &str) -> Result<Reply, Failure> {
        let req = format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n");
        self.send_raw(req.as_bytes()).await.map_err(Failure::Io)?;
        self.read_reply().await
    }

    /// Reads one response, within 10 s.
    pub async fn read_reply(&mut self) -> Result<Reply, Failure> {
        tokio::time::timeout(Duration::from_secs(10), self.read_reply_inner())
            .await
            .unwrap_or(Err(Failure::Timeout))
    }

    async fn read_reply_inner(&mut self) -> Result<Reply, Failure> {
        let head_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i + 4;
            }
            let n = self.fill().await?;
            if n == 0 {
                return Err(if self.buf.is_empty() {
                    Failure::ClosedBeforeResponse
                } else {
                    Failure::Garbled(String::from_utf8_lossy(&self.buf).into_owned())
                });
            }
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let status = status_line
            .strip_prefix("HTTP/1.1 ")
            .and_then(|s| s.get(..3))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| Failure::Garbled(head.clone()))?;
        let mut len = 0usize;
        let mut close = false;
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                len = value.parse().map_err(|_| Failure::Garbled(head.clone()))?;
            } else if name.eq_ignore_ascii_case("connection") {
                close = value.eq_ignore_ascii_case("close");
            }
        }
        while self.buf.len() < head_end + len {
            if self.fill().await? == 0 {
                return Err(Failure::Garbled(head));
            }
        }
        let body = String::from_utf8_lossy(&self.buf[head_end..head_end + len]).into_owned();
        self.buf.drain(..head_end + len);
        Ok(Reply {
            status,
            close,
            body,
        })
    }

    /// Waits until the server closes the connection (EOF or reset), within `limit`.
    pub async fn closed_within(&mut self, limit: Duration) -> bool {
        matches!(
            tokio::time::timeout(limit, self.fill()).await,
            Ok(Ok(0) | Err(_))
        )
    }

    async fn fill(&mut self) -> Result<usize, Failure> {
        let mut chunk = [0u8; 4096];
        let n = self.stream.read(&mut chunk).await.map_err(Failure::Io)?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The test service: `/` answers `NAME`, `/slow?ms=N` answers `NAME` after N ms.
pub async fn named_service(
    name: &'static str,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.uri().path() == "/slow" {
        let ms: u64 = req
            .uri()
            .query()
            .and_then(|q| q.strip_prefix("ms="))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    Ok(Response::new(Full::new(Bytes::from_static(
        name.as_bytes(),
    ))))
}

/// Environment variable that tells a test of this binary it runs as the activated child.
pub const CHILD: &str = "SYSMGR_WORKER_TEST_CHILD";

/// Runs the ignored test `test` of this binary in a child process whose fds 3, 4, ... are
/// `fds`, as systemd would pass them, and whose `LISTEN_PID` is its own PID (a shell sets it
/// to `$$` and then execs the test binary, keeping that PID).
pub fn run_child(test: &str, fds: &[BorrowedFd<'_>], env: &[(&str, String)]) -> Output {
    // Copies above the target range, so that dup2 below never overwrites a source.
    let high: Vec<OwnedFd> = fds
        .iter()
        .map(|fd| {
            let raw = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 100) };
            assert!(raw >= 0, "dup failed");
            unsafe { OwnedFd::from_raw_fd(raw) }
        })
        .collect();
    let raws: Vec<RawFd> = high.iter().map(|f| f.as_raw_fd()).collect();
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(r#"LISTEN_PID=$$ exec "$0" "$@""#)
        .arg(std::env::current_exe().unwrap())
        .args([
            test,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .env_remove("LISTEN_FDS")
        .env_remove("LISTEN_FDNAMES")
        .env_remove("NOTIFY_SOCKET");
    for (k, v) in env {
        cmd.env(k, v);
    }
    // SAFETY: only dup2, which is async-signal-safe, runs between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            for (i, raw) in raws.iter().enumerate() {
                if libc::dup2(*raw, 3 + i as RawFd) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    drop(high);
    out
}

/// Asserts the child's test passed, showing its output otherwise.
pub fn assert_child_passed(out: &Output) {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "child failed:\n{text}");
    // `--exact` with a wrong name runs nothing and still succeeds; make sure one test ran.
    assert!(text.contains("1 passed"), "child ran no test:\n{text}");
}

/// Whether the child runs this test (the variable is set), so the body only runs there.
pub fn in_child() -> bool {
    std::env::var_os(CHILD).is_some()
}
