//! `sysmgr reload` by surge (issue 15), against a real systemd: each instance's new process
//! starts beside the old one, which drains in the background once the new one is ready.
//! Under clients looping on 1.5 s requests the app keeps at least N processes accepting,
//! loses nothing, ends within N x (start + min-ready) + one drain + 10%, and its workers keep
//! their instance numbers; every command knows the slots afterwards. A broken version halts
//! with the old process of slot 1 still serving, a reload killed at any point is settled by
//! the next command, per-instance sockets reload in place, and the generator's apps keep
//! their generations across `daemon-reload`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sysmgr_load::{Background, LoadConfig, Mode, Report};

use crate::lifecycle::{hello_app, http_get, running, start_web};
use crate::support::{free_port, sandbox, sysmgr_in, wait_for, workspace_bin, write_in};

/// `UNIT -> ACTIVE/SUB` for every loaded unit of `app` (`systemctl list-units --all`).
fn units_of(sb: &sysmgr_sandbox::Sandbox, app: &str) -> BTreeMap<String, String> {
    let out = sb
        .systemctl(&[
            "list-units",
            "--all",
            "--plain",
            "--no-legend",
            &format!("{app}@*.service"),
        ])
        .unwrap();
    out.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 4).then(|| (f[0].to_string(), format!("{}/{}", f[2], f[3])))
        })
        .collect()
}

/// The units of `app` that are active/running, sorted.
fn running_units(sb: &sysmgr_sandbox::Sandbox, app: &str) -> Vec<String> {
    units_of(sb, app)
        .into_iter()
        .filter(|(_, state)| state == "active/running")
        .map(|(unit, _)| unit)
        .collect()
}

/// The wants links of `app` in `dir` (relative to the sandbox's root), sorted.
fn wants_in(sb: &sysmgr_sandbox::Sandbox, dir: &str, app: &str) -> Vec<String> {
    let mut links: Vec<String> =
        std::fs::read_dir(sb.root().join(dir).join(format!("{app}.target.wants")))
            .map(|d| {
                d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
    links.sort();
    links
}

fn wants(sb: &sysmgr_sandbox::Sandbox, app: &str) -> Vec<String> {
    wants_in(sb, "etc/systemd/system", app)
}

/// What systemd has loaded as `NAME.target`'s `Wants=`, sorted.
fn target_wants(sb: &sysmgr_sandbox::Sandbox, app: &str) -> Vec<String> {
    let out = sb
        .systemctl(&[
            "show",
            "--property=Wants",
            "--value",
            &format!("{app}.target"),
        ])
        .unwrap();
    let mut wants: Vec<String> = out.split_whitespace().map(str::to_string).collect();
    wants.sort();
    wants
}

/// `instance -> pid` as the workers answer `/` (`instance {SYSMGR_INSTANCE} pid {PID}`), over
/// enough fresh connections to meet all `n` (the shared socket hands each to any of them).
fn seen_instances(port: u16, n: usize) -> BTreeMap<String, String> {
    let mut seen = BTreeMap::new();
    for _ in 0..2000 {
        let body = http_get(port, "/").expect("the app serves");
        let f: Vec<&str> = body.split_whitespace().collect();
        assert_eq!((f[0], f[2]), ("instance", "pid"), "{body}");
        seen.insert(f[1].to_string(), f[3].to_string());
        if seen.len() == n {
            break;
        }
    }
    seen
}

/// The journal entries sysmgr wrote for `app`'s last reload, event by event: `(event,
/// SYSMGR_UNIT, SYSMGR_DURATION_MS)`.
fn reload_entries(sb: &sysmgr_sandbox::Sandbox, app: &str) -> Vec<(String, String, u64)> {
    let out = sb
        .run(&[
            "journalctl",
            "SYSLOG_IDENTIFIER=sysmgr",
            &format!("SYSMGR_APP={app}"),
            "SYSMGR_ACTION=reload",
            "--output=json",
            "--output-fields=SYSMGR_EVENT,SYSMGR_UNIT,SYSMGR_DURATION_MS,SYSMGR_RUN",
        ])
        .unwrap();
    let entries: Vec<serde_json::Value> = out
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let last_run = entries
        .last()
        .and_then(|e| e["SYSMGR_RUN"].as_str())
        .unwrap_or_default()
        .to_string();
    entries
        .iter()
        .filter(|e| e["SYSMGR_RUN"].as_str() == Some(last_run.as_str()))
        .map(|e| {
            let field = |k: &str| e[k].as_str().unwrap_or_default().to_string();
            (
                field("SYSMGR_EVENT"),
                field("SYSMGR_UNIT"),
                field("SYSMGR_DURATION_MS").parse().unwrap_or(0),
            )
        })
        .collect()
}

/// Counts the app's processes that accept connections (units active/running; a draining
/// one is deactivating) every 50 ms until stopped, for at most 120 s.
struct Sampler {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Vec<usize>>,
}

impl Sampler {
    fn start(sb: &sysmgr_sandbox::Sandbox, app: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let pattern = format!("{app}@*.service");
        let sb_pid = sb.pid();
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut samples = Vec::new();
                let started = Instant::now();
                while !stop.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(120)
                {
                    let out = std::process::Command::new("nsenter")
                        .args(["-t", &sb_pid.to_string(), "-m", "-p", "-r", "-w", "--"])
                        .args(["systemctl", "list-units", "--plain", "--no-legend"])
                        .args(["--state=running", &pattern])
                        .output()
                        .unwrap();
                    let running = String::from_utf8_lossy(&out.stdout)
                        .lines()
                        .filter(|l| l.contains(" active running "))
                        .count();
                    samples.push(running);
                    std::thread::sleep(Duration::from_millis(50));
                }
                samples
            })
        };
        Self { stop, thread }
    }

    fn stop(self) -> Vec<usize> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

/// Clients looping on 1.5 s requests over keep-alive connections, and fast ones.
fn slow_and_fast(port: u16) -> (Background, Background) {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let slow = Background::start(LoadConfig {
        path: "/slow?ms=1500".into(),
        connections: 16,
        mode: Mode::KeepAlive,
        duration: Duration::from_secs(120),
        request_timeout: Duration::from_secs(10),
        ..LoadConfig::new(addr)
    });
    let fast = Background::start(LoadConfig {
        connections: 2,
        mode: Mode::PerRequest,
        duration: Duration::from_secs(120),
        request_timeout: Duration::from_secs(5),
        ..LoadConfig::new(addr)
    });
    (slow, fast)
}

fn assert_no_loss(reports: [(&str, &Report); 2]) {
    for (name, report) in reports {
        assert_eq!(report.failed, 0, "{name}: {:?}", report.failures);
        assert_eq!(report.hung, 0, "{name}");
        assert!(report.ok > 20, "{name}: only {} requests", report.ok);
    }
}

/// One surge reload of `web` (4 instances, at generation `from`) under slow requests:
/// checks the bound, the capacity, the instance numbers and what is left behind.
fn surge_once(sb: &sysmgr_sandbox::Sandbox, port: u16, from: &str, to: &str) {
    let before = seen_instances(port, 4);
    assert_eq!(
        before.keys().map(String::as_str).collect::<Vec<_>>(),
        ["1", "2", "3", "4"]
    );
    let sampler = Sampler::start(sb, "web");
    let (slow, fast) = slow_and_fast(port);
    // Every worker has slow requests in flight before the first slot surges: each of the
    // 16 connections has answered one (so all are connected, to the old processes) and is
    // on its next. A fixed pause was not enough on a loaded machine: the load had not
    // connected yet, and the old processes had nothing to drain.
    let looping = wait_for(20, || (slow.snapshot().0 >= 16).then_some(()));
    assert!(looping.is_some(), "the slow load never got going");
    let r = sysmgr_in(sb, &["reload", "web"]);
    std::thread::sleep(Duration::from_millis(300));
    let (slow, fast) = (slow.stop(), fast.stop());
    let samples = sampler.stop();
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.starts_with(
            "reload web: 4 instances, surge 1: each new process serves before its old one drains\n"
        ),
        "{}",
        r.stderr
    );
    for n in 1..=4 {
        let (old, new) = (unit(n, from), unit(n, to));
        assert!(
            r.stderr.contains(&format!(" of 4 ({new}) ready in ")),
            "{}",
            r.stderr
        );
        assert!(
            r.stderr.contains(&format!("reload web: {old} (pid ")),
            "{}",
            r.stderr
        );
    }
    assert!(
        r.stderr
            .contains("; the old processes drained in the background, longest "),
        "{}",
        r.stderr
    );

    // The issue's bound: N x (start + min-ready) + one drain + 10%, from the journal's
    // figures of this reload (each slot's step is its new process's start job and min-ready
    // window, plus the controller's calls around them).
    let entries = reload_entries(sb, "web");
    let steps: u64 = entries
        .iter()
        .filter(|(e, _, _)| e == "instance")
        .map(|(_, _, ms)| ms)
        .sum();
    let drains: Vec<u64> = entries
        .iter()
        .filter(|(e, _, _)| e == "drain")
        .map(|(_, _, ms)| *ms)
        .collect();
    let wall = entries
        .iter()
        .find(|(e, _, _)| e == "summary")
        .map(|(_, _, ms)| *ms)
        .unwrap();
    assert_eq!(drains.len(), 4, "{entries:?}");
    let longest = *drains.iter().max().unwrap();
    let bound = (steps + longest) * 11 / 10;
    eprintln!(
        "surge reload of 4 instances under 1.5 s requests: {wall} ms; steps {steps} ms + the \
         longest drain {longest} ms + 10% = {bound} ms; the drains add up to {} ms; accepting \
         processes sampled {} times, min {}",
        drains.iter().sum::<u64>(),
        samples.len(),
        samples.iter().min().unwrap(),
    );
    assert!(wall <= bound, "{entries:?}");
    // The slow requests made the old processes drain, and the drains overlapped the next
    // slots: less than the steps plus every drain.
    assert!(longest > 500, "{entries:?}");
    assert!(wall < steps + drains.iter().sum::<u64>(), "{entries:?}");
    assert!(samples.len() >= 10, "{samples:?}");
    assert!(samples.iter().all(|&n| n >= 4), "{samples:?}");
    assert_no_loss([("slow", &slow), ("fast", &fast)]);

    // Same instance numbers, new processes; the new generation wanted (on disk and as
    // systemd loaded the target) and running, the old one stopped and not failed.
    let after = seen_instances(port, 4);
    assert_eq!(
        after.keys().collect::<Vec<_>>(),
        before.keys().collect::<Vec<_>>()
    );
    for (i, pid) in &after {
        assert_ne!(pid, &before[i], "instance {i} runs a new process");
    }
    let new: Vec<String> = (1..=4).map(|n| unit(n, to)).collect();
    assert_eq!(wants(sb, "web"), new);
    assert_eq!(target_wants(sb, "web"), new);
    assert_eq!(running_units(sb, "web"), new);
    let units = units_of(sb, "web");
    for n in 1..=4 {
        let old = units.get(&unit(n, from));
        assert!(old.map_or(true, |s| s == "inactive/dead"), "{units:?}");
    }
    assert!(!sb.unit_dir().join(".sysmgr-last-good").exists());
}

/// Slot `n`'s unit at generation `g` (`""` or `":1"`).
fn unit(n: u32, g: &str) -> String {
    format!("web@{n}{g}.service")
}

// soak: zero loss
#[test]
fn reload_surges_keeps_n_processes_accepting_and_takes_one_drain_not_n() {
    let sb = sandbox();
    let port = free_port();
    start_web(&sb, &hello_app("web", 4, port, ""));
    surge_once(&sb, port, "", ":1");

    // Every command knows the slots at their new generation.
    let r = sysmgr_in(&sb, &["status", "web", "--json"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("\"unit\": \"web@2:1.service\""),
        "{}",
        r.stdout
    );
    assert_eq!(running(&sb, "web"), [1, 2, 3, 4]);
    let r = sysmgr_in(&sb, &["list", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("web@3:1.service"), "{}", r.stdout);
    let r = sysmgr_in(&sb, &["logs", "web", "--instance", "2", "-n", "200"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let tagged: Vec<&str> = r.stdout.lines().collect();
    assert!(!tagged.is_empty());
    // Generation 0's lines and generation 1's, all tagged as instance 2.
    assert!(tagged.iter().all(|l| l.contains(" web[2]")), "{}", r.stdout);
    // Scale down stops slots 3 and 4 (generation 1), scale up starts slot 3 at generation 0.
    let r = sysmgr_in(&sb, &["scale", "web", "2"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        running_units(&sb, "web"),
        ["web@1:1.service", "web@2:1.service"]
    );
    let r = sysmgr_in(&sb, &["scale", "web", "4"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        wants(&sb, "web"),
        [
            "web@1:1.service",
            "web@2:1.service",
            "web@3.service",
            "web@4.service"
        ]
    );
    assert_eq!(running(&sb, "web"), [1, 2, 3, 4]);
    // A reload moves each slot to its other generation, whichever it is.
    let r = sysmgr_in(&sb, &["reload", "web"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        running_units(&sb, "web"),
        [
            "web@1.service",
            "web@2.service",
            "web@3:1.service",
            "web@4:1.service"
        ]
    );
    assert_eq!(target_wants(&sb, "web"), running_units(&sb, "web"));
    // A slot scaled away and back starts again at generation 0.
    for n in ["2", "4"] {
        let r = sysmgr_in(&sb, &["scale", "web", n]);
        assert_eq!(r.code, 0, "{}", r.stderr);
    }
    assert_eq!(
        running_units(&sb, "web"),
        (1..=4).map(|n| unit(n, "")).collect::<Vec<_>>()
    );
    // A stop stops every generation; a start starts the wanted one.
    let r = sysmgr_in(&sb, &["stop", "web"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(running_units(&sb, "web"), Vec::<String>::new());
    let r = sysmgr_in(&sb, &["start", "web"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        running_units(&sb, "web"),
        (1..=4).map(|n| unit(n, "")).collect::<Vec<_>>()
    );
    let failed = sb
        .systemctl(&["list-units", "--failed", "--plain", "--no-legend", "web*"])
        .unwrap();
    assert_eq!(failed, "", "no unit of the app is failed");
}

#[test]
fn a_broken_version_halts_with_slot_1s_old_process_serving_and_nothing_left_behind() {
    let sb = sandbox();
    let port = free_port();
    let good = hello_app("web", 2, port, "listen_timeout = 2000\n");
    let file = start_web(&sb, &good);
    let v1_units = crate::support::tree(&sb.unit_dir());
    let pid_of = |unit: &str| {
        sb.systemctl(&["show", "--property", "MainPID", "--value", unit])
            .unwrap()
            .trim()
            .to_string()
    };
    let old_pid = pid_of("web@1.service");
    let hello = workspace_bin("sysmgr-hello").display().to_string();
    let bad = good.replace(
        &format!("[\"{hello}\"]"),
        "[\"/bin/sh\", \"-c\", \"echo broken build; exit 3\"]",
    );
    assert_ne!(bad, good);
    write_in(&sb, "/srv/web/app.toml", &bad);
    let r = sysmgr_in(&sb, &["reload", &file]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains(
            "\nreload web: halted; put back the previous version's unit files and reloaded systemd: `/etc/systemd/system/web@.service`; `web@1:1.service` is stopped; its old process, `web@1.service`, kept serving and still runs the previous version; not restarted, still running the previous version: web@2.service\n"
        ),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.ends_with("\nsysmgr: error: reload of `web` halted: `web@1:1.service` failed (the start job ended with `failed`; systemd's result: `exit-code`); the instances not yet restarted still run the previous version; fix the app file and run `sysmgr reload /srv/web/app.toml` again\n"),
        "{}",
        r.stderr
    );
    assert!(
        sb.journal("web@1:1.service", 20).contains("broken build"),
        "{}",
        sb.journal("web@1:1.service", 20)
    );
    // The old process of slot 1 still serves; nothing of generation 1 is left running,
    // failed or wanted, and the previous units are installed again.
    assert_eq!(pid_of("web@1.service"), old_pid);
    assert_eq!(
        running_units(&sb, "web"),
        ["web@1.service", "web@2.service"]
    );
    let after = units_of(&sb, "web");
    assert!(
        after
            .get("web@1:1.service")
            .map_or(true, |s| s == "inactive/dead"),
        "{after:?}"
    );
    assert_eq!(crate::support::tree(&sb.unit_dir()), v1_units);
    assert_eq!(wants(&sb, "web"), ["web@1.service", "web@2.service"]);
    let seen: BTreeSet<String> = (0..20)
        .map(|_| http_get(port, "/").expect("the old version still serves"))
        .map(|body| body.split_whitespace().nth(1).unwrap().to_string())
        .collect();
    assert!(seen.contains("1"), "{seen:?}");
}

#[test]
fn a_surge_killed_between_its_steps_is_settled_by_the_next_command() {
    let sb = sandbox();
    let port = free_port();
    start_web(&sb, &hello_app("web", 2, port, ""));
    let links = sb.unit_dir().join("web.target.wants");
    let link = |unit: &str| {
        std::os::unix::fs::symlink("../web@.service", links.join(unit)).unwrap();
    };
    // As a surge killed after starting slot 1's new process, before linking it: the linked
    // one keeps the slot, the unverified new one is stopped.
    sb.systemctl(&["start", "web@1:1.service"]).unwrap();
    // As one killed after linking slot 2's new process, before stopping the old: the new
    // one was ready before it was linked, so it keeps the slot.
    sb.systemctl(&["start", "web@2:1.service"]).unwrap();
    link("web@2:1.service");
    assert_eq!(running_units(&sb, "web").len(), 4);
    let r = sysmgr_in(&sb, &["status", "web", "--json"]);
    assert!(
        r.stdout.contains("\"unit\": \"web@1:1.service\""),
        "{}",
        r.stdout
    );
    let r = sysmgr_in(&sb, &["start", "web"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("start web: instance 1 ran twice after an interrupted reload: kept web@1.service, stopped web@1:1.service\n"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("start web: instance 2 ran twice after an interrupted reload: kept web@2:1.service, stopped web@2.service\n"),
        "{}",
        r.stderr
    );
    assert_eq!(
        running_units(&sb, "web"),
        ["web@1.service", "web@2:1.service"]
    );
    assert_eq!(wants(&sb, "web"), ["web@1.service", "web@2:1.service"]);
    assert_eq!(
        target_wants(&sb, "web"),
        ["web@1.service", "web@2:1.service"]
    );
    // Nothing left to settle: the next command says nothing about it.
    let r = sysmgr_in(&sb, &["reload", "web"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!r.stderr.contains("interrupted"), "{}", r.stderr);
    assert_eq!(
        running_units(&sb, "web"),
        ["web@1:1.service", "web@2.service"]
    );
}

#[test]
fn per_instance_sockets_reload_in_place_and_refuse_surge() {
    let sb = sandbox();
    let port = free_port();
    start_web(
        &sb,
        &hello_app("web", 2, port, "socket = \"per-instance\"\n"),
    );
    let r = sysmgr_in(&sb, &["reload", "web", "--surge", "1"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert_eq!(
        r.stderr,
        "sysmgr: error: cannot surge-reload `web`: `web@.socket` gives each instance a listening socket of its own, so a new process beside the old one would listen apart, and stopping the old one would drop the connections queued on its socket; reload it in place with `--surge 0`\n"
    );
    let r = sysmgr_in(&sb, &["reload", "web"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr
            .starts_with("reload web: 2 instances, 1 at a time\n"),
        "{}",
        r.stderr
    );
    assert_eq!(
        running_units(&sb, "web"),
        ["web@1.service", "web@2.service"]
    );
}

#[test]
fn the_generators_apps_keep_their_generations_across_daemon_reload() {
    let sb = sandbox();
    let port = free_port();
    crate::support::install_generator(&sb);
    write_in(&sb, "/etc/sysmgr/web.toml", &hello_app("web", 2, port, ""));
    sb.systemctl(&["daemon-reload"]).unwrap();
    sb.systemctl(&["start", "web.target"]).unwrap();
    assert!(wait_for(20, || (running_units(&sb, "web").len() == 2).then_some(())).is_some());
    let r = sysmgr_in(&sb, &["reload", "web"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let moved = ["web@1:1.service", "web@2:1.service"];
    assert_eq!(running_units(&sb, "web"), moved);
    assert_eq!(wants_in(&sb, "run/systemd/generator", "web"), moved);
    // systemd empties the generator's directory on every reload: the generator links each
    // slot at the generation that runs.
    sb.systemctl(&["daemon-reload"]).unwrap();
    assert_eq!(wants_in(&sb, "run/systemd/generator", "web"), moved);
    assert_eq!(target_wants(&sb, "web"), moved);
    let r = sysmgr_in(&sb, &["reload", "web"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        running_units(&sb, "web"),
        ["web@1.service", "web@2.service"]
    );
    sb.systemctl(&["daemon-reload"]).unwrap();
    assert_eq!(
        wants_in(&sb, "run/systemd/generator", "web"),
        ["web@1.service", "web@2.service"]
    );
    assert!(!sb.root().join("run/sysmgr/generations/web").exists());
}
