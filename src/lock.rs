//! One change at a time per app: an advisory lock file per app.
//!
//! At the top level because every command that changes an app takes it, not only the
//! rolling reload.
//!
//! Two reloads of the same app must never interleave (the second would restart instances the
//! first has not verified yet, and a halt would stop neither). Every command that changes an
//! app (start, stop, restart, scale, reload, delete) takes an exclusive `flock(2)` on
//! `/run/sysmgr/NAME.lock`, or `$XDG_RUNTIME_DIR/sysmgr/NAME.lock` for the user manager.
//!
//! The decision: by default a second command *waits* for the first, saying so on stderr, so
//! that a deploy script running two reloads back to back gets both, in order. With
//! `--no-wait` it refuses at once instead. The kernel drops the lock when the holder exits,
//! however it exits, so a crashed sysmgr never leaves an app locked; the file only carries
//! the holder's PID for the message.

use std::fs::{File, OpenOptions};
use std::io::{self, Read as _, Seek as _, Write as _};
use std::os::fd::AsRawFd as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use crate::systemd::manager::{user_runtime_dir, Manager};

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another sysmgr holds it and we were told not to wait.
    #[error("another sysmgr{} is changing `{app}` right now (lock `{}`); wait for it to finish, or leave out --no-wait to queue behind it", holder.map(|p| format!(" (pid {p})")).unwrap_or_default(), path.display())]
    Busy {
        /// The app.
        app: String,
        /// The lock file.
        path: PathBuf,
        /// The PID written by the holder, if readable.
        holder: Option<u32>,
    },
    /// Not allowed to create the lock: an unprivileged user acting on the system manager.
    #[error("permission denied: cannot create the lock `{}`; run as root, or use --user for your own service manager", path.display())]
    Denied {
        /// The lock file.
        path: PathBuf,
    },
    /// The lock file could not be created or locked.
    #[error("cannot lock `{}`: {source}", path.display())]
    Io {
        /// The lock file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// No runtime directory for the user manager.
    #[error("cannot find the user's runtime directory: `XDG_RUNTIME_DIR` is not set (it is where `systemd --user` and sysmgr keep their state)")]
    NoRuntimeDir,
}

impl crate::Classify for LockError {
    fn class(&self) -> crate::ErrorClass {
        match self {
            // Without a runtime directory there is no user manager to reach either.
            Self::Denied { .. } | Self::NoRuntimeDir => crate::ErrorClass::Systemd,
            Self::Busy { .. } | Self::Io { .. } => crate::ErrorClass::Failed,
        }
    }
}

/// Whether to wait for a lock someone else holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Block until it is free.
    Block,
    /// Fail with [`LockError::Busy`].
    Refuse,
}

/// The directory holding the lock files for `manager`.
pub fn lock_dir(manager: Manager) -> Result<PathBuf, LockError> {
    match manager {
        Manager::System => Ok(PathBuf::from("/run/sysmgr")),
        Manager::User => user_runtime_dir()
            .map(|dir| dir.join("sysmgr"))
            .ok_or(LockError::NoRuntimeDir),
    }
}

/// A held lock on one app; released when dropped (or when the process exits).
#[derive(Debug)]
pub struct AppLock {
    _file: File,
    path: PathBuf,
}

impl AppLock {
    /// Takes the lock of `app` in `dir`. When it is held elsewhere and `wait` is
    /// [`Wait::Block`], calls `on_wait` with the holder's PID once, then blocks.
    pub fn acquire(
        dir: &Path,
        app: &str,
        wait: Wait,
        on_wait: impl FnOnce(Option<u32>),
    ) -> Result<Self, LockError> {
        let path = dir.join(format!("{app}.lock"));
        let io_err = |source: io::Error| match source.kind() {
            io::ErrorKind::PermissionDenied => LockError::Denied { path: path.clone() },
            _ => LockError::Io {
                path: path.clone(),
                source,
            },
        };
        std::fs::create_dir_all(dir).map_err(io_err)?;
        // Readable by the owner only: anyone who can open the file can flock it, and could
        // then hold every reload of the app hostage.
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io_err)?;
        if !flock(&file, libc::LOCK_EX | libc::LOCK_NB).map_err(io_err)? {
            let holder = read_pid(&mut file);
            match wait {
                Wait::Refuse => {
                    return Err(LockError::Busy {
                        app: app.to_string(),
                        path,
                        holder,
                    })
                }
                Wait::Block => {
                    on_wait(holder);
                    flock(&file, libc::LOCK_EX).map_err(io_err)?;
                }
            }
        }
        // Ours now: record who holds it, for the message a second sysmgr prints.
        file.set_len(0).map_err(io_err)?;
        file.rewind().map_err(io_err)?;
        writeln!(file, "{}", std::process::id()).map_err(io_err)?;
        Ok(Self { _file: file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// `flock(2)`; `Ok(false)` when a non-blocking attempt finds it held.
fn flock(file: &File, op: libc::c_int) -> io::Result<bool> {
    loop {
        // SAFETY: the fd is owned by `file`, which outlives the call.
        if unsafe { libc::flock(file.as_raw_fd(), op) } == 0 {
            return Ok(true);
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EWOULDBLOCK) if op & libc::LOCK_NB != 0 => return Ok(false),
            _ => return Err(err),
        }
    }
}

fn read_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.rewind().ok()?;
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_pid() {
        let dir = tempfile::tempdir().unwrap();
        let first = AppLock::acquire(dir.path(), "web", Wait::Refuse, |_| {}).unwrap();
        let err = AppLock::acquire(dir.path(), "web", Wait::Refuse, |_| {}).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "another sysmgr (pid {}) is changing `web` right now (lock `{}`); wait for it to finish, or leave out --no-wait to queue behind it",
                std::process::id(),
                first.path().display()
            )
        );
        // Other apps are independent.
        AppLock::acquire(dir.path(), "api", Wait::Refuse, |_| {}).unwrap();
        drop(first);
        AppLock::acquire(dir.path(), "web", Wait::Refuse, |_| {}).unwrap();
    }

    #[test]
    fn a_waiting_holder_gets_the_lock_when_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let first = AppLock::acquire(dir.path(), "web", Wait::Block, |_| {}).unwrap();
        let path = dir.path().to_path_buf();
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = std::thread::spawn(move || {
            let lock = AppLock::acquire(&path, "web", Wait::Block, |holder| {
                tx.send(holder).unwrap();
            })
            .unwrap();
            drop(lock);
        });
        // The waiter saw the lock held by us and is now blocked.
        let holder = rx.recv_timeout(std::time::Duration::from_secs(10)).unwrap();
        assert_eq!(holder, Some(std::process::id()));
        assert!(!waiter.is_finished());
        drop(first);
        waiter.join().unwrap();
    }
}
