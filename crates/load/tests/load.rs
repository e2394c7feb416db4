//! The load client against small loopback servers that misbehave on purpose: each failure
//! class must be counted as what it is, graceful closes must not be, and every run must end
//! within its bounds.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sysmgr_load::{get, run, Background, LoadConfig, Mode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How a test server answers the n-th request of a connection (1-based).
#[derive(Clone, Copy)]
enum Behaviour {
    /// `200 ok`, keep-alive.
    Ok,
    /// `200` with `Connection: close` on every n-th request, then closes.
    CloseEvery(u64),
    /// Answers the first request, then closes when the second arrives, unanswered.
    DropSecond,
    /// Reads requests and never answers.
    Hang,
    /// Answers the first request, never the second.
    HangSecond,
    /// Answers the first request without `Connection: close`, then closes at once: the drain
    /// bug that loses the request a client sends right after an answer.
    SilentCloseAfterFirst,
    /// Answers with this status.
    Status(u16),
}

/// Starts a server; returns its address and a counter of accepted connections.
async fn server(behaviour: Behaviour) -> (SocketAddr, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicU64::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(serve(stream, behaviour));
        }
    });
    (addr, accepted)
}

async fn serve(mut stream: TcpStream, behaviour: Behaviour) {
    let mut buf = vec![0u8; 4096];
    let mut pending = Vec::new();
    let mut n = 0u64;
    loop {
        // One request = everything up to a blank line (the client sends no bodies).
        while !pending.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(k) => pending.extend_from_slice(&buf[..k]),
            }
        }
        let end = pending.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        pending.drain(..end);
        n += 1;
        let (status, close) = match behaviour {
            Behaviour::Ok => (200, false),
            Behaviour::CloseEvery(k) => (200, n % k == 0),
            Behaviour::DropSecond if n >= 2 => return,
            Behaviour::DropSecond => (200, false),
            Behaviour::Hang => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                return;
            }
            Behaviour::HangSecond if n >= 2 => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                return;
            }
            Behaviour::HangSecond => (200, false),
            Behaviour::SilentCloseAfterFirst => (200, false),
            Behaviour::Status(s) => (s, false),
        };
        let body = format!("conn answer {}\n", n.min(2));
        let head = format!(
            "HTTP/1.1 {status} X\r\nContent-Length: {}\r\n{}\r\n",
            body.len(),
            if close { "Connection: close\r\n" } else { "" }
        );
        if stream
            .write_all(format!("{head}{body}").as_bytes())
            .await
            .is_err()
            || close
            || matches!(behaviour, Behaviour::SilentCloseAfterFirst)
        {
            return;
        }
    }
}

fn config(addr: SocketAddr) -> LoadConfig {
    let mut c = LoadConfig::new(addr);
    c.connections = 4;
    c.duration = Duration::from_millis(300);
    c.request_timeout = Duration::from_millis(500);
    c
}

#[tokio::test]
async fn a_well_behaved_server_gets_only_ok_requests_and_their_bodies() {
    let (addr, accepted) = server(Behaviour::Ok).await;
    let report = run(config(addr), std::future::pending()).await;
    assert!(report.ok > 100, "{report}");
    assert_eq!(report.failed, 0, "{report}");
    assert_eq!(report.requests, report.ok);
    assert_eq!(report.statuses, [(200, report.ok)]);
    assert_eq!(
        accepted.load(Ordering::Relaxed),
        4,
        "keep-alive reuses its 4 connections"
    );
    let bodies: u64 = report.bodies.iter().map(|(_, n)| n).sum();
    assert_eq!(bodies, report.ok);
    assert_eq!(report.bodies.len(), 2, "{:?}", report.bodies);
    assert!(report.latency.p50 > Duration::ZERO && report.latency.p50 <= report.latency.p99);
    assert!(report.latency.p99 <= report.latency.max);
}

#[tokio::test]
async fn connection_close_answers_are_reconnects_not_failures() {
    let (addr, accepted) = server(Behaviour::CloseEvery(3)).await;
    let report = run(config(addr), std::future::pending()).await;
    assert_eq!(report.failed, 0, "{report}");
    assert!(report.reconnects > 10, "{report}");
    // Counted when a connection is opened again, so exactly the extra connections accepted.
    assert_eq!(accepted.load(Ordering::Relaxed), 4 + report.reconnects);
    // Each connection: two keep-alive answers, then one with `Connection: close`.
    assert!(report.ok >= 3 * report.reconnects, "{report}");
}

#[tokio::test]
async fn a_reused_connection_closed_before_the_answer_is_a_failure() {
    let (addr, _) = server(Behaviour::DropSecond).await;
    let report = run(config(addr), std::future::pending()).await;
    assert!(report.ok > 10, "{report}");
    // Every connection: one ok, then the server drops the next request (the run may end
    // between the two on each of the 4 connections).
    assert!(report.ok - report.failed <= 4, "{report}");
    assert_eq!(report.hung, 0);
    let kinds: Vec<&str> = report.failures.iter().map(|(k, _)| k.as_str()).collect();
    assert!(
        kinds
            .iter()
            .all(|k| k.ends_with("before the response on a reused keep-alive connection")),
        "{kinds:?}"
    );
}

#[tokio::test]
async fn a_server_that_never_answers_is_counted_as_hung_and_the_run_still_ends() {
    let (addr, _) = server(Behaviour::Hang).await;
    let started = Instant::now();
    let report = run(config(addr), std::future::pending()).await;
    assert!(
        started.elapsed() < Duration::from_millis(300 + 500 + 400),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(report.ok, 0);
    assert_eq!(report.hung, 4, "{report}");
    assert_eq!(report.failed, 4);
    assert_eq!(
        report.failures,
        [("timed out waiting for the response".to_string(), 4)]
    );
}

#[tokio::test]
async fn refused_connections_are_failures() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let mut c = config(addr);
    c.max_requests = Some(10);
    let report = run(c, std::future::pending()).await;
    assert_eq!(report.requests, 10);
    assert_eq!(report.failed, 10);
    assert_eq!(report.failures, [("connection refused".to_string(), 10)]);
}

#[tokio::test]
async fn non_2xx_answers_are_failures_by_status() {
    let (addr, _) = server(Behaviour::Status(503)).await;
    let mut c = config(addr);
    c.max_requests = Some(25);
    let report = run(c, std::future::pending()).await;
    assert_eq!((report.ok, report.failed), (0, 25), "{report}");
    assert_eq!(report.statuses, [(503, 25)]);
    assert_eq!(report.failures, [("status 503".to_string(), 25)]);
}

#[tokio::test]
async fn max_requests_is_exact_and_per_request_mode_opens_a_connection_each() {
    let (addr, accepted) = server(Behaviour::Ok).await;
    let mut c = config(addr);
    c.mode = Mode::PerRequest;
    c.max_requests = Some(137);
    c.duration = Duration::from_secs(10);
    let report = run(c, std::future::pending()).await;
    assert_eq!(
        (report.requests, report.ok, report.failed),
        (137, 137, 0),
        "{report}"
    );
    assert_eq!(accepted.load(Ordering::Relaxed), 137);
    assert_eq!(
        report.reconnects, 0,
        "per-request closes are not reconnects"
    );
}

#[tokio::test]
async fn stop_ends_the_run_early() {
    let (addr, _) = server(Behaviour::Ok).await;
    let mut c = config(addr);
    c.duration = Duration::from_secs(30);
    let started = Instant::now();
    let report = run(c, tokio::time::sleep(Duration::from_millis(100))).await;
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(report.ok > 0 && report.failed == 0, "{report}");
}

#[tokio::test]
async fn rate_paces_the_requests() {
    let (addr, _) = server(Behaviour::Ok).await;
    let mut c = config(addr);
    c.rate = Some(200);
    c.duration = Duration::from_millis(500);
    let report = run(c, std::future::pending()).await;
    // 200/s for 0.5 s is 100 requests; allow for the first tick and scheduling.
    assert!((90..=110).contains(&report.requests), "{report}");
}

#[tokio::test]
async fn get_returns_status_and_body() {
    let (addr, _) = server(Behaviour::Ok).await;
    assert_eq!(
        get(addr, "/", Duration::from_secs(1)).await.unwrap(),
        (200, "conn answer 1\n".to_string())
    );
}

#[test]
fn background_runs_on_its_own_thread_and_stops_on_demand() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (addr, _) = rt.block_on(server(Behaviour::Ok));
    let mut c = config(addr);
    c.duration = Duration::from_secs(30);
    let load = Background::start(c);
    std::thread::sleep(Duration::from_millis(200));
    let (ok, failed) = load.snapshot();
    assert!(ok > 0 && failed == 0);
    let report = load.stop();
    assert!(report.ok >= ok && report.failed == 0, "{report}");
    assert!(report.elapsed < Duration::from_secs(2));
}

#[tokio::test]
async fn a_hung_request_drops_its_connection_and_the_next_one_starts_afresh() {
    let (addr, accepted) = server(Behaviour::HangSecond).await;
    let mut c = config(addr);
    c.connections = 2;
    c.duration = Duration::from_millis(700);
    c.request_timeout = Duration::from_millis(200);
    let report = run(c, std::future::pending()).await;
    // Per connection: ok, hung 200 ms, reconnect; about three rounds in 700 ms.
    assert!(report.hung >= 4, "{report}");
    assert_eq!(report.failed, report.hung, "{report}");
    assert_eq!(report.ok, accepted.load(Ordering::Relaxed), "{report}");
    assert!(report.ok >= report.hung, "{report}");
    assert_eq!(
        report.failures,
        [(
            "timed out waiting for the response".to_string(),
            report.hung
        )]
    );
    assert_eq!(report.reconnects, 0, "a hang is not a graceful close");
}

#[tokio::test]
async fn per_request_mode_counts_hung_requests_too() {
    let (addr, accepted) = server(Behaviour::Hang).await;
    let mut c = config(addr);
    c.mode = Mode::PerRequest;
    c.connections = 3;
    c.duration = Duration::from_millis(250);
    c.request_timeout = Duration::from_millis(100);
    let started = Instant::now();
    let report = run(c, std::future::pending()).await;
    assert!(started.elapsed() < Duration::from_millis(250 + 100 + 400));
    // Three rounds of 100 ms fit before the 250 ms end for each of the 3 connections (fewer
    // on a busy machine), each on a new connection.
    assert!((3..=9).contains(&report.hung), "{report}");
    assert_eq!((report.failed, report.ok), (report.hung, 0), "{report}");
    assert_eq!(accepted.load(Ordering::Relaxed), report.hung);
}

#[tokio::test]
async fn max_requests_is_exact_across_keep_alive_connections() {
    let (addr, _) = server(Behaviour::Ok).await;
    let mut c = config(addr);
    c.connections = 7;
    c.max_requests = Some(1000);
    c.duration = Duration::from_secs(10);
    let report = run(c, std::future::pending()).await;
    assert_eq!((report.requests, report.ok), (1000, 1000), "{report}");
    assert_eq!(report.statuses, [(200, 1000)]);
}

#[tokio::test]
async fn a_slow_rate_does_not_sleep_past_the_end_nor_through_a_stop() {
    let (addr, _) = server(Behaviour::Ok).await;
    // One request per connection per 4 s: the second turn is far beyond the end.
    let mut c = config(addr);
    c.rate = Some(1);
    c.duration = Duration::from_millis(200);
    let started = Instant::now();
    let report = run(c.clone(), std::future::pending()).await;
    assert!(
        started.elapsed() < Duration::from_millis(800),
        "{:?}",
        started.elapsed()
    );
    assert!(report.requests <= 4, "{report}");

    c.duration = Duration::from_secs(60);
    let started = Instant::now();
    let report = run(c, tokio::time::sleep(Duration::from_millis(100))).await;
    assert!(
        started.elapsed() < Duration::from_millis(700),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(report.failed, 0, "{report}");
}

#[tokio::test]
async fn stop_lets_the_requests_in_flight_finish_within_the_timeout() {
    let (addr, _) = server(Behaviour::Hang).await;
    let mut c = config(addr);
    c.duration = Duration::from_secs(60);
    c.request_timeout = Duration::from_millis(300);
    let started = Instant::now();
    let report = run(c, tokio::time::sleep(Duration::from_millis(50))).await;
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(300), "{took:?}");
    assert!(took < Duration::from_millis(900), "{took:?}");
    assert_eq!((report.requests, report.hung), (4, 4), "{report}");
}

#[test]
fn a_dropped_background_load_stops_sending() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (addr, accepted) = rt.block_on(server(Behaviour::CloseEvery(1)));
    let mut c = config(addr);
    c.duration = Duration::from_secs(60);
    c.request_timeout = Duration::from_millis(200);
    let load = Background::start(c);
    std::thread::sleep(Duration::from_millis(100));
    drop(load);
    // In flight at the drop: at most one request per connection, bounded by the timeout.
    std::thread::sleep(Duration::from_millis(300));
    let after_drop = accepted.load(Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(300));
    assert!(after_drop > 0);
    assert_eq!(accepted.load(Ordering::Relaxed), after_drop);
}

#[test]
fn background_wait_returns_when_the_count_is_reached() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (addr, _) = rt.block_on(server(Behaviour::Ok));
    let mut c = config(addr);
    c.duration = Duration::from_secs(30);
    c.max_requests = Some(500);
    c.threads = 2;
    let report = Background::start(c).wait();
    assert_eq!((report.requests, report.ok), (500, 500), "{report}");
}

#[test]
fn get_blocking_reports_refused_and_hung_requests() {
    let refused = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    assert_eq!(
        sysmgr_load::get_blocking(refused, "/", Duration::from_secs(1)),
        Err(sysmgr_load::Failure::ConnectRefused)
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (addr, _) = rt.block_on(server(Behaviour::Hang));
    assert_eq!(
        sysmgr_load::get_blocking(addr, "/x", Duration::from_millis(100)),
        Err(sysmgr_load::Failure::Timeout {
            phase: sysmgr_load::Phase::Response
        })
    );
}

#[tokio::test]
async fn a_server_closing_after_an_answer_without_saying_so_loses_the_next_request() {
    let (addr, accepted) = server(Behaviour::SilentCloseAfterFirst).await;
    let report = run(config(addr), std::future::pending()).await;
    assert!(report.ok > 10, "{report}");
    // Whether the close or the next request wins, the request is lost on a reused connection:
    // closed (the FIN came first) or reset (the request reached a closed socket).
    assert!(report.ok - report.failed <= 4, "{report}");
    for (kind, _) in &report.failures {
        assert!(
            kind == "connection closed before the response on a reused keep-alive connection"
                || kind == "connection reset before the response on a reused keep-alive connection",
            "{report}"
        );
    }
    assert_eq!(report.reconnects, 0, "an unannounced close is not graceful");
    assert_eq!(accepted.load(Ordering::Relaxed), report.ok);
}
