//! Why the worker keeps its own `sd_notify(3)` and `sd_listen_fds(3)` code instead of the
//! `sd-notify` and `listenfd` crates: each test shows one guarantee a crate does not give,
//! with real processes (see docs/architecture.md, "The worker's protocol code").
//!
//! - `sd-notify`'s `notify` reads `NOTIFY_SOCKET` on every call and connects to it as a
//!   path, so an abstract address (`@name`, which `sd_notify(3)` allows) is never reached
//!   and a test cannot aim it at its own socket without editing the process environment.
//! - `listenfd` removes `LISTEN_FDS` and `LISTEN_PID` as it reads them (not thread-safe)
//!   and knows no names; `sd-notify`'s `listen_fds_with_names` reads the live environment
//!   on every call, so whatever edited it since start decides what it finds (here: an
//!   error, one name left for no fd). A
//!   [`WorkerEnv`] read once at start keeps the sockets and their names.

use std::io;
use std::net::TcpListener;
use std::os::fd::AsFd;
use std::os::linux::net::SocketAddrExt as _;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

use sysmgr_worker::{Listeners, Notifier, WorkerEnv};

use crate::support::{assert_child_passed, in_child, run_child};

#[test]
fn an_abstract_notify_socket_is_reached_by_the_notifier_and_not_by_sd_notify() {
    let name = format!("sysmgr-worker-third-party-{}", std::process::id());
    let rx =
        UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap()).unwrap();
    rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let out = run_child(
        "third_party::child_notifies_an_abstract_socket",
        &[],
        &[("NOTIFY_SOCKET", format!("@{name}"))],
    );
    assert_child_passed(&out);
    let mut buf = [0u8; 64];
    let n = rx.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"READY=1", "the Notifier's datagram");
    rx.set_nonblocking(true).unwrap();
    assert_eq!(
        rx.recv(&mut buf).map_err(|e| e.kind()),
        Err(io::ErrorKind::WouldBlock),
        "sd-notify's datagram never arrives"
    );
}

#[test]
#[ignore = "runs as the child of an_abstract_notify_socket_is_reached_by_the_notifier_and_not_by_sd_notify"]
fn child_notifies_an_abstract_socket() {
    if !in_child() {
        return;
    }
    // sd-notify connects to `@name` as a file path relative to the working directory.
    let err = sd_notify::notify(&[sd_notify::NotifyState::Ready]).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
    let env = WorkerEnv::from_process().unwrap();
    Notifier::from_env(&env).unwrap().ready().unwrap();
}

#[test]
fn the_snapshot_keeps_named_sockets_that_listenfd_unsets_and_sd_notify_then_misses() {
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    let out = run_child(
        "third_party::child_takes_a_socket_after_listenfd",
        &[tcp.as_fd()],
        &[
            ("LISTEN_FDS", "1".into()),
            ("LISTEN_FDNAMES", "http".into()),
            ("EXPECT_TCP", tcp.local_addr().unwrap().to_string()),
        ],
    );
    assert_child_passed(&out);
}

#[test]
#[ignore = "runs as the child of the_snapshot_keeps_named_sockets_that_listenfd_unsets_and_sd_notify_then_misses"]
fn child_takes_a_socket_after_listenfd() {
    if !in_child() {
        return;
    }
    let env = WorkerEnv::from_process().unwrap();
    assert_eq!(sd_notify::listen_fds_with_names().unwrap().len(), 1);
    // listenfd counts the fds (by index: it has no names) and edits the environment.
    let listenfd = listenfd::ListenFd::from_env();
    assert_eq!(listenfd.len(), 1);
    assert_eq!(std::env::var_os("LISTEN_FDS"), None);
    assert_eq!(std::env::var_os("LISTEN_PID"), None);
    // sd-notify reads the environment as it is now: no fds, and (listenfd left
    // `LISTEN_FDNAMES`) one name too many, an error.
    assert_eq!(sd_notify::listen_fds().unwrap().len(), 0);
    let err = sd_notify::listen_fds_with_names().err().unwrap();
    assert_eq!(err.to_string(), "invalid LISTEN_FDNAMES");
    // The snapshot taken at start still has the socket, by name.
    let mut listeners = Listeners::from_env(&env).unwrap();
    let http = listeners.take("http").unwrap();
    assert_eq!(
        http.local_addr().unwrap(),
        std::env::var("EXPECT_TCP").unwrap()
    );
}
