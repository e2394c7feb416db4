//! Measures the requests a drain loses under keep-alive load: sysmgr-worker's `http::serve`
//! against hyper-util's `GracefulShutdown` used as it comes.
//!
//! Each round, as in sysmgr's shared-socket mode, two workers accept from one socket on
//! 127.0.0.1; 16 keep-alive clients send requests back to back (reconnecting on
//! `Connection: close`, as HTTP clients do); worker `a` drains while worker `b` keeps serving.
//! A failed request is any that gets no complete response. Bounded: rounds x ~0.8 s.
//!
//! ```text
//! cargo run --release -p sysmgr-worker --features http --example drain_compare -- 10
//! ```

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use sysmgr_worker::{http, DrainTiming, Notifier, Shutdown, TokioListener};
use tokio::net::TcpStream;

use support::{named_service, Client};

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Sysmgr,
    HyperUtil,
}

/// hyper-util's documented graceful shutdown: stop accepting, then `GracefulShutdown::shutdown`.
async fn hyper_util_server(listener: TokioListener, shutdown: Shutdown) {
    let graceful = GracefulShutdown::new();
    let builder = http1::Builder::new();
    let wait = shutdown.wait();
    tokio::pin!(wait);
    loop {
        tokio::select! {
            biased;
            _ = &mut wait => break,
            Ok(stream) = listener.accept() => {
                let svc = service_fn(|req| named_service("a", req));
                let conn = builder.serve_connection(TokioIo::new(stream), svc);
                tokio::spawn(graceful.watch(conn));
            }
        }
    }
    drop(listener);
    let _ = tokio::time::timeout(shutdown.timing().budget(), graceful.shutdown()).await;
}

async fn round(mode: Mode) -> (u64, u64) {
    let std_a = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = std_a.local_addr().unwrap();
    let std_b = std_a.try_clone().unwrap();
    let to_tokio = |l: std::net::TcpListener| -> TokioListener {
        l.set_nonblocking(true).unwrap();
        tokio::net::TcpListener::from_std(l).unwrap().into()
    };
    let timing = DrainTiming::new(Duration::from_secs(3));
    let shut_a = Shutdown::manual(Notifier::disabled(), timing);
    let a = match mode {
        Mode::Sysmgr => tokio::spawn({
            let s = shut_a.clone();
            let l = to_tokio(std_a);
            async move {
                http::serve(l, service_fn(|r| named_service("a", r)), s)
                    .await
                    .map(drop)
                    .unwrap()
            }
        }),
        Mode::HyperUtil => tokio::spawn(hyper_util_server(to_tokio(std_a), shut_a.clone())),
    };
    let (ok, failed, stop) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let mut clients = Vec::new();
    for _ in 0..16 {
        let (ok, failed, stop) = (ok.clone(), failed.clone(), stop.clone());
        clients.push(tokio::spawn(async move {
            let mut conn = Client::new(TcpStream::connect(addr).await.unwrap());
            for _ in 0..1_000_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                match conn.get("/").await {
                    Ok(r) if r.status == 200 => {
                        ok.fetch_add(1, Ordering::Relaxed);
                        if r.close {
                            conn = Client::new(TcpStream::connect(addr).await.unwrap());
                        }
                    }
                    _ => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        conn = Client::new(TcpStream::connect(addr).await.unwrap());
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let shut_b = Shutdown::manual(Notifier::disabled(), timing);
    let b = tokio::spawn(http::serve(
        to_tokio(std_b),
        service_fn(|r| named_service("b", r)),
        shut_b.clone(),
    ));
    tokio::time::sleep(Duration::from_millis(200)).await;
    shut_a.trigger();
    a.await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    shut_b.trigger();
    b.await.unwrap().unwrap();
    (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let rounds: u32 = std::env::args()
        .nth(1)
        .map(|v| v.parse().expect("ROUNDS must be a number"))
        .unwrap_or(5)
        .min(100);
    for (mode, name) in [
        (Mode::HyperUtil, "hyper-util GracefulShutdown"),
        (Mode::Sysmgr, "sysmgr-worker http::serve"),
    ] {
        let mut lost = Vec::new();
        let mut total = 0;
        for _ in 0..rounds {
            let (ok, failed) = round(mode).await;
            total += ok + failed;
            lost.push(failed);
        }
        println!("{name}: failed requests per drain {lost:?} ({total} requests in all)");
    }
}
