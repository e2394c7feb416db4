//! The private systemd every other area's tests stand on (`sysmgr-sandbox`): it boots to
//! `running`, runs written and socket-activated units, keeps its writes, its /tmp and its
//! processes to itself, boots several at once without them seeing each other, and leaves
//! nothing behind when dropped.

use std::io::Read as _;
use std::net::TcpStream;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sysmgr_sandbox::{Error, Options, Sandbox};

use crate::support::{free_port, wait_for};

fn boot(prefix: &str) -> Sandbox {
    Sandbox::boot(Options {
        binds: Vec::new(),
        dir_prefix: prefix.into(),
        ..Default::default()
    })
    .unwrap_or_else(|e| panic!("a private systemd boots: {e}"))
}

/// The inode of a process's PID namespace, which every process of a sandbox shares.
fn pid_namespace(pid: u32) -> Option<u64> {
    std::fs::metadata(format!("/proc/{pid}/ns/pid"))
        .ok()
        .map(|m| m.ino())
}

/// The host PIDs of every process in the PID namespace `ns`.
fn processes_in(ns: u64) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid_namespace(pid) == Some(ns))
        .collect()
}

/// The sandbox's cgroup on the host, from its PID 1's `0::` line (seen from the host).
fn host_cgroup(pid: u32) -> Option<PathBuf> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let path = text.lines().find_map(|l| l.strip_prefix("0::"))?;
    ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
        .iter()
        .map(|mnt| Path::new(mnt).join(path.trim_start_matches('/')))
        .find(|p| p.join("cgroup.procs").exists())
}

fn write_unit(sb: &Sandbox, name: &str, text: &str) {
    std::fs::write(sb.unit_dir().join(name), text).unwrap();
}

#[test]
fn boots_to_running_with_no_failed_unit() {
    let sb = boot("sysmgr-t-running");
    let state = sb
        .command("systemctl")
        .arg("is-system-running")
        .output()
        .unwrap();
    let failed = sb
        .systemctl(&["--failed", "--plain", "--no-legend"])
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&state.stdout).trim(),
        "running",
        "failed units: {failed}\nconsole:\n{}",
        sb.console()
    );
    assert_eq!(failed.trim(), "");
    // It is a PID namespace of its own, with systemd as its PID 1.
    assert_eq!(sb.run(&["cat", "/proc/1/comm"]).unwrap().trim(), "systemd");
    assert_ne!(pid_namespace(sb.pid()), pid_namespace(std::process::id()));
    // Its system bus is reachable from the host where bus_address says.
    let path = sb.bus_address();
    let path = path.strip_prefix("unix:path=").unwrap();
    std::os::unix::net::UnixStream::connect(path).expect("the sandbox's system bus answers");
}

#[test]
fn a_written_unit_starts_and_its_output_reaches_the_journal() {
    let sb = boot("sysmgr-t-unit");
    write_unit(
        &sb,
        "sandbox-probe.service",
        "[Service]\nExecStart=/bin/sh -c 'echo probe-says-hello; exec sleep 600'\n",
    );
    write_unit(
        &sb,
        "sandbox-broken.service",
        "[Service]\nType=oneshot\nExecStart=/bin/sh -c 'echo broken-says-bye >&2; exit 3'\n",
    );
    sb.systemctl(&["daemon-reload"]).unwrap();
    sb.systemctl(&["start", "sandbox-probe.service"]).unwrap();
    assert_eq!(
        sb.systemctl(&["is-active", "sandbox-probe.service"])
            .unwrap()
            .trim(),
        "active"
    );
    // A unit that fails: systemctl's error is a CommandFailed naming the command, and the
    // journal keeps what the process printed (tests read it to explain a failed instance).
    let err = sb
        .systemctl(&["start", "sandbox-broken.service"])
        .unwrap_err();
    match &err {
        Error::CommandFailed { argv, stderr, .. } => {
            assert_eq!(argv, "systemctl start sandbox-broken.service");
            assert!(stderr.contains("sandbox-broken.service"), "{stderr}");
        }
        other => panic!("expected CommandFailed, got {other:?}"),
    }
    let journal = wait_for(10, || {
        let j = sb.journal("sandbox-broken.service", 20);
        j.contains("broken-says-bye").then_some(j)
    });
    assert!(
        journal.is_some(),
        "journal: {}",
        sb.journal("sandbox-broken.service", 20)
    );
    let journal = sb.journal("sandbox-probe.service", 20);
    assert!(journal.contains("probe-says-hello"), "journal: {journal}");
    // Nothing of another boot's journal (the host's /var/log/journal) shows up.
    assert_eq!(sb.journal("no-such-unit.service", 20), "");
}

#[test]
fn a_socket_unit_on_host_loopback_accepts_a_connection_from_the_host() {
    let sb = boot("sysmgr-t-socket");
    let port = free_port();
    write_unit(
        &sb,
        "sandbox-greet.socket",
        &format!("[Socket]\nListenStream=127.0.0.1:{port}\nAccept=yes\n"),
    );
    write_unit(
        &sb,
        "sandbox-greet@.service",
        "[Service]\nExecStart=/bin/echo greetings-from-the-sandbox\n\
         StandardInput=socket\nStandardOutput=socket\n",
    );
    sb.systemctl(&["daemon-reload"]).unwrap();
    sb.systemctl(&["start", "sandbox-greet.socket"]).unwrap();
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("systemd listens");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert_eq!(answer, "greetings-from-the-sandbox\n");
}

#[test]
fn the_hosts_tmp_and_root_are_untouched_by_a_boot() {
    let marker = PathBuf::from(format!("/tmp/sysmgr-sandbox-marker-{}", std::process::id()));
    std::fs::write(&marker, "host").unwrap();
    let sb = boot("sysmgr-t-tmp");
    // systemd-tmpfiles ran inside (it empties /tmp at boot): the sandbox's /tmp is its own.
    assert!(sb
        .run(&["test", "!", "-e", marker.to_str().unwrap()])
        .is_ok());
    // Writes inside go to the overlay, not to the host: the same holds for `dpkg -i`.
    let etc_probe = format!("/etc/sysmgr-sandbox-probe-{}", std::process::id());
    sb.run(&[
        "sh",
        "-c",
        &format!("echo inside > /tmp/inside && echo inside > {etc_probe} && rm -f /etc/hostname"),
    ])
    .unwrap();
    assert!(!Path::new(&etc_probe).exists());
    assert!(Path::new("/etc/hostname").exists());
    assert!(!Path::new("/tmp/inside").exists());
    drop(sb);
    let survived = std::fs::read_to_string(&marker);
    let _ = std::fs::remove_file(&marker);
    assert_eq!(survived.unwrap(), "host");
}

#[test]
fn dropping_leaves_no_process_directory_or_cgroup() {
    let sb = boot("sysmgr-t-drop");
    // A process of the sandbox that ignores SIGTERM: it must still go.
    sb.run(&[
        "systemd-run",
        "--unit=stubborn",
        "sh",
        "-c",
        "trap '' TERM; sleep 600",
    ])
    .unwrap();
    let pid = sb.pid();
    let ns = pid_namespace(pid).unwrap();
    assert!(processes_in(ns).len() >= 4, "systemd, journald, dbus, sh");
    let dir = sb.dir().to_path_buf();
    assert!(dir.is_dir());
    let cgroup = host_cgroup(pid);
    if let Some(cg) = &cgroup {
        assert!(cg.is_dir());
    }
    sb.shutdown();
    assert_eq!(processes_in(ns), Vec::<u32>::new());
    assert!(!Path::new(&format!("/proc/{pid}")).exists() || pid_namespace(pid) != Some(ns));
    assert!(!dir.exists(), "`{}` is left", dir.display());
    if let Some(cg) = &cgroup {
        assert!(!cg.exists(), "`{}` is left", cg.display());
    }
}

#[test]
fn dropping_during_a_panic_still_tears_down() {
    let (tx, rx) = std::sync::mpsc::channel();
    let result = std::thread::spawn(move || {
        let sb = boot("sysmgr-t-panic");
        tx.send((pid_namespace(sb.pid()).unwrap(), sb.dir().to_path_buf()))
            .unwrap();
        panic!("a test fails while its sandbox runs");
    })
    .join();
    assert!(result.is_err());
    let (ns, dir) = rx.recv().unwrap();
    assert_eq!(processes_in(ns), Vec::<u32>::new());
    assert!(!dir.exists());
}

#[test]
fn two_sandboxes_boot_at_once_and_do_not_see_each_others_units() {
    let boots: Vec<_> = (0..2)
        .map(|_| std::thread::spawn(|| boot("sysmgr-t-pair")))
        .collect();
    let pair: Vec<Sandbox> = boots.into_iter().map(|b| b.join().unwrap()).collect();
    let (a, b) = (&pair[0], &pair[1]);
    assert_ne!(a.pid(), b.pid());
    assert_ne!(a.dir(), b.dir());
    // The same unit name in both: separate processes, separate cgroups. Stopping it in one
    // leaves the other running (with shared cgroups, each would see the other's process).
    for sb in [a, b] {
        write_unit(sb, "same.service", "[Service]\nExecStart=/bin/sleep 600\n");
        sb.systemctl(&["daemon-reload"]).unwrap();
        sb.systemctl(&["start", "same.service"]).unwrap();
    }
    let pids = |sb: &Sandbox| {
        sb.run(&[
            "cat",
            "/sys/fs/cgroup/system.slice/same.service/cgroup.procs",
        ])
        .unwrap()
    };
    assert_eq!(pids(a).lines().count(), 1, "{}", pids(a));
    assert_eq!(pids(b).lines().count(), 1, "{}", pids(b));
    a.systemctl(&["stop", "same.service"]).unwrap();
    assert_eq!(
        b.systemctl(&["is-active", "same.service"]).unwrap().trim(),
        "active"
    );
}

#[test]
fn a_bind_that_does_not_exist_fails_the_boot_with_the_console_and_cleans_up() {
    let missing = PathBuf::from("/nonexistent/sysmgr-sandbox-bind");
    let err = Sandbox::boot(Options {
        binds: vec![missing],
        dir_prefix: "sysmgr-t-badbind".into(),
        ..Default::default()
    })
    .unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with("the private systemd exited while booting; its console said:\n"),
        "{text}"
    );
    assert!(text.contains("/nonexistent/sysmgr-sandbox-bind"), "{text}");
    let leftovers: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(&format!("sysmgr-t-badbind-{}-", std::process::id()))
        })
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn binds_show_host_paths_at_the_same_path_inside() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hello.txt"), "from the host").unwrap();
    let sb = Sandbox::boot(Options {
        binds: vec![dir.path().to_path_buf()],
        dir_prefix: "sysmgr-t-bind".into(),
        ..Default::default()
    })
    .unwrap();
    let inside = dir.path().join("hello.txt");
    assert_eq!(
        sb.run(&["cat", inside.to_str().unwrap()]).unwrap(),
        "from the host"
    );
}

/// Run by `a_killed_test_run_takes_its_sandboxes_along` in a child process: boots, prints the
/// PID, and waits to be killed.
#[test]
#[ignore = "a helper process for a_killed_test_run_takes_its_sandboxes_along"]
fn helper_boot_and_wait_to_be_killed() {
    // Booted in a thread that ends at once: the sandbox must outlive its thread.
    let sb = std::thread::spawn(|| boot("sysmgr-t-killed"))
        .join()
        .unwrap();
    println!("sandbox-pid {} {}", sb.pid(), sb.dir().display());
    std::thread::sleep(Duration::from_secs(60));
}

#[test]
fn a_killed_test_run_takes_its_sandboxes_along() {
    use std::io::BufRead as _;
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "--nocapture"])
        .arg("sandbox::helper_boot_and_wait_to_be_killed")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let (pid, dir): (u32, PathBuf) = lines
        .find_map(|l| {
            let l = l.ok()?;
            let (pid, dir) = l.strip_prefix("sandbox-pid ")?.split_once(' ')?;
            Some((pid.parse().ok()?, dir.into()))
        })
        .expect("the helper boots a sandbox");
    let ns = pid_namespace(pid).unwrap();
    // Still running after its booting thread ended.
    std::thread::sleep(Duration::from_millis(200));
    assert!(!processes_in(ns).is_empty());
    // SIGKILL: no destructor runs; the kernel's parent-death signal has to do it.
    child.kill().unwrap();
    child.wait().unwrap();
    let gone = wait_for(10, || processes_in(ns).is_empty().then_some(()));
    assert!(gone.is_some(), "left: {:?}", processes_in(ns));
    // Its directory stays (no Drop ran) until the next boot sweeps it.
    let _next = boot("sysmgr-t-sweeper");
    assert!(!dir.exists(), "`{}` is left", dir.display());
}
