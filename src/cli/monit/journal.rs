//! The journal pane of `sysmgr monit`: the latest lines of the selected instance (or of the
//! whole app on its total row), followed as they are logged.
//!
//! It runs the query of `sysmgr logs --instance N -n KEEP -f` ([`output::journalctl_args`])
//! in a `journalctl` child and formats each entry as `sysmgr logs` does ([`Line::format`],
//! without the date, which the pane has no room for). A thread reads the child and keeps the
//! last [`KEEP`] lines; selecting another row ends the child and starts another. The journal
//! has no D-Bus API, and journalctl already selects and follows well.

use std::collections::VecDeque;
use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};

use crate::journal::output::{self, Line, Query, Stream};
use crate::systemd::Manager;

/// How many lines the pane keeps: more than any terminal shows, and a bound on memory
/// however much the instance logs.
pub const KEEP: usize = 200;

/// What the pane follows: one instance of an app, or all of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    pub app: String,
    pub instance: Option<u32>,
}

impl Subject {
    /// The pane's title.
    pub fn title(&self) -> String {
        match self.instance {
            Some(n) => format!(
                "journal of {}",
                crate::names::UnitNames::new(&self.app).instance(n)
            ),
            None => format!("journal of {} (every instance)", self.app),
        }
    }
}

/// The lines read so far, and why the reading stopped if it did.
#[derive(Debug, Default)]
struct Lines {
    lines: VecDeque<String>,
    /// journalctl's last line on stderr, or why it could not run.
    error: Option<String>,
}

impl Lines {
    fn push(&mut self, line: String) {
        if self.lines.len() == KEEP {
            self.lines.pop_front();
        }
        self.lines.push_back(line);
    }
}

/// A `journalctl --follow` of one [`Subject`].
#[derive(Debug)]
pub struct Follower {
    subject: Subject,
    child: Option<Child>,
    lines: Arc<Mutex<Lines>>,
}

impl Follower {
    /// Starts following `subject`. Never fails: when journalctl cannot run, the pane says why.
    pub fn start(subject: Subject, manager: Manager) -> Self {
        let lines = Arc::new(Mutex::new(Lines::default()));
        let query = Query {
            app: subject.app.clone(),
            instance: subject.instance,
            stream: Stream::All,
            lines: KEEP,
            follow: true,
            since: None,
        };
        let spawned = Command::new("journalctl")
            .args(output::journalctl_args(&query, manager))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            // Never onto the screen: its last line is shown in the pane.
            .stderr(Stdio::piped())
            .spawn();
        let child = match spawned {
            Ok(mut child) => {
                let app = subject.app.clone();
                if let Some(out) = child.stdout.take() {
                    let lines = Arc::clone(&lines);
                    std::thread::spawn(move || {
                        for text in BufReader::new(out).lines().map_while(Result::ok) {
                            if let Some(line) = Line::parse(&app, &text) {
                                locked(&lines).push(pane_text(&line, &app));
                            }
                        }
                    });
                }
                if let Some(err) = child.stderr.take() {
                    let lines = Arc::clone(&lines);
                    std::thread::spawn(move || {
                        for text in BufReader::new(err).lines().map_while(Result::ok) {
                            if !text.trim().is_empty() {
                                locked(&lines).error = Some(format!("journalctl: {text}"));
                            }
                        }
                    });
                }
                Some(child)
            }
            Err(e) => {
                locked(&lines).error = Some(format!(
                    "cannot run `journalctl` ({e}); is systemd's journal installed?"
                ));
                None
            }
        };
        Self {
            subject,
            child,
            lines,
        }
    }

    /// What it follows.
    pub fn subject(&self) -> &Subject {
        &self.subject
    }

    /// The last `n` lines, oldest first, and the error that stopped the reading, if any.
    pub fn last(&self, n: usize) -> (Vec<String>, Option<String>) {
        let lines = locked(&self.lines);
        let skip = lines.lines.len().saturating_sub(n);
        (
            lines.lines.iter().skip(skip).cloned().collect(),
            lines.error.clone(),
        )
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        // Our own child, by its handle; its reader threads end at the end of its output.
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn locked(lines: &Mutex<Lines>) -> std::sync::MutexGuard<'_, Lines> {
    lines.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `sysmgr logs`'s line (`DATE TIME NAME[N]: MESSAGE`) without its date.
fn pane_text(line: &Line, app: &str) -> String {
    let text = line.format(app);
    match text.split_once(' ') {
        Some((date, rest)) if date.len() == 10 && date.as_bytes()[4] == b'-' => rest.to_string(),
        _ => text,
    }
}

/// The lines that fill a pane `width` wide and `height` high with the newest of `lines`:
/// each line wrapped at `width` characters, the oldest dropped first.
pub fn fit(lines: &[String], width: usize, height: usize) -> Vec<String> {
    let width = width.max(1);
    let mut out: VecDeque<String> = VecDeque::new();
    for line in lines.iter().rev() {
        if out.len() >= height {
            break;
        }
        let chars: Vec<char> = line.chars().collect();
        let pieces: Vec<String> = if chars.is_empty() {
            vec![String::new()]
        } else {
            chars.chunks(width).map(|c| c.iter().collect()).collect()
        };
        for piece in pieces.into_iter().rev() {
            if out.len() < height {
                out.push_front(piece);
            }
        }
    }
    out.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pane_shows_the_newest_lines_wrapped() {
        let lines: Vec<String> = ["one", "two-long-line", "three"].map(String::from).to_vec();
        assert_eq!(fit(&lines, 80, 10), lines);
        // The oldest line shown may lose its beginning, never the newest its end.
        assert_eq!(fit(&lines, 5, 3), ["ong-l", "ine", "three"]);
        assert_eq!(fit(&lines, 5, 2), ["ine", "three"]);
        assert_eq!(fit(&lines, 5, 5), ["one", "two-l", "ong-l", "ine", "three"]);
        assert_eq!(fit(&lines, 5, 0), Vec::<String>::new());
        assert_eq!(fit(&[String::new()], 5, 3), [""]);
    }

    #[test]
    fn pane_lines_are_the_logs_lines_without_the_date() {
        let own = r#"{"__REALTIME_TIMESTAMP":"1700000000000000","_SYSTEMD_UNIT":"web@3.service","PRIORITY":"3","MESSAGE":"boom"}"#;
        let line = Line::parse("web", own).unwrap();
        let text = pane_text(&line, "web");
        assert!(text.ends_with(" web[3]: boom"), "{text}");
        assert_eq!(text.len(), "HH:MM:SS web[3]: boom".len(), "{text}");
        assert_eq!(
            line.format("web"),
            format!("{} {text}", &line.format("web")[..10])
        );
    }

    #[test]
    fn the_kept_lines_are_bounded() {
        let mut l = Lines::default();
        for i in 0..KEEP + 5 {
            l.push(i.to_string());
        }
        assert_eq!(l.lines.len(), KEEP);
        assert_eq!(l.lines.front().map(String::as_str), Some("5"));
    }
}
