//! PM2's ecosystem file (`ecosystem.config.js`, `.cjs`, `.mjs`, `.json`) as app files.
//!
//! The file is JavaScript, so Node evaluates it (a `.json` is read directly); each app of its
//! `apps` array becomes the text of a commented app.toml, which then goes through the same
//! stages as a file written by hand (`raw` -> `validate` -> `derive`). Writing app.toml text,
//! not an [`super::AppSpec`], keeps one home for every rule and gives `sysmgr import` the file
//! it writes for the generator path (`/etc/sysmgr`).
//!
//! Every PM2 key is mapped or answered: keys with a sysmgr meaning become app.toml keys, the
//! others become warnings that say what to use instead. The one thing PM2 never needed is a
//! port (its daemon proxies the app's own `listen`); systemd owns the socket, so it comes from
//! the app's `listen` (a sysmgr key PM2 ignores), `env.PORT`, or `--listen` on the command
//! line.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Map, Value};

/// File names that are ecosystem files rather than app.toml or a script: PM2's own rule
/// (`*.config.js`, `.cjs`, `.mjs`, and `.json`); `app.js` is a script to run.
pub fn is_ecosystem_file(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    [".config.js", ".config.cjs", ".config.mjs", ".json"]
        .iter()
        .any(|ext| name.ends_with(ext))
}

/// A script that PM2's quick form (`pm2 start app.js`) would run with Node.
pub fn is_node_script(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    [".js", ".cjs", ".mjs"]
        .iter()
        .any(|ext| name.ends_with(ext))
}

/// Why an ecosystem file gave no apps.
#[derive(Debug, thiserror::Error)]
pub enum EcosystemError {
    /// Node is needed to evaluate the file and is not installed.
    #[error("{file}: reading an ecosystem file needs Node.js (`node` is not in PATH); install Node.js 18 or later, or convert the file once with `sysmgr import` on a machine that has it")]
    NoNode {
        /// The ecosystem file.
        file: String,
    },
    /// Node ran the file and it failed.
    #[error("{file}: evaluating it with node failed: {message}")]
    Evaluate {
        /// The ecosystem file.
        file: String,
        /// What node printed (its first lines).
        message: String,
    },
    /// A `.json` ecosystem file that is not JSON.
    #[error("{file}:{line}:{column}: error: is not valid JSON: {message}")]
    Json {
        /// The ecosystem file.
        file: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// serde_json's message.
        message: String,
    },
    /// The file evaluated to something without an `apps` array.
    #[error("{file}: exports {found}, not an object with an `apps` array; write `module.exports = {{ apps: [{{ name: 'app', script: './app.js' }}] }}`")]
    Shape {
        /// The ecosystem file.
        file: String,
        /// What it exported instead.
        found: String,
    },
    /// One environment of the `deploy` section cannot be converted.
    #[error("{file}: deploy `{env}`: {message}")]
    Deploy {
        /// The ecosystem file.
        file: String,
        /// The environment's name.
        env: String,
        /// What is wrong and what to do.
        message: String,
    },
    /// One app cannot be converted.
    #[error("{file}: app `{app}` (apps[{index}]): {message}")]
    App {
        /// The ecosystem file.
        file: String,
        /// The app's name (or its index when it has none).
        app: String,
        /// Its position in `apps`.
        index: usize,
        /// What is wrong and what to do.
        message: String,
    },
}

/// Every variant, Node missing included, means the ecosystem file was not used: nothing was
/// changed.
impl crate::Classify for EcosystemError {
    fn class(&self) -> crate::ErrorClass {
        crate::ErrorClass::Invalid
    }
}

/// What the command line adds to an ecosystem file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--listen ADDR`: the socket, for apps that declare none.
    pub listen: Option<String>,
    /// `--env PROFILE`: the `env_PROFILE` whose `PORT` counts too.
    pub profile: Option<String>,
}

/// One app of an ecosystem file, as app.toml text.
#[derive(Debug, Clone)]
pub struct ImportedApp {
    /// Its name.
    pub name: String,
    /// The app.toml text (commented).
    pub toml: String,
    /// PM2 keys that could not be honoured, each with what to use instead.
    pub warnings: Vec<String>,
}

/// Evaluates `path` and converts each of its apps.
pub fn import(path: &Path, overrides: &Overrides) -> Result<Vec<ImportedApp>, EcosystemError> {
    let file = path.display().to_string();
    let value = evaluate(path, &file)?;
    convert(&value, &file, &directory_of(path), overrides)
}

/// PM2's quick form, `pm2 start SCRIPT -i N --name NAME`: the one app it describes.
pub fn quick(
    script: &Path,
    instances: Option<&str>,
    name: Option<&str>,
    overrides: &Overrides,
) -> Result<Vec<ImportedApp>, EcosystemError> {
    let value = quick_form(script, instances, name);
    let file = script.display().to_string();
    convert(&value, &file, &directory_of(script), overrides)
}

/// The directory relative paths of the apps in `path` start from: the file's own.
fn directory_of(path: &Path) -> PathBuf {
    std::path::absolute(path)
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The PM2 app of the quick form as an ecosystem value.
fn quick_form(script: &Path, instances: Option<&str>, name: Option<&str>) -> Value {
    let mut app = Map::new();
    app.insert("script".into(), Value::String(script.display().to_string()));
    if let Some(n) = instances {
        let v = n
            .parse::<i64>()
            .map_or_else(|_| Value::String(n.to_string()), Value::from);
        app.insert("instances".into(), v);
    }
    if let Some(name) = name {
        app.insert("name".into(), Value::String(name.to_string()));
    }
    serde_json::json!({ "apps": [Value::Object(app)] })
}

/// The ecosystem file's value: parsed as JSON, or evaluated by Node.
fn evaluate(path: &Path, file: &str) -> Result<Value, EcosystemError> {
    if path.extension().is_some_and(|e| e == "json") {
        let text = std::fs::read_to_string(path).map_err(|e| EcosystemError::Evaluate {
            file: file.into(),
            message: format!("cannot read it: {e}"),
        })?;
        return serde_json::from_str(&text).map_err(|e| EcosystemError::Json {
            file: file.into(),
            line: e.line(),
            column: e.column(),
            message: e.to_string().split(" at line").next().unwrap_or("").into(),
        });
    }
    // CommonJS by require(); an ES module (`.mjs`, or `"type": "module"`) by import(). The
    // value goes out as JSON; functions and the like are dropped, as PM2 would ignore them.
    const EVAL: &str = r"
const path = require('node:path');
const file = path.resolve(process.argv[1]);
(async () => {
  let value;
  try {
    value = require(file);
  } catch (err) {
    if (err.code !== 'ERR_REQUIRE_ESM' && !String(err.message).includes('ES Module')) throw err;
    value = (await import(require('node:url').pathToFileURL(file).href)).default;
  }
  if (value && typeof value === 'object' && value.__esModule && value.default) value = value.default;
  process.stdout.write(JSON.stringify(value === undefined ? null : value));
})().catch((err) => {
  process.stderr.write(String(err && err.stack || err));
  process.exit(1);
});
";
    let out = Command::new("node")
        .arg("-e")
        .arg(EVAL)
        .arg(path)
        .output()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => EcosystemError::NoNode { file: file.into() },
            _ => EcosystemError::Evaluate {
                file: file.into(),
                message: format!("cannot run node: {e}"),
            },
        })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        // The error line and where it was thrown, not node's own frames.
        let message: Vec<&str> = stderr
            .lines()
            .filter(|l| !l.trim_start().starts_with("at ") || l.contains(file_name(path)))
            .filter(|l| !l.trim().is_empty())
            .take(3)
            .collect();
        return Err(EcosystemError::Evaluate {
            file: file.into(),
            message: message.join(" / "),
        });
    }
    serde_json::from_slice(&out.stdout).map_err(|e| EcosystemError::Evaluate {
        file: file.into(),
        message: format!("its value is not plain data: {e}"),
    })
}

fn file_name(path: &Path) -> &str {
    path.file_name().and_then(|n| n.to_str()).unwrap_or("")
}

fn type_of(v: &Value) -> String {
    match v {
        Value::Null => "nothing".into(),
        Value::Bool(_) => "a boolean".into(),
        Value::Number(_) => "a number".into(),
        Value::String(_) => "a string".into(),
        Value::Array(_) => "an array".into(),
        Value::Object(o) => {
            let keys: Vec<&str> = o.keys().map(String::as_str).take(5).collect();
            format!("an object with keys {}", keys.join(", "))
        }
    }
}

/// Converts the evaluated value: every app, or the first error.
pub fn convert(
    value: &Value,
    file: &str,
    base: &Path,
    overrides: &Overrides,
) -> Result<Vec<ImportedApp>, EcosystemError> {
    let apps = match value {
        Value::Object(o) => match o.get("apps") {
            Some(Value::Array(apps)) => apps.clone(),
            // PM2 also takes a single app object as `apps`.
            Some(Value::Object(app)) => vec![Value::Object(app.clone())],
            _ => {
                return Err(EcosystemError::Shape {
                    file: file.into(),
                    found: type_of(value),
                })
            }
        },
        // A bare array of apps is what some JSON ecosystem files hold.
        Value::Array(apps) => apps.clone(),
        other => {
            return Err(EcosystemError::Shape {
                file: file.into(),
                found: type_of(other),
            })
        }
    };
    if apps.is_empty() {
        return Err(EcosystemError::Shape {
            file: file.into(),
            found: "an empty `apps` array".into(),
        });
    }
    let mut out = Vec::new();
    for (index, app) in apps.iter().enumerate() {
        out.push(App::new(file, index, base, overrides).convert(app)?);
    }
    if let Some(deploy) = value.get("deploy") {
        // The section is the file's, not an app's: the first app carries it, and each release
        // reloads every app of the file (the files `sysmgr import` writes, by name).
        let names: Vec<String> = out.iter().map(|a| format!("{}.toml", a.name)).collect();
        let (toml, warnings) = deploy_tables(deploy, file, &names)?;
        out[0].toml.push_str(&toml);
        out[0].warnings.extend(warnings);
    }
    Ok(out)
}

/// PM2's `deploy` section as `[deploy.ENV]` tables (docs/deploy.md has the mapping), and the
/// warnings for what does not carry over.
fn deploy_tables(
    deploy: &Value,
    file: &str,
    apps: &[String],
) -> Result<(String, Vec<String>), EcosystemError> {
    let Value::Object(envs) = deploy else {
        return Err(EcosystemError::Deploy {
            file: file.into(),
            env: "-".into(),
            message: format!(
                "the section is {}, not an object of environments like `{{ production: {{ user, host, repo, path }} }}`",
                type_of(deploy)
            ),
        });
    };
    let mut toml = String::new();
    let mut warnings = Vec::new();
    for (env, v) in envs {
        let fail = |message: String| EcosystemError::Deploy {
            file: file.into(),
            env: env.clone(),
            message,
        };
        let Value::Object(e) = v else {
            return Err(fail(format!(
                "is {}, not an object with `user`, `host`, `repo`, `path`",
                type_of(v)
            )));
        };
        let string = |key: &str| -> Result<Option<String>, EcosystemError> {
            match e.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(Value::Number(n)) => Ok(Some(n.to_string())),
                Some(other) => Err(fail(format!(
                    "`{key}` must be a string, found {}",
                    type_of(other)
                ))),
            }
        };
        let list = |key: &str| -> Result<Vec<String>, EcosystemError> {
            match e.get(key) {
                None | Some(Value::Null) => Ok(Vec::new()),
                Some(Value::String(s)) => Ok(vec![s.clone()]),
                Some(Value::Array(a)) => a
                    .iter()
                    .map(|x| match x {
                        Value::String(s) => Ok(s.clone()),
                        other => Err(fail(format!(
                            "`{key}` must hold strings, found {}",
                            type_of(other)
                        ))),
                    })
                    .collect(),
                Some(other) => Err(fail(format!(
                    "`{key}` must be a string or an array of strings, found {}",
                    type_of(other)
                ))),
            }
        };
        let hosts = list("host")?;
        if hosts.is_empty() {
            return Err(fail(
                "`host` is missing; add the server, e.g. `host: ['web1.example.com']`".into(),
            ));
        }
        let user = string("user")?;
        let port = string("port")?;
        let hosts: Vec<String> = hosts
            .iter()
            .map(|h| {
                // PM2 takes `user@host` in `host` too.
                let mut s = match (&user, h.contains('@')) {
                    (Some(u), false) => format!("{u}@{h}"),
                    (None, false) => format!("root@{h}"),
                    (_, true) => h.clone(),
                };
                if let Some(p) = &port {
                    if !h.contains(':') {
                        s = format!("{s}:{p}");
                    }
                }
                quote(&s)
            })
            .collect();
        if user.is_none() && !e.get("host").is_some_and(|h| h.to_string().contains('@')) {
            warnings.push(format!(
                "{file}: deploy `{env}`: warning: `user` is missing; ssh logs in as `root` (PM2 uses the local user's name): set the user in `hosts`"
            ));
        }
        let _ = writeln!(toml, "\n# PM2's deploy.{env}: `sysmgr deploy {env} setup`, then `sysmgr deploy {env} update`.");
        let _ = writeln!(toml, "[deploy.{}]", quote(env));
        let _ = writeln!(toml, "hosts = [{}]", hosts.join(", "));
        match string("repo")? {
            Some(r) => {
                let _ = writeln!(toml, "repo = {}", quote(&r));
            }
            None => {
                return Err(fail(
                    "`repo` is missing; add the git URL the servers clone".into(),
                ))
            }
        }
        if let Some(r) = string("ref")? {
            // PM2 names the branch as seen in a clone (`origin/main`); the hosts' mirror has
            // the remote's branches under their own names.
            let r = r.strip_prefix("origin/").unwrap_or(&r).to_string();
            let _ = writeln!(toml, "ref = {}", quote(&r));
        }
        match string("path")? {
            Some(p) => {
                let _ = writeln!(toml, "path = {}", quote(&p));
            }
            None => {
                return Err(fail(
                    "`path` is missing; add the directory on the servers, e.g. `path: '/srv/app'`"
                        .into(),
                ))
            }
        }
        let mut options = list("ssh_options")?;
        if let Some(key) = string("key")? {
            options.push(format!("IdentityFile={key}"));
        }
        if !options.is_empty() {
            let items: Vec<String> = options.iter().map(|o| quote(o)).collect();
            let _ = writeln!(toml, "ssh_options = [{}]", items.join(", "));
        }
        for hook in ["pre-deploy-local", "pre-deploy", "post-deploy", "test"] {
            let Some(command) = string(hook)? else {
                continue;
            };
            // `pm2 reload ...` / `pm2 startOrRestart ...`: sysmgr reloads each host itself,
            // and `pm2` is what the remote shell's PATH so often lacks.
            let kept: Vec<&str> = command
                .split("&&")
                .map(str::trim)
                .filter(|part| !(part.starts_with("pm2 ") || *part == "pm2"))
                .collect();
            if kept.len() != command.split("&&").count() {
                warnings.push(format!(
                    "{file}: deploy `{env}`: warning: `{hook}`'s `pm2 ...` commands were left out: every release is reloaded with `sysmgr reload` on each host"
                ));
            }
            if !kept.is_empty() {
                let _ = writeln!(toml, "{} = {}", quote(hook), quote(&kept.join(" && ")));
            }
        }
        let apps: Vec<String> = apps.iter().map(|a| quote(a)).collect();
        let _ = writeln!(
            toml,
            "# The app files of the repository each release reloads (commit them beside the ecosystem file).\napps = [{}]",
            apps.join(", ")
        );
        for key in e.keys() {
            let advice = match key.as_str() {
                "user" | "host" | "port" | "repo" | "ref" | "path" | "ssh_options" | "key"
                | "pre-deploy-local" | "pre-deploy" | "post-deploy" | "test" => continue,
                "pre-setup" | "post-setup" => {
                    "has no equivalent: `sysmgr deploy ENV setup` only prepares the directories and the mirror; put the commands in `pre-deploy`"
                }
                "env" => "is not carried over: set variables in the app file's `[env]` or `[env_PROFILE]`",
                _ => "is not a PM2 deploy key sysmgr knows; it was left out",
            };
            warnings.push(format!("{file}: deploy `{env}`: warning: `{key}` {advice}"));
        }
    }
    Ok((toml, warnings))
}

/// One app being converted.
struct App<'a> {
    file: &'a str,
    index: usize,
    base: &'a Path,
    overrides: &'a Overrides,
    name: String,
    toml: String,
    warnings: Vec<String>,
}

/// PM2 keys that need no line in app.toml, with what the user should know.
fn answered(key: &str) -> Option<&'static str> {
    Some(match key {
        "exec_mode" => return Some(""),
        "merge_logs" | "combine_logs" | "out_file" | "error_file" | "log_file" | "log"
        | "output" | "error" | "log_date_format" | "log_type" | "time" | "disable_logs"
        | "pid_file" => {
            "output goes to the journal, with timestamps and rotation; read it with `sysmgr logs NAME`"
        }
        "min_uptime" => "sysmgr's crash-loop brake is `max_restarts` starts in a row, each within 10 s of the one before",
        "watch" | "ignore_watch" | "watch_options" | "watch_delay" => {
            "sysmgr does not watch files; run `sysmgr reload NAME` after a deploy"
        }
        "exp_backoff_restart_delay" => "use `restart_delay`",
        "increment_var" => "each instance gets `SYSMGR_INSTANCE` and `NODE_APP_INSTANCE`",
        "namespace" | "vizion" | "autostart" | "force" | "treekill" | "source_map_support"
        | "instance_id_env" | "filter_env" | "append_env_name" | "disable_trace" | "trace"
        | "deep_monitoring" | "automation" | "pmx" | "post_update" | "cwd_relative"
        | "max_memory_restart_check_interval" | "kill_retry_time" | "wait_ready_timeout" => {
            "it has no meaning under systemd"
        }
        _ => return None,
    })
}

/// Interpreters PM2 picks by the script's extension.
fn interpreter_for(script: &str) -> Option<&'static str> {
    let ext = script.rsplit_once('.').map(|(_, e)| e)?;
    Some(match ext {
        "js" | "cjs" | "mjs" => "node",
        "py" => "python3",
        "sh" => "bash",
        "rb" => "ruby",
        "php" => "php",
        "pl" => "perl",
        _ => return None,
    })
}

/// A TOML basic string.
pub(super) fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A TOML key: bare when it can be, quoted otherwise (`env_a b` is `["env_a b"]`).
pub(super) fn toml_key(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        key.to_string()
    } else {
        quote(key)
    }
}

/// A JSON string, number or boolean as a TOML value; `None` for what TOML cannot write
/// (null) or what no app.toml key takes where this is used (objects, nested arrays).
fn toml_scalar(v: &Value) -> Option<String> {
    match v {
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) => Some(quote(s)),
        Value::Null | Value::Array(_) | Value::Object(_) => None,
    }
}

/// Words of a PM2 argument string (`args: '--port 3000'`), split like a shell without
/// expansion; an array is taken as is.
fn words(v: &Value) -> Option<Vec<String>> {
    match v {
        Value::String(s) => crate::systemd::syntax::split_shell_words(s).ok(),
        Value::Array(a) => a
            .iter()
            .map(|w| match w {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
            .collect(),
        _ => None,
    }
}

/// A scalar as the string an environment variable holds.
fn env_value(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

impl<'a> App<'a> {
    fn new(file: &'a str, index: usize, base: &'a Path, overrides: &'a Overrides) -> Self {
        Self {
            file,
            index,
            base,
            overrides,
            name: format!("#{index}"),
            toml: String::new(),
            warnings: Vec::new(),
        }
    }

    fn fail(&self, message: impl Into<String>) -> EcosystemError {
        EcosystemError::App {
            file: self.file.into(),
            app: self.name.clone(),
            index: self.index,
            message: message.into(),
        }
    }

    fn warn(&mut self, key: &str, message: &str) {
        self.warnings.push(format!(
            "{}: app `{}`: warning: `{key}` {message}",
            self.file, self.name
        ));
    }

    fn line(&mut self, comment: &str, key: &str, value: String) {
        for line in comment.lines() {
            let _ = writeln!(self.toml, "# {line}");
        }
        let _ = writeln!(self.toml, "{key} = {value}");
    }

    fn convert(mut self, app: &Value) -> Result<ImportedApp, EcosystemError> {
        let Value::Object(app) = app else {
            return Err(self.fail(format!(
                "is {}, not an object like `{{ name: 'app', script: './app.js' }}`",
                type_of(app)
            )));
        };
        let script = match app.get("script") {
            Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
            Some(other) => {
                return Err(self.fail(format!(
                    "`script` must be a string, found {}",
                    type_of(other)
                )))
            }
            None => {
                if let Some(Value::String(n)) = app.get("name") {
                    self.name.clone_from(n);
                }
                return Err(self
                    .fail("`script` is missing; add the file to run, e.g. `script: './app.js'`"));
            }
        };
        // PM2 names an app after its script when it has no name.
        self.name = match app.get("name") {
            Some(Value::String(n)) => n.clone(),
            _ => Path::new(&script)
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or("app")
                .to_string(),
        };
        let _ = writeln!(
            self.toml,
            "# Imported by sysmgr {} from {}, app `{}` (PM2's ecosystem file).\n# Keys are app.toml's; see docs/app-toml.md and docs/pm2.md.\n",
            env!("CARGO_PKG_VERSION"),
            // A comment holds no control characters.
            self.file.escape_debug(),
            self.name.escape_debug()
        );
        self.line("", "name", quote(&self.name.clone()));

        let cwd = match app.get("cwd") {
            Some(Value::String(c)) => self.base.join(c),
            _ => self.base.to_path_buf(),
        };
        self.command(app, &script)?;
        self.line(
            "PM2's cwd (default: the ecosystem file's directory).",
            "cwd",
            quote(&cwd.display().to_string()),
        );
        self.instances(app)?;
        self.listen(app)?;
        self.simple(app)?;
        self.env(app)?;

        let known = [
            "name",
            "script",
            "args",
            "interpreter",
            "exec_interpreter",
            "interpreter_args",
            "node_args",
            "cwd",
            "instances",
            "listen",
            "wait_ready",
            "listen_timeout",
            "kill_timeout",
            "kill_signal",
            "shutdown_with_message",
            "autorestart",
            "max_restarts",
            "restart_delay",
            "max_memory_restart",
            "cron_restart",
            "stop_exit_codes",
            "user",
            "uid",
            "gid",
            "env",
            "instance_var",
        ];
        for key in app.keys() {
            if known.contains(&key.as_str()) || key.starts_with("env_") {
                continue;
            }
            match answered(key) {
                Some("") => {}
                Some(advice) => {
                    let message = format!("is not carried over: {advice}");
                    self.warn(key, &message);
                }
                None => {
                    let message = match key.as_str() {
                        "instance" => "is not a PM2 key (ignored by PM2 too); did you mean `instances`?".to_string(),
                        "port" | "PORT" => "is not a PM2 key; sysmgr reads the port from `listen`, `env.PORT` or `--listen`".to_string(),
                        _ => "is not a PM2 key sysmgr knows; it was left out".to_string(),
                    };
                    self.warn(key, &message);
                }
            }
        }
        Ok(ImportedApp {
            name: self.name,
            toml: self.toml,
            warnings: self.warnings,
        })
    }

    fn command(&mut self, app: &Map<String, Value>, script: &str) -> Result<(), EcosystemError> {
        let interpreter = match app
            .get("interpreter")
            .or_else(|| app.get("exec_interpreter"))
        {
            Some(Value::String(i)) if i == "none" => None,
            Some(Value::String(i)) => Some(i.clone()),
            Some(other) => {
                return Err(self.fail(format!(
                    "`interpreter` must be a string, found {}",
                    type_of(other)
                )))
            }
            None => interpreter_for(script).map(str::to_string),
        };
        let mut command: Vec<String> = Vec::new();
        if let Some(interpreter) = &interpreter {
            command.push(interpreter.clone());
            for key in ["node_args", "interpreter_args"] {
                if let Some(v) = app.get(key) {
                    let w = words(v).ok_or_else(|| {
                        self.fail(format!("`{key}` must be a string or an array of strings"))
                    })?;
                    command.extend(w);
                }
            }
        }
        command.push(script.to_string());
        if let Some(v) = app.get("args") {
            let w = words(v)
                .ok_or_else(|| self.fail("`args` must be a string or an array of strings"))?;
            command.extend(w);
        }
        let list: Vec<String> = command.iter().map(|w| quote(w)).collect();
        self.line(
            "PM2's interpreter + node_args + script + args; relative to cwd. A `node` program runs with\n# sysmgr's Node bridge: the app is unchanged (app.listen, process.send('ready'), SIGINT).",
            "command",
            format!("[{}]", list.join(", ")),
        );
        Ok(())
    }

    fn instances(&mut self, app: &Map<String, Value>) -> Result<(), EcosystemError> {
        let value = match app.get("instances") {
            None => return Ok(()),
            Some(Value::Number(n)) if n.is_i64() => n.to_string(),
            Some(Value::String(s)) if s == "max" => quote(s),
            // Written as the number it is: `"0005"` is 5, and TOML has no leading zeros.
            Some(Value::String(s)) if s.parse::<i64>().is_ok() => s
                .parse::<i64>()
                .map_or_else(|_| s.clone(), |n| n.to_string()),
            Some(other) => {
                return Err(self.fail(format!(
                    "`instances` must be a number or \"max\", found {}",
                    type_of(other)
                )))
            }
        };
        self.line(
            "PM2's instances: 0 or \"max\" one per usable core, -1 one fewer.",
            "instances",
            value,
        );
        Ok(())
    }

    /// The socket: the app's own `listen`, then `--listen`, then `PORT` of the selected
    /// `env_PROFILE` or of `env`.
    fn listen(&mut self, app: &Map<String, Value>) -> Result<(), EcosystemError> {
        let port_of = |env: Option<&Value>| -> Option<String> {
            env.and_then(|e| e.get("PORT")).and_then(env_value)
        };
        let profile = self
            .overrides
            .profile
            .as_ref()
            .and_then(|p| app.get(&format!("env_{p}")));
        let (addresses, whence): (Vec<String>, &str) = match app.get("listen") {
            Some(Value::String(s)) => (vec![s.clone()], "the app's `listen`"),
            Some(Value::Number(n)) => (vec![n.to_string()], "the app's `listen`"),
            Some(Value::Array(a)) => (
                a.iter().filter_map(env_value).collect(),
                "the app's `listen`",
            ),
            Some(other) => {
                return Err(self.fail(format!(
                    "`listen` must be an address like \"127.0.0.1:3000\", found {}",
                    type_of(other)
                )))
            }
            None => match (&self.overrides.listen, port_of(profile), port_of(app.get("env"))) {
                (Some(l), _, _) => (vec![l.clone()], "--listen"),
                (None, Some(p), _) => (vec![p], "`PORT` of the env profile"),
                (None, None, Some(p)) => (vec![p], "`env.PORT`"),
                (None, None, None) => {
                    return Err(self.fail(
                        "no port to listen on: PM2 never needed one, but systemd owns the socket; add `listen: '127.0.0.1:3000'` (the port app.listen uses) to the app, set `env: { PORT: 3000 }`, or run `sysmgr start FILE --listen 127.0.0.1:3000`",
                    ))
                }
            },
        };
        let list: Vec<String> = addresses.iter().map(|a| quote(a)).collect();
        let comment = format!(
            "From {whence}. systemd owns the socket; the app's listen() on this port takes it."
        );
        self.line(&comment, "listen", format!("[{}]", list.join(", ")));
        Ok(())
    }

    /// Keys that carry over one to one.
    fn simple(&mut self, app: &Map<String, Value>) -> Result<(), EcosystemError> {
        // PM2's default: not waiting for `ready` (sysmgr then waits for the listen).
        let wait_ready = match app.get("wait_ready") {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                return Err(self.fail(format!(
                    "`wait_ready` must be true or false, found {}",
                    type_of(other)
                )))
            }
        };
        self.line(
            "PM2's wait_ready (default false): true waits for process.send('ready'), false for the listen.",
            "wait_ready",
            wait_ready.to_string(),
        );
        let keys: &[(&str, &str, &str)] = &[
            (
                "listen_timeout",
                "listen_timeout",
                "PM2's listen_timeout (ms).",
            ),
            (
                "kill_timeout",
                "kill_timeout",
                "PM2's kill_timeout (ms): the drain before SIGKILL.",
            ),
            ("kill_signal", "kill_signal", ""),
            (
                "shutdown_with_message",
                "shutdown_with_message",
                "PM2's shutdown_with_message: the app gets process.on('message') 'shutdown'.",
            ),
            ("autorestart", "autorestart", ""),
            (
                "max_restarts",
                "max_restarts",
                "PM2's max_restarts: starts allowed in a row, each within 10 s of the one before.",
            ),
            ("restart_delay", "restart_delay", ""),
            (
                "max_memory_restart",
                "max_memory_restart",
                "PM2's max_memory_restart: above it an instance is restarted through its drain (checked\nevery 5 s); the kernel's MemoryMax at 150% of it is the backstop.",
            ),
            (
                "cron_restart",
                "cron_restart",
                "PM2's cron_restart: a systemd timer runs the graceful `sysmgr reload` at these times.",
            ),
            ("stop_exit_codes", "stop_exit_codes", ""),
            ("instance_var", "instance_var", ""),
            ("user", "user", ""),
            ("uid", "user", "PM2's uid."),
            ("gid", "group", "PM2's gid."),
        ];
        // PM2's `uid` is `user` by another name: both would be one key twice.
        if app.contains_key("user") && app.contains_key("uid") {
            return Err(
                self.fail("`user` and `uid` both name the account to run as; keep one of them")
            );
        }
        for &(pm2, key, comment) in keys {
            let Some(v) = app.get(pm2) else { continue };
            let value = match v {
                Value::Array(a) => match a.iter().find(|x| toml_scalar(x).is_none()) {
                    Some(other) => {
                        return Err(self.fail(format!("`{pm2}` cannot hold {}", type_of(other))))
                    }
                    None => {
                        let items: Vec<String> = a.iter().filter_map(toml_scalar).collect();
                        format!("[{}]", items.join(", "))
                    }
                },
                other => match toml_scalar(other) {
                    Some(value) => value,
                    None => return Err(self.fail(format!("`{pm2}` cannot be {}", type_of(other)))),
                },
            };
            self.line(comment, key, value);
        }
        Ok(())
    }

    fn env(&mut self, app: &Map<String, Value>) -> Result<(), EcosystemError> {
        let mut tables: Vec<(&str, &Map<String, Value>)> = Vec::new();
        for (key, v) in app {
            if key == "env" || key.starts_with("env_") {
                match v {
                    Value::Object(o) => tables.push((key, o)),
                    other => {
                        return Err(self.fail(format!(
                            "`{key}` must be an object of variables, found {}",
                            type_of(other)
                        )))
                    }
                }
            }
        }
        // [env] first, then the profiles, as TOML needs the plain keys before any table.
        tables.sort_by_key(|(k, _)| *k != "env");
        for (key, vars) in tables {
            let _ = writeln!(self.toml, "\n[{}]", toml_key(key));
            for (name, value) in vars {
                let Some(value) = env_value(value) else {
                    let message = format!(
                        "has `{name}` = {}, not a string, number or boolean; it was left out",
                        type_of(value)
                    );
                    self.warn(key, &message);
                    continue;
                };
                let _ = writeln!(self.toml, "{} = {}", quote(name), quote(&value));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(v: Value) -> Result<ImportedApp, EcosystemError> {
        convert(
            &v,
            "ecosystem.config.js",
            Path::new("/srv/app"),
            &Overrides::default(),
        )
        .map(|mut apps| apps.remove(0))
    }

    #[test]
    fn the_articles_app_becomes_an_app_file_that_parses() {
        let app = one(serde_json::json!({ "apps": [{
            "name": "app", "script": "./app.js", "instances": 0, "exec_mode": "cluster",
            "wait_ready": true, "listen_timeout": 50000, "kill_timeout": 5000,
            "env": { "PORT": 3000, "NODE_ENV": "production" }
        }]}))
        .unwrap();
        assert!(app.warnings.is_empty(), "{:?}", app.warnings);
        let parsed = crate::config::parse(
            &app.toml,
            "app.toml",
            Path::new("/srv/app/app.toml"),
            &crate::config::ParseOptions::default(),
        )
        .unwrap_or_else(|d| panic!("{d}\n{}", app.toml));
        let spec = parsed.spec;
        assert_eq!(spec.command, ["node", "./app.js"]);
        assert!(spec.wait_ready);
        assert_eq!(spec.kill_timeout.as_millis(), 5000);
        assert_eq!(spec.listen[0].address.to_string(), "3000");
    }

    #[test]
    fn every_bad_input_says_what_to_do() {
        let cases: &[(Value, &str)] = &[
            (serde_json::json!(42), "ecosystem.config.js: exports a number, not an object with an `apps` array; write `module.exports = { apps: [{ name: 'app', script: './app.js' }] }`"),
            (serde_json::json!({ "apps": [{ "name": "web" }] }), "ecosystem.config.js: app `web` (apps[0]): `script` is missing; add the file to run, e.g. `script: './app.js'`"),
            (serde_json::json!({ "apps": [{ "name": "web", "script": "app.js" }] }), "ecosystem.config.js: app `web` (apps[0]): no port to listen on: PM2 never needed one, but systemd owns the socket; add `listen: '127.0.0.1:3000'` (the port app.listen uses) to the app, set `env: { PORT: 3000 }`, or run `sysmgr start FILE --listen 127.0.0.1:3000`"),
            (serde_json::json!({ "apps": [] }), "ecosystem.config.js: exports an empty `apps` array, not an object with an `apps` array; write `module.exports = { apps: [{ name: 'app', script: './app.js' }] }`"),
        ];
        for (value, message) in cases {
            assert_eq!(one(value.clone()).unwrap_err().to_string(), *message);
        }
    }

    #[test]
    fn every_wrong_type_is_named() {
        let web = |extra: Value| {
            let mut app =
                serde_json::json!({ "name": "web", "script": "app.js", "listen": "3000" });
            app.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            serde_json::json!({ "apps": [app] })
        };
        let cases: Vec<(Value, &str)> = vec![
            (serde_json::json!({ "apps": ["web"] }), "ecosystem.config.js: app `#0` (apps[0]): is a string, not an object like `{ name: 'app', script: './app.js' }`"),
            (web(serde_json::json!({ "script": 7 })), "ecosystem.config.js: app `#0` (apps[0]): `script` must be a string, found a number"),
            (web(serde_json::json!({ "interpreter": 7 })), "ecosystem.config.js: app `web` (apps[0]): `interpreter` must be a string, found a number"),
            (web(serde_json::json!({ "interpreter": "node", "node_args": 7 })), "ecosystem.config.js: app `web` (apps[0]): `node_args` must be a string or an array of strings"),
            (web(serde_json::json!({ "args": 7 })), "ecosystem.config.js: app `web` (apps[0]): `args` must be a string or an array of strings"),
            (web(serde_json::json!({ "instances": true })), "ecosystem.config.js: app `web` (apps[0]): `instances` must be a number or \"max\", found a boolean"),
            (web(serde_json::json!({ "listen": true })), "ecosystem.config.js: app `web` (apps[0]): `listen` must be an address like \"127.0.0.1:3000\", found a boolean"),
            (web(serde_json::json!({ "wait_ready": "yes" })), "ecosystem.config.js: app `web` (apps[0]): `wait_ready` must be true or false, found a string"),
            (web(serde_json::json!({ "env_production": [] })), "ecosystem.config.js: app `web` (apps[0]): `env_production` must be an object of variables, found an array"),
        ];
        for (value, message) in cases {
            assert_eq!(one(value.clone()).unwrap_err().to_string(), message);
        }
    }

    /// PM2's `cron_restart` and `max_memory_restart` keep their meaning: a timer that
    /// reloads at those times, and a graceful restart above the limit.
    #[test]
    fn cron_restart_and_max_memory_restart_carry_over() {
        let app = one(serde_json::json!({ "apps": [{
            "name": "web", "script": "server.js", "listen": "127.0.0.1:8080",
            "cron_restart": "0 3 * * MON-FRI", "max_memory_restart": "300M"
        }]}))
        .unwrap();
        assert!(app.warnings.is_empty(), "{:?}", app.warnings);
        assert!(
            app.toml.contains("\ncron_restart = \"0 3 * * MON-FRI\"\n"),
            "{}",
            app.toml
        );
        assert!(
            app.toml.contains("\nmax_memory_restart = \"300M\"\n"),
            "{}",
            app.toml
        );
        let spec = crate::config::parse(
            &app.toml,
            "app.toml",
            Path::new("/srv/app/app.toml"),
            &crate::config::ParseOptions::default(),
        )
        .unwrap()
        .spec;
        assert_eq!(
            spec.cron_restart.as_ref().unwrap().on_calendar,
            "Mon..Fri *-*-* 03:00:00"
        );
        assert_eq!(spec.graceful_memory_limit(), Some(300 << 20));
    }

    /// Found by the fuzzer: import wrote JSON (`[null]`, `{"a":1}`) and unquoted table names
    /// (`[env_a b]`) into app.toml, which then failed as "not valid TOML".
    #[test]
    fn every_value_is_written_as_toml_or_refused() {
        let web = |extra: Value| {
            let mut app =
                serde_json::json!({ "name": "web", "script": "app.js", "listen": "3000" });
            app.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            serde_json::json!({ "apps": [app] })
        };
        for (extra, message) in [
            (serde_json::json!({ "stop_exit_codes": [0, null] }), "ecosystem.config.js: app `web` (apps[0]): `stop_exit_codes` cannot hold nothing"),
            (serde_json::json!({ "listen_timeout": [{ "a": 1 }] }), "ecosystem.config.js: app `web` (apps[0]): `listen_timeout` cannot hold an object with keys a"),
            (serde_json::json!({ "kill_timeout": null }), "ecosystem.config.js: app `web` (apps[0]): `kill_timeout` cannot be nothing"),
        ] {
            assert_eq!(one(web(extra)).unwrap_err().to_string(), message);
        }
        assert_eq!(
            one(web(serde_json::json!({ "user": "www", "uid": "www" }))).unwrap_err().to_string(),
            "ecosystem.config.js: app `web` (apps[0]): `user` and `uid` both name the account to run as; keep one of them"
        );
        let padded = one(web(serde_json::json!({ "instances": "0005" }))).unwrap();
        assert!(padded.toml.contains("\ninstances = 5\n"), "{}", padded.toml);
        let odd = one(serde_json::json!({ "apps": [{ "name": "a\u{0}\nb", "script": "app.js", "listen": "3000" }] }))
            .unwrap();
        assert!(odd.toml.contains("app `a\\0\\nb`"), "{}", odd.toml);
        let d = crate::config::parse(
            &odd.toml,
            "app.toml",
            Path::new("/srv/app/app.toml"),
            &crate::config::ParseOptions::default(),
        )
        .unwrap_err();
        assert!(!d.to_string().contains("not valid TOML"), "{d}");
        let app = one(web(
            serde_json::json!({ "env_a b": { "X": "1" }, "stop_exit_codes": [0, 3] }),
        ))
        .unwrap();
        assert!(
            app.toml.contains("\n[\"env_a b\"]\n\"X\" = \"1\"\n"),
            "{}",
            app.toml
        );
        let opts = crate::config::ParseOptions {
            profile: Some("a b".into()),
            ..crate::config::ParseOptions::default()
        };
        let spec =
            crate::config::parse(&app.toml, "app.toml", Path::new("/srv/app/app.toml"), &opts)
                .unwrap_or_else(|d| panic!("{d}\n{}", app.toml))
                .spec;
        assert_eq!(spec.env, [("X".to_string(), "1".to_string())]);
        assert_eq!(spec.stop_exit_codes, [0, 3]);
    }

    #[test]
    fn keys_without_a_systemd_meaning_are_warnings_that_say_what_to_use() {
        let app = one(serde_json::json!({ "apps": [{
            "script": "server.js", "listen": "127.0.0.1:8080", "out_file": "/var/log/x",
            "instance": 0, "watch": true
        }]}))
        .unwrap();
        assert_eq!(app.name, "server");
        assert_eq!(
            app.warnings,
            [
                "ecosystem.config.js: app `server`: warning: `out_file` is not carried over: output goes to the journal, with timestamps and rotation; read it with `sysmgr logs NAME`",
                "ecosystem.config.js: app `server`: warning: `instance` is not a PM2 key (ignored by PM2 too); did you mean `instances`?",
                "ecosystem.config.js: app `server`: warning: `watch` is not carried over: sysmgr does not watch files; run `sysmgr reload NAME` after a deploy",
            ]
        );
    }

    /// The articles' deploy section (`../shared/seeds/`): one environment, `pm2 reload` in
    /// `post-deploy`.
    #[test]
    fn the_articles_deploy_section_becomes_a_deploy_table() {
        let value = serde_json::json!({
            "apps": [
                { "name": "web", "script": "./app.js", "listen": "3000" },
                { "name": "worker", "script": "./worker.js", "listen": "3001" }
            ],
            "deploy": { "staging": {
                "user": "root", "host": "appstaging.server.name", "ref": "origin/develop",
                "repo": "git@github.com:user/reponame.git", "ssh_options": "StrictHostKeyChecking=no",
                "path": "/home/www/project_root",
                "post-deploy": "npm install && npm run build && pm2 reload ecosystem.config.js",
                "pre-setup": "apt-get install git", "key": "/home/me/.ssh/deploy"
            }}
        });
        let apps = convert(
            &value,
            "ecosystem.config.js",
            Path::new("/srv/app"),
            &Overrides::default(),
        )
        .unwrap();
        assert!(
            !apps[1].toml.contains("[deploy"),
            "the first app carries the section"
        );
        let web = &apps[0];
        assert_eq!(
            web.warnings,
            [
                "ecosystem.config.js: deploy `staging`: warning: `post-deploy`'s `pm2 ...` commands were left out: every release is reloaded with `sysmgr reload` on each host",
                "ecosystem.config.js: deploy `staging`: warning: `pre-setup` has no equivalent: `sysmgr deploy ENV setup` only prepares the directories and the mirror; put the commands in `pre-deploy`",
            ]
        );
        let spec = crate::config::parse(
            &web.toml,
            "web.toml",
            Path::new("/srv/app/web.toml"),
            &crate::config::ParseOptions::default(),
        )
        .unwrap_or_else(|d| panic!("{d}\n{}", web.toml))
        .spec;
        let d = &spec.deploy[0];
        assert_eq!(d.name, "staging");
        assert_eq!(d.hosts[0].to_string(), "root@appstaging.server.name");
        assert_eq!(d.git_ref, "develop");
        assert_eq!(d.repo, "git@github.com:user/reponame.git");
        assert_eq!(d.path, Path::new("/home/www/project_root"));
        assert_eq!(
            d.ssh_options,
            [
                "StrictHostKeyChecking=no",
                "IdentityFile=/home/me/.ssh/deploy"
            ]
        );
        assert_eq!(
            d.hooks.post_deploy.as_deref(),
            Some("npm install && npm run build")
        );
        assert_eq!(d.apps, ["web.toml", "worker.toml"]);
    }

    #[test]
    fn a_deploy_section_without_what_it_needs_says_what_to_add() {
        let app = serde_json::json!([{ "name": "web", "script": "./app.js", "listen": "3000" }]);
        let cases: &[(Value, &str)] = &[
            (serde_json::json!("prod"), "ecosystem.config.js: deploy `-`: the section is a string, not an object of environments like `{ production: { user, host, repo, path } }`"),
            (serde_json::json!({ "prod": { "repo": "r", "path": "/srv" } }), "ecosystem.config.js: deploy `prod`: `host` is missing; add the server, e.g. `host: ['web1.example.com']`"),
            (serde_json::json!({ "prod": { "host": "h", "path": "/srv" } }), "ecosystem.config.js: deploy `prod`: `repo` is missing; add the git URL the servers clone"),
            (serde_json::json!({ "prod": { "host": "h", "repo": "r" } }), "ecosystem.config.js: deploy `prod`: `path` is missing; add the directory on the servers, e.g. `path: '/srv/app'`"),
            (serde_json::json!({ "prod": { "host": 7, "repo": "r", "path": "/srv" } }), "ecosystem.config.js: deploy `prod`: `host` must be a string or an array of strings, found a number"),
        ];
        for (deploy, want) in cases {
            let value = serde_json::json!({ "apps": app, "deploy": deploy });
            let err = convert(
                &value,
                "ecosystem.config.js",
                Path::new("/srv/app"),
                &Overrides::default(),
            )
            .unwrap_err();
            assert_eq!(err.to_string(), *want);
        }
        // Several hosts, user@host and a port.
        let value = serde_json::json!({ "apps": app, "deploy": { "prod": {
            "user": "deploy", "host": ["10.0.0.1", "ops@10.0.0.2"], "port": "2222", "repo": "r", "path": "/srv"
        }}});
        let web = convert(
            &value,
            "ecosystem.config.js",
            Path::new("/srv/app"),
            &Overrides::default(),
        )
        .unwrap()
        .remove(0);
        assert!(
            web.toml
                .contains("hosts = [\"deploy@10.0.0.1:2222\", \"ops@10.0.0.2:2222\"]"),
            "{}",
            web.toml
        );
    }
}
