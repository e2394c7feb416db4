//! `health_check` against a real systemd: a new version that becomes ready but answers its
//! health path with an error halts `sysmgr reload` at the first instance, the others serving
//! the old version, under load with no failed request; a healthy version passes the gate.
//! The probe must reach the new instance itself: with the old, healthy instances on the
//! shared socket, a probe through that socket would pass the broken version.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use sysmgr_load::{Background, LoadConfig, Mode, Report};
use sysmgr_sandbox::Sandbox;

use crate::lifecycle::{hello_app, http_get, instances, running};
use crate::support::{free_port, sandbox, sysmgr_in, unit_state, workspace_bin, write_in};

fn load(port: u16, mode: Mode, connections: usize) -> Background {
    Background::start(LoadConfig {
        connections,
        mode,
        rate: Some(2000),
        // Stopped after the reloads; the duration is only a bound.
        duration: Duration::from_secs(120),
        max_requests: Some(1_000_000),
        request_timeout: Duration::from_secs(10),
        ..LoadConfig::new(SocketAddr::from(([127, 0, 0, 1], port)))
    })
}

fn assert_clean(what: &str, report: &Report) {
    assert!(
        report.ok > 100,
        "{what}: only {} requests:\n{report}",
        report.ok
    );
    assert_eq!(
        (report.failed, report.hung),
        (0, 0),
        "{what}: requests failed or hung:\n{report}"
    );
}

fn pids(sb: &Sandbox, name: &str) -> Vec<(u64, u64)> {
    instances(sb, name)
        .into_iter()
        .map(|(i, (_, pid))| (i, pid))
        .collect()
}

/// The halt of `name`'s reload at instance 1 because `what` failed, as `sysmgr reload`
/// prints it (the number of attempts and the time vary, so they are cut out and checked for
/// their form); `output`: what the message says after them (a check command's output).
fn assert_halted_unhealthy(name: &str, n: u64, stderr: &str, what: &str, output: &str) {
    let others: Vec<String> = (2..=n).map(|i| format!("{name}@{i}.service")).collect();
    // `reload FILE` changed the units, so the halt puts the previous ones back; instance
    // 1's new process (a surge: its next generation) is stopped, the old one kept serving.
    let put_back = format!(
        "reload {name}: halted; put back the previous version's unit files and reloaded systemd: "
    );
    let restarted = format!(
        "`/etc/systemd/system/{name}@.service`; `{name}@1:1.service` is stopped; its old process, `{name}@1.service`, kept serving and still runs the previous version"
    );
    let rest = format!(
        "; not restarted, still running the previous version: {}\n",
        others.join(", ")
    );
    assert!(
        stderr.lines().any(|l| l.starts_with(&put_back)
            && l.contains(&restarted)
            && format!("{l}\n").ends_with(&rest)),
        "{stderr}"
    );
    let head = format!(
        "sysmgr: error: reload of `{name}` halted: `{name}@1:1.service` failed (the new process is not healthy: {what} (asked "
    );
    let tail = format!(
        "{output}; systemd's result: `success`); the instances not yet restarted still run the previous version; fix the app file and run `sysmgr reload /"
    );
    let last = stderr.lines().last().unwrap_or_default();
    let line = format!("{last}\n");
    let cut = line.find(&tail).unwrap_or(line.len());
    assert!(
        line.starts_with(&head) && cut < line.len() && line.ends_with(".toml` again\n"),
        "the halt message:\n{stderr}"
    );
    let middle = &line[head.len()..cut];
    let (times, after) = middle.split_once(" times in ").expect(middle);
    assert!(times.parse::<u32>().unwrap() >= 2, "{middle}");
    assert!(
        after.ends_with(" s)") || after.ends_with(" ms)"),
        "{middle}"
    );
}

/// The two versions of a case, and the way the bad one fails, as the halt message words it.
struct Expect<'a> {
    /// The app file of the unhealthy version.
    bad: &'a str,
    /// The app file of the healthy version.
    good: &'a str,
    /// What failed and how.
    what: &'a str,
    /// What follows the attempts.
    output: &'a str,
    /// Whether the instances have health sockets (an HTTP check).
    sockets: bool,
}

/// Reloads `file` into `bad` (halts) and then `good` (completes) under keep-alive and
/// per-request load; the old instances keep serving, no request fails.
fn halt_then_pass(sb: &Sandbox, name: &str, file: &str, n: u64, port: u16, expect: &Expect<'_>) {
    let (bad, good) = (expect.bad, expect.good);
    assert_eq!(running(sb, name).len() as u64, n);
    for i in (1..=n).filter(|_| expect.sockets) {
        assert_eq!(
            unit_state(sb, &format!("{name}-sysmgr-health@{i}.socket")),
            "active",
            "each instance has its own health socket"
        );
    }
    let keep_alive = load(port, Mode::KeepAlive, 8);
    let per_request = load(port, Mode::PerRequest, 4);
    std::thread::sleep(Duration::from_millis(300));

    let before = pids(sb, name);
    write_in(sb, file, bad);
    let r = sysmgr_in(sb, &["reload", file]);
    eprintln!("{}", r.stderr);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_halted_unhealthy(name, n, &r.stderr, expect.what, expect.output);
    let after = pids(sb, name);
    for i in 1..=n {
        assert_eq!(
            after[i as usize - 1],
            before[i as usize - 1],
            "instance {i} was not touched"
        );
    }
    // Instance 1 still runs the previous version.
    assert_eq!(running(sb, name), (1..=n).collect::<Vec<_>>());
    for _ in 0..20 {
        assert!(http_get(port, "/").is_some(), "the old version serves");
    }

    write_in(sb, file, good);
    let r = sysmgr_in(sb, &["reload", file]);
    eprintln!("{}", r.stderr);
    assert_eq!(
        r.code, 0,
        "the healthy version passes the gate: {}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains(&format!("reload {name}: {n} of {n} instances ready in ")),
        "{}",
        r.stderr
    );
    std::thread::sleep(Duration::from_millis(300));
    let keep_alive = keep_alive.stop();
    let per_request = per_request.stop();
    eprintln!("keep-alive: {keep_alive}\nper-request: {per_request}");
    assert_clean("keep-alive", &keep_alive);
    assert_clean("per-request", &per_request);
    let last = pids(sb, name);
    assert_eq!(running(sb, name), (1..=n).collect::<Vec<_>>());
    for i in 2..=n {
        assert_ne!(
            last[i as usize - 1],
            before[i as usize - 1],
            "instance {i} runs a new process"
        );
    }
}

// soak: zero loss
#[test]
fn sysmgr_hello_answering_503_on_its_health_path_halts_the_reload_and_a_healthy_one_passes() {
    let sb = sandbox();
    let port = free_port();
    let health = "health_check = { path = \"/health\", timeout = \"1500ms\" }\n";
    let good = hello_app("web", 3, port, health);
    let file = write_in(&sb, "/srv/web/app.toml", &good);
    let r = sysmgr_in(&sb, &["check", &file]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("GET /health within 1500ms"),
        "`check` shows the health check:\n{}",
        r.stdout
    );
    let r = sysmgr_in(&sb, &["start", &file]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = sysmgr_in(&sb, &["describe", "web"]);
    assert!(
        r.stdout.contains("\nhealth check GET /health on each new instance's own socket, 2xx or 3xx within 1.5 s\n"),
        "{}",
        r.stdout
    );
    let hello = workspace_bin("sysmgr-hello").display().to_string();
    let bad = good.replace(
        &format!("[\"{hello}\"]"),
        &format!("[\"{hello}\", \"--health-status\", \"503\"]"),
    );
    assert_ne!(bad, good);
    halt_then_pass(
        &sb,
        "web",
        &file,
        3,
        port,
        &Expect {
            bad: &bad,
            good: &good,
            what: "`GET /health` on its own socket answered `HTTP/1.1 503 Service Unavailable`",
            output: "",
            sockets: true,
        },
    );
}

/// The articles' graceful Express app (examples/pm2/app.js) with a `/health` route whose
/// status comes from `HEALTH_STATUS`, and which logs the PID that answered.
fn express_app(sb: &Sandbox, name: &str, port: u16) {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/pm2");
    let text = std::fs::read_to_string(fixtures.join("app.js")).unwrap();
    let route = "app.get('/health', function(req, res) {\n  console.log('health check answered by ' + process.pid)\n  res.status(Number(process.env.HEALTH_STATUS) || 200).send('health')\n})\napp.get('/', ";
    let text = text
        .replace("3000", &port.to_string())
        .replacen("app.get('/', ", route, 1);
    assert!(text.contains("HEALTH_STATUS"));
    write_in(sb, &format!("/srv/{name}/app.js"), &text);
    let modules = fixtures.join("node_modules");
    assert!(
        modules.join("express").is_dir(),
        "express is not installed in examples/pm2; scripts/setup runs `npm ci` there"
    );
    std::os::unix::fs::symlink(&modules, sb.root().join(format!("srv/{name}/node_modules")))
        .unwrap();
}

fn express_toml(name: &str, port: u16, status: u16) -> String {
    format!(
        "name = \"{name}\"\ncommand = [\"node\", \"app.js\"]\ninstances = 2\nlisten = [\"127.0.0.1:{port}\"]\nkill_timeout = 3000\nhealth_check = {{ path = \"/health\", timeout = \"2s\" }}\n[env]\nHEALTH_STATUS = \"{status}\"\n"
    )
}

// soak: zero loss
#[test]
fn an_express_app_answering_500_on_its_health_path_halts_the_reload_at_the_first_instance() {
    let sb = sandbox();
    let port = free_port();
    express_app(&sb, "shop", port);
    let good = express_toml("shop", port, 200);
    let file = write_in(&sb, "/srv/shop/app.toml", &good);
    let r = sysmgr_in(&sb, &["start", &file]);
    assert_eq!(r.code, 0, "{}\n{}", r.stderr, sb.journal("shop@*", 30));
    let bad = express_toml("shop", port, 500);
    halt_then_pass(
        &sb,
        "shop",
        &file,
        2,
        port,
        &Expect {
            bad: &bad,
            good: &good,
            what: "`GET /health` on its own socket answered `HTTP/1.1 500 Internal Server Error`",
            output: "",
            sockets: true,
        },
    );
    // Each new process answered its own health check: the probe reached the instance
    // itself, through the bridge, on the app's own route.
    let journal = sb.journal("shop@*", 200);
    for (i, pid) in pids(&sb, "shop") {
        assert!(
            journal.contains(&format!("health check answered by {pid}")),
            "instance {i} (pid {pid}) was asked:\n{journal}"
        );
    }
}

// soak: zero loss
#[test]
fn a_failing_health_check_command_halts_the_reload_and_a_passing_one_completes() {
    let sb = sandbox();
    let port = free_port();
    // The check runs as a oneshot with the app's environment: `VERSION` tells it which
    // version it asks about, `SYSMGR_INSTANCE` which instance.
    let check = |version: &str| {
        format!(
            "health_check = {{ command = [\"/bin/sh\", \"-c\", \"echo checking instance $SYSMGR_INSTANCE of $VERSION; test $VERSION != broken\"], timeout = \"1500ms\" }}\n[env]\nVERSION = \"{version}\"\n"
        )
    };
    let good = hello_app("web", 3, port, &check("good"));
    let file = write_in(&sb, "/srv/web/app.toml", &good);
    let r = sysmgr_in(&sb, &["start", &file]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let described: serde_json::Value =
        serde_json::from_str(&sysmgr_in(&sb, &["describe", "web", "--json"]).stdout).unwrap();
    assert_eq!(
        described["health_check"],
        serde_json::json!({
            "path": null,
            "command_unit": "web-sysmgr-check@1.service",
            "timeout_ms": 1500,
        })
    );
    let bad = hello_app("web", 3, port, &check("broken"));
    let expect = Expect {
        bad: &bad,
        good: &good,
        what: "its check `web-sysmgr-check@1:1.service` exited with status 1",
        output: "; its last output: `checking instance 1 of broken`",
        sockets: false,
    };
    halt_then_pass(&sb, "web", &file, 3, port, &expect);
    // Each instance's check ran for it, and none is left failed.
    let journal = sb.journal("web-sysmgr-check@*", 100);
    for i in 1..=3 {
        assert!(
            journal.contains(&format!("checking instance {i} of good")),
            "{journal}"
        );
    }
    assert_eq!(unit_state(&sb, "web-sysmgr-check@1.service"), "inactive");
}

/// The bridge with three sockets: the app's two, whose fds systemd passes in an order of its
/// own, and the health socket. Each server gets the socket of its port, and the health
/// check reaches the first server's route.
#[test]
fn the_bridge_gives_each_server_its_socket_and_the_health_socket_to_the_first() {
    let sb = sandbox();
    let (port, admin) = (free_port(), free_port());
    let app = format!(
        "const http = require('node:http')\n\
         http.createServer((req, res) => {{\n\
           if (req.url === '/health') console.log('health check answered by ' + process.pid)\n\
           res.end(req.url === '/health' ? 'healthy' : 'main')\n\
         }}).listen({port})\n\
         http.createServer((req, res) => res.end('admin')).listen({admin}, '127.0.0.1')\n"
    );
    write_in(&sb, "/srv/two/app.js", &app);
    let file = write_in(
        &sb,
        "/srv/two/app.toml",
        &format!(
            "name = \"two\"\ncommand = [\"node\", \"app.js\"]\ninstances = 2\nwait_ready = false\nlisten = [\"127.0.0.1:{port}\", {{ address = \"127.0.0.1:{admin}\", name = \"admin\" }}]\nhealth_check = \"/health\"\n"
        ),
    );
    let r = sysmgr_in(&sb, &["start", &file]);
    assert_eq!(r.code, 0, "{}\n{}", r.stderr, sb.journal("two@*", 30));
    for _ in 0..10 {
        assert_eq!(http_get(port, "/").as_deref(), Some("main"));
        assert_eq!(http_get(admin, "/").as_deref(), Some("admin"));
    }
    let r = sysmgr_in(&sb, &["reload", "two"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stderr, sb.journal("two@*", 30));
    let journal = sb.journal("two@*", 100);
    for (i, pid) in pids(&sb, "two") {
        assert!(
            journal.contains(&format!("health check answered by {pid}")),
            "instance {i} (pid {pid}) answered its own check:\n{journal}"
        );
    }
    assert_eq!(http_get(admin, "/").as_deref(), Some("admin"));
}
