//! The worker side of sysmgr: what a process needs to run well under it.
//!
//! A process that sysmgr runs has three duties, and this crate has one piece for each:
//!
//! 1. **Take its listening sockets from systemd**, never bind the port itself: [`Listeners`]
//!    takes `LISTEN_FDS`/`LISTEN_FDNAMES` by name (`http`) or by index, for std or (feature
//!    `tokio`) for tokio. Run by hand, it binds `SYSMGR_DEV_LISTEN` or the program's default.
//! 2. **Send `READY=1` only when it can serve** (PM2's `wait_ready`): [`Notifier`] sends
//!    `READY=1`, `STOPPING=1`, `STATUS=`, `EXTEND_TIMEOUT_USEC=` and `WATCHDOG=1` to
//!    `NOTIFY_SOCKET`; outside systemd every call is a no-op.
//! 3. **Drain on the kill signal** and exit before `kill_timeout`: [`DrainTiming`] knows the
//!    deadline from `SYSMGR_KILL_TIMEOUT_MS`; [`Shutdown`] (feature `tokio`) waits for SIGINT or
//!    SIGTERM; [`http::serve`] (feature `http`) is a hyper server whose drain loses no request,
//!    keep-alive connections included. Its module docs explain the drain and hold a complete
//!    example.
//!
//! Everything starts from one [`WorkerEnv`], read at the top of `main` before any thread or async
//! runtime exists: reading the environment while another thread may write it is undefined
//! behaviour in glibc, and this crate never writes it.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use sysmgr_worker::{Listener, Listeners, Notifier, WorkerEnv};
//!
//! let env = WorkerEnv::from_process()?;
//! let mut listeners = Listeners::from_env_or_bind(&env, "127.0.0.1:3000")?;
//! let Listener::Tcp { listener, .. } = listeners.take("http")? else {
//!     return Err("this example serves TCP only".into());
//! };
//! Notifier::from_env(&env)?.ready()?;
//! for stream in listener.incoming() {
//!     // ... a blocking server; see `http::serve` for one that drains properly.
//! #   drop(stream);
//! }
//! # Ok(())
//! # }
//! ```
//!
//! The crate is light on purpose: applications link it. Without features it depends on `libc`
//! and `thiserror` only; `tokio` adds tokio, `http` adds hyper.

mod env;
mod listen;
mod notify;
mod shutdown;

#[cfg(feature = "http")]
pub mod http;
#[cfg(feature = "tokio")]
mod tokio_net;

pub use env::{EnvError, WorkerEnv};
pub use listen::{ListenError, Listener, Listeners, Origin, DEFAULT_NAME, HEALTH_NAME};
pub use notify::{Notifier, NotifyError};
pub use shutdown::DrainTiming;
#[cfg(feature = "tokio")]
pub use shutdown::{Cause, Drain, Shutdown, ShutdownError};
#[cfg(feature = "tokio")]
pub use tokio_net::{TokioListener, TokioStream};
