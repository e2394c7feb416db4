//! PM2 apps, unchanged, under sysmgr and a real systemd: the articles' graceful Express
//! app.js and ecosystem.config.js (examples/pm2/, express installed from the npm registry by
//! scripts/setup), their naive app.js, a plain `http` app, an ES module and an app that reads
//! `PORT`, started with `sysmgr start ecosystem.config.js` and reloaded under keep-alive and
//! one-request-per-connection load with requests in flight: no request fails or hangs. A
//! broken new version halts the reload with the others serving; bad ecosystem files and a
//! port the app does not listen on get their tested messages.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sysmgr_load::{get_blocking, Background, LoadConfig, Mode, Report};
use sysmgr_sandbox::Sandbox;

use crate::lifecycle::instances;
use crate::support::{free_port, run_in, sandbox, sysmgr, sysmgr_in, write_in};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/pm2")
}

/// `/srv/NAME` inside the sandbox: the fixture `script` as app.js-like file (its port 3000
/// replaced by `port`, the one change a second app on this machine needs), the express
/// install, and `ecosystem` as ecosystem.config.js. Returns the ecosystem file's path.
fn app_dir(sb: &Sandbox, name: &str, script: &str, port: u16, ecosystem: &str) -> String {
    let text = std::fs::read_to_string(fixtures().join(script)).unwrap();
    write_in(
        sb,
        &format!("/srv/{name}/{script}"),
        &text.replace("3000", &port.to_string()),
    );
    let modules = fixtures().join("node_modules");
    assert!(
        modules.join("express").is_dir(),
        "express is not installed in examples/pm2; scripts/setup runs `npm ci` there"
    );
    std::os::unix::fs::symlink(&modules, sb.root().join(format!("srv/{name}/node_modules")))
        .unwrap();
    write_in(sb, &format!("/srv/{name}/ecosystem.config.js"), ecosystem)
}

/// The articles' ecosystem file (code 11) for `script`, named `name`.
fn articles_ecosystem(name: &str, script: &str) -> String {
    std::fs::read_to_string(fixtures().join("ecosystem.config.js"))
        .unwrap()
        .replace("name: 'app'", &format!("name: '{name}'"))
        .replace("'./app.js'", &format!("'./{script}'"))
}

fn load(addr: SocketAddr, mode: Mode, connections: usize) -> Background {
    Background::start(LoadConfig {
        connections,
        mode,
        rate: Some(2000),
        // Stopped after the reload; the duration is only a bound.
        duration: Duration::from_secs(120),
        max_requests: Some(1_000_000),
        request_timeout: Duration::from_secs(10),
        ..LoadConfig::new(addr)
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

/// Starts the app of `ecosystem` (with `--listen 127.0.0.1:PORT` when `listen_flag`),
/// checks every instance serves, then reloads it under 16 keep-alive connections,
/// one-request-per-connection load and 10 slow requests in flight: 0 failed, 0 hung, every
/// slow request answered 200, every process replaced. Returns the sandbox and the port.
fn reload_under_load(
    name: &str,
    script: &str,
    ecosystem: impl Fn(u16) -> String,
    listen_flag: bool,
) -> (Sandbox, u16) {
    let sb = sandbox();
    let port = free_port();
    let file = app_dir(&sb, name, script, port, &ecosystem(port));
    let listen = format!("127.0.0.1:{port}");
    let mut args = vec!["start", file.as_str()];
    if listen_flag {
        args.extend(["--listen", listen.as_str()]);
    }
    let r = sysmgr_in(&sb, &args);
    assert_eq!(
        r.code,
        0,
        "start failed:\n{}\n{}",
        r.stderr,
        journal(&sb, name)
    );
    let before = instances(&sb, name);
    assert_eq!(
        before.len(),
        2,
        "instances: 0 is one per core of this sandbox: {}",
        r.stderr
    );
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    for _ in 0..10 {
        let answer = get_blocking(addr, "/", Duration::from_secs(5));
        assert!(
            matches!(answer, Ok((200, _))),
            "{answer:?}\n{}",
            journal(&sb, name)
        );
    }

    let keep_alive = load(addr, Mode::KeepAlive, 16);
    let per_request = load(addr, Mode::PerRequest, 4);
    let slow: Vec<_> = (0..10)
        .map(|_| {
            std::thread::spawn(move || get_blocking(addr, "/slow?ms=1500", Duration::from_secs(20)))
        })
        .collect();
    // Let the slow requests reach their workers before the first one is restarted.
    std::thread::sleep(Duration::from_millis(300));
    let r = sysmgr_in(&sb, &["reload", name]);
    std::thread::sleep(Duration::from_millis(500));
    let keep_alive = keep_alive.stop();
    let per_request = per_request.stop();
    eprintln!(
        "{name}: {}\n  keep-alive: {keep_alive}\n  per-request: {per_request}",
        r.stderr
    );
    assert_eq!(r.code, 0, "{}\n{}", r.stderr, journal(&sb, name));
    assert_clean(&format!("{name}, keep-alive"), &keep_alive);
    assert_clean(&format!("{name}, per-request"), &per_request);
    for handle in slow {
        let answer = handle.join().unwrap();
        assert!(
            matches!(&answer, Ok((200, body)) if body.starts_with("slow ")),
            "a slow request in flight at the reload: {answer:?}"
        );
    }
    let after = instances(&sb, name);
    assert_eq!(after.len(), before.len());
    for (i, (_, pid)) in &after {
        assert_ne!(*pid, before[i].1, "instance {i} runs a new process");
    }
    (sb, port)
}

fn journal(sb: &Sandbox, name: &str) -> String {
    sb.journal(&format!("{name}@*"), 30)
}

// soak: zero loss
#[test]
fn the_articles_graceful_express_app_reloads_with_no_failed_request() {
    reload_under_load(
        "graceful",
        "app.js",
        |_| articles_ecosystem("graceful", "app.js"),
        true,
    );
}

// soak: zero loss
#[test]
fn the_articles_naive_express_app_without_a_signal_handler_reloads_with_no_failed_request() {
    // The articles' first ecosystem file: no wait_ready, so ready once it listens.
    reload_under_load(
        "naive",
        "naive.js",
        |port| {
            format!(
                "module.exports = {{\n  apps: [{{\n  name: 'naive',\n  script: './naive.js',\n  instances: 0,\n  exec_mode: 'cluster',\n  listen: '127.0.0.1:{port}'\n  }}]\n}}\n"
            )
        },
        false,
    );
}

// soak: zero loss
#[test]
fn a_plain_http_app_reloads_with_no_failed_request() {
    reload_under_load(
        "plain",
        "plain.js",
        |_| articles_ecosystem("plain", "plain.js"),
        true,
    );
}

// soak: zero loss
#[test]
fn an_es_module_app_reloads_with_no_failed_request() {
    reload_under_load(
        "esm",
        "esm.mjs",
        |_| articles_ecosystem("esm", "esm.mjs"),
        true,
    );
}

// soak: zero loss
#[test]
fn an_app_on_process_env_port_reloads_and_counts_instances_from_0_like_pm2() {
    let (_sb, port) = reload_under_load(
        "envport",
        "port.js",
        |port| {
            format!(
                "module.exports = {{ apps: [{{ name: 'envport', script: 'port.js', instances: 2, wait_ready: true, env: {{ PORT: {port} }} }}] }}\n"
            )
        },
        false,
    );
    // PM2's NODE_APP_INSTANCE: 0 and 1 (systemd's instances 1 and 2).
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..200 {
        if let Ok((200, body)) = get_blocking(addr, "/", Duration::from_secs(5)) {
            seen.insert(body);
        }
        if seen.len() == 2 {
            break;
        }
    }
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        ["instance 0", "instance 1"]
    );
}

#[test]
fn a_broken_new_version_halts_the_reload_with_the_others_serving() {
    let sb = sandbox();
    let port = free_port();
    let file = app_dir(
        &sb,
        "broken",
        "app.js",
        port,
        &articles_ecosystem("broken", "app.js")
            .replace("listen_timeout: 50000", "listen_timeout: 3000"),
    );
    let listen = format!("127.0.0.1:{port}");
    let r = sysmgr_in(&sb, &["start", &file, "--listen", &listen]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    for (version, expect) in [
        (
            "throw new Error('broken at start')\n",
            "Error: broken at start",
        ),
        // Listens but never says ready: the start times out after listen_timeout.
        ("process.send = () => true\n", "timeout"),
    ] {
        let before = instances(&sb, "broken");
        let good = std::fs::read_to_string(sb.root().join("srv/broken/app.js")).unwrap();
        write_in(&sb, "/srv/broken/app.js", &format!("{version}{good}"));
        let r = sysmgr_in(&sb, &["reload", "broken"]);
        write_in(&sb, "/srv/broken/app.js", &good);
        assert_eq!(r.code, 1, "{}", r.stderr);
        assert!(
            r.stderr.contains(expect),
            "missing `{expect}`:\n{}",
            r.stderr
        );
        assert!(
            r.stderr
                // Instance 2 at whichever generation the earlier reload left it.
                .contains("not restarted, still running the previous version: broken@2"),
            "{}",
            r.stderr
        );
        let after = instances(&sb, "broken");
        assert_eq!(after[&2].1, before[&2].1, "instance 2 was not touched");
        let answer = get_blocking(
            SocketAddr::from(([127, 0, 0, 1], port)),
            "/",
            Duration::from_secs(5),
        );
        assert!(
            matches!(answer, Ok((200, _))),
            "the old version serves: {answer:?}"
        );
        // The fixed version reloads.
        let r = sysmgr_in(&sb, &["reload", "broken"]);
        assert_eq!(r.code, 0, "{}", r.stderr);
    }
}

#[test]
fn a_port_the_app_does_not_listen_on_fails_the_start_and_names_both_ports() {
    let sb = sandbox();
    let port = free_port();
    let other = free_port();
    // The app listens on `port`; the ecosystem file gives the socket `other`.
    let file = app_dir(
        &sb,
        "mismatch",
        "app.js",
        port,
        &articles_ecosystem("mismatch", "app.js").replace("instances: 0", "instances: 1"),
    );
    let listen = format!("127.0.0.1:{other}");
    let r = sysmgr_in(&sb, &["start", &file, "--listen", &listen]);
    assert_ne!(r.code, 0, "{}", r.stderr);
    let journal = journal(&sb, "mismatch");
    let expected = format!(
        "sysmgr: mismatch listens on port {port}, but its sockets are 127.0.0.1:{other}; add port {port} to `listen` in the app file, or make the app listen on 127.0.0.1:{other}"
    );
    assert!(
        journal.contains(&expected),
        "missing `{expected}` in:\n{journal}"
    );
}

/// Bad ecosystem files, read by `sysmgr check` on the host (no systemd needed): exact
/// messages, exit 2, nothing written.
#[test]
fn bad_ecosystem_files_get_messages_that_say_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&str, &str, &str)] = &[
        (
            "throws.config.js",
            "throw new Error('no config here')\n",
            "sysmgr: error: throws.config.js: evaluating it with node failed: ",
        ),
        (
            "number.config.js",
            "module.exports = 42\n",
            "sysmgr: error: number.config.js: exports a number, not an object with an `apps` array; write `module.exports = { apps: [{ name: 'app', script: './app.js' }] }`\n",
        ),
        (
            "noscript.config.js",
            "module.exports = { apps: [{ name: 'web' }] }\n",
            "sysmgr: error: noscript.config.js: app `web` (apps[0]): `script` is missing; add the file to run, e.g. `script: './app.js'`\n",
        ),
        (
            "noport.config.js",
            "module.exports = { apps: [{ name: 'web', script: 'app.js' }] }\n",
            "sysmgr: error: noport.config.js: app `web` (apps[0]): no port to listen on: PM2 never needed one, but systemd owns the socket; add `listen: '127.0.0.1:3000'` (the port app.listen uses) to the app, set `env: { PORT: 3000 }`, or run `sysmgr start FILE --listen 127.0.0.1:3000`\n",
        ),
        (
            "bad.json",
            "{ \"apps\": [ }\n",
            "sysmgr: error: bad.json:1:13: error: is not valid JSON: expected value\n",
        ),
    ];
    for (file, text, expected) in cases {
        std::fs::write(dir.path().join(file), text).unwrap();
        let r = run_in(dir.path(), &["check", file]);
        assert_eq!(r.code, 2, "{file}: {}", r.stderr);
        assert!(r.stderr.starts_with(expected), "{file}:\n{}", r.stderr);
        assert!(
            r.stderr.ends_with(&format!(
                "sysmgr: error: 1 of 1 app files has errors ({file}); fix them and check again\n"
            )),
            "{}",
            r.stderr
        );
    }
    // The error of the file that throws says where.
    let r = run_in(dir.path(), &["check", "throws.config.js"]);
    assert!(r.stderr.contains("Error: no config here"), "{}", r.stderr);

    // Node missing: a PATH without it.
    let out = sysmgr()
        .current_dir(dir.path())
        .env("PATH", "/nonexistent")
        .args(["check", "number.config.js"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).starts_with(
            "sysmgr: error: number.config.js: reading an ecosystem file needs Node.js (`node` is not in PATH); install Node.js 18 or later, or convert the file once with `sysmgr import` on a machine that has it\n"
        ),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn pm2s_quick_form_starts_a_script_and_prints_its_app_file() {
    let sb = sandbox();
    let port = free_port();
    app_dir(&sb, "quick", "plain.js", port, "");
    let listen = format!("127.0.0.1:{port}");
    let r = sysmgr_in(
        &sb,
        &[
            "start",
            "/srv/quick/plain.js",
            "-i",
            "2",
            "--name",
            "quick",
            "--listen",
            &listen,
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("sysmgr: the app file for `quick` (save it as quick.toml to keep it):\n"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains("command = [\"node\", \"/srv/quick/plain.js\"]\n"),
        "{}",
        r.stderr
    );
    assert_eq!(instances(&sb, "quick").len(), 2);
    let answer = get_blocking(
        SocketAddr::from(([127, 0, 0, 1], port)),
        "/",
        Duration::from_secs(5),
    );
    assert!(matches!(answer, Ok((200, _))), "{answer:?}");
    // stop and delete take the script's app by name.
    assert_eq!(sysmgr_in(&sb, &["delete", "quick"]).code, 0);
}

#[test]
fn shutdown_with_message_delivers_pm2s_shutdown_message() {
    let sb = sandbox();
    let port = free_port();
    let file = app_dir(
        &sb,
        "message",
        "message.js",
        port,
        "module.exports = { apps: [{ name: 'message', script: 'message.js', wait_ready: true, shutdown_with_message: true, kill_timeout: 3000 }] }\n",
    );
    let listen = format!("127.0.0.1:{port}");
    let r = sysmgr_in(&sb, &["start", &file, "--listen", &listen]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = sysmgr_in(&sb, &["stop", &file]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let journal = journal(&sb, "message");
    assert!(journal.contains("got the shutdown message"), "{journal}");
    let show = sb
        .systemctl(&["show", "-p", "Result", "--value", "message@1.service"])
        .unwrap();
    assert_eq!(
        show.trim(),
        "success",
        "it exited by itself, before SIGKILL:\n{journal}"
    );
}

/// `sysmgr import` writes one commented app.toml per app, which `sysmgr check` accepts; a
/// second import refuses to overwrite and writes nothing.
#[test]
fn import_writes_an_app_file_per_app_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixtures().join("ecosystem.config.js"),
        dir.path().join("ecosystem.config.js"),
    )
    .unwrap();
    let import = || {
        run_in(
            dir.path(),
            &[
                "import",
                "ecosystem.config.js",
                "--output",
                "apps",
                "--listen",
                "127.0.0.1:3000",
            ],
        )
    };
    let r = import();
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        r.stderr,
        "wrote apps/app.toml\nstart them with `sysmgr start FILE.toml`, or copy them to /etc/sysmgr/ for the generator (`systemctl daemon-reload`)\n"
    );
    let text = std::fs::read_to_string(dir.path().join("apps/app.toml")).unwrap();
    for line in [
        "name = \"app\"\n",
        "command = [\"node\", \"./app.js\"]\n",
        "instances = 0\n",
        "listen = [\"127.0.0.1:3000\"]\n",
        "wait_ready = true\n",
        "listen_timeout = 50000\n",
        "kill_timeout = 5000\n",
    ] {
        assert!(text.contains(line), "missing `{line}` in:\n{text}");
    }
    let r = run_in(dir.path(), &["check", "apps/app.toml"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = import();
    assert_eq!(r.code, 2);
    assert_eq!(
        r.stderr,
        "sysmgr: error: `apps/app.toml` exists; move it away or pass --force; nothing was written\n"
    );
}

/// Node 18 and 22 from tests/node-versions (the machine's own Node runs every other test).
fn node_release(major: u32) -> String {
    let node = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!(
        "tests/node-versions/node_modules/node{major}/bin/node"
    ));
    assert!(
        node.is_file(),
        "Node {major} is not installed in tests/node-versions; scripts/setup runs `npm ci` there"
    );
    node.display().to_string()
}

fn graceful_app_on(major: u32) {
    let node = node_release(major);
    let name = format!("node{major}");
    reload_under_load(
        &name,
        "app.js",
        |_| {
            articles_ecosystem(&name, "app.js").replace(
                "exec_mode: 'cluster',",
                &format!("exec_mode: 'cluster',\n  interpreter: '{node}',"),
            )
        },
        true,
    );
}

// soak: zero loss
#[test]
fn the_graceful_app_reloads_with_no_failed_request_on_node_18() {
    graceful_app_on(18);
}

// soak: zero loss
#[test]
fn the_graceful_app_reloads_with_no_failed_request_on_node_22() {
    graceful_app_on(22);
}

/// app.toml's `watchdog` on a Node app: the bridge pings while the event loop turns, so the
/// instance outlives several periods without a restart.
#[test]
fn the_bridge_keeps_a_node_apps_watchdog_fed() {
    let sb = sandbox();
    let port = free_port();
    app_dir(&sb, "dog", "plain.js", port, "");
    let file = write_in(
        &sb,
        "/srv/dog/app.toml",
        &format!("name = \"dog\"\ncommand = [\"node\", \"plain.js\"]\nlisten = [\"127.0.0.1:{port}\"]\nwatchdog = \"1s\"\n"),
    );
    let r = sysmgr_in(&sb, &["start", &file]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let pid = instances(&sb, "dog")[&1].1;
    std::thread::sleep(Duration::from_secs(4));
    let show = sb
        .systemctl(&[
            "show",
            "-p",
            "NRestarts,ActiveState,WatchdogUSec",
            "dog@1.service",
        ])
        .unwrap();
    assert!(
        show.contains("NRestarts=0") && show.contains("ActiveState=active"),
        "{show}\n{}",
        journal(&sb, "dog")
    );
    assert_eq!(
        instances(&sb, "dog")[&1].1,
        pid,
        "the same process, 4 watchdog periods later"
    );
}
