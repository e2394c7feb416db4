//! Generated units in a real systemd: the instances start, each process receives exactly the
//! argv and environment app.toml declared, sockets come from systemd, and a connection starts
//! a stopped instance. Each test boots its own private systemd (see `support::sandbox`).

use std::collections::BTreeMap;
use std::ffi::OsString;

use sysmgr_testkit::ProbeReport;

use crate::support::{
    free_port, sandbox, sysmgr_in, unit_state, wait_for, workspace_bin, write_in,
};

/// Arguments that each trip a different rule of systemd's parser.
const HARD_ARGS: &[&str] = &[
    "two words",
    "x\"y",
    "'single'",
    "$HOME",
    "${HOME}",
    "100%",
    "%i",
    "%%",
    "c:\\d",
    "\\n",
    ";",
    "a;b",
    "{}",
    "é ☃ 漢字",
    "tab\there",
    "new\nline",
    "",
    " ",
    "--flag=va lue",
];

fn toml_string(s: &str) -> String {
    format!("{s:?}").replace("\\'", "'")
}

fn read_report(sb: &sysmgr_sandbox::Sandbox, instance: u32) -> ProbeReport {
    let path = sb.root().join(format!("run/probe/{instance}.json"));
    let found = wait_for(10, || path.exists().then_some(()));
    assert!(found.is_some(), "no probe report for instance {instance}");
    ProbeReport::read(&path).unwrap()
}

fn os(s: &str) -> OsString {
    OsString::from(s)
}

#[test]
fn instances_start_with_exactly_the_declared_argv_environment_and_sockets() {
    let sb = sandbox();
    let probe = workspace_bin("sysmgr-probe");
    let port = free_port();
    let mut env: Vec<(&str, &str)> = vec![
        ("PLAIN", "value"),
        ("SPACES", "a b  c"),
        ("QUOTES", "\"double\" 'single'"),
        ("DOLLAR", "$HOME ${X} $$"),
        ("PERCENT", "50% %i %n"),
        ("BACKSLASH", "c:\\dir\\n"),
        ("UNICODE", "é ☃ 漢字"),
        ("SEMI", "a;b"),
        ("EMPTY", ""),
        ("TAB", "a\tb"),
    ];
    env.push(("NEWLINE", "line1\nline2"));
    let argv: Vec<String> = std::iter::once(probe.display().to_string())
        .chain(HARD_ARGS.iter().map(|s| s.to_string()))
        .collect();
    let app = format!(
        "name = \"probe\"\ncommand = [{}]\ninstances = 3\nlisten = [\"127.0.0.1:{port}\"]\nkill_timeout = 2000\n[env]\nSYSMGR_PROBE_DIR = \"/run/probe\"\n{}",
        argv.iter().map(|a| toml_string(a)).collect::<Vec<_>>().join(", "),
        env.iter()
            .map(|(k, v)| format!("{k} = {}\n", toml_string(v)))
            .collect::<String>()
    );
    let file = write_in(&sb, "/srv/probe/probe.toml", &app);

    let r = sysmgr_in(&sb, &["generate", &file]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        r.stderr,
        "generated `probe`: 3 unit files, 3 instances in /etc/systemd/system\nreloaded systemd\n"
    );
    sb.systemctl(&["start", "probe.target"]).unwrap();
    for n in 1..=3 {
        assert_eq!(unit_state(&sb, &format!("probe@{n}.service")), "active");
        let report = read_report(&sb, n);
        let expected_argv: Vec<OsString> = argv.iter().map(|a| os(a)).collect();
        assert_eq!(report.argv, expected_argv, "argv of instance {n}");
        let mut declared: BTreeMap<OsString, OsString> =
            env.iter().map(|(k, v)| (os(k), os(v))).collect();
        declared.insert(os("SYSMGR_PROBE_DIR"), os("/run/probe"));
        declared.insert(os("SYSMGR_APP"), os("probe"));
        declared.insert(os("SYSMGR_INSTANCE"), os(&n.to_string()));
        declared.insert(os("NODE_APP_INSTANCE"), os(&n.to_string()));
        declared.insert(os("SYSMGR_INSTANCE_VAR"), os("NODE_APP_INSTANCE"));
        declared.insert(os("SYSMGR_KILL_TIMEOUT_MS"), os("2000"));
        declared.insert(os("SYSMGR_KILL_SIGNAL"), os("SIGINT"));
        declared.insert(os("LISTEN_FDNAMES"), os("http"));
        for (k, v) in &declared {
            assert_eq!(report.env.get(k), Some(v), "instance {n}: variable {k:?}");
        }
        assert_eq!(report.listen_fds, Some(1));
        assert_eq!(report.fdnames, Some(vec!["http".to_string()]));
        assert_eq!(report.fds.len(), 1);
        assert_eq!(
            report.fds[0].local_addr.as_deref(),
            Some(&*format!("127.0.0.1:{port}"))
        );
        assert!(
            report.fds[0].nonblocking,
            "a shared socket is handed over non-blocking"
        );
    }
}

#[test]
fn a_connection_to_a_stopped_instance_starts_it() {
    let sb = sandbox();
    let probe = workspace_bin("sysmgr-probe");
    let port = free_port();
    let app = format!(
        "name = \"lazy\"\ncommand = [\"{}\"]\nlisten = [\"127.0.0.1:{port}\"]\n[env]\nSYSMGR_PROBE_DIR = \"/run/probe\"\n",
        probe.display()
    );
    let file = write_in(&sb, "/srv/lazy.toml", &app);
    assert_eq!(sysmgr_in(&sb, &["generate", &file]).code, 0);
    sb.systemctl(&["start", "lazy.socket"]).unwrap();
    assert_eq!(unit_state(&sb, "lazy@1.service"), "inactive");
    let _conn = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let started = wait_for(10, || {
        (unit_state(&sb, "lazy@1.service") == "active").then_some(())
    });
    assert!(
        started.is_some(),
        "the connection did not start lazy@1.service"
    );
    assert_eq!(read_report(&sb, 1).listen_fds, Some(1));
}

#[test]
fn starting_an_extra_per_instance_unit_brings_its_own_socket() {
    let sb = sandbox();
    let probe = workspace_bin("sysmgr-probe");
    let port = free_port();
    let app = format!(
        "name = \"each\"\ncommand = [\"{}\"]\nsocket = \"per-instance\"\nlisten = [\"127.0.0.1:{port}\"]\n[env]\nSYSMGR_PROBE_DIR = \"/run/probe\"\n",
        probe.display()
    );
    let file = write_in(&sb, "/srv/each.toml", &app);
    assert_eq!(sysmgr_in(&sb, &["generate", &file]).code, 0);
    // Instance 2 is not in each.target; starting it by hand still gets it a socket.
    sb.systemctl(&["start", "each@2.service"]).unwrap();
    assert_eq!(unit_state(&sb, "each@2.socket"), "active");
    let report = read_report(&sb, 2);
    assert_eq!(
        report.fds[0].local_addr.as_deref(),
        Some(&*format!("127.0.0.1:{port}"))
    );
    assert_eq!(report.var("SYSMGR_INSTANCE"), Some("2"));
}

#[test]
fn regenerating_with_fewer_instances_reloads_systemd_and_drops_them() {
    let sb = sandbox();
    let probe = workspace_bin("sysmgr-probe");
    let text = |n: u32| {
        format!(
            "name = \"shrink\"\ncommand = [\"{}\"]\ninstances = {n}\n[env]\nSYSMGR_PROBE_DIR = \"/run/probe\"\n",
            probe.display()
        )
    };
    let file = write_in(&sb, "/srv/shrink.toml", &text(4));
    assert_eq!(sysmgr_in(&sb, &["generate", &file]).code, 0);
    let wants = || {
        let mut units: Vec<String> = sb
            .systemctl(&["show", "-p", "Wants", "--value", "shrink.target"])
            .unwrap()
            .split_whitespace()
            .map(str::to_string)
            .collect();
        units.sort();
        units
    };
    assert_eq!(
        wants(),
        [
            "shrink@1.service",
            "shrink@2.service",
            "shrink@3.service",
            "shrink@4.service"
        ]
    );
    write_in(&sb, "/srv/shrink.toml", &text(2));
    let r = sysmgr_in(&sb, &["generate", &file]);
    assert!(r.stderr.ends_with("reloaded systemd\n"), "{}", r.stderr);
    assert_eq!(wants(), ["shrink@1.service", "shrink@2.service"]);
}

#[test]
fn the_generator_runs_inside_systemd_and_its_units_start() {
    let sb = sandbox();
    let probe = workspace_bin("sysmgr-probe");
    crate::support::install_generator(&sb);
    write_in(
        &sb,
        "/etc/sysmgr/gen.toml",
        &format!(
            "name = \"gen\"\ncommand = [\"{}\"]\ninstances = 2\ncron_restart = \"@daily\"\n[env]\nSYSMGR_PROBE_DIR = \"/run/probe\"\n",
            probe.display()
        ),
    );
    write_in(&sb, "/etc/sysmgr/broken.toml", "name = \"broken\"\n");
    sb.systemctl(&["daemon-reload"]).unwrap();
    assert!(sb
        .root()
        .join("run/systemd/generator/gen@.service")
        .exists());
    assert!(!sb
        .root()
        .join("run/systemd/generator/broken@.service")
        .exists());
    sb.systemctl(&["start", "gen.target"]).unwrap();
    // The app's timer comes with it: generated beside the units, started by the target.
    assert_eq!(crate::support::unit_state(&sb, "gen-cron.timer"), "active");
    for n in 1..=2 {
        assert_eq!(
            read_report(&sb, n).var("SYSMGR_INSTANCE"),
            Some(&*n.to_string())
        );
    }

    // The controller finds generator apps too: reload, scale (persisted for the
    // generator), and a delete that says where the app really comes from.
    let r = sysmgr_in(&sb, &["reload", "gen"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = sysmgr_in(&sb, &["scale", "gen", "3"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        std::fs::read_to_string(sb.root().join("etc/sysmgr/scale/gen")).unwrap(),
        "3\n"
    );
    assert_eq!(unit_state(&sb, "gen@3.service"), "active");
    sb.systemctl(&["daemon-reload"]).unwrap();
    assert!(sb
        .root()
        .join("run/systemd/generator/gen.target.wants/gen@3.service")
        .exists());
    let r = sysmgr_in(&sb, &["delete", "gen"]);
    assert_eq!(r.code, 2);
    assert_eq!(
        r.stderr,
        "sysmgr: error: `gen` comes from `/etc/sysmgr/gen.toml` through sysmgr's systemd generator; remove that file and run `systemctl daemon-reload` (or `sysmgr stop gen` to stop it)\n"
    );
}
