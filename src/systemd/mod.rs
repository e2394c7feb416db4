//! Everything that speaks systemd: its unit-file syntax and its D-Bus API.

pub mod syntax;

use crate::render::Manager;

/// Asks the manager to re-read its unit files, like `systemctl daemon-reload`.
pub async fn manager_reload(manager: Manager) -> anyhow::Result<()> {
    let conn = match manager {
        Manager::System => zbus::Connection::system().await,
        Manager::User => zbus::Connection::session().await,
    }
    .map_err(|e| anyhow::anyhow!("cannot reach systemd over D-Bus: {e}"))?;
    conn.call_method(
        Some("org.freedesktop.systemd1"),
        "/org/freedesktop/systemd1",
        Some("org.freedesktop.systemd1.Manager"),
        "Reload",
        &(),
    )
    .await
    .map_err(|e| anyhow::anyhow!("systemd refused to reload: {e}"))?;
    Ok(())
}
