//! Everything that speaks systemd: which manager and its directories, its unit-file syntax
//! and its D-Bus API. Nothing here knows sysmgr's unit texts: this layer imports no renderer.

pub mod dbus;
pub mod manager;
pub mod state;
pub mod syntax;

pub use manager::Manager;

/// systemd unreachable, refused or gone is [`crate::ErrorClass::Systemd`]; a call that systemd
/// answered with a failure is a failed outcome. (Declared here rather than beside the enum in
/// `dbus/`, so it reads [`dbus::DbusError::is_systemd_unavailable`], the one list of those.)
impl crate::Classify for dbus::DbusError {
    fn class(&self) -> crate::ErrorClass {
        if self.is_systemd_unavailable() {
            crate::ErrorClass::Systemd
        } else {
            crate::ErrorClass::Failed
        }
    }
}

/// Asks the manager to re-read its unit files, like `systemctl daemon-reload`.
pub async fn manager_reload(manager: Manager) -> anyhow::Result<()> {
    // Through the typed client, so "not reachable" and "permission denied" keep their exit code.
    dbus::Systemd::connect(manager).await?.reload().await?;
    Ok(())
}

/// The version of the systemd installed here (`252` for systemd 252), read from the name of
/// its shared library (`libsystemd-shared-252.so`, `libsystemd-shared-255.4-2.so`), which every
/// systemd since 231 installs; `None` when none is found. Costs a few directory reads, no
/// process.
pub fn installed_version() -> Option<u32> {
    const DIRS: &[&str] = &[
        "/usr/lib/systemd",
        "/lib/systemd",
        "/usr/lib64/systemd",
        "/usr/lib/x86_64-linux-gnu/systemd",
        "/usr/lib/aarch64-linux-gnu/systemd",
        "/usr/lib/i386-linux-gnu/systemd",
        "/usr/lib/arm-linux-gnueabihf/systemd",
        "/usr/lib/riscv64-linux-gnu/systemd",
        "/usr/lib/powerpc64le-linux-gnu/systemd",
        "/usr/lib/s390x-linux-gnu/systemd",
    ];
    DIRS.iter()
        .filter_map(|dir| std::fs::read_dir(dir).ok())
        .flat_map(|entries| entries.flatten())
        .find_map(|entry| version_of_library(&entry.file_name().to_string_lossy()))
}

/// `252` from `libsystemd-shared-252.so` (or `-252.1-1.so`).
fn version_of_library(name: &str) -> Option<u32> {
    let rest = name.strip_prefix("libsystemd-shared-")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok().filter(|_| rest.contains(".so"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_version_is_read_from_the_library_name() {
        use super::version_of_library as v;
        assert_eq!(v("libsystemd-shared-252.so"), Some(252));
        assert_eq!(v("libsystemd-shared-255.4-2.so"), Some(255));
        assert_eq!(v("libsystemd-core-252.so"), None);
        assert_eq!(v("libsystemd-shared-.so"), None);
    }
}
