//! A bounded HTTP/1.1 load client that sees every failed and hung request.
//!
//! sysmgr's central promise is that a rolling reload fails no request. Checking it needs a
//! client that counts what common tools do not: `wrk` never reports a connection that gets no
//! answer, and HTTP client libraries retry and pool, hiding the very races a drain can lose.
//! This client sends one preformatted `GET` at a time per connection ([`wire`]), classifies
//! every failure (refused, closed or reset before the answer on a fresh or a reused
//! connection, hung, malformed), and records latency in a fixed-size histogram.
//!
//! Every run is bounded in time and, optionally, in count: it ends by `duration +
//! request_timeout` whatever the server does. Only point it at loopback addresses.
//!
//! Two shapes of load: [`Mode::KeepAlive`] sends requests back to back on each connection and
//! reconnects when the server answers `Connection: close` (a graceful drain: not a failure);
//! [`Mode::PerRequest`] opens a new connection for every request.

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
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Where; a loopback address.
    pub addr: SocketAddr,
    /// The request path.
    pub path: String,
    /// The `Host` header.
    pub host: String,
    /// Concurrent connections, each with one request in flight at a time.
    pub connections: usize,
    /// Keep-alive or one request per connection.
    pub mode: Mode,
    /// The run stops sending after this long.
    pub duration: Duration,
    /// The run stops after this many requests in all.
    pub max_requests: Option<u64>,
    /// Total requests per second across connections; `None` sends as fast as answers come.
    pub rate: Option<u32>,
    /// A request without a complete answer after this long counts as hung.
    pub request_timeout: Duration,
    /// Runtime threads for [`Background`] (1 is a current-thread runtime).
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

    fn request(&self) -> Vec<u8> {
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

/// Latency of the successful requests.
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
    /// Failure kinds and counts, most frequent first.
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
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        writeln!(
            f,
            "{} requests in {:.2}s ({:.0}/s ok): {} ok, {} failed ({} hung)",
            self.requests,
            self.elapsed.as_secs_f64(),
            self.throughput,
            self.ok,
            self.failed,
            self.hung
        )?;
        write!(
            f,
            "latency p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            ms(self.latency.p50),
            ms(self.latency.p90),
            ms(self.latency.p99),
            ms(self.latency.max)
        )?;
        if self.reconnects > 0 {
            write!(f, "; {} graceful reconnects", self.reconnects)?;
        }
        for (kind, n) in &self.failures {
            write!(f, "\n  {n} x {kind}")?;
        }
        Ok(())
    }
}

/// Live counters shared by the connections, readable while a run goes on.
#[derive(Debug, Default)]
struct Shared {
    stop: AtomicBool,
    ok: AtomicU64,
    failed: AtomicU64,
    /// Requests still allowed when `max_requests` is set.
    budget: AtomicU64,
}

impl Shared {
    /// Takes one request from the budget; false when the run must end.
    fn take(&self, bounded: bool) -> bool {
        if self.stop.load(Ordering::Relaxed) {
            return false;
        }
        !bounded
            || self
                .budget
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok()
    }
}

/// One connection's tallies, merged at the end.
#[derive(Default)]
struct Tally {
    requests: u64,
    ok: u64,
    failed: u64,
    hung: u64,
    reconnects: u64,
    histogram: Histogram,
    failures: HashMap<Failure, u64>,
    statuses: HashMap<u16, u64>,
    bodies: HashMap<Vec<u8>, u64>,
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
        for (k, n) in other.statuses {
            *self.statuses.entry(k).or_default() += n;
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

    fn count_body(&mut self, body: &[u8]) {
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
        let latency = Latency {
            min: Duration::from_micros(self.histogram.min_us().unwrap_or(0)),
            p50: us(0.50),
            p90: us(0.90),
            p99: us(0.99),
            max: Duration::from_micros(self.histogram.max_us().unwrap_or(0)),
            mean: Duration::from_micros(self.histogram.mean_us().unwrap_or(0)),
        };
        let mut failures: Vec<(String, u64)> = self
            .failures
            .iter()
            .map(|(k, n)| (k.to_string(), *n))
            .collect();
        let non_2xx = self
            .statuses
            .iter()
            .filter(|(s, _)| !(200..300).contains(*s))
            .map(|(s, n)| (format!("status {s}"), *n));
        failures.extend(non_2xx);
        failures.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let mut statuses: Vec<(u16, u64)> = self.statuses.into_iter().collect();
        statuses.sort_unstable();
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
async fn connection(
    config: Arc<LoadConfig>,
    request: Arc<[u8]>,
    shared: Arc<Shared>,
    end: Instant,
) -> Tally {
    let mut tally = Tally::default();
    let mut buf = wire::RecvBuf::new();
    let mut stream: Option<TcpStream> = None;
    let mut reused = false;
    let bounded = config.max_requests.is_some();
    let pace = config
        .rate
        .map(|r| Duration::from_secs_f64(config.connections as f64 / f64::from(r.max(1))));
    let mut next_send = Instant::now();
    while Instant::now() < end && shared.take(bounded) {
        if let Some(pace) = pace {
            tokio::time::sleep_until(next_send.into()).await;
            next_send += pace;
        }
        tally.requests += 1;
        let started = Instant::now();
        let attempt = async {
            if stream.is_none() {
                stream = Some(wire::connect(config.addr).await?);
                reused = false;
            }
            let s = stream.as_mut().expect("connected above");
            buf.clear();
            wire::exchange(s, &request, &mut buf, reused).await
        };
        let outcome = tokio::time::timeout(config.request_timeout, attempt).await;
        match outcome {
            Ok(Ok(response)) => {
                *tally.statuses.entry(response.status).or_default() += 1;
                if (200..300).contains(&response.status) {
                    tally.ok += 1;
                    shared.ok.fetch_add(1, Ordering::Relaxed);
                    tally.histogram.record(started.elapsed());
                } else {
                    tally.failed += 1;
                    shared.failed.fetch_add(1, Ordering::Relaxed);
                }
                tally.count_body(buf.get(response.body.clone()));
                if response.reusable && config.mode == Mode::KeepAlive {
                    reused = true;
                } else {
                    if config.mode == Mode::KeepAlive {
                        tally.reconnects += 1;
                    }
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
                stream = None;
            }
        }
    }
    tally
}

/// Runs the load until `duration`, `max_requests`, or `stop` resolves, then waits for the
/// requests in flight (each bounded by `request_timeout`) and reports.
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
    let started = Instant::now();
    let end = started + config.duration;
    let request: Arc<[u8]> = config.request().into();
    let config = Arc::new(config);
    let tasks: Vec<_> = (0..config.connections.max(1))
        .map(|_| {
            tokio::spawn(connection(
                config.clone(),
                request.clone(),
                shared.clone(),
                end,
            ))
        })
        .collect();
    let all = async {
        let mut total = Tally::default();
        for task in tasks {
            if let Ok(tally) = task.await {
                total.merge(tally);
            }
        }
        total
    };
    tokio::pin!(all);
    let total = tokio::select! {
        total = &mut all => total,
        () = stop => {
            shared.stop.store(true, Ordering::Relaxed);
            all.await
        }
    };
    total.into_report(started.elapsed())
}

/// A load run on its own thread and runtime, for tests and the demo that do other work
/// (a reload) while it runs.
pub struct Background {
    shared: Arc<Shared>,
    thread: std::thread::JoinHandle<Report>,
}

impl Background {
    /// Starts the load now.
    pub fn start(config: LoadConfig) -> Background {
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
                let flag = inner.clone();
                rt.block_on(run_shared(
                    config,
                    async move {
                        while !flag.stop.load(Ordering::Relaxed) {
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                    },
                    inner,
                ))
            })
            .expect("a thread starts");
        Background { shared, thread }
    }

    /// Ok and failed requests so far.
    pub fn snapshot(&self) -> (u64, u64) {
        (
            self.shared.ok.load(Ordering::Relaxed),
            self.shared.failed.load(Ordering::Relaxed),
        )
    }

    /// Stops sending, waits for the requests in flight, and reports.
    pub fn stop(self) -> Report {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("the load thread does not panic")
    }

    /// Waits until the run ends by itself (duration or count), and reports.
    pub fn wait(self) -> Report {
        self.thread.join().expect("the load thread does not panic")
    }
}

/// One request on a fresh connection: the status and the body.
pub async fn get(
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
) -> Result<(u16, String), Failure> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let attempt = async {
        let mut stream = wire::connect(addr).await?;
        let mut buf = wire::RecvBuf::new();
        let response = wire::exchange(&mut stream, request.as_bytes(), &mut buf, false).await?;
        Ok((
            response.status,
            String::from_utf8_lossy(buf.get(response.body)).into_owned(),
        ))
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .unwrap_or(Err(Failure::Timeout {
            phase: Phase::Response,
        }))
}

/// [`get`] for code without a runtime.
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
