//! `sysmgr nginx NAME|FILE [--hosts ENV]`: an nginx upstream and server block for the app,
//! one upstream server per host of `[deploy.ENV]` (or this machine without `--hosts`).

use std::process::ExitCode;

use clap::Args;

use super::lifecycle::{self, Target};
use crate::config::ListenAddress;
use crate::deploy::nginx::{self, Front};
use crate::systemd::Manager;

#[derive(Debug, Args)]
pub struct NginxArgs {
    /// The app: its file, or the name of an installed app (its recorded app file is read).
    #[arg(value_name = "NAME|FILE")]
    pub app: String,
    /// One upstream server per host of `[deploy.ENV]` instead of this machine.
    #[arg(long, value_name = "ENV")]
    pub hosts: Option<String>,
    /// The port nginx listens on.
    #[arg(long, value_name = "PORT", default_value_t = 80)]
    pub listen: u16,
    /// nginx's `server_name`.
    #[arg(long, value_name = "NAME", default_value = "_")]
    pub server_name: String,
}

pub fn run(args: &NginxArgs, manager: Manager) -> anyhow::Result<ExitCode> {
    let file = match Target::parse(&args.app) {
        Target::File(path) => path,
        Target::Name(name) => {
            let name = lifecycle::app_name(&name)?;
            let dir = crate::controller::unit_dir(manager)?;
            let app = crate::controller::find(&dir, manager, &name)?;
            app.source
                .ok_or(super::error::CliError::NoSource { app: name })?
        }
    };
    let spec = super::deploy::load(&file, manager)?;
    let Some((addr, port)) = spec.listen.iter().find_map(|l| match &l.address {
        ListenAddress::Inet(a) => Some((Some(a.ip()), a.port())),
        ListenAddress::Port(p) => Some((None, *p)),
        ListenAddress::Unix(_) => None,
    }) else {
        return Err(super::error::CliError::NoTcpListen {
            app: spec.name.to_string(),
        }
        .into());
    };
    let (servers, origin) = match &args.hosts {
        Some(env) => {
            let env = crate::deploy::find(&spec.deploy, &file.display().to_string(), env)?;
            if addr.is_some_and(|a| a.is_loopback()) {
                eprintln!(
                    "sysmgr nginx: warning: `{}` listens on {} only, which nginx on another machine cannot reach; listen on the port alone (`listen = [\"{port}\"]`) or on the host's address",
                    spec.name,
                    addr.expect("checked")
                );
            }
            let servers = env
                .hosts
                .iter()
                .map(|h| {
                    if h.host.contains(':') {
                        format!("[{}]:{port}", h.host)
                    } else {
                        format!("{}:{port}", h.host)
                    }
                })
                .collect();
            (servers, format!("the hosts of `[deploy.{}]`", env.name))
        }
        None => {
            let local = match addr {
                Some(a) if a.is_ipv6() => format!("[{a}]:{port}"),
                Some(a) if !a.is_unspecified() => format!("{a}:{port}"),
                _ => format!("127.0.0.1:{port}"),
            };
            (vec![local], "this machine".to_string())
        }
    };
    print!(
        "{}",
        nginx::render(&Front {
            app: spec.name.as_str(),
            servers,
            listen: args.listen,
            server_name: &args.server_name,
            origin,
        })
    );
    Ok(ExitCode::SUCCESS)
}
