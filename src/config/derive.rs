//! Stage 3 of reading app.toml: what follows from validated values.
//!
//! Kept apart from validation so that each rule is stated once: the `--env` profile merged
//! over `[env]`, the instance count that `instances` means on a given machine, and how an
//! instance is started (directly, or Node.js through sysmgr's bridge).

use std::num::{NonZeroU32, NonZeroUsize};
use std::path::{Path, PathBuf};

use super::types::{Instances, MAX_INSTANCES};

/// `[env]` with the selected `[env_PROFILE]` merged over it: a variable of the profile
/// replaces the one of the same name in place, new ones follow in declaration order.
pub fn merge_env(
    mut env: Vec<(String, String)>,
    profile: Vec<(String, String)>,
) -> Vec<(String, String)> {
    for (k, v) in profile {
        match env.iter_mut().find(|(name, _)| *name == k) {
            Some(slot) => slot.1 = v,
            None => env.push((k, v)),
        }
    }
    env
}

impl Instances {
    /// The instance count on a machine with `usable` cores.
    pub fn resolve(self, usable: NonZeroUsize) -> NonZeroU32 {
        let cores = u32::try_from(usable.get())
            .unwrap_or(MAX_INSTANCES)
            .min(MAX_INSTANCES);
        match self {
            Self::Count(n) => n,
            Self::PerCore => NonZeroU32::new(cores).unwrap_or(NonZeroU32::MIN),
            Self::PerCoreMinusOne => NonZeroU32::new(cores - 1).unwrap_or(NonZeroU32::MIN),
        }
    }
}

/// How the instances of an app are started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Runtime {
    /// The program speaks systemd's protocols itself. It is started through `sysmgr exec` all
    /// the same, which only gives its stdout and stderr journal streams of their own
    /// priorities (see `src/cli/exec.rs`) and then becomes the program.
    Direct {
        /// The sysmgr binary, whose `exec` starts each instance.
        sysmgr: PathBuf,
    },
    /// The program is Node.js: `sysmgr exec` starts it with sysmgr's bridge preloaded, so an
    /// app written for PM2 runs unchanged (see `node/bridge.cjs`).
    Node(BridgePaths),
}

/// Where sysmgr and its Node bridge are on this machine: inputs of rendering, which stays pure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgePaths {
    /// The sysmgr binary, whose `exec` starts each instance.
    pub sysmgr: PathBuf,
    /// The bridge script Node preloads.
    pub script: PathBuf,
}

impl Default for BridgePaths {
    /// Where the packages install them.
    fn default() -> Self {
        Self {
            sysmgr: PathBuf::from("/usr/bin/sysmgr"),
            script: PathBuf::from("/usr/lib/sysmgr/node/bridge.cjs"),
        }
    }
}

/// Programs that are Node.js, by the name they are run as.
const NODE_PROGRAMS: &[&str] = &["node", "nodejs"];

/// Whether `file_name` (a program's last path component) is Node.js: the one rule both for
/// rendering and for `sysmgr exec`, which prepares the bridge's notify socket only for Node.
pub fn is_node_program(file_name: &str) -> bool {
    NODE_PROGRAMS.contains(&file_name)
}

impl Runtime {
    /// The runtime of `command` (its program is `command[0]`, a path or a name in `PATH`).
    pub fn of(command: &[String], bridge: &BridgePaths) -> Self {
        let program = command
            .first()
            .and_then(|p| Path::new(p).file_name())
            .and_then(|n| n.to_str());
        if program.is_some_and(is_node_program) {
            Self::Node(bridge.clone())
        } else {
            Self::Direct {
                sysmgr: bridge.sysmgr.clone(),
            }
        }
    }

    /// The sysmgr binary that units start their program through.
    pub fn sysmgr(&self) -> &Path {
        match self {
            Self::Direct { sysmgr } => sysmgr,
            Self::Node(bridge) => &bridge.sysmgr,
        }
    }

    /// Whether instances run through the Node bridge.
    pub fn is_node(&self) -> bool {
        matches!(self, Self::Node(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_profile_replaces_in_place_and_appends_new_variables() {
        let v = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(
            merge_env(v(&[("A", "1"), ("B", "2")]), v(&[("C", "3"), ("A", "9")])),
            v(&[("A", "9"), ("B", "2"), ("C", "3")])
        );
    }

    #[test]
    fn instances_resolve_against_usable_cores() {
        let cores = |n| NonZeroUsize::new(n).unwrap();
        assert_eq!(Instances::PerCore.resolve(cores(8)).get(), 8);
        assert_eq!(Instances::PerCoreMinusOne.resolve(cores(8)).get(), 7);
        assert_eq!(Instances::PerCoreMinusOne.resolve(cores(1)).get(), 1);
        assert_eq!(Instances::from_int(3).unwrap().resolve(cores(1)).get(), 3);
        assert!(Instances::from_int(-2).is_err());
        assert!(Instances::from_int(5000).is_err());
    }
}
