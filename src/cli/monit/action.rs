//! What the keys of `sysmgr monit` do to an app: reload it, restart one instance, scale it by
//! one. Each runs on a thread of its own, so the screen keeps refreshing, and does what the
//! command of the same name does: it takes the app's lock (waiting, and saying so, while
//! another sysmgr changes the app), opens the app and calls the controller's method. What it
//! would print goes to a line the status bar shows instead.

use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use super::super::scale::{scaled_line, Count};
use super::super::{lifecycle, reload};
use crate::controller::App;
use crate::lock::{self, AppLock, Wait};
use crate::names::UnitNames;
use crate::reload::engine::human;
use crate::reload::{Event, Options, Step};
use crate::systemd::dbus::Systemd;
use crate::systemd::Manager;

/// An action on an app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// `sysmgr reload APP`.
    Reload { app: String },
    /// Restart `APP@N.service` alone, through its drain.
    Restart { app: String, instance: u32 },
    /// `sysmgr scale APP +1` or `-1`.
    Scale { app: String, by: Count },
}

impl Action {
    /// The app it changes.
    pub fn app(&self) -> &str {
        match self {
            Self::Reload { app } | Self::Restart { app, .. } | Self::Scale { app, .. } => app,
        }
    }

    /// What it is, in a few words: `reload web`, `restart web@2.service`, `scale web +1`.
    pub fn describe(&self) -> String {
        match self {
            Self::Reload { app } => format!("reload {app}"),
            Self::Restart { app, instance } => {
                format!("restart {}", UnitNames::new(app).instance(*instance))
            }
            Self::Scale { app, by } => match by {
                Count::Add(n) => format!("scale {app} +{n}"),
                Count::Remove(n) => format!("scale {app} -{n}"),
                Count::Set(n) => format!("scale {app} {n}"),
            },
        }
    }
}

/// An action running on its thread, or its outcome once it ended.
#[derive(Debug)]
pub struct Job {
    action: Action,
    /// Its latest progress line.
    progress: Arc<Mutex<String>>,
    thread: Option<JoinHandle<Result<String, String>>>,
    outcome: Option<Result<String, String>>,
    /// Whether [`Job::just_ended`] said so already.
    told: bool,
}

impl Job {
    /// Starts `action` on a thread of its own.
    pub fn spawn(action: Action, manager: Manager) -> std::io::Result<Self> {
        let progress = Arc::new(Mutex::new(String::from("starting")));
        let thread = {
            let progress = Arc::clone(&progress);
            let action = action.clone();
            std::thread::Builder::new()
                .name("monit-action".into())
                .spawn(move || {
                    let say = move |line: String| {
                        *progress.lock().unwrap_or_else(PoisonError::into_inner) = line;
                    };
                    perform(&action, manager, &say).map_err(|e| format!("{e:#}"))
                })?
        };
        Ok(Self {
            action,
            progress,
            thread: Some(thread),
            outcome: None,
            told: false,
        })
    }

    /// What it does.
    pub fn action(&self) -> &Action {
        &self.action
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        if self.thread.as_ref().is_some_and(JoinHandle::is_finished) {
            self.join();
        }
        self.outcome.is_none()
    }

    /// True once, the first time it is asked after the action ended (the view then reads
    /// systemd at once, so the change shows).
    pub fn just_ended(&mut self) -> bool {
        if self.running() || self.told {
            return false;
        }
        self.told = true;
        true
    }

    fn join(&mut self) {
        if let Some(thread) = self.thread.take() {
            self.outcome = Some(thread.join().unwrap_or_else(|_| {
                Err(format!(
                    "{} stopped by a panic (a bug in sysmgr)",
                    self.action.describe()
                ))
            }));
        }
    }

    /// Waits for it to end; its outcome.
    pub fn wait(mut self) -> Result<String, String> {
        self.join();
        self.outcome.unwrap_or_else(|| Ok(String::new()))
    }

    /// The status line: its progress while it runs, then `ok: ...` or `error: ...`.
    pub fn line(&mut self) -> String {
        if self.running() {
            let progress = self
                .progress
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            return format!("{}: {progress}", self.action.describe());
        }
        match &self.outcome {
            Some(Ok(done)) => format!("ok: {done}"),
            Some(Err(e)) => format!("error: {}: {e}", self.action.describe()),
            None => String::new(),
        }
    }
}

/// Does `action` under the app's lock, as its command does; returns the line that says
/// what happened. Progress goes to `say`.
fn perform(action: &Action, manager: Manager, say: &dyn Fn(String)) -> anyhow::Result<String> {
    let name = action.app();
    let dir = lock::lock_dir(manager)?;
    let lock = AppLock::acquire(&dir, name, Wait::Block, |holder| {
        let who = holder.map(|p| format!(" (pid {p})")).unwrap_or_default();
        // Short: the status line is one line of the screen.
        say(format!(
            "another sysmgr{who} is changing `{name}`; waiting for it"
        ));
    })?;
    say("working".into());
    let mut app = App::open(manager, name, lock)?;
    lifecycle::runtime()?.block_on(async {
        let sd = Systemd::connect(manager).await?;
        match action {
            Action::Reload { .. } => {
                let last = Mutex::new(String::new());
                let mut lines = |line: String| {
                    say(line.clone());
                    *last.lock().unwrap_or_else(PoisonError::into_inner) = line;
                };
                let mode = reload::Mode::of(&app, None, Options::default().parallel)?;
                reload::reload_one(
                    &sd,
                    &mut app,
                    mode,
                    &Options::default(),
                    &mut progress(say),
                    &mut lines,
                )
                .await?;
                Ok(last.into_inner().unwrap_or_else(PoisonError::into_inner))
            }
            Action::Restart { instance, .. } => {
                let summary = app
                    .restart_instance(&sd, *instance, &mut progress(say))
                    .await;
                reload::halt_error("restart", &summary, &reload::Halt::default())?;
                let unit = app.unit(*instance);
                Ok(match summary.instances.first() {
                    Some(r) => format!(
                        "restarted `{unit}` in {}, pid {} -> {}",
                        human(r.total),
                        r.old_pid,
                        r.new_pid
                    ),
                    None => format!("restarted `{unit}`"),
                })
            }
            Action::Scale { by, .. } => {
                let new = by.apply(name, app.instances().len() as u32)?;
                Ok(scaled_line(name, &app.scale(&sd, new).await?))
            }
        }
    })
}

/// The rollout's progress, one line per instance that finished.
fn progress(say: &dyn Fn(String)) -> impl FnMut(&Event<'_>) + '_ {
    move |event| {
        if let Event::Finished {
            index,
            total,
            report,
        } = event
        {
            say(match (&report.step, &report.failure) {
                (Step::Ready, _) => format!(
                    "{index} of {total} ready ({} pid {} -> {})",
                    report.unit, report.old_pid, report.new_pid
                ),
                (_, Some(failure)) => format!(
                    "{index} of {total} failed ({}: {})",
                    report.unit, failure.reason
                ),
                _ => return,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_describe_themselves_as_their_commands() {
        let app = || "web".to_string();
        assert_eq!(Action::Reload { app: app() }.describe(), "reload web");
        assert_eq!(
            Action::Restart {
                app: app(),
                instance: 2
            }
            .describe(),
            "restart web@2.service"
        );
        assert_eq!(
            Action::Scale {
                app: app(),
                by: Count::Add(1)
            }
            .describe(),
            "scale web +1"
        );
        assert_eq!(
            Action::Scale {
                app: app(),
                by: Count::Remove(1)
            }
            .describe(),
            "scale web -1"
        );
    }
}
