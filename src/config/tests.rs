//! The app.toml checker: every message asserted verbatim, and what valid files resolve to.

use super::*;
use std::num::NonZeroU32;
use std::path::Path;

const BASE: &str = "name = \"web\"\ncommand = [\"/bin/app\"]\n";

fn parse_with(text: &str, opts: &ParseOptions) -> Result<Parsed, Diagnostics> {
    parse(text, "app.toml", Path::new("/srv/web/app.toml"), opts)
}

pub(super) fn ok(text: &str) -> AppSpec {
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
        ("name = \"all\"\ncommand = [\"/bin/x\"]\n", "app.toml:1:8: error: `name` is reserved: `sysmgr stop all` (and restart, reload, scale, delete) means every app; choose another name"),
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
        (&format!("{BASE}health_check = \"health\"\n"), "app.toml:3:16: error: `health_check` is `health`; give an HTTP path starting with `/`, like `\"/health\"`"),
        (&format!("{BASE}health_check = \"/he alth\"\n"), "app.toml:3:16: error: `health_check` `/he alth` contains ` `; write it as in a URL, e.g. a space as `%20`"),
        (&format!("{BASE}health_check = 200\n"), "app.toml:3:16: error: `health_check` must be an HTTP path like `\"/health\"` or a table like `{ path = \"/health\", timeout = \"2s\" }`, found an integer"),
        (&format!("{BASE}health_check = {{ timeout = \"2s\" }}\n"), "app.toml:3:16: error: `health_check` has neither `path` nor `command`; write `{ path = \"/health\", timeout = \"2s\" }`"),
        (&format!("{BASE}health_check = {{ path = \"/health\", command = [\"/bin/check\"] }}\n"), "app.toml:3:36: error: `health_check.command` cannot be given with `path`: a health check is an HTTP `path` or a `command`; keep one"),
        (&format!("{BASE}health_check = {{ command = [] }}\n"), "app.toml:3:28: error: `health_check.command` is empty; give the program and its arguments, e.g. `[\"/usr/bin/curl\", \"-fsS\", \"http://127.0.0.1:3000/health\"]`"),
        (&format!("{BASE}health_check = {{ command = [\"./check\"] }}\n"), "app.toml:3:28: error: `health_check.command` starts with the relative path `./check`; systemd needs an absolute path or a bare program name found in `PATH`: write `/srv/web/check`"),
        (&format!("{BASE}health_check = {{ command = [\"/bin/check\", 1] }}\n"), "app.toml:3:43: error: `health_check.command[1]` must be a string, found an integer"),
        (&format!("{BASE}health_check = {{ command = \"check 'x\" }}\n"), "app.toml:3:28: error: `health_check.command` cannot be split into words: the ' quote opened here is never closed; close the quote, or write the words as an array"),
        (&format!("{BASE}health_check = {{ path = \"/health\", url = \"x\" }}\n"), "app.toml:3:36: error: `health_check.url` is not a key of a health check; use `path` or `command`, and `timeout`"),
        (&format!("{BASE}health_check = {{ path = \"/health\", timeout = \"2 days\" }}\n"), "app.toml:3:46: error: `health_check.timeout` `2 days` is not a duration; write a number and a unit, like `\"500ms\"`, `\"10s\"` or `\"2min\"`"),
        (&format!("{BASE}health_check = {{ path = \"/health\", timeout = \"1h\" }}\n"), "app.toml:3:46: error: `health_check.timeout` is 60min; give at most 10min: the reload waits this long for each instance"),
        (&format!("{BASE}health_check = {{ path = 1 }}\n"), "app.toml:3:25: error: `health_check.path` must be a string, found an integer"),
        (&format!("{BASE}listen = [{{ address = \"3000\", name = \"sysmgr-health\" }}]\n"), "app.toml:3:38: error: `listen[0].name` `sysmgr-health` is the name of the socket sysmgr's `health_check` probes; choose another name"),
        (&format!("{BASE}[env]\nSYSMGR_HEALTH_PATH = \"/x\"\n"), "app.toml:4:1: error: `env.SYSMGR_HEALTH_PATH` is set by sysmgr or systemd for every instance; remove it"),
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
        (&format!("{BASE}cron_restart = \"0 3 1 * MON\"\n"), "app.toml:3:16: error: `cron_restart` `0 3 1 * MON`: both the day of the month (`1`) and the day of the week (`MON`) are restricted, and cron fires on either while systemd fires only on both; keep one of them as `*`, or write the schedule in systemd's calendar syntax"),
        (&format!("{BASE}cron_restart = \"0 24 * * *\"\n"), "app.toml:3:16: error: `cron_restart` `0 24 * * *`: the hour `24` is out of range; use 0 to 23"),
        (&format!("{BASE}cron_restart = \"0 3 * * FUNDAY\"\n"), "app.toml:3:16: error: `cron_restart` `0 3 * * FUNDAY`: the day of the week `FUNDAY` is not a number from 0 to 7 or one of SUN, MON, TUE, WED, THU, FRI, SAT"),
        (&format!("{BASE}cron_restart = \"@reboot\"\n"), "app.toml:3:16: error: `cron_restart` `@reboot` is not a schedule: the app starts at boot already when its target is enabled (`sysmgr start` enables it); remove `cron_restart`"),
        (&format!("{BASE}cron_restart = \"Mon..Fri 3am\"\n"), "app.toml:3:16: error: `cron_restart` `Mon..Fri 3am` is not systemd calendar syntax: `3am` is not a date like `2030-01-31`, a time like `03:00` or a timezone like `UTC`; write cron's 5 fields (6 with seconds first) like `\"0 3 * * *\"`, or systemd's calendar syntax like `\"*-*-* 03:00:00\"`"),
        (&format!("{BASE}cron_restart = 3\n"), "app.toml:3:16: error: `cron_restart` must be a string, found an integer"),
        (&format!("{BASE}cron = \"0 3 * * *\"\n"), "app.toml:3:1: error: `cron` is PM2's old name; write `cron_restart`"),
        (&format!("{BASE}max_memory_restart = \"300M\"\nmemory_limit_mode = \"soft\"\n"), "app.toml:4:21: error: `memory_limit_mode` is `soft`; use `\"graceful\"` (restart through the drain, the default) or `\"hard\"` (the kernel kills at the limit)"),
        (&format!("{BASE}memory_limit_mode = \"hard\"\n"), "app.toml:3:21: warning: `memory_limit_mode` has no effect without `max_memory_restart`; add the limit or remove this line"),
        (&format!("{BASE}max_memory_restart_check_interval = 1000\n"), "app.toml:3:1: error: `max_memory_restart_check_interval` is not supported: the graceful memory check runs every 5 s (`max_memory_restart`)"),
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

#[test]
fn a_health_check_is_a_path_a_table_or_a_command() {
    assert_eq!(ok(BASE).health_check, None);
    assert_eq!(
        ok(&format!("{BASE}health_check = \"/health\"\n")).health_check,
        Some(HealthCheck {
            probe: HealthProbe::Http("/health".into()),
            timeout: HealthCheck::DEFAULT_TIMEOUT,
        })
    );
    assert_eq!(
        ok(&format!(
            "{BASE}health_check = {{ path = \"/ready?deep=1&x=%20\", timeout = 750 }}\n"
        ))
        .health_check,
        Some(HealthCheck {
            probe: HealthProbe::Http("/ready?deep=1&x=%20".into()),
            timeout: Millis::new(750),
        })
    );
    assert_eq!(
        ok(&format!(
            "{BASE}health_check = {{ command = \"check --instance 'a b'\", timeout = \"1s\" }}\n"
        ))
        .health_check,
        Some(HealthCheck {
            probe: HealthProbe::Command(vec!["check".into(), "--instance".into(), "a b".into()]),
            timeout: Millis::new(1000),
        })
    );
}

const DEPLOY: &str = "[deploy.production]\nhosts = [\"deploy@10.0.0.5\", \"deploy@web2:2222\"]\nrepo = \"git@example.com:you/app.git\"\npath = \"/srv/web\"\n";

#[test]
fn deploy_errors_are_exact() {
    let cases: &[(&str, &str)] = &[
        ("deploy = 1\n", "app.toml:3:10: error: `deploy` must be a table of environments like `[deploy.production]`, found an integer"),
        ("[deploy]\nproduction = 1\n", "app.toml:4:14: error: `deploy.production` must be a table (`[deploy.production]` with `hosts`, `repo`, `path`), found an integer"),
        ("[deploy.\"pro duction\"]\nhosts = \"a@b\"\nrepo = \"r\"\npath = \"/srv\"\n", "app.toml:3:1: error: `deploy.pro duction` is not an environment name; use letters, digits, `-` and `_`, like `production`"),
        ("[deploy.production]\nrepo = \"r\"\npath = \"/srv\"\n", "app.toml:3:1: error: `deploy.production.hosts` is missing; add `hosts = [\"deploy@web1.example.com\"]`"),
        ("[deploy.production]\nhosts = []\nrepo = \"r\"\npath = \"/srv\"\n", "app.toml:4:9: error: `deploy.production.hosts` is empty; list at least one `user@host`"),
        ("[deploy.production]\nhosts = [\"web1\"]\nrepo = \"r\"\npath = \"/srv\"\n", "app.toml:4:10: error: `deploy.production.hosts` has `web1` without a user; write `user@host` or `user@host:port`, e.g. `deploy@10.0.0.5:22`"),
        ("[deploy.production]\nhosts = [\"a@web1:99999\"]\nrepo = \"r\"\npath = \"/srv\"\n", "app.toml:4:10: error: `deploy.production.hosts` has `a@web1:99999`, whose port `99999` is not a number from 1 to 65535"),
        ("[deploy.production]\nhosts = [\"a@web1\", \"a@web1\"]\nrepo = \"r\"\npath = \"/srv\"\n", "app.toml:4:20: error: `deploy.production.hosts` lists `a@web1` twice"),
        ("[deploy.production]\nhosts = [\"a@we b\"]\nrepo = \"r\"\npath = \"/srv\"\n", "app.toml:4:10: error: `deploy.production.hosts` has `a@we b`, whose host `we b` is not a host name or address (letters, digits, `-`, `.`)"),
        ("[deploy.production]\nhosts = \"a@b\"\npath = \"/srv\"\n", "app.toml:3:1: error: `deploy.production.repo` is missing; add `repo = \"git@github.com:you/app.git\"`"),
        ("[deploy.production]\nhosts = \"a@b\"\nrepo = \"r\"\npath = \"srv\"\n", "app.toml:6:8: error: `deploy.production.path` is `srv`; give an absolute path on the hosts without `..`, like `\"/srv/web\"`"),
        ("[deploy.production]\nhosts = \"a@b\"\nrepo = \"r\"\npath = \"/srv\"\nref = \"-x\"\n", "app.toml:7:7: error: `deploy.production.ref` is `-x`, which is not a branch, tag or commit name"),
        ("[deploy.production]\nhosts = \"a@b\"\nrepo = \"r\"\npath = \"/srv\"\nssh_options = [\"nonsense\"]\n", "app.toml:7:16: error: `deploy.production.ssh_options` has `nonsense`, which is not an ssh option; write `Key=Value`, like `StrictHostKeyChecking=accept-new`"),
        ("[deploy.production]\nhosts = \"a@b\"\nrepo = \"r\"\npath = \"/srv\"\nssh_options = \"BatchMode=no\"\n", "app.toml:7:15: error: `deploy.production.ssh_options` sets `BatchMode`, which sysmgr always sets to `yes` (a deploy never waits for a password); remove it"),
        ("[deploy.production]\nhosts = \"a@b\"\nrepo = \"r\"\npath = \"/srv\"\nserial = 0\n", "app.toml:7:10: error: `deploy.production.serial` is 0; use a number from 1 to 65535"),
        ("[deploy.production]\nhosts = \"a@b\"\nrepo = \"r\"\npath = \"/srv\"\nkeep = 1\n", "app.toml:7:8: error: `deploy.production.keep` is 1; use a number from 2 to 65535"),
        ("[deploy.production]\nhosts = \"a@b\"\nrepo = \"r\"\npath = \"/srv\"\napps = [\"../x.toml\"]\n", "app.toml:7:9: error: `deploy.production.apps` has `../x.toml`; give a path inside the repository, like `\"app.toml\"` or `\"deploy/web.toml\"`"),
        ("[deploy.production]\nhosts = \"a@b\"\nrepo = \"r\"\npath = \"/srv\"\nsysmgr = \"sysmgr\"\n", "app.toml:7:10: error: `deploy.production.sysmgr` is `sysmgr`; give sysmgr's absolute path on the hosts, like `\"/usr/bin/sysmgr\"` (a deploy does not depend on the remote shell's `PATH`)"),
        ("[deploy.production]\nhosts = \"a@b\"\nrepo = \"r\"\npath = \"/srv\"\nuser = \"deploy\"\n", "app.toml:7:1: error: `deploy.production.user` is not a deploy key; write the hosts as `hosts = [\"user@host:port\"]`"),
        ("[deploy.production]\nhosts = \"a@b\"\nrepo = \"r\"\npath = \"/srv\"\npost-setup = \"x\"\n", "app.toml:7:1: error: `deploy.production.post-setup` is not a deploy key; PM2's setup hooks have no equivalent: `sysmgr deploy ENV setup` only prepares the directories and the mirror, put the commands in `pre-deploy`"),
        ("[deploy.production]\nhosts = \"a@b\"\nrepo = \"r\"\npath = \"/srv\"\nbranch = \"x\"\n", "app.toml:7:1: error: `deploy.production.branch` is not a deploy key; the keys are hosts, repo, ref, path, ssh_options, pre-deploy-local, pre-deploy, post-deploy, test, serial, max_fail, keep, apps, sysmgr"),
        ("[deploy.production]\nhosts = \"a@b\"\nrepo = \"r\"\npath = \"/srv\"\npost-deploy = 3\n", "app.toml:7:15: error: `deploy.production.post-deploy` must be a string, found an integer"),
    ];
    for (text, want) in cases {
        assert_eq!(&messages(&format!("{BASE}{text}")), want, "for:\n{text}");
    }
}

#[test]
fn a_deploy_environment_resolves_with_its_defaults() {
    let spec = ok(&format!("{BASE}{DEPLOY}"));
    let d = &spec.deploy[0];
    assert_eq!(d.name, "production");
    let hosts: Vec<String> = d.hosts.iter().map(ToString::to_string).collect();
    assert_eq!(hosts, ["deploy@10.0.0.5", "deploy@web2:2222"]);
    assert_eq!(d.hosts[1].port, Some(2222));
    assert_eq!(d.git_ref, "main");
    assert_eq!(d.path, Path::new("/srv/web"));
    assert_eq!((d.serial.get(), d.max_fail, d.keep.get()), (1, 0, 5));
    assert_eq!(d.apps, ["app.toml"]);
    assert_eq!(d.sysmgr, Path::new("/usr/bin/sysmgr"));
    assert_eq!(d.hooks, deploy::Hooks::default());
    let full = ok(&format!("{BASE}{DEPLOY}ref = \"v2\"\nssh_options = \"StrictHostKeyChecking=accept-new\"\npre-deploy-local = \"make check\"\npre-deploy = \"df -h .\"\npost-deploy = \"npm ci\"\ntest = \"npm test\"\nserial = 2\nmax_fail = 1\nkeep = 3\napps = [\"web.toml\", \"worker.toml\"]\nsysmgr = \"/opt/sysmgr\"\n[deploy.local]\nhosts = [\"root@[::1]:22\"]\nrepo = \"/srv/git/app.git\"\npath = \"/srv/app/\"\n"));
    let d = &full.deploy[0];
    assert_eq!(d.ssh_options, ["StrictHostKeyChecking=accept-new"]);
    assert_eq!(d.hooks.test.as_deref(), Some("npm test"));
    assert_eq!((d.serial.get(), d.max_fail, d.keep.get()), (2, 1, 3));
    assert_eq!(d.apps, ["web.toml", "worker.toml"]);
    let local = &full.deploy[1];
    assert_eq!(local.hosts[0].host, "::1");
    assert_eq!(local.hosts[0].to_string(), "root@[::1]:22");
    assert_eq!(local.path, Path::new("/srv/app"));
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
