//! The renderer: golden files compared byte for byte, selected keys of many variants, and
//! `systemd-analyze verify` over every variant.
//!
//! Golden files live in `tests/golden/NAME/`; after an intended change, re-bless them with
//! `SYSMGR_BLESS=1 cargo test --test integration render` and review the diff.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::process::Command;

use sysmgr::config::{self, AppSpec, ParseOptions};
use sysmgr::render::{self, Flavor, Rendered};
use sysmgr::systemd::Manager;

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn spec_of(text: &str, file: &str, profile: Option<&str>) -> AppSpec {
    let opts = ParseOptions {
        profile: profile.map(str::to_string),
        user_manager: false,
        ..ParseOptions::default()
    };
    let source = Path::new("/etc/sysmgr").join(file);
    match config::parse(text, file, &source, &opts) {
        Ok(p) => p.spec,
        Err(d) => panic!("{file} is invalid:\n{d}"),
    }
}

/// `spec_of`, with units that start through the `sysmgr` binary under test (which
/// `systemd-analyze verify` checks is executable), not the packaged `/usr/bin/sysmgr`.
fn spec_with_this_sysmgr(text: &str, file: &str) -> AppSpec {
    let mut spec = spec_of(text, file, None);
    spec.runtime = config::Runtime::of(
        &spec.command,
        &config::BridgePaths {
            sysmgr: crate::support::sysmgr_bin(),
            ..config::BridgePaths::default()
        },
    );
    spec
}

fn render_n(spec: &AppSpec, n: u32, flavor: Flavor) -> Rendered {
    render::render(spec, NonZeroU32::new(n).unwrap(), Manager::System, flavor).unwrap()
}

/// Compares the rendered files with `tests/golden/<case>/`, or rewrites them when blessing.
fn check_golden(case: &str, rendered: &Rendered) {
    let dir = golden_dir().join(case);
    let mut actual: BTreeMap<String, String> = rendered
        .files
        .iter()
        .map(|f| (f.name.clone(), f.contents.clone()))
        .collect();
    let links: String = rendered
        .links
        .iter()
        .map(|l| format!("{} -> {}\n", l.path, l.target))
        .collect();
    actual.insert("links".into(), links);
    if std::env::var_os("SYSMGR_BLESS").is_some() {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for (name, contents) in &actual {
            std::fs::write(dir.join(name), contents).unwrap();
        }
        return;
    }
    let mut expected = BTreeMap::new();
    for entry in std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}; bless with SYSMGR_BLESS=1", dir.display()))
    {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        expected.insert(name, std::fs::read_to_string(entry.path()).unwrap());
    }
    assert_eq!(
        expected.keys().collect::<Vec<_>>(),
        actual.keys().collect::<Vec<_>>(),
        "golden case `{case}`: different files; re-bless with SYSMGR_BLESS=1 if intended"
    );
    for (name, want) in &expected {
        assert_eq!(
            &actual[name], want,
            "golden case `{case}`, file `{name}` differs; re-bless with SYSMGR_BLESS=1 if intended"
        );
    }
}

#[test]
fn golden_hello() {
    let text = std::fs::read_to_string(golden_dir().join("hello.toml")).unwrap();
    let spec = spec_of(&text, "hello.toml", None);
    check_golden("hello", &render_n(&spec, 4, Flavor::Generate));
}

#[test]
fn golden_api_production() {
    let text = std::fs::read_to_string(golden_dir().join("api.toml")).unwrap();
    let spec = spec_of(&text, "api.toml", Some("production"));
    check_golden("api-production", &render_n(&spec, 2, Flavor::Generate));
}

/// `hardening = "off"` gives the units sysmgr made before it hardened them, byte for byte:
/// `hello-off/` is a copy of `hello/` from before the profile, and is never re-blessed.
#[test]
fn golden_hello_with_hardening_off_is_the_unhardened_units() {
    let text = std::fs::read_to_string(golden_dir().join("hello.toml")).unwrap();
    let spec = spec_of(&format!("hardening = \"off\"\n{text}"), "hello.toml", None);
    if std::env::var_os("SYSMGR_BLESS").is_some() {
        return;
    }
    check_golden("hello-off", &render_n(&spec, 4, Flavor::Generate));
}

#[test]
fn golden_hello_as_generator() {
    let text = std::fs::read_to_string(golden_dir().join("hello.toml")).unwrap();
    let spec = spec_of(&text, "hello.toml", None);
    check_golden("hello-generator", &render_n(&spec, 2, Flavor::Generator));
}

/// `(section, key) -> values` of one unit file, in order.
fn keys(contents: &str) -> BTreeMap<(String, String), Vec<String>> {
    let mut out: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    let mut section = String::new();
    for line in contents.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = s.to_string();
            continue;
        }
        let (k, v) = line.split_once('=').expect("key=value");
        out.entry((section.clone(), k.to_string()))
            .or_default()
            .push(v.to_string());
    }
    out
}

/// Asserts `key` in `[section]` of `file` has exactly `values` (none: absent).
#[track_caller]
fn assert_key(r: &Rendered, file: &str, section: &str, key: &str, values: &[&str]) {
    let f = r.files.iter().find(|f| f.name == file).unwrap_or_else(|| {
        panic!(
            "no `{file}` among {:?}",
            r.files.iter().map(|f| &f.name).collect::<Vec<_>>()
        )
    });
    let got = keys(&f.contents)
        .remove(&(section.to_string(), key.to_string()))
        .unwrap_or_default();
    assert_eq!(got, values, "`{file}` [{section}] {key}");
}

const BASE: &str = "name = \"web\"\ncommand = [\"/bin/app\"]\nlisten = [\"127.0.0.1:3000\"]\n";

/// BASE with `extra` keys; an extra `listen` replaces BASE's (TOML forbids duplicate keys).
fn app_text(extra: &str) -> String {
    let base = if extra.contains("listen =") {
        BASE.replace("listen = [\"127.0.0.1:3000\"]\n", "")
    } else {
        BASE.to_string()
    };
    format!("{base}{extra}")
}

fn rendered(extra: &str) -> Rendered {
    let spec = spec_of(&app_text(extra), "web.toml", None);
    render_n(&spec, 3, Flavor::Generate)
}

#[test]
fn shared_socket_mode_is_the_default_and_points_at_instance_one() {
    let r = rendered("");
    let names: Vec<&str> = r.files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["web@.service", "web.socket", "web.target"]);
    assert_key(
        &r,
        "web.socket",
        "Socket",
        "ListenStream",
        &["127.0.0.1:3000"],
    );
    assert_key(&r, "web.socket", "Socket", "Service", &["web@1.service"]);
    assert_key(&r, "web.socket", "Socket", "ReusePort", &[]);
    assert_key(&r, "web.socket", "Unit", "PartOf", &["web.target"]);
    assert_key(&r, "web@.service", "Unit", "Requires", &["web.socket"]);
    assert_key(&r, "web@.service", "Unit", "After", &["web.socket"]);
    assert_key(&r, "web@.service", "Service", "Sockets", &["web.socket"]);
    assert_key(&r, "web@.service", "Service", "NonBlocking", &["yes"]);
}

#[test]
fn per_instance_sockets_reuse_the_port() {
    let r = rendered("socket = \"per-instance\"\n");
    assert_key(&r, "web@.socket", "Socket", "ReusePort", &["yes"]);
    assert_key(&r, "web@.socket", "Socket", "Service", &[]);
    assert_key(&r, "web@.service", "Unit", "Requires", &["web@%i.socket"]);
    assert_key(&r, "web@.service", "Service", "Sockets", &["web@%i.socket"]);
}

#[test]
fn named_sockets_get_their_own_units_and_fd_names() {
    let r = rendered(
        "listen = [\"127.0.0.1:3000\", \"[::1]:3000\", { address = \"127.0.0.1:9000\", name = \"admin\" }]\n",
    );
    assert_key(
        &r,
        "web.socket",
        "Socket",
        "ListenStream",
        &["127.0.0.1:3000", "[::1]:3000"],
    );
    assert_key(&r, "web.socket", "Socket", "FileDescriptorName", &["http"]);
    assert_key(
        &r,
        "web-admin.socket",
        "Socket",
        "ListenStream",
        &["127.0.0.1:9000"],
    );
    assert_key(
        &r,
        "web-admin.socket",
        "Socket",
        "FileDescriptorName",
        &["admin"],
    );
    assert_key(
        &r,
        "web@.service",
        "Service",
        "Sockets",
        &["web.socket web-admin.socket"],
    );
}

/// What a health check of either kind adds: `unit` (its socket or its oneshot) between the
/// app's socket and its target, and the instances' `SYSMGR_HEALTH_*` variables (`health_env`)
/// first among their `Environment=` lines, before sysmgr's own, the app's (`app_env`) and the
/// crash-loop brake's. Without the key, none of it.
fn assert_health_check_adds(r: &Rendered, unit: &str, health_env: &str, app_env: &[&str]) {
    let names: Vec<&str> = r.files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["web@.service", "web.socket", unit, "web.target"]);
    let mut env = vec![
        health_env,
        "\"SYSMGR_APP=web\" \"SYSMGR_INSTANCE=%i\" \"SYSMGR_INSTANCE_VAR=NODE_APP_INSTANCE\" \"NODE_APP_INSTANCE=%i\"",
        "\"SYSMGR_KILL_SIGNAL=SIGINT\" \"SYSMGR_KILL_TIMEOUT_MS=1600\"",
    ];
    env.extend(app_env);
    env.push("\"SYSMGR_MAX_RESTARTS=16\" \"SYSMGR_RESTARTS_DIR=%t/sysmgr-restarts/%n\"");
    assert_key(r, "web@.service", "Service", "Environment", &env);
    let without = rendered("");
    for f in &without.files {
        for mark in ["sysmgr-health", "sysmgr-check", "SYSMGR_HEALTH"] {
            assert!(!f.contents.contains(mark), "{}: {mark}", f.name);
        }
    }
}

#[test]
fn a_health_check_gives_each_instance_a_socket_of_its_own() {
    let r = rendered("health_check = { path = \"/health?q=100%25\", timeout = \"2s\" }\n");
    // `%` of the path escaped; the socket's `%t` and `%i` left for systemd to expand.
    assert_health_check_adds(
        &r,
        "web-sysmgr-health@.socket",
        "\"SYSMGR_HEALTH_PATH=/health?q=100%%25\" \"SYSMGR_HEALTH_TIMEOUT_MS=2000\" \"SYSMGR_HEALTH_SOCKET=%t/sysmgr/web/health-%i.sock\"",
        &[],
    );
    let socket = "web-sysmgr-health@.socket";
    assert_key(
        &r,
        socket,
        "Socket",
        "ListenStream",
        &["%t/sysmgr/web/health-%i.sock"],
    );
    assert_key(&r, socket, "Socket", "SocketMode", &["0600"]);
    assert_key(&r, socket, "Socket", "RemoveOnStop", &["yes"]);
    assert_key(
        &r,
        socket,
        "Socket",
        "FileDescriptorName",
        &["sysmgr-health"],
    );
    assert_key(&r, socket, "Socket", "Service", &["web@%i.service"]);
    assert_key(&r, socket, "Unit", "PartOf", &["web@%i.service"]);
    assert_key(
        &r,
        "web@.service",
        "Service",
        "Sockets",
        &["web.socket", "web-sysmgr-health@%i.socket"],
    );
}

#[test]
fn a_health_check_command_is_a_oneshot_with_the_apps_user_and_environment() {
    let r = rendered(
        "health_check = { command = [\"/usr/bin/check\", \"100%\", \"$HOME\"], timeout = \"3s\" }\nuser = \"www\"\n[env]\nDB = \"x\"\n",
    );
    assert_health_check_adds(
        &r,
        "web-sysmgr-check@.service",
        "\"SYSMGR_HEALTH_UNIT=web-sysmgr-check@%i.service\" \"SYSMGR_HEALTH_TIMEOUT_MS=3000\"",
        &["\"DB=x\""],
    );
    let check = "web-sysmgr-check@.service";
    assert_key(&r, check, "Unit", "StartLimitIntervalSec", &["0"]);
    assert_key(&r, check, "Service", "Type", &["oneshot"]);
    assert_key(
        &r,
        check,
        "Service",
        "ExecStart",
        &["\"/usr/bin/sysmgr\" \"exec\" \"/usr/bin/check\" \"100%%\" \"$$HOME\""],
    );
    assert_key(&r, check, "Service", "TimeoutStartSec", &["3s"]);
    assert_key(&r, check, "Service", "User", &["www"]);
    assert_key(&r, check, "Service", "WorkingDirectory", &["/etc/sysmgr"]);
    assert_key(
        &r,
        check,
        "Service",
        "Environment",
        &[
            "\"SYSMGR_APP=web\" \"SYSMGR_INSTANCE=%i\" \"SYSMGR_UNIT=web@%i.service\"",
            "\"DB=x\"",
        ],
    );
    assert_key(&r, check, "Service", "ProtectSystem", &["strict"]);
    assert_key(&r, "web@.service", "Service", "Sockets", &["web.socket"]);
}

#[test]
fn instances_are_wants_links_of_the_target() {
    let r = rendered("");
    let links: Vec<(&str, &str)> = r
        .links
        .iter()
        .map(|l| (l.path.as_str(), l.target.as_str()))
        .collect();
    assert_eq!(
        links,
        [
            ("web.target.wants/web@1.service", "../web@.service"),
            ("web.target.wants/web@2.service", "../web@.service"),
            ("web.target.wants/web@3.service", "../web@.service"),
        ]
    );
    assert_key(
        &r,
        "web.target",
        "Install",
        "WantedBy",
        &["multi-user.target"],
    );
}

#[test]
fn pm2_settings_map_to_service_keys() {
    let r = rendered(
        "kill_timeout = 3000\nlisten_timeout = \"1min\"\nkill_signal = \"SIGTERM\"\nmax_restarts = 4\n\
         restart_delay = \"2s\"\nmax_memory_restart = \"1G\"\nstop_exit_codes = [2]\nwatchdog = 1500\n\
         user = \"app\"\ngroup = \"1000\"\n",
    );
    let s = "web@.service";
    assert_key(&r, s, "Service", "TimeoutStopSec", &["3s"]);
    assert_key(&r, s, "Service", "TimeoutStartSec", &["1min"]);
    assert_key(&r, s, "Service", "KillSignal", &["SIGTERM"]);
    // The brake is sysmgr exec's: no instance may hit a start limit of systemd's, which would
    // fail the socket every instance shares.
    assert_key(&r, s, "Unit", "StartLimitBurst", &[]);
    assert_key(&r, s, "Unit", "StartLimitIntervalSec", &["0"]);
    assert_key(
        &r,
        s,
        "Service",
        "RuntimeDirectory",
        &["sysmgr-restarts/%n"],
    );
    assert_key(&r, s, "Service", "RuntimeDirectoryPreserve", &["restart"]);
    assert_key(&r, s, "Service", "Restart", &["always"]);
    assert_key(&r, s, "Service", "RestartSec", &["2s"]);
    // Graceful by default: the kernel's backstop at 150% of the limit, and the check's units.
    assert_key(&r, s, "Service", "MemoryMax", &["1610612736"]);
    assert_key(&r, s, "Service", "RestartPreventExitStatus", &["250", "2"]);
    assert_key(&r, s, "Service", "WatchdogSec", &["1500ms"]);
    assert_key(&r, s, "Service", "User", &["app"]);
    assert_key(&r, s, "Service", "Group", &["1000"]);
    assert_key(&r, s, "Service", "Type", &["notify"]);
    assert_key(
        &r,
        s,
        "Service",
        "Environment",
        &[
            "\"SYSMGR_APP=web\" \"SYSMGR_INSTANCE=%i\" \"SYSMGR_INSTANCE_VAR=NODE_APP_INSTANCE\" \"NODE_APP_INSTANCE=%i\"",
            "\"SYSMGR_KILL_SIGNAL=SIGTERM\" \"SYSMGR_KILL_TIMEOUT_MS=3000\"",
            "\"SYSMGR_MAX_RESTARTS=4\" \"SYSMGR_RESTARTS_DIR=%t/sysmgr-restarts/%n\"",
        ],
    );
}

#[test]
fn wait_ready_false_is_type_simple_or_exec_and_autorestart_false_is_restart_no() {
    // `Type=exec` needs systemd 240; the default target is 239.
    let r = rendered("wait_ready = false\nautorestart = false\n");
    assert_key(&r, "web@.service", "Service", "Type", &["simple"]);
    // Nothing restarts, so there is no crash-loop brake either.
    assert_key(&r, "web@.service", "Service", "RuntimeDirectory", &[]);
    assert_key(
        &r,
        "web@.service",
        "Service",
        "RestartPreventExitStatus",
        &[],
    );
    assert_key(&r, "web@.service", "Unit", "StartLimitIntervalSec", &["0"]);
    let r = rendered("wait_ready = false\nsystemd_version = 240\n");
    assert_key(&r, "web@.service", "Service", "Type", &["exec"]);
    let r = rendered("wait_ready = false\nautorestart = false\n");
    assert_key(&r, "web@.service", "Service", "NotifyAccess", &[]);
    assert_key(&r, "web@.service", "Service", "Restart", &["no"]);
}

#[test]
fn no_listen_means_no_socket_units() {
    let spec = spec_of(
        "name = \"cron\"\ncommand = [\"/bin/app\"]\n",
        "cron.toml",
        None,
    );
    let r = render_n(&spec, 1, Flavor::Generate);
    let names: Vec<&str> = r.files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["cron@.service", "cron.target"]);
    assert_key(&r, "cron@.service", "Service", "Sockets", &[]);
    assert_key(&r, "cron@.service", "Unit", "Requires", &[]);
}

#[test]
fn every_file_starts_with_the_header() {
    let r = rendered("");
    for f in &r.files {
        assert!(
            f.contents.starts_with(
                "# Generated by sysmgr 0.1.0 from /etc/sysmgr/web.toml.\n\
                 # Edit that file and run `sysmgr generate` again; changes made here are overwritten.\n\
                 # sysmgr-app: web\n"
            ),
            "{}:\n{}",
            f.name,
            f.contents
        );
    }
}

#[test]
fn the_generator_hooks_the_target_into_the_default_target() {
    let spec = spec_of(BASE, "web.toml", None);
    let r = render_n(&spec, 1, Flavor::Generator);
    assert!(r
        .links
        .iter()
        .any(|l| l.path == "multi-user.target.wants/web.target" && l.target == "../web.target"));
}

/// Runs `systemd-analyze verify` on every unit of `r` written into a fresh directory; returns
/// what it printed.
fn verify(r: &Rendered) -> String {
    let dir = tempfile::tempdir().unwrap();
    for f in &r.files {
        std::fs::write(dir.path().join(&f.name), &f.contents).unwrap();
    }
    let mut units: Vec<String> = Vec::new();
    for f in &r.files {
        // A template is verified through an instance of it.
        units.push(format!("./{}", f.name.replace("@.", "@1.")));
    }
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args(&units)
        .current_dir(dir.path())
        .output()
        .expect("systemd-analyze runs (apt-get install -y systemd)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() || !text.is_empty(),
        "verify failed silently"
    );
    text
}

#[test]
fn systemd_analyze_verify_accepts_every_variant_without_warnings() {
    let variants = [
        "",
        "socket = \"per-instance\"\n",
        "wait_ready = false\nautorestart = false\n",
        "wait_ready = false\nsystemd_version = 239\n",
        "kill_timeout = 3000\nlisten_timeout = \"1min\"\nkill_signal = \"SIGTERM\"\nmax_restarts = 4\nrestart_delay = \"2s\"\nmax_memory_restart = \"1G\"\nstop_exit_codes = [2]\nwatchdog = 1500\nuser = \"root\"\ngroup = \"root\"\n",
        "description = \"50% of \\\"it\\\"\"\n[env]\nA = \"x y $z 100% \\\\ ;\"\nB = \"l1\\nl2\"\nC = \"é ☃\"\n",
        "cwd = \"/tmp\"\nlisten = [\"/run/web/http.sock\", { address = \"[::1]:9000\", name = \"admin\" }]\n",
        "health_check = { path = \"/health?q=100%25\", timeout = \"2s\" }\nsocket = \"per-instance\"\n",
        "health_check = { command = [\"/bin/true\", \"100%\", \"$HOME\"], timeout = \"3s\" }\nuser = \"root\"\n",
    ];
    for extra in variants {
        let text = app_text(extra).replace("/bin/app", "/bin/true");
        let spec = spec_with_this_sysmgr(&text, "web.toml");
        let r = render_n(&spec, 2, Flavor::Generate);
        assert_eq!(
            verify(&r),
            "",
            "systemd-analyze verify complained about:\n{text}"
        );
    }
}

/// systemd reads sysmgr's own path the way sysmgr wrote it, whatever it holds: a space, `%`,
/// and `$` (written in the `@` form, whose path systemd never expands), in the instances'
/// and the timers' services. `verify` refuses a unit whose program is not executable.
#[test]
fn systemd_analyze_verify_finds_sysmgr_under_a_path_with_dollar_percent_and_space() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("a$b ${HOME} 100%").join("sysmgr");
    std::fs::create_dir_all(bin.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(crate::support::sysmgr_bin(), &bin).unwrap();
    let text = app_text("cron_restart = \"@daily\"\nmax_memory_restart = \"1G\"\n")
        .replace("/bin/app", "/bin/true");
    let mut spec = spec_of(&text, "web.toml", None);
    spec.runtime = config::Runtime::of(
        &spec.command,
        &config::BridgePaths {
            sysmgr: bin.clone(),
            ..config::BridgePaths::default()
        },
    );
    let r = render_n(&spec, 1, Flavor::Generate);
    let execs: Vec<&str> = r
        .files
        .iter()
        .flat_map(|f| f.contents.lines())
        .filter(|l| l.starts_with("ExecStart="))
        .collect();
    assert_eq!(execs.len(), 3, "{execs:?}");
    assert!(
        execs.iter().all(|l| l.starts_with("ExecStart=@")),
        "{execs:?}"
    );
    assert_eq!(verify(&r), "", "systemd-analyze verify complained");
    // The check can fail: without the binary there, the same units are refused.
    std::fs::remove_file(&bin).unwrap();
    assert!(verify(&r).contains("is not executable"), "{}", verify(&r));
}

#[test]
fn systemd_analyze_verify_does_complain_about_a_bad_unit() {
    // The check above can fail: a unit with an unknown key is reported.
    let spec = spec_with_this_sysmgr(&BASE.replace("/bin/app", "/bin/true"), "web.toml");
    let mut r = render_n(&spec, 1, Flavor::Generate);
    r.files[0].contents.push_str("Bogus=1\n");
    assert!(verify(&r).contains("Unknown key 'Bogus'"));
}

#[test]
fn cron_restart_and_the_graceful_memory_limit_are_timers_the_target_wants() {
    let r = rendered("cron_restart = \"*/10 * * * * *\"\nmax_memory_restart = \"200M\"\n");
    let names: Vec<&str> = r.files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "web@.service",
            "web.socket",
            "web-cron.timer",
            "web-cron.service",
            "web-memory.timer",
            "web-memory.service",
            "web.target"
        ]
    );
    assert_key(
        &r,
        "web.target",
        "Unit",
        "Wants",
        &["web-cron.timer web-memory.timer"],
    );
    assert_key(
        &r,
        "web-cron.timer",
        "Timer",
        "OnCalendar",
        &["*-*-* *:*:00/10"],
    );
    assert_key(&r, "web-cron.timer", "Timer", "AccuracySec", &["1s"]);
    assert_key(&r, "web-cron.timer", "Timer", "Unit", &["web-cron.service"]);
    assert_key(&r, "web-cron.timer", "Unit", "PartOf", &["web.target"]);
    assert_key(&r, "web-cron.service", "Service", "Type", &["oneshot"]);
    assert_key(&r, "web-cron.service", "Unit", "Requisite", &["web.target"]);
    let exec = |file: &str| {
        let f = r.files.iter().find(|f| f.name == file).unwrap();
        keys(&f.contents)
            .remove(&("Service".to_string(), "ExecStart".to_string()))
            .unwrap()
            .join(" ")
    };
    assert!(
        exec("web-cron.service").ends_with(" \"reload\" \"web\""),
        "{}",
        exec("web-cron.service")
    );
    assert!(
        exec("web-memory.service").ends_with(" \"memory-check\" \"web\" \"--limit\" \"209715200\""),
        "{}",
        exec("web-memory.service")
    );
    assert_key(&r, "web-memory.timer", "Timer", "OnUnitActiveSec", &["5s"]);
    assert_key(&r, "web@.service", "Service", "MemoryMax", &["314572800"]);

    // The user manager's units run `sysmgr --user ...`.
    let spec = spec_of(&app_text("cron_restart = \"@daily\"\n"), "web.toml", None);
    let user = sysmgr::render::render(
        &spec,
        std::num::NonZeroU32::MIN,
        sysmgr::systemd::Manager::User,
        Flavor::Generate,
    )
    .unwrap();
    let cron = user
        .files
        .iter()
        .find(|f| f.name == "web-cron.service")
        .unwrap();
    assert!(
        cron.contents.contains(" \"--user\" \"reload\" \"web\"\n"),
        "{}",
        cron.contents
    );

    // `hard`: the kernel's limit at the value itself, no check.
    let r = rendered("max_memory_restart = \"200M\"\nmemory_limit_mode = \"hard\"\n");
    let names: Vec<&str> = r.files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["web@.service", "web.socket", "web.target"]);
    assert_key(&r, "web@.service", "Service", "MemoryMax", &["209715200"]);
    assert_key(&r, "web.target", "Unit", "Wants", &[]);
}
