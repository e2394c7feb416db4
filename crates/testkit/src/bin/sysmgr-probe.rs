//! `sysmgr-probe`: a stand-in app command for integration tests.
//!
//! Started by systemd from a unit sysmgr generated, it records what it received (argv,
//! environment, PID, passed sockets; see [`sysmgr_testkit::ProbeReport`]) into the file named by
//! `SYSMGR_PROBE_DIR/<SYSMGR_INSTANCE>.json`, else `SYSMGR_PROBE_OUT` (else stdout), reports `READY=1` to
//! `NOTIFY_SOCKET` when there is one, then waits for SIGINT or SIGTERM and exits 0. It never
//! accepts connections: a test that needs answers uses the real worker.
//!
//! Order matters: the report is complete on disk before READY=1, so once `systemctl start`
//! returns for a `Type=notify` unit a test can read it without polling.

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use sysmgr_testkit::ProbeReport;

/// What can go wrong before the probe reaches its waiting state.
#[derive(Debug, thiserror::Error)]
enum ProbeError {
    #[error("cannot write report to `{path}`")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot send READY=1 to notify socket `{socket}`")]
    Notify {
        socket: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot wait for SIGINT/SIGTERM")]
    Signals(#[source] std::io::Error),
}

fn main() -> ExitCode {
    match run() {
        Ok(signal) => {
            eprintln!("sysmgr-probe: received signal {signal}, exiting");
            ExitCode::SUCCESS
        }
        Err(err) => {
            let mut message = format!("sysmgr-probe: {err}");
            let mut source = std::error::Error::source(&err);
            while let Some(cause) = source {
                message.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            eprintln!("{message}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<i32, ProbeError> {
    // Block the stop signals first: one that arrives while the report is being written must end
    // the probe cleanly through sigwait, not kill it with the default action.
    let signals = StopSignals::block()?;
    let report = ProbeReport::capture().to_json().to_string();
    // Every instance of a template shares one environment, so a directory names the report
    // by instance: SYSMGR_PROBE_DIR/<SYSMGR_INSTANCE>.json.
    let dir_out = std::env::var_os("SYSMGR_PROBE_DIR").map(|dir| {
        let instance = std::env::var("SYSMGR_INSTANCE").unwrap_or_else(|_| "unknown".into());
        PathBuf::from(dir).join(format!("{instance}.json"))
    });
    match dir_out.or_else(|| std::env::var_os("SYSMGR_PROBE_OUT").map(PathBuf::from)) {
        Some(path) => write_atomically(&path, report.as_bytes())?,
        None => println!("{report}"),
    }
    if let Some(socket) = std::env::var_os("NOTIFY_SOCKET") {
        notify_ready(&socket)?;
    }
    signals.wait()
}

/// Writes through a temporary file in the same directory and renames it into place, so a reader
/// polling for the report sees either nothing or all of it.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), ProbeError> {
    let err = |source| ProbeError::Write {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(format!(".tmp.{}", std::process::id()));
    let tmp = PathBuf::from(tmp_name);
    let written = std::fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(bytes))
        .and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written.map_err(err)
}

/// `sd_notify(0, "READY=1")` without libsystemd: one datagram to `NOTIFY_SOCKET`, which is a
/// path or, when it starts with `@`, a name in the abstract namespace.
fn notify_ready(socket: &OsString) -> Result<(), ProbeError> {
    let err = |source| ProbeError::Notify {
        socket: socket.to_string_lossy().into_owned(),
        source,
    };
    let bytes = socket.as_bytes();
    let addr = match bytes.strip_prefix(b"@") {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(name)
        }
        None => SocketAddr::from_pathname(Path::new(socket)),
    }
    .map_err(err)?;
    let sock = UnixDatagram::unbound().map_err(err)?;
    sock.send_to_addr(b"READY=1", &addr).map_err(err)?;
    Ok(())
}

/// SIGINT and SIGTERM, blocked so they can be taken synchronously with `sigwait(3)`.
///
/// sysmgr's units stop workers with SIGINT (PM2's default) unless told otherwise, and systemd's
/// default is SIGTERM; the probe treats both as "exit 0", like a well-behaved worker.
struct StopSignals(libc::sigset_t);

impl StopSignals {
    fn block() -> Result<Self, ProbeError> {
        // SAFETY: sigset_t is plain data; sigemptyset initialises it before any other use.
        let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: `set` is a valid sigset_t and the probe is single-threaded, so the thread mask
        // is the process mask.
        let rc = unsafe {
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGINT);
            libc::sigaddset(&mut set, libc::SIGTERM);
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut())
        };
        if rc != 0 {
            return Err(ProbeError::Signals(std::io::Error::from_raw_os_error(rc)));
        }
        Ok(Self(set))
    }

    /// Blocks until one of the signals is pending and returns its number.
    fn wait(&self) -> Result<i32, ProbeError> {
        let mut signal = 0;
        // SAFETY: `self.0` is an initialised set and `signal` a valid out pointer.
        let rc = unsafe { libc::sigwait(&self.0, &mut signal) };
        if rc != 0 {
            return Err(ProbeError::Signals(std::io::Error::from_raw_os_error(rc)));
        }
        Ok(signal)
    }
}
