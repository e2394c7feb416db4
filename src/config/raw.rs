//! Stage 1 of reading app.toml: the raw document, with spans kept for `file:line:col`.
//!
//! The TOML is parsed into `toml::de::DeTable`, which keeps the byte span of every key and
//! value; each top-level key is then sorted: a known key, an `[env_PROFILE]` table, or an
//! error that says why it is not a key (with PM2's own advice, or a "did you mean"). Nothing
//! here checks a value; that is [`super::validate`]'s job.

use std::ops::Range;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::diag::{Reporter, Severity};
use super::keys::{self, KEYS};

/// A value with its span in the file.
pub(super) type Value<'i> = Spanned<DeValue<'i>>;

/// The TOML document, or `None` with the syntax error reported.
pub(super) fn read<'i>(text: &'i str, rep: &mut Reporter<'_>) -> Option<Spanned<DeTable<'i>>> {
    match DeTable::parse(text) {
        Ok(doc) => Some(doc),
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            let message = e.message().trim_end().replace('\n', "; ");
            rep.push(
                Severity::Error,
                span,
                None,
                format!("is not valid TOML: {message}"),
            );
            None
        }
    }
}

/// The top-level keys of a document, sorted; their values are checked by the next stage.
#[derive(Default)]
pub(super) struct Found<'d, 'i> {
    pub(super) keys: Vec<(&'d str, Range<usize>, &'d Value<'i>)>,
    pub(super) profiles: Vec<(&'d str, Range<usize>, &'d Value<'i>)>,
}

impl<'d, 'i> Found<'d, 'i> {
    pub(super) fn get(&self, key: &str) -> Option<&'d Value<'i>> {
        self.keys
            .iter()
            .find(|(k, _, _)| *k == key)
            .map(|(_, _, v)| *v)
    }
}

/// Sorts the top-level keys of `doc`, reporting the ones that are not keys.
pub(super) fn sort<'d, 'i>(doc: &'d DeTable<'i>, rep: &mut Reporter<'_>) -> Found<'d, 'i> {
    let mut found = Found::default();
    for (k, v) in doc.iter() {
        let key: &str = k.get_ref();
        if keys::by_name(key).is_some() {
            found.keys.push((key, k.span(), v));
        } else if let Some(profile) = key.strip_prefix("env_") {
            found.profiles.push((profile, k.span(), v));
        } else if key == "exec_mode" {
            rep.warning(
                k.span(),
                key,
                "has no effect: every instance is its own process sharing systemd's sockets, like PM2's cluster mode; remove it",
            );
        } else if let Some(advice) = pm2_key_advice(key) {
            rep.error(k.span(), key, advice);
        } else {
            let hint = match suggestion(key) {
                Some(s) => format!("; did you mean `{s}`?"),
                None => "; `sysmgr init NAME` writes a file with every key".into(),
            };
            rep.error(k.span(), key, format!("is not a key sysmgr knows{hint}"));
        }
    }
    found
}

/// Why a PM2 ecosystem key has no place in app.toml, and what to do instead.
fn pm2_key_advice(key: &str) -> Option<&'static str> {
    Some(match key {
        "script" | "args" | "interpreter" | "interpreter_args" | "node_args" | "exec_interpreter" => {
            "is a PM2 key; sysmgr runs `command` directly: write `command = [\"node\", \"app.js\"]`"
        }
        "watch" | "ignore_watch" | "watch_options" | "watch_delay" => {
            "is not supported: sysmgr does not watch files; run `sysmgr reload NAME` after a deploy"
        }
        "out_file" | "error_file" | "log_file" | "log" | "output" | "error" | "log_date_format"
        | "merge_logs" | "combine_logs" | "log_type" | "time" | "disable_logs" => {
            "is not supported: output goes to the journal, with timestamps and rotation; read it with `journalctl -u 'NAME@*'`"
        }
        "pid_file" => "is not supported: systemd tracks the main PID; see `sysmgr status NAME`",
        "min_uptime" => {
            "is not supported: sysmgr's crash-loop brake is `max_restarts` starts in a row, each within 10 s of the one before"
        }
        "cron" => "is PM2's old name; write `cron_restart`",
        "exp_backoff_restart_delay" => "is not supported: use `restart_delay`",
        "max_memory_restart_check_interval" => {
            "is not supported: the graceful memory check runs every 5 s (`max_memory_restart`)"
        }
        "increment_var" => "is not supported: each instance gets `SYSMGR_INSTANCE` and `instance_var`",
        "apps" => {
            "is not supported: app.toml describes one app; write one file per app of your ecosystem file"
        }
        "env" => return None,
        "port" | "PORT" => "is not a key; declare the sockets with `listen = [\"127.0.0.1:3000\"]`",
        "namespace" | "vizion" | "autostart" | "force" | "treekill"
        | "source_map_support" | "instance_id_env" | "filter_env" | "append_env_name"
        | "disable_trace" | "trace" | "deep_monitoring" | "automation" | "pmx" | "post_update"
        | "cwd_relative" => {
            "is a PM2 key that sysmgr does not support; remove it"
        }
        _ => return None,
    })
}

/// The closest known key, for "did you mean".
fn suggestion(key: &str) -> Option<&'static str> {
    fn distance(a: &str, b: &str) -> usize {
        let b: Vec<char> = b.chars().collect();
        let mut prev: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut cur = vec![i + 1];
            for (j, cb) in b.iter().enumerate() {
                cur.push(
                    (prev[j] + usize::from(ca != *cb))
                        .min(prev[j + 1] + 1)
                        .min(cur[j] + 1),
                );
            }
            prev = cur;
        }
        prev[b.len()]
    }
    KEYS.iter()
        .map(|k| (distance(key, k.name), k.name))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
        .min()
        .map(|(_, k)| k)
}

/// What a value is, for "must be X, found Y" messages. An integer that does not fit in 64
/// bits is an integer, but no setting can use it: say so rather than "found an integer".
pub(super) fn type_name(v: &DeValue<'_>) -> std::borrow::Cow<'static, str> {
    match v {
        DeValue::Integer(i) if int_of(v).is_none() => {
            format!("`{}`, an integer out of range", i.as_str()).into()
        }
        _ => type_word(v).into(),
    }
}

fn type_word(v: &DeValue<'_>) -> &'static str {
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

pub(super) fn int_of(v: &DeValue<'_>) -> Option<i64> {
    let i = v.as_integer()?;
    i64::from_str_radix(i.as_str(), i.radix()).ok()
}
