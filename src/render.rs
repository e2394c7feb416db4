//! Rendering: a validated [`AppSpec`] in, named unit texts and links out.
//!
//! A pure function, like quadlet's `ConvertContainer`: no filesystem, environment or clock.
//! The unit skeletons are the files in `units/` (readable by a sysadmin, comments included);
//! this module only fills their `@KEY@` placeholders. A placeholder named after an app.toml
//! key is filled from that key's entry in the key table ([`crate::config::keys`]): alone on
//! a line it expands to the key's settings (zero or more lines), inside a line to its value.
//! The few other placeholders ([`STRUCTURE`]) are the units' structure: the header, and the
//! sockets that `listen` and `socket` make, which tie several units together.

use std::fmt::Write as _;
use std::num::NonZeroU32;
use std::path::PathBuf;

use crate::config::keys;
use crate::config::{AppSpec, FdName, HealthCheck, HealthProbe, Listen, Runtime, SocketMode};
use crate::names::{Link, UnitNames};
use crate::systemd::syntax::{self, SyntaxError};
// Re-exported where callers found it before it moved down to `systemd/`.
use crate::systemd::Manager;

const SERVICE_TEMPLATE: &str = include_str!("../units/app@.service");
const INSTANCE_SOCKET_TEMPLATE: &str = include_str!("../units/app@.socket");
const SHARED_SOCKET_TEMPLATE: &str = include_str!("../units/app.socket");
const TARGET_TEMPLATE: &str = include_str!("../units/app.target");
const HEALTH_SOCKET_TEMPLATE: &str = include_str!("../units/app-health@.socket");
const HEALTH_COMMAND_TEMPLATE: &str = include_str!("../units/app-check@.service");
const CRON_TIMER_TEMPLATE: &str = include_str!("../units/app-cron.timer");
const CRON_SERVICE_TEMPLATE: &str = include_str!("../units/app-cron.service");
const MEMORY_TIMER_TEMPLATE: &str = include_str!("../units/app-memory.timer");
const MEMORY_SERVICE_TEMPLATE: &str = include_str!("../units/app-memory.service");

/// The line that marks a file as sysmgr's; the writer only replaces or removes such files.
pub const HEADER_MARK: &str = "# sysmgr-app: ";

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

/// Why an app's units cannot be rendered: a path of sysmgr's own, which every unit starts
/// its program through. It comes from the machine (where sysmgr runs from), not from the app
/// file, so it is no bad input of the user's: nothing is written, and the remedy is where
/// sysmgr is installed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// The sysmgr binary's path cannot be the program of `ExecStart=`.
    #[error("sysmgr's own path `{}` {reason}; units start every instance through it, so run sysmgr from where systemd can start it (the packages install `/usr/bin/sysmgr`)", path.display())]
    SysmgrPath {
        /// The path.
        path: PathBuf,
        /// What systemd cannot take in it.
        reason: SyntaxError,
    },
    /// The Node bridge's path cannot be an argument of `ExecStart=`.
    #[error("the path of sysmgr's Node bridge `{}` {reason}; units preload it into every Node.js instance, so put it where a unit can name it (the packages install `{}`)", path.display(), crate::config::BridgePaths::default().script.display())]
    BridgePath {
        /// The path.
        path: PathBuf,
        /// What systemd cannot take in it.
        reason: SyntaxError,
    },
}

impl crate::Classify for RenderError {
    fn class(&self) -> crate::ErrorClass {
        // The machine around the command, like an I/O error: not the app file's fault.
        crate::ErrorClass::Failed
    }
}

/// Checks the paths of sysmgr's own that `spec`'s units start their programs through.
fn check_own_paths(spec: &AppSpec) -> Result<(), RenderError> {
    let sysmgr = spec.runtime.sysmgr();
    syntax::exec_program_line(sysmgr, &[]).map_err(|(_, reason)| RenderError::SysmgrPath {
        path: sysmgr.to_path_buf(),
        reason,
    })?;
    if let Runtime::Node(bridge) = &spec.runtime {
        syntax::path_argument(&bridge.script).map_err(|reason| RenderError::BridgePath {
            path: bridge.script.clone(),
            reason,
        })?;
    }
    Ok(())
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

/// The placeholders that are not keys but the structure of the units, filled by [`render`].
pub const STRUCTURE: &[&str] = &[
    "HEADER",
    "SOCKET_DEPS",
    "SOCKETS",
    "LISTEN_STREAMS",
    "FD_NAME",
    "SERVICE",
    "WANTED_BY",
    "HEALTH_SOCKET",
    "CHECK_COMMAND",
    "TIMERS",
    "EXEC_RELOAD",
    "EXEC_MEMORY_CHECK",
    "CHECK_INTERVAL",
];

/// The unit templates, by the file name they have in `units/`.
pub const TEMPLATES: &[(&str, &str)] = &[
    ("app@.service", SERVICE_TEMPLATE),
    ("app@.socket", INSTANCE_SOCKET_TEMPLATE),
    ("app.socket", SHARED_SOCKET_TEMPLATE),
    ("app.target", TARGET_TEMPLATE),
    ("app-health@.socket", HEALTH_SOCKET_TEMPLATE),
    ("app-check@.service", HEALTH_COMMAND_TEMPLATE),
    ("app-cron.timer", CRON_TIMER_TEMPLATE),
    ("app-cron.service", CRON_SERVICE_TEMPLATE),
    ("app-memory.timer", MEMORY_TIMER_TEMPLATE),
    ("app-memory.service", MEMORY_SERVICE_TEMPLATE),
];

/// How a placeholder stands in a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// Alone on its line: replaced by a block of lines, or dropped when the block is empty.
    Block,
    /// Inside a line: replaced by a value.
    Inline,
}

/// A key's text for `spec`, when the key has the placeholder in that form.
fn key_text(spec: &AppSpec, placeholder: &str, form: Form) -> Option<String> {
    let key = keys::by_placeholder(placeholder)?;
    match form {
        Form::Block => key.block_text(spec),
        Form::Inline => key.inline.map(|f| f(spec)),
    }
}

/// Every placeholder of `template`, in order, with its form.
pub fn placeholders(template: &str) -> Vec<(String, Form)> {
    let found = std::cell::RefCell::new(Vec::new());
    fill(template, &|key, form| {
        found.borrow_mut().push((key.to_string(), form));
        Some(String::new())
    });
    found.into_inner()
}

/// Fills `@KEY@` placeholders. A line holding only a placeholder is replaced by the block
/// (dropped when empty); elsewhere the value is inserted inline. An unknown key is a bug,
/// which the template tests catch.
fn fill(template: &str, lookup: &dyn Fn(&str, Form) -> Option<String>) -> String {
    let mut out = String::with_capacity(template.len() * 2);
    for line in template.lines() {
        let trimmed = line.trim();
        if let Some(key) = placeholder(trimmed).filter(|k| k.len() + 2 == trimmed.len()) {
            let block = lookup(key, Form::Block)
                .unwrap_or_else(|| panic!("bug: unknown template key {key}"));
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
                    let value = lookup(key, Form::Inline)
                        .unwrap_or_else(|| panic!("bug: unknown template key {key}"));
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

/// Renders every unit of `spec` with `instances` instances. Fails only when a path of
/// sysmgr's own cannot go into a unit ([`RenderError`]).
pub fn render(
    spec: &AppSpec,
    instances: NonZeroU32,
    manager: Manager,
    flavor: Flavor,
) -> Result<Rendered, RenderError> {
    check_own_paths(spec)?;
    let names = UnitNames::new(spec.name.as_str());
    let name = spec.name.as_str();
    let header = header(spec);
    let groups = socket_groups(&spec.listen);
    let per_instance = spec.socket_mode == SocketMode::PerInstance;
    let socket_units: Vec<String> = groups
        .iter()
        .enumerate()
        .map(|(i, (fd, _))| names.socket_unit(i, fd, per_instance))
        .collect();

    let common = |key: &str, form: Form| -> Option<String> {
        match key {
            "HEADER" => Some(header.clone()),
            _ => key_text(spec, key, form),
        }
    };

    let mut files = Vec::new();
    files.push(UnitFile {
        name: names.service_template(),
        contents: fill(SERVICE_TEMPLATE, &|key, form| {
            common(key, form).or_else(|| sockets_of_service(spec, key, &socket_units))
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
            contents: fill(template, &|key, form| {
                common(key, form).or_else(|| {
                    Some(match key {
                        "LISTEN_STREAMS" => listen.clone(),
                        "FD_NAME" => fd.to_string(),
                        "SERVICE" => service.clone(),
                        _ => return None,
                    })
                })
            }),
        });
    }
    match &spec.health_check {
        None => {}
        Some(HealthCheck {
            probe: HealthProbe::Http(_),
            ..
        }) => {
            let path = format!("%t/{}", names.health_socket_path("%i"));
            files.push(UnitFile {
                name: names.health_socket_file(),
                contents: fill(HEALTH_SOCKET_TEMPLATE, &|key, form| {
                    common(key, form).or_else(|| match key {
                        "HEALTH_SOCKET" => Some(path.clone()),
                        "FD_NAME" => Some(crate::config::HEALTH_FD_NAME.to_string()),
                        _ => None,
                    })
                }),
            });
        }
        Some(HealthCheck {
            probe: HealthProbe::Command(argv),
            timeout,
        }) => {
            // Through `sysmgr exec`, like the app: its output gets the app's two journal
            // streams, and a surge's later generation (`%i` = `N:1`) is told its slot alone.
            let mut args = vec!["exec".to_string()];
            args.extend(argv.iter().cloned());
            let exec = syntax::exec_program_line(spec.runtime.sysmgr(), &args)
                .expect("sysmgr's path was checked above, and the check's command by the config");
            let command = format!(
                "ExecStart={exec}\n# The health timeout: a check still running then is stopped.\nTimeoutStartSec={timeout}"
            );
            files.push(UnitFile {
                name: names.health_command_file(),
                contents: fill(HEALTH_COMMAND_TEMPLATE, &|key, form| {
                    common(key, form).or_else(|| (key == "CHECK_COMMAND").then(|| command.clone()))
                }),
            });
        }
    }
    let mut timers = Vec::new();
    // `sysmgr [--user] ARGS...`, as a unit's `ExecStart=`.
    let sysmgr = |args: &[String]| {
        let mut argv = Vec::new();
        if manager == Manager::User {
            argv.push("--user".into());
        }
        argv.extend(args.iter().cloned());
        let line = syntax::exec_program_line(spec.runtime.sysmgr(), &argv)
            .expect("sysmgr's path was checked above, the app name by its type");
        format!("ExecStart={line}")
    };
    if spec.cron_restart.is_some() {
        timers.push(names.cron_timer());
        files.push(UnitFile {
            name: names.cron_timer(),
            contents: fill(CRON_TIMER_TEMPLATE, &common),
        });
        let exec = sysmgr(&["reload".into(), name.into()]);
        files.push(UnitFile {
            name: names.cron_service(),
            contents: fill(CRON_SERVICE_TEMPLATE, &|key, form| {
                common(key, form).or_else(|| (key == "EXEC_RELOAD").then(|| exec.clone()))
            }),
        });
    }
    if let Some(limit) = spec.graceful_memory_limit() {
        timers.push(names.memory_timer());
        let every = format!("{}s", crate::config::MEMORY_CHECK_SECS);
        files.push(UnitFile {
            name: names.memory_timer(),
            contents: fill(MEMORY_TIMER_TEMPLATE, &|key, form| {
                common(key, form).or_else(|| (key == "CHECK_INTERVAL").then(|| every.clone()))
            }),
        });
        let exec = sysmgr(&[
            crate::names::MEMORY_CHECK_COMMAND.into(),
            name.into(),
            "--limit".into(),
            limit.to_string(),
        ]);
        files.push(UnitFile {
            name: names.memory_service(),
            contents: fill(MEMORY_SERVICE_TEMPLATE, &|key, form| {
                common(key, form).or_else(|| (key == "EXEC_MEMORY_CHECK").then(|| exec.clone()))
            }),
        });
    }
    let timers_text = if timers.is_empty() {
        String::new()
    } else {
        format!(
            "# Its timers (cron_restart, the graceful max_memory_restart check) run while it runs.\nWants={}",
            timers.join(" ")
        )
    };
    files.push(UnitFile {
        name: names.target(),
        contents: fill(TARGET_TEMPLATE, &|key, form| {
            common(key, form).or_else(|| match key {
                "WANTED_BY" => Some(manager.default_target().into()),
                "TIMERS" => Some(timers_text.clone()),
                _ => None,
            })
        }),
    });

    let mut links = names.instance_links(instances);
    if flavor == Flavor::Generator {
        links.push(names.target_link(manager.default_target()));
    }
    Ok(Rendered {
        app: name.to_string(),
        files,
        links,
    })
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

/// The socket placeholders of the service template: which sockets the instances get.
fn sockets_of_service(spec: &AppSpec, key: &str, socket_units: &[String]) -> Option<String> {
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
        _ => return None,
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_handles_blocks_inline_values_and_literal_at_signs() {
        let lookup = |k: &str, _: Form| match k {
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

    /// A placeholder spelt differently in a template and in the key table fails here, not
    /// in production.
    #[test]
    fn every_placeholder_is_known_and_every_key_is_placed() {
        let mut used: Vec<(String, Form)> = Vec::new();
        for (file, template) in TEMPLATES {
            for (name, form) in placeholders(template) {
                let known = match keys::by_placeholder(&name) {
                    Some(key) => match form {
                        Form::Block => key.block.is_some(),
                        Form::Inline => key.inline.is_some(),
                    },
                    None => STRUCTURE.contains(&name.as_str()),
                };
                assert!(
                    known,
                    "units/{file}: `@{name}@` ({form:?}) is not filled by the renderer"
                );
                used.push((name, form));
            }
        }
        for key in keys::KEYS {
            for (form, has) in [
                (Form::Block, key.block.is_some()),
                (Form::Inline, key.inline.is_some()),
            ] {
                assert!(
                    !has || used.contains(&(key.placeholder(), form)),
                    "key `{}` has a {form:?} rendering but no template has `@{}@` that way",
                    key.name,
                    key.placeholder()
                );
            }
        }
        for name in STRUCTURE {
            assert!(
                keys::by_placeholder(name).is_none(),
                "`@{name}@` is both a key and the renderer's own"
            );
            assert!(
                used.iter().any(|(n, _)| n == name),
                "`@{name}@` is in no template"
            );
        }
    }

    /// `web`, with a cron and a graceful memory timer, whose units start through sysmgr at
    /// `sysmgr`; its program is `command`.
    fn timed_app(sysmgr: &str, command: &str) -> AppSpec {
        let opts = crate::config::ParseOptions {
            bridge: crate::config::BridgePaths {
                sysmgr: sysmgr.into(),
                script: "/lib/$x 100%/bridge.cjs".into(),
            },
            ..Default::default()
        };
        let text = format!(
            "name = \"web\"\ncommand = \"{command}\"\ncron_restart = \"0 3 * * *\"\nmax_memory_restart = \"300M\"\n"
        );
        crate::config::parse(
            &text,
            "app.toml",
            std::path::Path::new("/srv/app.toml"),
            &opts,
        )
        .unwrap()
        .spec
    }

    /// The `ExecStart=` lines of every rendered file, as `FILE: LINE`.
    fn exec_starts(spec: &AppSpec) -> Result<Vec<String>, RenderError> {
        let rendered = render(spec, NonZeroU32::MIN, Manager::System, Flavor::Generate)?;
        Ok(rendered
            .files
            .iter()
            .flat_map(|f| {
                f.contents
                    .lines()
                    .filter(|l| l.starts_with("ExecStart="))
                    .map(|l| format!("{}: {l}", f.name))
            })
            .collect())
    }

    /// Found by hand: a sysmgr binary under a path with `$` made rendering panic
    /// ("command was checked by the config"); `%` and spaces were already quoted.
    #[test]
    fn sysmgrs_own_path_is_written_exactly_whatever_it_holds() {
        assert_eq!(
            exec_starts(&timed_app("/opt/my tools/sys%mgr", "/bin/true")).unwrap(),
            [
                r#"web@.service: ExecStart="/opt/my tools/sys%%mgr" "exec" "/bin/true""#,
                r#"web-cron.service: ExecStart="/opt/my tools/sys%%mgr" "reload" "web""#,
                r#"web-memory.service: ExecStart="/opt/my tools/sys%%mgr" "memory-check" "web" "--limit" "314572800""#,
            ]
        );
        // The `@` form: the path as it is (systemd never expands it), argv[0] with `$` doubled.
        assert_eq!(
            exec_starts(&timed_app("/opt/a$b/sysmgr", "node app.js")).unwrap(),
            [
                r#"web@.service: ExecStart=@"/opt/a$b/sysmgr" "/opt/a$$b/sysmgr" "exec" "node" "--require" "/lib/$$x 100%%/bridge.cjs" "app.js""#,
                r#"web-cron.service: ExecStart=@"/opt/a$b/sysmgr" "/opt/a$$b/sysmgr" "reload" "web""#,
                r#"web-memory.service: ExecStart=@"/opt/a$b/sysmgr" "/opt/a$$b/sysmgr" "memory-check" "web" "--limit" "314572800""#,
            ]
        );
    }

    #[test]
    fn a_path_of_sysmgrs_no_unit_can_start_is_an_error_not_a_panic() {
        for command in ["/bin/true", "node app.js"] {
            let spec = timed_app("-x/sysmgr", command);
            assert_eq!(
                exec_starts(&spec),
                Err(RenderError::SysmgrPath {
                    path: "-x/sysmgr".into(),
                    reason: SyntaxError::ExecPrefix('-'),
                })
            );
            // `sysmgr check`'s rows read the same key table without rendering.
            for key in keys::KEYS {
                let _ = key.check_rows(&spec, NonZeroU32::MIN);
            }
        }
        let mut spec = timed_app("/usr/bin/sysmgr", "node app.js");
        let Runtime::Node(bridge) = &mut spec.runtime else {
            panic!("node is the Node runtime");
        };
        bridge.script = "/lib/\u{FDD0}/bridge.cjs".into();
        assert_eq!(
            exec_starts(&spec).unwrap_err().to_string(),
            "the path of sysmgr's Node bridge `/lib/\u{FDD0}/bridge.cjs` contains the noncharacter U+FDD0, which systemd refuses in unit files; units preload it into every Node.js instance, so put it where a unit can name it (the packages install `/usr/lib/sysmgr/node/bridge.cjs`)"
        );
    }

    #[test]
    #[should_panic(expected = "bug: unknown template key NOPE")]
    fn fill_refuses_unknown_keys() {
        fill("@NOPE@\n", &|_, _| None);
    }
}
