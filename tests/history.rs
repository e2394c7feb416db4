//! sysmgr's own entries in a real journal (the sandbox's journald, in memory): a reload leaves
//! one entry per replaced instance and one summary, a halted reload names the failed instance
//! and systemd's result, and `sysmgr history` prints them back.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::lifecycle::{hello_app, instances};
use crate::support::{free_port, sandbox, sysmgr_in, wait_for, workspace_bin, write_in};

/// sysmgr's entries for `app` (and `matches`, `FIELD=value`), read with journalctl inside the
/// sandbox, oldest first.
fn entries(sb: &sysmgr_sandbox::Sandbox, app: &str, matches: &[&str]) -> Vec<Value> {
    let app = format!("SYSMGR_APP={app}");
    let mut argv = vec![
        "journalctl",
        "--output=json",
        "--no-pager",
        "--quiet",
        "SYSLOG_IDENTIFIER=sysmgr",
        &app,
    ];
    argv.extend_from_slice(matches);
    sb.run(&argv)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Waits until journald has stored the summary of `action` number `nth` (1-based) of `app`,
/// then returns every entry of that action's run.
fn run_of(sb: &sysmgr_sandbox::Sandbox, app: &str, action: &str, nth: usize) -> Vec<Value> {
    let action = format!("SYSMGR_ACTION={action}");
    let summary = wait_for(10, || {
        entries(sb, app, &[&action, "SYSMGR_EVENT=summary"])
            .into_iter()
            .nth(nth - 1)
    })
    .unwrap_or_else(|| panic!("no {action} summary of `{app}` in the journal"));
    let run = format!("SYSMGR_RUN={}", text(&summary, "SYSMGR_RUN"));
    entries(sb, app, &[&action, &run])
}

fn text<'a>(entry: &'a Value, field: &str) -> &'a str {
    entry[field]
        .as_str()
        .unwrap_or_else(|| panic!("no `{field}` in {entry:#}"))
}

fn of_event<'a>(run: &'a [Value], event: &str) -> Vec<&'a Value> {
    run.iter().filter(|e| e["SYSMGR_EVENT"] == event).collect()
}

fn pids(sb: &sysmgr_sandbox::Sandbox, app: &str) -> BTreeMap<u64, u64> {
    instances(sb, app)
        .into_iter()
        .map(|(i, (_, pid))| (i, pid))
        .collect()
}

#[test]
fn a_reload_leaves_an_entry_per_replaced_instance_and_a_summary_that_history_prints() {
    let sb = sandbox();
    let port = free_port();
    let file = write_in(&sb, "/srv/web/app.toml", &hello_app("web", 3, port, ""));
    let r = sysmgr_in(&sb, &["start", &file]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let before = pids(&sb, "web");
    let r = sysmgr_in(&sb, &["reload", "web"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let after = pids(&sb, "web");

    let run = run_of(&sb, "web", "reload", 1);
    let common = [
        ("SYSMGR_APP", "web"),
        ("SYSMGR_ACTION", "reload"),
        ("SYSMGR_MANAGER", "system"),
        ("SYSMGR_USER", "root"),
        ("SYSMGR_APP_FILE", "/srv/web/app.toml"),
        ("SYSLOG_IDENTIFIER", "sysmgr"),
    ];
    for entry in &run {
        for (field, value) in common {
            assert_eq!(text(entry, field), value, "{entry:#}");
        }
    }
    assert_eq!(of_event(&run, "begin").len(), 1, "{run:#?}");
    let replaced = of_event(&run, "instance");
    assert_eq!(
        replaced.len(),
        3,
        "one entry per replaced instance: {run:#?}"
    );
    for (entry, i) in replaced.iter().zip(1u64..) {
        assert_eq!(text(entry, "SYSMGR_INSTANCE"), i.to_string());
        // A surge reload: each instance's next generation.
        assert_eq!(text(entry, "SYSMGR_UNIT"), format!("web@{i}:1.service"));
        assert_eq!(text(entry, "SYSMGR_OUTCOME"), "ready");
        assert_eq!(text(entry, "SYSMGR_OLD_PID"), before[&i].to_string());
        assert_eq!(text(entry, "SYSMGR_NEW_PID"), after[&i].to_string());
        assert!(text(entry, "SYSMGR_DURATION_MS").parse::<u64>().is_ok());
        assert!(
            text(entry, "MESSAGE")
                .starts_with(&format!("reload web: `web@{i}:1.service` replaced in ")),
            "{entry:#}"
        );
    }
    let summary = of_event(&run, "summary");
    assert_eq!(summary.len(), 1, "{run:#?}");
    let summary = summary[0];
    assert_eq!(text(summary, "SYSMGR_OUTCOME"), "ok");
    assert_eq!(text(summary, "SYSMGR_INSTANCES"), "3");
    assert_eq!(text(summary, "PRIORITY"), "5");
    let expected_pids: Vec<String> = (1..=3)
        .map(|i| format!("{i}:{}>{}", before[&i], after[&i]))
        .collect();
    assert_eq!(text(summary, "SYSMGR_PIDS"), expected_pids.join(" "));
    assert!(text(summary, "SYSMGR_DURATION_MS").parse::<u64>().is_ok());
    assert!(summary.get("SYSMGR_FAILED_UNIT").is_none(), "{summary:#}");

    // Only sysmgr's own events reach the journal (not zbus's tracing, for one).
    for entry in entries(&sb, "web", &[]) {
        assert!(entry.get("SYSMGR_ACTION").is_some(), "{entry:#}");
    }

    let r = sysmgr_in(&sb, &["history", "web"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    // The table, for whoever runs this with --nocapture.
    eprintln!("{}", r.stdout);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert!(lines[0].starts_with("WHEN "), "{}", r.stdout);
    assert!(
        lines[0].ends_with("  USER  ACTION    OUTCOME  DURATION  DETAILS"),
        "{}",
        r.stdout
    );
    // generate and start (from the file), then the reload.
    assert_eq!(lines.len(), 4, "{}", r.stdout);
    assert!(lines[1].contains("  root  generate  ok  "), "{}", r.stdout);
    assert!(lines[2].contains("  root  start     ok  "), "{}", r.stdout);
    assert!(lines[3].contains("  root  reload    ok  "), "{}", r.stdout);
    assert!(
        lines[3].ends_with(&format!("  replaced {}", expected_pids.join(" "))),
        "{}",
        r.stdout
    );
    let r = sysmgr_in(&sb, &["history", "web", "-n", "1", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let json: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 1, "{json:#}");
    assert_eq!(json[0]["action"], "reload");
    assert_eq!(json[0]["outcome"], "ok");
    assert_eq!(json[0]["user"], "root");
    assert_eq!(json[0]["app_file"], "/srv/web/app.toml");
    assert_eq!(json[0]["pids"], expected_pids.join(" "));
}

#[test]
fn a_halted_reloads_entries_name_the_failed_instance_and_systemds_result() {
    let sb = sandbox();
    let port = free_port();
    let good = hello_app("web", 3, port, "");
    write_in(&sb, "/srv/web/app.toml", &good);
    let r = sysmgr_in(&sb, &["start", "/srv/web/app.toml"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let hello = workspace_bin("sysmgr-hello").display().to_string();
    let bad = good.replace(
        &format!("[\"{hello}\"]"),
        "[\"/bin/sh\", \"-c\", \"echo broken build; exit 3\"]",
    );
    write_in(&sb, "/srv/web/app.toml", &bad);
    let r = sysmgr_in(&sb, &["reload", "/srv/web/app.toml"]);
    assert_eq!(r.code, 1, "{}", r.stderr);

    let run = run_of(&sb, "web", "reload", 1);
    let failed = of_event(&run, "instance");
    assert_eq!(
        failed.len(),
        1,
        "only the first instance was begun: {run:#?}"
    );
    let failed = failed[0];
    assert_eq!(text(failed, "SYSMGR_UNIT"), "web@1:1.service");
    assert_eq!(text(failed, "SYSMGR_OUTCOME"), "failed");
    assert_eq!(text(failed, "SYSMGR_SERVICE_RESULT"), "exit-code");
    assert_eq!(text(failed, "SYSMGR_EXIT_STATUS"), "3");
    assert_eq!(text(failed, "PRIORITY"), "4");

    let summary = of_event(&run, "summary")[0];
    assert_eq!(text(summary, "SYSMGR_OUTCOME"), "halted");
    assert_eq!(text(summary, "SYSMGR_FAILED_UNIT"), "web@1:1.service");
    assert_eq!(text(summary, "SYSMGR_SERVICE_RESULT"), "exit-code");
    assert_eq!(text(summary, "SYSMGR_EXIT_STATUS"), "3");
    assert_eq!(
        text(summary, "SYSMGR_REASON"),
        "the start job ended with `failed`"
    );
    assert_eq!(
        text(summary, "SYSMGR_SKIPPED"),
        "web@2.service web@3.service"
    );
    assert_eq!(text(summary, "SYSMGR_PIDS"), "");
    assert_eq!(
        text(summary, "MESSAGE"),
        "reload web: halted at `web@1:1.service`: the start job ended with `failed`; systemd's result: `exit-code`; 0 replaced, 2 not restarted"
    );

    // The halt put the previous unit files back: its `generate` entry comes last.
    let r = sysmgr_in(&sb, &["history", "web", "-n", "2"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("  root  reload    halted  "),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains(
            "  halted at `web@1:1.service` (exit-code): the start job ended with `failed`; not restarted web@2.service web@3.service\n"
        ),
        "{}",
        r.stdout
    );
    let r = sysmgr_in(&sb, &["history", "web", "--json"]);
    let json: Value = serde_json::from_str(&r.stdout).unwrap();
    let last = json
        .as_array()
        .unwrap()
        .iter()
        .rfind(|e| e["action"] == "reload")
        .unwrap();
    assert_eq!(last["outcome"], "halted", "{json:#}");
    assert_eq!(last["failed_unit"], "web@1:1.service");
    assert_eq!(last["service_result"], "exit-code");
}
