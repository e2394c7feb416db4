//! What production does to sysmgr (issue 10), against a real systemd: a bus that is cold or
//! gone, many instances. Each test boots its own private systemd (see `support::sandbox`).

use std::time::{Duration, Instant};

use crate::lifecycle::{hello_app, http_get, instances, running};
use crate::support::{free_port, sandbox, sysmgr_bin, sysmgr_in, write_in, Run};

/// `sysmgr ARGS` inside the sandbox with extra environment.
fn sysmgr_env(sb: &sysmgr_sandbox::Sandbox, env: &[(&str, &str)], args: &[&str]) -> Run {
    sb.command(sysmgr_bin())
        .envs(env.iter().copied())
        .args(args)
        .output()
        .expect("nsenter runs")
        .into()
}

/// `sysmgr ARGS` inside the sandbox as user `nobody`, who reaches systemd over the bus only.
fn sysmgr_as_nobody(sb: &sysmgr_sandbox::Sandbox, args: &[&str]) -> Run {
    sb.command("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(sysmgr_bin())
        .args(args)
        .output()
        .expect("nsenter runs")
        .into()
}

/// The system bus inside the sandbox, named explicitly: root then uses it rather than
/// systemd's private socket.
const SYSTEM_BUS: (&str, &str) = (
    "DBUS_SYSTEM_BUS_ADDRESS",
    "unix:path=/run/dbus/system_bus_socket",
);

/// Stops dbus.service and leaves dbus.socket listening, as right after boot: the next client
/// starts dbus, and systemd takes its name on the bus only some time after that.
fn make_the_bus_cold(sb: &sysmgr_sandbox::Sandbox) {
    sb.systemctl(&["stop", "dbus.service"]).unwrap();
    assert_eq!(
        sb.systemctl(&["is-active", "dbus.socket"]).unwrap(),
        "active\n"
    );
}

#[test]
fn a_command_on_a_cold_bus_waits_for_systemd_instead_of_failing() {
    let sb = sandbox();
    let port = free_port();
    let file = write_in(&sb, "/srv/web/app.toml", &hello_app("web", 2, port, ""));
    // The case: the units are written, then systemd is not on the bus yet.
    make_the_bus_cold(&sb);
    let r = sysmgr_env(&sb, &[SYSTEM_BUS], &["start", &file]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.ends_with("started `web`: 2 instances running\n"),
        "{}",
        r.stderr
    );
    assert!(http_get(port, "/").is_some());
    // Whoever is not root always uses the bus.
    make_the_bus_cold(&sb);
    let r = sysmgr_as_nobody(&sb, &["status", "web"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.starts_with("web: active, 2 instances wanted"),
        "{}",
        r.stdout
    );
    // Root needs no bus at all.
    make_the_bus_cold(&sb);
    let r = sysmgr_in(&sb, &["list"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout.lines().count(), 3, "{}", r.stdout);
}

#[test]
fn without_dbus_root_starts_reloads_and_reports_through_the_private_socket() {
    let sb = sandbox();
    sb.systemctl(&["mask", "--now", "dbus.socket", "dbus.service"])
        .unwrap();
    for unit in ["dbus.socket", "dbus.service"] {
        assert_eq!(crate::support::unit_state(&sb, unit), "inactive", "{unit}");
    }
    let port = free_port();
    let file = write_in(&sb, "/srv/web/app.toml", &hello_app("web", 3, port, ""));
    let r = sysmgr_in(&sb, &["start", &file]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.ends_with("started `web`: 3 instances running\n"),
        "{}",
        r.stderr
    );
    let before = instances(&sb, "web");
    assert_eq!(running(&sb, "web"), [1, 2, 3]);
    // The rollout follows its jobs by their `JobRemoved` signals, on the private socket too.
    let started = Instant::now();
    let r = sysmgr_in(&sb, &["reload", "web"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("reload web: 3 of 3 instances ready in "),
        "{}",
        r.stderr
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    let after = instances(&sb, "web");
    for i in 1..=3 {
        assert_ne!(after[&i].1, before[&i].1, "instance {i} runs a new process");
    }
    let r = sysmgr_in(&sb, &["list"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout.lines().count(), 4, "{}", r.stdout);
    let r = sysmgr_in(&sb, &["stop", "web"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(running(&sb, "web"), Vec::<u64>::new());
}

#[test]
fn without_dbus_and_without_the_private_socket_one_clear_message() {
    let sb = sandbox();
    sb.systemctl(&["mask", "--now", "dbus.socket", "dbus.service"])
        .unwrap();
    // What a process that is not root meets: only the bus, and it is gone.
    let r = sysmgr_as_nobody(&sb, &["list"]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(
        r.stderr.starts_with(
            "sysmgr: error: systemd is not reachable on the system bus; is systemd running (with dbus) on this machine?\n  caused by: "
        ),
        "{}",
        r.stderr
    );
    assert_eq!(
        r.stderr.matches("sysmgr: error:").count(),
        1,
        "{}",
        r.stderr
    );
}
