//! `sysmgr scale NAME N|+N|-N`: change how many instances run, now and after a reboot.
//! `sysmgr scale all +1` (as `pm2 scale`, with PM2's `all`) scales every installed app in
//! turn, each from its own count.
//!
//! The count is persisted as the links in `NAME.target.wants/` (what the target starts at
//! boot); then the new instances are started, or the ones beyond the count stopped with
//! their per-instance sockets. A stopped app only has its count changed. A failure changes
//! nothing, or says what it changed (`controller::App::scale`).

use std::num::NonZeroU32;
use std::process::ExitCode;
use std::str::FromStr;

use clap::Args;

use super::error::CliError;
use super::lifecycle::{self, LockArgs};
use crate::config::types::MAX_INSTANCES;
use crate::controller::Scaled;
use crate::systemd::dbus::Systemd;
use crate::systemd::Manager;

/// The count asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    /// `N`.
    Set(u32),
    /// `+N`.
    Add(u32),
    /// `-N`.
    Remove(u32),
}

impl FromStr for Count {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let number = |digits: &str| {
            digits
                .parse::<u32>()
                .map_err(|_| format!("`{s}` is not a count; use N, +N or -N, e.g. 4 or +1"))
        };
        if let Some(rest) = s.strip_prefix('+') {
            Ok(Self::Add(number(rest)?))
        } else if let Some(rest) = s.strip_prefix('-') {
            Ok(Self::Remove(number(rest)?))
        } else {
            Ok(Self::Set(number(s)?))
        }
    }
}

impl Count {
    /// The new count from the current one, within 1..=MAX_INSTANCES.
    pub fn apply(self, app: &str, current: u32) -> Result<NonZeroU32, CliError> {
        let wanted = match self {
            Self::Set(n) => i64::from(n),
            Self::Add(n) => i64::from(current) + i64::from(n),
            Self::Remove(n) => i64::from(current) - i64::from(n),
        };
        if wanted < 1 {
            return Err(CliError::ScaleBelowOne {
                app: app.to_string(),
                wanted,
                current,
            });
        }
        if wanted > i64::from(MAX_INSTANCES) {
            return Err(CliError::ScaleAboveMax {
                app: app.to_string(),
                wanted,
            });
        }
        Ok(NonZeroU32::new(wanted as u32).expect("checked above"))
    }
}

#[derive(Debug, Args)]
pub struct ScaleArgs {
    /// The app, `all` (every installed app, in turn), or an app file or PM2 ecosystem file
    /// (every app of it).
    #[arg(value_name = "NAME|FILE")]
    pub name: String,
    /// The new count: N, or +N / -N relative to each app's current one.
    #[arg(value_name = "N|+N|-N", allow_hyphen_values = true)]
    pub count: Count,
    #[command(flatten)]
    pub lock: LockArgs,
}

pub fn run(args: &ScaleArgs, manager: Manager) -> anyhow::Result<ExitCode> {
    lifecycle::for_each_app("scale", &args.name, manager, |name| {
        run_one(args, manager, name)
    })
}

fn run_one(args: &ScaleArgs, manager: Manager, name: &str) -> anyhow::Result<()> {
    // Opened under the lock: the current count cannot change between reading and writing it.
    let mut app = lifecycle::open(manager, name, &args.lock)?;
    let current = app.instances().len() as u32;
    let new = args.count.apply(name, current)?;
    lifecycle::runtime()?.block_on(async {
        // Connected before anything is written: an unreachable systemd changes nothing.
        let sd = Systemd::connect(manager).await?;
        for line in app.settle_slots(&sd).await? {
            eprintln!("scale {name}: {line}");
        }
        eprintln!("{}", scaled_line(name, &app.scale(&sd, new).await?));
        Ok(())
    })
}

/// What a scale did, in words (`sysmgr scale` prints it, `sysmgr monit` shows it).
pub(crate) fn scaled_line(name: &str, scaled: &Scaled) -> String {
    match scaled {
        Scaled::CountOnly { to } => format!(
            "scale {name}: {} from now on; `{name}` is stopped, `sysmgr start {name}` starts them",
            lifecycle::instances_word(*to as usize)
        ),
        Scaled::Now {
            from,
            to,
            started,
            stopped,
        } => format!("scaled `{name}` from {from} to {to}: started {started}, stopped {stopped}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_parse_and_apply() {
        assert_eq!("4".parse(), Ok(Count::Set(4)));
        assert_eq!("+2".parse(), Ok(Count::Add(2)));
        assert_eq!("-1".parse(), Ok(Count::Remove(1)));
        assert_eq!(
            "x".parse::<Count>(),
            Err("`x` is not a count; use N, +N or -N, e.g. 4 or +1".into())
        );
        assert_eq!(Count::Add(2).apply("web", 3).unwrap().get(), 5);
        assert_eq!(Count::Remove(2).apply("web", 3).unwrap().get(), 1);
        assert_eq!(
            Count::Remove(3).apply("web", 3).unwrap_err().to_string(),
            "cannot scale `web` to 0 instances (it has 3); at least 1 must run; use `sysmgr stop web` to stop it"
        );
        assert_eq!(
            Count::Set(5000).apply("web", 3).unwrap_err().to_string(),
            "cannot scale `web` to 5000 instances; at most 1024 are allowed"
        );
    }
}
