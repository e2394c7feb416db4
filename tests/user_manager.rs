//! `sysmgr --user` against a real `systemd --user`: generate, start, reload under load, status
//! and delete through the user's own manager and session bus, the way someone without root
//! runs an app. The other areas test the system manager in a private PID 1; a user manager
//! needs much less (see "B. User manager" in the shared testing-with-systemd notes), so each
//! test here boots one in a private mount namespace with its own `HOME` and runtime directory.

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use sysmgr_load::{get_blocking, Background, LoadConfig, Mode};

use crate::support::{free_port, status_instances, sysmgr_bin, tree, workspace_bin, write, Run};

/// Sets up and keeps a user manager until its stdin closes, then stops it by PID.
///
/// `systemd --user` refuses to run unless `/run/systemd/system` exists, and creating that on
/// the shared root would make every `sysmgr` on the machine believe systemd is PID 1; so it
/// goes on a tmpfs over `/run/systemd` in this namespace only. SIGTERM makes a user manager
/// start `exit.target`, which stops every unit it runs (the workers included) before it
/// exits; the SIGKILL after 30 s is a guard for a manager that hangs. The session bus is the
/// manager's own `dbus.socket` (Debian's dbus-user-session), as in a login session: a second
/// `dbus-daemon` on the same address would be replaced by it under a running test.
const SCRIPT: &str = r#"
set -eu
dir=$1
mount -t tmpfs tmpfs /run/systemd
mkdir /run/systemd/system
/lib/systemd/systemd --user >"$dir/manager.log" 2>&1 &
manager=$!
stop() {
    kill -TERM "$manager" 2>/dev/null || true
    gone=
    for _ in $(seq 300); do
        # Gone, or a zombie bash has not reaped yet.
        read -r _ _ state _ 2>/dev/null <"/proc/$manager/stat" || { gone=1; break; }
        [ "$state" = Z ] && { gone=1; break; }
        sleep 0.1
    done
    [ -n "$gone" ] || kill -KILL "$manager" 2>/dev/null || true
    wait "$manager" || true
}
trap stop EXIT
trap 'exit 1' TERM INT HUP
state=
for _ in $(seq 300); do
    state=$(systemctl --user is-system-running 2>/dev/null || true)
    case $state in running|degraded) break ;; esac
    sleep 0.1
done
case $state in
    running|degraded) ;;
    *) echo "the user manager did not come up: \`$state\`" >&2; exit 1 ;;
esac
# The first client of the session bus starts the manager's dbus.service, and the manager joins
# that bus only once the service runs; wait for it, as a login session has long before anyone
# types a command.
for _ in $(seq 300); do
    busctl --user call org.freedesktop.systemd1 /org/freedesktop/systemd1 \
        org.freedesktop.DBus.Peer Ping >/dev/null 2>&1 && break
    sleep 0.1
done
echo "ready $$"
read -r _ || true
"#;

/// One `systemd --user` with its session bus, in a private mount namespace, for one test.
struct UserManager {
    /// Holds `home/` and `run/` (`XDG_RUNTIME_DIR`), removed last.
    dir: tempfile::TempDir,
    /// `timeout ... unshare ... bash`, our child.
    shell: Child,
    /// The script's bash (`unshare` execs it), in the mount namespace `nsenter` enters.
    namespace_pid: u32,
    /// Closing it lets the script stop the manager.
    stdin: Option<ChildStdin>,
    /// One user manager at a time on this machine: without cgroup delegation (cgroup v1 here)
    /// every manager's units share the cgroup of the process that booted it, so one manager
    /// stopping its `dbus.service` at teardown kills the bus of another, also one booted by
    /// another test run (a second checkout, the soak). Dropped last.
    _one_at_a_time: crate::support::OneAtATime,
}

impl UserManager {
    fn boot() -> Self {
        let one_at_a_time = crate::support::OneAtATime::take("user-manager");
        let dir = tempfile::Builder::new()
            .prefix("sysmgr-user-test")
            .tempdir()
            .unwrap();
        std::fs::create_dir(dir.path().join("home")).unwrap();
        // The manager and the bus insist on a runtime directory only its owner can enter.
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(dir.path().join("run"))
            .unwrap();
        let mut cmd = Command::new("timeout");
        // A bound on the whole test's manager; Drop ends it long before.
        cmd.args(["600", "unshare", "--mount", "--propagation", "private"])
            .args(["bash", "-c", SCRIPT, "bash"])
            .arg(dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        let env = Self::env_of(dir.path());
        Self::apply_env(&mut cmd, &env);
        let mut shell = cmd.spawn().expect("timeout, unshare and bash run");
        let stdin = shell.stdin.take();
        let mut line = String::new();
        BufReader::new(shell.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        // `timeout` forks, so the namespace is the script's (`ready PID`), not our child's.
        let namespace_pid = line
            .trim()
            .strip_prefix("ready ")
            .and_then(|p| p.parse().ok());
        let um = UserManager {
            _one_at_a_time: one_at_a_time,
            dir,
            shell,
            namespace_pid: namespace_pid.unwrap_or(0),
            stdin,
        };
        assert!(
            namespace_pid.is_some(),
            "the user manager did not start (script said {line:?}); its log:\n{}",
            std::fs::read_to_string(um.dir.path().join("manager.log")).unwrap_or_default()
        );
        um
    }

    fn env_of(dir: &Path) -> Vec<(&'static str, String)> {
        let run = dir.join("run");
        vec![
            ("HOME", dir.join("home").display().to_string()),
            ("XDG_RUNTIME_DIR", run.display().to_string()),
            (
                "DBUS_SESSION_BUS_ADDRESS",
                format!("unix:path={}", run.join("bus").display()),
            ),
        ]
    }

    fn apply_env(cmd: &mut Command, env: &[(&'static str, String)]) {
        cmd.envs(env.iter().map(|(k, v)| (k, v)))
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("SYSMGR_BLESS");
    }

    /// `$HOME/.config/systemd/user`, where `sysmgr --user` writes units by default.
    fn unit_dir(&self) -> PathBuf {
        self.dir.path().join("home/.config/systemd/user")
    }

    /// `program` inside the manager's mount namespace with the user session's environment.
    fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let pid = self.namespace_pid;
        let mut cmd = Command::new("nsenter");
        cmd.args(["--mount", "--target", &pid.to_string(), "--"])
            .arg(program);
        Self::apply_env(&mut cmd, &Self::env_of(self.dir.path()));
        cmd
    }

    /// `sysmgr --user ARGS` in the user's session.
    fn sysmgr(&self, args: &[&str]) -> Run {
        self.command(sysmgr_bin())
            .arg("--user")
            .args(args)
            .output()
            .expect("nsenter runs")
            .into()
    }

    /// `systemctl --user show -p PROP --value UNIT`.
    fn show(&self, unit: &str, prop: &str) -> String {
        let out = self
            .command("systemctl")
            .args(["--user", "show", "-p", prop, "--value", unit])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// `sysmgr --user status NAME --json`: instance number -> (state, pid).
    fn instances(&self, app: &str) -> BTreeMap<u64, (String, u64)> {
        status_instances(&self.sysmgr(&["status", app, "--json"]))
    }
}

impl Drop for UserManager {
    fn drop(&mut self) {
        // EOF on the script's `read`: its EXIT trap stops the manager (30 s at most).
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(40);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.shell.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // Only when the script itself hangs: `timeout` passes SIGTERM on, and the trap runs.
        let _ = Command::new("kill")
            .arg(self.shell.id().to_string())
            .status();
        let _ = self.shell.wait();
    }
}

/// An app file for the reference worker, `per-instance` sockets so that the kernel spreads
/// fresh connections over both instances and a test can see each one answer.
fn hello_app(name: &str, n: u32, port: u16) -> String {
    format!(
        "name = \"{name}\"\ncommand = [\"{}\"]\ninstances = {n}\nlisten = [\"127.0.0.1:{port}\"]\nsocket = \"per-instance\"\nkill_timeout = 3000\n",
        workspace_bin("sysmgr-hello").display()
    )
}

/// The PIDs that answer `/` on `addr` over fresh connections, until `want` distinct ones
/// have answered or 400 requests were made.
fn answering_pids(addr: SocketAddr, want: usize) -> Vec<u64> {
    let mut pids = Vec::new();
    for _ in 0..400 {
        let (status, body) = get_blocking(addr, "/", Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("GET / on {addr} failed: {e}"));
        assert_eq!(status, 200, "{body}");
        // `instance {i} pid {p}\n`
        let pid = body
            .trim()
            .rsplit_once("pid ")
            .and_then(|(_, p)| p.parse().ok())
            .unwrap_or_else(|| panic!("unexpected answer {body:?}"));
        if !pids.contains(&pid) {
            pids.push(pid);
        }
        if pids.len() == want {
            break;
        }
    }
    pids.sort_unstable();
    pids
}

// soak: zero loss
#[test]
fn user_manager_generate_start_reload_and_delete() {
    let um = UserManager::boot();
    let port = free_port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let app_dir = um.dir.path().join("app");
    std::fs::create_dir(&app_dir).unwrap();
    let file = write(&app_dir, "app.toml", &hello_app("web", 2, port));
    let file = file.to_str().unwrap();

    // generate: the units land in ~/.config/systemd/user and the user manager re-reads them.
    let r = um.sysmgr(&["generate", file]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let dir = um.unit_dir();
    assert!(
        r.stderr.contains(&format!(
            "generated `web`: 3 unit files, 2 instances in {}",
            dir.display()
        )),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("reloaded systemd"), "{}", r.stderr);
    let files = tree(&dir);
    for unit in ["web@.service", "web@.socket", "web.target"] {
        assert!(files.contains(&unit.to_string()), "{unit} in {files:?}");
    }
    // A template itself cannot be shown; its instances can.
    for unit in ["web@1.service", "web@2.socket", "web.target"] {
        assert_eq!(um.show(unit, "LoadState"), "loaded", "{unit}");
    }
    assert_eq!(um.show("web.target", "ActiveState"), "inactive");

    // start FILE: both instances run and each answers on the port.
    let r = um.sysmgr(&["start", file]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let before = um.instances("web");
    assert_eq!(before.len(), 2, "{before:?}");
    for (i, (state, pid)) in &before {
        assert_eq!(state, "active/running", "instance {i}");
        assert_ne!(*pid, 0, "instance {i}");
    }
    let mut old_pids: Vec<u64> = before.values().map(|(_, pid)| *pid).collect();
    old_pids.sort_unstable();
    assert_eq!(answering_pids(addr, 2), old_pids);
    let r = um.sysmgr(&["list"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("web"), "{}", r.stdout);

    // reload NAME under keep-alive load: every process is replaced and no request fails.
    let load = Background::start(LoadConfig {
        connections: 4,
        mode: Mode::KeepAlive,
        // Stopped after the reload; the duration is only a bound.
        duration: Duration::from_secs(60),
        request_timeout: Duration::from_secs(5),
        ..LoadConfig::new(addr)
    });
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let r = um.sysmgr(&["reload", "web"]);
    let took = started.elapsed();
    std::thread::sleep(Duration::from_millis(300));
    let report = load.stop();
    eprintln!("reload took {took:?}; load: {report}\n{}", r.stderr);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("reload web: 2 of 2 instances ready in "),
        "{}",
        r.stderr
    );
    assert_eq!(report.failed, 0, "{:?}", report.failures);
    assert_eq!(report.hung, 0);
    assert!(report.ok > 50, "only {} requests", report.ok);
    let after = um.instances("web");
    assert_eq!(after.len(), 2, "{after:?}");
    for (i, (state, pid)) in &after {
        assert_eq!(state, "active/running", "instance {i}");
        assert!(!old_pids.contains(pid), "instance {i} kept pid {pid}");
    }
    let mut new_pids: Vec<u64> = after.values().map(|(_, pid)| *pid).collect();
    new_pids.sort_unstable();
    assert_eq!(answering_pids(addr, 2), new_pids);

    // delete NAME: the app stops, its units leave the directory and the manager forgets them.
    let r = um.sysmgr(&["delete", "web"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let left: Vec<String> = tree(&dir)
        .into_iter()
        .filter(|f| f.contains("web"))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    for unit in ["web@1.service", "web@2.socket", "web.target"] {
        assert_eq!(um.show(unit, "LoadState"), "not-found", "{unit}");
    }
    for pid in &new_pids {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "worker {pid} still runs after delete"
        );
    }
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "port {port} still listens after delete"
    );
    let r = um.sysmgr(&["status", "web"]);
    assert_ne!(r.code, 0, "status of a deleted app: {}", r.stdout);
}

#[test]
fn the_demo_uses_the_user_manager_where_systemd_runs() {
    workspace_bin("sysmgr-hello");
    let um = UserManager::boot();
    let pm2_port = free_port().to_string();
    let r: Run = um
        .command(workspace_bin("sysmgr-demo"))
        .args(["--seconds", "1", "--instances", "2", "--connections", "4"])
        .args(["--pm2-port", &pm2_port])
        .output()
        .expect("nsenter runs")
        .into();
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout.starts_with(
            "== systemd runs this machine: the demo uses your user manager (systemctl --user)"
        ),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("\n$ sysmgr --user reload hello\n"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("== every instance was replaced and no request failed\n"),
        "{}",
        r.stdout
    );
    // Act 2, the PM2 app, runs in the user's manager too, from the ecosystem file's
    // directory.
    assert!(
        r.stdout.contains(&format!(
            "\n$ sysmgr --user start ecosystem.config.js --listen 127.0.0.1:{pm2_port}\n"
        )),
        "{}",
        r.stdout
    );
    assert_eq!(
        r.stdout
            .matches("\n== every instance was replaced and no request failed\n")
            .count(),
        2,
        "{}",
        r.stdout
    );
    // The demo deletes each app from the user's manager after its act.
    assert!(
        r.stdout.contains("\n$ sysmgr --user delete hello\n"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.trim_end().ends_with("$ sysmgr --user delete app"),
        "{}",
        r.stdout
    );
    assert!(!um.unit_dir().join("hello@.service").exists());
    assert!(!um.unit_dir().join("app@.service").exists());
}

/// `health_check` under the user manager: the health sockets are in the user's runtime
/// directory (`%t`), reachable by the user's own `sysmgr --user`, and gate the reload.
#[test]
fn user_manager_health_check_asks_each_new_instance_in_the_runtime_directory() {
    let um = UserManager::boot();
    let port = free_port();
    let app_dir = um.dir.path().join("app");
    std::fs::create_dir(&app_dir).unwrap();
    let health = "health_check = { path = \"/health\", timeout = \"1s\" }\n";
    let good = format!("{}{health}", hello_app("web", 2, port));
    let file = write(&app_dir, "app.toml", &good);
    let file = file.to_str().unwrap();
    let r = um.sysmgr(&["start", file]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let sock = um.dir.path().join("run/sysmgr/web/health-1.sock");
    assert!(sock.exists(), "{} is the health socket", sock.display());
    assert_eq!(
        um.show("web-sysmgr-health@2.socket", "ActiveState"),
        "active"
    );

    let hello = workspace_bin("sysmgr-hello").display().to_string();
    let bad = good.replace(
        &format!("[\"{hello}\"]"),
        &format!("[\"{hello}\", \"--health-status\", \"500\"]"),
    );
    write(&app_dir, "app.toml", &bad);
    let r = um.sysmgr(&["reload", file]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("failed (the new process is not healthy: `GET /health` on its own socket answered `HTTP/1.1 500 Internal Server Error` (asked "),
        "{}",
        r.stderr
    );
    assert_eq!(um.instances("web")[&2].0, "active/running");

    write(&app_dir, "app.toml", &good);
    let r = um.sysmgr(&["reload", file]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = um.sysmgr(&["delete", "web"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!sock.exists(), "the socket left with its unit");
}

/// `cron_restart` under the user manager: the timer's service runs `sysmgr --user reload`.
#[test]
fn user_manager_cron_restart_reloads_through_the_user_manager() {
    let um = UserManager::boot();
    let port = free_port();
    let app_dir = um.dir.path().join("app");
    std::fs::create_dir(&app_dir).unwrap();
    let second = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 6)
        % 60;
    let text = format!(
        "{}cron_restart = \"{second} * * * * *\"\n",
        hello_app("web", 1, port)
    );
    let file = write(&app_dir, "app.toml", &text);
    let r = um.sysmgr(&["start", file.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(um.show("web-cron.timer", "ActiveState"), "active");
    let before = um.instances("web")[&1].1;
    let after = crate::support::wait_for(70, || {
        let pid = um.instances("web").get(&1).map(|(_, pid)| *pid)?;
        (pid != before && pid != 0 && um.show("web-cron.service", "Result") == "success")
            .then_some(pid)
    });
    assert!(
        after.is_some(),
        "not reloaded: {}",
        um.sysmgr(&["status", "web"]).stdout
    );
    let r = um.sysmgr(&["delete", "web"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!um.unit_dir().join("web-cron.timer").exists());
}
