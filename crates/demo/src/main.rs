//! `sysmgr-demo`: the whole job in one command, on any Linux machine (`scripts/demo`).
//!
//! Act 1 generates an app of the reference worker (`sysmgr-hello`), starts it under systemd,
//! shows which instance answers, measures steady load, then reloads it while the load runs and
//! prints what the clients saw: requests, failures, hung connections, latency, new PIDs.
//!
//! Act 2 runs a PM2 app unchanged: the PM2 articles' Express app and their ecosystem file
//! (`examples/pm2`), started with `sysmgr start ecosystem.config.js --listen` through sysmgr's
//! Node bridge and reloaded the same way, with slow requests in flight. It listens on 3000,
//! the port app.js names, when that port is free; otherwise the copy of app.js gets a free
//! port, and the demo says so. Without Node.js 18+ or express (`scripts/setup` installs both)
//! the act is skipped with the reason; `--no-pm2` skips it too.
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

/// Generate, start and reload a 4-instance app under load with sysmgr, then a PM2 app
/// unchanged, and show what the clients saw.
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
    /// Skip act 2, the PM2 app run unchanged.
    #[arg(long)]
    no_pm2: bool,
    /// Loopback port of the PM2 app [default: 3000, the one its app.js names, when free;
    /// else a free one, written into the demo's copy of app.js].
    #[arg(long, conflicts_with = "no_pm2")]
    pm2_port: Option<u16>,
}

/// The demo ran, but a request failed or an instance was not replaced.
const FAILED: u8 = 1;

/// The port the PM2 articles' app.js listens on.
const PM2_PORT: u16 = 3000;

/// The app name in the articles' ecosystem file.
const PM2_APP: &str = "app";

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
    /// A `sysmgr` command against this host's manager, run in `dir` (as seen by `sysmgr`)
    /// when given.
    fn sysmgr(&self, exe: &Path, dir: Option<&Path>) -> Command {
        match self {
            Host::Sandbox(sb) => match dir {
                // Commands enter the sandbox in `/`; `env -C` moves there first.
                Some(dir) => {
                    let mut cmd = sb.command("env");
                    cmd.arg("-C").arg(dir).arg(exe);
                    cmd
                }
                None => sb.command(exe),
            },
            Host::User => {
                let mut cmd = Command::new(exe);
                cmd.arg("--user");
                if let Some(dir) = dir {
                    cmd.current_dir(dir);
                }
                cmd
            }
        }
    }

    /// The demo's directory: as `sysmgr` sees it, and as this process reaches it.
    fn demo_dir(&self) -> (PathBuf, PathBuf) {
        match self {
            Host::Sandbox(sb) => (
                PathBuf::from("/srv/sysmgr-demo"),
                sb.root().join("srv/sysmgr-demo"),
            ),
            Host::User => {
                let dir = std::env::temp_dir().join(format!("sysmgr-demo-{}", std::process::id()));
                (dir.clone(), dir)
            }
        }
    }

    /// Writes `text` at `name` in the demo's directory and returns its path as `sysmgr` will
    /// see it.
    fn write(&self, name: &str, text: &str) -> anyhow::Result<PathBuf> {
        let (visible, on_host) = self.demo_dir();
        let host_path = on_host.join(name);
        std::fs::create_dir_all(host_path.parent().expect("a file in a directory"))?;
        std::fs::write(&host_path, text)
            .with_context(|| format!("cannot write `{}`", host_path.display()))?;
        Ok(visible.join(name))
    }
}

/// Prints a command the way a user would type it, runs it with its output shown, and fails
/// if it fails.
fn step(host: &Host, exe: &Path, args: &[&str]) -> anyhow::Result<()> {
    step_in(host, exe, None, args)
}

/// [`step`] in the directory `dir` (as `sysmgr` sees it).
fn step_in(host: &Host, exe: &Path, dir: Option<&Path>, args: &[&str]) -> anyhow::Result<()> {
    let user = if matches!(host, Host::User) {
        " --user"
    } else {
        ""
    };
    println!("\n$ sysmgr{user} {}", args.join(" "));
    let status = host
        .sysmgr(exe, dir)
        .args(args)
        .stdin(Stdio::null())
        .status()
        .context("cannot run sysmgr")?;
    if !status.success() {
        bail!("`sysmgr {}` failed ({status})", args.join(" "));
    }
    Ok(())
}

/// Main PIDs by instance, from `sysmgr status APP --json`.
fn pids(host: &Host, exe: &Path, app: &str) -> anyhow::Result<Vec<(u64, u64)>> {
    let out = host
        .sysmgr(exe, None)
        .args(["status", app, "--json"])
        .stdin(Stdio::null())
        .output()
        .context("cannot run sysmgr status")?;
    if !out.status.success() {
        bail!(
            "`sysmgr status {app} --json` failed: {}",
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

/// `n` requests for `path` on new connections, each answer printed.
fn curl(addr: SocketAddr, path: &str, n: usize, note: &str) {
    println!("\n$ curl 'http://{addr}{path}'   ({n} times; {note})");
    for _ in 0..n {
        match sysmgr_load::get_blocking(addr, path, Duration::from_secs(5)) {
            Ok((status, body)) => println!("  {status} {}", body.trim_end()),
            Err(e) => println!("  failed: {e}"),
        }
    }
}

/// The load of a run: how many connections, how fast, and when a request counts as hung.
#[derive(Debug, Clone, Copy)]
struct Plan {
    /// Keep-alive connections; a quarter as many open one connection per request.
    connections: usize,
    /// A ceiling on each load's requests per second; `None`: as fast as answers come.
    rate: Option<u32>,
    /// A request without an answer after this long is hung.
    request_timeout: Duration,
    /// `/slow?ms=1500` requests in flight when the reload starts.
    slow: u64,
}

impl Plan {
    fn per_request(&self) -> usize {
        (self.connections / 4).max(1)
    }
}

fn loads(addr: SocketAddr, plan: &Plan, duration: Duration) -> (Background, Background) {
    let mut keep_alive = LoadConfig::new(addr);
    keep_alive.connections = plan.connections;
    keep_alive.duration = duration;
    keep_alive.rate = plan.rate;
    keep_alive.request_timeout = plan.request_timeout;
    let mut per_request = keep_alive.clone();
    per_request.mode = Mode::PerRequest;
    per_request.connections = plan.per_request();
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

/// Reloads `app` under the load of `plan` with its slow requests in flight, and prints what
/// the clients saw and the PIDs before and after. True when no request failed or hung, every
/// slow request was answered and every instance runs a new process. `steady`: the keep-alive
/// report of a steady run before, to compare latency with.
fn reload_under_load(
    host: &Host,
    exe: &Path,
    app: &str,
    addr: SocketAddr,
    plan: &Plan,
    steady: Option<&Report>,
) -> anyhow::Result<bool> {
    let before = pids(host, exe, app)?;
    // Stopped after the reload; the duration is only a bound.
    let (ka, pr) = loads(addr, plan, Duration::from_secs(300));
    let mut slow = LoadConfig::new(addr);
    slow.path = "/slow?ms=1500".into();
    slow.mode = Mode::PerRequest;
    slow.connections = plan.slow as usize;
    slow.max_requests = Some(plan.slow);
    slow.request_timeout = Duration::from_secs(10);
    std::thread::sleep(Duration::from_millis(500));
    let slow = Background::start(slow);
    // Let the slow requests reach their instances before the first one is restarted.
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let reloaded = step(host, exe, &["reload", app]);
    let reload_time = started.elapsed();
    std::thread::sleep(Duration::from_millis(500));
    let during = (ka.stop(), pr.stop(), slow.wait());
    let after = pids(host, exe, app)?;

    println!(
        "\n== what the clients saw during the reload ({:.2} s)",
        reload_time.as_secs_f64()
    );
    line("keep-alive", &during.0);
    line("one per connection", &during.1);
    println!(
        "  {:<22} {} of {} answered 200 (each took 1.5 s, across the restart of its instance)",
        "slow requests", during.2.ok, plan.slow
    );
    if let Some(steady) = steady {
        println!(
            "  {:<22} steady p99 {:.2} ms, during reload p99 {:.2} ms",
            "keep-alive latency",
            steady.latency.p99.as_secs_f64() * 1000.0,
            during.0.latency.p99.as_secs_f64() * 1000.0
        );
    }
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
        println!("  {app}@{instance}: {pid} -> {new}  ({mark})");
    }
    reloaded?;
    let failed = during.0.failed + during.1.failed + during.2.failed;
    let hung = during.0.hung + during.1.hung + during.2.hung;
    let replaced = !before.is_empty()
        && before
            .iter()
            .all(|(i, p)| after.iter().any(|(j, q)| i == j && p != q && *q != 0));
    println!();
    if failed == 0 && replaced && during.2.ok == plan.slow {
        println!("== every instance was replaced and no request failed");
        Ok(true)
    } else {
        println!("== {failed} requests failed ({hung} hung); instances replaced: {replaced}");
        Ok(false)
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

/// The PM2 app of act 2 and what runs it.
struct Pm2App {
    /// `examples/pm2` of the repository the demo was built from.
    dir: PathBuf,
    /// `node --version`.
    node: String,
}

/// The PM2 app of act 2, or why the act cannot run here.
fn pm2_app() -> Result<Pm2App, String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/pm2");
    let dir = dir.canonicalize().map_err(|_| {
        format!(
            "`{}` is missing (the demo runs from the sysmgr repository it was built in)",
            dir.display()
        )
    })?;
    let node = match Command::new("node")
        .arg("--version")
        .stdin(Stdio::null())
        .output()
    {
        Err(_) => {
            return Err(
                "Node.js is not installed (no `node` on PATH; scripts/setup installs it)".into(),
            )
        }
        Ok(out) if !out.status.success() => return Err("`node --version` failed".into()),
        Ok(out) => String::from_utf8_lossy(&out.stdout).trim().to_string(),
    };
    let major = node
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse::<u32>().ok());
    if !matches!(major, Some(m) if m >= 18) {
        return Err(format!(
            "Node.js {node} is older than 18, the oldest sysmgr's Node bridge runs on"
        ));
    }
    if !dir.join("node_modules/express/package.json").is_file() {
        return Err(format!(
            "express is not installed in {} (scripts/setup runs `npm ci` there)",
            dir.display()
        ));
    }
    Ok(Pm2App { dir, node })
}

/// The PM2 app's port: `requested`, else 3000 when nothing listens there, else a free one;
/// with the reason when it is not 3000.
fn pm2_port(requested: Option<u16>) -> anyhow::Result<(u16, Option<String>)> {
    if let Some(port) = requested {
        let why = (port != PM2_PORT).then(|| format!("--pm2-port {port} asks for port {port}"));
        return Ok((port, why));
    }
    match std::net::TcpListener::bind(("127.0.0.1", PM2_PORT)) {
        Ok(_) => Ok((PM2_PORT, None)),
        Err(e) => {
            let free = std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port();
            Ok((
                free,
                Some(format!(
                    "port {PM2_PORT} is taken on this machine (binding 127.0.0.1:{PM2_PORT}: {e})"
                )),
            ))
        }
    }
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
    let pm2 = if args.no_pm2 {
        Err("--no-pm2".to_string())
    } else {
        pm2_app()
    };

    let host = if Path::new("/run/systemd/system").is_dir() {
        println!(
            "== systemd runs this machine: the demo uses your user manager (systemctl --user)"
        );
        Host::User
    } else {
        println!("== systemd is not running here: booting a private one (PID 1 in namespaces, overlay root)");
        sysmgr_sandbox::preflight()?;
        let started = Instant::now();
        // sysmgr, the worker and the PM2 app (for its node_modules) are inside at the same
        // paths.
        let mut binds = vec![sysmgr
            .parent()
            .expect("a file in a directory")
            .to_path_buf()];
        let hello_dir = hello.parent().expect("a file in a directory").to_path_buf();
        if !binds.contains(&hello_dir) {
            binds.push(hello_dir);
        }
        if let Ok(app) = &pm2 {
            binds.push(app.dir.clone());
        }
        let sb = Sandbox::boot(sysmgr_sandbox::Options {
            binds,
            dir_prefix: "sysmgr-demo".into(),
            ..Default::default()
        })?;
        println!("   booted in {:.2} s", started.elapsed().as_secs_f64());
        Host::Sandbox(sb)
    };

    let result = acts(&host, &sysmgr, &hello, addr, pm2, args);
    if matches!(host, Host::User) {
        // A sandbox's files go away with it when `host` drops.
        let _ = std::fs::remove_dir_all(host.demo_dir().1);
    }
    result
}

fn acts(
    host: &Host,
    sysmgr: &Path,
    hello: &Path,
    addr: SocketAddr,
    pm2: Result<Pm2App, String>,
    args: &DemoArgs,
) -> anyhow::Result<ExitCode> {
    println!(
        "\n== act 1: {} instances of the reference worker (sysmgr-hello) on one socket",
        args.instances
    );
    let app = format!(
        "# The demo app: the reference worker, {n} instances sharing one socket.\n\
         name = \"hello\"\n\
         command = [\"{hello}\"]\n\
         instances = {n}\n\
         listen = [\"{addr}\"]\n\
         listen_timeout = \"10s\"\n\
         kill_timeout = 5000\n",
        n = args.instances,
        hello = hello.display(),
    );
    let file = host.write("hello.toml", &app)?;
    println!("\n== the app file, {}:\n{app}", file.display());
    let file = file.display().to_string();
    let hello_ok = hello_act(host, sysmgr, &file, addr, args);
    let _ = step(host, sysmgr, &["delete", "hello"]);
    let mut ok = hello_ok?;

    match pm2 {
        Err(reason) => println!("\n== act 2, a PM2 app unchanged: skipped: {reason}"),
        Ok(app) => {
            let (port, why) = pm2_port(args.pm2_port)?;
            let plan = Plan {
                connections: args.connections,
                // The load the PM2 tests reload under: enough to keep every Node instance
                // busy without starving the new one of CPU on a small machine.
                rate: Some(2000),
                request_timeout: Duration::from_secs(10),
                slow: 10,
            };
            let pm2_ok = pm2_act(host, sysmgr, &app, port, why, &plan);
            let _ = step(host, sysmgr, &["delete", PM2_APP]);
            ok &= pm2_ok?;
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(FAILED)
    })
}

fn hello_act(
    host: &Host,
    exe: &Path,
    file: &str,
    addr: SocketAddr,
    args: &DemoArgs,
) -> anyhow::Result<bool> {
    step(host, exe, &["start", file])?;
    step(host, exe, &["status", "hello"])?;
    curl(
        addr,
        "/",
        8,
        "new connections are spread over the instances",
    );

    let plan = Plan {
        connections: args.connections,
        rate: None,
        request_timeout: Duration::from_secs(5),
        slow: 20,
    };
    let steady_time = Duration::from_secs(args.seconds.max(1));
    println!(
        "\n== steady load for {} s: {} keep-alive connections + {} opening one connection per request",
        steady_time.as_secs(),
        plan.connections,
        plan.per_request()
    );
    let (ka, pr) = loads(addr, &plan, steady_time);
    let steady = (ka.wait(), pr.wait());
    line("keep-alive", &steady.0);
    line("one per connection", &steady.1);

    println!(
        "\n== reload under the same load, plus {} `/slow?ms=1500` requests in flight",
        plan.slow
    );
    reload_under_load(host, exe, "hello", addr, &plan, Some(&steady.0))
}

/// Act 2: the PM2 articles' app and ecosystem file, copied as they are (app.js's port
/// aside when 3000 is taken), started with `sysmgr start ecosystem.config.js --listen` and
/// reloaded under load.
fn pm2_act(
    host: &Host,
    exe: &Path,
    app: &Pm2App,
    port: u16,
    why: Option<String>,
    plan: &Plan,
) -> anyhow::Result<bool> {
    println!(
        "\n== act 2: a PM2 app, unchanged: the PM2 articles' Express app and ecosystem file \
         (examples/pm2), on Node.js {}",
        app.node
    );
    let read = |name: &str| {
        let path = app.dir.join(name);
        std::fs::read_to_string(&path).with_context(|| format!("cannot read `{}`", path.display()))
    };
    let mut script = read("app.js")?;
    let ecosystem = read("ecosystem.config.js")?;
    let package = read("package.json")?;
    let listens = format!("const port = {PM2_PORT}\n");
    if !script.contains(&listens) {
        bail!(
            "`{}/app.js` no longer says `{}`",
            app.dir.display(),
            listens.trim_end()
        );
    }
    if port != PM2_PORT {
        script = script.replace(&listens, &format!("const port = {port}\n"));
    }
    let file = host.write("pm2/ecosystem.config.js", &ecosystem)?;
    let dir = file.parent().expect("a file in a directory").to_path_buf();
    host.write("pm2/app.js", &script)?;
    host.write("pm2/package.json", &package)?;
    let modules = host.demo_dir().1.join("pm2/node_modules");
    let _ = std::fs::remove_file(&modules);
    std::os::unix::fs::symlink(app.dir.join("node_modules"), &modules)
        .with_context(|| format!("cannot link `{}`", modules.display()))?;
    println!(
        "   app.js, ecosystem.config.js and package.json copied to {}, node_modules linked",
        dir.display()
    );
    match &why {
        None => println!(
            "   app.js listens on {PM2_PORT}, as written (`{}`)",
            listens.trim_end()
        ),
        Some(why) => println!(
            "   {why}: the copy of app.js listens on {port} instead, its one changed line: \
             `{}` -> `const port = {port}`",
            listens.trim_end()
        ),
    }
    println!(
        "\n== ecosystem.config.js, as PM2 reads it:\n{}",
        ecosystem.trim_end()
    );

    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let listen = addr.to_string();
    println!("\n$ cd {}", dir.display());
    step_in(
        host,
        exe,
        Some(&dir),
        &["start", "ecosystem.config.js", "--listen", &listen],
    )?;
    step(host, exe, &["status", PM2_APP])?;
    curl(addr, "/", 4, "the articles' Express app");
    curl(
        addr,
        "/slow?ms=10",
        4,
        "its /slow route answers with the PID of the instance",
    );

    println!(
        "\n== `sysmgr reload {PM2_APP}` (pm2 reload {PM2_APP}) under load: {} keep-alive \
         connections + {} opening one connection per request, at most {} requests/s each, \
         plus {} `/slow?ms=1500` requests in flight",
        plan.connections,
        plan.per_request(),
        plan.rate.unwrap_or(0),
        plan.slow
    );
    reload_under_load(host, exe, PM2_APP, addr, plan, None)
}
