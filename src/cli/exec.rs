//! `sysmgr exec PROGRAM [ARGS...]`: what the units of a Node app start (hidden; not for
//! people). It prepares the process and then replaces itself with PROGRAM, keeping its PID, so
//! PROGRAM is the unit's main process as if systemd had started it directly.
//!
//! Why a step at all: Node.js cannot send a datagram to `NOTIFY_SOCKET` (it has no unix
//! datagram sockets), and `READY=1` sent by a helper child is attributed to the service only if
//! systemd reads it before the helper exits, and only with `NotifyAccess=all`. Here the socket
//! is made and connected before the exec and handed down as an inherited fd
//! (`SYSMGR_NOTIFY_FD`): Node's bridge writes `READY=1` to it from the main process itself, so
//! `NotifyAccess=main` holds. `SYSMGR_PID` tells the bridge which process is the main one (it
//! stays the same across the exec), so a child Node process leaves everything alone.

use std::ffi::OsString;
use std::os::fd::{AsRawFd as _, IntoRawFd as _};
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::os::unix::process::CommandExt as _;
use std::process::{Command, ExitCode};

use anyhow::Context as _;
use clap::Args;

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// The program and its arguments.
    #[arg(
        value_name = "PROGRAM",
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub command: Vec<OsString>,
}

/// Connects the notify socket, then execs the program; returns only if the exec failed.
pub fn run(args: &ExecArgs) -> anyhow::Result<ExitCode> {
    let (program, rest) = args.command.split_first().expect("clap requires PROGRAM");
    let mut command = Command::new(program);
    command
        .args(rest)
        .env("SYSMGR_PID", std::process::id().to_string());
    if let Some(address) = std::env::var_os("NOTIFY_SOCKET") {
        // Not fatal: without the fd the bridge falls back to `systemd-notify`.
        match notify_fd(&address) {
            Ok(fd) => {
                command.env("SYSMGR_NOTIFY_FD", fd.to_string());
            }
            Err(err) => eprintln!(
                "sysmgr exec: cannot connect to NOTIFY_SOCKET `{}`: {err:#}",
                address.to_string_lossy()
            ),
        }
    }
    let err = command.exec();
    Err(err).with_context(|| format!("cannot run `{}`", program.to_string_lossy()))
}

/// A datagram socket connected to `address` (a path, or `@name` in the abstract namespace), as
/// a raw fd that survives the exec.
fn notify_fd(address: &std::ffi::OsStr) -> anyhow::Result<i32> {
    use std::os::linux::net::SocketAddrExt as _;
    use std::os::unix::ffi::OsStrExt as _;

    let bytes = address.as_bytes();
    let addr = match bytes.strip_prefix(b"@") {
        Some(name) => SocketAddr::from_abstract_name(name)?,
        None => SocketAddr::from_pathname(std::path::Path::new(address))?,
    };
    let socket = UnixDatagram::unbound()?;
    socket.connect_addr(&addr)?;
    // std opens every fd close-on-exec; this one is meant for the program.
    // SAFETY: fcntl on an fd this function owns; no memory is passed.
    if unsafe { libc::fcntl(socket.as_raw_fd(), libc::F_SETFD, 0) } != 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    Ok(socket.into_raw_fd())
}
