//! `sysmgr check FILE...`: validate app files and print the settings they resolve to.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::generate::Input;
use crate::config::{hardening, keys, AppSpec};
use crate::render::{self, Flavor};
use crate::systemd::Manager;

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The app files to check.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Merge `[env_PROFILE]` over `[env]` before printing.
    #[arg(long, value_name = "PROFILE")]
    pub env: Option<String>,
    /// For PM2 ecosystem files: the socket of apps that declare no port.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
}

pub fn run(args: &CheckArgs, manager: Manager) -> anyhow::Result<ExitCode> {
    let opts = super::generate::parse_options(args.env.as_deref(), manager);
    let inputs: Vec<Input> = args.files.iter().cloned().map(Input::File).collect();
    let specs = super::generate::load_all(
        &inputs,
        &opts,
        args.listen.as_deref(),
        "fix them and check again",
        Some(crate::host::Checks {
            manager,
            ports: crate::host::Ports::Error,
        }),
    )?;
    // What `generate` would refuse for every app (a path of sysmgr's own), before any app
    // is said to be ok.
    let cores = super::generate::usable_cores();
    super::generate::render_all(&specs, manager, Flavor::Generate)?;
    for spec in &specs {
        print!("{}", describe(spec, cores));
        print!("{}", exposure_lines(spec, manager));
    }
    Ok(ExitCode::SUCCESS)
}

/// The resolved settings of one app, each with the unit setting it becomes: the rows of the
/// key table ([`keys::KEYS`]), which the renderer fills the units from.
pub(crate) fn describe(spec: &AppSpec, cores: std::num::NonZeroUsize) -> String {
    let n = spec.instances.resolve(cores);
    let rows: Vec<(&str, String, String)> = keys::KEYS
        .iter()
        .flat_map(|key| {
            key.check_rows(spec, n)
                .into_iter()
                .map(|(value, unit)| (key.name, value, unit))
        })
        .collect();
    let name = spec.name.as_str();
    let mut out = format!("{} (from {}", name, spec.source.display());
    if let Some(p) = &spec.profile {
        let _ = write!(out, " with --env {p}");
    }
    out.push_str("): ok\n");
    let width = rows.iter().map(|(k, _, _)| k.len()).max().unwrap_or(0);
    let vwidth = rows
        .iter()
        .map(|(_, v, _)| v.chars().count())
        .max()
        .unwrap_or(0)
        .min(48);
    for (k, v, unit) in rows {
        let line = format!("  {k:<width$}  {v:<vwidth$}  {unit}");
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The exposure score systemd would give an instance, and what each setting of the hardening
/// profile the app does not get costs.
fn exposure_lines(spec: &AppSpec, manager: Manager) -> String {
    let mut out = match exposure(spec, manager) {
        Ok(score) => format!(
            "  exposure  {score} (`systemd-analyze security --offline=yes` of an instance; 0 is locked down, 10 unsafe)\n"
        ),
        Err(why) => format!("  exposure  unavailable: {why}\n"),
    };
    for (setting, cost) in hardening::opened(spec) {
        let _ = writeln!(out, "  opened    {setting}: {cost}");
    }
    out
}

/// Runs `systemd-analyze security --offline=yes` on the rendered service template, in a
/// directory of its own that is removed afterwards; the score as systemd prints it
/// (`1.8 OK`), or why there is none.
fn exposure(spec: &AppSpec, manager: Manager) -> Result<String, String> {
    let rendered = render::render(spec, std::num::NonZeroU32::MIN, manager, Flavor::Generate)
        .map_err(|e| e.to_string())?;
    let dir =
        std::env::temp_dir().join(format!("sysmgr-check-{}-{}", std::process::id(), spec.name));
    let written = (|| -> std::io::Result<()> {
        std::fs::create_dir_all(&dir)?;
        for f in &rendered.files {
            std::fs::write(dir.join(&f.name), &f.contents)?;
        }
        Ok(())
    })();
    let result = written
        .map_err(|e| format!("cannot write the units to `{}`: {e}", dir.display()))
        .and_then(|()| {
            let template = dir.join(format!("{}@.service", spec.name));
            let mut cmd = std::process::Command::new("systemd-analyze");
            cmd.args(["security", "--offline=yes", "--no-pager"]);
            if manager == Manager::User {
                cmd.arg("--user");
            }
            let output = cmd.arg(&template).output().map_err(|e| {
                format!("cannot run `systemd-analyze` ({e}); it comes with systemd 250 or newer")
            })?;
            let stdout = String::from_utf8_lossy(&output.stdout);
            parse_exposure(&stdout).ok_or_else(|| {
                let stderr = String::from_utf8_lossy(&output.stderr);
                if stderr.contains("--offline") {
                    "this `systemd-analyze` has no `--offline` (systemd 250 or newer has)".into()
                } else {
                    let first = stderr.lines().next().unwrap_or("no score printed");
                    format!("`systemd-analyze security --offline=yes` failed: {first}")
                }
            })
        });
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// The score of `systemd-analyze security`'s last line: `→ Overall exposure level for
/// hello@i.service: 1.8 OK 🙂` gives `1.8 OK`.
pub(crate) fn parse_exposure(stdout: &str) -> Option<String> {
    let line = stdout
        .lines()
        .find(|l| l.contains("Overall exposure level for"))?;
    let (_, after) = line.rsplit_once(": ")?;
    let mut words = after.split_whitespace();
    let score: f32 = words.next()?.parse().ok()?;
    let verdict = words.next().unwrap_or("");
    Some(format!("{score:.1} {verdict}").trim_end().to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_score_is_read_from_the_last_line() {
        let out = "✓ X\n\n→ Overall exposure level for hello@i.service: 1.8 OK 🙂\n";
        assert_eq!(super::parse_exposure(out).as_deref(), Some("1.8 OK"));
        assert_eq!(super::parse_exposure("nothing"), None);
    }
}
