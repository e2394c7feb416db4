//! PM2 on the host, for the side-by-side comparison: an npm-installed PM2 whose daemon and
//! cluster workers this benchmark starts, and ends by PID when it is done.
//!
//! PM2 cannot take sockets from systemd, so it runs outside the sandbox, on the host's
//! loopback, with its own `PM2_HOME` in a temporary directory (it never touches a PM2 the
//! machine may already run). Its app is the same `examples/node/app.js` that sysmgr runs:
//! without `LISTEN_FDS` the file binds `SYSMGR_DEV_LISTEN` itself, which under PM2's cluster
//! mode goes through PM2's master process, and it sends PM2's `ready` message. The Express
//! part starts the articles' own ecosystem.config.js instead, as a PM2 user would
//! ([`Pm2::start_file`]).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// How long any one `pm2` command may take before the benchmark gives up on it.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// A running PM2 daemon with one cluster-mode app. Dropping it runs `pm2 kill` and then ends,
/// by PID, whatever it started that is still alive.
pub struct Pm2 {
    bin: PathBuf,
    home: PathBuf,
    /// The app's name in the ecosystem file (what `pm2 reload` is given).
    app: String,
    /// The daemon and every worker PID seen, to end them by PID if `pm2 kill` does not.
    pids: Vec<u32>,
}

/// Where `npm install --prefix DIR pm2` puts the command.
pub fn binary(prefix: &Path) -> PathBuf {
    prefix.join("node_modules/pm2/bin/pm2")
}

/// The version of the PM2 installed under `prefix`, from its package.json (not from `pm2
/// --version`, which may start a daemon); empty if unknown.
pub fn version(prefix: &Path) -> String {
    std::fs::read_to_string(prefix.join("node_modules/pm2/package.json"))
        .ok()
        .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
        .and_then(|v| v["version"].as_str().map(str::to_string))
        .unwrap_or_default()
}

/// Installs PM2 under `prefix` unless it is there; an error says why it could not.
pub fn install(prefix: &Path) -> Result<PathBuf, String> {
    let bin = binary(prefix);
    if bin.exists() {
        return Ok(bin);
    }
    std::fs::create_dir_all(prefix)
        .map_err(|e| format!("cannot create `{}`: {e}", prefix.display()))?;
    let mut cmd = Command::new("npm");
    cmd.args(["install", "--no-audit", "--no-fund", "--prefix"])
        .arg(prefix)
        .arg("pm2@latest");
    let out = bounded(cmd, Duration::from_secs(180))?;
    if !out.status.success() || !bin.exists() {
        return Err(format!(
            "`npm install pm2` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(bin)
}

/// Runs `cmd` with its output captured, killing it (by its PID) after `limit`.
fn bounded(mut cmd: Command, limit: Duration) -> Result<Output, String> {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    let pid = child.id();
    // The pipes are read by wait_with_output on another thread, so a chatty command cannot
    // block on a full pipe while this one watches the clock.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => out.map_err(|e| format!("cannot wait for {cmd:?}: {e}")),
        Err(_) => {
            kill(pid);
            Err(format!("{cmd:?} took more than {} s", limit.as_secs()))
        }
    }
}

/// A fresh `PM2_HOME` for one daemon: two in one run never share one.
fn new_home() -> Result<PathBuf, String> {
    static STARTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let home = std::env::temp_dir().join(format!("sysmgr-bench-pm2-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&home).map_err(|e| format!("cannot create PM2_HOME: {e}"))?;
    Ok(home)
}

pub(crate) fn kill(pid: u32) {
    // SAFETY: kill has no memory preconditions; the PID is one this benchmark started.
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGKILL);
    }
}

/// True while `pid` is a process of this PM2: its environment names this `PM2_HOME` (a PID
/// that ended and was reused by another program is left alone).
fn ours(pid: u32, home: &Path) -> bool {
    let needle = format!("PM2_HOME={}", home.display());
    std::fs::read(format!("/proc/{pid}/environ"))
        .is_ok_and(|env| env.split(|&b| b == 0).any(|var| var == needle.as_bytes()))
}

impl Pm2 {
    /// Starts PM2's daemon with `instances` cluster workers of `app_js` on `port`, and waits
    /// until the command returns (PM2 waits for the workers' `ready` with `wait_ready`).
    pub fn start(bin: &Path, app_js: &Path, instances: u32, port: u16) -> Result<Pm2, String> {
        // The same drain budget and readiness handshake as the sysmgr units: PM2's own
        // defaults (kill_timeout 1600 ms, SIGINT), `wait_ready` so a reload waits for `ready`.
        Pm2::start_with_kill_timeout(bin, app_js, instances, port, 1600)
    }

    /// [`Pm2::start`] with PM2's `kill_timeout` (and the app's `SYSMGR_KILL_TIMEOUT_MS`, from
    /// which it plans its drain) set to `kill_timeout_ms`: a drain longer than PM2's default
    /// 1600 ms needs more.
    pub fn start_with_kill_timeout(
        bin: &Path,
        app_js: &Path,
        instances: u32,
        port: u16,
        kill_timeout_ms: u64,
    ) -> Result<Pm2, String> {
        let ecosystem = serde_json::json!({
            "apps": [{
                "name": "bench",
                "script": app_js,
                "exec_mode": "cluster",
                "instances": instances,
                "wait_ready": true,
                "listen_timeout": 10000,
                "kill_timeout": kill_timeout_ms,
                "autorestart": true,
                "env": {
                    "SYSMGR_DEV_LISTEN": format!("127.0.0.1:{port}"),
                    "SYSMGR_KILL_TIMEOUT_MS": kill_timeout_ms.to_string(),
                },
            }]
        });
        let home = new_home()?;
        let file = home.join("ecosystem.json");
        std::fs::write(&file, ecosystem.to_string())
            .map_err(|e| format!("cannot write `{}`: {e}", file.display()))?;
        Pm2::start_in(bin, home, &file, "bench")
    }

    /// Starts PM2's daemon with the ecosystem file `file` as it is (`pm2 start FILE`, run in
    /// the file's directory as a user would), whose app is named `app`.
    pub fn start_file(bin: &Path, file: &Path, app: &str) -> Result<Pm2, String> {
        Pm2::start_in(bin, new_home()?, file, app)
    }

    fn start_in(bin: &Path, home: PathBuf, file: &Path, app: &str) -> Result<Pm2, String> {
        let mut pm2 = Pm2 {
            bin: bin.to_path_buf(),
            home,
            app: app.to_string(),
            pids: Vec::new(),
        };
        let mut cmd = pm2.command(&["start", &file.display().to_string()]);
        if let Some(dir) = file.parent() {
            cmd.current_dir(dir);
        }
        pm2.check(cmd, "start")?;
        pm2.remember_pids();
        Ok(pm2)
    }

    /// The PIDs of the app's processes now (from `pm2 jlist`).
    pub fn workers(&self) -> Vec<u32> {
        self.jlist()
    }

    /// `pm2 ARGS` against this daemon; an error carries its output.
    pub fn run(&self, args: &[&str]) -> Result<String, String> {
        self.check(self.command(args), &args.join(" "))
    }

    /// The command `pm2 ARGS` against this daemon (its `PM2_HOME` set), not run.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.args(args).env("PM2_HOME", &self.home);
        cmd
    }

    /// Runs `cmd` (`pm2 WHAT`), bounded; its stdout, or an error with its output.
    fn check(&self, cmd: Command, what: &str) -> Result<String, String> {
        let out = bounded(cmd, COMMAND_TIMEOUT)?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "`pm2 {what}` failed ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout).trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// `pm2 reload APP`, timed; PM2 returns once every worker was replaced.
    pub fn reload(&mut self) -> Result<Duration, String> {
        let started = Instant::now();
        let app = self.app.clone();
        self.run(&["reload", &app])?;
        let took = started.elapsed();
        self.remember_pids();
        Ok(took)
    }

    /// Records the daemon's and the workers' PIDs (from `pm2.pid` and `pm2 jlist`).
    fn remember_pids(&mut self) {
        if let Some(pid) = std::fs::read_to_string(self.home.join("pm2.pid"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            self.pids.push(pid);
        }
        let workers = self.jlist();
        self.pids.extend(workers);
        self.pids.sort_unstable();
        self.pids.dedup();
    }

    /// The workers' PIDs from `pm2 jlist`; empty if it cannot be read.
    fn jlist(&self) -> Vec<u32> {
        let Ok(list) = self.run(&["jlist"]) else {
            return Vec::new();
        };
        // jlist prints JSON, sometimes after a line of PM2's own chatter.
        let json = list.find('[').map_or("", |i| &list[i..]);
        match serde_json::from_str(json) {
            Ok(serde_json::Value::Array(apps)) => apps
                .iter()
                .filter_map(|a| a["pid"].as_u64())
                .filter(|&p| p > 0)
                .map(|p| p as u32)
                .collect(),
            _ => Vec::new(),
        }
    }
}

impl Drop for Pm2 {
    fn drop(&mut self) {
        let _ = self.run(&["kill"]);
        // `pm2 kill` ends the daemon and its workers; whatever is left (it timed out) is ended
        // here, by the PIDs this benchmark saw.
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.pids.iter().any(|&p| ours(p, &self.home)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        for &pid in &self.pids {
            if ours(pid, &self.home) {
                kill(pid);
            }
        }
        let _ = std::fs::remove_dir_all(&self.home);
    }
}
