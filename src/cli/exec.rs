//! `sysmgr exec PROGRAM [ARGS...]`: what the units of every app start (hidden; not for
//! people). It prepares the process and then replaces itself with PROGRAM, keeping its PID, so
//! PROGRAM is the unit's main process as if systemd had started it directly.
//!
//! For every program: systemd connects stdout and stderr to *one* journal stream, so both are
//! stored with the same priority and `journalctl -p err` cannot tell them apart. When they are
//! the journal (`JOURNAL_STREAM` names their device and inode, systemd.exec(5)), each gets a
//! stream of its own, opened the way `sd_journal_stream_fd(3)` does: stdout at priority 6
//! (info), stderr at 3 (err). journald attributes a stream to the unit by the cgroup of the
//! process that connected, which is this one and so the instance's (`_SYSTEMD_UNIT=` stays).
//! If the journal cannot be reached, the streams systemd gave are kept.
//!
//! For Node.js programs, a notify socket too. Why: Node.js cannot send a datagram to `NOTIFY_SOCKET` (it has no unix
//! datagram sockets), and `READY=1` sent by a helper child is attributed to the service only if
//! systemd reads it before the helper exits, and only with `NotifyAccess=all`. Here the socket
//! is made and connected before the exec and handed down as an inherited fd
//! (`SYSMGR_NOTIFY_FD`): Node's bridge writes `READY=1` to it from the main process itself, so
//! `NotifyAccess=main` holds. `SYSMGR_PID` tells the bridge which process is the main one (it
//! stays the same across the exec), so a child Node process leaves everything alone.
//!
//! And the crash-loop brake (`max_restarts`, [`brake`]): systemd's own start limit cannot be
//! used, since an instance that hits it fails the socket shared by every instance.

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

/// Splits the journal streams, connects the notify socket (Node only), then execs the
/// program; returns only if the exec failed.
pub fn run(args: &ExecArgs) -> anyhow::Result<ExitCode> {
    let (program, rest) = args.command.split_first().expect("clap requires PROGRAM");
    let mut command = Command::new(program);
    command.args(rest);
    if let Some(stream) = journal::split_streams(program) {
        command.env("JOURNAL_STREAM", stream);
    }
    // After the split, so the refusal is logged at priority err.
    if let Some(refused) = brake::record_start() {
        eprintln!("sysmgr exec: {refused}");
        return Ok(ExitCode::from(crate::config::brake::EXIT_STATUS));
    }
    command.envs(slot_env(|k| std::env::var(k).ok()));
    // Only Node gets the bridge's notify fd: any other program speaks sd_notify itself and
    // inherits no fd it does not know.
    let node = std::path::Path::new(program)
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(crate::config::is_node_program);
    if node {
        command.env("SYSMGR_PID", std::process::id().to_string());
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
    }
    let err = command.exec();
    Err(err).with_context(|| format!("cannot run `{}`", program.to_string_lossy()))
}

/// The variables that give the worker its slot alone when systemd's instance is a later
/// generation of it (`%i` = `3:2`, see [`crate::names::split_instance`]): `SYSMGR_INSTANCE=3`,
/// `SYSMGR_GENERATION=2`, and the app's `instance_var` (named by `SYSMGR_INSTANCE_VAR`) `3`
/// where the unit set it to `%i` (for Node the bridge derives it from `SYSMGR_INSTANCE`). So
/// the number a worker sees is the same whichever generation of its slot runs. Nothing for
/// generation 0 (`%i` = `3`) or an instance string sysmgr does not build.
fn slot_env(var: impl Fn(&str) -> Option<String>) -> Vec<(String, String)> {
    let Some(raw) = var("SYSMGR_INSTANCE") else {
        return Vec::new();
    };
    let Some((slot, generation)) = crate::names::split_instance(&raw).filter(|&(_, g)| g > 0)
    else {
        return Vec::new();
    };
    let mut env = vec![
        ("SYSMGR_INSTANCE".to_string(), slot.to_string()),
        ("SYSMGR_GENERATION".to_string(), generation.to_string()),
    ];
    if let Some(name) = var("SYSMGR_INSTANCE_VAR") {
        if name != "SYSMGR_INSTANCE" && var(&name).as_deref() == Some(raw.as_str()) {
            env.push((name, slot.to_string()));
        }
    }
    env
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

/// The crash-loop brake, PM2's `max_restarts`: each start of an instance is recorded in a
/// directory that systemd keeps across the instance's restarts and removes when it stops or
/// fails (`RuntimeDirectoryPreserve=restart`). Starts less than `WINDOW_SECS` apart make a
/// streak; a start that makes the streak longer than `max_restarts` is refused with
/// `EXIT_STATUS`, which the unit lists in `RestartPreventExitStatus=`: the instance ends
/// `failed`, alone, and the shared socket stays up. Unlike systemd's start limit this fails
/// no other unit. Without the variables (an older unit, a hand-made one) there is no brake.
mod brake {
    use std::path::Path;

    use crate::config::brake::{DIR_VAR, FILE, MAX_VAR, WINDOW_SECS};

    /// The starts in a row so far, and when the last one was (`CLOCK_MONOTONIC`, ms).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Streak {
        pub starts: u32,
        pub last_ms: u64,
    }

    impl Streak {
        /// The streak after a start at `now_ms`, given the one the start before recorded.
        pub fn after(prev: Option<Streak>, now_ms: u64) -> Streak {
            let starts = match prev {
                Some(p) if now_ms >= p.last_ms && now_ms - p.last_ms < WINDOW_SECS * 1000 => {
                    p.starts.saturating_add(1)
                }
                _ => 1,
            };
            Streak {
                starts,
                last_ms: now_ms,
            }
        }

        fn parse(text: &str) -> Option<Streak> {
            let (starts, last) = text.trim().split_once(' ')?;
            Some(Streak {
                starts: starts.parse().ok()?,
                last_ms: last.parse().ok()?,
            })
        }
    }

    /// Records this start; returns why it is refused, if it is.
    pub fn record_start() -> Option<String> {
        let max: u32 = std::env::var(MAX_VAR).ok()?.parse().ok()?;
        let dir = std::env::var_os(DIR_VAR)?;
        let file = Path::new(&dir).join(FILE);
        let prev = std::fs::read_to_string(&file)
            .ok()
            .and_then(|t| Streak::parse(&t));
        let streak = Streak::after(prev, monotonic_ms());
        let tmp = Path::new(&dir).join("starts.new");
        let written = std::fs::write(&tmp, format!("{} {}\n", streak.starts, streak.last_ms))
            .and_then(|()| std::fs::rename(&tmp, &file));
        if let Err(err) = written {
            // The program starts anyway: a brake that cannot count must not stop the app.
            eprintln!(
                "sysmgr exec: cannot record this start in `{}` ({err}); the crash-loop brake (max_restarts) is off for it",
                file.display()
            );
        }
        (streak.starts > max).then(|| refusal(streak.starts, max))
    }

    /// What the journal says when a start is refused.
    pub fn refusal(starts: u32, max: u32) -> String {
        let app = std::env::var("SYSMGR_APP").unwrap_or_default();
        format!(
            "crash loop: this is start {starts} in a row, each less than {WINDOW_SECS} s after the one before, and max_restarts is {max}; not starting again. The instance stays failed (the others keep serving) until `sysmgr start {app}` or `sysmgr reload {app}`"
        )
    }

    fn monotonic_ms() -> u64 {
        // SAFETY: clock_gettime writes into the zeroed struct it is given, nothing else.
        let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        (ts.tv_sec as u64) * 1000 + (ts.tv_nsec as u64) / 1_000_000
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn starts_less_than_the_window_apart_make_a_streak_and_a_pause_ends_it() {
            let first = Streak::after(None, 5_000);
            assert_eq!(first.starts, 1);
            let second = Streak::after(Some(first), 5_000 + 9_999);
            assert_eq!((second.starts, second.last_ms), (2, 14_999));
            // 10 s after the last start, a new streak begins.
            assert_eq!(Streak::after(Some(second), 24_999).starts, 1);
            // A clock that went back (a stale file) begins one too.
            assert_eq!(Streak::after(Some(second), 100).starts, 1);
        }

        #[test]
        fn the_recorded_streak_reads_back_and_garbage_is_no_streak() {
            assert_eq!(
                Streak::parse("17 123456\n"),
                Some(Streak {
                    starts: 17,
                    last_ms: 123456
                })
            );
            for bad in ["", "17", "x 1", "1 -2"] {
                assert_eq!(Streak::parse(bad), None, "{bad}");
            }
        }
    }
}

/// stdout and stderr as journal streams of their own priorities.
mod journal {
    use std::io::Write as _;
    use std::os::fd::AsRawFd as _;
    use std::os::unix::net::UnixStream;

    /// journald's socket for stdout streams (the same for the user manager's units).
    const STDOUT_SOCKET: &str = "/run/systemd/journal/stdout";

    /// syslog priorities (`LOG_ERR`, `LOG_INFO`).
    const ERR: u8 = 3;
    const INFO: u8 = 6;

    /// Replaces fds 1 and 2 with streams of their own where they are systemd's journal stream.
    /// Returns the new `JOURNAL_STREAM` value (stderr's stream, or stdout's when only stdout is
    /// the journal: one fd can be named, and logging libraries check stderr), or `None` when
    /// nothing was changed.
    pub fn split_streams(program: &std::ffi::OsStr) -> Option<String> {
        let journal = std::env::var("JOURNAL_STREAM").ok()?;
        let (dev, ino) = journal.split_once(':')?;
        let journal = (dev.parse::<u64>().ok()?, ino.parse::<u64>().ok()?);
        let identifier = identifier(program);
        let unit = unit_id();
        let mut named = None;
        for (fd, priority) in [(1, INFO), (2, ERR)] {
            if dev_ino(fd) != Some(journal) {
                continue;
            }
            match open(&identifier, &unit, priority) {
                Ok(stream) => {
                    // dup2 leaves the new fd 1 or 2 open across the exec; `stream` itself
                    // (close-on-exec) is closed when it goes out of scope.
                    // SAFETY: dup2 on fds this process owns; no memory is passed.
                    if unsafe { libc::dup2(stream.as_raw_fd(), fd) } == fd {
                        named = dev_ino(fd).map(|(d, i)| format!("{d}:{i}"));
                    }
                }
                // Said on the stream systemd gave, which is still there.
                Err(err) => {
                    eprintln!(
                        "sysmgr exec: cannot open a journal stream at `{STDOUT_SOCKET}` ({err}); stdout and stderr stay as systemd connected them"
                    );
                    break;
                }
            }
        }
        named
    }

    /// A stream connected to journald, with the header of `sd_journal_stream_fd(3)`.
    fn open(identifier: &str, unit: &str, priority: u8) -> std::io::Result<UnixStream> {
        let mut stream = UnixStream::connect(STDOUT_SOCKET)?;
        // identifier, unit id, priority, level prefix (`<3>` at a line's start sets its
        // priority, systemd's default `SyslogLevelPrefix=yes`), forward to syslog, kmsg, console.
        write!(stream, "{identifier}\n{unit}\n{priority}\n1\n0\n0\n0\n")?;
        // journald never writes back; as sd_journal_stream_fd does.
        stream.shutdown(std::net::Shutdown::Read)?;
        Ok(stream)
    }

    /// The unit's `SyslogIdentifier=`, which sysmgr's units set to the app's name
    /// (`SYSMGR_APP`); otherwise the program's name, as systemd would use.
    fn identifier(program: &std::ffi::OsStr) -> String {
        std::env::var("SYSMGR_APP")
            .ok()
            .or_else(|| {
                let name = std::path::Path::new(program).file_name()?;
                Some(name.to_string_lossy().into_owned())
            })
            .unwrap_or_default()
            .replace('\n', " ")
    }

    /// `NAME@N.service`, as systemd sends it: journald uses it (from root only) to attribute
    /// lines that arrive after the process is gone and its cgroup can no longer be read.
    fn unit_id() -> String {
        match (
            std::env::var("SYSMGR_APP"),
            std::env::var("SYSMGR_INSTANCE"),
        ) {
            (Ok(app), Ok(n)) if !app.contains('\n') && !n.contains('\n') => {
                format!("{app}@{n}.service")
            }
            _ => String::new(),
        }
    }

    fn dev_ino(fd: i32) -> Option<(u64, u64)> {
        // SAFETY: fstat writes into the zeroed struct it is given, nothing else.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        (unsafe { libc::fstat(fd, &mut st) } == 0).then_some((st.st_dev, st.st_ino))
    }
}

#[cfg(test)]
mod tests {
    use super::slot_env;

    fn env_of(vars: &[(&str, &str)]) -> Vec<(String, String)> {
        slot_env(|k| {
            vars.iter()
                .find(|(name, _)| *name == k)
                .map(|(_, v)| v.to_string())
        })
    }

    fn pairs(vars: &[(&str, &str)]) -> Vec<(String, String)> {
        vars.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_later_generation_sees_its_slot_alone() {
        assert_eq!(
            env_of(&[
                ("SYSMGR_INSTANCE", "3:2"),
                ("SYSMGR_INSTANCE_VAR", "NODE_APP_INSTANCE"),
                ("NODE_APP_INSTANCE", "3:2"),
            ]),
            pairs(&[
                ("SYSMGR_INSTANCE", "3"),
                ("SYSMGR_GENERATION", "2"),
                ("NODE_APP_INSTANCE", "3"),
            ])
        );
        // Node: the bridge sets the variable from SYSMGR_INSTANCE; it is not `%i` here.
        assert_eq!(
            env_of(&[
                ("SYSMGR_INSTANCE", "3:2"),
                ("SYSMGR_INSTANCE_VAR", "NODE_APP_INSTANCE"),
            ]),
            pairs(&[("SYSMGR_INSTANCE", "3"), ("SYSMGR_GENERATION", "2")])
        );
    }

    #[test]
    fn generation_zero_and_foreign_instances_are_left_alone() {
        for instance in ["3", "3:0", "x", "3:2:1", ""] {
            assert_eq!(
                env_of(&[
                    ("SYSMGR_INSTANCE", instance),
                    ("SYSMGR_INSTANCE_VAR", "V"),
                    ("V", instance),
                ]),
                Vec::new(),
                "{instance}"
            );
        }
        assert_eq!(env_of(&[]), Vec::new());
    }
}
