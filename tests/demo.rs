//! `sysmgr-demo`, the README's main command (`scripts/demo`), runs to its end: it boots a
//! private systemd (none runs on the test machines), starts the app with the `sysmgr` built
//! beside it, reloads it under load and reports that no request failed; then act 2 does the
//! same with the PM2 articles' Express app, unchanged but for its port (examples/pm2; Node
//! and express come from scripts/setup, as for tests/pm2.rs).

use std::process::Command;

use crate::support::{free_port, workspace_bin};

// soak: zero loss
#[test]
fn the_demo_reloads_under_load_without_a_failed_request() {
    workspace_bin("sysmgr-hello");
    // Not 3000, the demo's default: `scripts/soak` runs two of these at once, and the port
    // is only free until the first one's systemd takes it.
    let pm2_port = free_port().to_string();
    let out = Command::new(workspace_bin("sysmgr-demo"))
        .args(["--seconds", "1", "--instances", "3", "--connections", "8"])
        .args(["--pm2-port", &pm2_port])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let (hello, pm2) = stdout
        .split_once("\n== act 2: a PM2 app, unchanged")
        .unwrap_or_else(|| panic!("act 2 did not run:\n{stdout}\n{stderr}"));

    assert!(hello.contains("$ sysmgr reload hello"), "{stdout}");
    assert!(
        hello.contains("slow requests          20 of 20 answered 200"),
        "{stdout}"
    );
    assert!(
        hello.contains("\n== every instance was replaced and no request failed\n"),
        "{stdout}"
    );
    assert_eq!(hello.matches("(new process)").count(), 3, "{stdout}");
    assert!(
        hello.trim_end().ends_with("$ sysmgr delete hello"),
        "{stdout}"
    );
    assert!(
        stderr.contains("reload hello: 3 of 3 instances ready"),
        "{stderr}"
    );

    // Act 2: the articles' files, only app.js's port changed, started as a PM2 user would.
    assert!(
        pm2.contains(&format!(
            "--pm2-port {pm2_port} asks for port {pm2_port}: the copy of app.js listens on \
             {pm2_port} instead, its one changed line: `const port = 3000` -> `const port = \
             {pm2_port}`"
        )),
        "{stdout}"
    );
    assert!(
        pm2.contains("  name: 'app',\n"),
        "the ecosystem file: {stdout}"
    );
    assert!(
        pm2.contains(&format!(
            "\n$ sysmgr start ecosystem.config.js --listen 127.0.0.1:{pm2_port}\n"
        )),
        "{stdout}"
    );
    assert!(pm2.contains("  200 Hello World!\n"), "{stdout}");
    assert!(pm2.contains("\n$ sysmgr reload app\n"), "{stdout}");
    assert!(
        pm2.contains("slow requests          10 of 10 answered 200"),
        "{stdout}"
    );
    for load in ["keep-alive", "one per connection"] {
        let report = pm2
            .lines()
            .find(|l| l.trim_start().starts_with(load) && l.contains(" requests "))
            .unwrap_or_else(|| panic!("no {load} line:\n{stdout}"));
        assert!(
            report.contains("  failed 0  hung 0  "),
            "{load}: {report}\n{stdout}"
        );
    }
    assert!(pm2.matches("(new process)").count() >= 1, "{stdout}");
    assert!(!pm2.contains("NOT replaced"), "{stdout}");
    assert!(
        pm2.contains("\n== every instance was replaced and no request failed\n"),
        "{stdout}"
    );
    assert!(pm2.trim_end().ends_with("$ sysmgr delete app"), "{stdout}");
    assert!(stderr.contains("reload app: "), "{stderr}");
}

#[test]
fn the_demo_skips_the_pm2_act_when_asked() {
    workspace_bin("sysmgr-hello");
    let out = Command::new(workspace_bin("sysmgr-demo"))
        .args(["--seconds", "1", "--instances", "1", "--connections", "2"])
        .arg("--no-pm2")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout
            .trim_end()
            .ends_with("\n== act 2, a PM2 app unchanged: skipped: --no-pm2"),
        "{stdout}"
    );
}
