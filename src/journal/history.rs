//! Reading sysmgr's entries back: `journalctl -o json` lines in, the rows of `sysmgr history`
//! out. Pure (no process, no clock) so the parsing and the table are unit-tested; the command
//! runs journalctl ([`journalctl_args`]) and prints.

use std::fmt::Write as _;

use serde_json::{Map, Value};

use super::{fields, IDENTIFIER};
use crate::systemd::Manager;

/// The arguments of the `journalctl` that lists the last `lines` summary entries of `app`
/// (one per action), oldest first.
pub fn journalctl_args(app: &str, manager: Manager, lines: usize) -> Vec<String> {
    let manager = match manager {
        Manager::System => "system",
        Manager::User => "user",
    };
    vec![
        "--output=json".into(),
        "--no-pager".into(),
        "--quiet".into(),
        format!("--lines={lines}"),
        format!("SYSLOG_IDENTIFIER={IDENTIFIER}"),
        format!("{}={app}", fields::APP),
        format!("{}=summary", fields::EVENT),
        format!("{}={manager}", fields::MANAGER),
    ]
}

/// One summary entry: what was done, by whom, when, and how it went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// `__REALTIME_TIMESTAMP`: microseconds since the epoch.
    pub realtime_usec: u64,
    /// Every `SYSMGR_*` field, keyed by its name without the prefix, lowercased
    /// (`SYSMGR_OLD_PID` -> `old_pid`).
    pub fields: Map<String, Value>,
}

impl Row {
    /// Parses one line of `journalctl -o json`; `None` for a line that is not one of
    /// sysmgr's entries (or not JSON).
    pub fn parse(line: &str) -> Option<Self> {
        let Value::Object(entry) = serde_json::from_str::<Value>(line).ok()? else {
            return None;
        };
        let realtime_usec = entry.get("__REALTIME_TIMESTAMP")?.as_str()?.parse().ok()?;
        let fields: Map<String, Value> = entry
            .iter()
            .filter_map(|(k, v)| {
                let name = k.strip_prefix("SYSMGR_")?;
                // journalctl writes binary or repeated values as arrays; ours are text.
                let text = v.as_str()?;
                Some((name.to_ascii_lowercase(), Value::String(text.to_string())))
            })
            .collect();
        fields.contains_key("action").then_some(Self {
            realtime_usec,
            fields,
        })
    }

    /// A field by its short name (`outcome`), empty when absent.
    pub fn get(&self, name: &str) -> &str {
        self.fields.get(name).and_then(Value::as_str).unwrap_or("")
    }

    /// The user column: `alice`, or `root (sudo: alice)`.
    pub fn who(&self) -> String {
        match self.get("sudo_user") {
            "" => self.get("user").to_string(),
            sudo => format!("{} (sudo: {sudo})", self.get("user")),
        }
    }

    /// The duration column: `412 ms`, `2.1 s`.
    pub fn duration(&self) -> String {
        self.get("duration_ms")
            .parse()
            .map(|ms| crate::reload::engine::human(std::time::Duration::from_millis(ms)))
            .unwrap_or_default()
    }

    /// The details column: what changed, or why it halted or failed.
    pub fn details(&self) -> String {
        let pids = |label: &str| match self.get("pids") {
            "" => String::new(),
            pids => format!("{label} {pids}"),
        };
        let failed = || {
            let mut s = format!("`{}`", self.get("failed_unit"));
            match self.get("service_result") {
                "" => {}
                result => write!(s, " ({result})").unwrap(),
            }
            match self.get("reason") {
                "" => {}
                reason => write!(s, ": {reason}").unwrap(),
            }
            s
        };
        let join = |parts: Vec<String>| {
            parts
                .into_iter()
                .filter(|p| !p.is_empty())
                .collect::<Vec<_>>()
                .join("; ")
        };
        match (self.get("action"), self.get("outcome")) {
            (_, "failed") if !self.get("error").is_empty() => self.get("error").to_string(),
            ("reload" | "restart" | "memory-restart", "halted") => join(vec![
                format!("halted at {}", failed()),
                pids("replaced"),
                match self.get("skipped") {
                    "" => String::new(),
                    skipped => format!("not restarted {skipped}"),
                },
            ]),
            ("reload" | "restart" | "memory-restart", _) => pids("replaced"),
            ("start", "failed") => {
                join(vec![format!("not running: {}", failed()), pids("running")])
            }
            ("start", _) => pids("running"),
            ("scale", _) => format!("{} -> {} instances", self.get("from"), self.get("to")),
            ("stop" | "delete", _) => format!("{} instances stopped", self.get("stopped")),
            ("generate", _) => format!("{} instances", self.get("instances")),
            _ => String::new(),
        }
    }

    /// The row as JSON: `time` (local, as in the table), `realtime_usec`, and the fields.
    pub fn to_json(&self) -> Value {
        let mut object = Map::new();
        object.insert("time".into(), Value::String(local_time(self.realtime_usec)));
        object.insert("realtime_usec".into(), Value::from(self.realtime_usec));
        object.extend(self.fields.clone());
        Value::Object(object)
    }
}

/// Every row of `journalctl -o json` output, in its order.
pub fn parse(output: &str) -> Vec<Row> {
    output.lines().filter_map(Row::parse).collect()
}

/// The table `sysmgr history` prints, one line per row under a header.
pub fn table(rows: &[Row]) -> String {
    let cells: Vec<[String; 6]> = rows
        .iter()
        .map(|r| {
            [
                local_time(r.realtime_usec),
                r.who(),
                r.get("action").to_string(),
                r.get("outcome").to_string(),
                r.duration(),
                r.details(),
            ]
        })
        .collect();
    let header = ["WHEN", "USER", "ACTION", "OUTCOME", "DURATION", "DETAILS"].map(String::from);
    let mut widths = [0usize; 6];
    for row in std::iter::once(&header).chain(&cells) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&cells) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                write!(line, "{cell:<w$}  ", w = widths[i]).unwrap();
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `YYYY-MM-DD HH:MM:SS` in the local time zone.
pub fn local_time(realtime_usec: u64) -> String {
    let secs = (realtime_usec / 1_000_000) as libc::time_t;
    // SAFETY: tm is plain data; zeroed is a valid value for localtime_r to fill.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are valid for the call. localtime_r reads TZ, which nothing in
    // sysmgr writes.
    if unsafe { libc::localtime_r(&secs, &mut tm) }.is_null() {
        return realtime_usec.to_string();
    }
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(fields: &[(&str, &str)]) -> String {
        let mut m = Map::new();
        m.insert("__REALTIME_TIMESTAMP".into(), "1700000000000000".into());
        m.insert("SYSLOG_IDENTIFIER".into(), "sysmgr".into());
        m.insert("MESSAGE".into(), "x".into());
        for (k, v) in fields {
            m.insert((*k).into(), (*v).into());
        }
        Value::Object(m).to_string()
    }

    #[test]
    fn the_journalctl_query_matches_sysmgrs_summaries_of_one_app() {
        assert_eq!(
            journalctl_args("web", Manager::System, 5),
            [
                "--output=json",
                "--no-pager",
                "--quiet",
                "--lines=5",
                "SYSLOG_IDENTIFIER=sysmgr",
                "SYSMGR_APP=web",
                "SYSMGR_EVENT=summary",
                "SYSMGR_MANAGER=system"
            ]
        );
    }

    #[test]
    fn rows_keep_sysmgrs_fields_and_skip_other_lines() {
        let out = format!(
            "{}\nnot json\n{}\n{}\n",
            line(&[
                ("SYSMGR_ACTION", "reload"),
                ("SYSMGR_OUTCOME", "ok"),
                ("SYSMGR_USER", "root"),
                ("SYSMGR_DURATION_MS", "2100"),
                ("SYSMGR_PIDS", "1:10>20 2:11>21"),
            ]),
            line(&[("MESSAGE", "no sysmgr fields")]),
            line(&[
                ("SYSMGR_ACTION", "reload"),
                ("SYSMGR_OUTCOME", "halted"),
                ("SYSMGR_USER", "root"),
                ("SYSMGR_SUDO_USER", "alice"),
                ("SYSMGR_DURATION_MS", "900"),
                ("SYSMGR_FAILED_UNIT", "web@1.service"),
                ("SYSMGR_SERVICE_RESULT", "exit-code"),
                ("SYSMGR_REASON", "the restart job ended with `failed`"),
                ("SYSMGR_PIDS", ""),
                ("SYSMGR_SKIPPED", "web@2.service web@3.service"),
            ]),
        );
        let rows = parse(&out);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].get("old_pid"), "");
        assert_eq!(rows[0].details(), "replaced 1:10>20 2:11>21");
        assert_eq!(rows[0].duration(), "2.1 s");
        assert_eq!(rows[1].who(), "root (sudo: alice)");
        assert_eq!(
            rows[1].details(),
            "halted at `web@1.service` (exit-code): the restart job ended with `failed`; not restarted web@2.service web@3.service"
        );
        let table = table(&rows);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(
            lines[0].starts_with(
                "WHEN                 USER                ACTION  OUTCOME  DURATION  DETAILS"
            ),
            "{table}"
        );
        assert!(
            lines[2].contains("  root (sudo: alice)  reload  halted   900 ms    halted at"),
            "{table}"
        );
        let json = rows[1].to_json();
        assert_eq!(json["failed_unit"], "web@1.service");
        assert_eq!(json["realtime_usec"], 1_700_000_000_000_000u64);
    }

    #[test]
    fn other_actions_say_what_changed() {
        let row = |f: &[(&str, &str)]| Row::parse(&line(f)).unwrap().details();
        assert_eq!(
            row(&[
                ("SYSMGR_ACTION", "scale"),
                ("SYSMGR_FROM", "2"),
                ("SYSMGR_TO", "4")
            ]),
            "2 -> 4 instances"
        );
        assert_eq!(
            row(&[("SYSMGR_ACTION", "stop"), ("SYSMGR_STOPPED", "3")]),
            "3 instances stopped"
        );
        assert_eq!(
            row(&[
                ("SYSMGR_ACTION", "stop"),
                ("SYSMGR_OUTCOME", "failed"),
                ("SYSMGR_ERROR", "systemd could not stop `web@1.service`")
            ]),
            "systemd could not stop `web@1.service`"
        );
        assert_eq!(
            row(&[("SYSMGR_ACTION", "start"), ("SYSMGR_PIDS", "1:10 2:11")]),
            "running 1:10 2:11"
        );
    }
}
