//! What sysmgr's Node bridge (`node/bridge.cjs`) costs by itself: Node's start time and an idle
//! instance's memory, with and without the bridge preloaded. Measured on the host, without
//! systemd, by starting Node the way each manager does, minus the manager:
//!
//! - plain: `node app.js` with an IPC channel (`NODE_CHANNEL_FD`, as PM2's fork gives one), so
//!   the app's `process.send('ready')` arrives here; the app binds its port itself.
//! - bridged: `node --require bridge.cjs app.js` with a listening socket as fd 3 (`LISTEN_FDS`)
//!   and a datagram socket as `SYSMGR_NOTIFY_FD`, as `sysmgr exec` under systemd gives them;
//!   the bridge active (`SYSMGR_PID` is the process) and `READY=1` arriving here.
//!
//! Both start through `sh -c '...; exec node ...'` (to set the PID variables to Node's own
//! PID, which only the process itself knows), so the shell costs both the same. Also `node -e 0`
//! with and without the active bridge: Node's bare start to exit, the bridge's load and install
//! and nothing else. Rounds alternate the two; the cost is the median of per-round differences.
//! Wall time and CPU time are both kept: the CPU time (every thread's, from
//! `/proc/PID/task/*/schedstat` at ready, or `wait4`'s usage at exit) moves far less when other
//! work competes for the CPUs.

use std::fmt::Write as _;
use std::io::Read as _;
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd, RawFd};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

use crate::{median, ms, rotated};

/// How long one start may take before the benchmark gives up on it.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long an instance idles after it is ready before its memory is read.
const SETTLE: Duration = Duration::from_millis(300);
/// The bridged process's PIDs are its own (`$$` of the shell that execs Node).
const BRIDGED: &str = "export SYSMGR_PID=$$ LISTEN_PID=$$; exec \"$@\"";
const PLAIN: &str = "exec \"$@\"";

/// One start: how long until ready (or until exit), the CPU time Node used until then (all
/// its threads), and the idle RSS in KiB when read. On a busy machine the wall time mostly
/// measures waiting for a CPU; the CPU time is what the process itself spent.
struct Start {
    time: Duration,
    cpu: Duration,
    rss_kib: Option<u64>,
}

pub fn run(
    node: &str,
    bridge: &Path,
    app_dir: &Path,
    port: u16,
    rounds: usize,
    out: &mut String,
) -> anyhow::Result<()> {
    let app = app_dir.join("app.js");
    // Node's start is a few tens of ms and moves by several ms on a busy machine: many rounds.
    let bare_rounds = rounds * 4;
    let app_rounds = rounds * 2;
    let mut bare: [Vec<Start>; 2] = [Vec::new(), Vec::new()];
    for round in 0..bare_rounds {
        for k in rotated(2, round) {
            let with_bridge = k == 1;
            bare[k].push(node_e0(node, bridge, with_bridge)?);
        }
    }
    let mut apps: [Vec<Start>; 2] = [Vec::new(), Vec::new()];
    for round in 0..app_rounds {
        for k in rotated(2, round) {
            let s = if k == 0 {
                plain_app(node, &app, app_dir)?
            } else {
                bridged_app(node, bridge, &app, app_dir, port)?
            };
            eprintln!(
                "bridge cost, round {}: {} ready in {:.1} ms ({:.1} ms CPU), RSS {} KiB",
                round + 1,
                if k == 0 { "plain" } else { "bridged" },
                ms(s.time),
                ms(s.cpu),
                s.rss_kib.unwrap_or(0)
            );
            apps[k].push(s);
        }
    }

    let times = |v: &[Start]| median(v.iter().map(|s| ms(s.time)).collect());
    let cpus = |v: &[Start]| median(v.iter().map(|s| ms(s.cpu)).collect());
    let diffs = |v: &[Vec<Start>; 2], f: fn(&Start) -> f64| {
        median(v[1].iter().zip(&v[0]).map(|(b, p)| f(b) - f(p)).collect())
    };
    let mib = |s: &Start| s.rss_kib.unwrap_or(0) as f64 / 1024.0;
    let rss = |v: &[Start]| median(v.iter().map(mib).collect());
    write!(
        out,
        "\nThe bridge's own cost: Node started as each manager starts it, without the manager \
         (plain: an IPC channel as PM2 gives one, the app binds its port; bridged: `--require \
         node/bridge.cjs`, systemd's socket as fd 3 and `sysmgr exec`'s notify fd). {app_rounds} \
         rounds of app.js, {bare_rounds} of `node -e 0`, alternating; medians, and the median \
         of per-round differences.\n\n{}",
        crate::table::header(&[
            "measurement",
            "plain node",
            "with the bridge",
            "bridge's cost",
            "goal",
        ])
    )?;
    for (what, v) in [
        ("`node -e 0`, start to exit", &bare),
        (
            "app.js, start to `process.send('ready')` (IPC message / `READY=1`)",
            &apps,
        ),
    ] {
        writeln!(
            out,
            "| {what}: wall time | {:.1} ms | {:.1} ms | {:+.1} ms | ≤ 5 ms |\n\
             | {what}: CPU time | {:.1} ms | {:.1} ms | {:+.1} ms | |",
            times(&v[0]),
            times(&v[1]),
            diffs(v, |s| ms(s.time)),
            cpus(&v[0]),
            cpus(&v[1]),
            diffs(v, |s| ms(s.cpu)),
        )?;
    }
    writeln!(
        out,
        "| app.js, idle RSS ({} ms after ready, `VmRSS`) | {:.1} MiB | {:.1} MiB | {:+.2} MiB | ≤ 1 MiB |",
        SETTLE.as_millis(),
        rss(&apps[0]),
        rss(&apps[1]),
        diffs(&apps, mib),
    )?;
    Ok(())
}

/// `node -e 0`, with the bridge preloaded and active or not: start to exit.
fn node_e0(node: &str, bridge: &Path, with_bridge: bool) -> anyhow::Result<Start> {
    let mut cmd = shell(if with_bridge { BRIDGED } else { PLAIN }, node);
    if with_bridge {
        cmd.arg("--require").arg(bridge);
    }
    cmd.args(["-e", "0"]);
    let started = Instant::now();
    let child = cmd.spawn().context("cannot start node")?;
    let pid = child.id() as libc::pid_t;
    let deadline = started + START_TIMEOUT;
    loop {
        let mut status = 0;
        // SAFETY: an all-zero rusage is valid; wait4 writes only into the two locals.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: as above; `pid` is this benchmark's child, reaped here (not by `child`).
        let reaped = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        if reaped == pid {
            let time = started.elapsed();
            if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
                bail!("`node -e 0` failed: wait status {status}");
            }
            let tv = |t: libc::timeval| {
                Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
            };
            return Ok(Start {
                time,
                cpu: tv(usage.ru_utime) + tv(usage.ru_stime),
                rss_kib: None,
            });
        }
        if reaped < 0 {
            return Err(std::io::Error::last_os_error()).context("cannot wait for node");
        }
        if Instant::now() > deadline {
            end(child);
            bail!(
                "`node -e 0` did not exit within {} s",
                START_TIMEOUT.as_secs()
            );
        }
        std::thread::sleep(Duration::from_micros(500));
    }
}

/// app.js as PM2's fork gives it an IPC channel: start until its `ready` message.
fn plain_app(node: &str, app: &Path, dir: &Path) -> anyhow::Result<Start> {
    let (mut ours, theirs) = UnixStream::pair()?;
    let mut cmd = shell(PLAIN, node);
    cmd.arg(app).current_dir(dir).env("NODE_CHANNEL_FD", "3");
    let copies = pass_fds(&mut cmd, &[theirs.as_raw_fd()])?;
    ours.set_read_timeout(Some(START_TIMEOUT))?;
    let started = Instant::now();
    let child = cmd.spawn().context("cannot start node")?;
    // Only the child holds its end now: its exit ends the read below.
    drop((theirs, copies));
    // Node's IPC channel writes each message as a JSON line: `"ready"\n`.
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    let ready = loop {
        match ours.read(&mut buf) {
            Ok(0) | Err(_) => break None,
            Ok(n) => {
                got.extend_from_slice(&buf[..n]);
                if got.windows(7).any(|w| w == b"\"ready\"") {
                    break Some(started.elapsed());
                }
            }
        }
    };
    finish(child, ready, "plain app.js sent no `ready`")
}

/// app.js under the bridge, with systemd's socket and a notify fd: start until `READY=1`.
fn bridged_app(
    node: &str,
    bridge: &Path,
    app: &Path,
    dir: &Path,
    port: u16,
) -> anyhow::Result<Start> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", port))
        .with_context(|| format!("cannot listen on 127.0.0.1:{port}"))?;
    let (ours, theirs) = UnixDatagram::pair()?;
    let mut cmd = shell(BRIDGED, node);
    cmd.arg("--require")
        .arg(bridge)
        .arg(app)
        .current_dir(dir)
        .env("LISTEN_FDS", "1")
        .env("LISTEN_FDNAMES", "http")
        .env("SYSMGR_LISTEN", format!("http=127.0.0.1:{port}"))
        .env("SYSMGR_APP", "app")
        .env("SYSMGR_INSTANCE", "1")
        .env("SYSMGR_WAIT_READY", "1")
        .env("SYSMGR_NOTIFY_FD", "4")
        // Only checked to be set: the bridge writes to SYSMGR_NOTIFY_FD, connected here.
        .env("NOTIFY_SOCKET", "@sysmgr-bench-bridge");
    let copies = pass_fds(&mut cmd, &[listener.as_raw_fd(), theirs.as_raw_fd()])?;
    ours.set_read_timeout(Some(START_TIMEOUT))?;
    let started = Instant::now();
    let child = cmd.spawn().context("cannot start node")?;
    drop((theirs, copies));
    let mut buf = [0u8; 512];
    let ready = loop {
        match ours.recv(&mut buf) {
            Ok(n) if buf[..n].windows(7).any(|w| w == b"READY=1") => break Some(started.elapsed()),
            Ok(_) => {}
            Err(_) => break None,
        }
    };
    let result = finish(child, ready, "bridged app.js sent no READY=1");
    drop(listener);
    result
}

/// `sh -c SCRIPT sh NODE ...`, with nothing of a manager in the environment.
fn shell(script: &str, node: &str) -> Command {
    let mut cmd = Command::new("/bin/sh");
    cmd.args(["-c", script, "sh", node])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for var in [
        "LISTEN_FDS",
        "LISTEN_PID",
        "LISTEN_FDNAMES",
        "NOTIFY_SOCKET",
        "NODE_CHANNEL_FD",
        "NODE_OPTIONS",
        "SYSMGR_PID",
        "SYSMGR_NOTIFY_FD",
        "SYSMGR_LISTEN",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// Gives the child `fds` as 3, 4, ...: copies above 9 (close-on-exec) first, so no copy
/// overwrites a source, then `dup2` in the child, which clears close-on-exec on the target.
/// The copies are returned: keep them until the child is spawned.
fn pass_fds(cmd: &mut Command, fds: &[RawFd]) -> anyhow::Result<Vec<OwnedFd>> {
    let mut high = Vec::new();
    for &fd in fds {
        // SAFETY: fcntl on an fd the caller owns; no memory is passed.
        let copy = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 10) };
        if copy < 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        // SAFETY: `copy` was just created and is owned by nothing else.
        high.push(unsafe { OwnedFd::from_raw_fd(copy) });
    }
    let raw: Vec<RawFd> = high.iter().map(|fd| fd.as_raw_fd()).collect();
    // SAFETY: between fork and exec only dup2, which is async-signal-safe, runs.
    unsafe {
        cmd.pre_exec(move || {
            for (i, &fd) in raw.iter().enumerate() {
                if libc::dup2(fd, 3 + i as RawFd) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    Ok(high)
}

/// After ready: the idle RSS, then the process ended; or the error if it never got ready.
fn finish(child: Child, ready: Option<Duration>, what: &str) -> anyhow::Result<Start> {
    let Some(time) = ready else {
        end(child);
        bail!("{what} within {} s", START_TIMEOUT.as_secs());
    };
    let cpu = cpu_time(child.id());
    std::thread::sleep(SETTLE);
    let rss_kib = std::fs::read_to_string(format!("/proc/{}/status", child.id()))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        });
    end(child);
    Ok(Start { time, cpu, rss_kib })
}

/// The CPU time of every thread of `pid` so far (the first field of each thread's
/// `schedstat`, in ns); threads that ended already are not counted.
fn cpu_time(pid: u32) -> Duration {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Duration::ZERO;
    };
    let ns: u64 = tasks
        .filter_map(Result::ok)
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    Duration::from_nanos(ns)
}

/// Ends a process this benchmark started, by its PID, and reaps it.
fn end(mut child: Child) {
    crate::pm2::kill(child.id());
    let _ = child.wait();
}
