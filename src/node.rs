//! sysmgr's Node bridge on this machine: the script (`node/bridge.cjs`, embedded in the binary
//! so a binary built with cargo has it too), where the units find it, and putting it there.
//!
//! The packages install it at `/usr/lib/sysmgr/node/bridge.cjs`. Where that file is missing or
//! holds another version (a binary built with cargo, or a newer one than the package), sysmgr
//! writes its own copy under a name made from its content, in `/var/lib/sysmgr/node` (or the
//! user's data directory for `--user`): instances already running keep the file they were
//! started with, and two versions of sysmgr never overwrite each other's bridge.

use std::path::{Path, PathBuf};

use crate::config::BridgePaths;
use crate::systemd::Manager;

/// The bridge script of this sysmgr.
pub const SCRIPT: &str = include_str!("../node/bridge.cjs");

/// Where the packages install the bridge.
pub const PACKAGED: &str = "/usr/lib/sysmgr/node/bridge.cjs";

/// Where units of `manager` find sysmgr and the bridge. Reads the filesystem, writes nothing.
pub fn paths(manager: Manager) -> BridgePaths {
    let sysmgr = std::env::current_exe()
        .and_then(|p| p.canonicalize())
        .unwrap_or_else(|_| PathBuf::from("/usr/bin/sysmgr"));
    let packaged = Path::new(PACKAGED);
    let script = if holds_this_script(packaged) {
        packaged.to_path_buf()
    } else {
        own_copy(manager)
    };
    BridgePaths { sysmgr, script }
}

/// Writes the bridge to `paths.script` unless it is there already (atomically: a unit that
/// starts meanwhile sees the whole file or none). Returns whether it wrote.
pub fn install(paths: &BridgePaths) -> std::io::Result<bool> {
    let path = &paths.script;
    if holds_this_script(path) {
        return Ok(false);
    }
    std::fs::create_dir_all(path.parent().unwrap_or(Path::new("/")))?;
    crate::install::write_atomically(path, SCRIPT.as_bytes())?;
    // Readable by every account an instance may run as (`user`, DynamicUser).
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))?;
    Ok(true)
}

fn holds_this_script(path: &Path) -> bool {
    std::fs::read(path).is_ok_and(|b| b == SCRIPT.as_bytes())
}

/// sysmgr's own copy, named by its content.
fn own_copy(manager: Manager) -> PathBuf {
    let dir = match manager {
        Manager::System => PathBuf::from("/var/lib/sysmgr/node"),
        Manager::User => std::env::var_os("XDG_DATA_HOME")
            .filter(|d| Path::new(d).is_absolute())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".local/share")))
            .unwrap_or_else(|| PathBuf::from("/tmp"))
            .join("sysmgr/node"),
    };
    dir.join(format!("bridge-{:016x}.cjs", fnv1a(SCRIPT.as_bytes())))
}

/// FNV-1a, 64 bits: a stable name for a content, not a security measure.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_own_copy_is_named_by_its_content() {
        let name = own_copy(Manager::System);
        assert!(name.starts_with("/var/lib/sysmgr/node"));
        assert_eq!(name, own_copy(Manager::System));
        assert_ne!(fnv1a(b"a"), fnv1a(b"b"));
    }

    #[test]
    fn install_writes_once_and_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let paths = BridgePaths {
            sysmgr: PathBuf::from("/usr/bin/sysmgr"),
            script: dir.path().join("node/bridge.cjs"),
        };
        assert!(install(&paths).unwrap());
        assert!(!install(&paths).unwrap());
        assert_eq!(std::fs::read_to_string(&paths.script).unwrap(), SCRIPT);
        assert_eq!(
            std::fs::read_dir(dir.path().join("node")).unwrap().count(),
            1
        );
    }
}
