//! Socket activation with real fds: each parent test passes sockets as fd 3, 4, ... to a child
//! process (this test binary again, running one `#[ignore]`d `child_*` test) exactly as systemd
//! does, and checks the child's verdict. The fds cannot be tested in this process: its fd 3 is
//! whatever the test harness opened, and a listener taken from the environment is owned once per
//! process.

use std::net::TcpListener;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::os::unix::net::{UnixDatagram, UnixListener};
use std::time::Duration;

use sysmgr_worker::{Cause, ListenError, Listener, Listeners, Origin, Shutdown, WorkerEnv};

use crate::support::{assert_child_passed, in_child, run_child};

fn fd_flags(fd: RawFd) -> (bool, bool) {
    let fd_flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    let fl = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    assert!(fd_flags >= 0 && fl >= 0, "fd {fd} is not open");
    (fd_flags & libc::FD_CLOEXEC != 0, fl & libc::O_NONBLOCK != 0)
}

#[test]
fn activated_sockets_are_taken_by_name_and_index() {
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("admin.sock");
    let unix = UnixListener::bind(&path).unwrap();
    let out = run_child(
        "activation::child_takes_sockets_by_name_and_index",
        &[tcp.as_fd(), unix.as_fd()],
        &[
            ("LISTEN_FDS", "2".into()),
            ("LISTEN_FDNAMES", "http:admin".into()),
            ("EXPECT_TCP", tcp.local_addr().unwrap().to_string()),
            ("EXPECT_UNIX", path.display().to_string()),
        ],
    );
    assert_child_passed(&out);
}

#[test]
#[ignore = "runs as the child of activated_sockets_are_taken_by_name_and_index"]
fn child_takes_sockets_by_name_and_index() {
    if !in_child() {
        return;
    }
    let env = WorkerEnv::from_process().unwrap();
    assert!(env.is_socket_activated());
    // systemd hands sockets over blocking unless NonBlocking=yes, and without FD_CLOEXEC.
    assert_eq!(fd_flags(3), (false, false));
    let mut listeners = Listeners::from_env(&env).unwrap();
    assert_eq!(listeners.origin(), Origin::Activated);
    assert_eq!(listeners.names().collect::<Vec<_>>(), ["http", "admin"]);
    // Children of the worker must not inherit the sockets.
    assert_eq!(fd_flags(3), (true, false));
    assert_eq!(fd_flags(4), (true, false));
    let err = Listeners::from_env(&env).unwrap_err();
    assert!(matches!(err, ListenError::AlreadyTaken), "{err}");

    let admin = listeners.take("admin").unwrap();
    assert_eq!(admin.name(), "admin");
    assert!(matches!(admin, Listener::Unix { .. }));
    assert_eq!(
        admin.local_addr().unwrap(),
        std::env::var("EXPECT_UNIX").unwrap()
    );
    assert_eq!(admin.as_fd().as_raw_fd(), 4);
    let http = listeners.take_index(0).unwrap();
    assert_eq!(
        http.local_addr().unwrap(),
        std::env::var("EXPECT_TCP").unwrap()
    );
    assert!(!http.is_nonblocking().unwrap());
    assert!(matches!(
        listeners.take_index(0),
        Err(ListenError::NoSuchIndex { index: 0, count: 2 })
    ));

    // The tokio conversion sets O_NONBLOCK, and the socket then really serves.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let addr = http.tcp_addr().unwrap();
        let http = http.into_tokio().unwrap();
        assert_eq!(fd_flags(3), (true, true));
        let admin = admin.into_tokio().unwrap();
        assert_eq!(fd_flags(4), (true, true));
        let client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let accepted = http.accept().await.unwrap();
        assert!(matches!(accepted, sysmgr_worker::TokioStream::Tcp(_)));
        drop(client);
        let path = std::env::var("EXPECT_UNIX").unwrap();
        let _client = tokio::net::UnixStream::connect(&path).await.unwrap();
        let accepted = admin.accept().await.unwrap();
        assert!(matches!(accepted, sysmgr_worker::TokioStream::Unix(_)));
    });
}

#[test]
fn inherited_listen_vars_are_left_alone() {
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    // LISTEN_PID names this (the parent) process, as when a worker's child inherits them.
    let out = run_child(
        "activation::child_ignores_inherited_listen_vars",
        &[tcp.as_fd()],
        &[
            ("LISTEN_FDS", "1".into()),
            ("LISTEN_PID_OVERRIDE", std::process::id().to_string()),
            ("SYSMGR_DEV_LISTEN", "127.0.0.1:0".into()),
        ],
    );
    assert_child_passed(&out);
}

#[test]
#[ignore = "runs as the child of inherited_listen_vars_are_left_alone"]
fn child_ignores_inherited_listen_vars() {
    if !in_child() {
        return;
    }
    let pairs = std::env::vars().map(|(k, v)| match k.as_str() {
        "LISTEN_PID" => (k, std::env::var("LISTEN_PID_OVERRIDE").unwrap()),
        _ => (k, v),
    });
    let env = WorkerEnv::from_vars(std::process::id(), pairs).unwrap();
    assert!(!env.is_socket_activated());
    let mut listeners = Listeners::from_env(&env).unwrap();
    assert_eq!(listeners.origin(), Origin::Bound);
    let bound = listeners.take("http").unwrap();
    assert_ne!(bound.as_fd().as_raw_fd(), 3);
    // fd 3 is not ours: untouched, still without FD_CLOEXEC.
    assert_eq!(fd_flags(3), (false, false));
}

#[test]
fn an_announced_fd_that_is_closed_is_an_error() {
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    let out = run_child(
        "activation::child_reports_the_missing_fd",
        &[tcp.as_fd()],
        &[("LISTEN_FDS", "2".into())],
    );
    assert_child_passed(&out);
}

#[test]
#[ignore = "runs as the child of an_announced_fd_that_is_closed_is_an_error"]
fn child_reports_the_missing_fd() {
    if !in_child() {
        return;
    }
    let env = WorkerEnv::from_process().unwrap();
    let err = Listeners::from_env(&env).unwrap_err();
    assert!(matches!(err, ListenError::FdNotOpen { fd: 4, .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "fd 4 announced by `LISTEN_FDS` is not open; was it closed before the environment was read?"
    );
    // Nothing was taken: fd 3 is still as systemd passed it.
    assert_eq!(fd_flags(3), (false, false));
}

#[test]
fn names_that_do_not_match_the_fd_count_are_an_error() {
    // Checked before any fd is touched, so this runs in-process.
    let env = WorkerEnv::from_vars(
        std::process::id(),
        [
            ("LISTEN_FDS", "2".to_owned()),
            ("LISTEN_PID", std::process::id().to_string()),
            ("LISTEN_FDNAMES", "http".to_owned()),
        ],
    )
    .unwrap();
    let err = Listeners::from_env(&env).unwrap_err();
    assert_eq!(
        err.to_string(),
        "`LISTEN_FDNAMES` has 1 names for 2 fds in `LISTEN_FDS`; this is a bug in whatever \
         started the process"
    );
}

#[test]
fn the_kill_signals_start_the_drain_and_notify_stopping() {
    for (signal, extra) in [("SIGINT", ""), ("SIGTERM", ""), ("SIGQUIT", "SIGQUIT")] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let rx = UnixDatagram::bind(&path).unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let out = run_child(
            "activation::child_drains_on_a_signal",
            &[],
            &[
                ("NOTIFY_SOCKET", path.display().to_string()),
                ("SEND_SIGNAL", signal.into()),
                ("SYSMGR_KILL_SIGNAL", extra.into()),
                ("SYSMGR_KILL_TIMEOUT_MS", "3000".into()),
            ],
        );
        assert_child_passed(&out);
        let mut got = Vec::new();
        let mut buf = [0u8; 256];
        while let Ok(n) = rx.recv(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
            if got.len() == 2 {
                break;
            }
        }
        assert_eq!(got, ["READY=1", "STOPPING=1"], "{signal}");
    }
}

#[test]
#[ignore = "runs as the child of the_kill_signals_start_the_drain_and_notify_stopping"]
fn child_drains_on_a_signal() {
    if !in_child() {
        return;
    }
    let mut pairs: Vec<(String, String)> = std::env::vars().collect();
    pairs.retain(|(k, v)| k != "SYSMGR_KILL_SIGNAL" || !v.is_empty());
    let env = WorkerEnv::from_vars(std::process::id(), pairs).unwrap();
    let signal = std::env::var("SEND_SIGNAL").unwrap();
    let number = match signal.as_str() {
        "SIGINT" => libc::SIGINT,
        "SIGTERM" => libc::SIGTERM,
        "SIGQUIT" => libc::SIGQUIT,
        other => panic!("{other}"),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let shutdown = Shutdown::from_env(&env).unwrap();
        shutdown.notifier().ready().unwrap();
        assert_eq!(shutdown.timing().kill_timeout(), Duration::from_secs(3));
        unsafe { libc::kill(libc::getpid(), number) };
        let drain = tokio::time::timeout(Duration::from_secs(5), shutdown.wait())
            .await
            .unwrap();
        assert_eq!(drain.cause, Cause::Signal(signal.leak()));
        assert_eq!(drain.deadline - drain.started, Duration::from_millis(2700));
    });
}
