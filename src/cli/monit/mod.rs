//! `sysmgr monit [NAME]`: a full-screen view of every instance (or one app's), like
//! `pm2 monit`, refreshed every second from [`crate::controller::status::collect`]: state, PID,
//! CPU % (from the change of the unit's CPU time between two refreshes), memory, restarts and
//! uptime, with a total row per app ([`table`]); under it, the journal of the selected
//! instance, or of the whole app on its total row ([`journal`]).
//!
//! Keys act on the selected row: `r` reloads its app, `R` restarts its instance alone, `+` and
//! `-` scale its app by one ([`action`]: on a thread, under the app's lock, like the commands;
//! the status line shows their progress and outcome). Up/down or `j`/`k` select, `q` or Esc
//! quits. When stdout is not a terminal it prints the table once and exits. The columns and
//! keys are described in docs/commands.md.
//!
//! The terminal is restored on exit and on panic (`ratatui::try_init` installs the panic hook).

pub mod action;
pub mod journal;
pub mod table;

use std::io::IsTerminal as _;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{List, ListItem, ListState, Paragraph};

use super::lifecycle;
use super::scale::Count;
use crate::controller::{self, status::AppStatus};
use crate::install::InstalledApp;
use crate::systemd::dbus::Systemd;
use crate::systemd::Manager;
use action::{Action, Job};
use journal::{Follower, Subject};
use table::{cut, layout, rows, Row, Sampler};

/// How often the view reads systemd again.
const REFRESH: Duration = Duration::from_secs(1);

/// How long a notice stays over the status line.
const NOTICE: Duration = Duration::from_secs(3);

/// The help line at the top of the screen (fits 80 columns).
pub const HELP: &str = "sysmgr monit  q quit  ↑↓/jk select  r reload  R restart one  +/- scale";

#[derive(Debug, Args)]
pub struct MonitArgs {
    /// Only this app (default: every app).
    #[arg(value_name = "NAME")]
    pub name: Option<String>,
}

/// What a key asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    Quit,
    Up,
    Down,
    /// Reload the selected row's app.
    Reload,
    /// Restart the selected instance.
    Restart,
    /// Scale the selected row's app by +1.
    More,
    /// Scale it by -1.
    Fewer,
}

impl Key {
    /// The meaning of a key press, if it has one.
    pub fn of(code: KeyCode, modifiers: KeyModifiers) -> Option<Self> {
        Some(match code {
            KeyCode::Char('q') | KeyCode::Esc => Self::Quit,
            KeyCode::Char('c') if modifiers.contains(KeyModifiers::CONTROL) => Self::Quit,
            KeyCode::Up | KeyCode::Char('k') => Self::Up,
            KeyCode::Down | KeyCode::Char('j') => Self::Down,
            KeyCode::Char('r') => Self::Reload,
            KeyCode::Char('R') => Self::Restart,
            KeyCode::Char('+') => Self::More,
            KeyCode::Char('-') => Self::Fewer,
            _ => return None,
        })
    }

    /// The action it starts on `row`, or why it starts none.
    pub fn action(self, row: &Row) -> Option<Result<Action, String>> {
        let app = row.app.clone();
        Some(Ok(match self {
            Self::Quit | Self::Up | Self::Down => return None,
            Self::Reload => Action::Reload { app },
            Self::Restart => match row.instance {
                Some(instance) => Action::Restart { app, instance },
                None => {
                    return Some(Err(format!(
                        "select an instance of `{app}` to restart it (r reloads every instance)"
                    )))
                }
            },
            Self::More => Action::Scale {
                app,
                by: Count::Add(1),
            },
            Self::Fewer => Action::Scale {
                app,
                by: Count::Remove(1),
            },
        }))
    }
}

/// The heights of the table (its header included) and of the journal's lines on a screen
/// `height` lines high, for a table of `rows` rows and a status line of `status` lines:
/// besides them, the help line and the journal's title. The table takes what it needs as long
/// as the journal keeps [`JOURNAL_MIN`] lines (it scrolls beyond), the journal the rest.
pub fn heights(height: u16, rows: usize, status: u16) -> (u16, u16) {
    let free = height.saturating_sub(2 + status);
    let wanted = u16::try_from(rows + 1).unwrap_or(u16::MAX);
    let table = wanted.min(free.saturating_sub(JOURNAL_MIN).max(free / 2));
    (table, free - table)
}

/// The status line's text in at most [`STATUS_MAX`] lines of `width` characters (an error
/// should be read whole): wrapped, and cut with `~` beyond.
pub fn status_lines(text: &str, width: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut lines: Vec<String> = chars
        .chunks(width.max(1))
        .map(|c| c.iter().collect())
        .collect();
    if lines.len() > usize::from(STATUS_MAX) {
        let rest: String = lines[usize::from(STATUS_MAX) - 1..].concat();
        lines.truncate(usize::from(STATUS_MAX) - 1);
        lines.push(cut(&rest, width));
    }
    if lines.is_empty() {
        lines.push(String::new());
    }
    lines
}

/// The most lines the status line takes.
pub const STATUS_MAX: u16 = 3;

/// The fewest lines of journal the screen keeps when the table is long.
pub const JOURNAL_MIN: u16 = 6;

/// What the view reads each refresh.
struct Source {
    manager: Manager,
    name: Option<String>,
    sd: Systemd,
    rt: tokio::runtime::Runtime,
}

impl Source {
    fn open(manager: Manager, name: Option<&str>) -> anyhow::Result<Self> {
        let name = name.map(lifecycle::app_name).transpose()?;
        if let Some(name) = &name {
            // An unknown app is an error now, not an empty screen.
            controller::find(&controller::unit_dir(manager)?, manager, name)?;
        }
        let rt = lifecycle::runtime()?;
        let sd = rt.block_on(Systemd::connect(manager))?;
        Ok(Self {
            manager,
            name,
            sd,
            rt,
        })
    }

    fn apps(&self) -> anyhow::Result<Vec<InstalledApp>> {
        let dir = controller::unit_dir(self.manager)?;
        Ok(match &self.name {
            Some(name) => vec![controller::find(&dir, self.manager, name)?],
            None => dir.installed_apps()?,
        })
    }

    fn read(&self) -> anyhow::Result<Vec<AppStatus>> {
        let apps = self.apps()?;
        Ok(self
            .rt
            .block_on(controller::status::collect(&self.sd, &apps))?)
    }
}

pub fn run(args: &MonitArgs, manager: Manager) -> anyhow::Result<ExitCode> {
    let source = Source::open(manager, args.name.as_deref())?;
    if !std::io::stdout().is_terminal() {
        return snapshot(&source);
    }
    interactive(&source)
}

/// Stdout is not a terminal: two readings a refresh apart (for the CPU %), one table.
fn snapshot(source: &Source) -> anyhow::Result<ExitCode> {
    let mut sampler = Sampler::default();
    sampler.sample(&source.read()?, Instant::now());
    std::thread::sleep(REFRESH);
    let status = source.read()?;
    let cpu = sampler.sample(&status, Instant::now());
    let width = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(80);
    let mut text = layout(&rows(&status, &cpu), width).join("\n");
    text.push('\n');
    lifecycle::print_stdout(&text)?;
    Ok(ExitCode::SUCCESS)
}

/// Leaves the alternate screen and raw mode however the view ends.
struct Restore;

impl Drop for Restore {
    fn drop(&mut self) {
        ratatui::restore();
    }
}

/// The selected row: kept by what it stands for, so it stays on the same instance when rows
/// come and go (a scale), and by position when its row went away.
#[derive(Debug, Default)]
struct Selection {
    index: usize,
    subject: Option<Subject>,
}

impl Selection {
    /// Places the selection in `table` after a refresh.
    fn place(&mut self, table: &[Row]) {
        let found = self.subject.as_ref().and_then(|s| {
            table
                .iter()
                .position(|r| r.app == s.app && r.instance == s.instance)
        });
        self.index = found.unwrap_or(self.index.min(table.len().saturating_sub(1)));
        self.subject = table.get(self.index).map(subject);
    }

    fn moved(&mut self, table: &[Row], by: isize) {
        self.index = self
            .index
            .saturating_add_signed(by)
            .min(table.len().saturating_sub(1));
        self.subject = table.get(self.index).map(subject);
    }
}

fn subject(row: &Row) -> Subject {
    Subject {
        app: row.app.clone(),
        instance: row.instance,
    }
}

fn interactive(source: &Source) -> anyhow::Result<ExitCode> {
    // Restores also when entering raw mode fails half-way; `try_init` installs the panic
    // hook that restores the terminal before the panic message.
    let guard = Restore;
    let mut terminal = ratatui::try_init().context("cannot set up the terminal")?;
    let mut sampler = Sampler::default();
    let mut selection = Selection::default();
    let mut job: Option<Job> = None;
    let mut follower: Option<Follower> = None;
    let mut message = String::new();
    // A short-lived line over the status line (a key refused while an action runs).
    let mut notice: Option<(String, Instant)> = None;
    let mut table: Vec<Row> = Vec::new();
    let mut next = Instant::now();
    loop {
        if job.as_mut().is_some_and(Job::just_ended) {
            next = Instant::now();
        }
        if Instant::now() >= next {
            match source.read() {
                Ok(status) => {
                    let cpu = sampler.sample(&status, Instant::now());
                    table = rows(&status, &cpu);
                    if message.starts_with("error: cannot read") {
                        message.clear();
                    }
                }
                Err(e) => message = format!("error: cannot read systemd: {e:#}"),
            }
            selection.place(&table);
            next = Instant::now() + REFRESH;
        }
        // The journal follows the selected row.
        if follower.as_ref().map(Follower::subject) != selection.subject.as_ref() {
            // The old journalctl ends before the new one starts.
            drop(follower.take());
            follower = selection
                .subject
                .clone()
                .map(|s| Follower::start(s, source.manager));
        }
        notice = notice.filter(|(_, until)| Instant::now() < *until);
        let status_line = match (&notice, &mut job) {
            (Some((notice, _)), _) => notice.clone(),
            (None, Some(job)) => job.line(),
            (None, None) if message.is_empty() && table.is_empty() => {
                "no app is installed; `sysmgr start FILE` starts one".to_string()
            }
            (None, None) => message.clone(),
        };
        terminal.draw(|f| {
            let area = f.area();
            let width = usize::from(area.width);
            let status = status_lines(&status_line, width);
            let status_h = u16::try_from(status.len()).unwrap_or(STATUS_MAX);
            let (table_h, journal_h) = heights(area.height, table.len(), status_h);
            let [help, head, body, title, pane, bottom] = Layout::vertical([
                Constraint::Length(1),
                Constraint::Length(1),
                Constraint::Length(table_h.saturating_sub(1)),
                Constraint::Length(1),
                Constraint::Length(journal_h),
                Constraint::Length(status_h),
            ])
            .areas(area);
            f.render_widget(Paragraph::new(cut(HELP, width)), help);
            let lines = layout(&table, width);
            let bold = Style::new().add_modifier(Modifier::BOLD);
            f.render_widget(
                Paragraph::new(Line::styled(
                    lines.first().cloned().unwrap_or_default(),
                    bold,
                )),
                head,
            );
            let items: Vec<ListItem> = lines
                .into_iter()
                .skip(1)
                .zip(&table)
                .map(|(l, r)| {
                    let style = if r.total() { bold } else { Style::new() };
                    ListItem::new(Line::styled(l, style))
                })
                .collect();
            let list =
                List::new(items).highlight_style(Style::new().add_modifier(Modifier::REVERSED));
            let mut state = ListState::default().with_selected(Some(selection.index));
            f.render_stateful_widget(list, body, &mut state);
            let (journal_title, journal_lines) = match &follower {
                Some(fl) => {
                    let (mut lines, error) = fl.last(usize::from(journal_h));
                    // journalctl's complaint (it may go on reading) under its lines.
                    lines.extend(error);
                    let shown = journal::fit(&lines, width, usize::from(journal_h));
                    (fl.subject().title(), shown)
                }
                None => ("journal".to_string(), Vec::new()),
            };
            f.render_widget(
                Paragraph::new(Line::styled(
                    cut(&format!("── {journal_title} "), width),
                    bold,
                )),
                title,
            );
            f.render_widget(
                Paragraph::new(
                    journal_lines
                        .into_iter()
                        .map(Line::from)
                        .collect::<Vec<_>>(),
                ),
                pane,
            );
            f.render_widget(
                Paragraph::new(status.into_iter().map(Line::from).collect::<Vec<_>>()),
                bottom,
            );
        })?;
        let wait = next.saturating_duration_since(Instant::now()).min(REFRESH);
        if !event::poll(wait)? {
            continue;
        }
        let Event::Key(key) = event::read()? else {
            continue;
        };
        if key.kind != KeyEventKind::Press {
            continue;
        }
        let Some(key) = Key::of(key.code, key.modifiers) else {
            continue;
        };
        match key {
            Key::Quit => break,
            Key::Up => selection.moved(&table, -1),
            Key::Down => selection.moved(&table, 1),
            _ => {
                // One action at a time; the status line shows the one running.
                if let Some(running) = job.as_mut().and_then(|j| j.running().then_some(&*j)) {
                    notice = Some((
                        format!(
                            "busy: `{}` is still running; one action at a time",
                            running.action().describe()
                        ),
                        Instant::now() + NOTICE,
                    ));
                    continue;
                }
                match table.get(selection.index).and_then(|row| key.action(row)) {
                    Some(Ok(action)) => match Job::spawn(action, source.manager) {
                        Ok(j) => job = Some(j),
                        Err(e) => {
                            job = None;
                            message = format!("error: cannot start a thread: {e}");
                        }
                    },
                    Some(Err(why)) => {
                        job = None;
                        message = why;
                    }
                    None => {}
                }
            }
        }
        // A refresh soon after a key, so its effect shows.
        next = next.min(Instant::now() + Duration::from_millis(200));
    }
    drop(follower);
    drop(terminal);
    drop(guard);
    // An action is never cut short: the lock and the app's state are left as its command
    // would leave them.
    if let Some(mut job) = job {
        if job.running() {
            eprintln!(
                "sysmgr monit: waiting for `{}` to finish",
                job.action().describe()
            );
        }
        let what = job.action().describe();
        match job.wait() {
            Ok(done) => eprintln!("sysmgr monit: {done}"),
            Err(e) => eprintln!("sysmgr monit: {what} failed: {e}"),
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_map_to_actions_on_the_selected_row() {
        let none = KeyModifiers::NONE;
        assert_eq!(Key::of(KeyCode::Char('q'), none), Some(Key::Quit));
        assert_eq!(
            Key::of(KeyCode::Char('c'), KeyModifiers::CONTROL),
            Some(Key::Quit)
        );
        assert_eq!(Key::of(KeyCode::Char('c'), none), None);
        assert_eq!(Key::of(KeyCode::Char('j'), none), Some(Key::Down));
        assert_eq!(Key::of(KeyCode::Up, none), Some(Key::Up));
        assert_eq!(Key::of(KeyCode::Char('R'), none), Some(Key::Restart));
        let row = |instance| Row {
            app: "web".into(),
            instance,
            cells: Default::default(),
        };
        assert_eq!(
            Key::Restart.action(&row(Some(2))),
            Some(Ok(Action::Restart {
                app: "web".into(),
                instance: 2
            }))
        );
        assert_eq!(
            Key::Restart.action(&row(None)),
            Some(Err(
                "select an instance of `web` to restart it (r reloads every instance)".into()
            ))
        );
        assert_eq!(
            Key::Fewer.action(&row(None)),
            Some(Ok(Action::Scale {
                app: "web".into(),
                by: Count::Remove(1)
            }))
        );
        assert_eq!(
            Key::Reload.action(&row(Some(1))),
            Some(Ok(Action::Reload { app: "web".into() }))
        );
        assert_eq!(Key::Down.action(&row(Some(1))), None);
    }

    #[test]
    fn a_long_status_is_wrapped_on_up_to_three_lines() {
        assert_eq!(status_lines("ok: done", 80), ["ok: done"]);
        assert_eq!(status_lines("", 80), [""]);
        assert_eq!(status_lines("abcdefgh", 3), ["abc", "def", "gh"]);
        assert_eq!(status_lines("abcdefghijk", 3), ["abc", "def", "gh~"]);
    }

    #[test]
    fn the_selection_stays_on_its_instance_as_rows_come_and_go() {
        let row = |app: &str, instance| Row {
            app: app.into(),
            instance,
            cells: Default::default(),
        };
        let four: Vec<Row> = (1..=4)
            .map(|i| row("web", Some(i)))
            .chain([row("web", None)])
            .collect();
        let mut sel = Selection::default();
        sel.place(&four);
        assert_eq!(
            (sel.index, sel.subject.clone().unwrap().instance),
            (0, Some(1))
        );
        sel.moved(&four, -1);
        assert_eq!(sel.index, 0, "stops at the top");
        sel.moved(&four, 2);
        assert_eq!(sel.subject.clone().unwrap().instance, Some(3));
        // An app listed before `web` now: the selection follows instance 3.
        let more: Vec<Row> = [row("api", Some(1)), row("api", None)]
            .into_iter()
            .chain(four.iter().cloned())
            .collect();
        sel.place(&more);
        assert_eq!(sel.index, 4);
        // Its row went away: the same place, within the table.
        sel.place(&four[..2]);
        assert_eq!(
            (sel.index, sel.subject.clone().unwrap().instance),
            (1, Some(2))
        );
        sel.moved(&four, 10);
        assert_eq!(
            (sel.index, sel.subject.clone().unwrap().instance),
            (4, None)
        );
        sel.place(&[]);
        assert_eq!((sel.index, sel.subject), (0, None));
    }

    #[test]
    fn the_screen_fits_80x24_with_the_journal_below_the_table() {
        assert!(HELP.chars().count() <= 80, "{}", HELP.chars().count());
        // 4 instances and a total: the whole table (with its header), the journal the rest.
        assert_eq!(heights(24, 5, 1), (6, 15));
        // A status line of three lines takes them from the journal.
        assert_eq!(heights(24, 5, 3), (6, 13));
        // 64 instances: the table scrolls, the journal keeps its lines.
        assert_eq!(heights(24, 65, 1), (15, 6));
        // A small terminal shares what there is.
        assert_eq!(heights(10, 65, 1), (3, 4));
        assert_eq!(heights(2, 5, 1), (0, 0));
        for (h, rows) in [(24, 1), (24, 200), (5, 3), (40, 10)] {
            let (t, j) = heights(h, rows, 1);
            assert!(t + j + 3 <= h, "{h} {rows}");
        }
    }
}
