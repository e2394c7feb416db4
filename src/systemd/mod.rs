//! Everything that speaks systemd: its unit-file syntax and its D-Bus API.

pub mod dbus;
pub mod syntax;

use crate::render::Manager;

/// Asks the manager to re-read its unit files, like `systemctl daemon-reload`.
pub async fn manager_reload(manager: Manager) -> anyhow::Result<()> {
    // Through the typed client, so "not reachable" and "permission denied" keep their exit code.
    dbus::Systemd::connect(manager).await?.reload().await?;
    Ok(())
}
