//! `sysmgr deploy ENV ...`: immutable releases on several hosts, rolled host by host.
//!
//! [`plan`] writes the shell script of each step (pure); this module runs them on each host
//! over a [`Transport`] ([`Ssh`]: the system's `ssh` client in batch mode), decides what
//! follows a failure, and reports per host. On each host the reload is sysmgr's own rolling
//! reload (`sysmgr reload FILE`, run there), so no agent or daemon is involved.
//!
//! How a deploy fails safely: everything before the switch (fetch, checkout, hooks) happens
//! beside the running release, so a failure there leaves the host as it was (the unfinished
//! release is removed). A reload that halts leaves the old instances running; the host is
//! switched back to its previous release and reloaded again. Either way the rollout stops
//! once more than `max_fail` hosts failed: the hosts not yet reached are not touched.

pub mod nginx;
pub mod plan;

use std::fmt::Write as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::config::deploy::{DeployEnv, Host};
use plan::Step;

/// The most lines of a remote command's output an error quotes.
const OUTPUT_LINES: usize = 12;

/// Why a deploy did not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// The app file has no such environment.
    #[error("{file} has no `[deploy.{env}]`{}", known_envs(known))]
    NoEnv {
        /// The app file.
        file: String,
        /// The environment asked for.
        env: String,
        /// The ones it has.
        known: Vec<String>,
    },
    /// `pre-deploy-local` failed: no host was touched.
    #[error("`pre-deploy-local` failed on this machine ({status}); no host was touched: {output}")]
    Local {
        /// How it exited.
        status: String,
        /// What it printed.
        output: String,
    },
    /// `ssh` could not be started at all.
    #[error("cannot run `ssh` (install openssh-client): {0}")]
    NoSsh(std::io::Error),
    /// One or more hosts failed; the summary names each host's state.
    #[error("deploy {env}: {failed} of {total} host(s) failed; each host's state is above")]
    Failed {
        /// The environment.
        env: String,
        /// Hosts that failed.
        failed: usize,
        /// Hosts in the environment.
        total: usize,
    },
    /// `revert` found no release to go back to on a host; nothing was switched.
    #[error("revert {env}: host {host} {message}; nothing was switched")]
    NoRelease {
        /// The environment.
        env: String,
        /// The host.
        host: String,
        /// What it has instead.
        message: String,
    },
}

fn known_envs(known: &[String]) -> String {
    if known.is_empty() {
        "; add one (docs/deploy.md), or import an ecosystem file's `deploy` section with `sysmgr import`".into()
    } else {
        format!(
            "; it has {}",
            known
                .iter()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

impl crate::Classify for DeployError {
    fn class(&self) -> crate::ErrorClass {
        match self {
            Self::NoEnv { .. } | Self::NoRelease { .. } => crate::ErrorClass::Invalid,
            Self::Local { .. } | Self::NoSsh(_) | Self::Failed { .. } => crate::ErrorClass::Failed,
        }
    }
}

/// The environment `name` of an app file's `[deploy]`.
pub fn find<'a>(
    envs: &'a [DeployEnv],
    file: &str,
    name: &str,
) -> Result<&'a DeployEnv, DeployError> {
    envs.iter()
        .find(|e| e.name == name)
        .ok_or_else(|| DeployError::NoEnv {
            file: file.to_string(),
            env: name.to_string(),
            known: envs.iter().map(|e| e.name.clone()).collect(),
        })
}

/// What a remote script did.
#[derive(Debug, Clone)]
pub struct Output {
    /// Exit code (`None`: killed, or ssh itself failed to report one).
    pub code: Option<i32>,
    /// stdout.
    pub stdout: String,
    /// stderr (ssh's own errors included).
    pub stderr: String,
}

impl Output {
    fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// The last lines of what it printed, stderr first, on one line.
    fn tail(&self) -> String {
        let text = format!("{}\n{}", self.stderr.trim(), self.stdout.trim());
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        let from = lines.len().saturating_sub(OUTPUT_LINES);
        if lines.is_empty() {
            "(it printed nothing)".into()
        } else {
            lines[from..].join(" / ")
        }
    }
}

/// How scripts reach a host.
pub trait Transport: Sync {
    /// Runs `script` with `/bin/sh` on `host`.
    fn run(&self, env: &DeployEnv, host: &Host, script: &str) -> Result<Output, DeployError>;
}

/// The system's `ssh`: batch mode (never a password prompt), the environment's options,
/// the script as one quoted argument of `/bin/sh -c` (whatever the account's login shell).
///
/// The steps of a host share one connection: the first `ssh` to a host becomes a master in
/// the background (`ControlMaster`, its socket in a private directory of this run), the
/// next ones are sessions over it, so a step costs a round trip rather than a handshake.
/// Dropping the transport ends the masters (`ssh -O exit`) and removes the directory; a
/// master that outlives a killed run ends on its own after [`CONTROL_PERSIST`] idle.
#[derive(Debug)]
pub struct Ssh {
    /// The directory of the control sockets (`None`: it could not be made; no sharing).
    control: Option<std::path::PathBuf>,
    /// The option words and destination of each host a master may run for.
    used: std::sync::Mutex<Vec<Vec<String>>>,
}

/// How long an idle master stays, in seconds.
pub const CONTROL_PERSIST: u32 = 30;

impl Default for Ssh {
    fn default() -> Self {
        Self::new()
    }
}

impl Ssh {
    /// A transport with its own control directory (under `$XDG_RUNTIME_DIR` or `/tmp`).
    pub fn new() -> Self {
        use std::os::unix::fs::DirBuilderExt as _;
        static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let base = std::env::var_os("XDG_RUNTIME_DIR")
            .map(std::path::PathBuf::from)
            .filter(|d| d.is_dir())
            .unwrap_or_else(|| "/tmp".into());
        let dir = base.join(format!(
            "sysmgr-ssh-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let control = std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .ok()
            .map(|()| dir);
        Self {
            control,
            used: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// The `ssh` words before the remote command: options, port, `--`, destination.
    fn prefix(&self, env: &DeployEnv, host: &Host) -> Vec<String> {
        let mut argv: Vec<String> = vec![
            "ssh".into(),
            "-o".into(),
            "BatchMode=yes".into(),
            "-o".into(),
            "ConnectTimeout=10".into(),
            "-o".into(),
            "ServerAliveInterval=10".into(),
        ];
        if let Some(dir) = &self.control {
            argv.extend([
                "-o".into(),
                "ControlMaster=auto".into(),
                "-o".into(),
                format!("ControlPath={}/%C", dir.display()),
                "-o".into(),
                format!("ControlPersist={CONTROL_PERSIST}"),
            ]);
        }
        for o in &env.ssh_options {
            argv.push("-o".into());
            argv.push(o.clone());
        }
        if let Some(p) = host.port {
            argv.push("-p".into());
            argv.push(p.to_string());
        }
        argv.push("--".into());
        argv.push(host.destination());
        argv
    }

    /// The `ssh` argv for `script` on `host`.
    pub fn argv(&self, env: &DeployEnv, host: &Host, script: &str) -> Vec<String> {
        let mut argv = self.prefix(env, host);
        argv.push(format!("/bin/sh -c {}", plan::quote(script)));
        argv
    }
}

impl Transport for Ssh {
    fn run(&self, env: &DeployEnv, host: &Host, script: &str) -> Result<Output, DeployError> {
        if self.control.is_some() {
            let prefix = self.prefix(env, host);
            let mut used = self
                .used
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if !used.contains(&prefix) {
                used.push(prefix);
            }
        }
        let argv = self.argv(env, host, script);
        let out = Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(Stdio::null())
            .output()
            .map_err(DeployError::NoSsh)?;
        Ok(Output {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}

impl Drop for Ssh {
    fn drop(&mut self) {
        let Some(dir) = self.control.take() else {
            return;
        };
        let used = self
            .used
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for prefix in used.iter() {
            // `ssh OPTIONS -O exit -- DEST`: the destination stays last.
            let (dest, options) = prefix
                .split_last()
                .expect("a prefix ends with the destination");
            let _ = Command::new(&options[0])
                .args(&options[1..options.len() - 1])
                .args(["-O", "exit", "--"])
                .arg(dest)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// What a host ended as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostState {
    /// Not reached: the rollout stopped before it.
    Untouched,
    /// Now on `release` (it was on `from`, empty for a first deploy).
    Done {
        /// The release it runs.
        release: String,
        /// The one it ran before.
        from: String,
    },
    /// A step failed before the switch: the host still runs `release` (empty: none).
    FailedBeforeSwitch {
        /// The step.
        step: Step,
        /// What the host printed.
        output: String,
        /// What it still runs.
        release: String,
    },
    /// The reload halted; the host was switched back to `release` and reloaded.
    SwitchedBack {
        /// What the reload printed.
        output: String,
        /// The release it runs again.
        release: String,
        /// The release that failed.
        failed: String,
    },
    /// The reload halted and going back failed too, or there was nothing to go back to.
    Broken {
        /// The step that failed last.
        step: Step,
        /// What the host printed.
        output: String,
    },
}

impl HostState {
    /// Whether the host counts as failed.
    pub fn failed(&self) -> bool {
        !matches!(self, Self::Untouched | Self::Done { .. })
    }
}

/// One host's outcome and how long each step took.
#[derive(Debug, Clone)]
pub struct HostReport {
    /// The host.
    pub host: Host,
    /// Its state.
    pub state: HostState,
    /// Each step run and its wall time (the ssh round trip included).
    pub timings: Vec<(Step, Duration)>,
}

impl HostReport {
    /// `host: state` in one line, with the timings.
    pub fn line(&self) -> String {
        let state = match &self.state {
            HostState::Untouched => "untouched (the rollout stopped before it)".to_string(),
            HostState::Done { release, .. } if release.is_empty() => {
                "set up: releases/ and the mirror of the repository are in place".to_string()
            }
            HostState::Done { release, from } if from.is_empty() => format!("on {release} (first release)"),
            HostState::Done { release, from } if from == release => format!("on {release} (already)"),
            HostState::Done { release, from } => format!("on {release} (was {from})"),
            HostState::FailedBeforeSwitch { step, output, release } => format!(
                "FAILED at {step}, still on {}: {output}",
                if release.is_empty() { "no release" } else { release }
            ),
            HostState::SwitchedBack { output, release, failed } => format!(
                "FAILED at reload of {failed}; switched back to {release} and reloaded, serving: {output}"
            ),
            HostState::Broken { step, output } => {
                format!("FAILED at {step}, and could not go back; look at the host: {output}")
            }
        };
        let mut line = format!("{}: {state}", self.host);
        if !self.timings.is_empty() {
            let steps: Vec<String> = self
                .timings
                .iter()
                .map(|(s, d)| format!("{s} {}", crate::reload::engine::human(*d)))
                .collect();
            let _ = write!(line, " [{}]", steps.join(", "));
        }
        line
    }
}

/// What `update`, `revert` and `setup` do to one host.
#[derive(Debug, Clone)]
pub enum Action {
    /// Directories and the mirror.
    Setup,
    /// A new release of `git_ref`, named with the UTC time `utc` (`YYYYMMDDTHHMMSSZ`).
    Update {
        /// The ref.
        git_ref: String,
        /// The time in release names.
        utc: String,
    },
    /// The release `back` steps before the current one.
    Revert {
        /// How many releases back.
        back: usize,
    },
}

/// Runs `action` on the environment's hosts, `serial` at a time, stopping once more than
/// `max_fail` failed. `progress` gets each host's line as it finishes.
pub fn rollout(
    env: &DeployEnv,
    action: &Action,
    transport: &dyn Transport,
    progress: &mut dyn FnMut(&HostReport),
) -> Result<Vec<HostReport>, DeployError> {
    if let (Action::Update { .. }, Some(command)) = (action, &env.hooks.pre_deploy_local) {
        let out = Command::new("/bin/sh")
            .arg("-c")
            .arg(command)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| DeployError::Local {
                status: "not started".into(),
                output: e.to_string(),
            })?;
        if !out.status.success() {
            let o = Output {
                code: out.status.code(),
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            };
            return Err(DeployError::Local {
                status: out.status.to_string(),
                output: o.tail(),
            });
        }
    }
    // `revert` checks every host first: a host without an older release stops it before any
    // host is switched.
    let mut targets: Vec<Option<(String, String)>> = vec![None; env.hosts.len()];
    if let Action::Revert { back } = action {
        for (i, host) in env.hosts.iter().enumerate() {
            let out = transport.run(env, host, &plan::list(env))?;
            if !out.success() {
                return Err(DeployError::NoRelease {
                    env: env.name.clone(),
                    host: host.to_string(),
                    message: format!("could not be read: {}", out.tail()),
                });
            }
            let mut lines = out.stdout.lines();
            let current = lines.next().unwrap_or("").trim().to_string();
            let releases: Vec<String> = lines.map(str::to_string).collect();
            let target = plan::older_release(&releases, &current, *back).map_err(|message| {
                DeployError::NoRelease {
                    env: env.name.clone(),
                    host: host.to_string(),
                    message,
                }
            })?;
            targets[i] = Some((target.to_string(), current));
        }
    }
    let mut reports: Vec<HostReport> = env
        .hosts
        .iter()
        .map(|h| HostReport {
            host: h.clone(),
            state: HostState::Untouched,
            timings: Vec::new(),
        })
        .collect();
    let mut failed = 0usize;
    let serial = env.serial.get() as usize;
    let indices: Vec<usize> = (0..env.hosts.len()).collect();
    for batch in indices.chunks(serial) {
        let done: Vec<(usize, Result<HostReport, DeployError>)> = std::thread::scope(|s| {
            let handles: Vec<_> = batch
                .iter()
                .map(|&i| {
                    let host = &env.hosts[i];
                    let target = targets[i].clone();
                    s.spawn(move || (i, one_host(env, host, action, target, transport)))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("a host's thread does not panic"))
                .collect()
        });
        for (i, report) in done {
            let report = report?;
            progress(&report);
            if report.state.failed() {
                failed += 1;
            }
            reports[i] = report;
        }
        if failed > env.max_fail as usize {
            break;
        }
    }
    Ok(reports)
}

/// Runs one step and records its time; `Err` holds what the host printed.
fn step(
    env: &DeployEnv,
    host: &Host,
    transport: &dyn Transport,
    timings: &mut Vec<(Step, Duration)>,
    which: Step,
    script: &str,
) -> Result<Result<Output, String>, DeployError> {
    let started = Instant::now();
    let out = transport.run(env, host, script)?;
    timings.push((which, started.elapsed()));
    Ok(if out.success() {
        Ok(out)
    } else {
        Err(out.tail())
    })
}

fn one_host(
    env: &DeployEnv,
    host: &Host,
    action: &Action,
    target: Option<(String, String)>,
    transport: &dyn Transport,
) -> Result<HostReport, DeployError> {
    let mut timings = Vec::new();
    let state = match action {
        Action::Setup => match step(
            env,
            host,
            transport,
            &mut timings,
            Step::Setup,
            &plan::setup(env),
        )? {
            Ok(_) => HostState::Done {
                release: String::new(),
                from: String::new(),
            },
            Err(output) => HostState::FailedBeforeSwitch {
                step: Step::Setup,
                output,
                release: String::new(),
            },
        },
        Action::Update { git_ref, utc } => {
            update(env, host, transport, &mut timings, git_ref, utc)?
        }
        Action::Revert { .. } => {
            let (release, from) = target.expect("revert targets were read first");
            switch_and_reload(env, host, transport, &mut timings, &release, &from)?
        }
    };
    Ok(HostReport {
        host: host.clone(),
        state,
        timings,
    })
}

fn update(
    env: &DeployEnv,
    host: &Host,
    transport: &dyn Transport,
    timings: &mut Vec<(Step, Duration)>,
    git_ref: &str,
    utc: &str,
) -> Result<HostState, DeployError> {
    let before = |step: Step, output: String, release: &str| HostState::FailedBeforeSwitch {
        step,
        output,
        release: release.to_string(),
    };
    if let Some(command) = &env.hooks.pre_deploy {
        if let Err(o) = step(
            env,
            host,
            transport,
            timings,
            Step::PreDeploy,
            &plan::hook(env, None, command),
        )? {
            return Ok(before(Step::PreDeploy, o, ""));
        }
    }
    let fetched = match step(
        env,
        host,
        transport,
        timings,
        Step::Fetch,
        &plan::fetch(env, git_ref),
    )? {
        Ok(out) => out.stdout,
        Err(o) => return Ok(before(Step::Fetch, o, "")),
    };
    let mut lines = fetched.lines();
    let sha = lines.next().unwrap_or("").trim().to_string();
    let current = lines.next().unwrap_or("").trim().to_string();
    let release = plan::release_name(utc, &sha);
    if !current.is_empty()
        && plan::release_name("", &sha) == format!("-{}", current.rsplit('-').next().unwrap_or(""))
    {
        // Already on this commit: nothing to switch or reload.
        return Ok(HostState::Done {
            release: current.clone(),
            from: current,
        });
    }
    if let Err(o) = step(
        env,
        host,
        transport,
        timings,
        Step::Checkout,
        &plan::checkout(env, &release, &sha),
    )? {
        return Ok(before(Step::Checkout, o, &current));
    }
    for (which, command) in [
        (Step::PostDeploy, &env.hooks.post_deploy),
        (Step::Test, &env.hooks.test),
    ] {
        let Some(command) = command else { continue };
        if let Err(o) = step(
            env,
            host,
            transport,
            timings,
            which,
            &plan::hook(env, Some(&release), command),
        )? {
            // Never current: removed, so `list` and `revert` see only releases that ran.
            let _ = transport.run(env, host, &plan::discard(env, &release));
            return Ok(before(which, o, &current));
        }
    }
    let state = switch_and_reload(env, host, transport, timings, &release, &current)?;
    if matches!(state, HostState::SwitchedBack { .. }) {
        // A release that could not be reloaded is no target for `revert`.
        let _ = transport.run(env, host, &plan::discard(env, &release));
    }
    if matches!(state, HostState::Done { .. }) {
        // A failed prune leaves an old release behind; the deploy itself succeeded.
        let _ = step(
            env,
            host,
            transport,
            timings,
            Step::Prune,
            &plan::prune(env),
        )?;
    }
    Ok(state)
}

/// Switches `current` to `release`, reloads; on a halt switches back to `from` and reloads.
fn switch_and_reload(
    env: &DeployEnv,
    host: &Host,
    transport: &dyn Transport,
    timings: &mut Vec<(Step, Duration)>,
    release: &str,
    from: &str,
) -> Result<HostState, DeployError> {
    if let Err(o) = step(
        env,
        host,
        transport,
        timings,
        Step::Switch,
        &plan::switch(env, release),
    )? {
        return Ok(HostState::FailedBeforeSwitch {
            step: Step::Switch,
            output: o,
            release: from.to_string(),
        });
    }
    let first = from.is_empty();
    let output = match step(
        env,
        host,
        transport,
        timings,
        Step::Reload,
        &plan::reload(env, first),
    )? {
        Ok(_) => {
            return Ok(HostState::Done {
                release: release.to_string(),
                from: from.to_string(),
            })
        }
        Err(o) => o,
    };
    if first {
        return Ok(HostState::Broken {
            step: Step::Reload,
            output: format!("{output} (there is no previous release to go back to)"),
        });
    }
    if let Err(o) = step(
        env,
        host,
        transport,
        timings,
        Step::SwitchBack,
        &plan::switch(env, from),
    )? {
        return Ok(HostState::Broken {
            step: Step::SwitchBack,
            output: format!("{o} (after the reload failed: {output})"),
        });
    }
    if let Err(o) = step(
        env,
        host,
        transport,
        timings,
        Step::ReloadBack,
        &plan::reload(env, false),
    )? {
        return Ok(HostState::Broken {
            step: Step::ReloadBack,
            output: format!("{o} (after the reload failed: {output})"),
        });
    }
    Ok(HostState::SwitchedBack {
        output,
        release: from.to_string(),
        failed: release.to_string(),
    })
}

/// What `list` read on one host: the current release and every release, oldest first; or
/// what the host printed when it could not be read.
pub type Releases = Result<(String, Vec<String>), String>;

/// `list`: each host's releases, the current one marked.
pub fn list(
    env: &DeployEnv,
    transport: &dyn Transport,
) -> Result<Vec<(Host, Releases)>, DeployError> {
    let mut out = Vec::new();
    for host in &env.hosts {
        let o = transport.run(env, host, &plan::list(env))?;
        if o.success() {
            let mut lines = o.stdout.lines();
            let current = lines.next().unwrap_or("").trim().to_string();
            out.push((
                host.clone(),
                Ok((current, lines.map(str::to_string).collect())),
            ));
        } else {
            out.push((host.clone(), Err(o.tail())));
        }
    }
    Ok(out)
}

/// `exec CMD`: on each host in turn, in the current release.
pub fn exec(
    env: &DeployEnv,
    command: &str,
    transport: &dyn Transport,
) -> Result<Vec<(Host, Output)>, DeployError> {
    env.hosts
        .iter()
        .map(|h| Ok((h.clone(), transport.run(env, h, &plan::exec(env, command))?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    /// The hosts as directories of this machine: each script runs with real `/bin/sh` and
    /// git, its `P=` line pointed at `path/HOST`. What ssh adds is tested in tests/deploy.rs.
    struct Dirs;

    impl Transport for Dirs {
        fn run(&self, env: &DeployEnv, host: &Host, script: &str) -> Result<Output, DeployError> {
            let p = format!("P={}\n", env.path.display());
            let script =
                script.replacen(&p, &format!("P={}/{}\n", env.path.display(), host.host), 1);
            let out = Command::new("/bin/sh")
                .arg("-c")
                .arg(script)
                .output()
                .unwrap();
            Ok(Output {
                code: out.status.code(),
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            })
        }
    }

    fn git(dir: &Path, args: &[&str]) {
        let out = Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@t", "-C"])
            .arg(dir)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A repository whose commits carry a VERSION, and a stand-in for sysmgr on the hosts
    /// that fails to reload a release whose VERSION is `bad` (as a halted reload does).
    fn fixture(name: &str, serial: u32, max_fail: u32) -> (PathBuf, DeployEnv) {
        let base =
            std::env::temp_dir().join(format!("sysmgr-rollout-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let src = base.join("src");
        std::fs::create_dir_all(&src).unwrap();
        git(&src, &["init", "-q", "-b", "main"]);
        let sysmgr = base.join("sysmgr");
        std::fs::write(
            &sysmgr,
            "#!/bin/sh\nif grep -qx bad \"$(dirname \"$2\")/VERSION\"; then echo \"reload $2: halted\" >&2; exit 1; fi\n",
        )
        .unwrap();
        std::fs::set_permissions(&sysmgr, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let env = DeployEnv {
            name: "prod".into(),
            hosts: ["a", "b", "c", "d"]
                .iter()
                .map(|h| Host::parse(&format!("root@{h}")).unwrap())
                .collect(),
            repo: src.display().to_string(),
            git_ref: "main".into(),
            path: base.join("hosts"),
            ssh_options: vec![],
            hooks: Default::default(),
            serial: std::num::NonZeroU32::new(serial).unwrap(),
            max_fail,
            keep: std::num::NonZeroU32::new(5).unwrap(),
            apps: vec!["app.toml".into()],
            sysmgr,
        };
        (base, env)
    }

    fn release(base: &Path, version: &str) {
        let src = base.join("src");
        std::fs::write(src.join("VERSION"), format!("{version}\n")).unwrap();
        std::fs::write(src.join("app.toml"), version).unwrap();
        git(&src, &["add", "-A"]);
        git(&src, &["commit", "-q", "-m", version]);
    }

    fn states(reports: &[HostReport]) -> Vec<&'static str> {
        reports
            .iter()
            .map(|r| match r.state {
                HostState::Untouched => "untouched",
                HostState::Done { .. } => "done",
                HostState::FailedBeforeSwitch { .. } => "failed before switch",
                HostState::SwitchedBack { .. } => "switched back",
                HostState::Broken { .. } => "broken",
            })
            .collect()
    }

    fn update(env: &DeployEnv, utc: &str) -> Vec<HostReport> {
        let action = Action::Update {
            git_ref: "main".into(),
            utc: utc.into(),
        };
        rollout(env, &action, &Dirs, &mut |_| {}).unwrap()
    }

    #[test]
    fn serial_and_max_fail_decide_where_the_rollout_stops() {
        for (serial, max_fail, want) in [
            // Two at a time, one failure allowed: the first pair both fail, the rest waits.
            (
                2,
                1,
                ["switched back", "switched back", "untouched", "untouched"],
            ),
            // One at a time, one failure allowed: stops after the second.
            (
                1,
                1,
                ["switched back", "switched back", "untouched", "untouched"],
            ),
            // One at a time, none allowed: stops after the first.
            (
                1,
                0,
                ["switched back", "untouched", "untouched", "untouched"],
            ),
            // Four at a time: every host is tried in the one batch.
            (4, 0, ["switched back"; 4]),
        ] {
            let (base, env) = fixture(&format!("{serial}-{max_fail}"), serial, max_fail);
            rollout(&env, &Action::Setup, &Dirs, &mut |_| {}).unwrap();
            release(&base, "good");
            assert_eq!(states(&update(&env, "20260101T000000Z")), ["done"; 4]);
            release(&base, "bad");
            let reports = update(&env, "20260101T000001Z");
            assert_eq!(
                states(&reports),
                want,
                "serial {serial}, max_fail {max_fail}"
            );
            for (r, host) in reports.iter().zip(["a", "b", "c", "d"]) {
                // Every host runs the good release, and the bad one is gone.
                let current = std::fs::read_link(env.path.join(host).join("current")).unwrap();
                assert!(
                    current.ends_with(reports_release(&env, host, "good")),
                    "{current:?}"
                );
                let releases = std::fs::read_dir(env.path.join(host).join("releases"))
                    .unwrap()
                    .count();
                assert_eq!(releases, 1, "{}", r.line());
            }
            std::fs::remove_dir_all(&base).unwrap();
        }
    }

    /// The name of the release of `host` whose VERSION is `version`.
    fn reports_release(env: &DeployEnv, host: &str, version: &str) -> String {
        let dir = env.path.join(host).join("releases");
        std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .find(|e| {
                std::fs::read_to_string(e.path().join("VERSION"))
                    .unwrap_or_default()
                    .trim()
                    == version
            })
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .unwrap()
    }

    #[test]
    fn a_first_release_that_fails_has_nothing_to_go_back_to_and_revert_checks_every_host_first() {
        let (base, env) = fixture("first", 1, 0);
        rollout(&env, &Action::Setup, &Dirs, &mut |_| {}).unwrap();
        release(&base, "bad");
        let reports = update(&env, "20260101T000000Z");
        assert_eq!(
            states(&reports),
            ["broken", "untouched", "untouched", "untouched"]
        );
        assert!(
            reports[0]
                .line()
                .starts_with("root@a: FAILED at reload, and could not go back; look at the host: "),
            "{}",
            reports[0].line()
        );
        assert!(reports[0]
            .line()
            .contains("(there is no previous release to go back to)"));
        // A host with one release only: `revert` switches nothing anywhere.
        let err = rollout(&env, &Action::Revert { back: 1 }, &Dirs, &mut |_| {}).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("revert prod: host root@a has 0 release(s) older than `"),
            "{err}"
        );
        std::fs::remove_dir_all(&base).unwrap();
    }
}
