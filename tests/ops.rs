//! Operating like PM2, against a real systemd: `ls`, the documented JSON of `list` and
//! `status` (docs/commands.md), `start --no-enable` and how `start` says to undo enabling,
//! `describe`, `all` for `reload`, `restart`, `stop`, `scale` and `delete`, and that `status`
//! reports what systemd says.

use serde_json::Value;
use sysmgr_sandbox::Sandbox;

use crate::lifecycle::{hello_app, running};
use crate::support::{free_port, sandbox, sysmgr_in, write_in};

fn boot_link(sb: &Sandbox, app: &str) -> bool {
    sb.root()
        .join(format!(
            "etc/systemd/system/multi-user.target.wants/{app}.target"
        ))
        .symlink_metadata()
        .is_ok()
}

/// Asserts `value` has exactly `keys`, each of the JSON type its letter says: `s` string,
/// `u` unsigned integer, `b` boolean, `a` array, `S`/`U`/`O` string, unsigned, object or null.
pub(crate) fn assert_schema(what: &str, value: &Value, keys: &[(&str, char)]) {
    let object = value
        .as_object()
        .unwrap_or_else(|| panic!("{what}: {value}"));
    let mut have: Vec<&str> = object.keys().map(String::as_str).collect();
    let mut want: Vec<&str> = keys.iter().map(|(k, _)| *k).collect();
    have.sort_unstable();
    want.sort_unstable();
    assert_eq!(have, want, "{what}: the keys of {value:#}");
    for (key, kind) in keys {
        let v = &value[key];
        let ok = match kind {
            's' => v.is_string(),
            'u' => v.is_u64(),
            'b' => v.is_boolean(),
            'a' => v.is_array(),
            'S' => v.is_string() || v.is_null(),
            'U' => v.is_u64() || v.is_null(),
            'O' => v.is_object() || v.is_null(),
            _ => unreachable!(),
        };
        assert!(ok, "{what}: `{key}` is {v}, wanted kind `{kind}`");
    }
}

/// The schema of `list --json` (an array of these) and, with `status`, `status --json`
/// (one, with its timers).
fn assert_app_schema(app: &Value, status: bool) {
    let timers: &[(&str, char)] = if status {
        &[("cron_restart", 'O'), ("memory_limit", 'O')]
    } else {
        &[]
    };
    assert_schema(
        "app",
        app,
        &[
            timers,
            &[
                ("name", 's'),
                ("source", 'S'),
                ("state", 's'),
                ("target", 's'),
                ("sockets", 'a'),
                ("wanted", 'u'),
                ("instances", 'a'),
            ],
        ]
        .concat(),
    );
    for socket in app["sockets"].as_array().unwrap() {
        assert_schema("socket", socket, &[("unit", 's'), ("active_state", 's')]);
    }
    for i in app["instances"].as_array().unwrap() {
        assert_schema(
            "instance",
            i,
            &[
                ("instance", 'u'),
                ("unit", 's'),
                ("wanted", 'b'),
                ("active_state", 's'),
                ("sub_state", 's'),
                ("pid", 'U'),
                ("uptime_secs", 'U'),
                ("restarts", 'u'),
                ("memory_bytes", 'U'),
                ("cpu_nsec", 'U'),
                ("result", 's'),
            ],
        );
    }
}

#[test]
fn ls_json_schemas_no_enable_describe_and_all() {
    let sb = sandbox();
    let (pa, pb) = (free_port(), free_port());
    let a = write_in(&sb, "/srv/a/app.toml", &hello_app("a", 2, pa, ""));
    let b = write_in(&sb, "/srv/b/app.toml", &hello_app("b", 1, pb, ""));

    let r = sysmgr_in(&sb, &["start", &a, "--no-enable"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!r.stderr.contains("enabled"), "{}", r.stderr);
    assert!(
        !boot_link(&sb, "a"),
        "--no-enable leaves the target disabled"
    );
    let r = sysmgr_in(&sb, &["start", &b]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains(
            "start b: enabled `b.target`, so it starts at boot (undo: `systemctl disable b.target`; `sysmgr start --no-enable` skips this)\n"
        ),
        "{}",
        r.stderr
    );
    assert!(boot_link(&sb, "b"));

    // `ls` is `list`.
    let ls = sysmgr_in(&sb, &["ls", "--json"]);
    assert_eq!(ls.code, 0, "{}", ls.stderr);
    let list: Value = serde_json::from_str(&ls.stdout).unwrap();
    let apps = list.as_array().unwrap();
    assert_eq!(apps.len(), 2, "{list:#}");
    for app in apps {
        assert_app_schema(app, false);
    }
    assert_eq!(apps[0]["name"], "a");
    assert_eq!(apps[0]["wanted"], 2);
    let status: Value =
        serde_json::from_str(&sysmgr_in(&sb, &["status", "b", "--json"]).stdout).unwrap();
    assert_app_schema(&status, true);
    assert_eq!(status["source"], "/srv/b/app.toml");

    // describe: the app file, the unit files with their paths, the instances, the last reload.
    let r = sysmgr_in(&sb, &["describe", "a"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        r.stdout,
        "app          a\n\
         app file     /srv/a/app.toml\n\
         units        /etc/systemd/system (written by sysmgr start/generate)\n\
         unit files   /etc/systemd/system/a.socket\n\
         \x20            /etc/systemd/system/a.target\n\
         \x20            /etc/systemd/system/a@.service\n\
         instances    2 wanted, 2 running\n\
         health check none (`health_check` in the app file)\n\
         last reload  none recorded (`sysmgr history` reads sysmgr's entries in the journal)\n"
    );

    // `all`: every installed app in turn, each reported.
    let r = sysmgr_in(&sb, &["reload", "all"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("reload a: 2 of 2 instances ready"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("reload b: 1 of 1 instances ready"),
        "{}",
        r.stderr
    );
    let described: Value =
        serde_json::from_str(&sysmgr_in(&sb, &["describe", "a", "--json"]).stdout).unwrap();
    assert_eq!(described["source"], "/srv/a/app.toml");
    assert_eq!(described["wanted"], 2);
    assert_eq!(described["running"], 2);
    assert_eq!(described["from_generator"], false);
    assert_eq!(described["health_check"], Value::Null);
    assert_eq!(described["unit_files"].as_array().unwrap().len(), 3);
    assert_eq!(described["last_reload"]["action"], "reload");
    assert_eq!(described["last_reload"]["outcome"], "ok");

    let r = sysmgr_in(&sb, &["restart", "all"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = sysmgr_in(&sb, &["stop", "all"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        r.stderr,
        "stopped `a`: 2 instances stopped\nstopped `b`: 1 instance stopped\n"
    );
    assert!(running(&sb, "a").is_empty() && running(&sb, "b").is_empty());

    // The name `all` is reserved, so it can never mean one app.
    let r = sysmgr_in(&sb, &["status", "all"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert_eq!(
        r.stderr,
        "sysmgr: error: `all` is not a valid app name: it is reserved: `sysmgr stop all` (and restart, reload, scale, delete) means every app; choose another name\n"
    );

    let r = sysmgr_in(&sb, &["delete", "all"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stderr.lines().count(), 2, "{}", r.stderr);
    let r = sysmgr_in(&sb, &["stop", "all"]);
    assert_eq!(
        (r.code, r.stderr.as_str()),
        (0, "stop all: no apps are installed\n")
    );
}

/// `systemctl show UNIT -p PROPS` inside the sandbox, as a map.
fn shown(sb: &Sandbox, unit: &str, props: &str) -> std::collections::HashMap<String, String> {
    sb.systemctl(&["show", unit, "-p", props])
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// `status --json` reads the manager's unit list and single properties, and takes an app's
/// sockets from its unit files; what it reports must be what systemd itself says, for
/// per-instance sockets with a second named group, an instance running beyond the wanted
/// count, and an app whose units systemd has not even loaded.
#[test]
fn status_reports_what_systemd_says_of_every_unit() {
    let sb = sandbox();
    let hello = crate::support::workspace_bin("sysmgr-hello");
    let (p1, p2, p3) = (free_port(), free_port(), free_port());
    let web = write_in(
        &sb,
        "/srv/web/app.toml",
        &format!(
            "name = \"web\"\ncommand = [\"{}\"]\ninstances = 2\nsocket = \"per-instance\"\n\
             listen = [\"127.0.0.1:{p1}\", {{ address = \"127.0.0.1:{p2}\", name = \"admin\" }}]\n\
             kill_timeout = 3000\n",
            hello.display()
        ),
    );
    let idle = write_in(&sb, "/srv/idle/app.toml", &hello_app("idle", 2, p3, ""));
    let r = sysmgr_in(&sb, &["start", &web]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = sysmgr_in(&sb, &["generate", &idle]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    // Instance 3 runs beyond the wanted count.
    sb.systemctl(&["start", "web@3.service"]).unwrap();

    let r = sysmgr_in(&sb, &["status", "web", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let status: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_app_schema(&status, true);
    let instances = status["instances"].as_array().unwrap();
    let numbers: Vec<u64> = instances
        .iter()
        .map(|i| i["instance"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, [1, 2, 3]);
    let mut triggered = std::collections::BTreeSet::new();
    for i in instances {
        let unit = i["unit"].as_str().unwrap();
        let sd = shown(
            &sb,
            unit,
            "ActiveState,SubState,MainPID,NRestarts,Result,TriggeredBy",
        );
        assert_eq!(i["active_state"], sd["ActiveState"], "{unit}");
        assert_eq!(i["sub_state"], sd["SubState"], "{unit}");
        assert_eq!(
            i["pid"].as_u64().unwrap().to_string(),
            sd["MainPID"],
            "{unit}"
        );
        assert_eq!(
            i["restarts"].as_u64().unwrap().to_string(),
            sd["NRestarts"],
            "{unit}"
        );
        assert_eq!(i["result"], sd["Result"], "{unit}");
        assert!(i["uptime_secs"].is_u64(), "{i}");
        triggered.extend(sd["TriggeredBy"].split_whitespace().map(str::to_string));
    }
    assert_eq!(
        instances
            .iter()
            .map(|i| i["wanted"].as_bool().unwrap())
            .collect::<Vec<_>>(),
        [true, true, false]
    );
    let sockets: Vec<&str> = status["sockets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            assert_eq!(s["active_state"], "active", "{s}");
            s["unit"].as_str().unwrap()
        })
        .collect();
    assert_eq!(
        sockets,
        [
            "web-admin@1.socket",
            "web-admin@2.socket",
            "web-admin@3.socket",
            "web@1.socket",
            "web@2.socket",
            "web@3.socket"
        ]
    );
    assert_eq!(
        sockets,
        triggered.iter().map(String::as_str).collect::<Vec<_>>()
    );

    // Generated, never started: systemd has loaded none of its units.
    let loaded = sb
        .systemctl(&["list-units", "--all", "--plain", "--no-legend", "idle*"])
        .unwrap();
    assert_eq!(loaded.trim(), "", "{loaded}");
    let r = sysmgr_in(&sb, &["status", "idle"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        r.stdout,
        "idle: inactive, 2 instances wanted, from /srv/idle/app.toml\n\
         APP   INSTANCE  STATE          PID  UPTIME  RESTARTS  MEMORY  CPU\n\
         idle  1         inactive/dead  -    -       0         -       -\n\
         idle  2         inactive/dead  -    -       0         -       -\n"
    );
    let status: Value =
        serde_json::from_str(&sysmgr_in(&sb, &["status", "idle", "--json"]).stdout).unwrap();
    assert_eq!(status["sockets"][0]["unit"], "idle.socket");
    assert_eq!(status["sockets"][0]["active_state"], "inactive");
    assert_eq!(status["sockets"].as_array().unwrap().len(), 1);
}

/// `scale all`: every installed app in turn, each from its own count, each reported.
#[test]
fn scale_all_scales_each_app_from_its_own_count() {
    let sb = sandbox();
    let a = write_in(&sb, "/srv/a/app.toml", &hello_app("a", 2, free_port(), ""));
    let b = write_in(&sb, "/srv/b/app.toml", &hello_app("b", 1, free_port(), ""));
    for file in [&a, &b] {
        let r = sysmgr_in(&sb, &["start", file]);
        assert_eq!(r.code, 0, "{}", r.stderr);
    }

    let r = sysmgr_in(&sb, &["scale", "all", "+1"]);
    assert_eq!(
        (r.code, r.stderr.as_str()),
        (
            0,
            "scaled `a` from 2 to 3: started 1, stopped 0\n\
             scaled `b` from 1 to 2: started 1, stopped 0\n"
        )
    );
    assert_eq!(running(&sb, "a"), [1, 2, 3]);
    assert_eq!(running(&sb, "b"), [1, 2]);

    let r = sysmgr_in(&sb, &["scale", "all", "1"]);
    assert_eq!(
        (r.code, r.stderr.as_str()),
        (
            0,
            "scaled `a` from 3 to 1: started 0, stopped 2\n\
             scaled `b` from 2 to 1: started 0, stopped 1\n"
        )
    );
    assert_eq!(running(&sb, "a"), [1]);
    assert_eq!(running(&sb, "b"), [1]);

    // One app that cannot be scaled does not stop the others; the command fails at the end.
    let r = sysmgr_in(&sb, &["stop", "b"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = sysmgr_in(&sb, &["scale", "all", "-1"]);
    assert_eq!(
        (r.code, r.stderr.as_str()),
        (
            1,
            "sysmgr: error: scale `a` failed\n\
             \x20 caused by: cannot scale `a` to 0 instances (it has 1); at least 1 must run; use `sysmgr stop a` to stop it\n\
             sysmgr: error: scale `b` failed\n\
             \x20 caused by: cannot scale `b` to 0 instances (it has 1); at least 1 must run; use `sysmgr stop b` to stop it\n\
             sysmgr: error: scale all: 2 of 2 apps failed: `a`, `b`; the others were done\n"
        )
    );
    let r = sysmgr_in(&sb, &["scale", "all", "2"]);
    assert_eq!(
        (r.code, r.stderr.as_str()),
        (
            0,
            "scaled `a` from 1 to 2: started 1, stopped 0\n\
             scale b: 2 instances from now on; `b` is stopped, `sysmgr start b` starts them\n"
        )
    );
    assert_eq!(running(&sb, "a"), [1, 2]);
    assert!(running(&sb, "b").is_empty());
}
