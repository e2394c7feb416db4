//! The drain of `http::serve`, over real sockets on 127.0.0.1: no request lost under keep-alive
//! load, `Connection: close` on the wire, idle connections closed only after their grace, and
//! everything finished before the deadline.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use sysmgr_worker::http::{self, DrainReport};
use sysmgr_worker::{DrainTiming, Listeners, Notifier, Shutdown, TokioListener};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::support::{named_service, Client, Failure};

/// A server named `name` on `listener`, drained by the returned shutdown.
fn start(
    name: &'static str,
    listener: TokioListener,
    kill_timeout: Duration,
) -> (Shutdown, JoinHandle<DrainReport>) {
    let shutdown = Shutdown::manual(Notifier::disabled(), DrainTiming::new(kill_timeout));
    let task = tokio::spawn(http::serve(
        listener,
        service_fn(move |req| named_service(name, req)),
        shutdown.clone(),
    ));
    let task = tokio::spawn(async move { task.await.unwrap().unwrap() });
    (shutdown, task)
}

fn tcp_listener() -> (std::net::TcpListener, std::net::SocketAddr) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    (l, addr)
}

fn tokio_listener(l: std::net::TcpListener) -> TokioListener {
    l.set_nonblocking(true).unwrap();
    tokio::net::TcpListener::from_std(l).unwrap().into()
}

async fn connect(addr: std::net::SocketAddr) -> Client<TcpStream> {
    Client::new(TcpStream::connect(addr).await.unwrap())
}

#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    failed: AtomicU64,
    /// Responses from the draining server, with and without `Connection: close`.
    a_close: AtomicU64,
    a_slow_close: AtomicU64,
}

/// Two workers accept from one shared socket, as in sysmgr's shared mode; keep-alive clients
/// hammer it while worker `a` drains. Not one request may fail.
// soak: zero loss
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_load_through_a_drain_loses_no_request() {
    let (std_a, addr) = tcp_listener();
    let std_b = std_a.try_clone().unwrap();
    let kill_timeout = Duration::from_secs(3);
    // Only a accepts at first, so that every client starts on the worker that will drain.
    let (shut_a, task_a) = start("a", tokio_listener(std_a), kill_timeout);

    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    // 12 fast and 4 slow keep-alive connections; on `Connection: close` they reconnect, as
    // every HTTP client does. Bounded in count and time.
    for i in 0..16 {
        let (tally, stop) = (tally.clone(), stop.clone());
        let path = if i < 12 { "/" } else { "/slow?ms=300" };
        clients.push(tokio::spawn(async move {
            let mut conn = connect(addr).await;
            for _ in 0..200_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                match conn.get(path).await {
                    Ok(reply) if reply.status == 200 => {
                        tally.ok.fetch_add(1, Ordering::Relaxed);
                        if reply.body == "a" && reply.close {
                            tally.a_close.fetch_add(1, Ordering::Relaxed);
                            if path != "/" {
                                tally.a_slow_close.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        if reply.close {
                            conn = connect(addr).await;
                        }
                    }
                    other => {
                        eprintln!("request failed: {other:?}");
                        tally.failed.fetch_add(1, Ordering::Relaxed);
                        conn = connect(addr).await;
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (shut_b, task_b) = start("b", tokio_listener(std_b), kill_timeout);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let ok_before = tally.ok.load(Ordering::Relaxed);
    shut_a.trigger();
    let report = tokio::time::timeout(Duration::from_secs(10), task_a)
        .await
        .unwrap()
        .unwrap();
    // Keep the load on worker b for a while after a is gone.
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    shut_b.trigger();
    let report_b = task_b.await.unwrap();
    eprintln!("a: {report}\nb: {report_b}");

    assert_eq!(tally.failed.load(Ordering::Relaxed), 0, "{report}");
    assert!(
        ok_before > 100,
        "the load did not run: {ok_before} requests"
    );
    assert!(tally.ok.load(Ordering::Relaxed) > ok_before);
    // Every response a sent with `Connection: close` reached a client.
    assert_eq!(
        tally.a_close.load(Ordering::Relaxed),
        report.closing_responses
    );
    // The slow requests in flight at the signal were finished, with close.
    assert!(tally.a_slow_close.load(Ordering::Relaxed) >= 1, "{report}");
    assert_eq!(report.aborted, 0);
    assert_eq!(report.open_at_start, 16);
    assert!(report.finished <= report.drain.deadline, "{report}");
    // Busy connections close with their next response, so the drain ends long before its budget
    // (2.7 s); the bound is generous for busy CI machines.
    assert!(report.elapsed() < Duration::from_millis(2000), "{report}");
    assert_eq!(report_b.aborted, 0);
}

/// hyper disables keep-alive during a graceful shutdown but does not say so; the client must
/// read `Connection: close` in the very response. Regression test for that header.
#[tokio::test]
async fn a_request_in_flight_at_the_signal_is_answered_with_connection_close_on_the_wire() {
    let (l, addr) = tcp_listener();
    let (shutdown, task) = start("a", tokio_listener(l), Duration::from_secs(3));
    let mut raw = TcpStream::connect(addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    raw.write_all(b"GET /slow?ms=200 HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    shutdown.trigger();
    let mut wire = Vec::new();
    // The server closes after the response, so reading to the end terminates.
    tokio::time::timeout(Duration::from_secs(5), raw.read_to_end(&mut wire))
        .await
        .unwrap()
        .unwrap();
    let wire = String::from_utf8(wire).unwrap();
    assert!(wire.starts_with("HTTP/1.1 200 OK\r\n"), "{wire}");
    assert!(wire.contains("\r\nconnection: close\r\n"), "{wire}");
    assert!(wire.ends_with("\r\n\r\na"), "{wire}");
    let report = task.await.unwrap();
    assert_eq!(report.closing_responses, 1);
    assert_eq!(report.closed_idle, 0);
}

/// An idle keep-alive connection is not closed at the signal: a request sent during the grace
/// is answered (with close), and one that stays quiet is closed after the grace, not before.
#[tokio::test]
async fn idle_connections_get_a_grace_then_are_closed() {
    let (l, addr) = tcp_listener();
    let timing = DrainTiming::new(Duration::from_secs(3));
    let grace = timing.idle_grace();
    assert_eq!(grace, Duration::from_millis(500));
    let (shutdown, task) = start("a", tokio_listener(l), Duration::from_secs(3));
    let mut talker = connect(addr).await;
    let mut quiet = connect(addr).await;
    let mut fresh = connect(addr).await; // never sends anything
    assert!(!talker.get("/").await.unwrap().close);
    assert!(!quiet.get("/").await.unwrap().close);

    shutdown.trigger();
    let t0 = Instant::now();
    tokio::time::sleep(grace * 7 / 10).await;
    let reply = talker.get("/").await.unwrap();
    assert_eq!((reply.status, reply.close), (200, true));
    assert!(talker.closed_within(Duration::from_secs(1)).await);

    assert!(quiet.closed_within(Duration::from_secs(3)).await);
    let quiet_closed = t0.elapsed();
    assert!(fresh.closed_within(Duration::from_secs(3)).await);
    assert!(quiet_closed >= grace, "closed after {quiet_closed:?}");
    assert!(
        quiet_closed < grace + Duration::from_millis(1200),
        "closed after {quiet_closed:?}"
    );
    let report = task.await.unwrap();
    assert_eq!(report.open_at_start, 3);
    assert_eq!(report.closed_idle, 2);
    assert_eq!(report.closing_responses, 1);
    assert_eq!(report.aborted, 0);
}

/// The race the grace exists for: a request whose first bytes arrive late in the grace must not
/// meet a closed socket because the rest arrives after it.
#[tokio::test]
async fn a_request_arriving_in_pieces_across_the_grace_is_answered() {
    let (l, addr) = tcp_listener();
    let grace = DrainTiming::new(Duration::from_secs(3)).idle_grace();
    let (shutdown, task) = start("a", tokio_listener(l), Duration::from_secs(3));
    let mut client = connect(addr).await;
    client.get("/").await.unwrap();
    shutdown.trigger();
    tokio::time::sleep(grace * 8 / 10).await;
    client.send_raw(b"GET / HTTP/1.1\r\n").await.unwrap();
    tokio::time::sleep(grace * 6 / 10).await;
    client.send_raw(b"Host: t\r\n\r\n").await.unwrap();
    let reply = client.read_reply().await.unwrap();
    assert_eq!((reply.status, reply.close), (200, true));
    let report = task.await.unwrap();
    assert_eq!(report.closed_idle, 0);
}

/// A request longer than the budget is cut at the deadline, and the server returns in time
/// for the process to exit before SIGKILL.
#[tokio::test]
async fn a_request_longer_than_the_budget_is_aborted_at_the_deadline() {
    let (l, addr) = tcp_listener();
    let kill_timeout = Duration::from_millis(800);
    let (shutdown, task) = start("a", tokio_listener(l), kill_timeout);
    let mut client = connect(addr).await;
    client
        .send_raw(b"GET /slow?ms=5000 HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let t0 = Instant::now();
    shutdown.trigger();
    let report = task.await.unwrap();
    let took = t0.elapsed();
    let timing = DrainTiming::new(kill_timeout);
    assert!(took >= timing.budget(), "{took:?}");
    assert!(took < kill_timeout, "{took:?}: would have been killed");
    assert_eq!(report.aborted, 1);
    assert!(matches!(
        client.read_reply().await,
        Err(Failure::ClosedBeforeResponse | Failure::Io(_))
    ));
}

/// A second signal (Ctrl-C twice) stops at once instead of waiting for the deadline.
#[tokio::test]
async fn a_second_signal_cuts_the_drain_short() {
    let (l, addr) = tcp_listener();
    let (shutdown, task) = start("a", tokio_listener(l), Duration::from_secs(10));
    let mut client = connect(addr).await;
    client
        .send_raw(b"GET /slow?ms=5000 HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let t0 = Instant::now();
    shutdown.trigger();
    tokio::time::sleep(Duration::from_millis(100)).await;
    shutdown.trigger();
    let report = task.await.unwrap();
    assert!(
        t0.elapsed() < Duration::from_millis(1000),
        "{:?}",
        t0.elapsed()
    );
    assert!(report.drain.hurried);
    assert_eq!(report.aborted, 1);
}

/// The unix socket path: bound through `Listeners`, served, drained.
#[tokio::test]
async fn a_unix_socket_listener_serves_and_drains() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.sock");
    let mut listeners = Listeners::bind(&format!("http={}", path.display())).unwrap();
    let listener = listeners.take("http").unwrap().into_tokio().unwrap();
    let (shutdown, task) = start("u", listener, Duration::from_secs(3));
    let mut client = Client::new(tokio::net::UnixStream::connect(&path).await.unwrap());
    let reply = client.get("/").await.unwrap();
    assert_eq!(
        (reply.status, reply.body.as_str(), reply.close),
        (200, "u", false)
    );
    client
        .send_raw(b"GET /slow?ms=150 HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(30)).await;
    shutdown.trigger();
    let reply = client.read_reply().await.unwrap();
    assert_eq!((reply.status, reply.close), (200, true));
    assert!(client.closed_within(Duration::from_secs(1)).await);
    let report = task.await.unwrap();
    assert_eq!(report.aborted, 0);
    // Not accepting any more: the socket file has no listener.
    assert!(tokio::net::UnixStream::connect(&path).await.is_err());
}
