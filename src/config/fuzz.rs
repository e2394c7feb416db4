//! Fuzzing the app file -> spec -> units path: random app files, built from the key table
//! with valid and invalid values, PM2 ecosystem values, and byte mutations of both, go through
//! [`parse`](super::parse), [`render`](crate::render::render) and `sysmgr check`'s rows.
//!
//! Nothing may panic, and what comes out must mean what went in:
//! - a refused file has at least one error, each at a position inside the file;
//! - an accepted file renders units whose every line is a comment, a section or one
//!   `Directive=value` (no control character, no continuation backslash, no `%` that systemd
//!   would expand), whose `ExecStart=` splits back (as systemd splits it) into exactly `sysmgr
//!   exec` and the declared argv, whose `Environment=` lines give exactly the declared
//!   variables, and whose paths (`WorkingDirectory=`, unix `ListenStream=`) are the spec's;
//! - a file generated with a known `command` or `[env]` parses to exactly those values;
//! - an app file written by `sysmgr import` (`ecosystem::convert`) is valid TOML.
//!
//! `fast` runs a few thousand cases in the normal test suite; `long_run` (ignored) is the long
//! run, `scripts/fuzz COUNT` (docs/testing.md has the last count and time).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use serde_json::Value as Json;

use super::keys::KEYS;
use super::{ecosystem, parse, AppSpec, BridgePaths, ParseOptions, Runtime, Severity};
use crate::render::{render, Flavor};
use crate::systemd::syntax::systemd_unquote_words;
use crate::systemd::Manager;

// ---------------------------------------------------------------------------------------------
// A TOML document model, written out with every string form TOML has.

/// How a string is written.
#[derive(Debug, Clone, Copy)]
enum Form {
    Basic,
    Literal,
    MultiBasic,
    MultiLiteral,
}

/// A TOML value as the generator builds it.
#[derive(Debug, Clone)]
enum V {
    Str(String, Form),
    /// An integer, float, boolean or date, as its literal text.
    Lit(String),
    Arr(Vec<V>),
    /// A table, written inline (`{ a = 1 }`) or, where it can be, as a `[section]`.
    Table(Vec<(String, V)>, bool),
}

use super::ecosystem::{quote as basic, toml_key as key_text};

fn write_str(out: &mut String, s: &str, form: Form) {
    let plain = |allow_newline: bool| {
        !s.chars()
            .any(|c| c == '\'' || (c.is_control() && c != '\t' && !(allow_newline && c == '\n')))
    };
    match form {
        Form::Literal if plain(false) => {
            let _ = write!(out, "'{s}'");
        }
        Form::MultiLiteral if plain(true) && !s.starts_with('\n') => {
            let _ = write!(out, "'''{s}'''");
        }
        Form::MultiBasic => {
            out.push_str("\"\"\"");
            for (i, c) in s.chars().enumerate() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    '\n' if i > 0 => out.push('\n'),
                    '\t' => out.push('\t'),
                    c if c.is_control() => {
                        let _ = write!(out, "\\u{:04X}", c as u32);
                    }
                    c => out.push(c),
                }
            }
            out.push_str("\"\"\"");
        }
        _ => out.push_str(&basic(s)),
    }
}

fn write_inline(out: &mut String, v: &V) {
    match v {
        V::Str(s, form) => write_str(out, s, *form),
        V::Lit(l) => out.push_str(l),
        V::Arr(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_inline(out, item);
            }
            out.push(']');
        }
        V::Table(entries, _) => {
            out.push('{');
            for (i, (k, item)) in entries.iter().enumerate() {
                out.push_str(if i > 0 { ", " } else { " " });
                out.push_str(&key_text(k));
                out.push_str(" = ");
                write_inline(out, item);
            }
            out.push_str(" }");
        }
    }
}

/// The entries of one table: plain ones as `k = v`, then section tables as `[path.k]`.
fn write_table(out: &mut String, path: &[String], entries: &[(String, V)]) {
    for (k, v) in entries {
        if !matches!(v, V::Table(_, false)) {
            out.push_str(&key_text(k));
            out.push_str(" = ");
            write_inline(out, v);
            out.push('\n');
        }
    }
    for (k, v) in entries {
        if let V::Table(inner, false) = v {
            let mut p = path.to_vec();
            p.push(k.clone());
            let header: Vec<String> = p.iter().map(|k| key_text(k)).collect();
            let _ = writeln!(out, "\n[{}]", header.join("."));
            write_table(out, &p, inner);
        }
    }
}

fn document(entries: &[(String, V)]) -> String {
    let mut out = String::new();
    write_table(&mut out, &[], entries);
    out
}

// ---------------------------------------------------------------------------------------------
// Generators.

/// Characters that each mean something to TOML, to systemd's parser or to a shell.
const TRICKY: &[char] = &[
    ' ',
    ' ',
    '"',
    '\'',
    '\\',
    '%',
    '%',
    '$',
    ';',
    '\n',
    '\t',
    '\r',
    '\0',
    '\u{1b}',
    '\u{7f}',
    '\u{85}',
    'é',
    '☃',
    '漢',
    '\u{10FFFF}',
    '\u{FFFE}',
    '\u{FDD0}',
    '\u{FEFF}',
    '\u{2028}',
    '@',
    '#',
    '=',
    '[',
    ']',
    '{',
    '}',
    ':',
    '/',
    '.',
    '-',
    '~',
    '*',
    '`',
    'i',
    'n',
    'a',
    'Z',
    '0',
    '9',
    '_',
];

fn tricky_string(max: usize) -> BoxedStrategy<String> {
    prop::collection::vec(
        prop_oneof![
            6 => prop::sample::select(TRICKY),
            1 => any::<char>(),
        ],
        0..max,
    )
    .prop_map(|cs| cs.into_iter().collect())
    .boxed()
}

fn form() -> impl Strategy<Value = Form> {
    prop_oneof![
        6 => Just(Form::Basic),
        2 => Just(Form::Literal),
        1 => Just(Form::MultiBasic),
        1 => Just(Form::MultiLiteral),
    ]
}

fn s(st: impl Strategy<Value = String> + 'static) -> BoxedStrategy<V> {
    (st, form()).prop_map(|(s, f)| V::Str(s, f)).boxed()
}

fn lit(st: impl Strategy<Value = String> + 'static) -> BoxedStrategy<V> {
    st.prop_map(V::Lit).boxed()
}

fn strs(words: &'static [&'static str]) -> BoxedStrategy<V> {
    s(prop::sample::select(words).prop_map(str::to_string))
}

fn integer() -> BoxedStrategy<V> {
    lit(prop_oneof![
        3 => (-5i64..2000).prop_map(|n| n.to_string()),
        2 => any::<i64>().prop_map(|n| n.to_string()),
        2 => prop::sample::select(&[
            "+1", "-0", "+0", "0x7fffffffffffffff", "0xffffffffffffffffff", "0o777", "0b101",
            "1_000", "-9223372036854775808", "9223372036854775807", "9223372036854775808",
            "-9223372036854775809", "99999999999999999999999", "255", "256", "10000", "10001",
            "1048575", "1048576", "4294967295", "4294967296", "1024", "1025", "239", "100000",
        ][..])
        .prop_map(str::to_string),
    ])
}

fn scalar() -> BoxedStrategy<V> {
    prop_oneof![
        3 => s(tricky_string(12)),
        2 => integer(),
        1 => lit(prop::sample::select(&[
            "1.5", "1e300", "-0.0", "inf", "-inf", "nan", "3.14e-10", "0.1", "1e1000",
        ][..]).prop_map(str::to_string)),
        1 => lit(prop::sample::select(&["true", "false"][..]).prop_map(str::to_string)),
        1 => lit(prop::sample::select(&[
            "1979-05-27T07:32:00Z", "1979-05-27", "07:32:00", "1979-05-27T00:32:00.999999-07:00",
        ][..]).prop_map(str::to_string)),
    ]
    .boxed()
}

/// Any value: the wrong type for most keys.
fn any_value() -> BoxedStrategy<V> {
    scalar()
        .prop_recursive(2, 8, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(V::Arr),
                prop::collection::vec((any_key(), inner), 0..4)
                    .prop_map(|e| V::Table(dedup(e), true)),
            ]
        })
        .boxed()
}

fn dedup(entries: Vec<(String, V)>) -> Vec<(String, V)> {
    let mut out: Vec<(String, V)> = Vec::new();
    for (k, v) in entries {
        if !out.iter().any(|(o, _)| *o == k) {
            out.push((k, v));
        }
    }
    out
}

fn any_key() -> BoxedStrategy<String> {
    prop_oneof![
        3 => "[a-z_]{1,8}",
        1 => tricky_string(6),
    ]
    .boxed()
}

fn env_name() -> BoxedStrategy<String> {
    prop_oneof![
        6 => "[A-Z_][A-Z0-9_]{0,6}",
        1 => prop::sample::select(&[
            "SYSMGR_APP", "SYSMGR_INSTANCE", "LISTEN_FDS", "NOTIFY_SOCKET", "NODE_APP_INSTANCE",
            "MAINPID", "1A", "A-B", "a.b", "é", "PATH", "HOME", "LANG",
        ][..]).prop_map(str::to_string),
        1 => tricky_string(5),
    ]
    .boxed()
}

fn env_table() -> BoxedStrategy<V> {
    prop::collection::vec(
        (
            env_name(),
            prop_oneof![8 => s(tricky_string(16)), 2 => scalar(), 1 => any_value()],
        ),
        0..6,
    )
    .prop_flat_map(|e| (Just(dedup(e)), prop::bool::weighted(0.2)))
    .prop_map(|(e, inline)| V::Table(e, inline))
    .boxed()
}

/// A program: mostly something systemd accepts.
fn program() -> BoxedStrategy<String> {
    prop_oneof![
        4 => prop::sample::select(&[
            "/bin/app", "/usr/bin/node", "node", "nodejs", "python3", "/opt/my app/run",
            "/srv/100%/bin", "./app", "bin/app", "-node", "@x", "/bin/$x", "", "/usr/bin/sh",
        ][..]).prop_map(str::to_string),
        1 => tricky_string(10),
    ]
    .boxed()
}

fn argv() -> BoxedStrategy<Vec<String>> {
    (
        program(),
        prop::collection::vec(
            prop_oneof![
                3 => tricky_string(12),
                1 => prop::sample::select(&["--help", "-h", "--", "-", "exec", "--require", "app.js", "%i", "$HOME", "${X}", "$$"][..])
                    .prop_map(str::to_string),
            ],
            0..6,
        ),
    )
        .prop_map(|(p, rest)| std::iter::once(p).chain(rest).collect())
        .boxed()
}

/// A command string from words, quoted the way a person might (or not at all).
fn shell_string(words: &[String], style: u8) -> String {
    words
        .iter()
        .map(|w| match style % 3 {
            0 => format!("'{}'", w.replace('\'', "'\\''")),
            1 => format!(
                "\"{}\"",
                w.replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('$', "\\$")
                    .replace('`', "\\`")
            ),
            _ => w.clone(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn duration() -> BoxedStrategy<V> {
    prop_oneof![
        2 => integer(),
        2 => strs(&["10s", "1.5s", "0s", "500ms", "2min", "1h", "10", "s", "-1s", "99999999999999999h", "18446744073709551615ms", " 5 s ", "5 sec", "1m"]),
    ]
    .boxed()
}

fn listen_entry() -> BoxedStrategy<V> {
    let address = prop_oneof![
        3 => (1u16..=65535).prop_map(|p| format!("127.0.0.1:{p}")),
        1 => (0u16..=65535).prop_map(|p| p.to_string()),
        1 => (1u16..=65535).prop_map(|p| format!("[::1]:{p}")),
        1 => prop::sample::select(&[
            "/run/app/http.sock", "/run/a%b.sock", "/run/a b.sock", "/run/x\\", "/run/x ", " /run/x",
            "localhost:3000", "127.0.0.1", "::1", "0", "3000", "127.0.0.1:3000", "[::]:3000", "0.0.0.0:3000",
        ][..]).prop_map(str::to_string),
        1 => tricky_string(10).prop_map(|s| format!("/run/{s}")),
        1 => tricky_string(10),
    ];
    prop_oneof![
        4 => s(address.clone()),
        2 => (s(address), prop_oneof![strs(&["http", "admin", "a:b", "", "x y"]), any_value()], any::<u8>())
            .prop_map(|(a, n, flags)| {
                let mut e = Vec::new();
                if flags & 1 == 0 { e.push(("address".to_string(), a)); }
                if flags & 2 == 0 { e.push(("name".to_string(), n)); }
                if flags & 12 == 0 { e.push(("port".to_string(), V::Lit("3".into()))); }
                V::Table(e, true)
            }),
        1 => any_value(),
    ]
    .boxed()
}

/// A value for key `name`: mostly of the key's kind (valid or not), sometimes any value.
fn value_for(name: &'static str) -> BoxedStrategy<V> {
    let kind: BoxedStrategy<V> = match name {
        "name" => prop_oneof![
            4 => s("[a-zA-Z0-9_][a-zA-Z0-9._-]{0,12}"),
            1 => strs(&["all", "", "-x", ".x", "a/b", "a@b", "é"]),
            1 => s("[a-z]{60,70}"),
        ]
        .boxed(),
        "description" => s(tricky_string(20)),
        "command" => prop_oneof![
            3 => argv().prop_flat_map(|w| {
                let n = w.len();
                (prop::collection::vec(form(), n), Just(w))
            }).prop_map(|(forms, w)| V::Arr(w.into_iter().zip(forms).map(|(w, f)| V::Str(w, f)).collect())),
            1 => (argv(), any::<u8>(), form()).prop_map(|(w, style, f)| V::Str(shell_string(&w, style), f)),
            1 => s(tricky_string(20)),
            1 => Just(V::Arr(Vec::new())),
        ]
        .boxed(),
        "cwd" | "state_directory" => prop_oneof![
            2 => strs(&["/srv/app", "app", ".", "..", "/srv/../etc", "/srv/a b", "/srv/a%b", "/srv/x\\", "/srv/x ", " /srv/x", "web/cache", "", "/", "~", "-x", "/srv//x/"]),
            1 => s(tricky_string(12)),
            1 => s(tricky_string(12).prop_map(|s| format!("/srv/{s}"))),
        ]
        .boxed(),
        "user" | "group" => prop_oneof![
            2 => strs(&["www-data", "root", "0", "1000", "_x", "-x", "a b", "", "averyveryverylongusernamethatistoolong"]),
            1 => s(tricky_string(8)),
        ]
        .boxed(),
        "instances" => prop_oneof![3 => integer(), 1 => strs(&["max", "MAX", "0", "4", ""])].boxed(),
        "instance_var" => prop_oneof![3 => s(env_name()), 1 => strs(&["NODE_APP_INSTANCE", "SYSMGR_APP"])].boxed(),
        "socket" => strs(&["shared", "per-instance", "per_instance", ""]),
        "listen" => prop_oneof![
            4 => prop::collection::vec(listen_entry(), 0..4).prop_map(V::Arr),
            1 => s(tricky_string(8)),
        ]
        .boxed(),
        "listen_timeout" | "kill_timeout" | "restart_delay" | "watchdog" => duration(),
        "kill_signal" => prop_oneof![
            3 => strs(&["SIGINT", "SIGTERM", "term", "SIGKILL", "hup", "SIGFOO", "", "sig", "SIGint"]),
            1 => s(tricky_string(6)),
        ]
        .boxed(),
        "max_restarts" | "systemd_version" => integer(),
        "max_memory_restart" => prop_oneof![
            2 => integer(),
            2 => strs(&["300M", "1G", "512K", "1gb", "12", "18446744073709551615G", "9999999999999999999", "1.5G", "M", "1 G", "-1M"]),
        ]
        .boxed(),
        "stop_exit_codes" => prop_oneof![
            1 => integer(),
            2 => prop::collection::vec(integer(), 0..4).prop_map(V::Arr),
        ]
        .boxed(),
        "env" => env_table(),
        "hardening" => strs(&["default", "strict", "off", "paranoid", ""]),
        "writable_paths" => prop::collection::vec(
            prop_oneof![
                2 => strs(&["uploads", "/var/spool/web", "/srv/a b", "/srv/a%b", "/srv/x\\", "", "..", "/srv/../x"]),
                1 => s(tricky_string(10)),
                1 => any_value(),
            ],
            0..3,
        )
        .prop_map(V::Arr)
        .boxed(),
        "address_families" => prop::collection::vec(
            prop_oneof![
                2 => strs(&["AF_NETLINK", "AF_PACKET", "netlink", "AF_", "AF_X1"]),
                1 => s(tricky_string(6)),
            ],
            0..3,
        )
        .prop_map(V::Arr)
        .boxed(),
        "unit" => prop::collection::vec(
            (
                prop_oneof![4 => Just("service".to_string()), 1 => Just("socket".to_string()), 1 => any_key()],
                prop::collection::vec(
                    (
                        prop_oneof![
                            3 => prop::sample::select(&["LimitNOFILE", "Nice", "PrivateDevices", "ExecStart", "Type", "Environment", "TimeoutStopSec"][..]).prop_map(str::to_string),
                            1 => "[A-Z][A-Za-z0-9]{0,10}",
                            1 => tricky_string(6),
                        ],
                        prop_oneof![3 => s(tricky_string(12)), 2 => scalar(), 1 => any_value()],
                    ),
                    0..4,
                )
                .prop_map(dedup),
                any::<bool>(),
            ),
            0..3,
        )
        .prop_map(|sections| {
            let entries = sections.into_iter().map(|(k, e, inline)| (k, V::Table(e, inline))).collect();
            V::Table(dedup(entries), false)
        })
        .boxed(),
        _ => prop_oneof![strs(&["true", "false"]), lit(prop::sample::select(&["true", "false"][..]).prop_map(str::to_string))].boxed(),
    };
    prop_oneof![6 => kind, 1 => any_value()].boxed()
}

/// A string systemd can carry in an argument or a variable: no NUL, no ASCII control but tab
/// and newline.
fn carried_string(max: usize) -> BoxedStrategy<String> {
    tricky_string(max)
        .prop_map(|s| {
            s.chars()
                .filter(|c| !c.is_ascii_control() || matches!(c, '\t' | '\n'))
                .collect()
        })
        .boxed()
}

/// A value for key `name` that the checker accepts (mostly: keys can still conflict).
fn valid_for(name: &'static str) -> BoxedStrategy<V> {
    match name {
        "description" => s(tricky_string(20)),
        "cwd" => prop_oneof![
            2 => strs(&["/srv/app", "app", ".", "..", "/srv/a b", "/srv/a%b", "web/../x", "/srv/é☃", "/srv//x/", "-x", "~"]),
            1 => s(carried_string(12).prop_map(|s| format!("/srv/{}x", s.replace(['\n', '\t'], "")))),
        ]
        .boxed(),
        "user" | "group" => s(prop_oneof!["[a-z_][a-z0-9_-]{0,10}", "[0-9]{1,5}"]),
        "dynamic_user" => lit(Just("false".to_string())),
        "instances" => prop_oneof![3 => lit((-1i64..=16).prop_map(|n| n.to_string())), 1 => strs(&["max"])].boxed(),
        "instance_var" => s("[A-Z][A-Z0-9_]{0,6}"),
        "socket" => strs(&["shared", "per-instance"]),
        "listen" => prop::collection::btree_set(1u16..=65535, 0..3)
            .prop_flat_map(|ports| {
                let n = ports.len();
                (Just(ports), prop::collection::vec(0u8..4, n))
            })
            .prop_map(|(ports, kinds)| {
                V::Arr(ports.into_iter().zip(kinds).map(|(p, k)| match k {
                    0 => V::Str(format!("127.0.0.1:{p}"), Form::Basic),
                    1 => V::Str(format!("[::1]:{p}"), Form::Literal),
                    2 => V::Table(vec![("address".into(), V::Str(format!("/run/app/s{p}.sock"), Form::Basic)), ("name".into(), V::Str(format!("n{p}"), Form::Basic))], true),
                    _ => V::Str(p.to_string(), Form::Basic),
                }).collect())
            })
            .boxed(),
        "listen_timeout" | "kill_timeout" | "restart_delay" | "watchdog" => prop_oneof![
            lit((1i64..100_000).prop_map(|n| n.to_string())),
            strs(&["10s", "500ms", "2min", "1h"]),
        ]
        .boxed(),
        "kill_signal" => strs(&["SIGINT", "SIGTERM", "term", "hup", "SIGUSR2", "SIGKILL"]),
        "max_restarts" => lit((1i64..=10_000).prop_map(|n| n.to_string())),
        "systemd_version" => lit((239i64..300).prop_map(|n| n.to_string())),
        "max_memory_restart" => strs(&["300M", "1G", "512M", "1048576"]),
        "stop_exit_codes" => prop::collection::vec(lit((0i64..=255).prop_map(|n| n.to_string())), 0..3).prop_map(V::Arr).boxed(),
        "env" => prop::collection::vec(
            ("[A-Z][A-Z0-9_]{0,6}", prop_oneof![6 => s(carried_string(16)), 1 => integer(), 1 => lit(Just("true".to_string()))]),
            0..6,
        )
        .prop_flat_map(|e| (Just(dedup(e)), prop::bool::weighted(0.2)))
        .prop_map(|(e, inline)| V::Table(e, inline))
        .boxed(),
        "hardening" => strs(&["default", "strict", "off"]),
        "memory_limit_mode" => strs(&["graceful", "hard"]),
        "cron_restart" => strs(&["0 3 * * *", "*/15 * * * *", "@daily", "Mon *-*-* 04:00:00"]),
        "health_check" => strs(&["/health", "/ready?deep=1&x=%20"]),
        "deploy" => Just(V::Table(vec![("production".into(), V::Table(vec![
            ("hosts".into(), V::Str("deploy@10.0.0.5".into(), Form::Basic)),
            ("repo".into(), V::Str("git@example.com:you/app.git".into(), Form::Basic)),
            ("path".into(), V::Str("/srv/web".into(), Form::Basic)),
        ], false))], false)).boxed(),
        "state_directory" => s("[a-z]{1,6}(/[a-z]{1,6})?"),
        "writable_paths" => prop::collection::vec(strs(&["uploads", "/var/spool/web", "/srv/a%b", "../x"]), 0..3).prop_map(V::Arr).boxed(),
        "address_families" => prop::collection::vec(strs(&["AF_NETLINK", "AF_PACKET"]), 0..2).prop_map(V::Arr).boxed(),
        "unit" => Just(V::Table(vec![("service".into(), V::Table(vec![
            ("LimitNOFILE".into(), V::Lit("65536".into())),
            ("Nice".into(), V::Str("5".into(), Form::Basic)),
        ], false))], false)).boxed(),
        _ => lit(prop::sample::select(&["true", "false"][..]).prop_map(str::to_string)),
    }
}

fn valid_command() -> BoxedStrategy<V> {
    (
        prop::sample::select(
            &[
                "/bin/app",
                "/usr/bin/node",
                "node",
                "python3",
                "/opt/my app/run",
                "/srv/100%/bin",
                "/usr/bin/sh",
                "/srv/é☃/a;b",
            ][..],
        ),
        prop::collection::vec((carried_string(12), form()), 0..6),
    )
        .prop_map(|(p, args)| {
            V::Arr(
                std::iter::once(V::Str(p.to_string(), Form::Basic))
                    .chain(args.into_iter().map(|(a, f)| V::Str(a, f)))
                    .collect(),
            )
        })
        .boxed()
}

/// A document the checker mostly accepts: every key of the table may appear, with values of
/// its kind that are valid, tricky strings included.
fn mostly_valid() -> BoxedStrategy<Generated> {
    let optional: Vec<BoxedStrategy<Option<(String, V)>>> = KEYS
        .iter()
        .map(|k| k.name)
        .filter(|n| !matches!(*n, "name" | "command"))
        .map(|n| {
            prop::option::weighted(0.3, valid_for(n).prop_map(move |v| (n.to_string(), v))).boxed()
        })
        .collect();
    (
        s("[a-zA-Z0-9_][a-zA-Z0-9._-]{0,12}"),
        valid_command(),
        optional,
        prop::option::weighted(0.3, valid_for("env")),
        parse_options(),
        source(),
        1usize..=8,
    )
        .prop_flat_map(
            |(name, command, optional, profile, mut opts, source, cores)| {
                opts.user_manager = false;
                let mut entries =
                    vec![("name".to_string(), name), ("command".to_string(), command)];
                entries.extend(optional.into_iter().flatten());
                if let Some(p) = profile {
                    entries.push(("env_production".to_string(), p));
                    opts.profile = Some("production".into());
                } else {
                    opts.profile = None;
                }
                (
                    Just(entries).prop_shuffle(),
                    Just(opts),
                    Just(source),
                    Just(cores),
                )
            },
        )
        .prop_map(|(entries, opts, source, cores)| Generated {
            entries,
            opts,
            source,
            cores,
        })
        .boxed()
}

/// Top-level names that are not keys.
const NOT_KEYS: &[&str] = &[
    "script",
    "args",
    "watch",
    "out_file",
    "apps",
    "port",
    "exec_mode",
    "namespace",
    "instance",
    "comand",
    "env_",
    "cron_restart",
    "min_uptime",
    "nme",
    "wait-ready",
];

/// One generated app file: its entries, and the command and environment it declares.
#[derive(Debug, Clone)]
struct Generated {
    entries: Vec<(String, V)>,
    opts: ParseOptions,
    source: PathBuf,
    cores: usize,
}

fn parse_options() -> BoxedStrategy<ParseOptions> {
    (
        prop_oneof![
            4 => Just(None),
            1 => prop::sample::select(&["production", "staging", "x", ""][..]).prop_map(|p| Some(p.to_string())),
        ],
        prop::bool::weighted(0.15),
        prop::sample::select(&[None, Some(0), Some(239), Some(240), Some(247), Some(252), Some(255), Some(100_000)][..]),
        prop::sample::select(&[
            "/usr/bin/sysmgr", "/opt/my tools/sys%mgr", "/home/u/x\"y/sysmgr", "/srv/é/sysmgr",
        ][..]),
    )
        .prop_map(|(profile, user_manager, systemd, sysmgr)| ParseOptions {
            profile,
            user_manager,
            bridge: BridgePaths {
                sysmgr: PathBuf::from(sysmgr),
                script: PathBuf::from(format!("{}.d/bridge %i.cjs", sysmgr)),
            },
            systemd,
        })
        .boxed()
}

fn source() -> BoxedStrategy<PathBuf> {
    prop_oneof![
        8 => Just(PathBuf::from("/srv/web/app.toml")),
        1 => prop::sample::select(&[
            "/app.toml", "/srv/my app/app.toml", "/srv/100%/app.toml", "/srv/x\\/app.toml",
            "/srv/x /app.toml", "/srv/a\nb/app.toml", "/srv/$HOME/app.toml", "/srv/é☃/app.toml",
        ][..]).prop_map(PathBuf::from),
    ]
    .boxed()
}

fn generated() -> BoxedStrategy<Generated> {
    let others: Vec<&'static str> = KEYS
        .iter()
        .map(|k| k.name)
        .filter(|n| !matches!(*n, "name" | "command"))
        .collect();
    let optional: Vec<BoxedStrategy<Option<(String, V)>>> = others
        .into_iter()
        .map(|n| {
            prop::option::weighted(0.25, value_for(n).prop_map(move |v| (n.to_string(), v))).boxed()
        })
        .collect();
    let profiles = prop::collection::vec(
        (
            prop_oneof![4 => Just("production".to_string()), 1 => Just("staging".to_string()), 1 => any_key()],
            prop_oneof![5 => env_table(), 1 => any_value()],
        )
            .prop_map(|(p, t)| (format!("env_{p}"), t)),
        0..3,
    );
    let junk = prop::collection::vec(
        (
            prop_oneof![3 => prop::sample::select(NOT_KEYS).prop_map(str::to_string), 1 => any_key()],
            any_value(),
        ),
        0..2,
    );
    (
        prop::option::weighted(0.95, value_for("name")),
        prop::option::weighted(0.95, value_for("command")),
        optional,
        profiles,
        prop::option::weighted(0.1, junk),
        parse_options(),
        source(),
        1usize..=8,
    )
        .prop_flat_map(
            |(name, command, optional, profiles, junk, opts, source, cores)| {
                let mut entries: Vec<(String, V)> = Vec::new();
                entries.extend(name.map(|v| ("name".to_string(), v)));
                entries.extend(command.map(|v| ("command".to_string(), v)));
                entries.extend(optional.into_iter().flatten());
                entries.extend(profiles);
                entries.extend(junk.into_iter().flatten());
                (
                    Just(dedup(entries)).prop_shuffle(),
                    Just(opts),
                    Just(source),
                    Just(cores),
                )
            },
        )
        .prop_map(|(entries, opts, source, cores)| Generated {
            entries,
            opts,
            source,
            cores,
        })
        .boxed()
}

/// A byte-level change to a file.
#[derive(Debug, Clone)]
enum Mutation {
    Delete(usize, usize),
    Insert(usize, Vec<u8>),
    Replace(usize, u8),
    Duplicate(usize, usize),
    Truncate(usize),
}

fn mutations() -> BoxedStrategy<Vec<Mutation>> {
    let byte = prop_oneof![
        3 => prop::sample::select(b"\"'[]{}=,.#\\\n\r\t 0123456789-+_:xeE%$@".to_vec()),
        1 => any::<u8>(),
    ];
    prop::collection::vec(
        prop_oneof![
            (any::<usize>(), 1usize..8).prop_map(|(a, n)| Mutation::Delete(a, n)),
            (any::<usize>(), prop::collection::vec(byte.clone(), 1..6))
                .prop_map(|(a, b)| Mutation::Insert(a, b)),
            (any::<usize>(), byte).prop_map(|(a, b)| Mutation::Replace(a, b)),
            (any::<usize>(), 1usize..40).prop_map(|(a, n)| Mutation::Duplicate(a, n)),
            any::<usize>().prop_map(Mutation::Truncate),
        ],
        1..6,
    )
    .boxed()
}

fn mutate(text: &str, mutations: &[Mutation]) -> String {
    let mut b = text.as_bytes().to_vec();
    for m in mutations {
        let at = |i: usize, b: &Vec<u8>| if b.is_empty() { 0 } else { i % (b.len() + 1) };
        match m {
            Mutation::Delete(i, n) => {
                let a = at(*i, &b);
                let e = (a + n).min(b.len());
                b.drain(a..e);
            }
            Mutation::Insert(i, bytes) => {
                let a = at(*i, &b);
                b.splice(a..a, bytes.iter().copied());
            }
            Mutation::Replace(i, byte) => {
                if !b.is_empty() {
                    let a = i % b.len();
                    b[a] = *byte;
                }
            }
            Mutation::Duplicate(i, n) => {
                let a = at(*i, &b);
                let e = (a + n).min(b.len());
                let copy = b[a..e].to_vec();
                b.splice(e..e, copy);
            }
            Mutation::Truncate(i) => {
                let a = at(*i, &b);
                b.truncate(a);
            }
        }
    }
    // `load` refuses a file that is not UTF-8; what it would pass on is UTF-8 text.
    String::from_utf8_lossy(&b).into_owned()
}

/// App files written by hand, mutated byte by byte.
const SEEDS: &[&str] = &[
    include_str!("../../tests/golden/api.toml"),
    include_str!("../../tests/golden/hello.toml"),
    include_str!("../../packaging/etc/sysmgr/example.toml.sample"),
    "name = \"web\"\ncommand = \"node app.js --port 3000 'a b' \\\"$HOME\\\"\"\ninstances = \"max\"\nlisten = [\"3000\", { address = \"/run/web/admin.sock\", name = \"admin\" }]\nhardening = \"strict\"\ndynamic_user = true\nstate_directory = \"web\"\nwritable_paths = [\"uploads\"]\naddress_families = [\"AF_NETLINK\"]\n[env]\nA = \"50% $x\"\n[env_production]\nA = 1\n[unit.service]\nLimitNOFILE = 65536\n",
];

/// PM2 ecosystem values: `apps` of objects with PM2's keys and random values.
fn ecosystem_value() -> BoxedStrategy<Json> {
    fn json_leaf() -> BoxedStrategy<Json> {
        prop_oneof![
            4 => tricky_string(12).prop_map(Json::String),
            2 => any::<i64>().prop_map(Json::from),
            1 => (-3i64..20).prop_map(Json::from),
            1 => any::<u64>().prop_map(Json::from),
            1 => any::<f64>().prop_map(Json::from),
            1 => any::<bool>().prop_map(Json::Bool),
            1 => Just(Json::Null),
            1 => prop::sample::select(&["max", "3000", "127.0.0.1:3000", "0005", "+5", " 5", "node", "none", "app.js", "-1"][..])
                .prop_map(|s| Json::String(s.to_string())),
        ]
        .boxed()
    }
    let any_json = json_leaf().prop_recursive(2, 8, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Json::Array),
            prop::collection::vec((tricky_string(6), inner), 0..4)
                .prop_map(|e| Json::Object(e.into_iter().collect())),
        ]
    });
    let pm2_key = prop_oneof![
        6 => prop::sample::select(&[
            "name", "script", "args", "interpreter", "exec_interpreter", "interpreter_args", "node_args",
            "cwd", "instances", "listen", "wait_ready", "listen_timeout", "kill_timeout", "kill_signal",
            "shutdown_with_message", "autorestart", "max_restarts", "restart_delay", "max_memory_restart",
            "stop_exit_codes", "user", "uid", "gid", "env", "env_production", "instance_var", "watch",
            "out_file", "exec_mode", "instance", "port", "env_a b", "env_x]", "env_\"", "env_",
        ][..]).prop_map(str::to_string),
        1 => tricky_string(6),
    ];
    let app = prop::collection::vec((pm2_key, any_json.clone()), 0..10).prop_map(|e| {
        let mut m: serde_json::Map<String, Json> = e.into_iter().collect();
        if !m.contains_key("script") {
            m.insert("script".into(), Json::String("app.js".into()));
        }
        Json::Object(m)
    });
    prop_oneof![
        8 => prop::collection::vec(app, 1..3).prop_map(|apps| serde_json::json!({ "apps": apps })),
        1 => any_json,
    ]
    .boxed()
}

/// One fuzz input.
#[derive(Debug, Clone)]
enum Input {
    /// A document built from the key table.
    Doc(Generated),
    /// A generated document, then mutated.
    MutatedDoc(Generated, Vec<Mutation>),
    /// A hand-written file, mutated.
    MutatedSeed(usize, Vec<Mutation>, ParseOptions),
    /// An ecosystem value, converted, then parsed.
    Ecosystem(Json, Option<String>, Option<String>),
}

fn input() -> BoxedStrategy<Input> {
    prop_oneof![
        6 => generated().prop_map(Input::Doc),
        6 => mostly_valid().prop_map(Input::Doc),
        3 => (generated(), mutations()).prop_map(|(g, m)| Input::MutatedDoc(g, m)),
        3 => (0..SEEDS.len(), mutations(), parse_options()).prop_map(|(i, m, o)| Input::MutatedSeed(i, m, o)),
        3 => (
            ecosystem_value(),
            prop::option::of(prop_oneof![Just("127.0.0.1:3000".to_string()), tricky_string(8)]),
            prop::option::of(prop_oneof![Just("production".to_string()), tricky_string(4)]),
        )
            .prop_map(|(v, l, p)| Input::Ecosystem(v, l, p)),
    ]
    .boxed()
}

// ---------------------------------------------------------------------------------------------
// The checks.

fn fail(message: impl Into<String>) -> TestCaseError {
    TestCaseError::fail(message.into())
}

/// `value` with systemd's `%%` undone, refusing any other `%` (a specifier sysmgr did not
/// mean to write).
fn unpercent(value: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c == '%' {
            match chars.next() {
                Some('%') => out.push('%'),
                other => {
                    return Err(format!(
                        "`{value}` has the specifier `%{}`",
                        other.unwrap_or(' ')
                    ))
                }
            }
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

/// How many inputs were accepted (rendered and checked), to show the generators get that far.
static ACCEPTED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Parses `text`; checks the diagnostics, and what an accepted file renders to.
fn check_text(
    text: &str,
    opts: &ParseOptions,
    source: &Path,
    cores: usize,
) -> Result<Option<AppSpec>, TestCaseError> {
    let lines = text.split('\n').count();
    let positions_ok = |d: &super::Diagnostics| {
        d.0.iter()
            .all(|d| d.line >= 1 && d.line <= lines && d.col >= 1 && !d.message.is_empty())
    };
    match parse(text, "app.toml", source, opts) {
        Err(d) => {
            let _ = d.to_string();
            if !d.has_errors() {
                return Err(fail("refused without an error"));
            }
            if !positions_ok(&d) {
                return Err(fail(format!("a diagnostic is outside the file:\n{d}")));
            }
            Ok(None)
        }
        Ok(parsed) => {
            ACCEPTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if parsed
                .warnings
                .0
                .iter()
                .any(|d| d.severity == Severity::Error)
                || !positions_ok(&parsed.warnings)
            {
                return Err(fail(format!("bad warnings:\n{}", parsed.warnings)));
            }
            check_spec(&parsed.spec, cores)?;
            Ok(Some(parsed.spec))
        }
    }
}

/// Renders an accepted spec and checks the units mean what the spec says.
fn check_spec(spec: &AppSpec, cores: usize) -> Result<(), TestCaseError> {
    let n = spec
        .instances
        .resolve(NonZeroUsize::new(cores).unwrap_or(NonZeroUsize::MIN));
    for key in KEYS {
        let _ = key.check_rows(spec, n);
    }
    let _ = super::hardening::opened(spec);
    for (manager, flavor) in [
        (Manager::System, Flavor::Generate),
        (Manager::User, Flavor::Generator),
    ] {
        let rendered = render(spec, n, manager, flavor);
        if rendered.links.len() < n.get() as usize {
            return Err(fail("fewer wants links than instances"));
        }
        for file in &rendered.files {
            check_unit(spec, &file.name, &file.contents)
                .map_err(|e| fail(format!("{}: {e}\n{}", file.name, file.contents)))?;
        }
    }
    Ok(())
}

fn check_unit(spec: &AppSpec, name: &str, contents: &str) -> Result<(), String> {
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@' | ':'))
    {
        return Err(format!("unit file name `{name}`"));
    }
    let mut exec = Vec::new();
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    for line in contents.lines() {
        if let Some(c) = line
            .chars()
            .find(|&c| c.is_control() || crate::systemd::syntax::is_noncharacter(c))
        {
            return Err(format!(
                "line {line:?} has the character {c:?}, which systemd refuses"
            ));
        }
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.starts_with('[') {
            if !line.ends_with(']') {
                return Err(format!("section line {line:?}"));
            }
            continue;
        }
        let Some((directive, value)) = line.split_once('=') else {
            return Err(format!("line {line:?} is not `Directive=value`"));
        };
        let directive_ok = directive.starts_with(|c: char| c.is_ascii_uppercase())
            && directive.chars().all(|c| c.is_ascii_alphanumeric());
        if !directive_ok {
            return Err(format!("line {line:?}: directive `{directive}`"));
        }
        if value.ends_with('\\') {
            return Err(format!(
                "line {line:?} ends with a backslash: systemd joins the next line"
            ));
        }
        match directive {
            "ExecStart" => {
                unpercent(value)?;
                exec.push(systemd_unquote_words(value, true));
            }
            "Environment" => {
                // sysmgr's own specifiers are the only ones: `%i` (SYSMGR_INSTANCE,
                // instance_var), the crash-loop brake's `%t/sysmgr-restarts/%n`, and the
                // health check's `%t/sysmgr/NAME/health-%i.sock` and `NAME-sysmgr-check@%i`.
                let own = value
                    .replace("=%i\"", "=\"")
                    .replace("=%t/sysmgr-restarts/%n\"", "=\"")
                    .replace("=%t/sysmgr/", "=/")
                    .replace("-%i.sock\"", ".sock\"")
                    .replace("@%i.service\"", ".service\"");
                unpercent(&own)?;
                for word in systemd_unquote_words(value, false) {
                    let Some((k, v)) = word.split_once('=') else {
                        return Err(format!("`Environment=` word `{word}` has no `=`"));
                    };
                    env.insert(k.to_string(), v.to_string());
                }
            }
            "WorkingDirectory" => {
                let path = unpercent(value)?;
                if value.trim() != value || Path::new(&path) != spec.cwd {
                    return Err(format!(
                        "WorkingDirectory={value} is not the cwd {:?}",
                        spec.cwd
                    ));
                }
            }
            // The health check's socket: sysmgr's own path in the runtime directory.
            "ListenStream"
                if name == format!("{}-sysmgr-health@.socket", spec.name)
                    && value != format!("%t/sysmgr/{}/health-%i.sock", spec.name) =>
            {
                return Err(format!("ListenStream={value} is not the health socket's"));
            }
            "ListenStream" if name == format!("{}-sysmgr-health@.socket", spec.name) => {}
            "ListenStream" => {
                let address = unpercent(value)?;
                if value.trim() != value
                    || !spec.listen.iter().any(|l| {
                        l.address.systemd_value() == value
                            && (!l.address.is_unix()
                                || Path::new(&address) == Path::new(&l.address.to_string()))
                    })
                {
                    return Err(format!("ListenStream={value} is not declared"));
                }
            }
            "ReadWritePaths" => {
                let paths = unpercent(value)?;
                let want: Vec<String> = spec
                    .writable_paths
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect();
                if paths.split(' ').collect::<Vec<_>>() != want {
                    return Err(format!("ReadWritePaths={value} is not {want:?}"));
                }
            }
            "User" | "Group" | "StateDirectory" | "RestrictAddressFamilies"
                if value.trim() != value || value.contains('%') =>
            {
                return Err(format!("{directive}={value}"));
            }
            _ => {}
        }
    }
    // The instances' template; the app's other services (timers', health check's) run
    // sysmgr itself or the check's own command.
    if name == format!("{}@.service", spec.name) {
        let [argv] = exec.as_slice() else {
            return Err(format!("{} ExecStart= lines", exec.len()));
        };
        let mut want = vec![
            spec.runtime.sysmgr().display().to_string(),
            "exec".to_string(),
        ];
        match &spec.runtime {
            Runtime::Direct { .. } => want.extend(spec.command.iter().cloned()),
            Runtime::Node(bridge) => {
                want.push(spec.command[0].clone());
                want.push("--require".into());
                want.push(bridge.script.display().to_string());
                want.extend(spec.command[1..].iter().cloned());
            }
        }
        if *argv != want {
            return Err(format!("ExecStart= gives {argv:?}, not {want:?}"));
        }
        let mut declared: BTreeMap<&str, &str> = BTreeMap::new();
        for (k, v) in &spec.env {
            declared.insert(k, v);
        }
        for (k, v) in &declared {
            if env.get(*k).map(String::as_str) != Some(*v) {
                return Err(format!("variable {k}: {:?}, not {v:?}", env.get(*k)));
            }
        }
        if env.get("SYSMGR_APP").map(String::as_str) != Some(spec.name.as_str())
            || env.get("SYSMGR_INSTANCE").map(String::as_str) != Some("%i")
        {
            return Err("SYSMGR_APP or SYSMGR_INSTANCE was overridden".into());
        }
    }
    Ok(())
}

/// What a generated document declares, to compare with what parsing made of it.
fn declared_command(g: &Generated) -> Option<Vec<String>> {
    match g.entries.iter().find(|(k, _)| k == "command")?.1 {
        V::Arr(ref items) => items
            .iter()
            .map(|v| match v {
                V::Str(s, _) => Some(s.clone()),
                _ => None,
            })
            .collect(),
        _ => None,
    }
}

fn declared_env(g: &Generated) -> Option<Vec<(String, String)>> {
    if g.opts.profile.is_some() {
        return None;
    }
    match g.entries.iter().find(|(k, _)| k == "env") {
        None => Some(Vec::new()),
        Some((_, V::Table(vars, _))) => vars
            .iter()
            .map(|(k, v)| match v {
                V::Str(s, _) => Some((k.clone(), s.clone())),
                _ => None,
            })
            .collect(),
        Some(_) => None,
    }
}

fn check_input(input: &Input) -> Result<(), TestCaseError> {
    match input {
        Input::Doc(g) => {
            let text = document(&g.entries);
            if let Some(spec) = check_text(&text, &g.opts, &g.source, g.cores)? {
                if let Some(command) = declared_command(g) {
                    prop_assert_eq!(&spec.command, &command, "command of\n{}", text);
                }
                if let Some(env) = declared_env(g) {
                    prop_assert_eq!(&spec.env, &env, "env of\n{}", text);
                }
            }
        }
        Input::MutatedDoc(g, m) => {
            check_text(
                &mutate(&document(&g.entries), m),
                &g.opts,
                &g.source,
                g.cores,
            )?;
        }
        Input::MutatedSeed(i, m, opts) => {
            check_text(
                &mutate(SEEDS[*i], m),
                opts,
                Path::new("/srv/web/app.toml"),
                4,
            )?;
        }
        Input::Ecosystem(value, listen, profile) => {
            let overrides = ecosystem::Overrides {
                listen: listen.clone(),
                profile: profile.clone(),
            };
            if let Ok(apps) = ecosystem::convert(
                value,
                "ecosystem.config.js",
                Path::new("/srv/app"),
                &overrides,
            ) {
                for app in apps {
                    let opts = ParseOptions {
                        profile: profile.clone(),
                        ..ParseOptions::default()
                    };
                    if let Err(d) =
                        parse(&app.toml, "app.toml", Path::new("/srv/app/app.toml"), &opts)
                    {
                        if d.to_string().contains("is not valid TOML") {
                            return Err(fail(format!(
                                "import wrote a file that is not TOML:\n{d}\n{}",
                                app.toml
                            )));
                        }
                    }
                    check_text(&app.toml, &opts, Path::new("/srv/app/app.toml"), 2)?;
                }
            }
        }
    }
    Ok(())
}

/// Runs `cases` inputs from `seed` on one thread; the number of inputs run.
fn run(cases: u32, seed: u64) -> u32 {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let config = Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 2000,
        ..Config::default()
    };
    let mut runner =
        TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &bytes));
    if let Err(e) = runner.run(&input(), |i| check_input(&i)) {
        panic!("fuzz seed {seed}: {e}");
    }
    cases
}

/// A few thousand inputs, in the normal test suite.
#[test]
fn fast() {
    let seed = std::env::var("SYSMGR_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        });
    eprintln!("fuzz seed {seed} (SYSMGR_FUZZ_SEED={seed} repeats it)");
    let before = ACCEPTED.load(std::sync::atomic::Ordering::Relaxed);
    run(2000, seed);
    let accepted = ACCEPTED.load(std::sync::atomic::Ordering::Relaxed) - before;
    eprintln!("fuzz: 2000 inputs, {accepted} accepted");
    assert!(
        accepted > 200,
        "the generators reach rendering too rarely: {accepted} of 2000"
    );
}

/// The long run: `SYSMGR_FUZZ_CASES` inputs (default 10 million) over `SYSMGR_FUZZ_THREADS`
/// threads (default 2), from `SYSMGR_FUZZ_SEED`. `scripts/fuzz` runs it in release mode.
#[test]
#[ignore = "long: run with scripts/fuzz"]
fn long_run() {
    let var = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(default)
    };
    let total = var("SYSMGR_FUZZ_CASES", 10_000_000);
    let threads = var("SYSMGR_FUZZ_THREADS", 2).max(1);
    let seed = var(
        "SYSMGR_FUZZ_SEED",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    );
    // In rounds of at most 100 000 per thread, so progress shows and each round's seed is
    // printed (a failure names the seed that repeats it).
    let round = 100_000u64;
    let started = std::time::Instant::now();
    let mut done = 0u64;
    let mut r = 0u64;
    while done < total {
        let this = (total - done).min(round * threads);
        let per = this.div_ceil(threads);
        let counts: Vec<u64> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let seed = seed.wrapping_add(r * 1000 + t);
                    s.spawn(move || u64::from(run(u32::try_from(per).unwrap_or(u32::MAX), seed)))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("fuzz thread"))
                .collect()
        });
        done += counts.iter().sum::<u64>();
        r += 1;
        eprintln!(
            "fuzz: {done} inputs ({} accepted and rendered), 0 failures, {:.0} s (seeds {}..{})",
            ACCEPTED.load(std::sync::atomic::Ordering::Relaxed),
            started.elapsed().as_secs_f64(),
            seed.wrapping_add((r - 1) * 1000),
            seed.wrapping_add((r - 1) * 1000 + threads - 1)
        );
    }
    eprintln!(
        "fuzz: done: {done} inputs in {:.0} s on {threads} threads, seed {seed}",
        started.elapsed().as_secs_f64()
    );
}
