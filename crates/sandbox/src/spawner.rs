//! Starts the sandboxes' `unshare` processes from one thread that lives as long as the
//! process.
//!
//! `unshare` asks for SIGKILL when its parent dies (`PR_SET_PDEATHSIG`), so that a test run
//! killed before its destructors run (Ctrl-C, a timeout's SIGKILL) takes its sandboxes with
//! it. The kernel sends that signal when the *thread* that forked the child exits, not the
//! process: a sandbox booted in a short-lived thread and used elsewhere would die with the
//! thread. Forking from this one long-lived thread ties each sandbox to the process.

use std::io;
use std::process::{Child, Command};
use std::sync::mpsc::{self, Sender};
use std::sync::{Mutex, OnceLock};

type Request = (Command, Sender<io::Result<Child>>);

/// Spawns `cmd` on the spawner thread and returns the child.
pub(crate) fn spawn(cmd: Command) -> io::Result<Child> {
    static SPAWNER: OnceLock<Mutex<Sender<Request>>> = OnceLock::new();
    let requests = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Request>();
        std::thread::Builder::new()
            .name("sysmgr-sandbox-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("the sandbox spawner thread starts");
        Mutex::new(tx)
    });
    let (reply, answer) = mpsc::channel();
    let sent = requests
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .send((cmd, reply));
    let lost = || io::Error::other("the sandbox spawner thread is gone (a bug in sysmgr-sandbox)");
    sent.map_err(|_| lost())?;
    answer.recv().map_err(|_| lost())?
}
