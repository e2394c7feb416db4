//! Every error message of every layer's enum, verbatim, with the exit code it gives: one row
//! per variant (and per wording a variant has). Messages that need a running program to
//! appear (`cannot write ...` contexts, notices) are asserted in `tests/cli.rs`; the app.toml
//! checker's own messages in `src/config/tests.rs`.

use std::io;

use super::CliError;
use crate::cli::{exit, exit_code};
use crate::config::ecosystem::EcosystemError;
use crate::config::{Diagnostic, Diagnostics, LoadError, Severity};
use crate::controller::ControlError;
use crate::deploy::DeployError;
use crate::install::InstallError;
use crate::lock::LockError;
use crate::systemd::dbus::DbusError;
use crate::systemd::syntax::{ShellSplitError, SyntaxError};

fn enoent() -> io::Error {
    io::Error::from_raw_os_error(2)
}

fn zbus(message: &str) -> zbus::Error {
    zbus::Error::Failure(message.into())
}

fn diagnostic(severity: Severity, key: Option<&str>, message: &str) -> Diagnostic {
    Diagnostic {
        severity,
        file: "app.toml".into(),
        line: 3,
        col: 7,
        key: key.map(str::to_string),
        message: message.into(),
    }
}

/// (the error, its message, its exit code)
fn rows() -> Vec<(anyhow::Error, &'static str, u8)> {
    use exit::{FAILED, INVALID, SYSTEMD};
    fn e(err: impl std::error::Error + Send + Sync + 'static) -> anyhow::Error {
        anyhow::Error::new(err)
    }
    vec![
        // cli
        (e(CliError::AppName { name: "we b".into(), reason: "contains ` `".into() }), "`we b` is not a valid app name: it contains ` `", INVALID),
        (e(CliError::NewAppName { name: "-web".into(), reason: "`-web` must start with a letter, a digit or `_`".into() }), "the app name `-web` must start with a letter, a digit or `_`", INVALID),
        (e(CliError::InitExists { path: "web.toml".into() }), "`web.toml` exists; choose another name with --output, or replace it with --force", INVALID),
        (e(CliError::ImportExists { path: "out/web.toml".into() }), "`out/web.toml` exists; move it away or pass --force; nothing was written", INVALID),
        (e(CliError::Imported { app: "web".into() }), "the app file made for `web` has errors; nothing was written", INVALID),
        (e(CliError::AppFiles { failed: vec!["bad.toml".into()], total: 2, consequence: "nothing was written".into() }), "1 of 2 app files has errors (bad.toml); nothing was written", INVALID),
        (e(CliError::AppFiles { failed: vec!["a.toml".into(), "b.toml".into()], total: 3, consequence: "fix them and check again".into() }), "2 of 3 app files have errors (a.toml, b.toml); fix them and check again", INVALID),
        (e(CliError::DuplicateApp { app: "web".into(), first: "/srv/a.toml".into(), second: "/srv/b.toml".into(), consequence: "nothing was written".into() }), "`/srv/a.toml` and `/srv/b.toml` both define the app `web`; app names must be unique; nothing was written", INVALID),
        (e(CliError::ScaleBelowOne { app: "web".into(), wanted: -1, current: 2 }), "cannot scale `web` to -1 instances (it has 2); at least 1 must run; use `sysmgr stop web` to stop it", INVALID),
        (e(CliError::ScaleAboveMax { app: "web".into(), wanted: 2000 }), "cannot scale `web` to 2000 instances; at most 1024 are allowed", INVALID),
        (e(CliError::FromGenerator { app: "web".into(), app_file: Some("/etc/sysmgr/web.toml".into()) }), "`web` comes from `/etc/sysmgr/web.toml` through sysmgr's systemd generator; remove that file and run `systemctl daemon-reload` (or `sysmgr stop web` to stop it)", INVALID),
        (e(CliError::FromGenerator { app: "web".into(), app_file: None }), "`web` comes from its app file through sysmgr's systemd generator; remove that file and run `systemctl daemon-reload` (or `sysmgr stop web` to stop it)", INVALID),
        (e(CliError::Journalctl { status: std::os::unix::process::ExitStatusExt::from_raw(1 << 8), stderr: "Failed to open journal".into() }), "`journalctl` failed (exit status: 1): Failed to open journal", FAILED),
        (e(CliError::NoSource { app: "web".into() }), "`web`'s units do not record its app file; give the file instead of the name", INVALID),
        (e(CliError::NoTcpListen { app: "web".into() }), "`web` listens on no TCP port (only unix sockets, or none); nginx needs `listen = [\"3000\"]` or an address with a port", INVALID),
        // deploy
        (e(DeployError::NoEnv { file: "app.toml".into(), env: "prod".into(), known: vec![] }), "app.toml has no `[deploy.prod]`; add one (docs/deploy.md), or import an ecosystem file's `deploy` section with `sysmgr import`", INVALID),
        (e(DeployError::NoEnv { file: "app.toml".into(), env: "prod".into(), known: vec!["staging".into(), "production".into()] }), "app.toml has no `[deploy.prod]`; it has `staging`, `production`", INVALID),
        (e(DeployError::Local { status: "exit status: 2".into(), output: "make: *** [check] Error 1".into() }), "`pre-deploy-local` failed on this machine (exit status: 2); no host was touched: make: *** [check] Error 1", FAILED),
        (e(DeployError::NoSsh(enoent())), "cannot run `ssh` (install openssh-client): No such file or directory (os error 2)", FAILED),
        (e(DeployError::Failed { env: "prod".into(), failed: 1, total: 3 }), "deploy prod: 1 of 3 host(s) failed; each host's state is above", FAILED),
        (e(DeployError::NoRelease { env: "prod".into(), host: "root@web1".into(), message: "has no current release: deploy one with `update` first".into() }), "revert prod: host root@web1 has no current release: deploy one with `update` first; nothing was switched", INVALID),
        // config
        (e(LoadError::Read { path: "nope.toml".into(), source: enoent() }), "cannot read `nope.toml`: No such file or directory (os error 2)", INVALID),
        (e(LoadError::Invalid(Diagnostics(vec![diagnostic(Severity::Error, Some("instances"), "is `-2`; use a count")]))), "app.toml:3:7: error: `instances` is `-2`; use a count", INVALID),
        (e(Diagnostics(vec![diagnostic(Severity::Warning, None, "a warning"), diagnostic(Severity::Error, Some("listen[0]"), "has port 0")])), "app.toml:3:7: warning: a warning\napp.toml:3:7: error: `listen[0]` has port 0", INVALID),
        (e(EcosystemError::NoNode { file: "ecosystem.config.js".into() }), "ecosystem.config.js: reading an ecosystem file needs Node.js (`node` is not in PATH); install Node.js 18 or later, or convert the file once with `sysmgr import` on a machine that has it", INVALID),
        (e(EcosystemError::Evaluate { file: "ecosystem.config.js".into(), message: "SyntaxError: Unexpected token".into() }), "ecosystem.config.js: evaluating it with node failed: SyntaxError: Unexpected token", INVALID),
        (e(EcosystemError::Json { file: "ecosystem.json".into(), line: 2, column: 5, message: "expected value".into() }), "ecosystem.json:2:5: error: is not valid JSON: expected value", INVALID),
        (e(EcosystemError::Shape { file: "ecosystem.config.js".into(), found: "a string".into() }), "ecosystem.config.js: exports a string, not an object with an `apps` array; write `module.exports = { apps: [{ name: 'app', script: './app.js' }] }`", INVALID),
        (e(EcosystemError::App { file: "ecosystem.config.js".into(), app: "web".into(), index: 1, message: "`script` is missing".into() }), "ecosystem.config.js: app `web` (apps[1]): `script` is missing", INVALID),
        (e(EcosystemError::Deploy { file: "ecosystem.config.js".into(), env: "prod".into(), message: "`repo` is missing".into() }), "ecosystem.config.js: deploy `prod`: `repo` is missing", INVALID),
        // controller
        (e(ControlError::NotGenerated { name: "web".into(), dir: "/etc/systemd/system".into(), known: String::new() }), "app `web` is not generated: `/etc/systemd/system` holds no units of sysmgr's for it; start it from its app file with `sysmgr start FILE` (or write its units with `sysmgr generate FILE`)", INVALID),
        (e(ControlError::NotGenerated { name: "web".into(), dir: "/etc/systemd/system".into(), known: " (apps there: api, db)".into() }), "app `web` is not generated: `/etc/systemd/system` holds no units of sysmgr's for it (apps there: api, db); start it from its app file with `sysmgr start FILE` (or write its units with `sysmgr generate FILE`)", INVALID),
        (e(ControlError::NotRunning { app: "web".into(), failed: 1, total: 3, units: "web@2.service".into() }), "1 of 3 instances of `web` are not running: web@2.service; see `sysmgr logs web`", FAILED),
        (e(ControlError::Halted { verb: "reload", app: "web".into(), unit: "web@2.service".into(), reason: "it exited".into(), next: "fix the app and run `sysmgr reload web` again".into() }), "reload of `web` halted: `web@2.service` failed (it exited); the instances not yet restarted still run the previous version; fix the app and run `sysmgr reload web` again", FAILED),
        (e(ControlError::ScaleFailed { app: "web".into(), from: 2, to: 4, changed: "nothing was changed".into() }), "cannot scale `web` from 2 to 4; nothing was changed", FAILED),
        (anyhow::Error::new(ControlError::NotRunning { app: "web".into(), failed: 1, total: 2, units: "web@4.service (`exit-code`)".into() }).context(ControlError::ScaleFailed { app: "web".into(), from: 2, to: 4, changed: "changed: the count on disk is 4 (`web.target.wants/`), started `web@3.service`, stopped none; once the cause is fixed `sysmgr scale web 4` finishes it, `sysmgr scale web 2` goes back".into() }), "cannot scale `web` from 2 to 4; changed: the count on disk is 4 (`web.target.wants/`), started `web@3.service`, stopped none; once the cause is fixed `sysmgr scale web 4` finishes it, `sysmgr scale web 2` goes back", FAILED),
        (e(ControlError::SocketWedged { verb: "reload", app: "web".into(), socket: "web.socket".into(), result: crate::systemd::dbus::SocketResult::TriggerLimitHit, holders: "web@1.service, web@2.service".into() }), "cannot reload `web` without stopping it: its socket `web.socket` failed (systemd's result: `trigger-limit-hit`) and systemd closed it, while web@1.service, web@2.service still serve on the listening socket they inherited; systemd cannot listen on that address again until they stop; `sysmgr restart web` stops every instance and starts the app again (connections are refused for that moment)", FAILED),
        (e(ControlError::StopFailed { unit: "web@1.service".into(), result: "timeout".into() }), "systemd could not stop `web@1.service`: the job ended with `timeout`", FAILED),
        // install
        (e(InstallError::Foreign { path: "units/web.target".into() }), "`units/web.target` exists and was not generated by sysmgr; move it away or rename the app", FAILED),
        (e(InstallError::OtherApp { path: "units/web.target".into(), owner: "api".into(), app: "web".into() }), "`units/web.target` was generated for the app `api`, not `web`; two apps cannot share unit names", FAILED),
        (e(InstallError::Io { action: "write", path: "units/web@.service".into(), source: enoent() }), "cannot write `units/web@.service`: No such file or directory (os error 2)", FAILED),
        (e(InstallError::NoHome), "cannot find the user's unit directory: neither `XDG_CONFIG_HOME` nor `HOME` is set", FAILED),
        // lock
        (e(LockError::Busy { app: "web".into(), path: "/run/sysmgr/web.lock".into(), holder: Some(42) }), "another sysmgr (pid 42) is changing `web` right now (lock `/run/sysmgr/web.lock`); wait for it to finish, or leave out --no-wait to queue behind it", FAILED),
        (e(LockError::Busy { app: "web".into(), path: "/run/sysmgr/web.lock".into(), holder: None }), "another sysmgr is changing `web` right now (lock `/run/sysmgr/web.lock`); wait for it to finish, or leave out --no-wait to queue behind it", FAILED),
        (e(LockError::Denied { path: "/run/sysmgr/web.lock".into() }), "permission denied: cannot create the lock `/run/sysmgr/web.lock`; run as root, or use --user for your own service manager", SYSTEMD),
        (e(LockError::Io { path: "/run/sysmgr/web.lock".into(), source: enoent() }), "cannot lock `/run/sysmgr/web.lock`: No such file or directory (os error 2)", FAILED),
        (e(LockError::NoRuntimeDir), "cannot find the user's runtime directory: `XDG_RUNTIME_DIR` is not set (it is where `systemd --user` and sysmgr keep their state)", SYSTEMD),
        // systemd (`Unreachable`'s wordings are asserted against a bus that is not there, in
        // `tests/lifecycle.rs`)
        (e(DbusError::PermissionDenied { action: "stop `web.target`".into(), source: zbus("denied") }), "permission denied: systemd refused to stop `web.target`; run as root, or use --user for your own service manager", SYSTEMD),
        (e(DbusError::NoSuchUnit { unit: "web@9.service".into(), source: zbus("no such unit") }), "systemd has no unit `web@9.service`", FAILED),
        (e(DbusError::Call { action: "start `web@1.service`".into(), source: zbus("failed") }), "systemd failed to start `web@1.service`", FAILED),
        (e(DbusError::Disconnected { what: "the jobs of `web`".into() }), "lost the connection to systemd while waiting for the jobs of `web`; is systemd still running?", SYSTEMD),
    ]
}

#[test]
fn every_error_message_is_exact_and_has_its_exit_code() {
    for (err, message, code) in rows() {
        assert_eq!(err.to_string(), message);
        assert_eq!(exit_code(&err), code, "exit code of: {message}");
    }
}

#[test]
fn the_highest_class_in_the_chain_decides_the_exit_code() {
    // A failed outcome caused by systemd going away is a systemd failure.
    let gone = DbusError::Disconnected {
        what: "the jobs".into(),
    };
    let halted = anyhow::Error::new(gone).context("reload of `web` halted");
    assert_eq!(exit_code(&halted), exit::SYSTEMD);
    // Context added at the edge keeps the class of what it wraps.
    let bad = anyhow::Error::new(CliError::Imported { app: "web".into() }).context("import");
    assert_eq!(exit_code(&bad), exit::INVALID);
    // A failed call inside an invalid-input error: the input is what to fix.
    let call = DbusError::Call {
        action: "x".into(),
        source: zbus("failed"),
    };
    let both = anyhow::Error::new(call)
        .context("while checking")
        .context(CliError::Imported { app: "web".into() });
    assert_eq!(exit_code(&both), exit::INVALID);
    // Errors of no layer (I/O at the edge) are failed outcomes.
    let io = anyhow::Error::new(enoent()).context("cannot write `web.toml`");
    assert_eq!(exit_code(&io), exit::FAILED);
}

#[test]
fn syntax_messages_are_exact() {
    // These end up inside app.toml diagnostics, after the key they are about.
    let rows: Vec<(String, &str)> = vec![
        (
            SyntaxError::Nul.to_string(),
            "contains a NUL character, which no process argument or variable can hold",
        ),
        (
            SyntaxError::ControlInEnv('\u{1b}').to_string(),
            "contains the control character '\\u{1b}', which systemd refuses in environment values",
        ),
        (
            SyntaxError::ExecPrefix('@').to_string(),
            "starts with `@`, which systemd reads as an `ExecStart=` flag, not as part of the path",
        ),
        (
            SyntaxError::DollarInProgram.to_string(),
            "contains `$`, which systemd would expand in argv[0] but not in the program path",
        ),
        (
            SyntaxError::EnvName.to_string(),
            "is not a valid variable name; use letters, digits and `_`, not starting with a digit",
        ),
        (
            ShellSplitError::Unterminated { quote: '"', at: 3 }.to_string(),
            "the \" quote opened here is never closed",
        ),
        (
            ShellSplitError::TrailingBackslash { at: 9 }.to_string(),
            "the string ends with a lone backslash",
        ),
    ];
    for (got, want) in rows {
        assert_eq!(got, want);
    }
}
