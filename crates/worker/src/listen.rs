//! Listening sockets: taken from systemd's socket activation, or bound by hand in development.
//!
//! Under sysmgr the worker never binds its port: systemd owns the socket (so it survives restarts
//! and, in shared mode, one accept queue serves every instance) and passes it as fd 3 onwards with
//! `LISTEN_FDS`, `LISTEN_PID` and `LISTEN_FDNAMES` (`sd_listen_fds(3)`). [`Listeners`] takes
//! those fds exactly once, checks each one really is a listening stream socket, and hands them out
//! by name (`http`, the `FileDescriptorName=` sysmgr renders by default) or by position.
//!
//! Run by hand, the same program binds the addresses in `SYSMGR_DEV_LISTEN` or its own default
//! instead ([`Listeners::from_env_or_bind`]), so development needs no systemd.
//!
//! Why not a crate (see docs/architecture.md; `tests/third_party.rs` shows both): `listenfd`
//! removes `LISTEN_FDS` and `LISTEN_PID` as it reads them, which is not thread-safe, and knows
//! no names. `sd-notify`'s `listen_fds_with_names` does the parsing, the PID check and
//! `FD_CLOEXEC` that [`Listeners`] does here, but reads the live environment when called
//! instead of the [`WorkerEnv`] snapshot, returns bare fds with untyped errors, and so could
//! replace only about thirty lines at the price of a second, unsynchronised read of the
//! environment and of the named errors below.
//!
//! Two decisions worth knowing:
//! - The `LISTEN_*` variables are left in the environment: removing them is not thread-safe, and
//!   a child process sees a `LISTEN_PID` that is not its own and ignores them, as
//!   `sd_listen_fds(3)` specifies. The fds themselves get `FD_CLOEXEC`, so children do not
//!   inherit them either.
//! - The std listeners keep the blocking mode systemd gave them. sysmgr's units set
//!   `NonBlocking=yes`, and with a shared socket the flag belongs to the open file that every
//!   instance shares: setting it back to blocking in one worker would hang `accept()` in all of
//!   them. [`Listener::into_tokio`] sets non-blocking, which tokio needs.

use std::io;
use std::net::{SocketAddr as IpSocketAddr, TcpListener};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr as UnixSocketAddr, UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::env::{NotActivated, LISTEN_FDNAMES, LISTEN_FDS, SYSMGR_DEV_LISTEN};
use crate::WorkerEnv;

/// The first fd systemd passes (`SD_LISTEN_FDS_START`).
const LISTEN_FDS_START: RawFd = 3;

/// The name systemd's `sd_listen_fds_with_names(3)` reports when `LISTEN_FDNAMES` is absent.
const UNKNOWN_NAME: &str = "unknown";

/// The name given to a dev-bound address written without `NAME=`: the name sysmgr's units give
/// their socket by default, so the program asks for the same name in both cases.
pub const DEFAULT_NAME: &str = "http";

/// The name of the instance's own health socket, passed when the app has `health_check =
/// "/path"`: `sysmgr reload` asks the new process for that path there, so serve the same HTTP
/// on it as on the app's sockets ([`Listeners::take_health`]).
pub const HEALTH_NAME: &str = "sysmgr-health";

/// Set once the activated fds have been wrapped: a second [`Listeners::from_env`] in the same
/// process would otherwise own (and later close) the same fds twice.
static ACTIVATED_FDS_TAKEN: AtomicBool = AtomicBool::new(false);

/// Why listening sockets could not be had.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// Not socket-activated and no address to bind was given.
    #[error(
        "not socket-activated ({reason}) and no address to bind; run under sysmgr, or set \
         `SYSMGR_DEV_LISTEN` (e.g. `127.0.0.1:3000`) to bind by hand"
    )]
    NotActivated {
        /// Why the `LISTEN_*` variables do not apply.
        reason: String,
    },
    /// [`Listeners::from_env`] was called twice while socket-activated.
    #[error("the activated sockets were already taken by this process; call `Listeners::from_env` once and keep the result")]
    AlreadyTaken,
    /// `LISTEN_FDNAMES` does not hold one name per fd.
    #[error("`{LISTEN_FDNAMES}` has {names} names for {fds} fds in `{LISTEN_FDS}`; this is a bug in whatever started the process")]
    NameCount {
        /// Names found.
        names: usize,
        /// Fds announced.
        fds: u32,
    },
    /// `LISTEN_FDS` names an fd that is not open.
    #[error("fd {fd} announced by `{LISTEN_FDS}` is not open; was it closed before the environment was read?")]
    FdNotOpen {
        /// The fd number.
        fd: RawFd,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// No listener has the requested name.
    #[error("no listening socket named `{name}`; sockets passed: {available}; check `FileDescriptorName=` (the `socket.name` of the app)")]
    NoSuchName {
        /// The requested name.
        name: String,
        /// The names available, for the message.
        available: String,
    },
    /// No listener at the requested position, or it was already taken.
    #[error("no listening socket at index {index} ({count} passed, taken ones excluded)")]
    NoSuchIndex {
        /// The requested position.
        index: usize,
        /// How many were passed.
        count: usize,
    },
    /// The fd is not something this crate can serve on.
    #[error("socket `{name}` (fd {fd}) is not a listening stream socket: {what}; use `take_fd` for other kinds")]
    NotAListener {
        /// The socket's name.
        name: String,
        /// The fd number.
        fd: RawFd,
        /// What it is instead.
        what: String,
    },
    /// Inspecting an fd failed.
    #[error("cannot inspect socket `{name}` (fd {fd})")]
    Inspect {
        /// The socket's name.
        name: String,
        /// The fd number.
        fd: RawFd,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A development address is malformed.
    #[error("`{spec}` is not a listen address; write `HOST:PORT`, `/path/to.sock` or `@abstract`, optionally as `NAME=ADDRESS`, several separated by commas")]
    BadAddress {
        /// The offending piece.
        spec: String,
    },
    /// Binding a development address failed.
    #[error("cannot bind `{addr}` (from {origin})")]
    Bind {
        /// The address.
        addr: String,
        /// Where the address came from, for the message.
        origin: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// How a [`Listeners`] came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Passed by systemd (`LISTEN_FDS`).
    Activated,
    /// Bound by this process from `SYSMGR_DEV_LISTEN`, the program's default, or [`Listeners::bind`].
    Bound,
}

/// The listening sockets of this process, each with its name, taken once at start.
#[derive(Debug)]
pub struct Listeners {
    origin: Origin,
    /// In `LISTEN_FDS` order; `None` once taken.
    slots: Vec<Option<Named>>,
    /// All names in order, kept for error messages after slots are taken.
    names: Vec<String>,
}

#[derive(Debug)]
struct Named {
    name: String,
    fd: OwnedFd,
}

impl Listeners {
    /// Takes the sockets systemd passed to this process.
    ///
    /// When the process is not socket-activated, binds the addresses of `SYSMGR_DEV_LISTEN` if
    /// set, and fails otherwise. Call it once, before any thread starts (see [`WorkerEnv`]).
    pub fn from_env(env: &WorkerEnv) -> Result<Self, ListenError> {
        match env.listen() {
            Ok(vars) => Self::take_activated(vars.count, vars.names.as_deref()),
            Err(why) => match env.dev_listen() {
                Some(spec) => Self::bind_from(spec, SYSMGR_DEV_LISTEN),
                None => Err(ListenError::NotActivated {
                    reason: explain(why),
                }),
            },
        }
    }

    /// Like [`from_env`](Self::from_env), but binds `fallback` when neither socket activation nor
    /// `SYSMGR_DEV_LISTEN` gives an address: the program's development default.
    pub fn from_env_or_bind(env: &WorkerEnv, fallback: &str) -> Result<Self, ListenError> {
        if env.is_socket_activated() || env.dev_listen().is_some() {
            Self::from_env(env)
        } else {
            Self::bind_from(fallback, "the program's default")
        }
    }

    /// Binds `spec` by hand: `HOST:PORT`, `/path/to.sock` or `@abstract`, each optionally
    /// written `NAME=ADDRESS` (the name defaults to [`DEFAULT_NAME`]), several separated by commas.
    ///
    /// This is the development path only; under sysmgr use [`from_env`](Self::from_env), or the
    /// port is bound twice and restarts lose connections.
    pub fn bind(spec: &str) -> Result<Self, ListenError> {
        Self::bind_from(spec, "the command line")
    }

    fn bind_from(spec: &str, origin: &str) -> Result<Self, ListenError> {
        let mut named = Vec::new();
        for piece in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, addr) = match piece.split_once('=') {
                Some((name, addr)) if !name.is_empty() && !addr.is_empty() => (name, addr),
                Some(_) => {
                    return Err(ListenError::BadAddress {
                        spec: piece.to_owned(),
                    })
                }
                None => (DEFAULT_NAME, piece),
            };
            let fd = bind_one(addr).map_err(|source| match source.kind() {
                io::ErrorKind::InvalidInput => ListenError::BadAddress {
                    spec: piece.to_owned(),
                },
                _ => ListenError::Bind {
                    addr: addr.to_owned(),
                    origin: origin.to_owned(),
                    source,
                },
            })?;
            named.push(Named {
                name: name.to_owned(),
                fd,
            });
        }
        if named.is_empty() {
            return Err(ListenError::BadAddress {
                spec: spec.to_owned(),
            });
        }
        Ok(Self::new(Origin::Bound, named))
    }

    fn take_activated(count: u32, names: Option<&str>) -> Result<Self, ListenError> {
        let names: Vec<String> = match names {
            Some(_) if count == 0 => Vec::new(),
            Some(names) => names.split(':').map(str::to_owned).collect(),
            None => vec![UNKNOWN_NAME.to_owned(); count as usize],
        };
        // `LISTEN_FDNAMES=` (empty) with one fd is one empty name, which split gives as well.
        if names.len() != count as usize {
            return Err(ListenError::NameCount {
                names: names.len(),
                fds: count,
            });
        }
        // Check every fd before owning any, so an error leaves nothing half-taken.
        for i in 0..count as RawFd {
            let fd = LISTEN_FDS_START + i;
            // SAFETY: F_GETFD only reads the descriptor flags of `fd`, whatever it is.
            if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
                return Err(ListenError::FdNotOpen {
                    fd,
                    source: io::Error::last_os_error(),
                });
            }
        }
        if ACTIVATED_FDS_TAKEN.swap(true, Ordering::SeqCst) {
            return Err(ListenError::AlreadyTaken);
        }
        let mut named = Vec::with_capacity(count as usize);
        for (i, name) in names.into_iter().enumerate() {
            let raw = LISTEN_FDS_START + i as RawFd;
            // SAFETY: systemd passed `raw` to this process (LISTEN_PID matched), it is open (checked
            // above), and ACTIVATED_FDS_TAKEN guarantees no other OwnedFd wraps it.
            let fd = unsafe { OwnedFd::from_raw_fd(raw) };
            // As sd_listen_fds(3) does: children must not inherit the sockets.
            // SAFETY: plain fcntl on an fd we own.
            unsafe { libc::fcntl(raw, libc::F_SETFD, libc::FD_CLOEXEC) };
            named.push(Named { name, fd });
        }
        Ok(Self::new(Origin::Activated, named))
    }

    fn new(origin: Origin, named: Vec<Named>) -> Self {
        Self {
            origin,
            names: named.iter().map(|n| n.name.clone()).collect(),
            slots: named.into_iter().map(Some).collect(),
        }
    }

    /// Whether the sockets came from systemd or were bound here.
    pub fn origin(&self) -> Origin {
        self.origin
    }

    /// How many sockets were passed or bound, taken ones included.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether there are no sockets at all (`LISTEN_FDS=0`).
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The names in `LISTEN_FDS` order, taken ones included.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(String::as_str)
    }

    /// Takes the first not yet taken listener named `name`.
    ///
    /// Several sockets may share a name (one socket unit with several `ListenStream=` lines);
    /// call again to get the next.
    pub fn take(&mut self, name: &str) -> Result<Listener, ListenError> {
        let index = self.index_of(name)?;
        self.take_index(index)
    }

    /// Takes the instance's own health socket ([`HEALTH_NAME`]), if it was passed: serve the
    /// app's HTTP on it too, as on the listener named `http`. [`take_all`](Self::take_all)
    /// includes it.
    pub fn take_health(&mut self) -> Result<Option<Listener>, ListenError> {
        match self.index_of(HEALTH_NAME) {
            Ok(index) => self.take_index(index).map(Some),
            Err(_) => Ok(None),
        }
    }

    /// The first not yet taken slot named `name`.
    fn index_of(&self, name: &str) -> Result<usize, ListenError> {
        self.slots
            .iter()
            .position(|s| s.as_ref().is_some_and(|n| n.name == name))
            .ok_or_else(|| ListenError::NoSuchName {
                name: name.to_owned(),
                available: self.available(),
            })
    }

    /// Takes the listener at `index` (fd `3 + index` when activated).
    pub fn take_index(&mut self, index: usize) -> Result<Listener, ListenError> {
        let named = self.take_fd_index(index)?;
        Listener::from_fd(named.name, named.fd)
    }

    /// Takes the raw fd named `name`, whatever kind of socket (or file) it is.
    pub fn take_fd(&mut self, name: &str) -> Result<(String, OwnedFd), ListenError> {
        let index = self.index_of(name)?;
        let named = self.take_fd_index(index)?;
        Ok((named.name, named.fd))
    }

    fn take_fd_index(&mut self, index: usize) -> Result<Named, ListenError> {
        let count = self.slots.len();
        self.slots
            .get_mut(index)
            .and_then(Option::take)
            .ok_or(ListenError::NoSuchIndex { index, count })
    }

    /// Takes every remaining listener, in order.
    pub fn take_all(&mut self) -> Result<Vec<Listener>, ListenError> {
        let mut all = Vec::new();
        for index in 0..self.slots.len() {
            if self.slots[index].is_some() {
                all.push(self.take_index(index)?);
            }
        }
        Ok(all)
    }

    fn available(&self) -> String {
        let names: Vec<String> = self
            .slots
            .iter()
            .flatten()
            .map(|n| format!("`{}`", n.name))
            .collect();
        if names.is_empty() {
            "none left".to_owned()
        } else {
            names.join(", ")
        }
    }
}

fn explain(why: &NotActivated) -> String {
    match why {
        NotActivated::Unset => format!("`{LISTEN_FDS}` is not set"),
        NotActivated::NoPid => format!("`{LISTEN_FDS}` is set without `LISTEN_PID`"),
        NotActivated::OtherPid(pid) => {
            format!("`LISTEN_PID` is {pid}, not this process: the variables were inherited")
        }
    }
}

fn bind_one(addr: &str) -> io::Result<OwnedFd> {
    if let Some(name) = addr.strip_prefix('@') {
        let addr = UnixSocketAddr::from_abstract_name(name.as_bytes())?;
        return Ok(UnixListener::bind_addr(&addr)?.into());
    }
    if addr.starts_with('/') || addr.starts_with("./") {
        return bind_unix_path(Path::new(addr));
    }
    if !addr.contains(':') {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "no port"));
    }
    // `TcpListener::bind` resolves names (`localhost:3000`) and sets SO_REUSEADDR, so a restart
    // by hand does not wait for TIME_WAIT.
    Ok(TcpListener::bind(addr)?.into())
}

/// Binds a unix socket path, replacing a stale socket file left by a previous run that nobody
/// listens on any more (connect refused); a live one is an error, as for a TCP port in use.
fn bind_unix_path(path: &Path) -> io::Result<OwnedFd> {
    match UnixListener::bind(path) {
        Ok(l) => Ok(l.into()),
        Err(err) if err.kind() == io::ErrorKind::AddrInUse => {
            use std::os::unix::fs::FileTypeExt;
            let is_socket = std::fs::symlink_metadata(path)?.file_type().is_socket();
            let stale = is_socket
                && matches!(UnixStream::connect(path), Err(e) if e.kind() == io::ErrorKind::ConnectionRefused);
            if !stale {
                return Err(err);
            }
            std::fs::remove_file(path)?;
            Ok(UnixListener::bind(path)?.into())
        }
        Err(err) => Err(err),
    }
}

/// One listening stream socket, TCP (IPv4 or IPv6) or unix.
#[derive(Debug)]
pub enum Listener {
    /// An `AF_INET` or `AF_INET6` listener.
    Tcp {
        /// Its name (`FileDescriptorName=`).
        name: String,
        /// The socket.
        listener: TcpListener,
    },
    /// An `AF_UNIX` listener.
    Unix {
        /// Its name (`FileDescriptorName=`).
        name: String,
        /// The socket.
        listener: UnixListener,
    },
}

impl Listener {
    /// Checks that `fd` is a listening stream socket and wraps it by address family.
    fn from_fd(name: String, fd: OwnedFd) -> Result<Self, ListenError> {
        let raw = fd.as_raw_fd();
        let inspect = |source| ListenError::Inspect {
            name: name.clone(),
            fd: raw,
            source,
        };
        let not = |what: &str| ListenError::NotAListener {
            name: name.clone(),
            fd: raw,
            what: what.to_owned(),
        };
        match getsockopt_int(fd.as_fd(), libc::SO_TYPE) {
            Ok(libc::SOCK_STREAM) => {}
            Ok(libc::SOCK_DGRAM) => return Err(not("a datagram socket")),
            Ok(libc::SOCK_SEQPACKET) => return Err(not("a seqpacket socket")),
            Ok(other) => return Err(not(&format!("socket type {other}"))),
            Err(e) if e.raw_os_error() == Some(libc::ENOTSOCK) => return Err(not("not a socket")),
            Err(e) => return Err(inspect(e)),
        }
        if getsockopt_int(fd.as_fd(), libc::SO_ACCEPTCONN).map_err(inspect)? == 0 {
            return Err(not(
                "a stream socket that is not listening (`Accept=yes` passes connections, not listeners)",
            ));
        }
        match socket_family(fd.as_fd()).map_err(inspect)? {
            libc::AF_INET | libc::AF_INET6 => Ok(Self::Tcp {
                name,
                listener: TcpListener::from(fd),
            }),
            libc::AF_UNIX => Ok(Self::Unix {
                name,
                listener: UnixListener::from(fd),
            }),
            other => Err(not(&format!("address family {other}"))),
        }
    }

    /// Its name: `FileDescriptorName=` when activated, `NAME=` (default `http`) when bound.
    pub fn name(&self) -> &str {
        match self {
            Self::Tcp { name, .. } | Self::Unix { name, .. } => name,
        }
    }

    /// The address, printable for logs: `127.0.0.1:3000`, `[::1]:3000`, `/run/app.sock`,
    /// `@abstract`.
    pub fn local_addr(&self) -> io::Result<String> {
        Ok(match self {
            Self::Tcp { listener, .. } => listener.local_addr()?.to_string(),
            Self::Unix { listener, .. } => unix_addr_string(&listener.local_addr()?),
        })
    }

    /// The TCP address, when this is a TCP listener.
    pub fn tcp_addr(&self) -> Option<IpSocketAddr> {
        match self {
            Self::Tcp { listener, .. } => listener.local_addr().ok(),
            Self::Unix { .. } => None,
        }
    }

    /// Whether `O_NONBLOCK` is set on the socket (shared by every process holding it).
    pub fn is_nonblocking(&self) -> io::Result<bool> {
        // SAFETY: F_GETFL only reads the status flags of an fd we own.
        let flags = unsafe { libc::fcntl(self.as_fd().as_raw_fd(), libc::F_GETFL) };
        if flags < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(flags & libc::O_NONBLOCK != 0)
    }

    /// Converts into a tokio listener, setting `O_NONBLOCK` first as tokio requires (systemd
    /// hands sockets over blocking unless the unit says `NonBlocking=yes`; a blocking socket in
    /// tokio would stall the whole executor in `accept()`).
    ///
    /// Must be called within a tokio runtime.
    #[cfg(feature = "tokio")]
    pub fn into_tokio(self) -> io::Result<crate::TokioListener> {
        Ok(match self {
            Self::Tcp { listener, .. } => {
                listener.set_nonblocking(true)?;
                crate::TokioListener::Tcp(tokio::net::TcpListener::from_std(listener)?)
            }
            Self::Unix { listener, .. } => {
                listener.set_nonblocking(true)?;
                crate::TokioListener::Unix(tokio::net::UnixListener::from_std(listener)?)
            }
        })
    }
}

impl AsFd for Listener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Self::Tcp { listener, .. } => listener.as_fd(),
            Self::Unix { listener, .. } => listener.as_fd(),
        }
    }
}

pub(crate) fn unix_addr_string(addr: &UnixSocketAddr) -> String {
    if let Some(path) = addr.as_pathname() {
        path.display().to_string()
    } else if let Some(name) = addr.as_abstract_name() {
        format!("@{}", String::from_utf8_lossy(name))
    } else {
        "(unnamed)".to_owned()
    }
}

fn getsockopt_int(fd: BorrowedFd<'_>, opt: libc::c_int) -> io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: value and len describe a valid c_int buffer for the duration of the call.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            opt,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(value)
}

fn socket_family(fd: BorrowedFd<'_>) -> io::Result<libc::c_int> {
    // SAFETY: sockaddr_storage is plain data; zeroed is a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: storage and len describe a buffer large enough for any address.
    let rc = unsafe {
        libc::getsockname(
            fd.as_raw_fd(),
            (&mut storage as *mut libc::sockaddr_storage).cast(),
            &mut len,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(libc::c_int::from(storage.ss_family))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_addresses_are_bound_with_names() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("admin.sock");
        let spec = format!("127.0.0.1:0, admin={}", sock.display());
        let mut l = Listeners::bind(&spec).unwrap();
        assert_eq!(l.origin(), Origin::Bound);
        assert_eq!(l.names().collect::<Vec<_>>(), ["http", "admin"]);
        let admin = l.take("admin").unwrap();
        assert!(matches!(admin, Listener::Unix { .. }));
        assert_eq!(admin.local_addr().unwrap(), sock.display().to_string());
        let http = l.take("http").unwrap();
        assert!(http.tcp_addr().unwrap().ip().is_loopback());
        let err = l.take("http").unwrap_err();
        assert_eq!(
            err.to_string(),
            "no listening socket named `http`; sockets passed: none left; check \
             `FileDescriptorName=` (the `socket.name` of the app)"
        );
    }

    #[test]
    fn the_health_socket_is_taken_when_passed_and_none_otherwise() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("health-1.sock");
        let spec = format!("127.0.0.1:0, {HEALTH_NAME}={}", sock.display());
        let mut l = Listeners::bind(&spec).unwrap();
        let health = l.take_health().unwrap().expect("passed");
        assert_eq!(health.name(), "sysmgr-health");
        assert_eq!(health.local_addr().unwrap(), sock.display().to_string());
        assert!(l.take_health().unwrap().is_none(), "taken once");
        assert_eq!(l.take("http").unwrap().name(), "http");
        let mut l = Listeners::bind("127.0.0.1:0").unwrap();
        assert!(l.take_health().unwrap().is_none());
    }

    #[test]
    fn a_stale_unix_socket_file_is_replaced_but_a_live_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("app.sock");
        let live = UnixListener::bind(&sock).unwrap();
        let err = Listeners::bind(sock.to_str().unwrap()).unwrap_err();
        assert!(matches!(err, ListenError::Bind { .. }), "{err}");
        drop(live); // the file stays behind, nobody listens
        let mut l = Listeners::bind(sock.to_str().unwrap()).unwrap();
        assert!(matches!(l.take_index(0).unwrap(), Listener::Unix { .. }));
    }

    #[test]
    fn malformed_dev_addresses_say_how_to_write_them() {
        for spec in ["3000", "=127.0.0.1:1", "", " , "] {
            let err = Listeners::bind(spec).unwrap_err();
            assert!(
                matches!(err, ListenError::BadAddress { .. }),
                "{spec}: {err}"
            );
        }
        assert_eq!(
            Listeners::bind("3000").unwrap_err().to_string(),
            "`3000` is not a listen address; write `HOST:PORT`, `/path/to.sock` or `@abstract`, \
             optionally as `NAME=ADDRESS`, several separated by commas"
        );
    }

    #[test]
    fn without_activation_or_dev_address_the_error_says_what_to_do() {
        let env = WorkerEnv::from_vars(7, [("LISTEN_FDS", "1"), ("LISTEN_PID", "8")]).unwrap();
        let err = Listeners::from_env(&env).unwrap_err();
        assert_eq!(
            err.to_string(),
            "not socket-activated (`LISTEN_PID` is 8, not this process: the variables were \
             inherited) and no address to bind; run under sysmgr, or set `SYSMGR_DEV_LISTEN` \
             (e.g. `127.0.0.1:3000`) to bind by hand"
        );
        let mut l = Listeners::from_env_or_bind(&env, "127.0.0.1:0").unwrap();
        assert_eq!(l.origin(), Origin::Bound);
        l.take("http").unwrap();
        let env = WorkerEnv::from_vars(7, [("SYSMGR_DEV_LISTEN", "web=[::1]:0")]).unwrap();
        // The variable wins over the program's default.
        match Listeners::from_env_or_bind(&env, "127.0.0.1:0") {
            Ok(mut l) => assert!(l.take("web").unwrap().tcp_addr().unwrap().is_ipv6()),
            // A machine without IPv6 on loopback cannot bind ::1; the choice was still right.
            Err(ListenError::Bind { addr, .. }) => assert_eq!(addr, "[::1]:0"),
            Err(other) => panic!("{other}"),
        }
    }

    #[test]
    fn datagram_and_unlistened_sockets_are_not_listeners() {
        let dir = tempfile::tempdir().unwrap();
        let dgram = std::os::unix::net::UnixDatagram::bind(dir.path().join("d")).unwrap();
        let err = Listener::from_fd("x".into(), dgram.into()).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "socket `x` (fd {}) is not a listening stream socket: a datagram socket; use \
                 `take_fd` for other kinds",
                match &err {
                    ListenError::NotAListener { fd, .. } => *fd,
                    _ => unreachable!(),
                }
            )
        );
        let (a, _b) = UnixStream::pair().unwrap();
        let err = Listener::from_fd("y".into(), a.into()).unwrap_err();
        assert!(err.to_string().contains("not listening"), "{err}");
        let file = std::fs::File::open("/dev/null").unwrap();
        let err = Listener::from_fd("z".into(), file.into()).unwrap_err();
        assert!(err.to_string().contains("not a socket"), "{err}");
    }
}
