//! `sysmgr reload` against a real systemd: the rollout keeps serving under load, halts at a
//! broken new version with the rest still serving and the previous units put back, is bounded by `kill_timeout`, applies a
//! changed app file, and never interleaves with a second reload of the same app.

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader, Read as _};
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use sysmgr_load::{get_blocking, Background, LoadConfig, Mode};
use sysmgr_testkit::ProbeReport;

use crate::lifecycle::{hello_app, http_get, instances, running};
use crate::support::{free_port, sandbox, sysmgr_bin, sysmgr_in, workspace_bin, write_in};

/// Starts `app` from `/srv/NAME/app.toml` and returns the PIDs of its instances.
fn start(sb: &sysmgr_sandbox::Sandbox, name: &str, app: &str) -> BTreeMap<u64, u64> {
    let file = write_in(sb, &format!("/srv/{name}/app.toml"), app);
    let r = sysmgr_in(sb, &["start", &file]);
    assert_eq!(r.code, 0, "start failed: {}", r.stderr);
    pids(sb, name)
}

fn pids(sb: &sysmgr_sandbox::Sandbox, name: &str) -> BTreeMap<u64, u64> {
    instances(sb, name)
        .into_iter()
        .map(|(i, (_, pid))| (i, pid))
        .collect()
}

// soak: zero loss
#[test]
fn reload_under_load_loses_no_request_and_replaces_every_process() {
    let sb = sandbox();
    let port = free_port();
    let before = start(&sb, "web", &hello_app("web", 4, port, ""));
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let load = |mode, connections| {
        Background::start(LoadConfig {
            connections,
            mode,
            // Stopped after the reload; the duration is only a bound.
            duration: Duration::from_secs(120),
            request_timeout: Duration::from_secs(5),
            ..LoadConfig::new(addr)
        })
    };
    let keep_alive = load(Mode::KeepAlive, 8);
    let per_request = load(Mode::PerRequest, 4);
    let slow: Vec<_> = (0..20)
        .map(|_| {
            std::thread::spawn(move || get_blocking(addr, "/slow?ms=2000", Duration::from_secs(15)))
        })
        .collect();
    // Let the slow requests reach their workers before the first one is restarted.
    std::thread::sleep(Duration::from_millis(300));
    let r = sysmgr_in(&sb, &["reload", "web"]);
    std::thread::sleep(Duration::from_millis(300));
    let keep_alive = keep_alive.stop();
    let per_request = per_request.stop();
    // The timings, for whoever runs this with --nocapture.
    eprintln!("{}", r.stderr);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("reload web: 4 of 4 instances ready in "),
        "{}",
        r.stderr
    );
    for (name, report) in [("keep-alive", &keep_alive), ("per-request", &per_request)] {
        assert_eq!(report.failed, 0, "{name}: {:?}", report.failures);
        assert_eq!(report.hung, 0, "{name}");
        assert!(report.ok > 100, "{name}: only {} requests", report.ok);
    }
    for handle in slow {
        let (status, body) = handle
            .join()
            .unwrap()
            .expect("a slow request in flight completes");
        assert_eq!(status, 200);
        assert!(body.starts_with("slow 2000ms instance "), "{body}");
    }
    let after = pids(&sb, "web");
    for i in 1..=4 {
        assert_ne!(after[&i], before[&i], "instance {i} runs a new process");
    }
}

/// Each case: a new version that cannot become ready, reloaded by surge (the default) or in
/// place (`--surge 0`).
fn broken_version_halts_after_the_first_instance(broken: &str, surge: bool, expect: &[&str]) {
    let sb = sandbox();
    let port = free_port();
    let good = hello_app("web", 4, port, "listen_timeout = 2000\n");
    let before = start(&sb, "web", &good);
    let hello = workspace_bin("sysmgr-hello").display().to_string();
    let bad = good.replace(&format!("[\"{hello}\"]"), broken);
    assert_ne!(bad, good);
    write_in(&sb, "/srv/web/app.toml", &bad);

    let mode: &[&str] = if surge { &[] } else { &["--surge", "0"] };
    let r = sysmgr_in(&sb, &[&["reload", "/srv/web/app.toml"], mode].concat());
    assert_eq!(r.code, 1, "{}", r.stderr);
    for line in expect {
        assert!(
            r.stderr.contains(line),
            "missing `{line}` in:\n{}",
            r.stderr
        );
    }
    // The previous version's units are back, and instance 1 runs on them again (in place),
    // or never stopped (surge).
    let instance_1 = if surge {
        "`web@1:1.service` is stopped; its old process, `web@1.service`, kept serving and still runs the previous version"
    } else {
        "`web@1.service` runs the previous version again (pid "
    };
    assert!(
        r.stderr.contains(&format!(
            "reload web: halted; put back the previous version's unit files and reloaded systemd: `/etc/systemd/system/web@.service`; {instance_1}"
        )),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains(
            "; not restarted, still running the previous version: web@2.service, web@3.service, web@4.service\n"
        ),
        "{}",
        r.stderr
    );
    assert!(r.stderr.ends_with(
        "the instances not yet restarted still run the previous version; fix the app file and run `sysmgr reload /srv/web/app.toml` again\n"
    ), "{}", r.stderr);
    // The other three (with surge, all four) still run the old processes and serve.
    let after = pids(&sb, "web");
    let untouched: &[u64] = if surge { &[1, 2, 3, 4] } else { &[2, 3, 4] };
    for &i in untouched {
        assert_eq!(after[&i], before[&i], "instance {i} was not touched");
    }
    assert_eq!(running(&sb, "web"), [1, 2, 3, 4]);
    for _ in 0..20 {
        assert!(http_get(port, "/").is_some(), "the old version serves");
    }

    // Regression: the failed instance must not wedge the next reload (start limit, or a
    // shared socket failed by systemd).
    write_in(&sb, "/srv/web/app.toml", &good);
    let r = sysmgr_in(&sb, &["reload", "/srv/web/app.toml"]);
    assert_eq!(r.code, 0, "the fixed version reloads: {}", r.stderr);
    assert_eq!(running(&sb, "web"), [1, 2, 3, 4]);
    assert!(http_get(port, "/").is_some());
}

#[test]
fn a_new_version_that_exits_at_once_halts_the_rollout_after_the_first_instance() {
    broken_version_halts_after_the_first_instance(
        "[\"/bin/sh\", \"-c\", \"echo broken build; exit 3\"]",
        true,
        &[
            "reload web: instance 1 of 4 (web@1:1.service) failed after ",
            ": the start job ended with `failed`; systemd's result: `exit-code`, exit status 3\n",
            "  last journal lines of web@1:1.service:\n",
            "    broken build\n",
        ],
    );
}

#[test]
fn in_place_a_new_version_that_exits_at_once_halts_and_instance_1_runs_the_old_one_again() {
    broken_version_halts_after_the_first_instance(
        "[\"/bin/sh\", \"-c\", \"echo broken build; exit 3\"]",
        false,
        &[
            "reload web: instance 1 of 4 (web@1.service) failed after ",
            ": the restart job ended with `failed`; systemd's result: `exit-code`, exit status 3\n",
            "  last journal lines of web@1.service:\n",
            "    broken build\n",
        ],
    );
}

#[test]
fn a_new_version_that_never_sends_ready_halts_after_listen_timeout() {
    broken_version_halts_after_the_first_instance(
        "[\"/bin/sleep\", \"infinity\"]",
        true,
        &[
            "reload web: instance 1 of 4 (web@1:1.service) failed after ",
            ": the start job ended with `failed`; systemd's result: `timeout`\n",
        ],
    );
}

/// A worker that ignores SIGINT and SIGTERM (every process of the cgroup does: ignored
/// signals survive exec), so only `TimeoutStopSec=` (kill_timeout) ends it.
fn stubborn_app(name: &str, n: u32, kill_timeout_ms: u32) -> String {
    format!(
        "name = \"{name}\"\ncommand = [\"/bin/sh\", \"-c\", \"trap '' INT TERM; while :; do sleep 1; done\"]\ninstances = {n}\nwait_ready = false\nkill_timeout = {kill_timeout_ms}\n"
    )
}

#[test]
fn kill_timeout_bounds_each_restart_of_a_worker_that_ignores_the_signal() {
    let sb = sandbox();
    let before = start(&sb, "stubborn", &stubborn_app("stubborn", 3, 1000));
    let started = Instant::now();
    let r = sysmgr_in(&sb, &["reload", "stubborn", "--surge", "0"]);
    let took = started.elapsed();
    assert_eq!(r.code, 0, "{}", r.stderr);
    // systemd's default stop timeout is 90 s per instance; a generous guard, not a benchmark.
    assert!(
        took < Duration::from_secs(30),
        "took {took:?}:\n{}",
        r.stderr
    );
    // Each instance waited out its kill_timeout: the stop really was SIGKILL after 1 s.
    let per_instance: Vec<f64> = r
        .stderr
        .lines()
        .filter(|l| l.contains(" of 3 (stubborn@"))
        .filter_map(|l| l.split(" ready in ").nth(1))
        .map(|rest| {
            let (n, unit) = rest.split_once(' ').unwrap();
            let n: f64 = n.parse().unwrap();
            if unit.starts_with("ms") {
                n / 1000.0
            } else {
                n
            }
        })
        .collect();
    assert_eq!(per_instance.len(), 3, "{}", r.stderr);
    assert!(per_instance.iter().all(|&s| s >= 1.0), "{per_instance:?}");
    let after = pids(&sb, "stubborn");
    for i in 1..=3 {
        assert_ne!(after[&i], before[&i]);
    }

    // By surge, the old processes' stops wait out kill_timeout too, but in the background:
    // each is killed after 1 s, and the reload does not wait 3 of them in a row.
    let started = Instant::now();
    let r = sysmgr_in(&sb, &["reload", "stubborn"]);
    let took = started.elapsed();
    assert_eq!(r.code, 0, "{}", r.stderr);
    let drains: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.contains(") drained in ") || l.contains(") stopped after "))
        .collect();
    assert_eq!(drains.len(), 3, "{}", r.stderr);
    for line in &drains {
        assert!(
            line.contains(" in 1.0 s")
                || line.contains(" in 1.1 s")
                || line.contains(" in 1.2 s")
                || line.contains(" after 1."),
            "{}",
            r.stderr
        );
    }
    assert!(
        took < Duration::from_secs(30),
        "took {took:?}:\n{}",
        r.stderr
    );
    let failed = sb
        .systemctl(&[
            "list-units",
            "--failed",
            "--plain",
            "--no-legend",
            "stubborn*",
        ])
        .unwrap();
    assert_eq!(failed, "", "no unit of the app is left failed by its kill");
}

#[test]
fn a_second_reload_of_the_same_app_waits_or_refuses() {
    let sb = sandbox();
    start(&sb, "stubborn", &stubborn_app("stubborn", 2, 1500));
    // The first reload takes about 2 x 0.4 s plus the last old process's 1.5 s kill_timeout.
    let mut first = sb
        .command(sysmgr_bin())
        .args(["reload", "stubborn"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Its first line is printed once it holds the lock.
    let mut first_err = BufReader::new(first.stderr.take().unwrap());
    let mut line = String::new();
    first_err.read_line(&mut line).unwrap();
    assert_eq!(
        line,
        "reload stubborn: 2 instances, surge 1: each new process serves before its old one drains\n"
    );
    let lock = sb.root().join("run/sysmgr/stubborn.lock");
    let holder: u32 = std::fs::read_to_string(&lock)
        .unwrap()
        .trim()
        .parse()
        .unwrap();

    let r = sysmgr_in(&sb, &["reload", "stubborn", "--no-wait"]);
    assert_eq!(r.code, 1);
    assert_eq!(
        r.stderr,
        format!("sysmgr: error: another sysmgr (pid {holder}) is changing `stubborn` right now (lock `/run/sysmgr/stubborn.lock`); wait for it to finish, or leave out --no-wait to queue behind it\n")
    );

    let r = sysmgr_in(&sb, &["reload", "stubborn"]);
    let mut rest = String::new();
    first_err.read_to_string(&mut rest).unwrap();
    assert!(first.wait().unwrap().success(), "{rest}");
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.starts_with(&format!(
            "sysmgr: another sysmgr (pid {holder}) is changing `stubborn`; waiting for it to finish (--no-wait fails instead)\nreload stubborn: 2 instances, surge 1: each new process serves before its old one drains\n"
        )),
        "{}",
        r.stderr
    );
    // The second rollout began only after the first had finished all its instances.
    assert!(
        rest.contains("reload stubborn: 2 of 2 instances ready"),
        "{rest}"
    );
}

#[test]
fn reload_from_a_file_applies_a_changed_environment_and_instance_count() {
    let sb = sandbox();
    let port = free_port();
    let probe = workspace_bin("sysmgr-probe");
    let app = |n: u32, release: &str| {
        format!(
            "name = \"probe\"\ncommand = [\"{}\"]\ninstances = {n}\nlisten = [\"127.0.0.1:{port}\"]\n[env]\nSYSMGR_PROBE_DIR = \"/run/probe\"\nRELEASE = \"{release}\"\n",
            probe.display()
        )
    };
    start(&sb, "probe", &app(3, "v1"));
    let report =
        |i: u32| ProbeReport::read(&sb.root().join(format!("run/probe/{i}.json"))).unwrap();
    assert_eq!(report(1).var("RELEASE"), Some("v1"));
    let old_pids: Vec<u32> = (1..=3).map(|i| report(i).pid).collect();

    // PM2's `--update-env` trap: a reload by file always applies the file.
    write_in(&sb, "/srv/probe/app.toml", &app(2, "v2"));
    let r = sysmgr_in(&sb, &["reload", "/srv/probe/app.toml"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr
            .ends_with("reload probe: stopped 1 instance beyond the app's count: 3\n"),
        "{}",
        r.stderr
    );
    for i in 1..=2 {
        let now = report(i);
        assert_eq!(now.var("RELEASE"), Some("v2"), "instance {i}");
        assert_ne!(now.pid, old_pids[i as usize - 1]);
    }
    assert_eq!(running(&sb, "probe"), [1, 2]);

    // And back up: the new instance starts in the rollout.
    write_in(&sb, "/srv/probe/app.toml", &app(3, "v3"));
    let r = sysmgr_in(&sb, &["reload", "/srv/probe/app.toml"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(running(&sb, "probe"), [1, 2, 3]);
    for i in 1..=3 {
        assert_eq!(report(i).var("RELEASE"), Some("v3"), "instance {i}");
    }
}
