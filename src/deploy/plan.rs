//! The remote side of a deploy as text: one POSIX shell script per step, built from the
//! environment and the release. Pure: no clock, no file system, no network; the executor
//! ([`super::rollout`]) sends each script to a host over the transport.
//!
//! A host's directory (`path`):
//!
//! ```text
//! path/repo                     a bare mirror of `repo` (`setup` clones it, each deploy fetches)
//! path/releases/<time>-<sha>    one checkout per deploy (`git archive`, no .git), + REVISION
//! path/current -> releases/...  the release the app runs from, switched by rename(2)
//! ```
//!
//! Every script starts with `set -eu` and a fixed `PATH`, so nothing depends on the remote
//! login shell's profile; sysmgr is called by its absolute path ([`DeployEnv::sysmgr`]).

use std::path::Path;

use crate::config::deploy::DeployEnv;

/// The `PATH` every remote script runs with.
pub const REMOTE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What a release directory's name looks like: `20261202T013000Z-0123abcd` (UTC time, then
/// the commit's short hash), so that names sort by time.
pub fn release_name(utc: &str, sha: &str) -> String {
    let short: String = sha.chars().take(8).collect();
    format!("{utc}-{short}")
}

/// `YYYYMMDDTHHMMSSZ` of `secs` since the epoch (UTC), the time part of release names.
pub fn utc_stamp(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Whether `name` is a release directory's name ([`release_name`]).
pub fn is_release_name(name: &str) -> bool {
    let Some((time, sha)) = name.split_once('-') else {
        return false;
    };
    time.len() == 16
        && time.as_bytes()[8] == b'T'
        && time.ends_with('Z')
        && time[..8].bytes().all(|b| b.is_ascii_digit())
        && time[9..15].bytes().all(|b| b.is_ascii_digit())
        && !sha.is_empty()
        && sha.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A word quoted for a POSIX shell: `'...'`, with `'` as `'\''`.
pub fn quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-:=@+,%".contains(&b))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn path_word(p: &Path) -> String {
    quote(&p.display().to_string())
}

/// The start of every script: strict mode, the fixed PATH, `P` the deploy directory.
fn prelude(env: &DeployEnv) -> String {
    format!(
        "set -eu\nexport PATH={REMOTE_PATH}\nP={}\n",
        path_word(&env.path)
    )
}

/// The steps of a deploy, in the words errors and timings use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// `pre-deploy-local`, on this machine.
    PreDeployLocal,
    /// `setup`: directories and the mirror.
    Setup,
    /// `pre-deploy`, on the host, in `path`.
    PreDeploy,
    /// Fetch the ref into the mirror; learn its commit and the current release.
    Fetch,
    /// Check the commit out into a new release directory.
    Checkout,
    /// `post-deploy`, in the new release.
    PostDeploy,
    /// `test`, in the new release.
    Test,
    /// Point `current` at the new release.
    Switch,
    /// `sysmgr reload` (or `start`, the first time) of each app file.
    Reload,
    /// Point `current` back at the release it had.
    SwitchBack,
    /// Reload the release it had.
    ReloadBack,
    /// Remove releases beyond `keep`.
    Prune,
    /// `list`: the releases and the current one.
    List,
    /// `exec CMD`.
    Exec,
}

impl Step {
    /// The step's name in messages and timings.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PreDeployLocal => "pre-deploy-local",
            Self::Setup => "setup",
            Self::PreDeploy => "pre-deploy",
            Self::Fetch => "fetch",
            Self::Checkout => "checkout",
            Self::PostDeploy => "post-deploy",
            Self::Test => "test",
            Self::Switch => "switch",
            Self::Reload => "reload",
            Self::SwitchBack => "switch back",
            Self::ReloadBack => "reload back",
            Self::Prune => "prune",
            Self::List => "list",
            Self::Exec => "exec",
        }
    }
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `setup`: the directories and a bare mirror of the repository (cloned once; its URL kept in
/// step with the file).
pub fn setup(env: &DeployEnv) -> String {
    let repo = quote(&env.repo);
    format!(
        "{}mkdir -p \"$P/releases\"\n\
         if [ ! -d \"$P/repo\" ]; then\n  git clone --quiet --mirror {repo} \"$P/repo.tmp.$$\"\n  mv \"$P/repo.tmp.$$\" \"$P/repo\"\n\
         else\n  git -C \"$P/repo\" remote set-url origin {repo}\nfi\n",
        prelude(env)
    )
}

/// A hook run in `dir` (`$P`, or a release), with the release in `SYSMGR_RELEASE`.
pub fn hook(env: &DeployEnv, dir: Option<&str>, command: &str) -> String {
    let cd = match dir {
        Some(release) => format!(
            "cd \"$P/releases/\"{}\nexport SYSMGR_RELEASE=\"$PWD\"\n",
            quote(release)
        ),
        None => "cd \"$P\"\n".to_string(),
    };
    format!("{}{cd}exec /bin/sh -c {}\n", prelude(env), quote(command))
}

/// `fetch`: updates the mirror and prints two lines: the commit of `ref` and the current
/// release (empty when there is none).
pub fn fetch(env: &DeployEnv, git_ref: &str) -> String {
    let r = quote(git_ref);
    format!(
        "{}[ -d \"$P/repo\" ] || {{ printf '%s/repo is missing: run `sysmgr deploy %s setup` first\\n' \"$P\" {} >&2; exit 1; }}\n\
         git -C \"$P/repo\" fetch --quiet --prune --force origin\n\
         sha=$(git -C \"$P/repo\" rev-parse --verify --quiet {r}^{{commit}}) || {{ printf 'the ref `%s` is not a branch, tag or commit of %s\\n' {r} {} >&2; exit 1; }}\n\
         echo \"$sha\"\n\
         if [ -L \"$P/current\" ]; then basename \"$(readlink \"$P/current\")\"; else echo; fi\n",
        prelude(env),
        quote(&env.name),
        quote(&env.repo),
    )
}

/// `checkout`: the commit into `releases/NAME`, made whole in a temporary directory first.
pub fn checkout(env: &DeployEnv, release: &str, sha: &str) -> String {
    let r = quote(release);
    let sha = quote(sha);
    format!(
        "{}cd \"$P/releases\"\nrm -rf {r}.tmp\nmkdir {r}.tmp\n\
         git -C \"$P/repo\" archive --format=tar {sha} | tar -x -C {r}.tmp\n\
         echo {sha} > {r}.tmp/REVISION\nmv -T {r}.tmp {r}\n",
        prelude(env)
    )
}

/// Removes a release that never became current (a failed hook).
pub fn discard(env: &DeployEnv, release: &str) -> String {
    format!(
        "{}cd \"$P/releases\"\n[ \"$(basename \"$(readlink \"$P/current\" 2>/dev/null || echo none)\")\" = {r} ] || rm -rf {r}\n",
        prelude(env),
        r = quote(release)
    )
}

/// `switch`: `current` points at `releases/NAME`, by a rename over the old link, so every
/// reader sees the old release or the new one.
pub fn switch(env: &DeployEnv, release: &str) -> String {
    let r = quote(release);
    format!(
        "{}[ -d \"$P/releases/\"{r} ] || {{ echo \"$P/releases/\"{r}\" is missing\" >&2; exit 1; }}\n\
         ln -sfn \"releases/\"{r} \"$P/.current.$$\"\nmv -T \"$P/.current.$$\" \"$P/current\"\n",
        prelude(env)
    )
}

/// `reload`: each app file of the current release, by sysmgr on the host: `start` when the
/// host had no release before (nothing runs yet), else the rolling `reload`.
pub fn reload(env: &DeployEnv, first: bool) -> String {
    let verb = if first { "start" } else { "reload" };
    let mut s = prelude(env);
    for app in &env.apps {
        s.push_str(&format!(
            "{} {verb} \"$P/current/\"{}\n",
            path_word(&env.sysmgr),
            quote(app)
        ));
    }
    s
}

/// `prune`: keeps the newest `keep` releases and never the current one's.
pub fn prune(env: &DeployEnv) -> String {
    format!(
        "{}cd \"$P/releases\"\ncur=$(basename \"$(readlink \"$P/current\" 2>/dev/null || echo none)\")\n\
         ls -1 | grep -E '^[0-9]{{8}}T[0-9]{{6}}Z-[0-9a-f]+$' | sort -r | tail -n +{} | while read -r r; do\n  [ \"$r\" = \"$cur\" ] || rm -rf \"$r\"\ndone\n",
        prelude(env),
        env.keep.get() + 1
    )
}

/// `list`: the current release's name on the first line (empty if none), then every release,
/// oldest first.
pub fn list(env: &DeployEnv) -> String {
    format!(
        "{}[ -d \"$P/releases\" ] || {{ printf '%s/releases is missing: run `sysmgr deploy %s setup` first\\n' \"$P\" {} >&2; exit 1; }}\n\
         if [ -L \"$P/current\" ]; then basename \"$(readlink \"$P/current\")\"; else echo; fi\n\
         ls -1 \"$P/releases\" | grep -E '^[0-9]{{8}}T[0-9]{{6}}Z-[0-9a-f]+$' | sort\n",
        prelude(env),
        quote(&env.name)
    )
}

/// `exec CMD`: in the current release.
pub fn exec(env: &DeployEnv, command: &str) -> String {
    format!(
        "{}cd \"$P/current\"\nexec /bin/sh -c {}\n",
        prelude(env),
        quote(command)
    )
}

/// The release `back` steps before `current` among `releases` (sorted oldest first).
pub fn older_release<'a>(
    releases: &'a [String],
    current: &str,
    back: usize,
) -> Result<&'a str, String> {
    let Some(at) = releases.iter().position(|r| r == current) else {
        return Err(if current.is_empty() {
            "has no current release: deploy one with `update` first".into()
        } else {
            format!("its current release `{current}` is not in releases/")
        });
    };
    match at.checked_sub(back) {
        Some(i) => Ok(&releases[i]),
        None => Err(format!(
            "has {at} release(s) older than `{current}`, not {back}; see `sysmgr deploy ENV list`"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_quoted_for_any_posix_shell() {
        assert_eq!(quote("/srv/web"), "/srv/web");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote(""), "''");
        assert_eq!(quote("$(rm -rf /)"), "'$(rm -rf /)'");
    }

    #[test]
    fn release_names_sort_by_time_and_are_recognised() {
        let a = release_name("20261202T013000Z", "0123456789abcdef");
        assert_eq!(a, "20261202T013000Z-01234567");
        assert!(is_release_name(&a));
        assert!(!is_release_name("20261202T013000Z-"));
        assert!(!is_release_name("current"));
        assert!(!is_release_name("20261202T013000Z-0123.tmp"));
        assert!(release_name("20261202T013001Z", "ff") > a);
    }

    #[test]
    fn utc_stamps_are_civil_time() {
        assert_eq!(utc_stamp(0), "19700101T000000Z");
        assert_eq!(utc_stamp(951_782_400), "20000229T000000Z");
        assert_eq!(utc_stamp(1_796_175_045), "20261202T013045Z");
    }

    #[test]
    fn older_releases_are_counted_back_from_current() {
        let r: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        assert_eq!(older_release(&r, "c", 1).unwrap(), "b");
        assert_eq!(older_release(&r, "c", 2).unwrap(), "a");
        assert_eq!(
            older_release(&r, "b", 2).unwrap_err(),
            "has 1 release(s) older than `b`, not 2; see `sysmgr deploy ENV list`"
        );
        assert_eq!(
            older_release(&r, "", 1).unwrap_err(),
            "has no current release: deploy one with `update` first"
        );
    }

    /// The scripts run under a real `sh` against a real git repository: setup, fetch,
    /// checkout, switch, prune and list, on the local file system.
    #[test]
    fn the_scripts_build_releases_with_real_git_and_sh() {
        let base = std::env::temp_dir().join(format!("sysmgr-plan-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let src = base.join("src");
        std::fs::create_dir_all(&src).unwrap();
        let git = |args: &[&str]| {
            let out = std::process::Command::new("git")
                .args(["-c", "user.name=t", "-c", "user.email=t@t", "-C"])
                .arg(&src)
                .args(args)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        };
        git(&["init", "-q", "-b", "main"]);
        std::fs::write(src.join("app.toml"), "v1").unwrap();
        git(&["add", "."]);
        git(&["commit", "-q", "-m", "v1"]);
        let env = DeployEnv {
            name: "prod".into(),
            hosts: vec![],
            repo: src.display().to_string(),
            git_ref: "main".into(),
            path: base.join("dest dir"),
            ssh_options: vec![],
            hooks: Default::default(),
            serial: std::num::NonZeroU32::MIN,
            max_fail: 0,
            keep: std::num::NonZeroU32::new(2).unwrap(),
            apps: vec!["app.toml".into()],
            sysmgr: "/usr/bin/sysmgr".into(),
        };
        let sh = |script: String| {
            let out = std::process::Command::new("/bin/sh")
                .arg("-c")
                .arg(&script)
                .output()
                .unwrap();
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        };
        let (ok, _, err) = sh(fetch(&env, "main"));
        assert!(!ok);
        assert!(
            err.contains("repo is missing: run `sysmgr deploy prod setup` first"),
            "{err}"
        );
        assert!(sh(setup(&env)).0);
        assert!(sh(setup(&env)).0, "setup runs again");
        let (ok, _, err) = sh(fetch(&env, "nope"));
        assert!(!ok);
        assert!(
            err.contains("the ref `nope` is not a branch, tag or commit of"),
            "{err}"
        );
        let mut names = Vec::new();
        for (i, time) in ["20260101T000000Z", "20260101T000001Z", "20260101T000002Z"]
            .iter()
            .enumerate()
        {
            if i > 0 {
                std::fs::write(src.join("app.toml"), format!("v{}", i + 1)).unwrap();
                git(&["commit", "-q", "-am", "next"]);
            }
            let (ok, out, err) = sh(fetch(&env, "main"));
            assert!(ok, "{err}");
            let mut lines = out.lines();
            let sha = lines.next().unwrap().to_string();
            assert_eq!(sha, git(&["rev-parse", "HEAD"]));
            assert_eq!(
                lines.next().unwrap_or(""),
                names.last().map_or("", |s: &String| s)
            );
            let name = release_name(time, &sha);
            assert!(sh(checkout(&env, &name, &sha)).0);
            assert!(sh(switch(&env, &name)).0);
            assert!(sh(prune(&env)).0);
            names.push(name);
        }
        let current = env.path.join("current");
        assert_eq!(
            std::fs::read_to_string(current.join("app.toml")).unwrap(),
            "v3"
        );
        assert_eq!(
            std::fs::read_link(&current).unwrap(),
            Path::new("releases").join(&names[2])
        );
        let (ok, out, _) = sh(list(&env));
        assert!(ok);
        assert_eq!(out, format!("{}\n{}\n{}\n", names[2], names[1], names[2]));
        assert!(sh(switch(&env, &names[1])).0);
        assert_eq!(
            std::fs::read_to_string(current.join("app.toml")).unwrap(),
            "v2"
        );
        assert!(!sh(switch(&env, &names[0])).0, "pruned");
        std::fs::remove_dir_all(&base).unwrap();
    }
}
