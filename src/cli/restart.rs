//! `sysmgr restart NAME`: restart every instance at once, like `pm2 restart`. Unlike
//! `systemctl restart NAME.target`, the sockets stay open (systemd queues connections while
//! the workers restart) and each instance is verified like in a reload.

use std::process::ExitCode;

use clap::Args;

use super::lifecycle::{self, LockArgs};
use crate::controller::ControlError;
use crate::systemd::dbus::Systemd;
use crate::systemd::Manager;

#[derive(Debug, Args)]
pub struct RestartArgs {
    /// The app, `all` (every installed app, in turn), or an app file or PM2 ecosystem file
    /// (every app of it).
    #[arg(value_name = "NAME|FILE")]
    pub name: String,
    #[command(flatten)]
    pub lock: LockArgs,
}

pub fn run(args: &RestartArgs, manager: Manager) -> anyhow::Result<ExitCode> {
    lifecycle::for_each_app("restart", &args.name, manager, |name| {
        run_one(args, manager, name).map(drop)
    })
}

fn run_one(args: &RestartArgs, manager: Manager, name: &str) -> anyhow::Result<ExitCode> {
    // The instance list is read under the lock, so a concurrent scale cannot change it.
    let mut app = lifecycle::open(manager, name, &args.lock)?;
    lifecycle::runtime()?.block_on(async {
        let sd = Systemd::connect(manager).await?;
        for line in app.settle_slots(&sd).await? {
            eprintln!("restart {name}: {line}");
        }
        match app.recover_sockets(&sd, "restart").await {
            Ok(cleared) => super::start::say_sockets_cleared("restart", name, &cleared),
            Err(e) => match e.downcast_ref::<ControlError>() {
                Some(ControlError::SocketWedged {
                    socket,
                    result,
                    holders,
                    ..
                }) => {
                    eprintln!(
                        "restart {name}: `{socket}` had failed (systemd's result: `{result}`) while {holders} served on it; systemd cannot listen again until they stop, so every instance is stopped first and the app started again"
                    );
                    let states = app.restart_stopped(&sd).await?;
                    super::start::report_states("restart", "restarted", name, &states, manager)?;
                    return Ok(ExitCode::SUCCESS);
                }
                _ => return Err(e),
            },
        }
        let running = app.running(&sd).await?;
        let summary = app
            .restart(&sd, &mut super::reload::printer("restart"))
            .await;
        super::reload::report(
            "restart",
            &summary,
            &running,
            &super::reload::Halt::default(),
        )?;
        Ok(ExitCode::SUCCESS)
    })
}
