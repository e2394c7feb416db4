//! Rendering: a validated [`AppSpec`] in, named unit texts and links out.
//!
//! A pure function, like quadlet's `ConvertContainer`: no filesystem, environment or clock.
//! The unit skeletons are the files in `units/` (readable by a sysadmin, comments included);
//! this module only fills their `@KEY@` placeholders. A placeholder alone on a line expands to
//! a block of zero or more lines.

use std::fmt::Write as _;
use std::num::NonZeroU32;

use crate::config::{AppSpec, FdName, Listen, SocketMode};
use crate::names::{Link, UnitNames};
use crate::systemd::syntax;

const SERVICE_TEMPLATE: &str = include_str!("../units/app@.service");
const INSTANCE_SOCKET_TEMPLATE: &str = include_str!("../units/app@.socket");
const SHARED_SOCKET_TEMPLATE: &str = include_str!("../units/app.socket");
const TARGET_TEMPLATE: &str = include_str!("../units/app.target");

/// The line that marks a file as sysmgr's; the writer only replaces or removes such files.
pub const HEADER_MARK: &str = "# sysmgr-app: ";

/// Which service manager the units are for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Manager {
    /// The system manager (`/etc/systemd/system`).
    System,
    /// A user manager (`~/.config/systemd/user`).
    User,
}

impl Manager {
    /// The target a booted system reaches, which `NAME.target` hooks into.
    pub fn default_target(self) -> &'static str {
        match self {
            Self::System => "multi-user.target",
            Self::User => "default.target",
        }
    }
}

/// How the units will be installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// `sysmgr generate`: files the admin enables with `systemctl enable NAME.target`.
    Generate,
    /// The systemd generator: units cannot be enabled, so `NAME.target` is hooked into the
    /// default target with a link, the way quadlet honours `[Install]`.
    Generator,
}

/// One unit file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitFile {
    /// File name, e.g. `web@.service`.
    pub name: String,
    /// Full text.
    pub contents: String,
}

/// Everything generated for one app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// The app name the files belong to.
    pub app: String,
    /// Unit files.
    pub files: Vec<UnitFile>,
    /// Wants links.
    pub links: Vec<Link>,
}

/// Listen entries grouped by fd name, in order of first appearance: one socket unit each,
/// since `FileDescriptorName=` names every fd of a socket unit alike.
fn socket_groups(listen: &[Listen]) -> Vec<(&FdName, Vec<&Listen>)> {
    let mut groups: Vec<(&FdName, Vec<&Listen>)> = Vec::new();
    for l in listen {
        match groups.iter_mut().find(|(name, _)| **name == l.name) {
            Some((_, members)) => members.push(l),
            None => groups.push((&l.name, vec![l])),
        }
    }
    groups
}

/// Fills `@KEY@` placeholders. A line holding only a placeholder is replaced by the block
/// (dropped when empty); elsewhere the value is inserted inline. An unknown key is a bug.
fn fill(template: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(template.len() * 2);
    for line in template.lines() {
        let trimmed = line.trim();
        if let Some(key) = placeholder(trimmed).filter(|k| k.len() + 2 == trimmed.len()) {
            let block = lookup(key).unwrap_or_else(|| panic!("bug: unknown template key {key}"));
            if !block.is_empty() {
                out.push_str(block.trim_end_matches('\n'));
                out.push('\n');
            }
            continue;
        }
        let mut rest = line;
        while let Some(at) = rest.find('@') {
            out.push_str(&rest[..at]);
            match placeholder(&rest[at..]) {
                Some(key) => {
                    let value =
                        lookup(key).unwrap_or_else(|| panic!("bug: unknown template key {key}"));
                    out.push_str(&value);
                    rest = &rest[at + key.len() + 2..];
                }
                None => {
                    out.push('@');
                    rest = &rest[at + 1..];
                }
            }
        }
        out.push_str(rest);
        out.push('\n');
    }
    out
}

/// The key of a placeholder at the start of `s` (`@KEY@...` -> `KEY`).
fn placeholder(s: &str) -> Option<&str> {
    let body = s.strip_prefix('@')?;
    let end = body.find('@')?;
    let key = &body[..end];
    (!key.is_empty() && key.chars().all(|c| c.is_ascii_uppercase() || c == '_')).then_some(key)
}

/// Renders every unit of `spec` with `instances` instances.
pub fn render(spec: &AppSpec, instances: NonZeroU32, manager: Manager, flavor: Flavor) -> Rendered {
    let names = UnitNames::new(spec.name.as_str());
    let name = spec.name.as_str();
    let description = syntax::free_text(spec.description.as_deref().unwrap_or(name));
    let header = header(spec);
    let groups = socket_groups(&spec.listen);
    let per_instance = spec.socket_mode == SocketMode::PerInstance;
    let socket_units: Vec<String> = groups
        .iter()
        .enumerate()
        .map(|(i, (fd, _))| names.socket_unit(i, fd, per_instance))
        .collect();

    let common = |key: &str| -> Option<String> {
        Some(match key {
            "HEADER" => header.clone(),
            "NAME" => name.to_string(),
            "DESCRIPTION" => description.clone(),
            _ => return None,
        })
    };

    let mut files = Vec::new();
    files.push(UnitFile {
        name: names.service_template(),
        contents: fill(SERVICE_TEMPLATE, &|key| {
            common(key).or_else(|| service_value(spec, key, &socket_units))
        }),
    });
    for (i, (fd, members)) in groups.iter().enumerate() {
        let listen: String = members
            .iter()
            .map(|l| format!("ListenStream={}\n", l.address.systemd_value()))
            .collect();
        let file_name = names.socket_file(i, fd, per_instance);
        let template = if per_instance {
            INSTANCE_SOCKET_TEMPLATE
        } else {
            SHARED_SOCKET_TEMPLATE
        };
        // A per-instance socket named like its service activates it without `Service=`;
        // extra sockets (`NAME-admin@.socket`) must name it.
        let service = if per_instance && i > 0 {
            format!("Service={}", names.instance_template_ref())
        } else {
            String::new()
        };
        files.push(UnitFile {
            name: file_name,
            contents: fill(template, &|key| {
                common(key).or_else(|| {
                    Some(match key {
                        "LISTEN" => listen.clone(),
                        "FD_NAME" => fd.to_string(),
                        "SERVICE" => service.clone(),
                        _ => return None,
                    })
                })
            }),
        });
    }
    files.push(UnitFile {
        name: names.target(),
        contents: fill(TARGET_TEMPLATE, &|key| {
            common(key).or_else(|| (key == "WANTED_BY").then(|| manager.default_target().into()))
        }),
    });

    let mut links = names.instance_links(instances);
    if flavor == Flavor::Generator {
        links.push(names.target_link(manager.default_target()));
    }
    Rendered {
        app: name.to_string(),
        files,
        links,
    }
}

/// The three header lines every generated file starts with.
fn header(spec: &AppSpec) -> String {
    let source = syntax::free_text(&spec.source.display().to_string());
    let profile = spec
        .profile
        .as_deref()
        .map(|p| format!(" with --env {}", syntax::free_text(p)))
        .unwrap_or_default();
    format!(
        "# Generated by sysmgr {} from {source}{profile}.\n\
         # Edit that file and run `sysmgr generate` again; changes made here are overwritten.\n\
         {HEADER_MARK}{}",
        env!("CARGO_PKG_VERSION"),
        spec.name
    )
}

/// The placeholders of the service template that depend on the spec.
fn service_value(spec: &AppSpec, key: &str, socket_units: &[String]) -> Option<String> {
    let mut out = String::new();
    match key {
        "SOCKET_DEPS" if !socket_units.is_empty() => {
            let units = socket_units.join(" ");
            out.push_str("# systemd owns the listening sockets, so no connection is refused while this\n# instance restarts; starting the instance starts its sockets first.\n");
            let _ = write!(out, "Requires={units}\nAfter={units}");
        }
        "SOCKETS" if !socket_units.is_empty() => {
            let _ = writeln!(out, "Sockets={}", socket_units.join(" "));
            if spec.socket_mode == SocketMode::Shared {
                out.push_str("# The socket is shared by every instance: it must stay non-blocking, or spawning\n# one instance makes the others hang in accept().\n");
            } else {
                out.push_str("# Workers get non-blocking sockets, as event loops expect.\n");
            }
            out.push_str("NonBlocking=yes");
        }
        "SOCKET_DEPS" | "SOCKETS" => {}
        "MAX_RESTARTS" => out = spec.max_restarts.to_string(),
        "TYPE" => {
            if spec.wait_ready {
                out.push_str("# PM2's wait_ready: the instance counts as started once it sends READY=1,\n# from its main process or a helper it runs.\nType=notify\nNotifyAccess=all");
            } else if spec.systemd_version >= 240 {
                out.push_str(
                    "# wait_ready = false: started as soon as the program is running.\nType=exec",
                );
            } else {
                out.push_str(
                    "# wait_ready = false: started as soon as the process is forked.\nType=simple",
                );
            }
        }
        "EXEC_START" => {
            out = syntax::exec_line(&spec.command).expect("command was checked by the spec");
        }
        "CWD" => out = syntax::path_value(&spec.cwd.to_string_lossy()),
        "ACCOUNT" => {
            if let Some(user) = &spec.user {
                let _ = writeln!(out, "User={user}");
            }
            if let Some(group) = &spec.group {
                let _ = writeln!(out, "Group={group}");
            }
        }
        "INSTANCE_VAR" => out = spec.instance_var.clone(),
        "KILL_TIMEOUT_MS" => out = spec.kill_timeout.as_millis().to_string(),
        "ENVIRONMENT" => {
            for (k, v) in &spec.env {
                let assignment =
                    syntax::env_assignment(k, v).expect("environment was checked by the spec");
                let _ = writeln!(out, "Environment={assignment}");
            }
        }
        "LISTEN_TIMEOUT" => out = spec.listen_timeout.to_string(),
        "KILL_TIMEOUT" => out = spec.kill_timeout.to_string(),
        "KILL_SIGNAL" => out = spec.kill_signal.name().to_string(),
        "RESTART" => {
            if spec.autorestart {
                out.push_str("# PM2's autorestart: restart after any exit that systemctl or sysmgr did not ask for.\nRestart=always");
            } else {
                out.push_str("Restart=no");
            }
            if let Some(delay) = spec.restart_delay {
                let _ = write!(out, "\nRestartSec={delay}");
            }
            if !spec.stop_exit_codes.is_empty() {
                let codes: Vec<String> = spec.stop_exit_codes.iter().map(u8::to_string).collect();
                let _ = write!(
                    out,
                    "\n# PM2's stop_exit_codes: exiting with these does not restart the instance.\nRestartPreventExitStatus={}",
                    codes.join(" ")
                );
            }
        }
        "LIMITS" => {
            if let Some(max) = spec.max_memory_restart {
                let _ = writeln!(out, "# PM2's max_memory_restart: past this the kernel kills the instance and it restarts.\nMemoryMax={}", max.get());
            }
            if let Some(watchdog) = spec.watchdog {
                let _ = writeln!(out, "# The worker must send WATCHDOG=1 at least this often, or it is restarted.\nWatchdogSec={watchdog}");
            }
        }
        _ => return None,
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_handles_blocks_inline_values_and_literal_at_signs() {
        let lookup = |k: &str| match k {
            "A" => Some("x".to_string()),
            "B" => Some(String::new()),
            "C" => Some("l1\nl2\n".to_string()),
            _ => None,
        };
        assert_eq!(
            fill("a=@A@@%i.service\n@B@\n  @C@\nmail@host @A@\n", &lookup),
            "a=x@%i.service\nl1\nl2\nmail@host x\n"
        );
    }

    #[test]
    #[should_panic(expected = "bug: unknown template key NOPE")]
    fn fill_refuses_unknown_keys() {
        fill("@NOPE@\n", &|_| None);
    }
}
