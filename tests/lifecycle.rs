//! The lifecycle commands against a real systemd: `start`, `stop`, `restart`, `scale`,
//! `delete`, `list` and `status` run inside a private systemd (see `support::sandbox`), where
//! `/etc/systemd/system` and the system bus are that manager's. Also the errors a person
//! meets first: unknown app, systemd unreachable, permission denied.

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt as _;
use std::time::Duration;

use serde_json::Value;

use crate::support::{
    free_port, sandbox, status_instances, sysmgr, sysmgr_in, workspace_bin, write_in,
};

/// An app file for the reference worker with `n` instances on `port`.
pub(crate) fn hello_app(name: &str, n: u32, port: u16, extra: &str) -> String {
    format!(
        "name = \"{name}\"\ncommand = [\"{}\"]\ninstances = {n}\nlisten = [\"127.0.0.1:{port}\"]\nkill_timeout = 3000\n{extra}",
        workspace_bin("sysmgr-hello").display()
    )
}

/// Writes `text` as `/srv/web/app.toml` and starts it: the app file's path.
pub(crate) fn start_web(sb: &sysmgr_sandbox::Sandbox, text: &str) -> String {
    let file = write_in(sb, "/srv/web/app.toml", text);
    let r = sysmgr_in(sb, &["start", &file]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    file
}

/// One `GET` over a fresh connection; the body, or `None` if the connection failed.
pub(crate) fn http_get(port: u16, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_string())
}

/// `sysmgr status NAME --json` inside the sandbox: instance number -> (state, pid).
pub(crate) fn instances(sb: &sysmgr_sandbox::Sandbox, app: &str) -> BTreeMap<u64, (String, u64)> {
    status_instances(&sysmgr_in(sb, &["status", app, "--json"]))
}

/// The instance numbers that are active/running.
pub(crate) fn running(sb: &sysmgr_sandbox::Sandbox, app: &str) -> Vec<u64> {
    instances(sb, app)
        .into_iter()
        .filter(|(_, (state, _))| state == "active/running")
        .map(|(i, _)| i)
        .collect()
}

fn wants(sb: &sysmgr_sandbox::Sandbox, app: &str) -> Vec<String> {
    let dir = sb
        .root()
        .join(format!("etc/systemd/system/{app}.target.wants"));
    let mut links: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    links.sort();
    links
}

#[test]
fn start_from_a_file_serves_enables_the_target_and_reports_every_instance() {
    let sb = sandbox();
    let port = free_port();
    let file = write_in(&sb, "/srv/web/app.toml", &hello_app("web", 3, port, ""));
    let r = sysmgr_in(&sb, &["start", &file]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.ends_with("started `web`: 3 instances running\n"),
        "{}",
        r.stderr
    );
    // systemd's link is absolute: read it, do not follow it from the host.
    let link = sb
        .root()
        .join("etc/systemd/system/multi-user.target.wants/web.target");
    assert_eq!(
        std::fs::read_link(&link).ok(),
        Some("/etc/systemd/system/web.target".into()),
        "start enables the target so the app comes back after a reboot"
    );
    let body = http_get(port, "/").expect("the app answers");
    assert!(body.starts_with("instance "), "{body}");

    let all = instances(&sb, "web");
    assert_eq!(all.keys().copied().collect::<Vec<_>>(), [1, 2, 3]);
    for (state, pid) in all.values() {
        assert_eq!(state, "active/running");
        assert!(*pid > 1);
    }
    let list = sysmgr_in(&sb, &["list"]);
    assert_eq!(list.code, 0, "{}", list.stderr);
    let lines: Vec<&str> = list.stdout.lines().collect();
    assert!(
        lines[0].starts_with("APP  INSTANCE  STATE"),
        "{}",
        list.stdout
    );
    assert_eq!(lines.len(), 4, "{}", list.stdout);
    assert!(
        lines[1].starts_with("web  1         active/running"),
        "{}",
        list.stdout
    );
    let json: Value = serde_json::from_str(&sysmgr_in(&sb, &["list", "--json"]).stdout).unwrap();
    assert_eq!(json[0]["name"], "web");
    assert_eq!(json[0]["target"], "active");
    assert_eq!(json[0]["wanted"], 3);
    assert_eq!(json[0]["source"], "/srv/web/app.toml");
    // A running instance has a memory figure: systemd's, or where the sandbox's manager has
    // no memory accounting (cgroup v1 hosts), the summed resident set of its processes.
    for i in json[0]["instances"].as_array().unwrap() {
        assert!(
            i["memory_bytes"].as_u64().is_some_and(|m| m > 0),
            "memory of {i}"
        );
    }
    assert!(
        lines[1].contains("iB  "),
        "a MEMORY figure: {}",
        list.stdout
    );
}

#[test]
fn stop_then_start_by_name_and_restart_give_new_processes() {
    let sb = sandbox();
    let port = free_port();
    let file = write_in(&sb, "/srv/web/app.toml", &hello_app("web", 2, port, ""));
    assert_eq!(sysmgr_in(&sb, &["start", &file]).code, 0);

    let r = sysmgr_in(&sb, &["stop", "web"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stderr, "stopped `web`: 2 instances stopped\n");
    assert_eq!(running(&sb, "web"), Vec::<u64>::new());
    assert!(http_get(port, "/").is_none(), "the socket is stopped too");

    let r = sysmgr_in(&sb, &["start", "web"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(running(&sb, "web"), [1, 2]);
    let before = instances(&sb, "web");

    let r = sysmgr_in(&sb, &["restart", "web"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr
            .starts_with("restart web: 2 instances, 2 at a time\n"),
        "{}",
        r.stderr
    );
    let after = instances(&sb, "web");
    for i in [1, 2] {
        assert_eq!(after[&i].0, "active/running");
        assert_ne!(after[&i].1, before[&i].1, "instance {i} has a new process");
    }
    assert!(http_get(port, "/").is_some());
}

#[test]
fn scale_persists_the_count_and_starts_or_stops_instances() {
    let sb = sandbox();
    let port = free_port();
    // Per-instance sockets, so scaling down must stop the instance's socket too.
    let file = write_in(
        &sb,
        "/srv/web/app.toml",
        &hello_app("web", 2, port, "socket = \"per-instance\"\n"),
    );
    assert_eq!(sysmgr_in(&sb, &["start", &file]).code, 0);

    let r = sysmgr_in(&sb, &["scale", "web", "+2"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stderr, "scaled `web` from 2 to 4: started 2, stopped 0\n");
    assert_eq!(running(&sb, "web"), [1, 2, 3, 4]);
    assert_eq!(
        wants(&sb, "web"),
        [
            "web@1.service",
            "web@2.service",
            "web@3.service",
            "web@4.service"
        ]
    );

    let r = sysmgr_in(&sb, &["scale", "web", "-3"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stderr, "scaled `web` from 4 to 1: started 0, stopped 3\n");
    assert_eq!(running(&sb, "web"), [1]);
    assert_eq!(wants(&sb, "web"), ["web@1.service"]);
    assert_eq!(
        sb.systemctl(&["is-active", "web@1.socket"]).unwrap(),
        "active\n"
    );
    assert!(
        sb.systemctl(&["is-active", "web@2.socket"]).is_err(),
        "the sockets of the stopped instances are stopped with them"
    );

    let r = sysmgr_in(&sb, &["scale", "web", "0"]);
    assert_eq!(r.code, 2);
    assert_eq!(
        r.stderr,
        "sysmgr: error: cannot scale `web` to 0 instances (it has 1); at least 1 must run; use `sysmgr stop web` to stop it\n"
    );

    // A stopped app only has its count changed.
    assert_eq!(sysmgr_in(&sb, &["stop", "web"]).code, 0);
    let r = sysmgr_in(&sb, &["scale", "web", "3"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        r.stderr,
        "scale web: 3 instances from now on; `web` is stopped, `sysmgr start web` starts them\n"
    );
    assert_eq!(running(&sb, "web"), Vec::<u64>::new());
    assert_eq!(sysmgr_in(&sb, &["start", "web"]).code, 0);
    assert_eq!(running(&sb, "web"), [1, 2, 3]);
}

#[test]
fn delete_stops_the_app_and_removes_its_units() {
    let sb = sandbox();
    let port = free_port();
    let file = write_in(&sb, "/srv/web/app.toml", &hello_app("web", 2, port, ""));
    assert_eq!(sysmgr_in(&sb, &["start", &file]).code, 0);
    let r = sysmgr_in(&sb, &["delete", "web"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        r.stderr,
        "deleted `web`: stopped 2 instances, removed 5 files and links from `/etc/systemd/system`\n"
    );
    let etc = sb.root().join("etc/systemd/system");
    for gone in [
        "web@.service",
        "web.socket",
        "web.target",
        "web.target.wants",
        "multi-user.target.wants/web.target",
    ] {
        assert!(
            std::fs::symlink_metadata(etc.join(gone)).is_err(),
            "{gone} is still there"
        );
    }
    assert!(http_get(port, "/").is_none());
    let r = sysmgr_in(&sb, &["status", "web"]);
    assert_eq!(r.code, 2);
    assert_eq!(
        r.stderr,
        "sysmgr: error: app `web` is not generated: `/etc/systemd/system` holds no units of sysmgr's for it; start it from its app file with `sysmgr start FILE` (or write its units with `sysmgr generate FILE`)\n"
    );
}

#[test]
fn unknown_apps_name_the_apps_that_exist() {
    let sb = sandbox();
    let file = write_in(
        &sb,
        "/srv/web/app.toml",
        &hello_app("web", 1, free_port(), ""),
    );
    assert_eq!(sysmgr_in(&sb, &["start", &file]).code, 0);
    for cmd in ["stop", "restart", "reload", "status", "logs", "delete"] {
        let r = sysmgr_in(&sb, &[cmd, "api"]);
        assert_eq!(r.code, 2, "{cmd}");
        assert_eq!(
            r.stderr,
            "sysmgr: error: app `api` is not generated: `/etc/systemd/system` holds no units of sysmgr's for it (apps there: web); start it from its app file with `sysmgr start FILE` (or write its units with `sysmgr generate FILE`)\n",
            "{cmd}"
        );
    }
    let r = sysmgr_in(&sb, &["stop", "no/such"]);
    assert_eq!(r.code, 2);
    assert_eq!(
        r.stderr,
        "sysmgr: error: `no/such` is not a valid app name: it `no/such` contains `/`; use only letters, digits, `-`, `_` and `.` (it becomes the unit name `no/such@.service`)\n"
    );
}

#[test]
fn unreachable_systemd_is_reported_with_its_own_exit_code() {
    let r = sysmgr()
        .args(["list"])
        .env(
            "DBUS_SYSTEM_BUS_ADDRESS",
            "unix:path=/nonexistent/sysmgr-test-bus",
        )
        .output()
        .unwrap();
    assert_eq!(r.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert!(
        stderr.starts_with(
            "sysmgr: error: systemd is not reachable on the system bus; is systemd running (with dbus) on this machine?\n  caused by: failed to connect to `unix:path=/nonexistent/sysmgr-test-bus`"
        ),
        "{stderr}"
    );
    let r = sysmgr()
        .args(["--user", "list"])
        .env(
            "DBUS_SESSION_BUS_ADDRESS",
            "unix:path=/nonexistent/sysmgr-test-bus",
        )
        .env("XDG_CONFIG_HOME", "/nonexistent")
        .output()
        .unwrap();
    assert_eq!(r.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&r.stderr).starts_with(
        "sysmgr: error: the user's systemd is not reachable on the session bus; is `systemd --user` running, and is there a session bus (`DBUS_SESSION_BUS_ADDRESS` or `$XDG_RUNTIME_DIR/bus`)?\n"
    ));
}

#[test]
fn an_unprivileged_user_is_told_to_use_root_or_user() {
    let sb = sandbox();
    let file = write_in(
        &sb,
        "/srv/web/app.toml",
        &hello_app("web", 1, free_port(), ""),
    );
    assert_eq!(sysmgr_in(&sb, &["start", &file]).code, 0);
    let as_nobody = |args: &[&str]| {
        let out = sb
            .command("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(crate::support::sysmgr_bin())
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // Reading is allowed.
    assert_eq!(as_nobody(&["status", "web"]).0, Some(0));
    // The lock is root's.
    let (code, stderr) = as_nobody(&["stop", "web"]);
    assert_eq!(code, Some(3));
    assert_eq!(
        stderr,
        "sysmgr: error: permission denied: cannot create the lock `/run/sysmgr/web.lock`; run as root, or use --user for your own service manager\n"
    );
    // Past the lock, systemd itself refuses.
    let lock = sb.root().join("run/sysmgr/web.lock");
    std::fs::write(&lock, "").unwrap();
    std::fs::set_permissions(&lock, std::fs::Permissions::from_mode(0o666)).unwrap();
    let (code, stderr) = as_nobody(&["stop", "web"]);
    assert_eq!(code, Some(3));
    assert!(
        stderr.starts_with(
            "sysmgr: error: permission denied: systemd refused to stop `web.target`; run as root, or use --user for your own service manager\n"
        ),
        "{stderr}"
    );
    assert_eq!(running(&sb, "web"), [1]);
}
