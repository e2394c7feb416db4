//! Test support: the built binaries, temporary app files, and running `sysmgr`.

#![allow(dead_code)] // Each test module uses its own part of this.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `sysmgr` binary cargo built for these tests.
pub fn sysmgr_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_sysmgr"))
}

/// A `sysmgr` command with a clean environment for the parts that matter.
pub fn sysmgr() -> Command {
    let mut cmd = Command::new(sysmgr_bin());
    cmd.env_remove("SYSMGR_BLESS");
    cmd
}

/// The result of running a command, with text helpers.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

/// Runs `sysmgr ARGS` in `dir`.
pub fn run_in(dir: &Path, args: &[&str]) -> Run {
    sysmgr()
        .args(args)
        .current_dir(dir)
        .output()
        .expect("sysmgr runs")
        .into()
}

/// Writes `text` to `dir/name` and returns the path.
pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// The files and links below `dir`, relative, sorted, links shown as `path -> target`.
pub fn tree(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let path = e.path();
            let rel = path.strip_prefix(base).unwrap().display().to_string();
            let ft = e.file_type().unwrap();
            if ft.is_symlink() {
                out.push(format!(
                    "{rel} -> {}",
                    std::fs::read_link(&path).unwrap().display()
                ));
            } else if ft.is_dir() {
                walk(base, &path, out);
            } else {
                out.push(rel);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}
