//! The shared socket against a real systemd when one instance crash-loops (issue 10).
//!
//! systemd fails every socket that activates a unit which hits its start limit, and every
//! instance is activated by the shared socket (`Sockets=`): an instance's start limit used
//! to fail the socket while the other instances still held its port, and nothing could
//! recover without dropping connections. The units now leave the crash-loop brake to
//! `sysmgr exec` (max_restarts): the looping instance ends `failed`, alone.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sysmgr_load::{Background, LoadConfig, Mode, Report};

use crate::lifecycle::{hello_app, http_get, instances, running};
use crate::support::{free_port, sandbox, sysmgr_in, unit_state, wait_for, write_in};

/// `systemctl show -p PROP --value UNIT`.
fn prop(sb: &sysmgr_sandbox::Sandbox, unit: &str, prop: &str) -> String {
    sb.systemctl(&["show", "-p", prop, "--value", unit])
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// Kills `unit` with SIGKILL as soon as each new process of it is up, at most `most` times
/// and for at most 60 s, and returns how many processes it killed. Ends early once the unit
/// is `failed`, which is what the brake leaves.
fn crash_loop(sb: &sysmgr_sandbox::Sandbox, unit: &str, most: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last_pid = String::new();
    let mut kills = 0;
    while kills < most && Instant::now() < deadline {
        let pid = prop(sb, unit, "MainPID");
        if unit_state(sb, unit) == "failed" {
            break;
        }
        if pid == "0" || pid == last_pid || unit_state(sb, unit) != "active" {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        }
        sb.systemctl(&["kill", "--signal=KILL", unit]).unwrap();
        last_pid = pid;
        kills += 1;
    }
    // After the last kill: either the brake refuses the next start, or systemd starts it
    // (bounded generously: the machine may be busy).
    wait_for(30, || {
        let state = unit_state(sb, unit);
        (state == "failed" || (state == "active" && prop(sb, unit, "MainPID") != last_pid))
            .then_some(())
    });
    kills
}

fn keep_alive(port: u16) -> Background {
    Background::start(LoadConfig {
        connections: 8,
        mode: Mode::KeepAlive,
        // Stopped at the end; the duration is only a bound.
        duration: Duration::from_secs(150),
        request_timeout: Duration::from_secs(5),
        ..LoadConfig::new(SocketAddr::from(([127, 0, 0, 1], port)))
    })
}

fn assert_no_loss(what: &str, report: &Report) {
    assert_eq!(report.failed, 0, "{what}: {report}");
    assert_eq!(report.hung, 0, "{what}: {report}");
    assert!(
        report.ok > 100,
        "{what}: only {} requests: {report}",
        report.ok
    );
}

/// The journal line `sysmgr exec` leaves when the brake refuses a start.
fn brake_line(starts: u32, max: u32, app: &str) -> String {
    format!(
        "sysmgr exec: crash loop: this is start {starts} in a row, each less than 10 s after the one before, and max_restarts is {max}; not starting again. The instance stays failed (the others keep serving) until `sysmgr start {app}` or `sysmgr reload {app}`"
    )
}

/// Four instances under keep-alive load; `victim` is killed with SIGKILL twenty times, as
/// fast as systemd restarts it. The brake stops it after max_restarts (16) starts; the socket
/// stays active and the other three serve every request; `recover` then brings it back.
fn a_crash_loop_stays_with_its_instance(victim: u32, recover: &str, extra: &str) {
    let sb = sandbox();
    let port = free_port();
    let file = write_in(&sb, "/srv/web/app.toml", &hello_app("web", 4, port, extra));
    assert_eq!(sysmgr_in(&sb, &["start", &file]).code, 0);
    let unit = format!("web@{victim}.service");
    // The load's connections are held by the other instances: a killed process takes the
    // requests on its own connections with it, and this is about the others.
    sb.systemctl(&["stop", &unit]).unwrap();
    let load = keep_alive(port);
    assert!(wait_for(10, || (load.snapshot().0 > 100).then_some(())).is_some());
    sb.systemctl(&["start", &unit]).unwrap();
    let others: Vec<u64> = (1..=4).filter(|&i| i != u64::from(victim)).collect();
    let before = instances(&sb, "web");

    let looped = Instant::now();
    let kills = crash_loop(&sb, &unit, 20);
    // For whoever runs this with --nocapture.
    eprintln!("instance {victim}: {kills} kills in {:?}", looped.elapsed());
    // Starts 1 to 16 ran and were killed; start 17 was refused.
    assert_eq!(kills, 16, "{}", sb.journal(&unit, 20));
    assert_eq!(unit_state(&sb, &unit), "failed");
    assert_eq!(prop(&sb, &unit, "Result"), "exit-code");
    assert_eq!(prop(&sb, &unit, "ExecMainStatus"), "250");
    assert!(
        sb.journal(&unit, 20).contains(&brake_line(17, 16, "web")),
        "{}",
        sb.journal(&unit, 20)
    );
    assert_eq!(unit_state(&sb, "web.socket"), "active");
    assert_eq!(prop(&sb, "web.socket", "Result"), "success");
    // `status` exits 1 on a degraded app; its JSON is the same.
    let mut json = sysmgr_in(&sb, &["status", "web", "--json"]);
    assert_eq!(json.code, 1, "{}", json.stderr);
    json.code = 0;
    let after = crate::support::status_instances(&json);
    for i in &others {
        assert_eq!(after[i], before[i], "instance {i} was not touched");
    }
    assert_eq!(after[&u64::from(victim)].0, "failed/failed");
    let r = sysmgr_in(&sb, &["status", "web"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stdout.starts_with(&format!(
            "web: degraded (failed: `{unit}`), 4 instances wanted"
        )),
        "{}",
        r.stdout
    );
    // A new connection is served too, by one of the others.
    let body = http_get(port, "/").expect("the others serve new connections");
    assert!(!body.starts_with(&format!("instance {victim} ")), "{body}");
    let (_, failed) = load.snapshot();
    assert_eq!(failed, 0, "requests failed during the crash loop");

    // Recovery, under the same load.
    let r = sysmgr_in(&sb, &[recover, "web"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    match recover {
        "reload" => assert!(
            r.stderr.contains("reload web: 4 of 4 instances ready in "),
            "{}",
            r.stderr
        ),
        _ => assert!(
            r.stderr.ends_with("started `web`: 4 instances running\n"),
            "{}",
            r.stderr
        ),
    }
    assert_eq!(running(&sb, "web"), [1, 2, 3, 4]);
    let r = sysmgr_in(&sb, &["status", "web"]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert!(
        r.stdout.starts_with("web: active, 4 instances wanted"),
        "{}",
        r.stdout
    );
    std::thread::sleep(Duration::from_millis(300));
    let report = load.stop();
    eprintln!("{report}");
    assert_no_loss(
        &format!("crash loop of instance {victim}, then {recover}"),
        &report,
    );
    // The brake starts counting afresh: the recovered instance gets its 16 starts again. A
    // reload moved it to its next generation (surge); a start restarted the same unit.
    let unit = match recover {
        "reload" => format!("web@{victim}:1.service"),
        _ => unit,
    };
    assert_eq!(crash_loop(&sb, &unit, 3), 3);
    assert_eq!(
        unit_state(&sb, &unit),
        "active",
        "{}",
        sb.journal(&unit, 30)
    );
}

// soak: zero loss
#[test]
fn a_crash_loop_of_instance_1_leaves_the_socket_up_and_reload_brings_it_back() {
    a_crash_loop_stays_with_its_instance(1, "reload", "");
}

// soak: zero loss
#[test]
fn a_crash_loop_of_instance_3_leaves_the_socket_up_and_start_brings_it_back() {
    // As a user of its own: the brake's directory is that user's.
    a_crash_loop_stays_with_its_instance(3, "start", "dynamic_user = true\n");
}

/// The socket can still fail for reasons of its own: here systemd's trigger limit, lowered
/// by a drop-in so that the second activation trips it. The instances keep serving on the
/// listening socket they inherited, and systemd cannot listen on the address again until
/// they stop: `reload` and `start` say so and change nothing; `restart` stops them all and
/// starts the app again.
#[test]
fn a_socket_failed_by_its_trigger_limit_is_named_and_restart_brings_the_app_back() {
    let sb = sandbox();
    let port = free_port();
    let file = write_in(&sb, "/srv/web/app.toml", &hello_app("web", 3, port, ""));
    assert_eq!(sysmgr_in(&sb, &["start", &file]).code, 0);
    write_in(
        &sb,
        "/etc/systemd/system/web.socket.d/limit.conf",
        "[Socket]\nTriggerLimitIntervalSec=1min\nTriggerLimitBurst=1\n",
    );
    sb.systemctl(&["daemon-reload"]).unwrap();
    // New connections keep coming, so each time an instance dies the socket (listening
    // again) is activated by one: the second activation trips the limit.
    let load = Background::start(LoadConfig {
        connections: 2,
        mode: Mode::PerRequest,
        duration: Duration::from_secs(60),
        request_timeout: Duration::from_secs(5),
        ..LoadConfig::new(SocketAddr::from(([127, 0, 0, 1], port)))
    });
    for _ in 0..10 {
        if unit_state(&sb, "web.socket") == "failed" {
            break;
        }
        crash_loop(&sb, "web@2.service", 1);
    }
    drop(load.stop());
    assert_eq!(unit_state(&sb, "web.socket"), "failed");
    assert_eq!(prop(&sb, "web.socket", "Result"), "trigger-limit-hit");
    let holders: Vec<String> = [1, 2, 3]
        .iter()
        .map(|i| format!("web@{i}.service"))
        .filter(|u| unit_state(&sb, u) == "active")
        .collect();
    assert!(!holders.is_empty());
    let holders = holders.join(", ");
    let r = sysmgr_in(&sb, &["status", "web"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stdout.starts_with("web: degraded (failed: "),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.lines().next().unwrap().contains("`web.socket`"),
        "{}",
        r.stdout
    );

    let mut json = sysmgr_in(&sb, &["status", "web", "--json"]);
    json.code = 0;
    let before = crate::support::status_instances(&json);
    for verb in ["reload", "start"] {
        let r = sysmgr_in(&sb, &[verb, "web"]);
        assert_eq!(r.code, 1, "{}", r.stderr);
        assert_eq!(
            r.stderr,
            format!("sysmgr: error: cannot {verb} `web` without stopping it: its socket `web.socket` failed (systemd's result: `trigger-limit-hit`) and systemd closed it, while {holders} still serve on the listening socket they inherited; systemd cannot listen on that address again until they stop; `sysmgr restart web` stops every instance and starts the app again (connections are refused for that moment)\n")
        );
    }
    let mut json = sysmgr_in(&sb, &["status", "web", "--json"]);
    json.code = 0;
    assert_eq!(
        crate::support::status_instances(&json),
        before,
        "nothing changed"
    );
    assert!(http_get(port, "/").is_some(), "the instances still serve");

    let r = sysmgr_in(&sb, &["restart", "web"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.starts_with(&format!(
        "restart web: `web.socket` had failed (systemd's result: `trigger-limit-hit`) while {holders} served on it; systemd cannot listen again until they stop, so every instance is stopped first and the app started again\n"
    )), "{}", r.stderr);
    assert!(
        r.stderr.ends_with("restarted `web`: 3 instances running\n"),
        "{}",
        r.stderr
    );
    assert_eq!(unit_state(&sb, "web.socket"), "active");
    assert_eq!(sysmgr_in(&sb, &["status", "web"]).code, 0);
    assert!(http_get(port, "/").is_some());
}

/// The brake's streak counts every start, a rollout's restarts too: `reload` forgets it for
/// the instances it restarts, so an instance at the end of its allowance (16 starts, the
/// 17th would be refused) is restarted into the new version rather than refused.
#[test]
fn reload_forgets_the_streak_of_the_instances_it_restarts() {
    let sb = sandbox();
    let port = free_port();
    let file = write_in(&sb, "/srv/web/app.toml", &hello_app("web", 2, port, ""));
    assert_eq!(sysmgr_in(&sb, &["start", &file]).code, 0);
    // Start 1 (by `start`) and 15 restarts: the 16th process runs.
    assert_eq!(crash_loop(&sb, "web@1.service", 15), 15);
    assert_eq!(unit_state(&sb, "web@1.service"), "active");
    let streak = sb
        .run(&["cat", "/run/sysmgr-restarts/web@1.service/starts"])
        .unwrap();
    assert!(streak.starts_with("16 "), "{streak}");
    let r = sysmgr_in(&sb, &["reload", "web"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("reload web: 2 of 2 instances ready in "),
        "{}",
        r.stderr
    );
    // A surge reload: instance 1's next generation starts with a streak of its own, and the
    // old one's is forgotten once it stopped.
    let streak = sb
        .run(&["cat", "/run/sysmgr-restarts/web@1:1.service/starts"])
        .unwrap();
    assert!(streak.starts_with("1 "), "{streak}");
    assert!(!sb
        .root()
        .join("run/sysmgr-restarts/web@1.service/starts")
        .exists());
    assert_eq!(running(&sb, "web"), [1, 2]);
    // In place, the same unit restarts: its streak starts again at 1.
    assert_eq!(crash_loop(&sb, "web@1:1.service", 15), 15);
    let r = sysmgr_in(&sb, &["reload", "web", "--surge", "0"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let streak = sb
        .run(&["cat", "/run/sysmgr-restarts/web@1:1.service/starts"])
        .unwrap();
    assert!(streak.starts_with("1 "), "{streak}");
    assert_eq!(running(&sb, "web"), [1, 2]);
}

/// `sysmgr exec` itself, outside systemd: the brake refuses the start past the allowance with
/// exit status 250, and one that cannot count says so and starts the program anyway.
#[test]
fn sysmgr_exec_refuses_the_start_past_max_restarts_and_runs_when_it_cannot_count() {
    let tmp = tempfile::tempdir().unwrap();
    let exec = |dir: &std::path::Path| {
        crate::support::sysmgr()
            .args(["exec", "/bin/true"])
            .env("SYSMGR_APP", "web")
            .env("SYSMGR_MAX_RESTARTS", "2")
            .env("SYSMGR_RESTARTS_DIR", dir)
            .env_remove("JOURNAL_STREAM")
            .output()
            .unwrap()
    };
    for _ in 0..2 {
        let out = exec(tmp.path());
        assert!(out.status.success(), "{out:?}");
        assert!(out.stderr.is_empty(), "{out:?}");
    }
    let out = exec(tmp.path());
    assert_eq!(out.status.code(), Some(250));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!("{}\n", brake_line(3, 2, "web"))
    );
    let missing = tmp.path().join("gone");
    let out = exec(&missing);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "sysmgr exec: cannot record this start in `{}/starts` (No such file or directory (os error 2)); the crash-loop brake (max_restarts) is off for it\n",
            missing.display()
        )
    );
}
