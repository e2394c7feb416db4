//! `sysmgr logs NAME [--err | --out] [-f] [-n N] [--since TIME] [--instance N] [--json]`: the
//! app's journal, every instance merged in time order, each line tagged with its instance
//! number (`TIME NAME[N]: MESSAGE`). It runs `journalctl -o json` (the journal has no D-Bus
//! API, and journalctl already selects, merges and follows well) and formats its entries
//! ([`crate::journal::output`]). `--err` and `--out` tell stderr from stdout by priority:
//! `sysmgr exec` stores each instance's stderr at `err` and its stdout at `info`.

use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Command, ExitCode, Stdio};

use anyhow::Context as _;
use clap::Args;

use super::lifecycle;
use crate::journal::output::{self, Line, Query, Stream};
use crate::systemd::Manager;

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The app.
    #[arg(value_name = "NAME")]
    pub name: String,
    /// Only what the instances wrote to stderr (stored at priority `err`), like `pm2 logs --err`.
    #[arg(long, conflicts_with = "out")]
    pub err: bool,
    /// Only what the instances wrote to stdout, like `pm2 logs --out`.
    #[arg(long)]
    pub out: bool,
    /// How many of the latest lines to show.
    #[arg(long, short = 'n', value_name = "N", default_value_t = 50)]
    pub lines: usize,
    /// Keep printing new lines as they are logged.
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// Only lines from TIME on, in journalctl's syntax (`2024-05-01 10:00`, `1h ago`, `today`).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Only instance N.
    #[arg(long, value_name = "N")]
    pub instance: Option<u32>,
    /// One JSON object per line: time, realtime_usec, app, instance, stream, priority, pid,
    /// message.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &LogsArgs, manager: Manager) -> anyhow::Result<ExitCode> {
    let name = lifecycle::app_name(&args.name)?;
    let dir = crate::controller::unit_dir(manager)?;
    crate::controller::find(&dir, manager, &name)?;
    let query = Query {
        app: name.clone(),
        instance: args.instance,
        stream: match (args.err, args.out) {
            (true, _) => Stream::Err,
            (_, true) => Stream::Out,
            _ => Stream::All,
        },
        lines: args.lines,
        follow: args.follow,
        since: args.since.clone(),
    };
    let mut child = Command::new("journalctl")
        .args(output::journalctl_args(&query, manager))
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot run `journalctl`; is systemd's journal installed?")?;
    let reader = BufReader::new(child.stdout.take().expect("stdout is piped"));
    let mut stdout = std::io::stdout().lock();
    for text in reader.lines() {
        let text = text.context("cannot read `journalctl`'s output")?;
        let Some(line) = Line::parse(&name, &text) else {
            continue;
        };
        let printed = if args.json {
            line.to_json(&name).to_string()
        } else {
            line.format(&name)
        };
        // Each line at once, so `-f` shows it as it comes.
        let written = writeln!(stdout, "{printed}").and_then(|()| stdout.flush());
        if let Err(e) = written {
            // A reader that went away (`sysmgr logs web | head`) ends the command quietly.
            let _ = child.kill();
            let _ = child.wait();
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                return Ok(ExitCode::SUCCESS);
            }
            return Err(anyhow::Error::new(e).context("cannot write to stdout"));
        }
    }
    let status = child.wait().context("cannot wait for `journalctl`")?;
    if !status.success() {
        // journalctl said why on stderr, which is ours.
        anyhow::bail!("`journalctl` failed ({status})");
    }
    Ok(ExitCode::SUCCESS)
}
