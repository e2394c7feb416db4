//! The runtime and the request handler of sysmgr-hello.
//!
//! The handler is on the benchmarks' hot path, so the answers that never change (`/`, `/health`,
//! 404) are built once at start and leaked into `'static` bytes: cloning them per request costs
//! nothing, not even a reference count. Only `/slow` formats a body per request.

use std::convert::Infallible;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use sysmgr_worker::{http, Listeners, Shutdown, WorkerEnv};

use crate::{Args, HelloError};

/// `/slow` waits at most this long, whatever `ms` says.
const MAX_SLOW_MS: u64 = 60_000;

/// `/grow` allocates at most this many MiB per request.
const MAX_GROW_MB: u64 = 512;

/// Who this process is, in every answer.
#[derive(Clone, Copy)]
struct Identity {
    instance: &'static str,
    pid: u32,
    /// `instance {i} pid {p}\n`, the body of `/`.
    root: &'static [u8],
    /// The status of `/health` (`--health-status`).
    health: StatusCode,
}

pub fn run(env: WorkerEnv, mut listeners: Listeners, args: &Args) -> Result<(), HelloError> {
    let instance: &'static str = env.instance().unwrap_or("-").to_owned().leak();
    let pid = std::process::id();
    let id = Identity {
        instance,
        pid,
        root: format!("instance {instance} pid {pid}\n").leak().as_bytes(),
        health: StatusCode::from_u16(args.health_status).unwrap_or(StatusCode::OK),
    };
    let activated = env.is_socket_activated();
    let listeners = listeners.take_all()?;

    // Sized by `--threads` (see DEFAULT_THREADS for the measurement behind the default).
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads)
        .enable_all()
        .build()
        .map_err(HelloError::Runtime)?;
    runtime.block_on(async move {
        // Handlers before READY=1, so no signal can fall between readiness and the drain.
        let shutdown = Shutdown::from_env(&env)?;
        let notifier = shutdown.notifier().clone();
        let mut serving = Vec::new();
        let mut addrs = Vec::new();
        for listener in listeners {
            addrs.push(format!(
                "{} {}",
                listener.name(),
                listener.local_addr().map_err(HelloError::Runtime)?
            ));
            serving.push(listener.into_tokio().map_err(HelloError::Runtime)?);
        }
        if !args.ready_delay.is_zero() {
            // A warming-up app: connections wait in the socket's queue meanwhile, and a stop
            // request during warm-up ends it without ever serving.
            tokio::select! {
                _ = tokio::time::sleep(args.ready_delay) => {}
                drain = shutdown.wait() => {
                    eprintln!("sysmgr-hello: instance {instance} pid {pid} stopped by {} before ready", drain.cause);
                    return Ok(());
                }
            }
        }
        let tasks: Vec<_> = serving
            .into_iter()
            .map(|listener| {
                let service = service_fn(move |req| handle(id, req));
                tokio::spawn(http::serve(listener, service, shutdown.clone()))
            })
            .collect();
        notifier.ready()?;
        let origin = if activated { "socket-activated" } else { "bound by hand" };
        let addrs = addrs.join(", ");
        notifier.status(&format!("serving on {addrs}"))?;
        eprintln!(
            "sysmgr-hello: instance {instance} pid {pid} ready on {addrs} ({origin}), {} worker thread(s), kill timeout {} ms",
            args.threads,
            shutdown.timing().kill_timeout().as_millis()
        );
        tokio::spawn(notifier.clone().keep_watchdog_alive());
        let mut first_error = None;
        for task in tasks {
            match task.await {
                Ok(Ok(report)) => eprintln!("sysmgr-hello: instance {instance} pid {pid} {report}"),
                Ok(Err(err)) => {
                    first_error.get_or_insert(HelloError::Serve(err));
                }
                Err(join) => std::panic::resume_unwind(join.into_panic()),
            }
        }
        first_error.map_or(Ok(()), Err)
    })
}

fn text(status: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

async fn handle(id: Identity, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(match req.uri().path() {
        "/" => text(StatusCode::OK, Bytes::from_static(id.root)),
        "/health" if id.health == StatusCode::OK => {
            text(StatusCode::OK, Bytes::from_static(b"ok\n"))
        }
        "/health" => text(
            id.health,
            Bytes::from_static(b"unhealthy (--health-status)\n"),
        ),
        "/slow" => match slow_ms(req.uri().query()) {
            Some(ms) => {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                let body = format!("slow {ms}ms instance {} pid {}\n", id.instance, id.pid);
                text(StatusCode::OK, Bytes::from(body))
            }
            None => text(
                StatusCode::BAD_REQUEST,
                Bytes::from_static(b"`/slow` needs `ms=N`, N a number of milliseconds\n"),
            ),
        },
        // Memory that stays with the process until it exits (tests of `max_memory_restart`).
        "/grow" => match query_number(req.uri().query(), "mb") {
            Some(mb) => {
                let mb = mb.min(MAX_GROW_MB);
                // Filled with ones, so every page is resident, not just reserved.
                let kept: &'static [u8] = vec![1u8; (mb as usize) << 20].leak();
                std::hint::black_box(kept);
                let body = format!("grew {mb} MiB instance {} pid {}\n", id.instance, id.pid);
                text(StatusCode::OK, Bytes::from(body))
            }
            None => text(
                StatusCode::BAD_REQUEST,
                Bytes::from_static(b"`/grow` needs `mb=N`, N a number of MiB\n"),
            ),
        },
        _ => text(StatusCode::NOT_FOUND, Bytes::from_static(b"not found\n")),
    })
}

/// `NAME=N` from the query.
fn query_number(query: Option<&str>, name: &str) -> Option<u64> {
    query?
        .split('&')
        .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
        .and_then(|v| v.parse::<u64>().ok())
}

/// `ms=N` from the query, capped at [`MAX_SLOW_MS`].
fn slow_ms(query: Option<&str>) -> Option<u64> {
    query?
        .split('&')
        .find_map(|pair| pair.strip_prefix("ms="))
        .and_then(|v| v.parse::<u64>().ok())
        .map(|ms| ms.min(MAX_SLOW_MS))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slow_takes_ms_from_the_query_and_caps_it() {
        assert_eq!(slow_ms(Some("ms=250")), Some(250));
        assert_eq!(slow_ms(Some("x=1&ms=7")), Some(7));
        assert_eq!(slow_ms(Some("ms=999999")), Some(MAX_SLOW_MS));
        assert_eq!(slow_ms(Some("ms=-1")), None);
        assert_eq!(slow_ms(None), None);
    }
}
