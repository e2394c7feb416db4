//! `sysmgr reload` when production gets in its way (issue 10), against a real systemd: systemd
//! re-executed or reloaded in the middle of a rollout, and a halted reload that must leave
//! the previous version installed.

use std::io::{BufRead as _, BufReader, Read as _};
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use sysmgr_load::{get_blocking, Background, LoadConfig, Mode, Report};

use crate::lifecycle::{hello_app, http_get, running};
use crate::support::{free_port, sandbox, sysmgr_bin, sysmgr_in, wait_for, write_in};

/// Keep-alive and per-request load on `port`, bounded by `duration`; stopped by the caller.
fn load(port: u16, duration: Duration) -> (Background, Background) {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let one = |mode, connections| {
        Background::start(LoadConfig {
            connections,
            mode,
            duration,
            request_timeout: Duration::from_secs(5),
            ..LoadConfig::new(addr)
        })
    };
    (one(Mode::KeepAlive, 6), one(Mode::PerRequest, 3))
}

fn assert_no_loss(reports: [(&str, &Report); 2]) {
    for (name, report) in reports {
        assert_eq!(report.failed, 0, "{name}: {:?}", report.failures);
        assert_eq!(report.hung, 0, "{name}");
        assert!(report.ok > 50, "{name}: only {} requests", report.ok);
    }
}

/// The `Job` systemd has queued for `unit` (`0` when none).
fn job_of(sb: &sysmgr_sandbox::Sandbox, unit: &str) -> String {
    sb.systemctl(&["show", "--property=Job", "--value", unit])
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// The system bus inside the sandbox, named explicitly: root then uses it rather than
/// systemd's private socket.
const SYSTEM_BUS: (&str, &str) = (
    "DBUS_SYSTEM_BUS_ADDRESS",
    "unix:path=/run/dbus/system_bus_socket",
);

/// `systemctl daemon-reexec` or `daemon-reload` while instance 2's restart job is in flight:
/// the reload ends within `kill_timeout + listen_timeout + 10 s` of it, no request fails,
/// every instance runs afterwards, and the lock is free. `env`: how sysmgr reaches systemd
/// (nothing: root's private socket, which re-executing closes; [`SYSTEM_BUS`]: the bus,
/// where systemd leaves and comes back under a new name, without the job subscription).
/// `surge`: the default surge reload (the job caught is instance 2's new generation's start),
/// else in place (`--surge 0`, instance 2's restart).
fn reload_survives(manager_op: &str, env: &[(&str, &str)], surge: bool) {
    let sb = sandbox();
    let port = free_port();
    // kill_timeout 3 s (hello_app), listen_timeout 5 s: the bound is 18 s.
    crate::lifecycle::start_web(&sb, &hello_app("web", 4, port, "listen_timeout = 5000\n"));
    let bound = Duration::from_secs(3 + 5 + 10);
    let (keep_alive, per_request) = load(port, Duration::from_secs(120));
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    // Requests that keep each old worker draining for a while, so a restart is in flight
    // long enough to be caught.
    let slow: Vec<_> = (0..8)
        .map(|_| {
            std::thread::spawn(move || get_blocking(addr, "/slow?ms=1500", Duration::from_secs(15)))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut child = sb
        .command(sysmgr_bin())
        .envs(env.iter().copied())
        .args(if surge {
            &["reload", "web"][..]
        } else {
            &["reload", "web", "--surge", "0"][..]
        })
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    let (first, unit) = if surge {
        (
            "reload web: 4 instances, surge 1: each new process serves before its old one drains\n",
            "web@2:1.service",
        )
    } else {
        ("reload web: 4 instances, 1 at a time\n", "web@2.service")
    };
    assert_eq!(line, first);
    // Instance 2's job, once it is queued.
    let job = wait_for(20, || {
        let job = job_of(&sb, unit);
        (job != "0" && !job.is_empty()).then_some(job)
    })
    .expect("instance 2's job is queued");
    let fired = Instant::now();
    sb.systemctl(&[manager_op]).unwrap();
    eprintln!("{manager_op} while job {job} of {unit} was in flight");
    // The rest is read on a thread of its own: killing the child kills `nsenter`, and a
    // sysmgr that hung inside would keep the pipe open until the sandbox goes.
    let reader = std::thread::spawn(move || {
        let mut rest = String::new();
        let _ = err.read_to_string(&mut rest);
        rest
    });
    // Bounded: the child is killed below if it outlives the bound.
    let status = wait_for(bound.as_secs() + 20, || child.try_wait().unwrap());
    let took = fired.elapsed();
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
        panic!("the reload hung after {manager_op}");
    }
    let rest = reader.join().unwrap();
    eprintln!("{rest}");
    assert!(took < bound, "took {took:?} after {manager_op}:\n{rest}");
    let status = status.unwrap();
    // Done or halted, with a clear message either way.
    assert!(
        rest.contains("reload web: 4 of 4 instances ready in ") || rest.contains("halted"),
        "{rest}"
    );
    // The lock is free: a command that refuses to wait runs at once.
    let again = Instant::now();
    let r = sysmgr_in(&sb, &["reload", "web", "--no-wait"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(again.elapsed() < Duration::from_secs(30));
    for handle in slow {
        let (code, _) = handle.join().unwrap().expect("a slow request completes");
        assert_eq!(code, 200);
    }
    std::thread::sleep(Duration::from_millis(300));
    let (k, p) = (keep_alive.stop(), per_request.stop());
    assert_no_loss([("keep-alive", &k), ("per-request", &p)]);
    assert_eq!(running(&sb, "web"), [1, 2, 3, 4]);
    assert!(http_get(port, "/").is_some());
    assert!(status.success(), "{rest}");
}

#[test]
fn reload_survives_a_daemon_reexec_in_its_middle() {
    reload_survives("daemon-reexec", &[], true);
}

#[test]
fn in_place_reload_survives_a_daemon_reexec_in_its_middle() {
    reload_survives("daemon-reexec", &[], false);
}

#[test]
fn reload_over_the_bus_survives_a_daemon_reexec_in_its_middle() {
    reload_survives("daemon-reexec", &[SYSTEM_BUS], true);
}

#[test]
fn reload_survives_a_daemon_reload_in_its_middle() {
    reload_survives("daemon-reload", &[], true);
}

/// `NAME=value` of `pid`'s environment inside the sandbox, and its argv.
fn environ_and_argv(sb: &sysmgr_sandbox::Sandbox, pid: u64) -> (Vec<String>, Vec<String>) {
    let read = |what: &str| {
        let bytes = std::fs::read(sb.root().join(format!("proc/{pid}/{what}"))).unwrap();
        bytes
            .split(|&b| b == 0)
            .filter(|s| !s.is_empty())
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect::<Vec<_>>()
    };
    (read("environ"), read("cmdline"))
}

/// The main PID of `unit` once it is active with a PID other than `not`.
fn active_pid(sb: &sysmgr_sandbox::Sandbox, unit: &str, not: u64) -> Option<u64> {
    wait_for(20, || {
        let out = sb
            .systemctl(&["show", "--property=ActiveState,MainPID", unit])
            .ok()?;
        let active = out.lines().any(|l| l == "ActiveState=active");
        let pid: u64 = out
            .lines()
            .find_map(|l| l.strip_prefix("MainPID="))?
            .parse()
            .ok()?;
        (active && pid != 0 && pid != not).then_some(pid)
    })
}

#[test]
fn a_halted_reload_puts_the_previous_units_back_so_a_crash_restarts_the_old_version() {
    let sb = sandbox();
    let port = free_port();
    let hello = crate::support::workspace_bin("sysmgr-hello")
        .display()
        .to_string();
    let good = hello_app(
        "web",
        4,
        port,
        "listen_timeout = 2000\n[env]\nRELEASE = \"v1\"\n",
    );
    let file = write_in(&sb, "/srv/web/app.toml", &good);
    let r = sysmgr_in(&sb, &["start", &file]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let template = sb.unit_dir().join("web@.service");
    let v1_units = crate::support::tree(&sb.unit_dir());
    let v1_template = std::fs::read_to_string(&template).unwrap();
    let old3 = active_pid(&sb, "web@3.service", 0).unwrap();

    // v2 exits at once.
    let bad = good
        .replace(
            &format!("[\"{hello}\"]"),
            "[\"/bin/sh\", \"-c\", \"echo broken build; exit 3\"]",
        )
        .replace("v1", "v2");
    write_in(&sb, "/srv/web/app.toml", &bad);
    let old1 = active_pid(&sb, "web@1.service", 0).unwrap();
    let r = sysmgr_in(&sb, &["reload", &file]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    // A surge: instance 1's old process never stopped.
    let pid1 = active_pid(&sb, "web@1.service", 0).expect("instance 1 runs");
    assert_eq!(pid1, old1);
    assert!(
        r.stderr.contains(
            "\nreload web: halted; put back the previous version's unit files and reloaded systemd: `/etc/systemd/system/web@.service`; `web@1:1.service` is stopped; its old process, `web@1.service`, kept serving and still runs the previous version; not restarted, still running the previous version: web@2.service, web@3.service, web@4.service\n"
        ),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.ends_with("\nsysmgr: error: reload of `web` halted: `web@1:1.service` failed (the start job ended with `failed`; systemd's result: `exit-code`); the instances not yet restarted still run the previous version; fix the app file and run `sysmgr reload /srv/web/app.toml` again\n"),
        "{}",
        r.stderr
    );
    // v1's units are installed again, byte for byte, and nothing is left kept.
    assert_eq!(std::fs::read_to_string(&template).unwrap(), v1_template);
    assert_eq!(crate::support::tree(&sb.unit_dir()), v1_units);
    assert_eq!(
        sb.systemctl(&[
            "show",
            "--property=NeedDaemonReload",
            "--value",
            "web@1.service"
        ])
        .unwrap(),
        "no\n"
    );
    assert_eq!(running(&sb, "web"), [1, 2, 3, 4]);
    // And the journal says so, beside the rollout's entries.
    let said = sb
        .run(&[
            "journalctl",
            "SYSLOG_IDENTIFIER=sysmgr",
            "SYSMGR_APP=web",
            "SYSMGR_ACTION=generate",
            "--output=cat",
        ])
        .unwrap();
    assert!(
        said.ends_with("put back the previous version's unit files after a halted reload: `/etc/systemd/system/web@.service`\n"),
        "{said}"
    );

    // An old instance crashes after the halt: systemd restarts it into v1, not v2.
    sb.systemctl(&["kill", "--signal=KILL", "web@3.service"])
        .unwrap();
    let new3 = active_pid(&sb, "web@3.service", old3).expect("systemd restarts instance 3");
    for pid in [new3, pid1] {
        let (env, argv) = environ_and_argv(&sb, pid);
        assert!(env.contains(&"RELEASE=v1".to_string()), "{env:?}");
        assert_eq!(
            argv.last().map(String::as_str),
            Some(hello.as_str()),
            "{argv:?}"
        );
    }
    assert!(http_get(port, "/").is_some());
}

#[test]
fn a_halted_reload_of_unchanged_units_has_nothing_to_put_back() {
    let sb = sandbox();
    let port = free_port();
    let hello = crate::support::workspace_bin("sysmgr-hello")
        .display()
        .to_string();
    // The unit runs a script that a deploy replaces in place: the units never change.
    let script = write_in(&sb, "/srv/web/run.sh", &format!("exec {hello}\n"));
    let app = hello_app("web", 3, port, "listen_timeout = 2000\n").replace(
        &format!("[\"{hello}\"]"),
        &format!("[\"/bin/sh\", \"{script}\"]"),
    );
    let file = write_in(&sb, "/srv/web/app.toml", &app);
    let r = sysmgr_in(&sb, &["start", &file]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let units = crate::support::tree(&sb.unit_dir());
    write_in(&sb, "/srv/web/run.sh", "echo broken build; exit 3\n");
    let r = sysmgr_in(&sb, &["reload", "web"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains(
            "\nreload web: halted; `web@1:1.service` is stopped; its old process, `web@1.service`, kept serving and still runs the previous version; not restarted, still running the previous version: web@2.service, web@3.service\n"
        ),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.ends_with("\nsysmgr: error: reload of `web` halted: `web@1:1.service` failed (the start job ended with `failed`; systemd's result: `exit-code`); the instances not yet restarted still run the previous version; fix the app and run `sysmgr reload web` again\n"),
        "{}",
        r.stderr
    );
    assert_eq!(crate::support::tree(&sb.unit_dir()), units);
    // Instance 1's old process kept serving.
    assert_eq!(running(&sb, "web"), [1, 2, 3]);
}

/// splitmix64: a seeded sequence of delays, so a failing run can be repeated.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A duration in `0..max`.
    fn below(&mut self, max: Duration) -> Duration {
        Duration::from_micros(self.next() % max.as_micros().max(1) as u64)
    }
}

/// The host PIDs of `pid`'s children (nsenter forks the command it runs into the sandbox).
fn children(pid: u32) -> Vec<i32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// Whether host PID `pid` is gone (or a zombie: its files, and so its flock, are closed).
fn gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

/// Takes and releases the app's lock at once, without waiting: true when nobody holds it.
fn lock_is_free(sb: &sysmgr_sandbox::Sandbox, app: &str) -> bool {
    use std::os::fd::AsRawFd as _;
    let Ok(file) = std::fs::File::open(sb.root().join(format!("run/sysmgr/{app}.lock"))) else {
        return true;
    };
    // SAFETY: flock on an fd this function owns; closing it releases the lock.
    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

/// The `RELEASE` each instance of `app` runs with.
fn releases(sb: &sysmgr_sandbox::Sandbox, app: &str) -> Vec<String> {
    crate::lifecycle::instances(sb, app)
        .values()
        .map(|(_, pid)| {
            environ_and_argv(sb, *pid)
                .0
                .into_iter()
                .find_map(|v| v.strip_prefix("RELEASE=").map(str::to_string))
                .unwrap_or_default()
        })
        .collect()
}

// Bounded: 20 kills and re-runs of a 3-instance reload, about 120 s on 2 shared cores (230 s
// beside other sandboxes); fails past 420 s.
#[test]
fn reload_killed_at_random_points_is_finished_by_a_rerun_without_losing_a_request() {
    const KILLS: u32 = 20;
    const BOUND: Duration = Duration::from_secs(420);
    let seed = std::env::var("SYSMGR_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("fault injection seed: {seed} (SYSMGR_FAULT_SEED={seed} repeats the delays)");
    let mut rng = Rng(seed);
    let sb = sandbox();
    let port = free_port();
    let version = |n: u32| hello_app("web", 3, port, &format!("[env]\nRELEASE = \"v{n}\"\n"));
    let file = write_in(&sb, "/srv/web/app.toml", &version(0));
    let r = sysmgr_in(&sb, &["start", &file]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let begin = Instant::now();
    // Longer than the bound below: the load covers every round, and is stopped after them.
    let (keep_alive, per_request) = load(port, BOUND + Duration::from_secs(60));
    // How long one whole reload takes here: the kills are spread over it.
    write_in(&sb, "/srv/web/app.toml", &version(1));
    let timed = Instant::now();
    let r = sysmgr_in(&sb, &["reload", &file]);
    let span = timed.elapsed() + timed.elapsed() / 5;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let mut log = Vec::new();
    for n in 2..2 + KILLS {
        // Every round changes the units, so a kill can land between writing them and
        // rolling the instances.
        write_in(&sb, "/srv/web/app.toml", &version(n));
        let delay = rng.below(span);
        let mut nsenter = {
            use std::os::unix::process::CommandExt as _;
            let mut cmd = sb.command(sysmgr_bin());
            cmd.args(["reload", &file])
                .stderr(Stdio::piped())
                .process_group(0);
            cmd.spawn().unwrap()
        };
        let forked = wait_for(5, || children(nsenter.id()).first().copied());
        std::thread::sleep(delay);
        // The whole process group: nsenter and the sysmgr it runs.
        // SAFETY: signals the process group this test just started.
        unsafe { libc::killpg(nsenter.id() as i32, libc::SIGKILL) };
        let _ = nsenter.wait();
        let mut said = String::new();
        let _ = nsenter.stderr.take().unwrap().read_to_string(&mut said);
        let sysmgr = forked.expect("nsenter started sysmgr");
        assert!(
            wait_for(5, || gone(sysmgr).then_some(())).is_some(),
            "sysmgr (host pid {sysmgr}) outlived SIGKILL"
        );
        assert!(
            lock_is_free(&sb, "web"),
            "round {n}: the lock outlived the killed sysmgr"
        );
        let last = said.lines().last().unwrap_or("(nothing)").to_string();
        log.push(format!("v{n}: killed after {delay:?} at: {last}"));
        let r = sysmgr_in(&sb, &["reload", &file]);
        assert_eq!(
            r.code, 0,
            "v{n}, killed after {delay:?}:\n{said}\nre-run:\n{}",
            r.stderr
        );
        assert!(
            r.stderr.contains("reload web: 3 of 3 instances ready in "),
            "{}",
            r.stderr
        );
        assert_eq!(running(&sb, "web"), [1, 2, 3], "v{n}");
        // One process per instance, one link each: nothing of an interrupted surge is left.
        let up = sb
            .systemctl(&[
                "list-units",
                "--state=running",
                "--plain",
                "--no-legend",
                "web@*",
            ])
            .unwrap();
        assert_eq!(up.lines().count(), 3, "v{n}: {up}");
        let links = std::fs::read_dir(sb.unit_dir().join("web.target.wants"))
            .unwrap()
            .count();
        assert_eq!(links, 3, "v{n}");
        assert_eq!(
            releases(&sb, "web"),
            [format!("v{n}"), format!("v{n}"), format!("v{n}")],
            "v{n}: every instance runs the file's version after the re-run"
        );
        assert!(!sb.unit_dir().join(".sysmgr-last-good").exists());
    }
    let failed = sb
        .systemctl(&["list-units", "--failed", "--plain", "--no-legend", "web*"])
        .unwrap();
    assert_eq!(failed, "", "no unit of the app is failed");
    std::thread::sleep(Duration::from_millis(300));
    let (k, p) = (keep_alive.stop(), per_request.stop());
    eprintln!("{}", log.join("\n"));
    assert_no_loss([("keep-alive", &k), ("per-request", &p)]);
    assert!(begin.elapsed() < BOUND, "{:?}", begin.elapsed());
}

#[test]
fn apps_after_a_halted_app_of_the_same_file_get_their_previous_units_back() {
    let sb = sandbox();
    let hello = crate::support::workspace_bin("sysmgr-hello")
        .display()
        .to_string();
    let (port_a, port_b) = (free_port(), free_port());
    let eco = |script_a: &str, release: &str| {
        format!(
            r#"{{"apps":[{{"name":"a","script":"{script_a}","instances":2,"listen_timeout":2000,"env":{{"PORT":{port_a},"RELEASE":"{release}"}}}},{{"name":"b","script":"{hello}","instances":2,"env":{{"PORT":{port_b},"RELEASE":"{release}"}}}}]}}"#
        )
    };
    let file = write_in(&sb, "/srv/eco/ecosystem.json", &eco(&hello, "v1"));
    let r = sysmgr_in(&sb, &["start", &file]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let units = crate::support::tree(&sb.unit_dir());
    // v2: `a` cannot start; `b` is fine but comes after `a`.
    write_in(&sb, "/srv/eco/ecosystem.json", &eco("/bin/false", "v2"));
    let r = sysmgr_in(&sb, &["reload", &file]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains(
            "\nreload b: not reloaded, as the reload of `a` failed; put back the previous version's unit files and reloaded systemd: `/etc/systemd/system/b@.service`\n"
        ),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.ends_with(
            "; fix the app file and run `sysmgr reload /srv/eco/ecosystem.json` again\n"
        ),
        "{}",
        r.stderr
    );
    assert_eq!(crate::support::tree(&sb.unit_dir()), units);
    assert_eq!(running(&sb, "a"), [1, 2]);
    assert_eq!(running(&sb, "b"), [1, 2]);
    assert_eq!(releases(&sb, "b"), ["v1", "v1"]);
}
