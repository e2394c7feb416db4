//! `[deploy.ENV]`: where and how `sysmgr deploy ENV` ships the app (PM2's `deploy` section).
//!
//! Checked like every other key (stage 2, with spans); the result is a [`DeployEnv`] per
//! environment, in the order the file declares them. Nothing here talks to a host: that is
//! `crate::deploy`'s job.

use std::num::NonZeroU32;
use std::path::PathBuf;

use toml::de::DeValue;

use super::diag::Reporter;
use super::raw::{int_of, type_name, Value};

/// The releases a host keeps unless `keep` says otherwise (the current one included).
pub const DEFAULT_KEEP: u32 = 5;
/// Where sysmgr is on the hosts unless `sysmgr` says otherwise (the packages' path).
pub const DEFAULT_REMOTE_SYSMGR: &str = "/usr/bin/sysmgr";

/// One host: `user@host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// The account ssh logs in as.
    pub user: String,
    /// A name or an address (IPv6 in brackets in the file, bare here).
    pub host: String,
    /// The ssh port, if not 22.
    pub port: Option<u16>,
}

impl Host {
    /// Parses `user@host[:port]` (`user@[::1]:2222` for IPv6).
    pub fn parse(s: &str) -> Result<Self, String> {
        let Some((user, rest)) = s.split_once('@') else {
            return Err(format!(
                "has `{s}` without a user; write `user@host` or `user@host:port`, e.g. `deploy@10.0.0.5:22`"
            ));
        };
        super::types::check_user_name(user).map_err(|e| format!("has `{s}`, whose user {e}"))?;
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let Some((addr, after)) = v6.split_once(']') else {
                return Err(format!("has `{s}`, which opens `[` without closing it"));
            };
            match after.strip_prefix(':') {
                Some(p) => (addr, Some(p)),
                None if after.is_empty() => (addr, None),
                None => return Err(format!("has `{s}`, with `{after}` after the address")),
            }
        } else {
            match rest.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (rest, None),
            }
        };
        if host.is_empty()
            || !host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | ':' | '_'))
            || host.starts_with('-')
        {
            return Err(format!(
                "has `{s}`, whose host `{host}` is not a host name or address (letters, digits, `-`, `.`)"
            ));
        }
        let port = match port {
            None => None,
            Some(p) => Some(p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| {
                format!("has `{s}`, whose port `{p}` is not a number from 1 to 65535")
            })?),
        };
        Ok(Self {
            user: user.to_string(),
            host: host.to_string(),
            port,
        })
    }

    /// `user@host`, what ssh is given (the port goes with `-p`).
    pub fn destination(&self) -> String {
        format!("{}@{}", self.user, self.host)
    }
}

impl std::fmt::Display for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        match self.port {
            Some(p) => write!(f, "{}@{host}:{p}", self.user),
            None => write!(f, "{}@{host}", self.user),
        }
    }
}

/// The hooks of an environment: shell commands, each run by `/bin/sh -c`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hooks {
    /// Run once on the machine that deploys, before any host.
    pub pre_deploy_local: Option<String>,
    /// Run on each host in `path`, before the fetch.
    pub pre_deploy: Option<String>,
    /// Run on each host in the new release (`npm ci`, a build), before the switch.
    pub post_deploy: Option<String>,
    /// Run on each host in the new release after `post-deploy`; failing stops the host
    /// before the switch.
    pub test: Option<String>,
}

/// One `[deploy.ENV]` table, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployEnv {
    /// `ENV`.
    pub name: String,
    /// The hosts, in the order they are deployed.
    pub hosts: Vec<Host>,
    /// The git repository the hosts fetch from (as the hosts reach it).
    pub repo: String,
    /// The branch, tag or commit deployed.
    pub git_ref: String,
    /// The directory on each host: `repo` (the mirror), `releases/`, `current`.
    pub path: PathBuf,
    /// ssh `-o` options, `Key=Value` each.
    pub ssh_options: Vec<String>,
    /// The hooks.
    pub hooks: Hooks,
    /// Hosts deployed at the same time.
    pub serial: NonZeroU32,
    /// Hosts that may fail before the rollout stops (0: the first failure stops it).
    pub max_fail: u32,
    /// Releases kept on each host, the current one included.
    pub keep: NonZeroU32,
    /// The app files in the repository that each release reloads, relative to its root.
    pub apps: Vec<String>,
    /// Where sysmgr is on the hosts (absolute: no login shell's `PATH` is involved).
    pub sysmgr: PathBuf,
}

/// The keys of a `[deploy.ENV]` table.
pub const DEPLOY_KEYS: &[&str] = &[
    "hosts",
    "repo",
    "ref",
    "path",
    "ssh_options",
    "pre-deploy-local",
    "pre-deploy",
    "post-deploy",
    "test",
    "serial",
    "max_fail",
    "keep",
    "apps",
    "sysmgr",
];

/// Checks `[deploy]`: a table of environments.
pub(super) fn check(rep: &mut Reporter<'_>, v: &Value<'_>) -> Option<Vec<DeployEnv>> {
    let DeValue::Table(t) = v.get_ref() else {
        rep.error(
            v.span(),
            "deploy",
            format!(
                "must be a table of environments like `[deploy.production]`, found {}",
                type_name(v.get_ref())
            ),
        );
        return None;
    };
    let mut out = Vec::new();
    let mut ok = true;
    for (name, table) in t.iter() {
        let name: &str = name.get_ref();
        match env(rep, name, table) {
            Some(e) => out.push(e),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn env(rep: &mut Reporter<'_>, name: &str, v: &Value<'_>) -> Option<DeployEnv> {
    let prefix = format!("deploy.{name}");
    let DeValue::Table(t) = v.get_ref() else {
        rep.error(
            v.span(),
            &prefix,
            format!(
                "must be a table (`[{prefix}]` with `hosts`, `repo`, `path`), found {}",
                type_name(v.get_ref())
            ),
        );
        return None;
    };
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
    {
        rep.error(
            v.span(),
            &prefix,
            "is not an environment name; use letters, digits, `-` and `_`, like `production`",
        );
        return None;
    }
    let mut ok = true;
    let get = |key: &str| {
        t.iter()
            .find(|(k, _)| k.get_ref().as_ref() == key)
            .map(|(_, v)| v)
    };
    for (k, _) in t.iter() {
        let key: &str = k.get_ref();
        if !DEPLOY_KEYS.contains(&key) {
            let hint = match key {
                "user" | "host" => "; write the hosts as `hosts = [\"user@host:port\"]`".to_string(),
                "post-setup" | "pre-setup" => "; PM2's setup hooks have no equivalent: `sysmgr deploy ENV setup` only prepares the directories and the mirror, put the commands in `pre-deploy`".to_string(),
                _ => format!("; the keys are {}", DEPLOY_KEYS.join(", ")),
            };
            rep.error(
                k.span(),
                &format!("{prefix}.{key}"),
                format!("is not a deploy key{hint}"),
            );
            ok = false;
        }
    }
    let key = |k: &str| format!("{prefix}.{k}");
    let missing = |rep: &mut Reporter<'_>, k: &str, example: &str| {
        rep.error(
            v.span(),
            &key(k),
            format!("is missing; add `{k} = {example}`"),
        );
    };
    let string = |rep: &mut Reporter<'_>, k: &str| -> Option<Option<String>> {
        match get(k) {
            None => Some(None),
            Some(v) => match v.get_ref().as_str() {
                Some(s) if s.trim().is_empty() => {
                    rep.error(v.span(), &key(k), "is empty");
                    None
                }
                Some(s) => Some(Some(s.to_string())),
                None => {
                    rep.error(
                        v.span(),
                        &key(k),
                        format!("must be a string, found {}", type_name(v.get_ref())),
                    );
                    None
                }
            },
        }
    };
    // A string or an array of strings.
    let strings = |rep: &mut Reporter<'_>, k: &str| -> Option<Option<Vec<(String, &Value<'_>)>>> {
        let Some(v) = get(k) else {
            return Some(None);
        };
        match v.get_ref() {
            DeValue::String(s) => Some(Some(vec![(s.to_string(), v)])),
            DeValue::Array(items) => {
                let mut out = Vec::new();
                for item in items.iter() {
                    match item.get_ref().as_str() {
                        Some(s) => out.push((s.to_string(), item)),
                        None => {
                            rep.error(
                                item.span(),
                                &key(k),
                                format!("must hold strings, found {}", type_name(item.get_ref())),
                            );
                            return None;
                        }
                    }
                }
                Some(Some(out))
            }
            other => {
                rep.error(
                    v.span(),
                    &key(k),
                    format!(
                        "must be a string or an array of strings, found {}",
                        type_name(other)
                    ),
                );
                None
            }
        }
    };
    let number = |rep: &mut Reporter<'_>, k: &str, min: i64, default: u32| -> Option<u32> {
        let Some(v) = get(k) else {
            return Some(default);
        };
        match int_of(v.get_ref()) {
            Some(n) if n >= min && n <= i64::from(u16::MAX) => Some(n as u32),
            Some(n) => {
                rep.error(
                    v.span(),
                    &key(k),
                    format!("is {n}; use a number from {min} to {}", u16::MAX),
                );
                None
            }
            None => {
                rep.error(
                    v.span(),
                    &key(k),
                    format!("must be an integer, found {}", type_name(v.get_ref())),
                );
                None
            }
        }
    };

    let hosts = match strings(rep, "hosts") {
        Some(Some(list)) if list.is_empty() => {
            rep.error(
                get("hosts").unwrap().span(),
                &key("hosts"),
                "is empty; list at least one `user@host`",
            );
            None
        }
        Some(Some(list)) => {
            let mut hosts = Vec::new();
            let mut good = true;
            for (s, item) in list {
                match Host::parse(&s) {
                    Ok(h) if hosts.contains(&h) => {
                        rep.error(item.span(), &key("hosts"), format!("lists `{s}` twice"));
                        good = false;
                    }
                    Ok(h) => hosts.push(h),
                    Err(e) => {
                        rep.error(item.span(), &key("hosts"), e);
                        good = false;
                    }
                }
            }
            good.then_some(hosts)
        }
        Some(None) => {
            missing(rep, "hosts", "[\"deploy@web1.example.com\"]");
            None
        }
        None => None,
    };
    let repo = match string(rep, "repo") {
        Some(Some(r)) => Some(r),
        Some(None) => {
            missing(rep, "repo", "\"git@github.com:you/app.git\"");
            None
        }
        None => None,
    };
    let git_ref = match string(rep, "ref") {
        Some(Some(r)) => {
            if r.starts_with('-')
                || r.chars().any(|c| c.is_whitespace() || c.is_control())
                || r.contains("..")
            {
                rep.error(
                    get("ref").unwrap().span(),
                    &key("ref"),
                    format!("is `{r}`, which is not a branch, tag or commit name"),
                );
                None
            } else {
                Some(r)
            }
        }
        Some(None) => Some("main".to_string()),
        None => None,
    };
    let path = match string(rep, "path") {
        Some(Some(p)) if p.starts_with('/') && !p.split('/').any(|c| c == "..") => Some(
            PathBuf::from(p.trim_end_matches('/'))
                .components()
                .collect::<PathBuf>(),
        ),
        Some(Some(p)) => {
            rep.error(
                get("path").unwrap().span(),
                &key("path"),
                format!("is `{p}`; give an absolute path on the hosts without `..`, like `\"/srv/web\"`"),
            );
            None
        }
        Some(None) => {
            missing(rep, "path", "\"/srv/web\"");
            None
        }
        None => None,
    };
    let ssh_options = match strings(rep, "ssh_options") {
        Some(Some(list)) => {
            let mut out = Vec::new();
            let mut good = true;
            for (s, item) in list {
                // PM2 writes `StrictHostKeyChecking=no`; ssh's `-o` also takes `Key Value`.
                let s = s.trim().trim_start_matches("-o").trim().to_string();
                let Some((k, _)) = s.split_once(['=', ' ']) else {
                    rep.error(item.span(), &key("ssh_options"), format!("has `{s}`, which is not an ssh option; write `Key=Value`, like `StrictHostKeyChecking=accept-new`"));
                    good = false;
                    continue;
                };
                if k.is_empty()
                    || !k.chars().all(|c| c.is_ascii_alphanumeric())
                    || s.contains(['\n', '\r'])
                {
                    rep.error(item.span(), &key("ssh_options"), format!("has `{s}`, which is not an ssh option; write `Key=Value`, like `StrictHostKeyChecking=accept-new`"));
                    good = false;
                    continue;
                }
                if k.eq_ignore_ascii_case("BatchMode") {
                    rep.error(item.span(), &key("ssh_options"), "sets `BatchMode`, which sysmgr always sets to `yes` (a deploy never waits for a password); remove it");
                    good = false;
                    continue;
                }
                out.push(s);
            }
            good.then_some(out)
        }
        Some(None) => Some(Vec::new()),
        None => None,
    };
    let mut hook = |k: &str| -> Option<Option<String>> {
        let r = string(rep, k)?;
        if let Some(s) = &r {
            if s.contains('\0') {
                rep.error(get(k).unwrap().span(), &key(k), "contains a NUL character");
                return None;
            }
        }
        Some(r)
    };
    let hooks = (|| {
        Some(Hooks {
            pre_deploy_local: hook("pre-deploy-local")?,
            pre_deploy: hook("pre-deploy")?,
            post_deploy: hook("post-deploy")?,
            test: hook("test")?,
        })
    })();
    let serial = number(rep, "serial", 1, 1).and_then(NonZeroU32::new);
    let max_fail = number(rep, "max_fail", 0, 0);
    let keep = match get("keep") {
        Some(_) => number(rep, "keep", 2, DEFAULT_KEEP).and_then(NonZeroU32::new),
        None => NonZeroU32::new(DEFAULT_KEEP),
    };
    let apps = match strings(rep, "apps") {
        Some(Some(list)) if list.is_empty() => {
            rep.error(
                get("apps").unwrap().span(),
                &key("apps"),
                "is empty; name the app files of the repository, like `[\"app.toml\"]`",
            );
            None
        }
        Some(Some(list)) => {
            let mut good = true;
            let mut out = Vec::new();
            for (s, item) in list {
                if s.starts_with('/') || s.split('/').any(|c| c == ".." || c.is_empty()) {
                    rep.error(item.span(), &key("apps"), format!("has `{s}`; give a path inside the repository, like `\"app.toml\"` or `\"deploy/web.toml\"`"));
                    good = false;
                } else {
                    out.push(s);
                }
            }
            good.then_some(out)
        }
        Some(None) => Some(vec!["app.toml".to_string()]),
        None => None,
    };
    let sysmgr = match string(rep, "sysmgr") {
        Some(Some(p)) if p.starts_with('/') => Some(PathBuf::from(p)),
        Some(Some(p)) => {
            rep.error(
                get("sysmgr").unwrap().span(),
                &key("sysmgr"),
                format!("is `{p}`; give sysmgr's absolute path on the hosts, like `\"/usr/bin/sysmgr\"` (a deploy does not depend on the remote shell's `PATH`)"),
            );
            None
        }
        Some(None) => Some(PathBuf::from(DEFAULT_REMOTE_SYSMGR)),
        None => None,
    };
    if !ok {
        return None;
    }
    Some(DeployEnv {
        name: name.to_string(),
        hosts: hosts?,
        repo: repo?,
        git_ref: git_ref?,
        path: path?,
        ssh_options: ssh_options?,
        hooks: hooks?,
        serial: serial?,
        max_fail: max_fail?,
        keep: keep?,
        apps: apps?,
        sysmgr: sysmgr?,
    })
}
