//! `sysmgr monit` against a real systemd: the plain snapshot when stdout is a pipe, and the
//! full-screen view in an 80x24 tmux pane (read with `capture-pane`): its table and journal
//! pane, and its keys (reload under load, restart one instance, scale by one, quit).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use sysmgr_load::{Background, LoadConfig, Mode};
use sysmgr_sandbox::Sandbox;

use crate::lifecycle::{hello_app, instances, running};
use crate::support::{free_port, sandbox, sysmgr_bin, sysmgr_in, wait_for, write_in};

/// The cells of a row of the table (columns are two or more spaces apart; no cell of these
/// rows has two spaces in it).
fn cells(line: &str) -> Vec<&str> {
    line.split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect()
}

/// Checks the table's rows for app `web` with instances 1 to `n`. Memory figures are never
/// `-` for a running instance: systemd's, or where the sandbox's manager has no memory
/// accounting (cgroup v1 hosts), the summed resident set of its processes.
fn assert_rows(text: &str, n: u32) {
    let lines: Vec<&str> = text.lines().collect();
    let header = lines
        .iter()
        .position(|l| l.starts_with("APP ") && l.contains("MEMORY"))
        .unwrap_or_else(|| panic!("no header in:\n{text}"));
    assert_eq!(
        cells(lines[header]),
        ["APP", "INST", "STATE", "PID", "CPU", "MEMORY", "RESTARTS", "UPTIME"],
        "{text}"
    );
    for i in 1..=n {
        let i = i.to_string();
        let row = lines
            .iter()
            .map(|l| cells(l))
            .find(|c| c.first() == Some(&"web") && c.get(1) == Some(&i.as_str()))
            .unwrap_or_else(|| panic!("no row for instance {i} in:\n{text}"));
        assert_eq!(row[2], "active/running", "{text}");
        assert!(row[3].parse::<u32>().is_ok_and(|p| p > 1), "PID in {row:?}");
        assert!(row[4].ends_with('%'), "CPU % in {row:?}");
        assert!(
            row[5].ends_with("iB") && !row[5].starts_with("0"),
            "memory in {row:?}"
        );
    }
    let total = lines
        .iter()
        .map(|l| cells(l))
        .find(|c| c.first() == Some(&"web") && c.get(1) == Some(&"total"))
        .unwrap_or_else(|| panic!("no total row in:\n{text}"));
    assert_eq!(total[2], format!("active {n}/{n}"), "{text}");
    assert!(total[3..].len() >= 4, "{total:?}");
    assert!(total[4].ends_with('%'), "{total:?}");
    assert!(total[5].ends_with("iB"), "{total:?}");
    assert!(
        lines.iter().all(|l| l.chars().count() <= 80),
        "wider than 80 columns:\n{text}"
    );
}

#[test]
fn monit_without_a_terminal_prints_one_snapshot_with_the_app_total() {
    let sb = sandbox();
    let file = write_in(
        &sb,
        "/srv/web/app.toml",
        &hello_app("web", 2, free_port(), ""),
    );
    let r = sysmgr_in(&sb, &["start", &file]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = sysmgr_in(&sb, &["monit", "web"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        r.stdout.lines().count(),
        4,
        "header, 2 instances, total:\n{}",
        r.stdout
    );
    eprintln!("{}", r.stdout);
    assert_rows(&r.stdout, 2);
    // Every app without NAME; an unknown app is an error, not an empty screen.
    let all = sysmgr_in(&sb, &["monit"]);
    assert_eq!(all.code, 0, "{}", all.stderr);
    assert_rows(&all.stdout, 2);
    let r = sysmgr_in(&sb, &["monit", "nope"]);
    assert_ne!(r.code, 0);
}

/// `sysmgr monit web` in an 80x24 tmux pane inside the sandbox. The shell writes monit's exit
/// status where the test reads it (tmux's own record of it, `pane_dead_status`, is not always
/// filled in when the pane is marked dead). The server is killed on drop.
struct Pane<'a> {
    sb: &'a Sandbox,
    exit: PathBuf,
}

impl<'a> Pane<'a> {
    /// tmux's own server name: one per sandbox (each has its own /tmp), none shared with the
    /// host's.
    const SERVER: &'static str = "sysmgr-monit-test";

    fn open(sb: &'a Sandbox) -> Self {
        let pane = Self {
            sb,
            exit: sb.root().join("srv/web/monit-exit"),
        };
        let monit = format!(
            "{} monit web; echo $? > /srv/web/monit-exit",
            sysmgr_bin().display()
        );
        pane.tmux(&[
            "new-session",
            "-d",
            "-s",
            "monit",
            "-x",
            "80",
            "-y",
            "24",
            "-e",
            "TERM=xterm-256color",
            &monit,
        ]);
        pane.tmux(&["set-option", "-t", "monit", "remain-on-exit", "on"]);
        pane
    }

    fn tmux(&self, args: &[&str]) -> String {
        let out = self
            .sb
            .command("tmux")
            .args(["-L", Self::SERVER])
            .args(args)
            .output()
            .expect("tmux runs (scripts/setup installs it)");
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn screen(&self) -> String {
        self.tmux(&["capture-pane", "-p", "-t", "monit"])
    }

    fn keys(&self, keys: &str) {
        self.tmux(&["send-keys", "-t", "monit", keys]);
    }

    /// The screen once `ready` holds for it, within `secs` seconds.
    fn wait(&self, secs: u64, what: &str, ready: impl Fn(&str) -> bool) -> String {
        let screen = wait_for(secs, || {
            std::thread::sleep(Duration::from_millis(100));
            let s = self.screen();
            ready(&s).then_some(s)
        })
        .unwrap_or_else(|| panic!("{what}; the screen:\n{}", self.screen()));
        assert!(screen.lines().count() <= 24, "{screen}");
        assert!(
            screen.lines().all(|l| l.chars().count() <= 80),
            "wider than 80 columns:\n{screen}"
        );
        screen
    }

    /// The status line (the last line of the screen) once it starts with `prefix`.
    fn outcome(&self, secs: u64, prefix: &str) -> String {
        let screen = self.wait(secs, &format!("no status line `{prefix}...`"), |s| {
            s.lines()
                .any(|l| l.starts_with(prefix) || l.starts_with("error:"))
        });
        let line = screen
            .lines()
            .find(|l| l.starts_with(prefix) || l.starts_with("error:"))
            .unwrap()
            .to_string();
        assert!(line.starts_with(prefix), "{screen}");
        line
    }

    /// Quits with `q`; monit's exit status.
    fn quit(&self) -> String {
        self.keys("q");
        let code = wait_for(20, || {
            std::fs::read_to_string(&self.exit)
                .ok()
                .filter(|s| s.ends_with('\n'))
        })
        .unwrap_or_else(|| panic!("monit did not exit on q:\n{}", self.screen()));
        code.trim().to_string()
    }
}

impl Drop for Pane<'_> {
    fn drop(&mut self) {
        let _ = self
            .sb
            .command("tmux")
            .args(["-L", Self::SERVER, "kill-server"])
            .output();
    }
}

/// Starts `web` with `n` hello instances on a fresh port; returns the port.
fn start_web(sb: &Sandbox, n: u32) -> u16 {
    let port = free_port();
    let file = write_in(sb, "/srv/web/app.toml", &hello_app("web", n, port, ""));
    let r = sysmgr_in(sb, &["start", &file]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    port
}

fn pids(sb: &Sandbox) -> BTreeMap<u64, u64> {
    instances(sb, "web")
        .into_iter()
        .filter(|(_, (state, _))| state == "active/running")
        .map(|(i, (_, pid))| (i, pid))
        .collect()
}

/// The table after two refreshes (CPU % needs two readings) with `n` instance rows.
fn table(pane: &Pane<'_>, n: u32) -> String {
    pane.wait(20, &format!("no table of {n} instances"), |s| {
        s.lines()
            .any(|l| l.starts_with("web") && l.contains(&format!("active {n}/{n}")))
            && s.lines()
                .filter(|l| l.starts_with("web") && l.contains('%'))
                .count()
                > n as usize
    })
}

#[test]
fn monit_in_an_80x24_tmux_pane_shows_rows_and_journal_and_acts_on_one_instance() {
    let sb = sandbox();
    start_web(&sb, 4);
    let before = pids(&sb);
    assert_eq!(before.len(), 4, "{before:?}");
    let pane = Pane::open(&sb);
    let screen = table(&pane, 4);
    eprintln!("{screen}");
    assert_rows(&screen, 4);
    assert!(screen.starts_with("sysmgr monit  q quit"), "{screen}");
    // The journal pane follows the selected row: first instance 1, then (`j`) instance 2,
    // each with the line its worker wrote when it became ready.
    for (n, key) in [(1u64, None), (2, Some("j"))] {
        if let Some(key) = key {
            pane.keys(key);
        }
        let ready = format!(
            "web[{n}]: sysmgr-hello: instance {n} pid {} ready",
            before[&n]
        );
        let screen = pane.wait(20, &format!("no journal line `{ready}`"), |s| {
            s.contains(&format!("journal of web@{n}.service")) && s.contains(&ready)
        });
        eprintln!("{screen}");
    }
    // `R` restarts the selected instance (2) alone, through systemd.
    pane.keys("R");
    let line = pane.outcome(60, "ok: restarted `web@2.service` in ");
    eprintln!("{line}");
    let after = pids(&sb);
    assert_eq!(after.len(), 4, "{after:?}");
    for (n, pid) in &after {
        if *n == 2 {
            assert_ne!(*pid, before[n], "instance 2 was replaced: {after:?}");
            assert!(
                line.ends_with(&format!("pid {} -> {pid}", before[n])),
                "{line}"
            );
        } else {
            assert_eq!(
                *pid, before[n],
                "only instance 2 restarts: {before:?} -> {after:?}"
            );
        }
    }
    // `+` then `-`: 4 -> 5 -> 4 instances, on screen and in systemd. The first waits for the
    // app's lock, held here as another sysmgr would hold it, and the screen keeps working
    // meanwhile: the selection moves, the journal pane follows.
    let mut holder = sb
        .command("flock")
        .args([
            "/run/sysmgr/web.lock",
            "sh",
            "-c",
            "touch /srv/web/locked; sleep 5",
        ])
        .spawn()
        .expect("flock runs");
    let locked = sb.root().join("srv/web/locked");
    wait_for(10, || locked.exists().then_some(())).expect("flock takes the lock");
    pane.keys("+");
    pane.wait(10, "the scale does not wait for the lock", |s| {
        // The holder's PID, when the lock file's holder can be told, in parentheses.
        s.lines().any(|l| {
            l.starts_with("scale web +1: another sysmgr ")
                && l.ends_with(" is changing `web`; waiting for it")
        })
    });
    pane.keys("k");
    pane.wait(
        10,
        "the selection does not move while the scale waits",
        |s| s.contains("journal of web@1.service") && s.contains("; waiting for it"),
    );
    pane.keys("j");
    assert_eq!(
        running(&sb, "web"),
        [1, 2, 3, 4],
        "nothing changed under the lock"
    );
    assert!(holder.wait().unwrap().success());
    pane.outcome(60, "ok: scaled `web` from 4 to 5: started 1, stopped 0");
    assert_eq!(running(&sb, "web"), [1, 2, 3, 4, 5]);
    table(&pane, 5);
    pane.keys("-");
    pane.outcome(60, "ok: scaled `web` from 5 to 4: started 0, stopped 1");
    assert_eq!(running(&sb, "web"), [1, 2, 3, 4]);
    let screen = table(&pane, 4);
    // The selection stayed on instance 2 as rows came and went.
    assert!(screen.contains("journal of web@2.service"), "{screen}");
    assert_eq!(pane.quit(), "0", "monit's exit status");
    // It left the alternate screen: the pane shows the screen from before, not the table.
    let after_exit = pane.screen();
    assert!(!after_exit.contains("RESTARTS"), "{after_exit}");
}

// soak: zero loss
#[test]
fn the_reload_key_of_monit_replaces_every_process_under_load_without_a_failed_request() {
    let sb = sandbox();
    let port = start_web(&sb, 4);
    let before = pids(&sb);
    let pane = Pane::open(&sb);
    table(&pane, 4);
    let load = Background::start(LoadConfig {
        connections: 8,
        mode: Mode::KeepAlive,
        // Stopped after the reload; the duration is only a bound.
        duration: Duration::from_secs(120),
        request_timeout: Duration::from_secs(5),
        ..LoadConfig::new(SocketAddr::from(([127, 0, 0, 1], port)))
    });
    std::thread::sleep(Duration::from_millis(300));
    pane.keys("r");
    let line = pane.outcome(90, "ok: reload web: 4 of 4 instances ready in ");
    std::thread::sleep(Duration::from_millis(300));
    let report = load.stop();
    eprintln!("{line}\n{report}");
    assert_eq!(report.failed, 0, "{:?}", report.failures);
    assert_eq!(report.hung, 0);
    assert!(report.ok > 100, "only {} requests", report.ok);
    let after = pids(&sb);
    assert_eq!(after.len(), 4, "{after:?}");
    for (n, pid) in &after {
        assert_ne!(*pid, before[n], "instance {n} runs a new process");
    }
    assert_eq!(pane.quit(), "0", "monit's exit status");
}
