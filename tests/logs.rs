//! stdout and stderr apart in the journal, against a real systemd: every instance starts
//! through `sysmgr exec`, which gives its stderr a journal stream at priority err and its
//! stdout one at info, so `sysmgr logs --err` shows exactly what the instances wrote to
//! stderr and `--out` exactly what they wrote to stdout, each line tagged with its instance,
//! for a native program and for a Node app.

use serde_json::Value;
use sysmgr_sandbox::Sandbox;

use crate::support::{sandbox, sysmgr_in, wait_for, write_in};

/// The lines of `sysmgr logs ARGS` without their timestamps (`YYYY-MM-DD HH:MM:SS `), sorted.
fn logs(sb: &Sandbox, args: &[&str]) -> Vec<String> {
    let mut argv = vec!["logs"];
    argv.extend(args);
    let r = sysmgr_in(sb, &argv);
    assert_eq!(r.code, 0, "logs {args:?}: {}", r.stderr);
    let mut lines: Vec<String> = r
        .stdout
        .lines()
        .map(|l| {
            assert_eq!(l.as_bytes().get(19), Some(&b' '), "a timestamp first: {l}");
            l[20..].to_string()
        })
        .collect();
    lines.sort();
    lines
}

/// Waits until `logs ARGS` shows `want` (the journal stores stream lines asynchronously),
/// then asserts it shows exactly that.
fn assert_logs(sb: &Sandbox, args: &[&str], want: &[&str]) {
    let got = wait_for(10, || {
        let got = logs(sb, args);
        (got == want).then_some(got)
    });
    assert!(
        got.is_some(),
        "sysmgr logs {args:?}:\n{:#?}\nwanted:\n{want:#?}\njournal:\n{}",
        logs(sb, args),
        sb.journal("*", 40)
    );
}

/// Starts `file` and checks `--err`, `--out`, `--instance` and `--json` for app `name`, whose
/// instances 1 and 2 write `out-N` to stdout and `err-N` to stderr.
fn check_streams(sb: &Sandbox, name: &str, file: &str) {
    let r = sysmgr_in(sb, &["start", file]);
    assert_eq!(r.code, 0, "start: {}\n{}", r.stderr, sb.journal("*", 40));
    let tag = |n: u32, what: &str| format!("{name}[{n}]: {what}-{n}");
    let (err1, err2, out1, out2) = (tag(1, "err"), tag(2, "err"), tag(1, "out"), tag(2, "out"));
    assert_logs(sb, &[name, "--err"], &[&err1, &err2]);
    assert_logs(sb, &[name, "--out"], &[&out1, &out2]);
    assert_logs(sb, &[name, "--err", "--instance", "2"], &[&err2]);

    // Everything: both streams. (systemd's own lines about the instances, tagged
    // `NAME[N] systemd:`, are not in the sandbox's journal: its PID 1 logs to a console.)
    let all = logs(sb, &[name]);
    for line in [&err1, &err2, &out1, &out2] {
        assert!(all.contains(line), "{line} in {all:#?}");
    }

    let r = sysmgr_in(sb, &["logs", name, "--err", "--json", "--instance", "1"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let lines: Vec<Value> = r
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{}", r.stdout);
    let line = &lines[0];
    assert_eq!(line["app"], name);
    assert_eq!(line["instance"], 1);
    assert_eq!(line["stream"], "stderr");
    assert_eq!(line["priority"], 3);
    assert_eq!(line["message"], "err-1");
    assert!(line["pid"].as_u64().unwrap() > 1);
    assert!(line["realtime_usec"].as_u64().unwrap() > 0);

    // journald attributes the lines to the instance's unit itself (its cgroup), with the
    // priority of their stream and the app's identifier.
    let raw = sb
        .run(&[
            "journalctl",
            "--no-pager",
            "--quiet",
            "-o",
            "cat",
            &format!("_SYSTEMD_UNIT={name}@2.service"),
            "PRIORITY=3",
            &format!("SYSLOG_IDENTIFIER={name}"),
        ])
        .unwrap();
    assert_eq!(raw, "err-2\n");
}

#[test]
fn logs_err_and_out_show_exactly_a_native_programs_stderr_and_stdout() {
    let sb = sandbox();
    let file = write_in(
        &sb,
        "/srv/shout/app.toml",
        "name = \"shout\"\n\
         command = [\"/bin/sh\", \"-c\", \"echo out-$SYSMGR_INSTANCE; echo err-$SYSMGR_INSTANCE >&2; exec sleep 600\"]\n\
         instances = 2\n\
         wait_ready = false\n",
    );
    check_streams(&sb, "shout", &file);
}

#[test]
fn logs_err_and_out_show_exactly_a_node_apps_stderr_and_stdout() {
    let sb = sandbox();
    write_in(
        &sb,
        "/srv/nshout/app.js",
        "const n = process.env.SYSMGR_INSTANCE;\n\
         console.log(`out-${n}`);\n\
         console.error(`err-${n}`);\n\
         process.send('ready');\n\
         setInterval(() => {}, 1 << 30);\n",
    );
    let file = write_in(
        &sb,
        "/srv/nshout/app.toml",
        "name = \"nshout\"\ncommand = [\"node\", \"app.js\"]\ninstances = 2\n",
    );
    check_streams(&sb, "nshout", &file);
    // The bridge's drain notices are written to stderr too, marked as notices: not errors.
    let r = sysmgr_in(&sb, &["stop", "nshout"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let all = logs(&sb, &["nshout", "--instance", "1"]);
    assert!(
        all.iter()
            .any(|l| l.starts_with("nshout[1]: sysmgr: instance 1 pid ")),
        "{all:#?}"
    );
    assert_logs(
        &sb,
        &["nshout", "--err"],
        &["nshout[1]: err-1", "nshout[2]: err-2"],
    );
}
