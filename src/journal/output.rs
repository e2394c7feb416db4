//! Reading an app's output back from the journal for `sysmgr logs`: the `journalctl -o json`
//! query, and its lines turned into `TIME NAME[N]: MESSAGE`, tagged with the instance number
//! (journalctl's own formats show a PID, and old journalctl has no custom format).
//!
//! Which stream a line came from is its priority: `sysmgr exec` gives every instance's stderr
//! a journal stream at `PRIORITY=3` and its stdout one at 6 (see `src/cli/exec.rs`). Pure (no
//! process, no clock) so the query and the formatting are unit-tested; the command runs
//! journalctl and prints.

use serde_json::{Map, Value};

use crate::names::UnitNames;
use crate::systemd::Manager;

/// Which of an instance's lines to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Everything about the instances: their output and systemd's lines about them.
    All,
    /// What the instances wrote to stderr (priority err or more urgent).
    Err,
    /// What the instances wrote to stdout (priority warning or less urgent).
    Out,
}

/// What `sysmgr logs` asks for.
#[derive(Debug, Clone)]
pub struct Query {
    /// The app.
    pub app: String,
    /// One instance only.
    pub instance: Option<u32>,
    /// Which lines.
    pub stream: Stream,
    /// How many of the latest lines.
    pub lines: usize,
    /// Keep following.
    pub follow: bool,
    /// journalctl's `--since` (`2024-05-01 10:00`, `1h ago`, `today`...).
    pub since: Option<String>,
}

/// The arguments of the `journalctl` that prints the query's entries as JSON, oldest first.
pub fn journalctl_args(q: &Query, manager: Manager) -> Vec<String> {
    let names = UnitNames::new(&q.app);
    // An instance runs as generation 0 or 1 of its slot (a surge reload alternates them):
    // both units, merged.
    let units = match q.instance {
        Some(n) => vec![names.slot_unit(n, 0), names.slot_unit(n, 1)],
        None => vec![names.instance_pattern()],
    };
    let unit_flag = match manager {
        Manager::System => "--unit",
        Manager::User => "--user-unit",
    };
    let mut args = vec![
        "--output=json".to_string(),
        "--no-pager".into(),
        "--quiet".into(),
    ];
    args.extend(units.iter().map(|unit| format!("{unit_flag}={unit}")));
    args.push(format!("--lines={}", q.lines));
    if q.follow {
        args.push("--follow".into());
    }
    if let Some(since) = &q.since {
        args.push(format!("--since={since}"));
    }
    match q.stream {
        Stream::All => {}
        // Only what the instances wrote: their units' `SyslogIdentifier=` is the app's name,
        // systemd's own lines about them (`Started`, `Failed`) say `systemd`.
        Stream::Err => args.extend(["--priority=0..3".into(), format!("--identifier={}", q.app)]),
        Stream::Out => args.extend(["--priority=4..7".into(), format!("--identifier={}", q.app)]),
    }
    args
}

/// One journal entry of an instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// `__REALTIME_TIMESTAMP`: microseconds since the epoch.
    pub realtime_usec: u64,
    /// The instance number, when the entry names an instance of the app.
    pub instance: Option<u32>,
    /// Whether systemd wrote it about the instance (`Started`, `Failed`), not the instance.
    pub from_manager: bool,
    /// `PRIORITY`, 0 (emerg) to 7 (debug); 6 when absent, as journald assumes.
    pub priority: u8,
    /// The process that wrote it.
    pub pid: Option<u32>,
    /// `MESSAGE`, binary data decoded lossily.
    pub message: String,
}

impl Line {
    /// Parses one line of `journalctl -o json` for app `app`; `None` for a line that is not
    /// a JSON entry.
    pub fn parse(app: &str, text: &str) -> Option<Self> {
        let Value::Object(entry) = serde_json::from_str::<Value>(text).ok()? else {
            return None;
        };
        let realtime_usec = field(&entry, "__REALTIME_TIMESTAMP")?.parse().ok()?;
        let names = UnitNames::new(app);
        let own = ["_SYSTEMD_UNIT", "_SYSTEMD_USER_UNIT"]
            .iter()
            .find_map(|k| names.instance_of(&field(&entry, k)?));
        let about = ["UNIT", "USER_UNIT", "OBJECT_SYSTEMD_UNIT", "COREDUMP_UNIT"]
            .iter()
            .find_map(|k| names.instance_of(&field(&entry, k)?));
        Some(Self {
            realtime_usec,
            instance: own.or(about),
            from_manager: own.is_none() && about.is_some(),
            priority: field(&entry, "PRIORITY")
                .and_then(|p| p.parse().ok())
                .unwrap_or(6),
            pid: field(&entry, "_PID").and_then(|p| p.parse().ok()),
            message: field(&entry, "MESSAGE").unwrap_or_default(),
        })
    }

    /// `TIME NAME[N]: MESSAGE`, or `TIME NAME[N] systemd: MESSAGE` for systemd's lines.
    pub fn format(&self, app: &str) -> String {
        let time = super::history::local_time(self.realtime_usec);
        let tag = match self.instance {
            Some(n) => format!("{app}[{n}]"),
            None => app.to_string(),
        };
        let who = if self.from_manager { " systemd" } else { "" };
        format!("{time} {tag}{who}: {}", self.message)
    }

    /// The entry as one JSON object (the schema of `sysmgr logs --json`, in docs/commands.md).
    pub fn to_json(&self, app: &str) -> Value {
        let mut o = Map::new();
        o.insert(
            "time".into(),
            super::history::local_time(self.realtime_usec).into(),
        );
        o.insert("realtime_usec".into(), self.realtime_usec.into());
        o.insert("app".into(), app.into());
        o.insert("instance".into(), self.instance.into());
        o.insert(
            "stream".into(),
            match (self.from_manager, self.priority) {
                (true, _) => "systemd",
                (false, 0..=3) => "stderr",
                (false, _) => "stdout",
            }
            .into(),
        );
        o.insert("priority".into(), self.priority.into());
        o.insert("pid".into(), self.pid.into());
        o.insert("message".into(), self.message.clone().into());
        Value::Object(o)
    }
}

/// A field as text: journalctl writes non-UTF-8 or binary values as arrays of bytes.
fn field(entry: &Map<String, Value>, name: &str) -> Option<String> {
    match entry.get(name)? {
        Value::String(s) => Some(s.clone()),
        Value::Array(bytes) => {
            let bytes: Option<Vec<u8>> = bytes
                .iter()
                .map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
                .collect();
            Some(String::from_utf8_lossy(&bytes?).into_owned())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(stream: Stream) -> Query {
        Query {
            app: "web".into(),
            instance: None,
            stream,
            lines: 50,
            follow: false,
            since: None,
        }
    }

    #[test]
    fn err_and_out_select_by_priority_and_the_apps_identifier() {
        assert_eq!(
            journalctl_args(&query(Stream::Err), Manager::System),
            [
                "--output=json",
                "--no-pager",
                "--quiet",
                "--unit=web@*.service",
                "--lines=50",
                "--priority=0..3",
                "--identifier=web"
            ]
        );
        let out = Query {
            instance: Some(2),
            follow: true,
            since: Some("1h ago".into()),
            ..query(Stream::Out)
        };
        assert_eq!(
            journalctl_args(&out, Manager::User)[3..],
            [
                "--user-unit=web@2.service",
                "--user-unit=web@2:1.service",
                "--lines=50",
                "--follow",
                "--since=1h ago",
                "--priority=4..7",
                "--identifier=web"
            ]
        );
        assert_eq!(
            journalctl_args(&query(Stream::All), Manager::System).len(),
            5
        );
    }

    #[test]
    fn lines_are_tagged_with_their_instance() {
        let own = r#"{"__REALTIME_TIMESTAMP":"1700000000000000","_SYSTEMD_UNIT":"web@3.service","PRIORITY":"3","_PID":"42","MESSAGE":"boom"}"#;
        let line = Line::parse("web", own).unwrap();
        assert_eq!(
            (line.instance, line.from_manager, line.priority, line.pid),
            (Some(3), false, 3, Some(42))
        );
        assert!(
            line.format("web").ends_with(" web[3]: boom"),
            "{}",
            line.format("web")
        );
        assert_eq!(line.to_json("web")["stream"], "stderr");
        assert_eq!(line.to_json("web")["instance"], 3);

        let systemd = r#"{"__REALTIME_TIMESTAMP":"1700000000000000","_SYSTEMD_UNIT":"init.scope","UNIT":"web@1.service","PRIORITY":"6","MESSAGE":"Started web (instance 1)."}"#;
        let line = Line::parse("web", systemd).unwrap();
        assert!(line
            .format("web")
            .ends_with(" web[1] systemd: Started web (instance 1)."));
        assert_eq!(line.to_json("web")["stream"], "systemd");

        // Another app whose name starts with this one's is not an instance of it.
        let other = r#"{"__REALTIME_TIMESTAMP":"1","_SYSTEMD_UNIT":"web-admin@1.service","MESSAGE":[104,105]}"#;
        let line = Line::parse("web", other).unwrap();
        assert_eq!((line.instance, line.message.as_str()), (None, "hi"));
        assert_eq!(line.to_json("web")["stream"], "stdout");
        assert!(Line::parse("web", "not json").is_none());
    }
}
