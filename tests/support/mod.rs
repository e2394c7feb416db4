//! Test support: the built binaries, temporary app files, and running `sysmgr`.

#![allow(dead_code)] // Each test module uses its own part of this.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `sysmgr` binary cargo built for these tests.
pub fn sysmgr_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_sysmgr"))
}

/// A `sysmgr` command with a clean environment for the parts that matter.
pub fn sysmgr() -> Command {
    let mut cmd = Command::new(sysmgr_bin());
    cmd.env_remove("SYSMGR_BLESS");
    cmd
}

/// The result of running a command, with text helpers.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

/// Runs `sysmgr ARGS` in `dir`.
pub fn run_in(dir: &Path, args: &[&str]) -> Run {
    sysmgr()
        .args(args)
        .current_dir(dir)
        .output()
        .expect("sysmgr runs")
        .into()
}

/// Writes `text` to `dir/name` and returns the path.
pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// The files and links below `dir`, relative, sorted, links shown as `path -> target`.
pub fn tree(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let path = e.path();
            let rel = path.strip_prefix(base).unwrap().display().to_string();
            let ft = e.file_type().unwrap();
            if ft.is_symlink() {
                out.push(format!(
                    "{rel} -> {}",
                    std::fs::read_link(&path).unwrap().display()
                ));
            } else if ft.is_dir() {
                walk(base, &path, out);
            } else {
                out.push(rel);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// The directory cargo builds into (where `sysmgr`, `sysmgr-hello` and `sysmgr-probe` are).
pub fn bin_dir() -> PathBuf {
    sysmgr_bin().parent().unwrap().to_path_buf()
}

/// A binary of the workspace built next to `sysmgr` (`cargo test --workspace` builds them).
pub fn workspace_bin(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.exists(),
        "`{}` is missing; run `cargo build --workspace` (or scripts/test) first",
        path.display()
    );
    path
}

/// A private systemd for one test, with the repo and the build directory visible inside at
/// the same paths, so `sandbox.command(sysmgr_bin())` runs the binary under test there.
pub fn sandbox() -> sysmgr_sandbox::Sandbox {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let target = bin_dir().parent().unwrap().to_path_buf();
    let mut binds = vec![repo.clone()];
    if !target.starts_with(&repo) {
        binds.push(target);
    }
    sysmgr_sandbox::Sandbox::boot(sysmgr_sandbox::Options {
        binds,
        dir_prefix: "sysmgr-test".into(),
        ..Default::default()
    })
    .expect("a private systemd boots (needs root, systemd and dbus: scripts/setup)")
}

/// Runs `sysmgr ARGS` inside the sandbox, where /etc/systemd/system and the system bus are
/// the private manager's.
pub fn sysmgr_in(sb: &sysmgr_sandbox::Sandbox, args: &[&str]) -> Run {
    sb.command(sysmgr_bin())
        .args(args)
        .output()
        .expect("nsenter runs")
        .into()
}

/// Writes a file inside the sandbox at `path` (absolute, as seen inside); returns `path`.
pub fn write_in(sb: &sysmgr_sandbox::Sandbox, path: &str, text: &str) -> String {
    let host = sb.root().join(path.trim_start_matches('/'));
    std::fs::create_dir_all(host.parent().unwrap()).unwrap();
    std::fs::write(&host, text).unwrap();
    path.to_string()
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `f` every 20 ms until it returns `Some`, for at most `secs` seconds.
pub fn wait_for<T>(secs: u64, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if let Some(t) = f() {
            return Some(t);
        }
        if std::time::Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// `systemctl is-active UNIT` inside the sandbox: `active`, `inactive`, `failed`... (its exit
/// code says only whether the unit is active, so it is not an error here).
pub fn unit_state(sb: &sysmgr_sandbox::Sandbox, unit: &str) -> String {
    let out = sb
        .command("systemctl")
        .args(["is-active", unit])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Parses `sysmgr status NAME --json` output: instance number -> (`active/sub` state, main PID,
/// 0 when none).
pub fn status_instances(r: &Run) -> std::collections::BTreeMap<u64, (String, u64)> {
    assert_eq!(r.code, 0, "status failed: {}", r.stderr);
    let json: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    json["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let state = format!(
                "{}/{}",
                i["active_state"].as_str().unwrap(),
                i["sub_state"].as_str().unwrap()
            );
            (
                i["instance"].as_u64().unwrap(),
                (state, i["pid"].as_u64().unwrap_or(0)),
            )
        })
        .collect()
}

/// The `---DIR/NAME.target.wants/NAME@N.service---` headers of a successful
/// `sysmgr generate --dry-run`, in order.
pub fn dry_run_wants_links(out: &Output) -> Vec<String> {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("---") && l.contains(".wants/"))
        .map(str::to_string)
        .collect()
}

/// An exclusive `flock(2)` on a lock file named `sysmgr-tests-NAME.lock` that every test run on
/// this machine opens: tests that must not overlap (user managers sharing a cgroup, the
/// 1024-instance loads) take it, also across test runs; held until drop (closing the file
/// releases it, also when the process dies).
pub struct OneAtATime(#[allow(dead_code)] std::fs::File);

impl OneAtATime {
    /// Waits for the lock `name`.
    pub fn take(name: &str) -> Self {
        use std::os::fd::AsRawFd as _;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(std::env::temp_dir().join(format!("sysmgr-tests-{name}.lock")))
            .expect("the lock file opens");
        // SAFETY: flock on an fd this function owns.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        assert_eq!(rc, 0, "flock: {}", std::io::Error::last_os_error());
        Self(file)
    }
}

/// Links the `sysmgr` under test as a system generator inside the sandbox
/// (`/etc/systemd/system-generators/sysmgr-generator`), as the package does in
/// `/usr/lib`; the next `daemon-reload` runs it on `/etc/sysmgr`.
pub fn install_generator(sb: &sysmgr_sandbox::Sandbox) {
    let dir = sb.root().join("etc/systemd/system-generators");
    std::fs::create_dir_all(&dir).unwrap();
    std::os::unix::fs::symlink(sysmgr_bin(), dir.join("sysmgr-generator")).unwrap();
}
