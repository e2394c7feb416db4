//! SCRATCH experiment (issue 10): which units' start-limit-hit fails the shared socket.

use crate::lifecycle::hello_app;
use crate::support::{free_port, sandbox, sysmgr_in, unit_state, wait_for, write_in};

fn show(sb: &sysmgr_sandbox::Sandbox, unit: &str, props: &str) -> String {
    sb.systemctl(&["show", unit, "-p", props]).unwrap_or_default()
}

/// Kills `unit` with SIGKILL each time it is active again, `n` times or until it stays down.
fn crash_loop(sb: &sysmgr_sandbox::Sandbox, unit: &str, n: usize) -> usize {
    let mut kills = 0;
    for _ in 0..n {
        if wait_for(5, || (unit_state(sb, unit) == "active").then_some(())).is_none() {
            break;
        }
        let _ = sb.systemctl(&["kill", "--signal=KILL", unit]);
        kills += 1;
    }
    kills
}

#[test]
fn experiment_which_start_limit_fails_the_socket() {
    let sb = sandbox();
    let port = free_port();
    let file = write_in(
        &sb,
        "/srv/web/app.toml",
        &hello_app("web", 4, port, "max_restarts = 3\n"),
    );
    assert_eq!(sysmgr_in(&sb, &["start", &file]).code, 0);
    eprintln!("web@3: {}", show(&sb, "web@3.service", "TriggeredBy"));
    eprintln!("socket: {}", show(&sb, "web.socket", "Triggers"));
    let kills = crash_loop(&sb, "web@3.service", 10);
    std::thread::sleep(std::time::Duration::from_secs(1));
    eprintln!(
        "after {kills} kills of web@3: web@3 {} {}, socket {} {}",
        unit_state(&sb, "web@3.service"),
        show(&sb, "web@3.service", "Result"),
        unit_state(&sb, "web.socket"),
        show(&sb, "web.socket", "Result")
    );
}

#[test]
fn experiment_runtime_directory_preserve_restart() {
    let sb = sandbox();
    write_in(
        &sb,
        "/etc/systemd/system/rt.service",
        "[Service]\nExecStart=/bin/sh -c 'mktemp /run/rtx/s.XXXXXX; exec sleep infinity'\nRuntimeDirectory=rtx\nRuntimeDirectoryPreserve=restart\nRestart=always\nRestartSec=100ms\n",
    );
    sb.systemctl(&["daemon-reload"]).unwrap();
    sb.systemctl(&["start", "rt.service"]).unwrap();
    let ls = || {
        std::thread::sleep(std::time::Duration::from_millis(1500));
        sb.run(&["ls", "/run/rtx"]).unwrap_or_default().replace('\n', " ")
    };
    eprintln!("after start: {}", ls());
    crash_loop(&sb, "rt.service", 1);
    eprintln!("after a crash and auto restart: {}", ls());
    sb.systemctl(&["restart", "rt.service"]).unwrap();
    eprintln!("after systemctl restart: {}", ls());
    sb.systemctl(&["stop", "rt.service"]).unwrap();
    sb.systemctl(&["start", "rt.service"]).unwrap();
    eprintln!("after stop, start: {}", ls());
}
