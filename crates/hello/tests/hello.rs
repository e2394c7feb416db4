//! sysmgr-hello as a process: socket-activated by systemd's own `systemd-socket-activate`, and
//! bound by hand. Its notify datagrams go to a socket the test binds, as systemd's would.
//! (Restarts under a real service manager are tested with the sandbox in sysmgr's suite.)

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const HELLO: &str = env!("CARGO_BIN_EXE_sysmgr-hello");

/// Ends the child on drop, so a failing test leaves no process behind.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn notify_socket(dir: &Path) -> UnixDatagram {
    let rx = UnixDatagram::bind(dir.join("notify")).unwrap();
    rx.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    rx
}

fn next_datagram(rx: &UnixDatagram) -> String {
    let mut buf = [0u8; 512];
    let n = rx.recv(&mut buf).expect("no notification within 10 s");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// Sends one request on a new connection and returns (head, body).
fn get(addr: SocketAddr, path: &str) -> (String, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    (head.to_owned(), body.to_owned())
}

fn signal(child: &Child, sig: libc::c_int) {
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, sig) }, 0);
}

fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let t0 = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(t0.elapsed() < limit, "still running after {limit:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn socket_activated_hello_serves_notifies_and_drains_on_sigint() {
    let dir = tempfile::tempdir().unwrap();
    let rx = notify_socket(dir.path());
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let child = Command::new("systemd-socket-activate")
        .args(["-l", &addr.to_string(), "--fdname=http"])
        .arg("-E")
        .arg(format!(
            "NOTIFY_SOCKET={}",
            dir.path().join("notify").display()
        ))
        .args([
            "-E",
            "SYSMGR_INSTANCE=3",
            "-E",
            "SYSMGR_KILL_TIMEOUT_MS=3000",
        ])
        .args(["--", HELLO])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = Running(child);
    // systemd-socket-activate listens first and execs the worker on the first connection, in
    // its own process: the PID the worker reports is the one we spawned.
    let start = Instant::now();
    let mut connected = None;
    while connected.is_none() && start.elapsed() < Duration::from_secs(5) {
        connected = TcpStream::connect(addr).ok();
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut first = connected.expect("systemd-socket-activate did not listen");
    first
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert_eq!(next_datagram(&rx), "READY=1");
    assert_eq!(next_datagram(&rx), format!("STATUS=serving on http {addr}"));
    let (head, body) = get(addr, "/");
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert_eq!(body, format!("instance 3 pid {}\n", child.0.id()));
    assert_eq!(get(addr, "/health").1, "ok\n");
    assert!(get(addr, "/nope").0.starts_with("HTTP/1.1 404"));

    // A slow request in flight at SIGINT completes, with `Connection: close`.
    let slow = std::thread::spawn(move || get(addr, "/slow?ms=400"));
    std::thread::sleep(Duration::from_millis(100));
    signal(&child.0, libc::SIGINT);
    let (head, body) = slow.join().unwrap();
    assert!(head.contains("\r\nconnection: close"), "{head}");
    assert_eq!(
        body,
        format!("slow 400ms instance 3 pid {}\n", child.0.id())
    );
    assert_eq!(next_datagram(&rx), "STOPPING=1");
    assert!(next_datagram(&rx).starts_with("STATUS=draining 2 connections after SIGINT"));
    // The first connection stays idle: closed after its grace, well before the kill timeout.
    let status = wait_exit(&mut child.0, Duration::from_millis(2700));
    assert!(status.success(), "{status}");
    let mut rest = Vec::new();
    first
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let _ = first.read_to_end(&mut rest);
    let rest = String::from_utf8_lossy(&rest);
    assert!(rest.starts_with("HTTP/1.1 200 OK"), "{rest}");

    let mut log = String::new();
    child
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.starts_with("sysmgr-hello:"))
        .collect();
    assert_eq!(lines.len(), 2, "{log}");
    assert!(
        lines[0].contains(&format!(
            "instance 3 pid {} ready on http {addr} (socket-activated)",
            child.0.id()
        )),
        "{log}"
    );
    assert!(
        lines[1].contains("drained 2 connections after SIGINT"),
        "{log}"
    );
    assert!(lines[1].ends_with("0 aborted at the deadline"), "{log}");
}

#[test]
fn by_hand_it_binds_listen_and_sends_ready_only_after_the_delay() {
    let dir = tempfile::tempdir().unwrap();
    let rx = notify_socket(dir.path());
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let t0 = Instant::now();
    let child = Command::new(HELLO)
        .args(["--listen", &addr.to_string(), "--ready-delay", "300"])
        .env("NOTIFY_SOCKET", dir.path().join("notify"))
        .env_remove("SYSMGR_INSTANCE")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = Running(child);
    assert_eq!(next_datagram(&rx), "READY=1");
    assert!(
        t0.elapsed() >= Duration::from_millis(300),
        "{:?}",
        t0.elapsed()
    );
    assert_eq!(
        get(addr, "/").1,
        format!("instance - pid {}\n", child.0.id())
    );
    signal(&child.0, libc::SIGTERM);
    assert!(wait_exit(&mut child.0, Duration::from_secs(3)).success());
}

#[test]
fn the_dev_variable_binds_a_unix_socket() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hello.sock");
    let child = Command::new(HELLO)
        .env("SYSMGR_DEV_LISTEN", format!("http={}", path.display()))
        .env("SYSMGR_INSTANCE", "7")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = Running(child);
    let t0 = Instant::now();
    let mut s = loop {
        match std::os::unix::net::UnixStream::connect(&path) {
            Ok(s) => break s,
            Err(_) if t0.elapsed() < Duration::from_secs(5) => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => panic!("{e}"),
        }
    };
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    assert!(
        text.ends_with(&format!("\r\n\r\ninstance 7 pid {}\n", child.0.id())),
        "{text}"
    );
    signal(&child.0, libc::SIGINT);
    assert!(wait_exit(&mut child.0, Duration::from_secs(3)).success());
}

#[test]
fn usage_errors_exit_2_and_say_what_is_wrong() {
    let out = Command::new(HELLO).arg("--bogus").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("sysmgr-hello: error: unknown argument `--bogus`\n\nusage: sysmgr-hello"),
        "{err}"
    );
}
