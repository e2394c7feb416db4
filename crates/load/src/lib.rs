//! A bounded HTTP/1.1 load client that sees every failed and hung request.
//!
//! sysmgr's central promise is that a rolling reload fails no request. Checking it needs a
//! client that counts what common tools do not: `wrk` never reports a connection that gets no
//! answer, and HTTP client libraries retry and pool, hiding the very races a drain can lose.
//! This client sends one preformatted `GET` at a time per connection, classifies every failure
//! ([`Failure`]: refused, closed or reset before the answer on a fresh or a reused connection,
//! cut short, hung, malformed) and never retries, and records latency in a fixed-size
//! histogram.
//!
//! Every run is bounded in time and, optionally, in count: it ends by `duration +
//! request_timeout` whatever the server does. Only point it at loopback addresses.
//!
//! Two shapes of load: [`Mode::KeepAlive`] sends requests back to back on each connection and
//! reconnects when the server answers `Connection: close` (a graceful drain: not a failure);
//! [`Mode::PerRequest`] opens a new connection for every request.
//!
//! ```no_run
//! use std::time::Duration;
//! use sysmgr_load::{Background, LoadConfig};
//!
//! let addr = "127.0.0.1:3000".parse().unwrap();
//! let load = Background::start(LoadConfig {
//!     connections: 8,
//!     duration: Duration::from_secs(60), // a bound; stopped below
//!     ..LoadConfig::new(addr)
//! });
//! // ... reload the service ...
//! let report = load.stop();
//! assert_eq!(report.failed, 0, "{report}");
//! ```

mod histogram;
mod wire;

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use tokio::sync::Notify;

use histogram::Histogram;
pub use wire::{Failure, Malformed, Phase};

/// Bodies up to this size are counted by content (to see which instance answered).
const SMALL_BODY: usize = 128;
/// At most this many distinct bodies are kept.
const MAX_BODIES: usize = 64;

/// How requests use connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Back-to-back requests on long-lived connections.
    KeepAlive,
    /// A new connection for every request (`Connection: close`).
    PerRequest,
}

/// What to send, how hard, and for how long.
///
/// Build it with [`LoadConfig::new`] and change the fields that matter
/// (`LoadConfig { connections: 4, ..LoadConfig::new(addr) }`).
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Where; a loopback address (sysmgr never aims load at another machine).
    pub addr: SocketAddr,
    /// The request target, starting with `/`; default `/`.
    pub path: String,
    /// The `Host` header; default the address.
    pub host: String,
    /// Concurrent connections, each with one request in flight at a time; default 8.
    pub connections: usize,
    /// Keep-alive or one request per connection; default keep-alive.
    pub mode: Mode,
    /// No request starts after this long; default 10 s.
    pub duration: Duration,
    /// The run stops after this many requests in all; default no limit.
    pub max_requests: Option<u64>,
    /// Total requests per second across connections, a ceiling (missed turns after a slow
    /// answer are not made up); `None`, the default, sends as fast as answers come.
    pub rate: Option<u32>,
    /// A request without a complete answer after this long counts as hung; default 5 s.
    pub request_timeout: Duration,
    /// Runtime threads for [`Background`]: 1, the default, is a current-thread runtime (see
    /// [`Background`] for why). [`run`] uses the caller's runtime and ignores this.
    pub threads: usize,
}

impl LoadConfig {
    /// Keep-alive load on `addr` with 8 connections for 10 s, 5 s request timeout.
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            path: "/".into(),
            host: addr.to_string(),
            connections: 8,
            mode: Mode::KeepAlive,
            duration: Duration::from_secs(10),
            max_requests: None,
            rate: None,
            request_timeout: Duration::from_secs(5),
            threads: 1,
        }
    }

    /// Panics on a `path` or `host` that would break the request: they come from code, not
    /// from users, so this is a bug in the caller.
    fn validate(&self) {
        let clean = |s: &str| !s.is_empty() && !s.bytes().any(|b| b <= b' ' || b == 0x7f);
        assert!(
            self.path.starts_with('/') && clean(&self.path),
            "sysmgr-load: the path `{}` must start with `/` and hold no whitespace or control characters",
            self.path.escape_debug()
        );
        assert!(
            clean(&self.host),
            "sysmgr-load: the host `{}` must hold no whitespace or control characters",
            self.host.escape_debug()
        );
    }

    /// The request every connection sends, formatted once for the whole run.
    fn request(&self) -> Vec<u8> {
        self.validate();
        let close = match self.mode {
            Mode::KeepAlive => "",
            Mode::PerRequest => "Connection: close\r\n",
        };
        format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: sysmgr-load\r\n{close}\r\n",
            self.path, self.host
        )
        .into_bytes()
    }
}

/// Latency of the successful requests, from the start of the request (including the connect
/// when the request opens a connection, as a user would wait for it) to the last byte of the
/// answer. Quantiles come from a log-linear histogram and are at most about 3 % high; all zero
/// when no request succeeded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Latency {
    /// Fastest.
    pub min: Duration,
    /// Median.
    pub p50: Duration,
    /// 90th percentile.
    pub p90: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Slowest.
    pub max: Duration,
    /// Mean.
    pub mean: Duration,
}

/// What a run saw.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Requests sent (or attempted: a refused connect counts).
    pub requests: u64,
    /// Complete 2xx answers.
    pub ok: u64,
    /// Every request that was not ok: errors, hung requests, non-2xx answers.
    pub failed: u64,
    /// Requests with no complete answer within the request timeout (included in `failed`).
    pub hung: u64,
    /// Failure kinds (a [`Failure`]'s text, or `status N` for a non-2xx answer) and counts,
    /// most frequent first.
    pub failures: Vec<(String, u64)>,
    /// Status codes of complete answers, by code.
    pub statuses: Vec<(u16, u64)>,
    /// Latency of ok requests.
    pub latency: Latency,
    /// How long the run took.
    pub elapsed: Duration,
    /// Ok requests per second.
    pub throughput: f64,
    /// Distinct small bodies and how often each came (at most 64 kept), by count.
    pub bodies: Vec<(String, u64)>,
    /// Keep-alive connections opened again after the server closed one gracefully.
    pub reconnects: u64,
}

impl fmt::Display for Report {
    /// A few lines: counts and rate, latency, then failures and the bodies seen, each most
    /// frequent first (bodies only up to 8, which is enough to see the instances that answered).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        write!(
            f,
            "{} requests in {:.2} s: {} ok ({:.0}/s), {} failed ({} hung)",
            self.requests,
            self.elapsed.as_secs_f64(),
            self.ok,
            self.throughput,
            self.failed,
            self.hung
        )?;
        if self.reconnects > 0 {
            write!(
                f,
                ", {} reconnects after `Connection: close`",
                self.reconnects
            )?;
        }
        if self.ok > 0 {
            write!(
                f,
                "\nlatency p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms, mean {:.2} ms",
                ms(self.latency.p50),
                ms(self.latency.p90),
                ms(self.latency.p99),
                ms(self.latency.max),
                ms(self.latency.mean)
            )?;
        }
        for (kind, n) in &self.failures {
            write!(f, "\n  {n} x {kind}")?;
        }
        const SHOWN_BODIES: usize = 8;
        if !self.bodies.is_empty() {
            write!(f, "\nbodies:")?;
        }
        for (body, n) in self.bodies.iter().take(SHOWN_BODIES) {
            write!(f, "\n  {n} x \"{}\"", body.trim_end().escape_debug())?;
        }
        if self.bodies.len() > SHOWN_BODIES {
            write!(f, "\n  ({} more)", self.bodies.len() - SHOWN_BODIES)?;
        }
        Ok(())
    }
}

/// Live counters shared by the connections, readable while a run goes on.
#[derive(Debug, Default)]
struct Shared {
    stop: AtomicBool,
    /// Wakes connections waiting for their paced turn when the run is stopped.
    wake: Notify,
    ok: AtomicU64,
    failed: AtomicU64,
    /// Requests still allowed when `max_requests` is set.
    budget: AtomicU64,
}

impl Shared {
    /// Ends the run: no new request starts; those in flight finish or time out.
    fn request_stop(&self) {
        self.stop.store(true, Ordering::Release);
        self.wake.notify_waiters();
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// Resolves once [`Shared::request_stop`] has been called.
    async fn stopped(&self) {
        loop {
            let notified = self.wake.notified();
            tokio::pin!(notified);
            // Registered before the flag is read, so a stop between the two is not missed.
            notified.as_mut().enable();
            if self.stopping() {
                return;
            }
            notified.await;
        }
    }

    /// Takes one request from the budget; false when the run must end.
    fn take(&self, bounded: bool) -> bool {
        if self.stopping() {
            return false;
        }
        !bounded
            || self
                .budget
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok()
    }
}

/// Status codes are 100..=599 (the parser refuses others): counted in an array, not a map, as
/// this happens for every request.
const STATUS_SLOTS: usize = 600;

/// One connection's tallies, merged at the end.
struct Tally {
    requests: u64,
    ok: u64,
    failed: u64,
    hung: u64,
    reconnects: u64,
    histogram: Histogram,
    failures: HashMap<Failure, u64>,
    statuses: Vec<u64>,
    bodies: HashMap<Vec<u8>, u64>,
}

impl Default for Tally {
    fn default() -> Self {
        Self {
            requests: 0,
            ok: 0,
            failed: 0,
            hung: 0,
            reconnects: 0,
            histogram: Histogram::default(),
            failures: HashMap::new(),
            statuses: vec![0; STATUS_SLOTS],
            bodies: HashMap::new(),
        }
    }
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.requests += other.requests;
        self.ok += other.ok;
        self.failed += other.failed;
        self.hung += other.hung;
        self.reconnects += other.reconnects;
        self.histogram.merge(&other.histogram);
        for (k, n) in other.failures {
            *self.failures.entry(k).or_default() += n;
        }
        for (mine, theirs) in self.statuses.iter_mut().zip(&other.statuses) {
            *mine += theirs;
        }
        for (k, n) in other.bodies {
            if let Some(slot) = self.bodies.get_mut(&k) {
                *slot += n;
            } else if self.bodies.len() < MAX_BODIES {
                self.bodies.insert(k, n);
            }
        }
    }

    fn fail(&mut self, shared: &Shared, failure: Failure) {
        self.failed += 1;
        shared.failed.fetch_add(1, Ordering::Relaxed);
        if matches!(failure, Failure::Timeout { .. }) {
            self.hung += 1;
        }
        *self.failures.entry(failure).or_default() += 1;
    }

    fn answer(&mut self, shared: &Shared, status: u16, latency: Duration, body: &[u8]) {
        self.statuses[usize::from(status) % STATUS_SLOTS] += 1;
        if (200..300).contains(&status) {
            self.ok += 1;
            shared.ok.fetch_add(1, Ordering::Relaxed);
            self.histogram.record(latency);
        } else {
            // Counted by status in the report's failures.
            self.failed += 1;
            shared.failed.fetch_add(1, Ordering::Relaxed);
        }
        if body.len() > SMALL_BODY {
            return;
        }
        if let Some(n) = self.bodies.get_mut(body) {
            *n += 1;
        } else if self.bodies.len() < MAX_BODIES {
            self.bodies.insert(body.to_vec(), 1);
        }
    }

    fn into_report(self, elapsed: Duration) -> Report {
        let us = |q: f64| Duration::from_micros(self.histogram.quantile_us(q).unwrap_or(0));
        debug_assert_eq!(self.histogram.count(), self.ok);
        debug_assert_eq!(self.ok + self.failed, self.requests);
        let latency = Latency {
            min: Duration::from_micros(self.histogram.min_us().unwrap_or(0)),
            p50: us(0.50),
            p90: us(0.90),
            p99: us(0.99),
            max: Duration::from_micros(self.histogram.max_us().unwrap_or(0)),
            mean: Duration::from_micros(self.histogram.mean_us().unwrap_or(0)),
        };
        let statuses: Vec<(u16, u64)> = (0..STATUS_SLOTS as u16)
            .zip(self.statuses.iter().copied())
            .filter(|&(_, n)| n > 0)
            .collect();
        let mut failures: Vec<(String, u64)> = self
            .failures
            .iter()
            .map(|(k, n)| (k.to_string(), *n))
            .collect();
        let non_2xx = statuses
            .iter()
            .filter(|(s, _)| !(200..300).contains(s))
            .map(|(s, n)| (format!("status {s}"), *n));
        failures.extend(non_2xx);
        failures.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let mut bodies: Vec<(String, u64)> = self
            .bodies
            .into_iter()
            .map(|(b, n)| (String::from_utf8_lossy(&b).into_owned(), n))
            .collect();
        bodies.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        Report {
            requests: self.requests,
            ok: self.ok,
            failed: self.failed,
            hung: self.hung,
            failures,
            statuses,
            latency,
            elapsed,
            throughput: self.ok as f64 / elapsed.as_secs_f64().max(1e-9),
            bodies,
            reconnects: self.reconnects,
        }
    }
}

/// One connection's loop: send, read, classify, until the run ends.
///
/// `index` staggers paced connections over one interval, so a paced run sends evenly instead
/// of in bursts of `connections` requests.
async fn connection(
    config: Arc<LoadConfig>,
    request: Arc<[u8]>,
    shared: Arc<Shared>,
    end: Instant,
    index: usize,
) -> Tally {
    let mut tally = Tally::default();
    let mut buf = wire::RecvBuf::new();
    let mut stream: Option<TcpStream> = None;
    // The open connection has carried a complete answer (a failure on it is a reused one).
    let mut reused = false;
    // The server closed the previous connection gracefully: the next connect is a reconnect.
    let mut graceful_close = false;
    let keep_alive = config.mode == Mode::KeepAlive;
    let bounded = config.max_requests.is_some();
    let pace = config
        .rate
        .map(|r| Duration::from_secs_f64(config.connections.max(1) as f64 / f64::from(r.max(1))));
    let mut next_send = match pace {
        Some(pace) => {
            Instant::now() + pace.mul_f64(index as f64 / config.connections.max(1) as f64)
        }
        None => Instant::now(),
    };
    loop {
        if let Some(pace) = pace {
            // Never sleep past the end of the run nor through a stop.
            tokio::select! {
                () = tokio::time::sleep_until(next_send.min(end).into()) => {}
                () = shared.stopped() => {}
            }
            // A rate is a ceiling: after a slow or hung answer, do not fire the missed turns
            // back to back.
            next_send = (next_send + pace).max(Instant::now());
        }
        if Instant::now() >= end || !shared.take(bounded) {
            break;
        }
        tally.requests += 1;
        let started = Instant::now();
        let attempt = async {
            if stream.is_none() {
                if std::mem::take(&mut graceful_close) {
                    tally.reconnects += 1;
                }
                stream = Some(wire::connect(config.addr).await?);
                reused = false;
            }
            let s = stream.as_mut().expect("connected above");
            buf.clear();
            wire::exchange(s, &request, &mut buf, reused).await
        };
        match tokio::time::timeout(config.request_timeout, attempt).await {
            Ok(Ok(response)) => {
                let body = buf.get(response.body.clone());
                tally.answer(&shared, response.status, started.elapsed(), body);
                if keep_alive && response.reusable {
                    reused = true;
                } else {
                    graceful_close = keep_alive;
                    stream = None;
                }
            }
            Ok(Err(failure)) => {
                tally.fail(&shared, failure);
                stream = None;
            }
            Err(_elapsed) => {
                let phase = if stream.is_none() {
                    Phase::Connect
                } else {
                    Phase::Response
                };
                tally.fail(&shared, Failure::Timeout { phase });
                // The answer may still come: never read it as the next request's.
                stream = None;
            }
        }
    }
    tally
}

/// Runs the load until `duration`, `max_requests`, or `stop` resolves, then waits for the
/// requests in flight (each bounded by `request_timeout`) and reports.
///
/// It spawns one task per connection on the current tokio runtime (which needs the `time` and
/// `io` drivers enabled). Whatever the server does, it returns within `duration +
/// request_timeout` plus scheduling slack.
///
/// # Panics
///
/// If `path` or `host` would break the request line or a header (whitespace or control
/// characters, or a `path` not starting with `/`): that is a bug in the caller.
pub async fn run(config: LoadConfig, stop: impl Future<Output = ()>) -> Report {
    let shared = Arc::new(Shared::default());
    run_shared(config, stop, shared).await
}

async fn run_shared(
    config: LoadConfig,
    stop: impl Future<Output = ()>,
    shared: Arc<Shared>,
) -> Report {
    if let Some(n) = config.max_requests {
        shared.budget.store(n, Ordering::Relaxed);
    }
    let request: Arc<[u8]> = config.request().into();
    let started = Instant::now();
    let end = started + config.duration;
    let config = Arc::new(config);
    let tasks: Vec<_> = (0..config.connections.max(1))
        .map(|index| {
            tokio::spawn(connection(
                config.clone(),
                request.clone(),
                shared.clone(),
                end,
                index,
            ))
        })
        .collect();
    let all = async {
        let mut total = Tally::default();
        for task in tasks {
            match task.await {
                Ok(tally) => total.merge(tally),
                // A connection's panic is a bug here: let it surface, not vanish from the counts.
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                // Cancelled: only when the runtime shuts down under us.
                Err(_) => {}
            }
        }
        total
    };
    tokio::pin!(all);
    let total = tokio::select! {
        total = &mut all => total,
        () = stop => {
            shared.request_stop();
            all.await
        }
    };
    total.into_report(started.elapsed())
}

/// A load run on its own thread and runtime, for tests and the demo that do other work
/// (a reload) while it runs.
///
/// The runtime is a current-thread one unless [`LoadConfig::threads`] asks for more: one thread
/// drives a few hundred connections at tens of thousands of requests per second (the work per
/// request is two system calls), and on the small machines sysmgr is tested on, the server under
/// test needs the other cores more than the client does. A private runtime also keeps the
/// load's timing independent of whatever the caller's runtime is busy with.
pub struct Background {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<Report>>,
}

impl Background {
    /// Starts the load now.
    ///
    /// # Panics
    ///
    /// If no thread or runtime can be started, or on a bad `path` or `host` (see [`run`]).
    pub fn start(config: LoadConfig) -> Background {
        // Checked here so that the caller, not the load thread, panics.
        config.validate();
        let shared = Arc::new(Shared::default());
        let inner = shared.clone();
        let thread = std::thread::Builder::new()
            .name("sysmgr-load".into())
            .spawn(move || {
                let mut builder = if config.threads > 1 {
                    let mut b = tokio::runtime::Builder::new_multi_thread();
                    b.worker_threads(config.threads);
                    b
                } else {
                    tokio::runtime::Builder::new_current_thread()
                };
                let rt = builder
                    .enable_all()
                    .build()
                    .expect("a tokio runtime starts");
                let stop = inner.clone();
                rt.block_on(run_shared(
                    config,
                    async move { stop.stopped().await },
                    inner,
                ))
            })
            .expect("a thread starts");
        Background {
            shared,
            thread: Some(thread),
        }
    }

    /// Ok and failed requests so far.
    pub fn snapshot(&self) -> (u64, u64) {
        (
            self.shared.ok.load(Ordering::Relaxed),
            self.shared.failed.load(Ordering::Relaxed),
        )
    }

    /// Stops sending, waits for the requests in flight (at most `request_timeout`), and reports.
    pub fn stop(self) -> Report {
        self.shared.request_stop();
        self.join()
    }

    /// Waits until the run ends by itself (duration or count), and reports.
    pub fn wait(self) -> Report {
        self.join()
    }

    fn join(mut self) -> Report {
        let thread = self.thread.take().expect("joined only once");
        match thread.join() {
            Ok(report) => report,
            // Bugs in the load client surface in the caller with their own message.
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

impl Drop for Background {
    /// A load that is dropped unreported (a test that failed midway) stops instead of running
    /// on for its whole duration against whatever listens next on that port.
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.shared.request_stop();
        }
    }
}

/// One request on a fresh connection: the status and the body.
///
/// The body is decoded as UTF-8 lossily; a non-2xx status is not an error here.
pub async fn get(
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
) -> Result<(u16, String), Failure> {
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: sysmgr-load\r\nConnection: close\r\n\r\n"
    );
    let mut connected = false;
    let attempt = async {
        let mut stream = wire::connect(addr).await?;
        connected = true;
        let mut buf = wire::RecvBuf::new();
        let response = wire::exchange(&mut stream, request.as_bytes(), &mut buf, false).await?;
        Ok((
            response.status,
            String::from_utf8_lossy(buf.get(response.body)).into_owned(),
        ))
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(result) => result,
        Err(_elapsed) => Err(Failure::Timeout {
            phase: if connected {
                Phase::Response
            } else {
                Phase::Connect
            },
        }),
    }
}

/// [`get`] for code without a runtime.
///
/// # Panics
///
/// When called from within a tokio runtime (it starts its own), or if no runtime can start.
pub fn get_blocking(
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
) -> Result<(u16, String), Failure> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime starts")
        .block_on(get(addr, path, timeout))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_reads_at_a_glance() {
        let report = Report {
            requests: 1010,
            ok: 1000,
            failed: 10,
            hung: 2,
            failures: vec![
                ("status 503".into(), 5),
                ("timed out waiting for the response".into(), 2),
            ],
            statuses: vec![(200, 1000), (503, 5)],
            latency: Latency {
                min: Duration::from_micros(50),
                p50: Duration::from_micros(120),
                p90: Duration::from_micros(300),
                p99: Duration::from_micros(1500),
                max: Duration::from_millis(12),
                mean: Duration::from_micros(150),
            },
            elapsed: Duration::from_secs(2),
            throughput: 500.0,
            bodies: vec![("instance 1 pid 42\n".into(), 600), ("a\"b".into(), 400)],
            reconnects: 3,
        };
        assert_eq!(
            report.to_string(),
            "1010 requests in 2.00 s: 1000 ok (500/s), 10 failed (2 hung), 3 reconnects after `Connection: close`\n\
             latency p50 0.12 ms, p90 0.30 ms, p99 1.50 ms, max 12.00 ms, mean 0.15 ms\n  \
             5 x status 503\n  \
             2 x timed out waiting for the response\n\
             bodies:\n  \
             600 x \"instance 1 pid 42\"\n  \
             400 x \"a\\\"b\""
        );
    }

    #[test]
    fn the_request_is_formatted_once_per_mode() {
        let mut config = LoadConfig::new(SocketAddr::from(([127, 0, 0, 1], 8080)));
        config.path = "/slow?ms=5".into();
        assert_eq!(
            config.request(),
            b"GET /slow?ms=5 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: sysmgr-load\r\n\r\n"
        );
        config.mode = Mode::PerRequest;
        config.host = "example".into();
        assert_eq!(
            config.request(),
            b"GET /slow?ms=5 HTTP/1.1\r\nHost: example\r\nUser-Agent: sysmgr-load\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    #[should_panic(expected = "must start with `/` and hold no whitespace")]
    fn a_path_that_would_inject_a_header_is_a_bug() {
        let mut config = LoadConfig::new(SocketAddr::from(([127, 0, 0, 1], 8080)));
        config.path = "/ HTTP/1.1\r\nX: y".into();
        config.request();
    }

    #[test]
    fn statuses_and_failures_merge_across_connections() {
        let shared = Shared::default();
        let (mut a, mut b) = (Tally::default(), Tally::default());
        a.answer(&shared, 200, Duration::from_micros(100), b"one");
        b.answer(&shared, 200, Duration::from_micros(300), b"two");
        b.answer(&shared, 404, Duration::from_micros(300), b"one");
        b.fail(&shared, Failure::Closed { reused: true });
        a.fail(&shared, Failure::Closed { reused: true });
        (a.requests, b.requests) = (2, 3);
        a.merge(b);
        let report = a.into_report(Duration::from_secs(1));
        assert_eq!((report.ok, report.failed), (2, 3));
        assert_eq!(report.statuses, [(200, 2), (404, 1)]);
        assert_eq!(
            report.failures,
            [
                (
                    "connection closed before the response on a reused keep-alive connection"
                        .to_string(),
                    2
                ),
                ("status 404".to_string(), 1),
            ]
        );
        assert_eq!(
            report.bodies,
            [("one".to_string(), 2), ("two".to_string(), 1)]
        );
        assert_eq!(report.latency.max, Duration::from_micros(300));
        assert_eq!(shared.ok.load(Ordering::Relaxed), 2);
        assert_eq!(shared.failed.load(Ordering::Relaxed), 3);
    }
}
