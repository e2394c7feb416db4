//! A graceful HTTP/1.1 server on hyper whose drain loses no request, keep-alive included.
//!
//! # Why not hyper-util's graceful shutdown
//!
//! hyper's `Connection::graceful_shutdown` (which hyper-util's `GracefulShutdown` calls on every
//! connection) closes a keep-alive connection *at once* when it sits between two requests. Under
//! keep-alive load a connection is "between two requests" most of the time, and the client's next
//! request is often already on the wire: it meets a closed socket and fails. Measured on a 2-core
//! machine, that loses 20 to 84 requests per rolling restart; Node's `server.close()` does the
//! same. On a request already in flight, hyper disables keep-alive but does not write
//! `Connection: close`, so the client learns that the connection is gone only when it tries to
//! reuse it.
//!
//! # What [`serve`] does instead
//!
//! On the kill signal (see [`Shutdown`]) it:
//! 1. stops accepting and drops its listener fd. With a shared socket the other instances keep
//!    accepting from the same queue; connections this worker had already accepted are its own to
//!    finish, so none is left accepted-but-unserved;
//! 2. answers every request whose response is produced from then on with `Connection: close`, so
//!    the client opens its next request on a new connection (to another instance) and hyper
//!    closes this one after the response;
//! 3. keeps a connection that carries no request open until it has been quiet for the idle grace
//!    of [`DrainTiming`](crate::DrainTiming) (500 ms at most): no byte read, no request running,
//!    nothing waiting in the kernel's receive queue. A request arriving in that time is answered
//!    as in 2. Quiet connections are then closed; a client that sends on a connection quiet
//!    for that long must be prepared for the server closing it, as HTTP/1.1 requires of every
//!    keep-alive client;
//! 4. at the deadline (kill timeout less a margin), or on a second signal, drops whatever is still
//!    open and returns, so the process exits before SIGKILL.
//!
//! # Example
//!
//! ```no_run
//! use std::convert::Infallible;
//!
//! use http_body_util::Full;
//! use hyper::body::{Bytes, Incoming};
//! use hyper::{Request, Response};
//! use sysmgr_worker::{http, Listeners, Shutdown, WorkerEnv};
//!
//! async fn hello(_req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
//!     Ok(Response::new(Full::new(Bytes::from_static(b"hello\n"))))
//! }
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     // Read the environment before any thread exists (see `WorkerEnv`).
//!     let env = WorkerEnv::from_process()?;
//!     let mut listeners = Listeners::from_env_or_bind(&env, "127.0.0.1:3000")?;
//!     let listener = listeners.take("http")?;
//!     let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
//!     runtime.block_on(async {
//!         let shutdown = Shutdown::from_env(&env)?; // signal handlers first,
//!         let listener = listener.into_tokio()?;
//!         shutdown.notifier().ready()?; // then READY=1: we can serve now.
//!         let report = http::serve(listener, hyper::service::service_fn(hello), shutdown).await?;
//!         eprintln!("{report}");
//!         Ok(())
//!     })
//! }
//! ```

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use hyper::body::{Body, Incoming};
use hyper::header::{HeaderValue, CONNECTION};
use hyper::server::conn::http1;
use hyper::service::Service;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::{Drain, Shutdown, TokioListener, TokioStream};

/// Serving failed for a reason other than the kill signal.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// `accept()` failed in a way retrying cannot fix (the socket was closed or broken); the
    /// connections already accepted were drained first.
    #[error("cannot accept connections on `{addr}`; the worker drained and stops, let systemd restart it")]
    Accept {
        /// The listener's address.
        addr: String,
        /// How the drain went.
        report: Box<DrainReport>,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// How a drain went; printed by its `Display` as one log line.
#[derive(Debug, Clone)]
pub struct DrainReport {
    /// The drain: cause, start, deadline.
    pub drain: Drain,
    /// Connections open when the drain began.
    pub open_at_start: usize,
    /// Responses sent with `Connection: close` during the drain.
    pub closing_responses: u64,
    /// Connections closed after staying quiet for the idle grace.
    pub closed_idle: usize,
    /// Connections still open at the deadline, closed without a response.
    pub aborted: usize,
    /// When the last connection was gone (or abandoned).
    pub finished: Instant,
}

impl DrainReport {
    /// From the signal to the last connection closed.
    pub fn elapsed(&self) -> Duration {
        self.finished.saturating_duration_since(self.drain.started)
    }
}

impl fmt::Display for DrainReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "drained {} connections after {} in {} ms: {} responses with `Connection: close`, \
             {} idle connections closed, {} aborted at the deadline",
            self.open_at_start,
            self.drain.cause,
            self.elapsed().as_millis(),
            self.closing_responses,
            self.closed_idle,
            self.aborted
        )
    }
}

/// Serves HTTP/1.1 on `listener` until `shutdown` fires, then drains as the
/// [module docs](self) describe and returns how it went.
///
/// Dropping the returned future instead closes every connection at once.
pub async fn serve<L, S, B>(
    listener: L,
    service: S,
    shutdown: Shutdown,
) -> Result<DrainReport, ServeError>
where
    L: Into<TokioListener>,
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    Server::new().serve(listener, service, shutdown).await
}

/// [`serve`] with hyper's HTTP/1 settings open to tuning.
#[derive(Debug, Clone)]
pub struct Server {
    http1: http1::Builder,
}

impl Default for Server {
    fn default() -> Self {
        Self::new()
    }
}

impl Server {
    /// hyper's defaults, with tokio's timer so that `header_read_timeout` (30 s) applies.
    pub fn new() -> Self {
        let mut http1 = http1::Builder::new();
        http1.timer(TokioTimer::new());
        Self { http1 }
    }

    /// hyper's connection settings. Leave `keep_alive` on: the drain manages it.
    pub fn http1(&mut self) -> &mut http1::Builder {
        &mut self.http1
    }

    /// See [`serve`].
    pub async fn serve<L, S, B>(
        &self,
        listener: L,
        service: S,
        shutdown: Shutdown,
    ) -> Result<DrainReport, ServeError>
    where
        L: Into<TokioListener>,
        S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<Box<dyn StdError + Send + Sync>>,
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn StdError + Send + Sync>>,
    {
        let listener = listener.into();
        let shared = Arc::new(Shared {
            draining: AtomicBool::new(false),
            idle_grace: shutdown.timing().idle_grace(),
            open: AtomicUsize::new(0),
            closing_responses: AtomicU64::new(0),
            closed_idle: AtomicUsize::new(0),
            aborted: AtomicUsize::new(0),
        });
        let (phase_tx, phase_rx) = watch::channel(Phase::Serving);
        // Every connection task holds a sender; `recv` returns `None` once all are gone.
        let (alive_tx, mut alive_rx) = mpsc::channel::<()>(1);
        let http1 = Arc::new(self.http1.clone());
        let mut accept_error = None;

        let wait = shutdown.wait();
        tokio::pin!(wait);
        let drain = loop {
            tokio::select! {
                // The signal wins over a ready connection: after it, accepting is the other
                // instances' job.
                biased;
                drain = &mut wait => break drain,
                accepted = listener.accept() => match accepted {
                    Ok(stream) => {
                        shared.open.fetch_add(1, Ordering::Relaxed);
                        tokio::spawn(connection(
                            stream,
                            service.clone(),
                            http1.clone(),
                            shared.clone(),
                            phase_rx.clone(),
                            alive_tx.clone(),
                        ));
                    }
                    Err(err) => match AcceptFailure::of(&err) {
                        AcceptFailure::Transient => {}
                        AcceptFailure::Resources => {
                            // Out of fds or memory: the connections we serve will free some.
                            eprintln!("sysmgr-worker: accept failed, retrying in 100 ms: {err}");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                        AcceptFailure::Fatal => {
                            accept_error = Some(err);
                            shutdown.trigger();
                        }
                    },
                },
            }
        };

        let addr = listener.local_addr().unwrap_or_else(|_| "?".to_owned());
        drop(listener);
        shared.draining.store(true, Ordering::SeqCst);
        let open_at_start = shared.open.load(Ordering::Relaxed);
        if let Err(err) = shutdown.notifier().status(&format!(
            "draining {open_at_start} connections after {}",
            drain.cause
        )) {
            eprintln!("sysmgr-worker: {err}");
        }
        phase_tx.send_replace(Phase::Draining);
        drop(alive_tx);

        let all_closed = tokio::select! {
            _ = alive_rx.recv() => true,
            _ = tokio::time::sleep_until(drain.deadline) => false,
            _ = shutdown.hurried() => false,
        };
        if !all_closed {
            phase_tx.send_replace(Phase::Abort);
            // Each task drops its connection as soon as it sees Abort; wait for that, but never
            // past half the margin, which is what stands between us and SIGKILL.
            let _ = tokio::time::timeout(shutdown.timing().margin() / 2, alive_rx.recv()).await;
        }
        let report = DrainReport {
            drain: shutdown.drain().unwrap_or(drain),
            open_at_start,
            closing_responses: shared.closing_responses.load(Ordering::Relaxed),
            closed_idle: shared.closed_idle.load(Ordering::Relaxed),
            aborted: shared.aborted.load(Ordering::Relaxed),
            finished: Instant::now(),
        };
        match accept_error {
            None => Ok(report),
            Some(source) => Err(ServeError::Accept {
                addr,
                report: Box::new(report),
                source,
            }),
        }
    }
}

enum AcceptFailure {
    /// The connection died in the queue, or a spurious wakeup: just accept the next.
    Transient,
    /// Out of fds or memory: wait and retry.
    Resources,
    /// The listening socket itself is broken.
    Fatal,
}

impl AcceptFailure {
    fn of(err: &io::Error) -> Self {
        match err.kind() {
            io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock => Self::Transient,
            _ => match err.raw_os_error() {
                Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM) => Self::Resources,
                // Linux passes on network errors of the pending connection through accept(2).
                Some(
                    libc::EPROTO
                    | libc::ENOPROTOOPT
                    | libc::EHOSTDOWN
                    | libc::ENONET
                    | libc::EHOSTUNREACH
                    | libc::EOPNOTSUPP
                    | libc::ENETUNREACH
                    | libc::EPERM,
                ) => Self::Transient,
                _ => Self::Fatal,
            },
        }
    }
}

/// What the server tells its connection tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Serving,
    Draining,
    Abort,
}

/// State shared by the server and all its connections.
#[derive(Debug)]
struct Shared {
    /// Set when the drain begins; every response produced afterwards gets `Connection: close`.
    draining: AtomicBool,
    idle_grace: Duration,
    open: AtomicUsize,
    closing_responses: AtomicU64,
    closed_idle: AtomicUsize,
    aborted: AtomicUsize,
}

/// What one connection did, as seen from outside hyper. Hyper does not say whether a request
/// is half-read, so the drain watches the bytes instead: every read, request start and request
/// end counts as an event, and a connection is quiet while the count does not move.
#[derive(Debug, Default)]
struct Activity {
    events: AtomicU64,
    in_flight: AtomicUsize,
}

impl Activity {
    fn event(&self) {
        self.events.fetch_add(1, Ordering::Relaxed);
    }
}

/// Counts down one connection on drop, whatever way its task ends.
struct OpenGuard {
    shared: Arc<Shared>,
    _alive: mpsc::Sender<()>,
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.shared.open.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn connection<S, B>(
    stream: TokioStream,
    service: S,
    http1: Arc<http1::Builder>,
    shared: Arc<Shared>,
    mut phase: watch::Receiver<Phase>,
    alive: mpsc::Sender<()>,
) where
    S: Service<Request<Incoming>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let _guard = OpenGuard {
        shared: shared.clone(),
        _alive: alive,
    };
    let fd = stream.as_raw_fd();
    let activity = Arc::new(Activity::default());
    let io = TokioIo::new(Tracked {
        stream,
        activity: activity.clone(),
    });
    let service = DrainAware {
        inner: service,
        activity: activity.clone(),
        shared: shared.clone(),
    };
    // Errors of single connections (client went away, header timeout) are the client's
    // business and not logged: under load they would flood the journal.
    let conn = http1.serve_connection(io, service);
    tokio::pin!(conn);

    // Serving, until the drain begins.
    loop {
        match *phase.borrow_and_update() {
            Phase::Serving => {}
            Phase::Draining => break,
            Phase::Abort => return abort(&shared),
        }
        tokio::select! {
            _ = conn.as_mut() => return,
            changed = phase.changed() => if changed.is_err() { return },
        }
    }

    // Draining: responses now carry `Connection: close` (see DrainAware), so a connection that
    // gets a request closes itself after answering. Close the others once they stay quiet.
    let grace = shared.idle_grace;
    let tick = (grace / 4).max(Duration::from_millis(5));
    let mut seen = activity.events.load(Ordering::Relaxed);
    let mut quiet_since = Instant::now();
    loop {
        tokio::select! {
            _ = conn.as_mut() => return,
            changed = phase.changed() => {
                if changed.is_err() || *phase.borrow() == Phase::Abort {
                    return abort(&shared);
                }
            }
            _ = tokio::time::sleep(tick) => {}
        }
        let now = Instant::now();
        let events = activity.events.load(Ordering::Relaxed);
        let busy = events != seen
            || activity.in_flight.load(Ordering::Relaxed) > 0
            || unread_bytes(fd) > 0;
        if busy {
            seen = events;
            quiet_since = now;
        } else if now.duration_since(quiet_since) >= grace {
            break;
        }
    }
    // Quiet for the whole grace and nothing in the receive queue: hyper closes an idle
    // connection at once, and one it considers busy (a fresh connection, say) after its
    // response.
    shared.closed_idle.fetch_add(1, Ordering::Relaxed);
    conn.as_mut().graceful_shutdown();
    loop {
        tokio::select! {
            _ = conn.as_mut() => return,
            changed = phase.changed() => {
                if changed.is_err() || *phase.borrow() == Phase::Abort {
                    return abort(&shared);
                }
            }
        }
    }
}

fn abort(shared: &Shared) {
    shared.aborted.fetch_add(1, Ordering::Relaxed);
}

/// Bytes the kernel has received on `fd` that nobody read yet: a request that is arriving.
fn unread_bytes(fd: RawFd) -> usize {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one c_int; `fd` is owned by the connection that is alive in the
    // calling task.
    if unsafe { libc::ioctl(fd, libc::FIONREAD, &mut n) } < 0 {
        return 0;
    }
    usize::try_from(n).unwrap_or(0)
}

/// The stream, counting reads that return data.
struct Tracked {
    stream: TokioStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Tracked {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.stream).poll_read(cx, buf))?;
        if buf.filled().len() > before {
            this.activity.event();
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// The application's service, with request tracking and `Connection: close` once draining.
struct DrainAware<S> {
    inner: S,
    activity: Arc<Activity>,
    shared: Arc<Shared>,
}

impl<S, B> Service<Request<Incoming>> for DrainAware<S>
where
    S: Service<Request<Incoming>, Response = Response<B>>,
{
    type Response = Response<B>;
    type Error = S::Error;
    type Future = DrainAwareFuture<S::Future>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        self.activity.in_flight.fetch_add(1, Ordering::Relaxed);
        self.activity.event();
        DrainAwareFuture {
            inner: self.inner.call(req),
            guard: InFlight(self.activity.clone()),
            shared: self.shared.clone(),
        }
    }
}

/// Marks the end of a request however its future ends (completed, failed or dropped).
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.event();
    }
}

pin_project_lite::pin_project! {
    /// The application's response future; adds `Connection: close` when draining.
    struct DrainAwareFuture<F> {
        #[pin]
        inner: F,
        guard: InFlight,
        shared: Arc<Shared>,
    }
}

impl<F, B, E> Future for DrainAwareFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut result = ready!(this.inner.poll(cx));
        if let Ok(response) = &mut result {
            // hyper only closes after a response when keep-alive is off, and never says so on
            // the wire; the header is what stops the client from reusing the connection. A
            // protocol switch keeps its own `Connection: upgrade`.
            if this.shared.draining.load(Ordering::Acquire)
                && response.status() != StatusCode::SWITCHING_PROTOCOLS
            {
                response
                    .headers_mut()
                    .insert(CONNECTION, HeaderValue::from_static("close"));
                this.shared
                    .closing_responses
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
        Poll::Ready(result)
    }
}
