//! Which service manager sysmgr talks to, and where that manager keeps things.
//!
//! The lowest layer's names: the renderer needs the default target, the writer the unit
//! directory, the D-Bus client the bus, the lock the runtime directory. They live here, below
//! all of them, so that nothing in `systemd/` has to import from the renderer. The user's
//! config and runtime directories (with their XDG fallbacks) are read in this one place.

use std::path::PathBuf;

/// Which service manager the units are for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Manager {
    /// The system manager (`/etc/systemd/system`).
    System,
    /// A user manager (`~/.config/systemd/user`).
    User,
}

impl Manager {
    /// The target a booted system reaches, which `NAME.target` hooks into.
    pub fn default_target(self) -> &'static str {
        match self {
            Self::System => "multi-user.target",
            Self::User => "default.target",
        }
    }

    /// Where administrators' units live: `/etc/systemd/system`, or
    /// `$XDG_CONFIG_HOME/systemd/user` (`~/.config/systemd/user`). `None` for the user
    /// manager when neither `XDG_CONFIG_HOME` nor `HOME` is set.
    pub fn unit_dir(self) -> Option<PathBuf> {
        match self {
            Self::System => Some(PathBuf::from("/etc/systemd/system")),
            Self::User => user_config_dir().map(|c| c.join("systemd/user")),
        }
    }

    /// Where systemd's generators write for this manager (the "normal" directory), if known.
    pub fn generator_dir(self) -> Option<PathBuf> {
        match self {
            Self::System => Some(PathBuf::from("/run/systemd/generator")),
            Self::User => user_runtime_dir().map(|d| d.join("systemd/generator")),
        }
    }
}

/// `$XDG_CONFIG_HOME`, or `~/.config` when it is unset or empty; `None` without `HOME`.
pub fn user_config_dir() -> Option<PathBuf> {
    match std::env::var_os("XDG_CONFIG_HOME") {
        Some(dir) if !dir.is_empty() => Some(PathBuf::from(dir)),
        _ => std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config")),
    }
}

impl Manager {
    /// The manager's runtime directory, what `%t` stands for in its units: `/run`, or
    /// `$XDG_RUNTIME_DIR` for the user manager (`None` when that is unset or empty).
    pub fn runtime_dir(self) -> Option<PathBuf> {
        match self {
            Self::System => Some(PathBuf::from("/run")),
            Self::User => user_runtime_dir(),
        }
    }
}

/// `$XDG_RUNTIME_DIR`, where the user manager keeps its state; `None` when unset or empty.
pub fn user_runtime_dir() -> Option<PathBuf> {
    std::env::var_os("XDG_RUNTIME_DIR")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
}
