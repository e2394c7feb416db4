//! `sysmgr monit` against a real systemd: the plain snapshot when stdout is a pipe, and the
//! full-screen view in an 80x24 tmux pane (read with `capture-pane`), quit with `q`.

use std::time::Duration;

use crate::lifecycle::{hello_app, instances};
use crate::support::{free_port, sandbox, sysmgr_bin, sysmgr_in, wait_for, write_in};

/// The cells of a row of the table (columns are two or more spaces apart; no cell of these
/// rows has two spaces in it).
fn cells(line: &str) -> Vec<&str> {
    line.split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect()
}

/// Checks the table's rows for app `web` with instances 1 and 2. Memory figures are never
/// `-` for a running instance: systemd's, or where the sandbox's manager has no memory
/// accounting (cgroup v1 hosts), the summed resident set of its processes.
fn assert_rows(text: &str) {
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
    for n in ["1", "2"] {
        let row = lines
            .iter()
            .map(|l| cells(l))
            .find(|c| c.first() == Some(&"web") && c.get(1) == Some(&n))
            .unwrap_or_else(|| panic!("no row for instance {n} in:\n{text}"));
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
    assert_eq!(total[2], "active 2/2", "{text}");
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
    assert_rows(&r.stdout);
    // Every app without NAME; an unknown app is an error, not an empty screen.
    let all = sysmgr_in(&sb, &["monit"]);
    assert_eq!(all.code, 0, "{}", all.stderr);
    assert_rows(&all.stdout);
    let r = sysmgr_in(&sb, &["monit", "nope"]);
    assert_ne!(r.code, 0);
}

#[test]
fn monit_in_an_80x24_tmux_pane_shows_the_rows_and_quits_on_q() {
    let sb = sandbox();
    let file = write_in(
        &sb,
        "/srv/web/app.toml",
        &hello_app("web", 2, free_port(), ""),
    );
    let r = sysmgr_in(&sb, &["start", &file]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let tmux = |args: &[&str]| {
        let out = sb
            .command("tmux")
            .args(["-L", "sysmgr-monit-test"])
            .args(args)
            .output()
            .expect("tmux runs (scripts/setup installs it)");
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // The shell writes monit's exit status where the test reads it (tmux's own record of it,
    // `pane_dead_status`, is not always filled in when the pane is marked dead).
    let monit = format!(
        "{} monit web; echo $? > /srv/web/monit-exit",
        sysmgr_bin().display()
    );
    tmux(&[
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
    tmux(&["set-option", "-t", "monit", "remain-on-exit", "on"]);
    // Two refreshes: CPU % needs two readings.
    let screen = wait_for(15, || {
        let s = tmux(&["capture-pane", "-p", "-t", "monit"]);
        (s.contains("total") && s.lines().filter(|l| l.contains('%')).count() >= 3).then_some(s)
    })
    .unwrap_or_else(|| panic!("no table: {}", tmux(&["capture-pane", "-p", "-t", "monit"])));
    eprintln!("{screen}");
    assert_rows(&screen);
    assert!(screen.lines().count() <= 24, "{screen}");
    // `r` on the first row reloads `web`: every PID is replaced, the status line says so.
    let before = instances(&sb, "web");
    tmux(&["send-keys", "-t", "monit", "r"]);
    let screen = wait_for(60, || {
        let s = tmux(&["capture-pane", "-p", "-t", "monit"]);
        s.lines()
            .any(|l| l.starts_with("done: reload web: 2 of 2 instances ready"))
            .then_some(s)
    })
    .unwrap_or_else(|| {
        panic!(
            "no reload: {}",
            tmux(&["capture-pane", "-p", "-t", "monit"])
        )
    });
    eprintln!("{screen}");
    let after = instances(&sb, "web");
    assert_eq!(after.len(), 2, "{after:?}");
    for (n, (state, pid)) in &after {
        assert_eq!(state, "active/running", "{after:?}");
        assert_ne!(
            *pid, before[n].1,
            "instance {n} was replaced: {before:?} -> {after:?}"
        );
    }
    tmux(&["send-keys", "-t", "monit", "q"]);
    let exit = sb.root().join("srv/web/monit-exit");
    let code = wait_for(10, || {
        std::fs::read_to_string(&exit)
            .ok()
            .filter(|s| s.ends_with('\n'))
    })
    .expect("monit exits on q");
    assert_eq!(code.trim(), "0", "monit's exit status");
    // It left the alternate screen: the pane shows the screen from before, not the table.
    let after_exit = tmux(&["capture-pane", "-p", "-t", "monit"]);
    assert!(!after_exit.contains("RESTARTS"), "{after_exit}");
    let _ = sb
        .command("tmux")
        .args(["-L", "sysmgr-monit-test", "kill-server"])
        .output();
    std::thread::sleep(Duration::from_millis(10));
}
