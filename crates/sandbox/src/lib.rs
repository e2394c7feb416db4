//! A private systemd for tests, the demo and the benchmarks.
//!
//! sysmgr's promises are about what systemd does with the units it writes, so they are
//! checked against a real systemd, not a mock. The machines this runs on (CI VMs, containers)
//! do not boot systemd, and booting it as PID 1 on the shared root would empty the host's
//! `/tmp` and rewrite its sysctls. [`Sandbox::boot`] therefore starts systemd as PID 1 of a
//! new PID namespace with a private mount namespace: an overlay of `/` whose writes land in a
//! tmpfs of the sandbox, its own `/run`, `/tmp` and `/dev`, read-only `/proc/sys` and `/sys`,
//! its own cgroup tree, and the units that touch the machine masked. The steps are in
//! `boot.sh` beside this file, embedded in the library, so nothing outside the crate is needed
//! at run time.
//!
//! The network namespace is the host's by default: socket units listen on the host's
//! loopback, so a load generator on the host reaches the workers directly. With
//! [`Options::own_network`] a sandbox is a machine of its own on a network the test builds
//! (`tests/deploy.rs`: veth pairs into a bridge, sshd on each host). The sandbox's system bus is at
//! [`Sandbox::bus_address`]; commands run inside through `nsenter` ([`Sandbox::command`]).
//! Dropping the [`Sandbox`] kills its PID 1, which takes every process of the namespace with
//! it, and removes its directory and cgroup.
//!
//! ```no_run
//! let sb = sysmgr_sandbox::Sandbox::boot(sysmgr_sandbox::Options::default())?;
//! std::fs::write(sb.unit_dir().join("x.service"), "[Service]\nExecStart=/bin/sleep 60\n").unwrap();
//! sb.systemctl(&["daemon-reload"])?;
//! sb.systemctl(&["start", "x.service"])?;
//! # Ok::<(), sysmgr_sandbox::Error>(())
//! ```

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::fd::AsRawFd as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The boot script, run by `sh` inside the new namespaces.
const BOOT_SCRIPT: &str = include_str!("boot.sh");

mod seed;
mod spawner;

/// How long a boot may take before it is an error. Seen here: about half a second; a loaded CI
/// machine running many sandboxes at once needs more, and a hung boot must still end.
const BOOT_TIMEOUT: Duration = Duration::from_secs(30);

/// How many lines of the console a boot error quotes.
const CONSOLE_TAIL: usize = 40;

/// Why a sandbox could not be booted or a command in it failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Namespaces and mounts need root.
    #[error("booting a private systemd needs root (namespaces and mounts); run as root, e.g. with `sudo`")]
    NotRoot,
    /// A tool is missing on the host.
    #[error("`{path}` is missing; install it with `apt-get install -y {packages}`")]
    Missing {
        /// The missing file or program.
        path: &'static str,
        /// The Debian packages to install.
        packages: &'static str,
    },
    /// An I/O error while preparing, starting or talking to the sandbox.
    #[error("cannot {action}: {source}")]
    Io {
        /// What was being done.
        action: String,
        /// The cause.
        source: io::Error,
    },
    /// systemd did not finish booting in time.
    #[error("the private systemd did not finish booting within {}s (state: `{state}`); look for units that hang or fail; its console said:\n{console}", timeout.as_secs())]
    BootTimeout {
        /// The bound.
        timeout: Duration,
        /// The last state `systemctl is-system-running` reported.
        state: String,
        /// The tail of the boot script's and systemd's console output.
        console: String,
    },
    /// The boot script or systemd exited while booting.
    #[error("the private systemd exited while booting; its console said:\n{console}")]
    BootFailed {
        /// The tail of the boot script's and systemd's console output.
        console: String,
    },
    /// A command inside the sandbox exited non-zero.
    #[error("`{argv}` failed in the sandbox ({status}): {stderr}")]
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
    /// Host paths (directories or files) bind-mounted at the same path inside, writable.
    /// Tests pass the repository and cargo's target directory so the binaries under test run
    /// inside through [`Sandbox::command`]; nothing is bound by default, not even the current
    /// executable's directory. The rest of the host's root is visible too, but as the lower layer of an
    /// overlay: writes inside (`dpkg -i`, unit files) land in the sandbox, not on the host.
    pub binds: Vec<PathBuf>,
    /// Prefix of the sandbox's directory and cgroup names (`PREFIX-PID-N`), to tell
    /// sandboxes apart on disk; empty means `sysmgr-sandbox`.
    pub dir_prefix: String,
    /// A network namespace of its own (only `lo`, down until systemd brings it up) instead of
    /// the host's: a machine of a multi-host test, wired by the test itself (a veth into
    /// a bridge, [`Sandbox::netns`]). [`Sandbox::command`] then enters it too.
    pub own_network: bool,
}

/// A running private systemd. Dropping it tears it down, also when a test panics.
#[derive(Debug)]
pub struct Sandbox {
    /// `unshare`, whose child is the sandbox's PID 1.
    unshare: Child,
    /// Host PID of the sandbox's PID 1 (0 until known).
    pid: u32,
    /// The sandbox's directory on the host.
    dir: PathBuf,
    /// The sandbox's own cgroup2 directory on the host, when it has one.
    cgroup: Option<PathBuf>,
    /// Booted with [`Options::own_network`].
    own_network: bool,
}

/// A program found on `PATH`.
fn on_path(program: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path).any(|dir| dir.join(program).is_file())
}

/// Checks what booting needs, without booting: root, systemd, D-Bus and util-linux's
/// `unshare` and `nsenter`.
pub fn preflight() -> Result<(), Error> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Err(Error::NotRoot);
    }
    if !Path::new("/lib/systemd/systemd").is_file() {
        return Err(Error::Missing {
            path: "/lib/systemd/systemd",
            packages: "systemd dbus",
        });
    }
    // The unit, not a daemon binary: dbus-daemon and dbus-broker both provide it.
    if ![
        "/lib/systemd/system/dbus.socket",
        "/usr/lib/systemd/system/dbus.socket",
    ]
    .iter()
    .any(|p| Path::new(p).is_file())
    {
        return Err(Error::Missing {
            path: "dbus.socket",
            packages: "systemd dbus",
        });
    }
    for program in ["unshare", "nsenter"] {
        if !on_path(program) {
            return Err(Error::Missing {
                path: program,
                packages: "util-linux",
            });
        }
    }
    Ok(())
}

/// A name no other sandbox of any process uses: prefix, our PID, a counter.
fn fresh_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let prefix = if prefix.is_empty() {
        "sysmgr-sandbox"
    } else {
        prefix
    };
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Where sandbox directories go: `$SYSMGR_SANDBOX_DIR`, else the temporary directory.
fn base_dir() -> PathBuf {
    std::env::var_os("SYSMGR_SANDBOX_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
}

/// The PID in a name made by [`fresh_name`] (`PREFIX-PID-N`).
fn pid_in_name(name: &str) -> Option<u32> {
    let mut parts = name.rsplitn(3, '-');
    let (_counter, pid) = (parts.next()?.parse::<u32>().ok()?, parts.next()?);
    parts.next()?;
    pid.parse().ok()
}

/// Whether `name` was made by a process that is gone.
fn made_by_a_dead_process(name: &std::ffi::OsStr) -> bool {
    name.to_str()
        .and_then(pid_in_name)
        .is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists())
}

/// Removes what sandboxes of killed processes left: Drop did not run, and although their
/// processes died with them (see `spawner`), their directories and cgroups stay. Only
/// directories that carry the seed's boot target are touched, only cgroups without
/// processes can be removed, and only names whose PID no longer runs are considered.
fn sweep_leftovers(base: &Path) {
    let ours = |dir: &Path| {
        dir.join("seed/etc/systemd/system")
            .join(seed::TARGET)
            .is_file()
    };
    for entry in fs::read_dir(base).into_iter().flatten().flatten() {
        if made_by_a_dead_process(&entry.file_name()) && ours(&entry.path()) {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
    let Some(cgroups) = own_cgroup2_dir() else {
        return;
    };
    for entry in fs::read_dir(cgroups).into_iter().flatten().flatten() {
        let path = entry.path();
        // systemd made init.scope: a sandbox's PID 1 ran there.
        if made_by_a_dead_process(&entry.file_name()) && path.join("init.scope").is_dir() {
            remove_cgroup(&path);
        }
    }
}

/// The last `lines` lines of a file, for error messages.
fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The directory of our own cgroup in the cgroup2 hierarchy, if the host has one mounted
/// (`/sys/fs/cgroup` on a unified host, `/sys/fs/cgroup/unified` on a hybrid one).
fn own_cgroup2_dir() -> Option<PathBuf> {
    let ours = fs::read_to_string("/proc/self/cgroup").ok()?;
    let ours = ours.lines().find_map(|l| l.strip_prefix("0::"))?;
    let mounts = fs::read_to_string("/proc/self/mountinfo").ok()?;
    // mountinfo: ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE ...
    mounts.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        if right.split_whitespace().next()? != "cgroup2" {
            return None;
        }
        let fields: Vec<&str> = left.split_whitespace().collect();
        let (root, mountpoint) = (fields.get(3)?, fields.get(4)?);
        let relative = Path::new(ours).strip_prefix(root).ok()?;
        Some(Path::new(mountpoint).join(relative))
    })
}

/// Creates a cgroup for the sandbox below ours; `None` when the host has no cgroup2 tree or
/// refuses (read-only in unprivileged containers). The sandbox then shares the host's
/// cgroups, which works as long as concurrent sandboxes run different units.
fn create_cgroup(name: &str) -> Option<PathBuf> {
    let dir = own_cgroup2_dir()?.join(name);
    if fs::create_dir(&dir).is_err() {
        // Left over by a killed process that had our PID: its processes are gone.
        remove_cgroup(&dir);
        fs::create_dir(&dir).ok()?;
    }
    Some(dir)
}

/// Removes a cgroup directory and the ones systemd made inside it, deepest first. A cgroup
/// can be removed (rmdir, not unlink of its files) once its processes are gone, which the
/// kernel may report a moment after they died.
fn remove_cgroup(dir: &Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup(&entry.path());
            }
        }
    }
    for _ in 0..100 {
        match fs::remove_dir(dir) {
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                std::thread::sleep(Duration::from_millis(10))
            }
            _ => return,
        }
    }
}

/// Prepares the sandbox's directory and cgroup and starts the boot script in new
/// namespaces; returns `unshare` and the cgroup.
fn start(
    name: &str,
    dir: &Path,
    binds: &[PathBuf],
    own_network: bool,
) -> Result<(Child, Option<PathBuf>), Error> {
    fs::create_dir_all(dir.join("merged"))
        .map_err(io_error(format!("create `{}`", dir.display())))?;
    // The script's own output (a failed mount) and systemd's console (PID 1 writes to
    // /dev/console, which the script binds to console.log) go to separate files: both write
    // from offset 0 and would overwrite each other.
    let boot_log = fs::File::create(dir.join("boot.log"))
        .map_err(io_error("create the sandbox's boot log"))?;
    let boot_log_err = boot_log
        .try_clone()
        .map_err(io_error("open the sandbox's boot log"))?;
    fs::File::create(dir.join("console.log"))
        .map_err(io_error("create the sandbox's console log"))?;
    seed::write(&dir.join("seed")).map_err(io_error(format!("write `{}/seed`", dir.display())))?;

    let cgroup = create_cgroup(name);
    let procs = match &cgroup {
        Some(cg) => match fs::OpenOptions::new()
            .write(true)
            .open(cg.join("cgroup.procs"))
        {
            Ok(file) => Some(file),
            Err(e) => {
                remove_cgroup(cg);
                return Err(io_error(format!("open `{}/cgroup.procs`", cg.display()))(e));
            }
        },
        None => None,
    };

    let mut cmd = Command::new("unshare");
    cmd.args(["--pid", "--mount", "--uts", "--ipc"]);
    if cgroup.is_some() {
        cmd.arg("--cgroup");
    }
    if own_network {
        cmd.arg("--net");
    }
    cmd.args(["--fork", "--kill-child", "--propagation", "private"])
        .args(["sh", "-c", BOOT_SCRIPT, "boot.sh"])
        .arg(dir)
        .arg(if cgroup.is_some() { "yes" } else { "no" })
        .arg(seed::TARGET)
        .args(binds)
        .stdin(Stdio::null())
        .stdout(boot_log)
        .stderr(boot_log_err);
    let procs_fd = procs.as_ref().map(|f| f.as_raw_fd());
    // SAFETY: between fork and exec only async-signal-safe calls (setsid, prctl, getppid,
    // write) on memory that was prepared before the fork.
    unsafe {
        cmd.pre_exec(move || {
            // Its own session: no terminal signal of the test run reaches the sandbox.
            libc::setsid();
            // If this process dies without running Drop (Ctrl-C, SIGKILL, abort), unshare
            // gets SIGKILL, and `--kill-child` passes it on to PID 1: no systemd outlives
            // the test run. The signal follows the spawning *thread*, hence `spawner`.
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
            if libc::getppid() == 1 {
                // The parent died before prctl took effect.
                libc::_exit(1);
            }
            // Into the sandbox's cgroup before `unshare --cgroup`, which makes the cgroup we
            // are in the root of the new namespace. "0" means "the writing process".
            if let Some(fd) = procs_fd {
                if libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let spawned = spawner::spawn(cmd);
    drop(procs);
    match spawned {
        Ok(child) => Ok((child, cgroup)),
        Err(e) => {
            if let Some(cg) = &cgroup {
                remove_cgroup(cg);
            }
            Err(io_error("start `unshare`")(e))
        }
    }
}

impl Sandbox {
    /// Boots a private systemd and returns once it has finished booting (`running`, or
    /// `degraded` with the failed units named on its console, see [`Sandbox::console`]) and
    /// systemd answers on the system bus.
    pub fn boot(options: Options) -> Result<Sandbox, Error> {
        preflight()?;
        let name = fresh_name(&options.dir_prefix);
        let dir = base_dir().join(&name);
        sweep_leftovers(&base_dir());
        // Left over by a killed process that had our PID (so the sweep kept it).
        let _ = fs::remove_dir_all(&dir);
        let (unshare, cgroup) = match start(&name, &dir, &options.binds, options.own_network) {
            Ok(started) => started,
            Err(e) => {
                let _ = fs::remove_dir_all(&dir);
                return Err(e);
            }
        };
        // From here on, Drop cleans up whatever happens.
        let mut sandbox = Sandbox {
            pid: 0,
            unshare,
            dir,
            cgroup,
            own_network: options.own_network,
        };
        let deadline = Instant::now() + BOOT_TIMEOUT;
        sandbox.pid = sandbox.wait_for_pid1(deadline)?;
        sandbox.wait_until_booted(deadline)?;
        Ok(sandbox)
    }

    /// The tails of the boot script's output and systemd's console, for boot errors.
    fn console_tail(&self) -> String {
        let script = tail(&self.dir.join("boot.log"), CONSOLE_TAIL);
        let console = tail(&self.dir.join("console.log"), CONSOLE_TAIL);
        match (script.is_empty(), console.is_empty()) {
            (true, true) => "(nothing)".into(),
            (true, false) => console,
            (false, true) => script,
            (false, false) => format!("{script}\n{console}"),
        }
    }

    fn boot_failed(&mut self) -> Option<Error> {
        let exited = self.unshare.try_wait().ok().flatten().is_some();
        exited.then(|| Error::BootFailed {
            console: self.console_tail(),
        })
    }

    fn boot_timeout(&self, state: &str) -> Error {
        Error::BootTimeout {
            timeout: BOOT_TIMEOUT,
            state: state.into(),
            console: self.console_tail(),
        }
    }

    /// Finds unshare's child, the shell that execs into systemd (same PID).
    fn wait_for_pid1(&mut self, deadline: Instant) -> Result<u32, Error> {
        let parent = self.unshare.id();
        let children = format!("/proc/{parent}/task/{parent}/children");
        loop {
            if let Some(pid) = fs::read_to_string(&children)
                .ok()
                .and_then(|s| s.split_whitespace().next()?.parse().ok())
            {
                return Ok(pid);
            }
            if let Some(e) = self.boot_failed() {
                return Err(e);
            }
            if Instant::now() > deadline {
                return Err(self.boot_timeout("no PID 1 yet"));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Waits for `systemctl is-system-running` to say the boot is over, then for systemd's
    /// name on the system bus.
    fn wait_until_booted(&mut self, deadline: Instant) -> Result<(), Error> {
        let mut state = String::from("not answering");
        loop {
            if let Some(e) = self.boot_failed() {
                return Err(e);
            }
            // Until systemd has set up its private socket this fails at once; afterwards
            // `--wait` blocks until the boot is over, so there is little polling.
            let waiting = self
                .command("systemctl")
                .args(["is-system-running", "--wait"])
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .map_err(io_error("run `nsenter`"))?;
            if let Some(out) = wait_bounded(waiting, deadline) {
                state = out;
            }
            // systemctl talks over systemd's private socket; D-Bus clients (sysmgr) need
            // systemd to have taken its name on the bus, which happens a moment later.
            if matches!(state.as_str(), "running" | "degraded") && self.systemd_on_bus() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(self.boot_timeout(&state));
            }
            std::thread::sleep(Duration::from_millis(5));
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

    /// The sandbox's system bus, for D-Bus clients on the host (`DBUS_SYSTEM_BUS_ADDRESS`);
    /// root on the host authenticates as root inside.
    pub fn bus_address(&self) -> String {
        format!(
            "unix:path=/proc/{}/root/run/dbus/system_bus_socket",
            self.pid
        )
    }

    /// The sandbox's network namespace (`/proc/PID/ns/net`): its own with
    /// [`Options::own_network`], for `ip link set ... netns` and `nsenter --net=`.
    pub fn netns(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/ns/net", self.pid))
    }

    /// `/etc/systemd/system` of the sandbox, seen from the host.
    pub fn unit_dir(&self) -> PathBuf {
        self.root().join("etc/systemd/system")
    }

    /// The sandbox's directory on the host (`console.log`, `boot.log`, the mount point).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A command that runs `program` inside the sandbox: its mounts, PIDs, root and working
    /// directory (`/`). Its stdin is `/dev/null` unless the caller sets one.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg("-t")
            .arg(self.pid.to_string())
            .args(["-m", "-p", "-r", "-w"])
            .args(if self.own_network { &["-n"][..] } else { &[] })
            .arg("--")
            .arg(program)
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `argv` inside and returns its stdout; a non-zero exit is
    /// [`Error::CommandFailed`] with its stderr.
    ///
    /// # Panics
    ///
    /// If `argv` is empty (a bug in the caller).
    pub fn run(&self, argv: &[&str]) -> Result<String, Error> {
        let (program, args) = argv.split_first().expect("Sandbox::run needs a program");
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
            "--quiet",
            "-o",
            "short-monotonic",
            "-n",
            &lines,
            "-u",
            unit,
        ])
        .unwrap_or_default()
    }

    /// systemd's console output so far (its log at level notice and the units that failed).
    pub fn console(&self) -> String {
        fs::read_to_string(self.dir.join("console.log")).unwrap_or_default()
    }

    /// Tears the sandbox down now (the same as dropping it).
    pub fn shutdown(self) {}
}

/// Waits for `child` until `deadline` and returns its trimmed stdout; kills it when late.
fn wait_bounded(mut child: Child, deadline: Instant) -> Option<String> {
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(2)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
    // The state is one short line, well within a pipe's buffer, so waiting before reading
    // cannot deadlock.
    let mut out = String::new();
    io::Read::read_to_string(&mut child.stdout.take()?, &mut out).ok()?;
    Some(out.trim().to_string())
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if self.pid != 0 {
            // SIGKILL to a PID namespace's init makes the kernel kill every process in the
            // namespace; its mounts go with the last process that uses them.
            // SAFETY: kill has no memory preconditions; the PID is our child's child, which
            // cannot be reused before we reap `unshare` (its parent) below.
            unsafe {
                libc::kill(self.pid as libc::pid_t, libc::SIGKILL);
            }
        } else {
            let _ = self.unshare.kill();
        }
        // unshare exits after its child, PID 1, is reaped, and PID 1's exit completes only
        // once every other process of the namespace is gone.
        let _ = self.unshare.wait();
        if let Some(cgroup) = &self.cgroup {
            remove_cgroup(cgroup);
        }
        // Only the mount point and the logs are on disk (the overlay's layers were a tmpfs
        // of the namespace); retry briefly if the kernel is still releasing the mounts.
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every message a person may read, verbatim.
    #[test]
    fn error_messages() {
        assert_eq!(
            Error::NotRoot.to_string(),
            "booting a private systemd needs root (namespaces and mounts); run as root, e.g. with `sudo`"
        );
        assert_eq!(
            Error::Missing {
                path: "/lib/systemd/systemd",
                packages: "systemd dbus"
            }
            .to_string(),
            "`/lib/systemd/systemd` is missing; install it with `apt-get install -y systemd dbus`"
        );
        assert_eq!(
            Error::BootTimeout {
                timeout: BOOT_TIMEOUT,
                state: "starting".into(),
                console: "x.service: hangs".into()
            }
            .to_string(),
            "the private systemd did not finish booting within 30s (state: `starting`); look for \
             units that hang or fail; its console said:\nx.service: hangs"
        );
        assert_eq!(
            Error::BootFailed {
                console: "mount: failed".into()
            }
            .to_string(),
            "the private systemd exited while booting; its console said:\nmount: failed"
        );
        assert_eq!(
            Error::CommandFailed {
                argv: "systemctl start x.service".into(),
                status: "exit status: 1".into(),
                stderr: "Unit x.service not found.".into()
            }
            .to_string(),
            "`systemctl start x.service` failed in the sandbox (exit status: 1): Unit x.service not found."
        );
        assert_eq!(
            io_error("start `unshare`")(io::Error::from_raw_os_error(libc::ENOENT)).to_string(),
            "cannot start `unshare`: No such file or directory (os error 2)"
        );
    }

    #[test]
    fn names_are_unique_and_carry_the_prefix_and_pid() {
        let a = fresh_name("p");
        let b = fresh_name("p");
        assert_ne!(a, b);
        assert!(a.starts_with(&format!("p-{}-", std::process::id())), "{a}");
        assert!(fresh_name("").starts_with("sysmgr-sandbox-"));
    }

    #[test]
    fn the_pid_is_read_back_from_a_name() {
        assert_eq!(pid_in_name("sysmgr-test-123-4"), Some(123));
        assert_eq!(pid_in_name("x-1-0"), Some(1));
        assert_eq!(pid_in_name("123-4"), None);
        assert_eq!(pid_in_name("sysmgr-test-abc-4"), None);
        assert_eq!(pid_in_name("sysmgr-test-123-x"), None);
        assert!(!made_by_a_dead_process(OsStr::new(&fresh_name("alive"))));
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        let dir = std::env::temp_dir().join(fresh_name("sysmgr-sandbox-tail"));
        fs::write(&dir, "1\n2\n3\n").unwrap();
        assert_eq!(tail(&dir, 2), "2\n3");
        assert_eq!(tail(&dir, 10), "1\n2\n3");
        fs::remove_file(&dir).unwrap();
        assert_eq!(tail(&dir, 2), "");
    }

    #[test]
    fn the_seed_masks_units_disables_generators_and_names_the_target() {
        let dir = std::env::temp_dir().join(fresh_name("sysmgr-sandbox-seed"));
        seed::write(&dir).unwrap();
        let units = dir.join("etc/systemd/system");
        for unit in [
            "systemd-sysctl.service",
            "modprobe@.service",
            "getty.target",
        ] {
            assert_eq!(
                fs::read_link(units.join(unit)).unwrap(),
                Path::new("/dev/null")
            );
        }
        let target = fs::read_to_string(units.join(seed::TARGET)).unwrap();
        assert!(target.contains("Requires=dbus.socket dbus.service sockets.target"));
        if Path::new("/lib/systemd/system-generators/systemd-fstab-generator").exists() {
            assert_eq!(
                fs::read_link(dir.join("etc/systemd/system-generators/systemd-fstab-generator"))
                    .unwrap(),
                Path::new("/dev/null")
            );
        }
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn preflight_passes_as_root_on_a_machine_with_systemd() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            preflight().unwrap();
        } else {
            assert!(matches!(preflight(), Err(Error::NotRoot)));
        }
    }
}
