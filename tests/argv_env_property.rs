//! A property test with a real systemd: for generated app files that sysmgr accepts, the argv
//! and environment the started process receives are exactly the declared ones. The words and
//! values are built from the characters that each mean something to TOML, to systemd's unit
//! parser (`%`, `$`, quotes, backslashes, white space) or to a shell, plus control characters
//! and non-ASCII; the command is written as an array or as a string split like a shell. One
//! sandbox boot runs a sample of `SPECS` apps; the seed is printed, and
//! `SYSMGR_PROPERTY_SEED=N` repeats a run.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::fmt::Write as _;

use sysmgr_testkit::ProbeReport;

use crate::support::{sandbox, sysmgr_in, wait_for, workspace_bin, write_in};

/// How many apps one run starts.
const SPECS: usize = 30;

/// splitmix64: a small generator whose whole state is the seed, so a printed seed repeats a run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Characters for argument words: anything but NUL, biased towards the ones with a meaning.
const WORD_CHARS: &[char] = &[
    ' ',
    ' ',
    '"',
    '\'',
    '\\',
    '%',
    '%',
    '$',
    '$',
    ';',
    '\n',
    '\t',
    '\r',
    '\u{1}',
    '\u{1b}',
    '\u{7f}',
    '\u{85}',
    'é',
    '☃',
    '漢',
    '\u{10FFFD}',
    '\u{FEFF}',
    '{',
    '}',
    '`',
    '*',
    '~',
    '#',
    '=',
    '@',
    'i',
    'n',
    'H',
    'O',
    'M',
    'E',
    'x',
    '0',
    '-',
    '/',
    ':',
    '&',
    '|',
    '<',
    '>',
    '(',
];

/// Whole words that trip a rule of their own.
const WORDS: &[&str] = &[
    "",
    " ",
    "%i",
    "%%",
    "%n",
    "$HOME",
    "${HOME}",
    "$$",
    "$",
    "--help",
    "-h",
    "--",
    "-",
    "\\n",
    "\\",
    "'",
    "\"",
    "a b",
    "exec",
    "--require",
    "%",
    "100%",
];

fn word(rng: &mut Rng, env: bool) -> String {
    if rng.below(4) == 0 {
        return (*rng.pick(WORDS)).to_string();
    }
    let len = rng.below(14);
    (0..len)
        .map(|_| {
            if rng.below(8) == 0 {
                char::from_u32(rng.below(0x11_0000) as u32).unwrap_or('?')
            } else {
                *rng.pick(WORD_CHARS)
            }
        })
        // systemd refuses NUL anywhere, and other ASCII controls but tab and newline in values
        // (sysmgr says so instead of generating).
        .filter(|&c| c != '\0' && (!env || !c.is_ascii_control() || matches!(c, '\t' | '\n')))
        .collect()
}

/// A TOML basic string.
fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A word quoted for `sh` (and so for sysmgr's string form of `command`).
fn shell_quoted(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

struct Case {
    name: String,
    argv: Vec<String>,
    env: Vec<(String, String)>,
    instance_var: String,
    text: String,
}

fn case(rng: &mut Rng, i: usize, probe: &str) -> Case {
    let name = format!("prop{i}");
    let mut argv = vec![probe.to_string()];
    for _ in 0..rng.below(8) {
        argv.push(word(rng, false));
    }
    let mut env: Vec<(String, String)> = Vec::new();
    for k in 0..rng.below(7) {
        let var = format!("V{k}_{}", rng.below(1000));
        if !env.iter().any(|(n, _)| *n == var) {
            env.push((var, word(rng, true)));
        }
    }
    let instance_var = rng
        .pick(&["NODE_APP_INSTANCE", "APP_N", "WORKER_ID"])
        .to_string();
    let command = if rng.below(2) == 0 {
        let words: Vec<String> = argv.iter().map(|w| toml_string(w)).collect();
        format!("[{}]", words.join(", "))
    } else {
        let line: Vec<String> = argv.iter().map(|w| shell_quoted(w)).collect();
        toml_string(&line.join(" "))
    };
    let mut text = format!(
        "name = \"{name}\"\ncommand = {command}\ninstance_var = \"{instance_var}\"\nkill_timeout = 2000\n[env]\nSYSMGR_PROBE_DIR = \"/run/probe/{name}\"\n"
    );
    for (k, v) in &env {
        let _ = writeln!(text, "{k} = {}", toml_string(v));
    }
    Case {
        name,
        argv,
        env,
        instance_var,
        text,
    }
}

#[test]
fn started_processes_get_exactly_the_declared_argv_and_environment() {
    let seed = std::env::var("SYSMGR_PROPERTY_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    eprintln!("argv/env property: seed {seed} (SYSMGR_PROPERTY_SEED={seed} repeats it)");
    let mut rng = Rng(seed);
    let sb = sandbox();
    let probe = workspace_bin("sysmgr-probe").display().to_string();
    let cases: Vec<Case> = (0..SPECS).map(|i| case(&mut rng, i, &probe)).collect();

    // The variables every instance gets besides the declared ones, from an app that declares
    // none of its own.
    let base = Case {
        name: "propbase".into(),
        argv: vec![probe.clone()],
        env: Vec::new(),
        instance_var: "NODE_APP_INSTANCE".into(),
        text: format!(
            "name = \"propbase\"\ncommand = [{}]\nkill_timeout = 2000\n[env]\nSYSMGR_PROBE_DIR = \"/run/probe/propbase\"\n",
            toml_string(&probe)
        ),
    };
    let mut targets = Vec::new();
    let mut accepted = Vec::new();
    for (i, c) in std::iter::once(&base).chain(&cases).enumerate() {
        let file = write_in(&sb, &format!("/srv/prop/{}.toml", c.name), &c.text);
        let r = sysmgr_in(&sb, &["generate", &file]);
        // The one thing the generator makes that systemd cannot carry, and sysmgr refuses.
        let noncharacter = c.text.chars().any(|ch| {
            let ch = u32::from(ch);
            (0xFDD0..=0xFDEF).contains(&ch) || ch & 0xFFFE == 0xFFFE
        });
        if noncharacter && i > 0 {
            assert_eq!(
                r.code, 2,
                "seed {seed}: {} was accepted:\n{}",
                c.name, c.text
            );
            assert!(
                r.stderr.contains("noncharacter"),
                "seed {seed}: {}",
                r.stderr
            );
            continue;
        }
        assert_eq!(
            r.code, 0,
            "seed {seed}: {}:\n{}\n{}",
            c.name, r.stderr, c.text
        );
        targets.push(format!("{}.target", c.name));
        if i > 0 {
            accepted.push(c);
        }
    }
    assert!(
        accepted.len() >= SPECS / 2,
        "seed {seed}: only {} of {SPECS} generated apps were accepted",
        accepted.len()
    );
    let mut start = vec!["start"];
    start.extend(targets.iter().map(String::as_str));
    sb.systemctl(&start)
        .unwrap_or_else(|e| panic!("seed {seed}: starting the apps: {e}"));

    let report = |c: &Case| -> ProbeReport {
        let path = sb.root().join(format!("run/probe/{}/1.json", c.name));
        if wait_for(10, || path.exists().then_some(())).is_none() {
            let unit = format!("{}@1.service", c.name);
            let status = sb
                .command("systemctl")
                .args(["status", "--no-pager", "-l", &unit])
                .output()
                .unwrap();
            let journal = sb
                .command("journalctl")
                .args(["--no-pager", "-n", "20", "-u", &unit])
                .output()
                .unwrap();
            panic!(
                "seed {seed}: no probe report from {}:\n{}\n{}\n{}",
                c.name,
                c.text,
                String::from_utf8_lossy(&status.stdout),
                String::from_utf8_lossy(&journal.stdout)
            );
        }
        ProbeReport::read(&path).unwrap()
    };
    let base_report = report(&base);
    let os = |s: &str| OsString::from(s);
    let sysmgr_set: BTreeSet<OsString> = base_report
        .env
        .keys()
        .filter(|k| *k != "NODE_APP_INSTANCE")
        .cloned()
        .collect();
    for name in ["SYSMGR_APP", "SYSMGR_INSTANCE", "SYSMGR_PROBE_DIR", "PATH"] {
        assert!(sysmgr_set.contains(&os(name)), "the base app has no {name}");
    }

    let mut failures = Vec::new();
    for c in &accepted {
        let got = report(c);
        let want_argv: Vec<OsString> = c.argv.iter().map(|a| os(a)).collect();
        if got.argv != want_argv {
            failures.push(format!(
                "{}: argv {:?}, declared {:?}\n{}",
                c.name, got.argv, want_argv, c.text
            ));
        }
        let mut want: BTreeMap<OsString, OsString> =
            c.env.iter().map(|(k, v)| (os(k), os(v))).collect();
        want.insert(os(&c.instance_var), os("1"));
        want.insert(os("SYSMGR_APP"), os(&c.name));
        want.insert(os("SYSMGR_INSTANCE"), os("1"));
        want.insert(
            os("SYSMGR_PROBE_DIR"),
            os(&format!("/run/probe/{}", c.name)),
        );
        for (k, v) in &want {
            if got.env.get(k) != Some(v) {
                failures.push(format!(
                    "{}: {k:?} = {:?}, declared {v:?}\n{}",
                    c.name,
                    got.env.get(k),
                    c.text
                ));
            }
        }
        // Nothing else: exactly the variables every instance gets, plus the declared ones.
        let extra: Vec<&OsString> = got
            .env
            .keys()
            .filter(|k| !want.contains_key(*k) && !sysmgr_set.contains(*k))
            .collect();
        let missing: Vec<&OsString> = sysmgr_set
            .iter()
            .filter(|k| !got.env.contains_key(*k))
            .collect();
        if !extra.is_empty() || !missing.is_empty() {
            failures.push(format!(
                "{}: variables not declared {extra:?}, missing {missing:?}\n{}",
                c.name, c.text
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "seed {seed}: {} of {} apps differ:\n{}",
        failures.len(),
        accepted.len(),
        failures.join("\n")
    );
    eprintln!(
        "argv/env property: {} of {SPECS} generated apps accepted, each one's argv and environment exact (seed {seed})",
        accepted.len()
    );
}
