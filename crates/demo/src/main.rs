//! `sysmgr-demo`: the whole job in one command, on any Linux machine (`scripts/demo`).
//!
//! Generates an app of the reference worker (`sysmgr-hello`), starts it under systemd, shows
//! which instance answers, measures steady load, then reloads it while the load runs and
//! prints what the clients saw: requests, failures, hung connections, latency, new PIDs.
//!
//! It runs the real `sysmgr` binary as a subprocess, each command printed as it goes, so what
//! it shows is what a user gets. Where systemd is the running init it uses the user's manager
//! (`--user`); where it is not (containers, CI VMs) it boots the private systemd the tests use
//! (`sysmgr-sandbox`: PID 1 in namespaces on an overlay root; needs root), and tears it down
//! at the end.
//!
//! It is its own binary, not a `sysmgr` command, because `sysmgr` also runs as the boot-time
//! generator: that binary must not link the test sandbox and the load generator.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::Parser;
use sysmgr_load::{Background, LoadConfig, Mode, Report};
use sysmgr_sandbox::Sandbox;

/// Generate, start and reload a 4-instance app under load with sysmgr, and show what the
/// clients saw.
#[derive(Debug, Parser)]
#[command(name = "sysmgr-demo", version, about, long_about = None)]
struct DemoArgs {
    /// Instances of the demo app (1 to 64).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
    instances: u32,
    /// Keep-alive connections of the load (plus a quarter as many one-request connections).
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Seconds of steady load measured before the reload.
    #[arg(long, default_value_t = 3)]
    seconds: u64,
    /// Loopback port of the demo app [default: a free one].
    #[arg(long)]
    port: Option<u16>,
}

/// The demo ran, but a request failed or an instance was not replaced.
const FAILED: u8 = 1;

fn main() -> ExitCode {
    let args = DemoArgs::parse();
    match run(&args) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("sysmgr-demo: error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::from(FAILED)
        }
    }
}

/// Where the demo's systemd is.
enum Host {
    /// A private systemd booted for the demo.
    Sandbox(Sandbox),
    /// The user's own manager on a systemd machine.
    User,
}

impl Host {
    /// A `sysmgr` command against this host's manager.
    fn sysmgr(&self, exe: &Path) -> Command {
        match self {
            Host::Sandbox(sb) => sb.command(exe),
            Host::User => {
                let mut cmd = Command::new(exe);
                cmd.arg("--user");
                cmd
            }
        }
    }

    /// Writes the app file and returns its path as `sysmgr` will see it.
    fn write_app(&self, text: &str) -> anyhow::Result<PathBuf> {
        let (visible, host_path) = match self {
            Host::Sandbox(sb) => {
                let inside = PathBuf::from("/srv/sysmgr-demo/hello.toml");
                let host = sb.root().join("srv/sysmgr-demo/hello.toml");
                (inside, host)
            }
            Host::User => {
                let dir = std::env::temp_dir().join(format!("sysmgr-demo-{}", std::process::id()));
                (dir.join("hello.toml"), dir.join("hello.toml"))
            }
        };
        std::fs::create_dir_all(host_path.parent().expect("a file in a directory"))?;
        std::fs::write(&host_path, text)
            .with_context(|| format!("cannot write `{}`", host_path.display()))?;
        Ok(visible)
    }
}

/// Prints a command the way a user would type it, runs it with its output shown, and fails
/// if it fails.
fn step(host: &Host, exe: &Path, args: &[&str]) -> anyhow::Result<()> {
    let user = if matches!(host, Host::User) {
        " --user"
    } else {
        ""
    };
    println!("\n$ sysmgr{user} {}", args.join(" "));
    let status = host
        .sysmgr(exe)
        .args(args)
        .stdin(Stdio::null())
        .status()
        .context("cannot run sysmgr")?;
    if !status.success() {
        bail!("`sysmgr {}` failed ({status})", args.join(" "));
    }
    Ok(())
}

/// Main PIDs by instance, from `sysmgr status --json`.
fn pids(host: &Host, exe: &Path) -> anyhow::Result<Vec<(u64, u64)>> {
    let out = host
        .sysmgr(exe)
        .args(["status", "hello", "--json"])
        .stdin(Stdio::null())
        .output()
        .context("cannot run sysmgr status")?;
    if !out.status.success() {
        bail!(
            "`sysmgr status hello --json` failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    Ok(v["instances"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|i| {
                    (
                        i["instance"].as_u64().unwrap_or(0),
                        i["pid"].as_u64().unwrap_or(0),
                    )
                })
                .collect()
        })
        .unwrap_or_default())
}

fn loads(addr: SocketAddr, connections: usize, duration: Duration) -> (Background, Background) {
    let mut keep_alive = LoadConfig::new(addr);
    keep_alive.connections = connections;
    keep_alive.duration = duration;
    keep_alive.request_timeout = Duration::from_secs(5);
    let mut per_request = keep_alive.clone();
    per_request.mode = Mode::PerRequest;
    per_request.connections = (connections / 4).max(1);
    (
        Background::start(keep_alive),
        Background::start(per_request),
    )
}

fn line(label: &str, r: &Report) {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "  {label:<22} {:>8} requests {:>7.0}/s  failed {}  hung {}  p50 {:.2} ms  p99 {:.2} ms  max {:.1} ms",
        r.requests,
        r.throughput,
        r.failed,
        r.hung,
        ms(r.latency.p50),
        ms(r.latency.p99),
        ms(r.latency.max)
    );
    for (kind, n) in &r.failures {
        println!("  {:<22} {n} x {kind}", "");
    }
}

/// A program of the workspace next to this binary (where cargo builds them all), or the
/// installed one.
fn beside_or_installed(name: &str, build: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find this program")?;
    let beside = exe.with_file_name(name);
    let installed = Path::new("/usr/bin").join(name);
    for candidate in [&beside, &installed] {
        if candidate.exists() {
            return Ok(candidate.clone());
        }
    }
    bail!(
        "`{name}` is missing: no `{}` or `{}`; build it with `cargo build --release -p {build}`",
        beside.display(),
        installed.display()
    )
}

fn run(args: &DemoArgs) -> anyhow::Result<ExitCode> {
    let sysmgr = beside_or_installed("sysmgr", "sysmgr")?;
    let hello = beside_or_installed("sysmgr-hello", "sysmgr-hello")?;
    let port = match args.port {
        Some(p) => p,
        None => std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port(),
    };
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();

    let host = if Path::new("/run/systemd/system").is_dir() {
        println!(
            "== systemd runs this machine: the demo uses your user manager (systemctl --user)"
        );
        Host::User
    } else {
        println!("== systemd is not running here: booting a private one (PID 1 in namespaces, overlay root)");
        sysmgr_sandbox::preflight()?;
        let started = Instant::now();
        // sysmgr and the worker run inside, at the same paths.
        let mut binds = vec![sysmgr
            .parent()
            .expect("a file in a directory")
            .to_path_buf()];
        let hello_dir = hello.parent().expect("a file in a directory").to_path_buf();
        if !binds.contains(&hello_dir) {
            binds.push(hello_dir);
        }
        let sb = Sandbox::boot(sysmgr_sandbox::Options {
            binds,
            dir_prefix: "sysmgr-demo".into(),
        })?;
        println!("   booted in {:.2} s", started.elapsed().as_secs_f64());
        Host::Sandbox(sb)
    };

    let app = format!(
        "# The demo app: the reference worker, {n} instances sharing one socket.\n\
         name = \"hello\"\n\
         command = [\"{hello}\"]\n\
         instances = {n}\n\
         listen = [\"127.0.0.1:{port}\"]\n\
         listen_timeout = \"10s\"\n\
         kill_timeout = 5000\n",
        n = args.instances,
        hello = hello.display(),
    );
    let file = host.write_app(&app)?;
    println!("\n== the app file, {}:\n{app}", file.display());
    let file = file.display().to_string();
    let result = demo(&host, &sysmgr, &file, addr, args);
    // Clean up the user manager; a sandbox goes away with its PID 1 when `host` drops.
    if matches!(host, Host::User) {
        let _ = step(&host, &sysmgr, &["delete", "hello"]);
    }
    result
}

fn demo(
    host: &Host,
    exe: &Path,
    file: &str,
    addr: SocketAddr,
    args: &DemoArgs,
) -> anyhow::Result<ExitCode> {
    step(host, exe, &["start", file])?;
    step(host, exe, &["status", "hello"])?;

    println!("\n$ curl http://{addr}/   (8 times; new connections are spread over the instances)");
    for _ in 0..8 {
        match sysmgr_load::get_blocking(addr, "/", Duration::from_secs(5)) {
            Ok((status, body)) => print!("  {status} {body}"),
            Err(e) => println!("  failed: {e}"),
        }
    }

    let steady_time = Duration::from_secs(args.seconds.max(1));
    println!(
        "\n== steady load for {} s: {} keep-alive connections + {} opening one connection per request",
        steady_time.as_secs(),
        args.connections,
        (args.connections / 4).max(1)
    );
    let (ka, pr) = loads(addr, args.connections, steady_time);
    let steady = (ka.wait(), pr.wait());
    line("keep-alive", &steady.0);
    line("one per connection", &steady.1);

    let before = pids(host, exe)?;
    println!("\n== reload under the same load, plus 20 `/slow?ms=1500` requests in flight");
    let (ka, pr) = loads(addr, args.connections, Duration::from_secs(300));
    let mut slow = LoadConfig::new(addr);
    slow.path = "/slow?ms=1500".into();
    slow.mode = Mode::PerRequest;
    slow.connections = 20;
    slow.max_requests = Some(20);
    slow.request_timeout = Duration::from_secs(10);
    std::thread::sleep(Duration::from_millis(500));
    let slow = Background::start(slow);
    std::thread::sleep(Duration::from_millis(100));
    let started = Instant::now();
    let reloaded = step(host, exe, &["reload", "hello"]);
    let reload_time = started.elapsed();
    std::thread::sleep(Duration::from_millis(500));
    let during = (ka.stop(), pr.stop(), slow.wait());
    let after = pids(host, exe)?;

    println!(
        "\n== what the clients saw during the reload ({:.2} s)",
        reload_time.as_secs_f64()
    );
    line("keep-alive", &during.0);
    line("one per connection", &during.1);
    println!(
        "  {:<22} {} of 20 answered 200 (each took 1.5 s, across the restart of its instance)",
        "slow requests", during.2.ok
    );
    println!(
        "  {:<22} steady p99 {:.2} ms, during reload p99 {:.2} ms",
        "keep-alive latency",
        steady.0.latency.p99.as_secs_f64() * 1000.0,
        during.0.latency.p99.as_secs_f64() * 1000.0
    );
    println!("\n== PIDs before -> after");
    for (instance, pid) in &before {
        let new = after
            .iter()
            .find(|(i, _)| i == instance)
            .map_or(0, |(_, p)| *p);
        let mark = if new != *pid && new != 0 {
            "new process"
        } else {
            "NOT replaced"
        };
        println!("  hello@{instance}: {pid} -> {new}  ({mark})");
    }
    reloaded?;
    let failed = during.0.failed + during.1.failed + during.2.failed;
    let replaced = before
        .iter()
        .all(|(i, p)| after.iter().any(|(j, q)| i == j && p != q && *q != 0));
    println!();
    if failed == 0 && replaced && during.2.ok == 20 {
        println!("== every instance was replaced and no request failed");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("== {failed} requests failed; instances replaced: {replaced}");
        Ok(ExitCode::from(FAILED))
    }
}
