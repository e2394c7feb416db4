//! Everything that speaks systemd: which manager and its directories, its unit-file syntax
//! and its D-Bus API. Nothing here knows sysmgr's unit texts: this layer imports no renderer.

pub mod dbus;
pub mod manager;
pub mod state;
pub mod syntax;

pub use manager::Manager;

/// Asks the manager to re-read its unit files, like `systemctl daemon-reload`.
pub async fn manager_reload(manager: Manager) -> anyhow::Result<()> {
    // Through the typed client, so "not reachable" and "permission denied" keep their exit code.
    dbus::Systemd::connect(manager).await?.reload().await?;
    Ok(())
}
