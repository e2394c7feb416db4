//! `sysmgr completions SHELL` and the hidden `sysmgr man [DIR]`: shell completions and man
//! pages made from the clap definition that parses the command line, so they list exactly the
//! commands and options this binary accepts and cannot drift from it.
//!
//! The .deb and .rpm ship their output (`scripts/package` runs the binary it just built);
//! completions are also a public command because people load them straight from the binary
//! they have (`source <(sysmgr completions bash)`). The generator's page, `sysmgr-generator(8)`,
//! is written by hand in `packaging/`: it has no command line for clap to describe.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, CommandFactory as _};
use clap_complete::Shell;

/// The name the completions and pages are written for: the installed binary's.
const BIN: &str = "sysmgr";

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for; the script goes to stdout.
    #[arg(value_enum)]
    pub shell: Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Where to write the pages (created if missing).
    #[arg(default_value = ".")]
    pub dir: PathBuf,
}

/// One man page: its file name (`sysmgr-reload.1`) and its roff text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub file_name: String,
    pub roff: String,
}

/// Prints the completion script for `args.shell`.
pub fn completions(args: &CompletionsArgs) -> anyhow::Result<ExitCode> {
    let mut out = Vec::new();
    clap_complete::generate(args.shell, &mut super::Cli::command(), BIN, &mut out);
    std::io::stdout()
        .write_all(&out)
        .context("cannot write the completion script to stdout")?;
    Ok(ExitCode::SUCCESS)
}

/// Writes every page into `args.dir` and prints the paths written, one a line.
pub fn man(args: &ManArgs) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("cannot create `{}`", args.dir.display()))?;
    for page in pages()? {
        let path = args.dir.join(&page.file_name);
        write_file(&path, page.roff.as_bytes())
            .with_context(|| format!("cannot write `{}`", path.display()))?;
        println!("{}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes through a temporary file and a rename, so a page is never seen half written.
fn write_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".sysmgr-tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// `sysmgr.1` and one page per visible subcommand (`sysmgr-generate.1`, ...), each ending in a
/// SEE ALSO section that links the pages together. Hidden commands (this one) get no page.
pub fn pages() -> anyhow::Result<Vec<Page>> {
    // Like clap_mangen::generate_to: without clap's `help` subcommand, and built so that each
    // subcommand knows its display name (`sysmgr-generate`) and the global options.
    let mut root = super::Cli::command().disable_help_subcommand(true);
    root.build();
    let subcommands: Vec<&clap::Command> = root
        .get_subcommands()
        .filter(|c| !c.is_hide_set())
        .collect();

    let mut see_also: Vec<String> = subcommands.iter().map(|c| page_ref(c, "1")).collect();
    see_also.extend(
        [
            "sysmgr-generator(8)",
            "systemctl(1)",
            "systemd.service(5)",
            "systemd.socket(5)",
        ]
        .map(String::from),
    );
    let mut pages = vec![render(&root, &see_also)?];
    for sub in subcommands {
        pages.push(render(sub, &[page_ref(&root, "1")])?);
    }
    Ok(pages)
}

/// `name(section)` for a command's page.
fn page_ref(cmd: &clap::Command, section: &str) -> String {
    format!("{}({section})", display_name(cmd))
}

fn display_name(cmd: &clap::Command) -> &str {
    cmd.get_display_name().unwrap_or_else(|| cmd.get_name())
}

/// One page: clap_mangen's sections, then SEE ALSO.
fn render(cmd: &clap::Command, see_also: &[String]) -> anyhow::Result<Page> {
    let man = clap_mangen::Man::new(cmd.clone()).manual("sysmgr");
    let file_name = man.get_filename();
    let mut roff = Vec::new();
    man.render(&mut roff)
        .with_context(|| format!("cannot render the man page of `{}`", display_name(cmd)))?;
    let mut roff = String::from_utf8(roff).context("clap_mangen wrote invalid UTF-8; a bug")?;
    roff.push_str(".SH \"SEE ALSO\"\n");
    let last = see_also.len().saturating_sub(1);
    for (i, reference) in see_also.iter().enumerate() {
        // `name(section)` becomes `.BR name (section),`: the name bold, the rest roman.
        let (name, section) = reference
            .split_once('(')
            .context("a SEE ALSO entry without a section; a bug")?;
        let comma = if i == last { "" } else { "," };
        roff.push_str(&format!(
            ".BR {} ({}{comma}\n",
            name.replace('-', "\\-"),
            section
        ));
    }
    Ok(Page { file_name, roff })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_page_per_visible_subcommand_and_none_for_hidden_ones() {
        let pages = pages().unwrap();
        let names: Vec<&str> = pages.iter().map(|p| p.file_name.as_str()).collect();
        assert_eq!(names[0], "sysmgr.1");
        let cmd = super::super::Cli::command();
        let visible: Vec<String> = cmd
            .get_subcommands()
            .filter(|c| !c.is_hide_set())
            .map(|c| format!("sysmgr-{}.1", c.get_name()))
            .collect();
        assert_eq!(
            names[1..],
            visible.iter().map(String::as_str).collect::<Vec<_>>()
        );
        assert!(names.contains(&"sysmgr-reload.1"));
        assert!(names.contains(&"sysmgr-completions.1"));
        assert!(!names.contains(&"sysmgr-man.1"), "{names:?}");
        assert!(!names.contains(&"sysmgr-help.1"), "{names:?}");
    }

    #[test]
    fn pages_link_to_each_other() {
        let pages = pages().unwrap();
        let root = &pages[0].roff;
        assert!(root.contains("\n.TH sysmgr 1 "), "{root}");
        assert!(root.contains(".BR sysmgr\\-reload (1),\n"), "{root}");
        assert!(root.ends_with(".BR systemd.socket (5)\n"), "{root}");
        let reload = pages
            .iter()
            .find(|p| p.file_name == "sysmgr-reload.1")
            .unwrap();
        assert!(
            reload.roff.contains(".TH sysmgr-reload 1"),
            "{}",
            reload.roff
        );
        assert!(reload.roff.ends_with(".SH \"SEE ALSO\"\n.BR sysmgr (1)\n"));
        // The global option is documented on every page.
        assert!(reload.roff.contains("\\-\\-user"), "{}", reload.roff);
    }
}
