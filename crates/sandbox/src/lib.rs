//! A private systemd for tests, the demo and the benchmarks.
//!
//! sysmgr's promises are about what systemd does with the units it writes, so they are
//! checked against a real systemd, not a mock. The machines this runs on (CI VMs, containers)
//! do not boot systemd, and booting it as PID 1 on the shared root would empty the host's
//! `/tmp` and rewrite its sysctls. [`Sandbox::boot`] therefore starts systemd as PID 1 of a
//! new PID namespace with a private mount namespace: an overlay of `/` whose writes land in
//! the sandbox's directory, its own `/run` and `/tmp`, read-only `/proc/sys` and `/sys`, and
//! the units that touch the machine masked (the script is `boot.sh` beside this file).
//!
//! The network namespace is the host's: socket units listen on the host's loopback, so a
//! load generator on the host reaches the workers directly. The sandbox's system bus is at
//! [`Sandbox::bus_address`]; commands run inside through `nsenter` ([`Sandbox::command`]).
//! Dropping the [`Sandbox`] kills its PID 1, which takes every process of the namespace with
//! it, and removes its directory.

use std::ffi::OsStr;
use std::fs;
use std::io::{self, Read as _};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The boot script, run by `sh` inside the new namespaces.
const BOOT_SCRIPT: &str = include_str!("boot.sh");

/// How long a boot may take before it is an error. Seen here: well under a second.
const BOOT_TIMEOUT: Duration = Duration::from_secs(30);

/// Tools the sandbox needs on the host.
const NEEDED: &[(&str, &str)] = &[
    ("/lib/systemd/systemd", "systemd"),
    ("/usr/bin/unshare", "util-linux"),
    ("/usr/bin/nsenter", "util-linux"),
    ("/usr/bin/dbus-daemon", "dbus"),
];

/// Why a sandbox could not be booted or a command in it failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Namespaces and mounts need root.
    #[error("booting a private systemd needs root (namespaces and mounts); run as root")]
    NotRoot,
    /// A tool is missing on the host.
    #[error("`{path}` is missing; install it with `apt-get install -y {package}`")]
    Missing {
        /// The missing file.
        path: &'static str,
        /// The Debian package that has it.
        package: &'static str,
    },
    /// An I/O error while preparing or starting the sandbox.
    #[error("cannot {action}: {source}")]
    Io {
        /// What was being done.
        action: String,
        /// The cause.
        source: io::Error,
    },
    /// systemd did not reach a running state in time.
    #[error("the private systemd did not finish booting within {}s ({state}); its console said:\n{console}", timeout.as_secs())]
    BootTimeout {
        /// The bound.
        timeout: Duration,
        /// The last state `systemctl is-system-running` reported.
        state: String,
        /// The tail of systemd's console output.
        console: String,
    },
    /// systemd exited while booting.
    #[error("the private systemd exited while booting; its console said:\n{console}")]
    BootFailed {
        /// The tail of systemd's console output.
        console: String,
    },
    /// A command inside the sandbox exited non-zero.
    #[error("`{argv}` failed ({status}): {stderr}")]
    CommandFailed {
        /// The command line.
        argv: String,
        /// How it exited.
        status: String,
        /// What it printed on stderr.
        stderr: String,
    },
}

fn io_error(action: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
    let action = action.into();
    move |source| Error::Io { action, source }
}

/// How to boot a sandbox.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Host directories made visible at the same path inside, e.g. the repository and cargo's
    /// target directory, so binaries under test run inside through [`Sandbox::command`].
    /// Everything else of the host is visible too, read-only in effect: writes inside land in
    /// the overlay, not on the host.
    pub binds: Vec<PathBuf>,
    /// Prefix of the sandbox's directory name, to tell sandboxes apart in `ps` and on disk.
    pub dir_prefix: String,
}

/// A running private systemd. Dropping it tears it down.
#[derive(Debug)]
pub struct Sandbox {
    /// `unshare`, whose child is the sandbox's PID 1.
    unshare: Child,
    /// Host PID of the sandbox's PID 1.
    pid: u32,
    dir: PathBuf,
}

/// Checks what booting needs, without booting: root and the host tools.
pub fn preflight() -> Result<(), Error> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Err(Error::NotRoot);
    }
    for (path, package) in NEEDED {
        if !Path::new(path).exists() {
            return Err(Error::Missing { path, package });
        }
    }
    Ok(())
}

/// A directory name no other sandbox of any process uses.
fn fresh_dir(prefix: &str) -> PathBuf {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let base = std::env::var_os("SYSMGR_SANDBOX_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let prefix = if prefix.is_empty() {
        "sysmgr-sandbox"
    } else {
        prefix
    };
    base.join(format!(
        "{prefix}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ))
}

/// The last `lines` lines of a file, for error messages.
fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

impl Sandbox {
    /// Boots a private systemd and returns once it has finished booting (`running`, or
    /// `degraded` with the failed units named in its console log).
    pub fn boot(options: Options) -> Result<Sandbox, Error> {
        preflight()?;
        let dir = fresh_dir(&options.dir_prefix);
        for sub in ["upper", "work", "merged"] {
            fs::create_dir_all(dir.join(sub))
                .map_err(io_error(format!("create `{}`", dir.display())))?;
        }
        let console = fs::File::create(dir.join("console.log"))
            .map_err(io_error("create the console log"))?;
        let console_err = console
            .try_clone()
            .map_err(io_error("open the console log"))?;
        let mut cmd = Command::new("unshare");
        cmd.args([
            "--pid",
            "--mount",
            "--uts",
            "--ipc",
            "--fork",
            "--propagation",
            "private",
        ])
        .args(["sh", "-c", BOOT_SCRIPT, "boot.sh"])
        .arg(&dir)
        .args(&options.binds)
        .stdin(Stdio::null())
        .stdout(console)
        .stderr(console_err);
        // Its own session: no terminal signal of the test run reaches the sandbox.
        // SAFETY: setsid is async-signal-safe and touches no memory of the parent.
        unsafe {
            cmd.pre_exec(|| {
                libc::setsid();
                Ok(())
            });
        }
        let unshare = cmd.spawn().map_err(io_error("start `unshare`"))?;
        let mut sandbox = Sandbox {
            pid: 0,
            unshare,
            dir,
        };
        sandbox.pid = sandbox.wait_for_pid1()?;
        sandbox.wait_until_booted()?;
        Ok(sandbox)
    }

    /// Finds unshare's child, the process that becomes systemd.
    fn wait_for_pid1(&mut self) -> Result<u32, Error> {
        let parent = self.unshare.id();
        let children = format!("/proc/{parent}/task/{parent}/children");
        let deadline = Instant::now() + BOOT_TIMEOUT;
        loop {
            if let Some(pid) = fs::read_to_string(&children)
                .ok()
                .and_then(|s| s.split_whitespace().next()?.parse().ok())
            {
                return Ok(pid);
            }
            if self.unshare.try_wait().ok().flatten().is_some() {
                return Err(Error::BootFailed {
                    console: tail(&self.dir.join("console.log"), 30),
                });
            }
            if Instant::now() > deadline {
                return Err(Error::BootTimeout {
                    timeout: BOOT_TIMEOUT,
                    state: "no PID 1 yet".into(),
                    console: tail(&self.dir.join("console.log"), 30),
                });
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn wait_until_booted(&mut self) -> Result<(), Error> {
        let deadline = Instant::now() + BOOT_TIMEOUT;
        let mut state = String::from("not answering");
        loop {
            if self.unshare.try_wait().ok().flatten().is_some() {
                return Err(Error::BootFailed {
                    console: tail(&self.dir.join("console.log"), 30),
                });
            }
            if let Ok(out) = self.command("systemctl").arg("is-system-running").output() {
                state = String::from_utf8_lossy(&out.stdout).trim().to_string();
                // systemctl talks over systemd's private socket; D-Bus clients (sysmgr) need
                // systemd to have taken its name on the bus, which happens a moment later.
                if matches!(state.as_str(), "running" | "degraded") && self.systemd_on_bus() {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err(Error::BootTimeout {
                    timeout: BOOT_TIMEOUT,
                    state,
                    console: tail(&self.dir.join("console.log"), 30),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn systemd_on_bus(&self) -> bool {
        self.command("busctl")
            .args([
                "--system",
                "call",
                "org.freedesktop.systemd1",
                "/org/freedesktop/systemd1",
            ])
            .args(["org.freedesktop.DBus.Peer", "Ping"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Host PID of the sandbox's PID 1.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The sandbox's root as seen from the host (`/proc/PID/root`): write a file under it to
    /// put it inside.
    pub fn root(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root", self.pid))
    }

    /// The sandbox's system bus, for D-Bus clients on the host (`DBUS_SYSTEM_BUS_ADDRESS`).
    pub fn bus_address(&self) -> String {
        format!(
            "unix:path=/proc/{}/root/run/dbus/system_bus_socket",
            self.pid
        )
    }

    /// `/etc/systemd/system` of the sandbox, seen from the host.
    pub fn unit_dir(&self) -> PathBuf {
        self.root().join("etc/systemd/system")
    }

    /// The sandbox's directory on the host (overlay layers and `console.log`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A command that runs `program` inside the sandbox: its mounts, PIDs, root and working
    /// directory (`/`).
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg("-t")
            .arg(self.pid.to_string())
            .args(["-m", "-p", "-r", "-w", "--"])
            .arg(program)
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `argv` inside and returns its stdout; an error carries its stderr.
    pub fn run(&self, argv: &[&str]) -> Result<String, Error> {
        let (program, args) = argv.split_first().expect("argv has a program");
        let out = self
            .command(program)
            .args(args)
            .output()
            .map_err(io_error("run `nsenter`"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(Error::CommandFailed {
                argv: argv.join(" "),
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            })
        }
    }

    /// `systemctl ARGS` inside.
    pub fn systemctl(&self, args: &[&str]) -> Result<String, Error> {
        let mut argv = vec!["systemctl"];
        argv.extend_from_slice(args);
        self.run(&argv)
    }

    /// The last `lines` journal lines of `unit`, best effort (empty when the journal has
    /// nothing or cannot be read).
    pub fn journal(&self, unit: &str, lines: usize) -> String {
        let lines = lines.to_string();
        self.run(&[
            "journalctl",
            "--no-pager",
            "-o",
            "short-monotonic",
            "-n",
            &lines,
            "-u",
            unit,
        ])
        .unwrap_or_default()
    }

    /// systemd's console output so far.
    pub fn console(&self) -> String {
        let mut text = String::new();
        let _ = fs::File::open(self.dir.join("console.log"))
            .and_then(|mut f| f.read_to_string(&mut text));
        text
    }

    /// Tears the sandbox down now (the same as dropping it).
    pub fn shutdown(self) {}
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if self.pid != 0 {
            // SIGKILL to a PID namespace's init kills every process in the namespace; its
            // mounts go with the last process that uses them.
            // SAFETY: kill has no memory preconditions; the PID is our own child's child.
            unsafe {
                libc::kill(self.pid as libc::pid_t, libc::SIGKILL);
            }
        } else {
            let _ = self.unshare.kill();
        }
        let _ = self.unshare.wait();
        // The overlay is unmounted once the namespace is gone; retry briefly if the kernel is
        // still releasing it.
        for _ in 0..50 {
            match fs::remove_dir_all(&self.dir) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => break,
            }
        }
    }
}
