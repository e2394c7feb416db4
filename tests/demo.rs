//! `sysmgr-demo`, the README's main command (`scripts/demo`), runs to its end: it boots a
//! private systemd (none runs on the test machines), starts the app with the `sysmgr` built
//! beside it, reloads it under load and reports that no request failed.

use std::process::Command;

use crate::support::workspace_bin;

// soak: zero loss
#[test]
fn the_demo_reloads_under_load_without_a_failed_request() {
    workspace_bin("sysmgr-hello");
    let out = Command::new(workspace_bin("sysmgr-demo"))
        .args(["--seconds", "1", "--instances", "3", "--connections", "8"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("$ sysmgr reload hello"), "{stdout}");
    assert!(
        stdout.contains("slow requests          20 of 20 answered 200"),
        "{stdout}"
    );
    assert!(
        stdout
            .trim_end()
            .ends_with("== every instance was replaced and no request failed"),
        "{stdout}"
    );
    assert_eq!(stdout.matches("(new process)").count(), 3, "{stdout}");
    assert!(
        stderr.contains("reload hello: 3 of 3 instances ready"),
        "{stderr}"
    );
}
