//! Timers instead of a daemon, against a real systemd: `cron_restart` runs a graceful
//! `sysmgr reload` at its time, and the graceful `max_memory_restart` check restarts an
//! instance that grew past the limit through its drain; both under load with no request
//! lost, both shown by `status`, both started, stopped and removed with the app.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use sysmgr_load::{Background, LoadConfig, Mode, Report};

use crate::lifecycle::{hello_app, http_get, instances};
use crate::ops::assert_schema;
use crate::support::{free_port, sandbox, sysmgr_in, unit_state, wait_for, write_in};

fn pids(sb: &sysmgr_sandbox::Sandbox, app: &str) -> BTreeMap<u64, u64> {
    instances(sb, app)
        .into_iter()
        .map(|(i, (_, pid))| (i, pid))
        .collect()
}

fn status_json(sb: &sysmgr_sandbox::Sandbox, app: &str) -> Value {
    let r = sysmgr_in(sb, &["status", app, "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    serde_json::from_str(&r.stdout).unwrap()
}

fn now_usec() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

/// Keep-alive and per-request load on `port`, bounded by two minutes.
fn load(port: u16) -> [Background; 2] {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let config = |mode, connections| LoadConfig {
        connections,
        mode,
        duration: Duration::from_secs(120),
        request_timeout: Duration::from_secs(5),
        ..LoadConfig::new(addr)
    };
    [
        Background::start(config(Mode::KeepAlive, 6)),
        Background::start(config(Mode::PerRequest, 3)),
    ]
}

fn assert_no_loss(reports: &[Report]) {
    for (name, report) in ["keep-alive", "per-request"].iter().zip(reports) {
        assert_eq!(report.failed, 0, "{name}: {:?}", report.failures);
        assert_eq!(report.hung, 0, "{name}");
        assert!(report.ok > 100, "{name}: only {} requests", report.ok);
    }
}

/// The files and directories sysmgr wrote for `app` in the sandbox's unit directory.
fn unit_files(sb: &sysmgr_sandbox::Sandbox, app: &str) -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(sb.root().join("etc/systemd/system"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| {
            ["-", ".", "@"]
                .iter()
                .any(|c| n.starts_with(&format!("{app}{c}")))
        })
        .collect();
    files.sort();
    files
}

// soak: zero loss
#[test]
fn cron_restart_reloads_every_instance_gracefully_at_its_time_under_load() {
    let sb = sandbox();
    let port = free_port();
    // A 6-field schedule (seconds first) for a second about 10 s from now: once a minute.
    let second = (SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 10)
        % 60;
    let app = hello_app(
        "web",
        3,
        port,
        &format!("cron_restart = \"{second} * * * * *\"\n"),
    );
    let file = write_in(&sb, "/srv/web/app.toml", &app);
    let r = sysmgr_in(&sb, &["start", &file]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let before = pids(&sb, "web");
    assert_eq!(before.len(), 3, "{before:?}");
    assert_eq!(unit_state(&sb, "web-cron.timer"), "active");

    let json = status_json(&sb, "web");
    let cron = &json["cron_restart"];
    assert_schema(
        "cron_restart",
        cron,
        &[
            ("timer", 's'),
            ("state", 's'),
            ("on_calendar", 'a'),
            ("next_run_usec", 'U'),
            ("last_run_usec", 'U'),
            ("last_result", 'S'),
        ],
    );
    assert_eq!(cron["timer"], "web-cron.timer", "{json}");
    assert_eq!(cron["state"], "active", "{json}");
    assert_eq!(
        cron["on_calendar"][0],
        format!("*-*-* *:*:{second:02}"),
        "{json}"
    );
    let next = cron["next_run_usec"].as_u64().expect("a next run");
    let now = now_usec();
    assert!(
        next > now && next < now + 70_000_000,
        "next {next}, now {now}"
    );
    assert!(cron["last_run_usec"].is_null(), "{json}");
    assert!(cron["last_result"].is_null(), "{json}");
    assert!(json["memory_limit"].is_null(), "{json}");
    let text = sysmgr_in(&sb, &["status", "web"]).stdout;
    assert!(
        text.contains(&format!(
            "cron_restart: *-*-* *:*:{second:02} (web-cron.timer): next "
        )),
        "{text}"
    );
    assert!(text.contains("; last never\n"), "{text}");

    let [keep_alive, per_request] = load(port);
    // The timer fires, the reload replaces every instance one at a time and the oneshot ends.
    let replaced = wait_for(75, || {
        let json = status_json(&sb, "web");
        let after = pids(&sb, "web");
        let done = json["cron_restart"]["last_result"] == "success"
            && after.len() == 3
            && after.iter().all(|(i, pid)| *pid != before[i] && *pid != 0);
        done.then_some(after)
    });
    std::thread::sleep(Duration::from_millis(300));
    let reports = [keep_alive.stop(), per_request.stop()];
    let after = replaced.unwrap_or_else(|| {
        panic!(
            "the cron reload did not replace every instance: {before:?} -> {:?}\n{}",
            pids(&sb, "web"),
            sysmgr_in(&sb, &["status", "web"]).stdout
        )
    });
    eprintln!("{before:?} -> {after:?}");
    assert_no_loss(&reports);
    // The reload is sysmgr's own, recorded like any other.
    // journald takes the entries in its own time.
    let history = wait_for(10, || {
        let history = sysmgr_in(&sb, &["history", "web"]).stdout;
        history
            .lines()
            .any(|l| l.contains(" reload ") && l.contains(" ok "))
            .then_some(history)
    });
    assert!(
        history.is_some(),
        "no reload in {}",
        sysmgr_in(&sb, &["history", "web"]).stdout
    );
    let json = status_json(&sb, "web");
    assert!(
        json["cron_restart"]["last_run_usec"].as_u64().is_some(),
        "{json}"
    );
    let text = sysmgr_in(&sb, &["status", "web"]).stdout;
    assert!(text.contains(" ago), success\n"), "{text}");

    // Stopping the app stops its timer; deleting it leaves no unit behind.
    assert_eq!(sysmgr_in(&sb, &["stop", "web"]).code, 0);
    assert_eq!(unit_state(&sb, "web-cron.timer"), "inactive");
    assert_eq!(
        unit_files(&sb, "web"),
        [
            "web-cron.service",
            "web-cron.timer",
            "web.socket",
            "web.target",
            "web.target.wants",
            "web@.service"
        ]
    );
    let r = sysmgr_in(&sb, &["delete", "web"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(unit_files(&sb, "web"), Vec::<String>::new());
    let out = sb
        .command("systemctl")
        .args(["list-units", "--all", "--plain", "--no-legend", "web*"])
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(!listed.contains("web-cron"), "{listed}");
}

#[test]
fn cron_restart_in_systemd_syntax_is_normalized_by_systemd_and_verifies() {
    let sb = sandbox();
    let port = free_port();
    let app = hello_app("nightly", 1, port, "cron_restart = \"Mon..Fri 03:00\"\n");
    let file = write_in(&sb, "/srv/nightly/app.toml", &app);
    let r = sysmgr_in(&sb, &["start", &file]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let json = status_json(&sb, "nightly");
    // systemd's own normalization of what was written.
    assert_eq!(
        json["cron_restart"]["on_calendar"][0], "Mon..Fri *-*-* 03:00:00",
        "{json}"
    );
    assert!(
        json["cron_restart"]["next_run_usec"].as_u64().is_some(),
        "{json}"
    );
    let out = sb
        .command("systemd-analyze")
        .args([
            "verify",
            "--man=no",
            "/etc/systemd/system/nightly-cron.timer",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// soak: zero loss
#[test]
fn an_instance_grown_past_the_graceful_memory_limit_is_restarted_through_its_drain() {
    let sb = sandbox();
    let port = free_port();
    // sysmgr-hello starts at a few MiB; 80 MiB more is above the limit (64 MiB) and below
    // the kernel's backstop (96 MiB).
    let app = hello_app("mem", 2, port, "max_memory_restart = \"64M\"\n");
    let file = write_in(&sb, "/srv/mem/app.toml", &app);
    let r = sysmgr_in(&sb, &["start", &file]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let before = pids(&sb, "mem");
    assert_eq!(unit_state(&sb, "mem-memory.timer"), "active");
    let json = status_json(&sb, "mem");
    assert_schema(
        "memory_limit",
        &json["memory_limit"],
        &[
            ("timer", 's'),
            ("state", 's'),
            ("limit_bytes", 'U'),
            ("last_check_usec", 'U'),
            ("last_restart", 'O'),
        ],
    );
    assert_eq!(json["memory_limit"]["limit_bytes"], 64 << 20, "{json}");
    assert_eq!(json["memory_limit"]["timer"], "mem-memory.timer", "{json}");
    assert!(json["memory_limit"]["last_restart"].is_null(), "{json}");
    let service =
        std::fs::read_to_string(sb.root().join("etc/systemd/system/mem@.service")).unwrap();
    assert!(
        service.contains(&format!("\nMemoryMax={}\n", 96 << 20)),
        "{service}"
    );

    let [keep_alive, per_request] = load(port);
    std::thread::sleep(Duration::from_millis(500));
    let grown = http_get(port, "/grow?mb=80").expect("/grow answers");
    // `grew 80 MiB instance N pid P`
    let words: Vec<&str> = grown.split_whitespace().collect();
    let (instance, pid): (u64, u64) = (words[4].parse().unwrap(), words[6].parse().unwrap());
    assert_eq!(before[&instance], pid, "{grown}");
    let memory = |json: &Value| {
        json["instances"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["instance"] == instance)
            .and_then(|i| i["memory_bytes"].as_u64())
    };
    let grown_to = memory(&status_json(&sb, "mem")).unwrap_or(0);
    let replaced = wait_for(40, || {
        let after = pids(&sb, "mem");
        (after[&instance] != pid && after[&instance] != 0).then_some(after)
    });
    std::thread::sleep(Duration::from_millis(500));
    let reports = [keep_alive.stop(), per_request.stop()];
    let after = replaced.unwrap_or_else(|| {
        panic!(
            "instance {instance} was not restarted (memory {grown_to}):\n{}",
            sysmgr_in(&sb, &["status", "mem"]).stdout
        )
    });
    eprintln!("grown to {grown_to} bytes; {before:?} -> {after:?}");
    assert!(grown_to > 64 << 20, "{grown_to}");
    assert_no_loss(&reports);
    // Only the grown instance was restarted.
    for (i, old) in &before {
        if *i != instance {
            assert_eq!(
                after[i], *old,
                "instance {i} is below the limit and keeps its process"
            );
        }
    }
    let last = wait_for(10, || {
        let json = status_json(&sb, "mem");
        let last = json["memory_limit"]["last_restart"].clone();
        (!last.is_null()).then_some(last)
    })
    .expect("status shows the last graceful restart");
    assert_eq!(last["outcome"], "ok", "{last}");
    assert_eq!(last["action"], "memory-restart", "{last}");
    let text = sysmgr_in(&sb, &["status", "mem"]).stdout;
    assert!(
        text.contains("max_memory_restart: 64.0 MiB, graceful (mem-memory.timer, last check "),
        "{text}"
    );
    assert!(text.contains(" ago), ok: replaced "), "{text}");

    assert_eq!(sysmgr_in(&sb, &["stop", "mem"]).code, 0);
    assert_eq!(unit_state(&sb, "mem-memory.timer"), "inactive");
    assert_eq!(sysmgr_in(&sb, &["delete", "mem"]).code, 0);
    assert_eq!(unit_files(&sb, "mem"), Vec::<String>::new());
}

#[test]
fn reload_with_a_changed_file_starts_and_stops_the_timers_it_adds_and_removes() {
    let sb = sandbox();
    let port = free_port();
    let path = "/srv/web/app.toml";
    let file = write_in(&sb, path, &hello_app("web", 1, port, ""));
    assert_eq!(sysmgr_in(&sb, &["start", &file]).code, 0);
    assert_eq!(
        unit_files(&sb, "web").len(),
        4,
        "{:?}",
        unit_files(&sb, "web")
    );

    let extra = "cron_restart = \"@daily\"\nmax_memory_restart = \"200M\"\n";
    write_in(&sb, path, &hello_app("web", 1, port, extra));
    let r = sysmgr_in(&sb, &["reload", &file]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("reload web: started web-cron.timer\n"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("reload web: started web-memory.timer\n"),
        "{}",
        r.stderr
    );
    assert_eq!(unit_state(&sb, "web-cron.timer"), "active");
    assert_eq!(unit_state(&sb, "web-memory.timer"), "active");

    // `hard` drops the check; no cron_restart drops the cron timer.
    let hard = "max_memory_restart = \"200M\"\nmemory_limit_mode = \"hard\"\n";
    write_in(&sb, path, &hello_app("web", 1, port, hard));
    let r = sysmgr_in(&sb, &["reload", &file]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    // Without their files, systemd drops the timers on the daemon-reload (sysmgr would stop
    // one it kept).
    for timer in ["web-cron.timer", "web-memory.timer"] {
        assert_ne!(unit_state(&sb, timer), "active", "{timer}: {}", r.stderr);
    }
    assert_eq!(
        unit_files(&sb, "web"),
        [
            "web.socket",
            "web.target",
            "web.target.wants",
            "web@.service"
        ]
    );
    let json = status_json(&sb, "web");
    assert!(
        json["cron_restart"].is_null() && json["memory_limit"].is_null(),
        "{json}"
    );
}

/// What `cron_restart` accepts, systemd accepts too, and what it refuses as bad systemd
/// syntax, systemd refuses as well (`systemd-analyze calendar`, no manager needed).
#[test]
fn every_accepted_schedule_is_one_systemd_accepts_and_refused_ones_it_refuses() {
    let analyze = |expr: &str| {
        std::process::Command::new("systemd-analyze")
            .args(["calendar", expr])
            .output()
            .expect("systemd-analyze runs")
            .status
            .success()
    };
    let accepted = [
        "0 3 * * *",
        "*/15 * * * *",
        "30 2 * * 1-5",
        "0 0 * * SUN,sat",
        "0 0 * * 0,7",
        "0 12 1,15 JAN-MAR *",
        "5,10,11,12 8-18/2 * * *",
        "*/10 * * * * *",
        "7 30 4 * * *",
        "0 0 ? * MON",
        "0 0 1 */3 *",
        "0 0 1-31/10 * *",
        "0 0 * * 1-7/2",
        "@yearly",
        "@monthly",
        "@weekly",
        "@daily",
        "@hourly",
        "daily",
        "weekly UTC",
        "*-*-* 03:00:00",
        "Mon..Fri 22:30",
        "Sat,Sun *-*-* 10:00",
        "2030-01-01 00:00:00 UTC",
        "*-*~01 00:00",
        "*:0/5",
        "12-25 08:00 Europe/Berlin",
        "Wed",
        "03:00:00.5",
    ];
    for written in accepted {
        let schedule = sysmgr::config::Schedule::parse(written)
            .unwrap_or_else(|e| panic!("`{written}` refused: {e}"));
        assert!(
            analyze(&schedule.on_calendar),
            "`{written}` became `{}`, which systemd refuses",
            schedule.on_calendar
        );
    }
    for refused in [
        "Mon 25:00",
        "*-13-01",
        "tomorrow",
        "Mon..Fri 3am",
        "daily at 3",
        "*-*-* 10:61",
    ] {
        assert!(
            sysmgr::config::Schedule::parse(refused).is_err(),
            "`{refused}` accepted"
        );
        assert!(!analyze(refused), "systemd accepts `{refused}`");
    }
}
