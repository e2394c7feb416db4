//! The app.toml checker: every message asserted verbatim, and what valid files resolve to.

use super::*;
use std::num::NonZeroU32;
use std::path::Path;

const BASE: &str = "name = \"web\"\ncommand = [\"/bin/app\"]\n";

fn parse_with(text: &str, opts: &ParseOptions) -> Result<Parsed, Diagnostics> {
    parse(text, "app.toml", Path::new("/srv/web/app.toml"), opts)
}

fn ok(text: &str) -> AppSpec {
    match parse_with(text, &ParseOptions::default()) {
        Ok(p) => p.spec,
        Err(d) => panic!("expected a valid file, got:\n{d}"),
    }
}

/// All diagnostics of a file, errors or warnings, as printed.
fn messages(text: &str) -> String {
    match parse_with(text, &ParseOptions::default()) {
        Ok(p) => p.warnings.to_string(),
        Err(d) => d.to_string(),
    }
}

#[test]
fn hardening_errors_and_warnings_are_exact() {
    let cases: &[(&str, &str)] = &[
        (&format!("{BASE}hardening = \"paranoid\"\n"), "app.toml:3:13: error: `hardening` is `paranoid`; use `\"default\"`, `\"strict\"` (no network of its own) or `\"off\"` (no sandboxing)"),
        (&format!("{BASE}user = \"www\"\ndynamic_user = true\n"), "app.toml:4:16: error: `dynamic_user` conflicts with `user`: systemd makes up the user of a dynamic-user service; remove one of them"),
        (&format!("{BASE}state_directory = \"/var/lib/web\"\n"), "app.toml:3:19: error: `state_directory` is the absolute path `/var/lib/web`; give a name below `/var/lib`, like `\"web\"`"),
        (&format!("{BASE}state_directory = \"../etc\"\n"), "app.toml:3:19: error: `state_directory` is `../etc`; use `/`-separated names of letters, digits, `-`, `_` and `.` (no `..`)"),
        (&format!("{BASE}writable_paths = \"/srv\"\n"), "app.toml:3:18: error: `writable_paths` must be an array of strings, found a string"),
        (&format!("{BASE}writable_paths = [\"/srv/up loads\"]\n"), "app.toml:3:18: error: `writable_paths` has `/srv/up loads`; paths with spaces, quotes or backslashes cannot be listed in `ReadWritePaths=`"),
        (&format!("{BASE}address_families = [\"netlink\"]\n"), "app.toml:3:20: error: `address_families` has `netlink`, which is not an address family; write it as systemd does, e.g. `\"AF_NETLINK\"`"),
        (&format!("{BASE}hardening = \"off\"\naddress_families = [\"AF_NETLINK\"]\n"), "app.toml:4:20: warning: `address_families` has no effect with `hardening = \"off\"`: every family is allowed; remove it"),
        (&format!("{BASE}[unit.service]\nExecStart = \"/bin/other\"\n"), "app.toml:4:1: error: `unit.service.ExecStart` is set by sysmgr from `command`; set `command` instead"),
        (&format!("{BASE}[unit.service]\nTimeoutStopSec = \"5s\"\n"), "app.toml:4:1: error: `unit.service.TimeoutStopSec` is set by sysmgr from `kill_timeout`; set `kill_timeout` instead"),
        (&format!("{BASE}[unit.service]\nType = \"simple\"\n"), "app.toml:4:1: error: `unit.service.Type` is set by sysmgr from `wait_ready`; set `wait_ready` instead"),
        (&format!("{BASE}[unit.service]\nlimit-nofile = 10\n"), "app.toml:4:1: error: `unit.service.limit-nofile` is not a systemd directive name (a capital letter, then letters and digits, like `LimitNOFILE`)"),
        (&format!("{BASE}[unit.service]\nNice = \"1\\nExecStartPre=/bin/evil\"\n"), "app.toml:4:8: error: `unit.service.Nice` contains a newline or control character; a setting is one line"),
        (&format!("{BASE}[unit.service]\nNice = \"1\\\\\"\n"), "app.toml:4:8: error: `unit.service.Nice` ends with a backslash, which would continue the setting on the next line; remove it"),
        (&format!("{BASE}[unit.socket]\nBacklog = 10\n"), "app.toml:3:1: error: `unit.socket` is not supported; only `[unit.service]` settings pass through to the units"),
    ];
    for (text, want) in cases {
        assert_eq!(&messages(text), want, "for:\n{text}");
    }
    let user = ParseOptions {
        user_manager: true,
        ..ParseOptions::default()
    };
    let d = parse_with(&format!("{BASE}dynamic_user = true\n"), &user).unwrap_err();
    assert_eq!(d.to_string(), "app.toml:3:16: error: `dynamic_user` cannot be set for the user manager (`--user`): its services run as that user; remove it");
}

#[test]
fn the_hardening_keys_resolve() {
    let spec = ok(&format!("{BASE}hardening = \"strict\"\ndynamic_user = true\nstate_directory = \"web/cache\"\nwritable_paths = [\"uploads\", \"/var/spool/web\"]\naddress_families = [\"AF_NETLINK\"]\n[unit.service]\nLimitNOFILE = 65536\nPrivateDevices = false\n"));
    assert_eq!(spec.hardening, Hardening::Strict);
    assert!(spec.dynamic_user);
    assert_eq!(spec.state_directory.as_deref(), Some("web/cache"));
    assert_eq!(
        spec.writable_paths,
        [Path::new("/srv/web/uploads"), Path::new("/var/spool/web")]
    );
    assert_eq!(spec.address_families, ["AF_NETLINK"]);
    let raw: Vec<(&str, &str)> = spec
        .unit_service
        .iter()
        .map(|(d, v)| (d.as_str(), v.as_str()))
        .collect();
    assert_eq!(raw, [("LimitNOFILE", "65536"), ("PrivateDevices", "no")]);
    assert_eq!(ok(BASE).hardening, Hardening::Default);
    // What `sysmgr check` lists as opened: the setting the app turned off, with its cost.
    let opened = hardening::opened(&spec);
    assert_eq!(opened[0].0, "PrivateDevices=no (`[unit.service]`)");
    assert_eq!(
        opened[0].1,
        "sees every device node of the machine (raw disks included, as root)"
    );
}

#[test]
fn memory_deny_write_execute_and_notify_access_follow_the_program() {
    let unit = |command: &str| -> String {
        let spec = ok(&format!(
            "name = \"web\"\ncommand = {command}\nsystemd_version = 252\n"
        ));
        let mut text: String = hardening::lines(&spec)
            .iter()
            .filter_map(|l| match l {
                keys::Line::Value(d, v) => Some(format!("{d}={v}\n")),
                _ => None,
            })
            .collect();
        text.push_str(&format!(
            "NotifyAccess={}\n",
            hardening::notify_access(&spec)
        ));
        text
    };
    for (command, mdwe, notify) in [
        ("[\"/usr/bin/sysmgr-hello\"]", true, "main"),
        ("[\"/usr/bin/python3\", \"app.py\"]", true, "main"),
        ("[\"/usr/bin/node\", \"app.js\"]", false, "main"),
        ("[\"java\", \"-jar\", \"app.jar\"]", false, "main"),
        ("[\"/usr/bin/env\", \"node\", \"app.js\"]", false, "all"),
        ("[\"/bin/sh\", \"-c\", \"exec app\"]", false, "all"),
        ("[\"sysmgr\", \"exec\", \"node\", \"app.js\"]", false, "all"),
    ] {
        let text = unit(command);
        assert_eq!(
            text.contains("MemoryDenyWriteExecute=yes\n"),
            mdwe,
            "{command}:\n{text}"
        );
        assert!(
            text.contains(&format!("NotifyAccess={notify}\n")),
            "{command}"
        );
    }
}

#[test]
fn settings_newer_than_systemd_version_are_left_out() {
    let at = |v: u32| -> Vec<String> {
        let spec = ok(&format!("{BASE}systemd_version = {v}\n"));
        hardening::lines(&spec)
            .iter()
            .filter_map(|l| match l {
                keys::Line::Value(d, _) => Some(d.to_string()),
                _ => None,
            })
            .collect()
    };
    let old = at(239);
    for newer in [
        "ProtectKernelLogs",
        "ProtectClock",
        "ProtectHostname",
        "ProtectProc",
        "ProcSubset",
        "RestrictSUIDSGID",
    ] {
        assert!(!old.iter().any(|d| d == newer), "{newer} at 239");
        assert!(at(252).iter().any(|d| d == newer), "{newer} at 252");
    }
    assert!(hardening::lines(&ok(&format!("{BASE}hardening = \"off\"\n"))).is_empty());
}

#[test]
fn errors_and_warnings_are_exact() {
    let cases: &[(&str, &str)] = &[
        ("name = \"web\"\ncommand = \"x", "app.toml:2:13: error: is not valid TOML: invalid basic string, expected `\"`"),
        ("name = \"web\"\n", "app.toml:1:1: error: `command` is missing; add the program and its arguments, e.g. `command = [\"/usr/bin/node\", \"app.js\"]`"),
        ("command = [\"/bin/x\"]\n", "app.toml:1:1: error: `name` is missing; add `name = \"web\"` (it becomes the unit names `web@.service`, `web.target`)"),
        ("name = \"we b\"\ncommand = [\"/bin/x\"]\n", "app.toml:1:8: error: `name` `we b` contains ` `; use only letters, digits, `-`, `_` and `.` (it becomes the unit name `we b@.service`)"),
        ("name = \"web@1\"\ncommand = [\"/bin/x\"]\n", "app.toml:1:8: error: `name` `web@1` contains `@`; use only letters, digits, `-`, `_` and `.` (it becomes the unit name `web@1@.service`)"),
        ("name = \"\"\ncommand = [\"/bin/x\"]\n", "app.toml:1:8: error: `name` is empty; give the app a name like `web` or `api-v2`"),
        ("name = \"-web\"\ncommand = [\"/bin/x\"]\n", "app.toml:1:8: error: `name` `-web` must start with a letter, a digit or `_`"),
        ("name = \"all\"\ncommand = [\"/bin/x\"]\n", "app.toml:1:8: error: `name` is reserved: `sysmgr stop all` (and restart, reload, delete) means every app; choose another name"),
        (&format!("name = \"{}\"\ncommand = [\"/bin/x\"]\n", "a".repeat(65)), "app.toml:1:8: error: `name` is 65 characters long; use at most 64"),
        ("name = 7\ncommand = [\"/bin/x\"]\n", "app.toml:1:8: error: `name` must be a string, found an integer"),
        (&format!("{BASE}instances = -2\n"), "app.toml:3:13: error: `instances` is `-2`; use a count, 0 for one per usable core, or -1 for one fewer"),
        (&format!("{BASE}instances = 5000\n"), "app.toml:3:13: error: `instances` is `5000`; sysmgr runs at most 1024 instances of one app"),
        (&format!("{BASE}instances = 99999999999999999999\n"), "app.toml:3:13: error: `instances` must be an integer (0 or `\"max\"`: one per usable core, -1: one fewer), found `99999999999999999999`, an integer out of range"),
        (&format!("{BASE}max_restarts = -99999999999999999999\n"), "app.toml:3:16: error: `max_restarts` must be an integer, found `-99999999999999999999`, an integer out of range"),
        (&format!("{BASE}instances = \"many\"\n"), "app.toml:3:13: error: `instances` must be an integer (0 or `\"max\"`: one per usable core, -1: one fewer), found a string"),
        (&format!("{BASE}script = \"app.js\"\n"), "app.toml:3:1: error: `script` is a PM2 key; sysmgr runs `command` directly: write `command = [\"node\", \"app.js\"]`"),
        (&format!("{BASE}watch = true\n"), "app.toml:3:1: error: `watch` is not supported: sysmgr does not watch files; run `sysmgr reload NAME` after a deploy"),
        (&format!("{BASE}out_file = \"/var/log/x\"\n"), "app.toml:3:1: error: `out_file` is not supported: output goes to the journal, with timestamps and rotation; read it with `journalctl -u 'NAME@*'`"),
        (&format!("{BASE}instancs = 2\n"), "app.toml:3:1: error: `instancs` is not a key sysmgr knows; did you mean `instances`?"),
        (&format!("{BASE}frobnicate = 2\n"), "app.toml:3:1: error: `frobnicate` is not a key sysmgr knows; `sysmgr init NAME` writes a file with every key"),
        (&format!("{BASE}listen = [\"127.0.0.1:3000\", \"3000\"]\n"), "app.toml:3:29: error: `listen[1]` `3000` is already declared as `127.0.0.1:3000`; remove one of them"),
        (&format!("{BASE}listen = [\"localhost:3000\"]\n"), "app.toml:3:11: error: `listen[0]` `localhost:3000` is not an address; write `\"127.0.0.1:3000\"`, `\"[::1]:3000\"`, `\"3000\"` (every address) or an absolute unix socket path"),
        (&format!("{BASE}listen = [\"127.0.0.1\"]\n"), "app.toml:3:11: error: `listen[0]` `127.0.0.1` has no port; write `127.0.0.1:3000`"),
        (&format!("{BASE}listen = [\"127.0.0.1:0\"]\n"), "app.toml:3:11: error: `listen[0]` has port 0; systemd needs a fixed port"),
        (&format!("{BASE}listen = \"3000\"\n"), "app.toml:3:10: error: `listen` must be an array like `[\"127.0.0.1:3000\"]`, found a string"),
        (&format!("{BASE}listen = [{{ name = \"admin\" }}]\n"), "app.toml:3:11: error: `listen[0]` has no `address`; write `{ address = \"127.0.0.1:3000\", name = \"http\" }`"),
        (&format!("{BASE}listen = [{{ address = \"3000\", port = 1 }}]\n"), "app.toml:3:31: error: `listen[0].port` is not a key of a listen entry; use `address` and `name`"),
        (&format!("{BASE}listen = [{{ address = \"3000\", name = \"a:b\" }}]\n"), "app.toml:3:38: error: `listen[0].name` `a:b` contains `:`; use letters, digits, `-` and `_`"),
        (&format!("{BASE}socket = \"per-instance\"\nlisten = [\"/run/web.sock\"]\n"), "app.toml:4:11: error: `listen[0]` is the unix socket `/run/web.sock`, which instances cannot each bind with `ReusePort`; set `socket = \"shared\"`"),
        (&format!("{BASE}socket = \"both\"\n"), "app.toml:3:10: error: `socket` is `both`; use `\"shared\"` (one socket for all instances) or `\"per-instance\"` (one `ReusePort` socket each)"),
        (&format!("{BASE}kill_timeout = \"10 parsecs\"\n"), "app.toml:3:16: error: `kill_timeout` `10 parsecs` is not a duration; write a number and a unit, like `\"500ms\"`, `\"10s\"` or `\"2min\"`"),
        (&format!("{BASE}listen_timeout = 0\n"), "app.toml:3:18: error: `listen_timeout` is `0`; give a positive number of milliseconds, or a string like `\"10s\"`"),
        (&format!("{BASE}kill_timeout = true\n"), "app.toml:3:16: error: `kill_timeout` must be milliseconds or a string like `\"10s\"`, found a boolean"),
        (&format!("{BASE}wait_ready = \"yes\"\n"), "app.toml:3:14: error: `wait_ready` must be `true` or `false`, found a string"),
        (&format!("{BASE}wait_ready = false\n"), "app.toml:3:14: warning: `wait_ready` is false: systemd counts an instance as started as soon as it runs, so `sysmgr reload` cannot wait until it serves; send `READY=1` and remove this line"),
        (&format!("{BASE}kill_signal = \"SIGFOO\"\n"), "app.toml:3:15: error: `kill_signal` `SIGFOO` is not a signal sysmgr can send; use one of SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGKILL, SIGWINCH, SIGABRT, SIGALRM, SIGPWR"),
        (&format!("{BASE}kill_signal = \"SIGKILL\"\n"), "app.toml:3:15: warning: `kill_signal` is `SIGKILL`: workers cannot drain, so requests in flight fail at every reload; prefer `SIGINT` or `SIGTERM`"),
        (&format!("{BASE}exec_mode = \"cluster\"\n"), "app.toml:3:1: warning: `exec_mode` has no effect: every instance is its own process sharing systemd's sockets, like PM2's cluster mode; remove it"),
        (&format!("{BASE}max_memory_restart = \"lots\"\n"), "app.toml:3:22: error: `max_memory_restart` `lots` is not a size; write bytes or a number with K, M or G, like `\"300M\"`"),
        (&format!("{BASE}max_restarts = 0\n"), "app.toml:3:16: error: `max_restarts` is `0`; give a count from 1 to 10000"),
        (&format!("{BASE}stop_exit_codes = [0, 300]\n"), "app.toml:3:23: error: `stop_exit_codes` has `300`; exit codes are 0 to 255"),
        (&format!("{BASE}systemd_version = 200\n"), "app.toml:3:19: error: `systemd_version` is `200`; sysmgr's units need systemd 239 or newer"),
        (&format!("{BASE}user = \"bad name\"\n"), "app.toml:3:8: error: `user` `bad name` is not a valid user or group name; use letters, digits, `_` and `-`, or a numeric id"),
        (&format!("{BASE}instance_var = \"SYSMGR_INSTANCE\"\n"), "app.toml:3:16: error: `instance_var` `SYSMGR_INSTANCE` is set by sysmgr or systemd already; choose another name"),
        ("name = \"web\"\ncommand = \"node 'app.js\"\n", "app.toml:2:11: error: `command` cannot be split into words: the ' quote opened here is never closed; close the quote, or write the words as an array"),
        ("name = \"web\"\ncommand = []\n", "app.toml:2:11: error: `command` is empty; give the program and its arguments, e.g. `[\"/usr/bin/node\", \"app.js\"]`"),
        ("name = \"web\"\ncommand = [\"/bin/x\", 1]\n", "app.toml:2:22: error: `command[1]` must be a string, found an integer"),
        ("name = \"web\"\ncommand = \"./app --port 3000\"\n", "app.toml:2:11: error: `command` starts with the relative path `./app`; systemd needs an absolute path or a bare program name found in `PATH`: write `/srv/web/app`"),
        ("name = \"web\"\ncommand = [\"-/bin/x\"]\n", "app.toml:2:11: error: `command` program `-/bin/x` starts with `-`, which systemd reads as an `ExecStart=` flag, not as part of the path"),
        ("name = \"web\"\ncommand = [\"/bin/$x\"]\n", "app.toml:2:11: error: `command` program `/bin/$x` contains `$`, which systemd would expand in argv[0] but not in the program path"),
        ("name = \"web\"\ncommand = [\"/bin/x\", \"a\\u0000b\"]\n", "app.toml:2:11: error: `command` argument 1 `a\\0b` contains a NUL character, which no process argument or variable can hold"),
        (&format!("{BASE}[env]\nA = \"x\\u0000y\"\n"), "app.toml:4:5: error: `env.A` contains a NUL character, which no process argument or variable can hold; pass binary data another way, e.g. base64"),
        (&format!("{BASE}[env]\nA = \"\\u001b[0m\"\n"), "app.toml:4:5: error: `env.A` contains the control character '\\u{1b}', which systemd refuses in environment values; pass binary data another way, e.g. base64"),
        (&format!("{BASE}[env]\n\"A-B\" = \"x\"\n"), "app.toml:4:1: error: `env.A-B` is not a valid variable name; use letters, digits and `_`, not starting with a digit"),
        (&format!("{BASE}[env]\nLISTEN_FDS = \"3\"\n"), "app.toml:4:1: error: `env.LISTEN_FDS` is set by sysmgr or systemd for every instance; remove it"),
        (&format!("{BASE}[env]\nNODE_APP_INSTANCE = \"3\"\n"), "app.toml:4:1: error: `env.NODE_APP_INSTANCE` is set by sysmgr or systemd for every instance; remove it"),
        (&format!("{BASE}[env]\nA = [1]\n"), "app.toml:4:5: error: `env.A` must be a string, number or boolean, found an array"),
        (&format!("{BASE}env = \"A=1\"\n"), "app.toml:3:7: error: `env` must be a table of variables, found a string"),
        (&format!("{BASE}[env_]\nA = \"1\"\n"), "app.toml:3:2: error: `env_` names no profile; write `[env_production]`"),
        // Found by the fuzzer (src/config/fuzz.rs): paths a unit cannot hold.
        (&format!("{BASE}[env]\nA = \"x\\uFFFE\"\n"), "app.toml:4:5: error: `env.A` contains the noncharacter U+FFFE, which systemd refuses in unit files"),
        ("name = \"web\"\ncommand = [\"/bin/x\", \"\\U0010FFFF\"]\n", "app.toml:2:11: error: `command` argument 1 `\\u{10ffff}` contains the noncharacter U+10FFFF, which systemd refuses in unit files"),
        (&format!("{BASE}cwd = \"/srv/\\uFDD0\"\n"), "app.toml:3:7: error: `cwd` `/srv/\u{FDD0}` contains the noncharacter U+FDD0, which systemd refuses in unit files"),
        (&format!("{BASE}listen = [\"/run/\\uFDD0\"]\n"), "app.toml:3:11: error: `listen[0]` `/run/\u{FDD0}` contains the noncharacter U+FDD0, which systemd refuses in unit files"),
        (&format!("{BASE}[unit.service]\nNice = \"\\uFFFF\"\n"), "app.toml:4:8: error: `unit.service.Nice` contains the noncharacter U+FFFF, which systemd refuses in unit files"),
        (&format!("{BASE}cwd = \"/srv/x\\\\\"\n"), "app.toml:3:7: error: `cwd` `/srv/x\\` ends with a backslash, which systemd would join with the next line of the unit"),
        (&format!("{BASE}cwd = \"/srv/x \"\n"), "app.toml:3:7: error: `cwd` `/srv/x ` ends with white space, which systemd would drop from the setting"),
        (&format!("{BASE}cwd = \"/srv/{}\"\n", "x".repeat(256)), &format!("app.toml:3:7: error: `cwd` `/srv/{}` is too long for systemd: at most 4095 bytes, 255 for each name", "x".repeat(256))),
        (&format!("{BASE}writable_paths = [\"/srv/x/..\\\\\"]\n"), "app.toml:3:18: error: `writable_paths` has `/srv/x/..\\\\`; paths with spaces, quotes or backslashes cannot be listed in `ReadWritePaths=`"),
        (&format!("{BASE}listen = [\"/run/x\\\\\"]\n"), "app.toml:3:11: error: `listen[0]` `/run/x\\` ends with a backslash, which `ListenStream=` cannot hold (systemd would join the next line of the unit); rename the socket"),
        (&format!("{BASE}listen = [\"/run/x \"]\n"), "app.toml:3:11: error: `listen[0]` `/run/x ` ends with white space, which `ListenStream=` cannot hold (systemd would drop it); rename the socket"),
    ];
    let mut wrong = Vec::new();
    for (input, expected) in cases {
        let got = messages(input);
        if got != *expected {
            wrong.push(format!(
                "input:\n{input}\nexpected: {expected}\n     got: {got}\n"
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} cases differ:\n{}",
        wrong.len(),
        cases.len(),
        wrong.join("\n")
    );
}

#[test]
fn every_error_of_a_file_is_reported_at_once_in_order() {
    let text = "name = \"a b\"\ncommand = []\ninstances = -5\nwatch = true\n";
    assert_eq!(
        messages(text),
        "app.toml:1:8: error: `name` `a b` contains ` `; use only letters, digits, `-`, `_` and `.` (it becomes the unit name `a b@.service`)\n\
         app.toml:2:11: error: `command` is empty; give the program and its arguments, e.g. `[\"/usr/bin/node\", \"app.js\"]`\n\
         app.toml:3:13: error: `instances` is `-5`; use a count, 0 for one per usable core, or -1 for one fewer\n\
         app.toml:4:1: error: `watch` is not supported: sysmgr does not watch files; run `sysmgr reload NAME` after a deploy"
    );
}

#[test]
fn profiles_merge_over_env_and_unknown_profiles_are_errors() {
    let text =
        format!("{BASE}[env]\nA = \"1\"\nB = \"2\"\n[env_production]\nB = \"prod\"\nC = 3\n");
    assert_eq!(
        ok(&text).env,
        [("A".into(), "1".into()), ("B".into(), "2".into())]
    );
    let opts = ParseOptions {
        profile: Some("production".into()),
        user_manager: false,
        ..ParseOptions::default()
    };
    let spec = parse_with(&text, &opts).unwrap().spec;
    assert_eq!(
        spec.env,
        [
            ("A".into(), "1".into()),
            ("B".into(), "prod".into()),
            ("C".into(), "3".into())
        ]
    );
    assert_eq!(spec.profile.as_deref(), Some("production"));
    let opts = ParseOptions {
        profile: Some("staging".into()),
        user_manager: false,
        ..ParseOptions::default()
    };
    assert_eq!(
        parse_with(&text, &opts).unwrap_err().to_string(),
        "app.toml:1:1: error: `env_staging` is not in the file, but `--env staging` asks for it; this file defines `production`"
    );
}

#[test]
fn user_and_group_are_refused_for_the_user_manager() {
    let opts = ParseOptions {
        profile: None,
        user_manager: true,
        ..ParseOptions::default()
    };
    let text = format!("{BASE}user = \"www-data\"\n");
    assert_eq!(
        parse_with(&text, &opts).unwrap_err().to_string(),
        "app.toml:3:8: error: `user` cannot be set for the user manager (`--user`): its services run as that user; remove it or generate for the system manager"
    );
}

#[test]
fn defaults_follow_pm2() {
    let spec = ok(BASE);
    assert_eq!(spec.kill_timeout, Millis::new(1600));
    assert_eq!(spec.kill_signal.name(), "SIGINT");
    assert_eq!(spec.listen_timeout, Millis::new(30_000));
    assert!(spec.wait_ready);
    assert!(spec.autorestart);
    assert_eq!(spec.instances, Instances::Count(NonZeroU32::MIN));
    assert_eq!(spec.instance_var, "NODE_APP_INSTANCE");
    assert_eq!(spec.cwd, Path::new("/srv/web"));
    assert_eq!(spec.socket_mode, SocketMode::Shared);
    assert!(spec.listen.is_empty());
}

#[test]
fn pm2_forms_are_accepted() {
    let spec = ok(&format!(
        "{BASE}instances = \"max\"\nkill_timeout = 5000\nlisten_timeout = \"10s\"\nkill_signal = \"term\"\n\
         max_memory_restart = \"300M\"\nrestart_delay = 250\nstop_exit_codes = 0\n\
         listen = [\"[::1]:3000\", {{ address = \"/run/web/admin.sock\", name = \"admin\" }}]\ncwd = \"app\"\n"
    ));
    assert_eq!(spec.instances, Instances::PerCore);
    assert_eq!(spec.kill_timeout, Millis::new(5000));
    assert_eq!(spec.listen_timeout, Millis::new(10_000));
    assert_eq!(spec.kill_signal.name(), "SIGTERM");
    assert_eq!(spec.max_memory_restart.unwrap().get(), 300 * 1024 * 1024);
    assert_eq!(spec.restart_delay, Some(Millis::new(250)));
    assert_eq!(spec.stop_exit_codes, [0]);
    assert_eq!(spec.cwd, Path::new("/srv/web/app"));
    assert_eq!(spec.listen.len(), 2);
    assert_eq!(spec.listen[0].name.as_str(), "http");
    assert_eq!(spec.listen[1].name.as_str(), "admin");
    assert_eq!(spec.listen[1].address.to_string(), "/run/web/admin.sock");
}

#[test]
fn a_command_string_is_split_like_a_shell_without_expanding() {
    let spec = ok("name = \"web\"\ncommand = \"node app.js --title 'my app' $HOME\"\n");
    assert_eq!(
        spec.command,
        ["node", "app.js", "--title", "my app", "$HOME"]
    );
}

/// Found by the fuzzer: `cwd = ".."` made `WorkingDirectory=/srv/web/..`, which systemd
/// refuses (`path is not normalized`), so the unit did not load. Dots are resolved by name.
#[test]
fn dots_in_paths_are_resolved_by_name() {
    let spec = ok(&format!(
        "{BASE}cwd = \"..\"\nwritable_paths = [\"../up/./loads\"]\n"
    ));
    assert_eq!(spec.cwd, Path::new("/srv"));
    assert_eq!(spec.writable_paths, [Path::new("/srv/up/loads")]);
    assert_eq!(
        ok(&format!("{BASE}cwd = \"/a/../../b/.\"\n")).cwd,
        Path::new("/b")
    );
    assert_eq!(
        ok(&format!("{BASE}cwd = \".\"\n")).cwd,
        Path::new("/srv/web")
    );
}

/// Found by the fuzzer: without `cwd`, the app file's directory became `WorkingDirectory=`
/// unchecked; a newline in it split the setting over two lines.
#[test]
fn a_directory_the_units_cannot_hold_needs_a_cwd() {
    let at = |dir: &str| {
        let file = format!("{dir}/app.toml");
        match parse(BASE, "app.toml", Path::new(&file), &ParseOptions::default()) {
            Ok(_) => String::new(),
            Err(d) => d.to_string(),
        }
    };
    assert_eq!(at("/srv/a\nb"), "app.toml:1:1: error: `cwd` is not set, so it is the app file's directory `/srv/a\\nb`, which contains a control character; set `cwd`, or move the file");
    assert_eq!(at("/srv/a\\"), "app.toml:1:1: error: `cwd` is not set, so it is the app file's directory `/srv/a\\\\`, which ends with a backslash, which systemd would join with the next line of the unit; set `cwd`, or move the file");
    assert_eq!(at("/srv/a b"), "");
    let relative = format!("{BASE}writable_paths = [\"uploads\"]\n");
    assert_eq!(
        parse(&relative, "app.toml", Path::new("/srv/a b/app.toml"), &ParseOptions::default()).unwrap_err().to_string(),
        "app.toml:3:18: error: `writable_paths` has `uploads`, which is `/srv/a b/uploads` from the app file's directory; paths with spaces, quotes or backslashes cannot be listed in `ReadWritePaths=`: write an absolute path"
    );
    let fixed = format!("{BASE}cwd = \"/srv/app\"\n");
    assert!(parse(
        &fixed,
        "app.toml",
        Path::new("/srv/a\nb/app.toml"),
        &ParseOptions::default()
    )
    .is_ok());
}
