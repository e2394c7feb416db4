//! `sysmgr deploy` and `sysmgr nginx` against real machines: three hosts, each a private
//! systemd in a network namespace of its own with sshd and sysmgr, wired by veth pairs to a
//! bridge in a fourth namespace, the front, which runs the controller (`sysmgr deploy`, ssh)
//! and a real nginx with the generated upstream. A git repository of a small app (a script
//! that runs sysmgr-hello, and its app.toml) is what gets deployed; a load client goes through
//! nginx the whole time. Nothing touches the machine's own network.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use sysmgr_load::{get_blocking, Background, LoadConfig, Mode};
use sysmgr_sandbox::Sandbox;

use crate::support::{
    bin_dir, status_instances, sysmgr_bin, wait_for, workspace_bin, OneAtATime, Run,
};

const HOSTS: usize = 3;
const APP_PORT: u16 = 8080;
const FRONT_PORT: u16 = 8000;
const FRONT_IP: &str = "10.231.0.1";

fn host_ip(i: usize) -> String {
    format!("10.231.0.{}", 11 + i)
}

/// Runs a program and asserts it succeeded; its stdout.
fn ok(cmd: &mut Command) -> String {
    let out = cmd.output().expect("the program runs");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `PROGRAM ARGS` in the network namespace `netns` only (the test's own mounts and PIDs).
fn in_net(netns: &Path, program: &str, args: &[&str]) -> String {
    ok(Command::new("nsenter")
        .arg(format!("--net={}", netns.display()))
        .arg("--")
        .arg(program)
        .args(args))
}

/// The machine sandboxes: booted with their own network, the repo and target bound.
fn machine() -> Sandbox {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let target = bin_dir().parent().unwrap().to_path_buf();
    let mut binds = vec![repo.clone()];
    if !target.starts_with(&repo) {
        binds.push(target);
    }
    Sandbox::boot(sysmgr_sandbox::Options {
        binds,
        dir_prefix: "sysmgr-deploy".into(),
        own_network: true,
    })
    .expect("a private systemd boots")
}

/// Runs `f` on a thread inside the network namespace `netns` (threads it starts stay there).
fn on_net_thread<T: Send + 'static>(netns: PathBuf, f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        use std::os::fd::AsRawFd as _;
        let ns = std::fs::File::open(&netns).unwrap();
        // SAFETY: setns on an fd this thread owns; it changes only this thread's namespace.
        let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
        f()
    })
    .join()
    .unwrap()
}

fn git(dir: &Path, args: &[&str]) -> String {
    ok(Command::new("git")
        .args([
            "-c",
            "user.name=test",
            "-c",
            "user.email=test@example.com",
            "-C",
        ])
        .arg(dir)
        .args(args))
    .trim()
    .to_string()
}

/// A commit of the app: `start.sh` runs sysmgr-hello (or fails, for a broken release).
fn commit(work: &Path, version: &str, broken: bool) -> String {
    let hello = workspace_bin("sysmgr-hello");
    let script = if broken {
        format!("#!/bin/sh\n# {version}\necho \"release {version} is broken\" >&2\nexit 3\n")
    } else {
        format!("#!/bin/sh\n# {version}\nexec {}\n", hello.display())
    };
    std::fs::write(work.join("start.sh"), script).unwrap();
    std::fs::write(work.join("VERSION"), format!("{version}\n")).unwrap();
    git(work, &["add", "-A"]);
    git(work, &["commit", "-q", "-m", version]);
    git(work, &["rev-parse", "HEAD"])
}

fn sysmgr_on(sb: &Sandbox, args: &[&str]) -> Run {
    sb.command(sysmgr_bin()).args(args).output().unwrap().into()
}

/// The PIDs of `web`'s instances on a host.
fn pids(sb: &Sandbox) -> BTreeMap<u64, u64> {
    status_instances(&sysmgr_on(sb, &["status", "web", "--json"]))
        .into_iter()
        .map(|(i, (state, pid))| {
            assert_eq!(state, "active/running", "instance {i}");
            (i, pid)
        })
        .collect()
}

/// The release `current` points at on a host.
fn current(sb: &Sandbox) -> String {
    sb.run(&["readlink", "/srv/web/current"])
        .unwrap()
        .trim()
        .to_string()
}

/// The controller, in the front: `sysmgr deploy ARGS -f FILE`.
fn deploy(front: &Sandbox, file: &Path, args: &[&str]) -> Run {
    let started = Instant::now();
    let run: Run = front
        .command(sysmgr_bin())
        .arg("deploy")
        .args(args)
        .arg("-f")
        .arg(file)
        .output()
        .unwrap()
        .into();
    eprintln!(
        "--- sysmgr deploy {} ({} ms, exit {}):\n{}{}",
        args.join(" "),
        started.elapsed().as_millis(),
        run.code,
        run.stdout,
        run.stderr
    );
    run
}

/// The steps' times of a deploy's host lines (`[fetch 1.2 s, ...]`), summed per phase over
/// the hosts: fetch (+checkout), hooks, switch, reload, prune.
fn phases(stderr: &str) -> String {
    let mut sums: BTreeMap<&str, f64> = BTreeMap::new();
    for line in stderr.lines() {
        let Some(steps) = line
            .rsplit_once(" [")
            .and_then(|(_, s)| s.strip_suffix(']'))
        else {
            continue;
        };
        for step in steps.split(", ") {
            let Some((name, time)) = step.rsplit_once(' ').and_then(|(rest, unit)| {
                let (name, n) = rest.rsplit_once(' ')?;
                let n: f64 = n.parse().ok()?;
                Some((name, if unit == "ms" { n / 1000.0 } else { n }))
            }) else {
                continue;
            };
            let phase = match name {
                "fetch" | "checkout" => "fetch",
                "pre-deploy" | "post-deploy" | "test" => "hooks",
                other => other,
            };
            *sums.entry(phase).or_default() += time;
        }
    }
    sums.iter()
        .map(|(k, v)| format!("  {k}: {v:.1} s over the hosts"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn load(front: &Sandbox) -> Background {
    let addr: SocketAddr = format!("{FRONT_IP}:{FRONT_PORT}").parse().unwrap();
    on_net_thread(front.netns(), move || {
        Background::start(LoadConfig {
            connections: 8,
            mode: Mode::KeepAlive,
            duration: Duration::from_secs(300),
            request_timeout: Duration::from_secs(5),
            ..LoadConfig::new(addr)
        })
    })
}

#[test]
fn deploy_rolls_three_hosts_behind_nginx_switches_back_a_broken_release_and_reverts() {
    let _one = OneAtATime::take("heavy");
    let dir = bin_dir()
        .parent()
        .unwrap()
        .join(format!("deploy-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();

    // Keys: the hosts' (one for all) and the controller's.
    for key in ["host_key", "client_key"] {
        ok(Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(dir.join(key)));
    }
    let client_pub = std::fs::read_to_string(dir.join("client_key.pub")).unwrap();

    // The app's repository: a work tree and the bare repository the hosts fetch from.
    let work = dir.join("work");
    std::fs::create_dir_all(&work).unwrap();
    git(&work, &["init", "-q", "-b", "main"]);
    std::fs::write(
        work.join("app.toml"),
        format!(
            "name = \"web\"\ncommand = [\"/srv/web/current/start.sh\"]\ninstances = 2\nlisten = [\"{APP_PORT}\"]\nkill_timeout = 3000\nlisten_timeout = 5000\n"
        ),
    )
    .unwrap();
    std::fs::write(work.join("start.sh"), "").unwrap();
    ok(Command::new("chmod").arg("+x").arg(work.join("start.sh")));
    let v1 = commit(&work, "v1", false);
    let bare = dir.join("app.git");
    ok(Command::new("git")
        .args(["clone", "-q", "--bare"])
        .arg(&work)
        .arg(&bare));
    git(
        &work,
        &["remote", "add", "origin", &bare.display().to_string()],
    );

    // The machines and their wires.
    let front = machine();
    let hosts: Vec<Sandbox> = (0..HOSTS).map(|_| machine()).collect();
    let fnet = front.netns();
    in_net(&fnet, "ip", &["link", "set", "lo", "up"]);
    in_net(&fnet, "ip", &["link", "add", "br0", "type", "bridge"]);
    in_net(
        &fnet,
        "ip",
        &["addr", "add", &format!("{FRONT_IP}/24"), "dev", "br0"],
    );
    in_net(&fnet, "ip", &["link", "set", "br0", "up"]);
    let sshd_config = format!(
        "Port 22\nHostKey {}\nPermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nAuthorizedKeysFile /etc/ssh/test_authorized_keys\nPidFile none\n",
        dir.join("host_key").display()
    );
    for (i, h) in hosts.iter().enumerate() {
        let veth = format!("vh{i}");
        in_net(
            &fnet,
            "ip",
            &[
                "link",
                "add",
                &veth,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                &h.pid().to_string(),
            ],
        );
        in_net(&fnet, "ip", &["link", "set", &veth, "master", "br0", "up"]);
        let hnet = h.netns();
        in_net(&hnet, "ip", &["link", "set", "lo", "up"]);
        in_net(
            &hnet,
            "ip",
            &["addr", "add", &format!("{}/24", host_ip(i)), "dev", "eth0"],
        );
        in_net(&hnet, "ip", &["link", "set", "eth0", "up"]);
        // sshd, as the host's own service.
        let root = h.root();
        std::fs::write(root.join("etc/ssh/test_sshd_config"), &sshd_config).unwrap();
        std::fs::write(root.join("etc/ssh/test_authorized_keys"), &client_pub).unwrap();
        std::fs::write(
            h.unit_dir().join("test-sshd.service"),
            "[Service]\nRuntimeDirectory=sshd\nExecStart=/usr/sbin/sshd -D -e -f /etc/ssh/test_sshd_config\n",
        )
        .unwrap();
        h.systemctl(&["daemon-reload"]).unwrap();
        h.systemctl(&["start", "test-sshd.service"]).unwrap();
    }
    std::fs::set_permissions(
        dir.join("client_key"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();

    // The controller's app file: the same app, with the environment.
    let hosts_list: Vec<String> = (0..HOSTS)
        .map(|i| format!("\"root@{}:22\"", host_ip(i)))
        .collect();
    let file = dir.join("app.toml");
    std::fs::write(
        &file,
        format!(
            "{}\n[deploy.production]\nhosts = [{}]\nrepo = \"{}\"\nref = \"main\"\npath = \"/srv/web\"\nssh_options = [\"IdentityFile={}\", \"StrictHostKeyChecking=no\", \"UserKnownHostsFile=/dev/null\", \"LogLevel=ERROR\"]\npost-deploy = \"test -x start.sh && cat VERSION\"\nkeep = 3\nsysmgr = \"{}\"\n",
            std::fs::read_to_string(work.join("app.toml")).unwrap(),
            hosts_list.join(", "),
            bare.display(),
            dir.join("client_key").display(),
            sysmgr_bin().display()
        ),
    )
    .unwrap();

    // The front: nginx with the generated upstream; `nginx -t` accepts it.
    let generated = front
        .command(sysmgr_bin())
        .args(["nginx"])
        .arg(&file)
        .args(["--hosts", "production", "--listen", &FRONT_PORT.to_string()])
        .output()
        .unwrap();
    let generated = Run::from(generated);
    assert_eq!(generated.code, 0, "{}", generated.stderr);
    for i in 0..HOSTS {
        assert!(
            generated
                .stdout
                .contains(&format!("server {}:{APP_PORT} ", host_ip(i))),
            "{}",
            generated.stdout
        );
    }
    std::fs::write(dir.join("front.conf"), &generated.stdout).unwrap();
    let nginx_conf = dir.join("nginx.conf");
    std::fs::write(
        &nginx_conf,
        format!(
            "user root;\nworker_processes 1;\npid /run/nginx-test.pid;\nerror_log /tmp/nginx-error.log;\nevents {{ worker_connections 256; }}\nhttp {{\n    access_log off;\n    include {};\n}}\n",
            dir.join("front.conf").display()
        ),
    )
    .unwrap();
    let conf = nginx_conf.display().to_string();
    front
        .run(&["nginx", "-t", "-c", &conf])
        .expect("nginx -t accepts the generated blocks");
    front
        .run(&[
            "systemd-run",
            "--unit=front-nginx",
            "nginx",
            "-c",
            &conf,
            "-g",
            "daemon off;",
        ])
        .unwrap();

    // setup, then the first release: every host starts v1.
    let r = deploy(&front, &file, &["production", "setup"]);
    assert_eq!(r.code, 0);
    assert_eq!(
        r.stderr
            .matches(": set up: releases/ and the mirror")
            .count(),
        HOSTS,
        "{}",
        r.stderr
    );
    let r = deploy(&front, &file, &["production", "update"]);
    assert_eq!(r.code, 0);
    let short = |sha: &str| sha[..8].to_string();
    for h in &hosts {
        assert!(current(h).ends_with(&short(&v1)), "{}", current(h));
        assert_eq!(pids(h).len(), 2);
    }
    let front_net = front.netns();
    let answered = on_net_thread(front_net.clone(), move || {
        get_blocking(
            format!("{FRONT_IP}:{FRONT_PORT}").parse().unwrap(),
            "/",
            Duration::from_secs(5),
        )
    });
    assert!(
        matches!(&answered, Ok((200, body)) if body.starts_with("instance ")),
        "{answered:?}"
    );

    // v2 under load through nginx: every instance of every host replaced, 0 failed.
    let v2 = commit(&work, "v2", false);
    git(&work, &["push", "-q", "origin", "main"]);
    let before: Vec<BTreeMap<u64, u64>> = hosts.iter().map(pids).collect();
    let traffic = load(&front);
    wait_for(10, || (traffic.snapshot().0 > 100).then_some(())).expect("traffic flows");
    let r = deploy(&front, &file, &["production", "update"]);
    let report = traffic.stop();
    eprintln!("load during update: {report}");
    eprintln!(
        "timings (for BENCHMARKS.md; load average {}):\n{}",
        std::fs::read_to_string("/proc/loadavg").unwrap().trim(),
        phases(&r.stderr)
    );
    assert_eq!(r.code, 0);
    assert!(report.ok > 0);
    assert_eq!((report.failed, report.hung), (0, 0), "{report}");
    let rel_v2: Vec<String> = hosts.iter().map(current).collect();
    for (i, h) in hosts.iter().enumerate() {
        assert!(rel_v2[i].ends_with(&short(&v2)), "{}", rel_v2[i]);
        let after = pids(h);
        for (inst, pid) in &after {
            assert_ne!(
                before[i].get(inst),
                Some(pid),
                "host {i} instance {inst} not replaced"
            );
        }
        assert_eq!(
            h.run(&["cat", "/srv/web/current/REVISION"]).unwrap().trim(),
            v2
        );
    }
    assert!(
        r.stderr.contains("post-deploy"),
        "the hooks ran: {}",
        r.stderr
    );

    // A broken release: the first host halts, is switched back and serves; the others are
    // untouched.
    let v3 = commit(&work, "v3", true);
    git(&work, &["push", "-q", "origin", "main"]);
    let before: Vec<BTreeMap<u64, u64>> = hosts.iter().map(pids).collect();
    let traffic = load(&front);
    wait_for(10, || (traffic.snapshot().0 > 100).then_some(())).expect("traffic flows");
    let r = deploy(&front, &file, &["production", "update"]);
    let report = traffic.stop();
    eprintln!("load during the broken update: {report}");
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr
            .contains(&format!("root@{}:22: FAILED at reload of ", host_ip(0)))
            && r.stderr.contains(&format!(
                "switched back to {} and reloaded, serving",
                rel_v2[0].trim_start_matches("releases/")
            )),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains(&short(&v3)));
    assert!(
        r.stderr.contains(&format!(
            "untouched: root@{}:22, root@{}:22",
            host_ip(1),
            host_ip(2)
        )),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains("deploy production: 1 of 3 host(s) failed; each host's state is above"),
        "{}",
        r.stderr
    );
    assert_eq!((report.failed, report.hung), (0, 0), "{report}");
    for (i, h) in hosts.iter().enumerate() {
        assert_eq!(current(h), rel_v2[i], "host {i} is on v2");
        let now = pids(h);
        assert_eq!(now.len(), 2, "host {i} serves");
        if i > 0 {
            assert_eq!(now, before[i], "host {i} untouched");
        }
        let listing = h.run(&["ls", "/srv/web/releases"]).unwrap();
        // The broken release was removed again: no `revert` target.
        assert_eq!(listing.lines().count(), 2, "{listing}");
    }
    let answered = on_net_thread(front_net.clone(), move || {
        get_blocking(
            format!("{}:{APP_PORT}", host_ip(0)).parse().unwrap(),
            "/",
            Duration::from_secs(5),
        )
    });
    assert!(
        matches!(&answered, Ok((200, _))),
        "the first host serves: {answered:?}"
    );

    // Back to good: the broken commit reverted in git is v4; then `revert` goes back one
    // release everywhere (to v2) under load.
    git(&work, &["revert", "--no-edit", "HEAD"]);
    git(&work, &["push", "-q", "origin", "main"]);
    let r = deploy(&front, &file, &["production", "update"]);
    assert_eq!(r.code, 0);
    let before: Vec<BTreeMap<u64, u64>> = hosts.iter().map(pids).collect();
    let traffic = load(&front);
    wait_for(10, || (traffic.snapshot().0 > 100).then_some(())).expect("traffic flows");
    let r = deploy(&front, &file, &["production", "revert"]);
    let report = traffic.stop();
    eprintln!("load during revert: {report}");
    assert_eq!(r.code, 0);
    assert_eq!((report.failed, report.hung), (0, 0), "{report}");
    for (i, h) in hosts.iter().enumerate() {
        assert_eq!(current(h), rel_v2[i], "host {i} is back on v2");
        let after = pids(h);
        for (inst, pid) in &after {
            assert_ne!(
                before[i].get(inst),
                Some(pid),
                "host {i} instance {inst} not reloaded"
            );
        }
    }

    // list and exec.
    let r = deploy(&front, &file, &["production", "list"]);
    assert_eq!(r.code, 0);
    assert_eq!(r.stdout.matches("* ").count(), HOSTS, "{}", r.stdout);
    let r = deploy(&front, &file, &["production", "exec", "cat VERSION"]);
    assert_eq!(r.code, 0);
    for i in 0..HOSTS {
        assert!(
            r.stdout.contains(&format!("root@{}:22: v2", host_ip(i))),
            "{}",
            r.stdout
        );
    }

    drop(hosts);
    drop(front);
    let _ = std::fs::remove_dir_all(&dir);
}
