//! The hardening profile against a real systemd: the exposure score `systemd-analyze security`
//! gives a running hello instance, the strict profile still serving from systemd's socket, and
//! an app that writes outside its writable places failing with a message that names the keys
//! that open one. (Serving and restarting under load with the default profile is
//! `worker_systemd`'s job: hello, the Node and the Python examples run hardened there.)

use std::net::SocketAddr;
use std::time::Duration;

use sysmgr_load::get_blocking;
use sysmgr_sandbox::Sandbox;

use crate::support::{
    free_port, sandbox, sysmgr_in, unit_state, wait_for, workspace_bin, write_in,
};

/// The score of `systemd-analyze security UNIT` for a running unit, as it prints it.
fn exposure(sb: &Sandbox, unit: &str) -> f64 {
    let out = sb
        .command("systemd-analyze")
        .args(["security", "--no-pager", unit])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout
        .lines()
        .find(|l| l.contains("Overall exposure level for"))
        .unwrap_or_else(|| panic!("no score from systemd-analyze:\n{stdout}"));
    last.rsplit_once(": ")
        .and_then(|(_, s)| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("cannot read the score of `{last}`"))
}

fn hello(port: u16, extra: &str) -> String {
    format!(
        "name = \"hello\"\ncommand = [\"{}\"]\nlisten = [\"127.0.0.1:{port}\"]\n{extra}",
        workspace_bin("sysmgr-hello").display()
    )
}

/// Starts the app of `toml` with `sysmgr start` and checks that it answers on `port`.
fn start_and_get(sb: &Sandbox, toml: &str, port: u16) {
    let file = write_in(sb, "/srv/hello/hello.toml", toml);
    let r = sysmgr_in(sb, &["start", &file]);
    assert_eq!(
        r.code,
        0,
        "{}\n{}",
        r.stderr,
        sb.journal("hello@1.service", 20)
    );
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let answer = get_blocking(addr, "/", Duration::from_secs(10));
    assert!(
        matches!(&answer, Ok((200, body)) if body.starts_with("instance 1 pid ")),
        "{answer:?}"
    );
}

/// The number issue 11 asks for: the default profile brings hello from 9.8 to at most 2.0.
/// `systemd_version = 252` is the sandbox's systemd; with the default floor of 239 six
/// settings are left out (see `sysmgr check`) and the score is 2.4.
#[test]
fn the_default_hello_instance_scores_at_most_2() {
    let sb = sandbox();
    let port = free_port();
    start_and_get(&sb, &hello(port, "systemd_version = 252\n"), port);
    let score = exposure(&sb, "hello@1.service");
    eprintln!("hello@1.service, default profile, systemd_version 252: exposure {score}");
    assert!(score <= 2.0, "exposure {score}");
    // `sysmgr check` says the same before anything runs.
    let check = sysmgr_in(&sb, &["check", "/srv/hello/hello.toml"]);
    assert!(
        check
            .stdout
            .contains(&format!("  exposure  {score:.1} OK (")),
        "{}",
        check.stdout
    );
}

#[test]
fn strict_hello_serves_from_the_socket_systemd_passes_with_no_network_of_its_own() {
    let sb = sandbox();
    let port = free_port();
    let toml = hello(port, "systemd_version = 252\nhardening = \"strict\"\n");
    start_and_get(&sb, &toml, port);
    let score = exposure(&sb, "hello@1.service");
    eprintln!("hello@1.service, strict profile: exposure {score}");
    assert!(score <= 1.0, "exposure {score}");
}

/// The profile makes the file system read-only: an app that writes into its `cwd` fails to
/// start, and `sysmgr start` says which keys give it a place to write; with one, it starts.
#[test]
fn an_app_writing_to_its_cwd_fails_with_a_message_naming_the_keys_to_set() {
    let sb = sandbox();
    let port = free_port();
    let toml = format!(
        "name = \"writer\"\ncommand = [\"/bin/sh\", \"-c\", \"echo x > state.txt && exec {}\"]\nlisten = [\"127.0.0.1:{port}\"]\nmax_restarts = 1\n",
        workspace_bin("sysmgr-hello").display()
    );
    let file = write_in(&sb, "/srv/writer/writer.toml", &toml);
    let r = sysmgr_in(&sb, &["start", &file]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let hint = "start writer: writer@1.service: it wrote to a read-only file system: the hardening profile (`ProtectSystem=strict`) makes everything read-only; give the app a place to write with `state_directory = \"NAME\"` (/var/lib/NAME) or `writable_paths = [\"/path\"]` in its app file (docs/hardening.md)\n";
    assert!(r.stderr.contains(hint), "{}", r.stderr);
    assert!(
        sb.journal("writer@1.service", 20)
            .contains("cannot create state.txt: Read-only file system"),
        "{}",
        sb.journal("writer@1.service", 20)
    );

    write_in(
        &sb,
        "/srv/writer/writer.toml",
        &format!("writable_paths = [\"/srv/writer\"]\n{toml}"),
    );
    // Restart=always goes on after `start` returned (the unit is `activating` between
    // attempts): wait until the crash-loop brake of max_restarts = 1 refused the second
    // start, or the reset below would meet one more attempt.
    let settled = wait_for(30, || {
        let state = sb
            .systemctl(&["show", "-p", "ActiveState,SubState", "writer@1.service"])
            .unwrap_or_default();
        (state.contains("ActiveState=failed") && state.contains("SubState=failed")).then_some(())
    });
    assert!(
        settled.is_some(),
        "{}\n{}",
        sb.systemctl(&[
            "show",
            "-p",
            "ActiveState,SubState,Result,NRestarts",
            "writer@1.service"
        ])
        .unwrap_or_default(),
        sb.journal("writer@1.service", 20)
    );
    sb.systemctl(&["reset-failed", "writer@1.service"]).unwrap();
    let r = sysmgr_in(&sb, &["start", &file]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(unit_state(&sb, "writer@1.service"), "active");
    assert!(sb.root().join("srv/writer/state.txt").exists());
}
