//! The reload benchmark: what clients see of sysmgr's two socket modes, steady and during a
//! rolling reload, and how sysmgr compares with PM2's cluster mode.
//!
//! The project measures speed here, not in timed tests, and the default socket mode is
//! chosen from these numbers (docs/app-toml.md, "Socket modes"). It boots a private systemd
//! (`sysmgr-sandbox`), runs the release `sysmgr` binary inside it to start apps of the
//! reference worker (`sysmgr-hello`) in both modes, drives loopback load with `sysmgr-load`
//! (which counts failed and hung requests, unlike `wrk`), and reloads through the library's
//! [`sysmgr::reload::rollout`], the engine `sysmgr reload` runs, whose [`Summary`] has the
//! per-instance timings at full resolution (the command prints them rounded).
//!
//! The machines are small and shared: the load client and the workers compete for the same
//! cores. So every comparison is measured side by side in one run, alternating the candidates
//! round by round (ABAB), and reported as medians and as the median of the per-round ratios.
//! Each load is bounded in time; each loop in count.
//!
//! Run it as root, after building the worker beside the binary (see BENCHMARKS.md):
//! `cargo build --release -p sysmgr -p sysmgr-hello && cargo bench --bench reload`.
//! `SYSMGR_BENCH_ROUNDS` (default 5), `SYSMGR_BENCH_SECONDS` (per measurement, default 1.5),
//! `SYSMGR_BENCH_PARTS` (which parts, default `hardening,hello,node,express`) and
//! `SYSMGR_BENCH_PM2=0` (skip the parts that need PM2) shorten it. Markdown tables go to stdout,
//! progress to
//! stderr.
//!
//! The parts: `hello`, sysmgr's socket modes with the reference worker; `node`, a Node app
//! written for sysmgr under PM2's cluster mode and under sysmgr; `express`, PM2's own app
//! (the articles' graceful Express app.js and ecosystem.config.js, unchanged) under both, and
//! the cost of sysmgr's Node bridge itself ([`express`], [`bridge`]); `surge`, not in the
//! default list (it takes about 8 minutes), `sysmgr reload` (surge) against `sysmgr reload
//! --surge 0` (in place) and `pm2 reload` under clients looping on slow requests, for each
//! drain time of `SYSMGR_BENCH_DRAINS` (seconds, default `0,1.5,5`) ([`surge`]):
//! `SYSMGR_BENCH_PARTS=surge cargo bench --bench reload`.

mod bridge;
mod express;
#[path = "../common/facts.rs"]
mod facts;
mod pm2;
mod surge;
#[path = "../common/table.rs"]
mod table;

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use sysmgr::names::Generations;
use sysmgr::reload::{InstanceReport, Options, Summary};
use sysmgr::systemd::dbus::Systemd;
use sysmgr::systemd::Manager;
use sysmgr_load::{Background, LoadConfig, Mode, Report};
use sysmgr_sandbox::Sandbox;
use table::median;

/// Connections of a throughput measurement. Moderate on purpose: on 2 cores, more connections
/// only measure the client's and the scheduler's overhead.
const THROUGHPUT_CONNECTIONS: usize = 16;
/// The load during a reload, as in `sysmgr-demo`: keep-alive clients plus a quarter as many
/// opening a connection per request, both paced (see [`RELOAD_LOAD_SHARE`]).
const RELOAD_KEEP_ALIVE_CONNECTIONS: usize = 16;
const RELOAD_PER_REQUEST_CONNECTIONS: usize = 4;
/// Each of the two reload loads asks for this share of the capacity measured for its kind, so
/// together they keep the machine busy without saturating it: latency then shows waiting
/// caused by the reload rather than queueing behind a saturated CPU.
const RELOAD_LOAD_SHARE: f64 = 0.3;
/// A request without an answer after this long counts as hung.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Instances reloaded under load (the case).
const RELOAD_INSTANCES: u32 = 4;
/// Node processes in the PM2 comparison (the reference measurement used two).
const NODE_INSTANCES: u32 = 2;
/// Reload rounds in the PM2 comparison (a PM2 reload takes seconds).
const NODE_RELOAD_ROUNDS: usize = 3;

/// How long and how often, from the environment.
struct Settings {
    rounds: usize,
    seconds: Duration,
    parts: Parts,
    /// The drain times of the `surge` part (`SYSMGR_BENCH_DRAINS`).
    drains: Vec<Duration>,
}

/// Which parts of the benchmark run.
struct Parts {
    hardening: bool,
    hello: bool,
    node: bool,
    express: bool,
    surge: bool,
    /// `pm2 reload` beside sysmgr's in the `surge` part (unless `SYSMGR_BENCH_PM2=0`).
    surge_pm2: bool,
}

impl Settings {
    fn from_env() -> Settings {
        let var = |name| std::env::var(name).ok();
        let rounds = var("SYSMGR_BENCH_ROUNDS")
            .and_then(|s| s.parse().ok())
            .unwrap_or(5usize)
            .clamp(1, 20);
        let seconds = var("SYSMGR_BENCH_SECONDS")
            .and_then(|s| s.parse().ok())
            .unwrap_or(1.5f64)
            .clamp(0.5, 10.0);
        let pm2 = var("SYSMGR_BENCH_PM2").as_deref() != Some("0");
        let parts =
            var("SYSMGR_BENCH_PARTS").unwrap_or_else(|| "hardening,hello,node,express".into());
        let wanted = |part: &str| parts.split(',').any(|p| p.trim() == part);
        Settings {
            rounds,
            seconds: Duration::from_secs_f64(seconds),
            parts: Parts {
                hardening: wanted("hardening"),
                hello: wanted("hello"),
                node: pm2 && wanted("node"),
                express: pm2 && wanted("express"),
                surge: wanted("surge"),
                surge_pm2: pm2,
            },
            drains: surge::drains(var("SYSMGR_BENCH_DRAINS").as_deref()),
        }
    }
}

/// The two ways sysmgr hands a port to the instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Socket {
    /// One `NAME.socket` inherited by every instance.
    Shared,
    /// `NAME@N.socket` with `ReusePort=yes` per instance.
    PerInstance,
}

impl Socket {
    fn key(self) -> &'static str {
        match self {
            Socket::Shared => "shared",
            Socket::PerInstance => "per-instance",
        }
    }
}

/// An app started in the sandbox.
struct App {
    name: String,
    addr: SocketAddr,
    instances: u32,
}

/// Something load is aimed at in a comparison: a label and an address.
struct Target<'a> {
    label: &'a str,
    addr: SocketAddr,
}

const LOADS: [(Mode, &str); 2] = [
    (Mode::KeepAlive, "keep-alive"),
    (Mode::PerRequest, "one request per connection"),
];

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench reload: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let settings = Settings::from_env();
    let started = Instant::now();
    sysmgr_sandbox::preflight().context("the benchmark boots a private systemd")?;
    let sysmgr = PathBuf::from(env!("CARGO_BIN_EXE_sysmgr"));
    let bin_dir = sysmgr
        .parent()
        .expect("a file in a directory")
        .to_path_buf();
    let hello = bin_dir.join("sysmgr-hello");
    if (settings.parts.hello || settings.parts.surge) && !hello.exists() {
        bail!(
            "`{}` is missing; build it beside sysmgr first: `cargo build --release -p sysmgr -p sysmgr-hello` (with the same CARGO_TARGET_DIR)",
            hello.display()
        );
    }
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut binds = vec![repo.clone()];
    if !bin_dir.starts_with(&repo) {
        binds.push(bin_dir.clone());
    }
    eprintln!("booting a private systemd");
    let sb = Sandbox::boot(sysmgr_sandbox::Options {
        binds,
        dir_prefix: "sysmgr-bench".into(),
        ..Default::default()
    })?;
    // The rollout runs in this process and talks to the sandbox's systemd. Set before any
    // thread starts (the load runs on threads).
    std::env::set_var("DBUS_SYSTEM_BUS_ADDRESS", sb.bus_address());
    let bench = Bench {
        sb,
        sysmgr,
        settings,
        rt: tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?,
    };

    let mut out = String::new();
    machine(&mut out, &bench.settings);

    // 0. The hardening profile's cost: the same app with and without it.
    if bench.settings.parts.hardening {
        bench.hardening_comparison(&hello, &mut out)?;
    }

    let mut hello_apps = Vec::new();
    if bench.settings.parts.hello {
        hello_apps = bench.hello_parts(&hello, &mut out)?;
    }
    // The hello apps idle from here on; stop them so they cost nothing.
    for app in &hello_apps {
        bench.sysmgr_cmd(&["stop", &app.name])?;
    }

    // 3. PM2's cluster mode against sysmgr, the same Node app.
    if bench.settings.parts.node {
        if let Err(e) = bench.node_comparison(&repo, &mut out) {
            eprintln!("PM2 comparison skipped: {e:#}");
            writeln!(out, "\nPM2 comparison skipped: {e:#}")?;
        }
    }

    // 4. PM2's own app, unchanged, under PM2 and under sysmgr; the bridge's own cost.
    if bench.settings.parts.express {
        if let Err(e) = express::run(&bench, &repo, &mut out) {
            eprintln!("Express comparison skipped: {e:#}");
            writeln!(out, "\nExpress comparison skipped: {e:#}")?;
        }
    }

    // 5. Surge against in-place reloads and `pm2 reload` under slow requests.
    if bench.settings.parts.surge {
        if let Err(e) = surge::run(&bench, &hello, &repo, &mut out) {
            eprintln!("surge comparison stopped: {e:#}");
            writeln!(out, "\nSurge comparison stopped: {e:#}")?;
        }
    }

    writeln!(
        out,
        "\nWhole run: {:.0} s.",
        started.elapsed().as_secs_f64()
    )?;
    println!("{out}");
    Ok(())
}

struct Bench {
    sb: Sandbox,
    sysmgr: PathBuf,
    settings: Settings,
    rt: tokio::runtime::Runtime,
}

/// What one reload round saw.
struct ReloadRound {
    steady: [Report; 2],
    during: [Report; 2],
    wall: Duration,
    /// The rollout's own report (sysmgr's engine only).
    summary: Option<Summary>,
    /// Slow requests sent just before the reload, and how many of them were answered 200.
    slow_sent: usize,
    slow_ok: usize,
}

/// Slow requests in flight when a reload starts: how many, and the path that makes them slow.
#[derive(Clone, Copy)]
struct Slow {
    count: usize,
    path: &'static str,
}

impl Slow {
    const NONE: Slow = Slow { count: 0, path: "" };
}

impl Bench {
    /// A command inside the sandbox. Without the bus address this process set for itself:
    /// inside, the system bus is at its usual path.
    fn inside(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = self.sb.command(program);
        cmd.env_remove("DBUS_SYSTEM_BUS_ADDRESS");
        cmd
    }

    /// Parts 1 and 2: sysmgr-hello's steady throughput in both socket modes with 2 and 4
    /// instances, then reloads of 4 instances under load. Returns the apps it started.
    fn hello_parts(&self, hello: &Path, out: &mut String) -> anyhow::Result<Vec<App>> {
        // 1. Steady throughput, both modes, 2 and 4 instances.
        let mut hello_apps = Vec::new();
        for n in [2, 4] {
            for socket in [Socket::Shared, Socket::PerInstance] {
                let name = format!("hello-{}-{n}", socket.key());
                let app = self.start_app(&name, &[hello.display().to_string()], n, socket, "")?;
                hello_apps.push((n, socket, app));
            }
        }
        let find = |n: u32, socket: Socket| {
            hello_apps
                .iter()
                .find(|(m, s, _)| *m == n && *s == socket)
                .map(|(_, _, app)| app)
                .expect("started above")
        };
        writeln!(
            out,
            "\n### Steady throughput, sysmgr-hello: shared socket vs per-instance `ReusePort`\n\n\
             {} connections, {:.1} s per measurement, {} rounds alternating the modes; requests/s, median of rounds.\n",
            THROUGHPUT_CONNECTIONS,
            self.settings.seconds.as_secs_f64(),
            self.settings.rounds
        )?;
        out.push_str(&table::header(&[
            "instances",
            "load",
            "shared req/s",
            "per-instance req/s",
            "shared / per-instance (median of round ratios)",
            "busiest instance's share of answers, shared / per-instance",
            "failed",
        ]));
        let mut capacity = [f64::MAX; 2];
        for n in [2, 4] {
            let targets = [
                Target {
                    label: "shared",
                    addr: find(n, Socket::Shared).addr,
                },
                Target {
                    label: "per-instance",
                    addr: find(n, Socket::PerInstance).addr,
                },
            ];
            let results = self.compare(&targets, &format!("{n} instances"));
            for (l, (_, load)) in LOADS.iter().enumerate() {
                let shared = &results[l][0];
                let per = &results[l][1];
                let failed: u64 = shared.iter().chain(per).map(|r| r.failed).sum();
                writeln!(
                    out,
                    "| {n} | {load} | {:.0} | {:.0} | {:.2}x | {:.0}% / {:.0}% | {failed} |",
                    median(throughputs(shared)),
                    median(throughputs(per)),
                    median(ratios(shared, per)),
                    busiest(shared),
                    busiest(per),
                )?;
                if n == RELOAD_INSTANCES {
                    capacity[l] = median(throughputs(shared)).min(median(throughputs(per)));
                }
            }
        }

        // 2. Reload of 4 instances under load, both modes.
        let rates = capacity.map(|c| (c * RELOAD_LOAD_SHARE).max(100.0) as u32);
        writeln!(
            out,
            "\n### Reload of {RELOAD_INSTANCES} instances under load, sysmgr-hello\n\n\
             Load during each round: {RELOAD_KEEP_ALIVE_CONNECTIONS} keep-alive connections paced at {} req/s in all, plus \
             {RELOAD_PER_REQUEST_CONNECTIONS} connections opening one connection per request paced at {} req/s \
             (each {:.0}% of the slower mode's capacity above); steady = the same load for {:.1} s just before the reload. \
             Requests, failed and hung: sums over {} rounds; latencies and times: medians of rounds. \
             `sysmgr reload` defaults: one instance at a time, 300 ms min-ready.\n",
            rates[0],
            rates[1],
            RELOAD_LOAD_SHARE * 100.0,
            self.settings.seconds.as_secs_f64(),
            self.settings.rounds,
        )?;
        let mut reloads: Vec<(Socket, Vec<ReloadRound>)> = vec![
            (Socket::Shared, Vec::new()),
            (Socket::PerInstance, Vec::new()),
        ];
        for round in 0..self.settings.rounds {
            for k in rotated(2, round) {
                let socket = reloads[k].0;
                let app = find(RELOAD_INSTANCES, socket);
                eprintln!(
                    "reload round {}/{}: {}",
                    round + 1,
                    self.settings.rounds,
                    socket.key()
                );
                let r = self.reload_round(app.addr, rates, Slow::NONE, || self.rollout(app))?;
                reloads[k].1.push(r);
            }
        }
        client_table(
            out,
            "socket",
            reloads.iter().map(|(s, r)| (s.key(), r.as_slice())),
        )?;
        timing_table(
            out,
            "socket",
            reloads.iter().map(|(s, r)| (s.key(), r.as_slice())),
        )?;
        failures_note(out, reloads.iter().map(|(s, r)| (s.key(), r.as_slice())))?;
        Ok(hello_apps.into_iter().map(|(_, _, app)| app).collect())
    }

    /// `sysmgr ARGS` inside the sandbox; its stdout, or an error with its stderr.
    fn sysmgr_cmd(&self, args: &[&str]) -> anyhow::Result<String> {
        Ok(self.sysmgr_output(args)?.0)
    }

    /// `sysmgr ARGS` inside the sandbox; its stdout and stderr, or an error with its stderr.
    fn sysmgr_output(&self, args: &[&str]) -> anyhow::Result<(String, String)> {
        let out = self
            .inside(&self.sysmgr)
            .args(args)
            .output()
            .context("cannot run nsenter")?;
        if !out.status.success() {
            bail!(
                "`sysmgr {}` failed ({}): {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok((
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    }

    /// Writes an app file into the sandbox, `sysmgr start`s it and waits until every
    /// instance is active and the port answers.
    fn start_app(
        &self,
        name: &str,
        command: &[String],
        instances: u32,
        socket: Socket,
        extra: &str,
    ) -> anyhow::Result<App> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let argv = command
            .iter()
            .map(|a| format!("{a:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        // Everything else at its default, as a user's app file would be.
        let text = format!(
            "name = \"{name}\"\ncommand = [{argv}]\ninstances = {instances}\n\
             listen = [\"127.0.0.1:{port}\"]\nsocket = \"{}\"\nlisten_timeout = \"10s\"\n{extra}",
            socket.key()
        );
        let inside = format!("/srv/bench/{name}.toml");
        let host = self.sb.root().join(inside.trim_start_matches('/'));
        std::fs::create_dir_all(host.parent().expect("a file in a directory"))?;
        std::fs::write(&host, text)?;
        eprintln!("starting {name} ({instances} instances, {})", socket.key());
        self.sysmgr_cmd(&["start", &inside])?;
        let units: Vec<String> = (1..=instances)
            .map(|i| format!("{name}@{i}.service"))
            .collect();
        let active = || {
            self.inside("systemctl")
                .args(["is-active", "--quiet"])
                .args(&units)
                .status()
                .is_ok_and(|s| s.success())
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !active() {
            if Instant::now() > deadline {
                bail!("`{name}` did not become active within 20 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        sysmgr_load::get_blocking(addr, "/", REQUEST_TIMEOUT)
            .map_err(|e| anyhow::anyhow!("`{name}` does not answer on {addr}: {e}"))?;
        Ok(App {
            name: name.into(),
            addr,
            instances,
        })
    }

    /// Saturating throughput of sysmgr-hello (2 instances, shared socket) with the default
    /// hardening profile (every setting, `systemd_version = 252`) and with `hardening = "off"`.
    fn hardening_comparison(&self, hello: &Path, out: &mut String) -> anyhow::Result<()> {
        let command = [hello.display().to_string()];
        let on = self.start_app(
            "hello-hardened",
            &command,
            2,
            Socket::Shared,
            "systemd_version = 252\n",
        )?;
        let off = self.start_app(
            "hello-off",
            &command,
            2,
            Socket::Shared,
            "hardening = \"off\"\n",
        )?;
        let targets = [
            Target {
                label: "hardened",
                addr: on.addr,
            },
            Target {
                label: "off",
                addr: off.addr,
            },
        ];
        let results = self.compare(&targets, "hardening");
        writeln!(
            out,
            "\n### Steady throughput, sysmgr-hello with and without the hardening profile\n\n\
             2 instances, shared socket; {} connections, {:.1} s per measurement, {} rounds \
             alternating the two apps; requests/s, median of rounds.\n",
            THROUGHPUT_CONNECTIONS,
            self.settings.seconds.as_secs_f64(),
            self.settings.rounds
        )?;
        out.push_str(&table::header(&[
            "load",
            "hardened req/s",
            "off req/s",
            "hardened / off (median of round ratios)",
            "failed",
        ]));
        for (l, (_, load)) in LOADS.iter().enumerate() {
            let (hardened, plain) = (&results[l][0], &results[l][1]);
            let failed: u64 = hardened.iter().chain(plain).map(|r| r.failed).sum();
            writeln!(
                out,
                "| {load} | {:.0} | {:.0} | {:.2}x | {failed} |",
                median(throughputs(hardened)),
                median(throughputs(plain)),
                median(ratios(hardened, plain)),
            )?;
        }
        for app in [&on, &off] {
            self.sysmgr_cmd(&["stop", &app.name])?;
        }
        Ok(())
    }

    /// Saturating throughput of each target under each kind of load, in rounds that rotate
    /// the order of the targets; `[load][target][round]`.
    fn compare(&self, targets: &[Target<'_>], what: &str) -> Vec<Vec<Vec<Report>>> {
        // Warm-up: first connections, page cache, CPU frequency.
        for t in targets {
            let _ = measure(
                t.addr,
                Mode::KeepAlive,
                Duration::from_millis(500),
                None,
                16,
            );
        }
        let mut results: Vec<Vec<Vec<Report>>> = LOADS
            .iter()
            .map(|_| targets.iter().map(|_| Vec::new()).collect())
            .collect();
        for round in 0..self.settings.rounds {
            for (l, (mode, load)) in LOADS.iter().enumerate() {
                for k in rotated(targets.len(), round) {
                    let r = measure(
                        targets[k].addr,
                        *mode,
                        self.settings.seconds,
                        None,
                        THROUGHPUT_CONNECTIONS,
                    );
                    eprintln!(
                        "{what}, {load}, round {}: {} {:.0} req/s, {} failed",
                        round + 1,
                        targets[k].label,
                        r.throughput,
                        r.failed
                    );
                    results[l][k].push(r);
                }
            }
        }
        results
    }

    /// A steady measurement and then one reload (`reload`, returning its summary if it is
    /// sysmgr's engine and its wall time) under the same paced load, with `slow` requests in
    /// flight when it starts.
    fn reload_round(
        &self,
        addr: SocketAddr,
        rates: [u32; 2],
        slow: Slow,
        reload: impl FnOnce() -> anyhow::Result<(Duration, Option<Summary>)>,
    ) -> anyhow::Result<ReloadRound> {
        let loads = |duration| {
            [
                (Mode::KeepAlive, RELOAD_KEEP_ALIVE_CONNECTIONS, rates[0]),
                (Mode::PerRequest, RELOAD_PER_REQUEST_CONNECTIONS, rates[1]),
            ]
            .map(|(mode, connections, rate)| {
                Background::start(LoadConfig {
                    mode,
                    connections,
                    rate: Some(rate),
                    duration,
                    request_timeout: REQUEST_TIMEOUT,
                    ..LoadConfig::new(addr)
                })
            })
        };
        let steady = loads(self.settings.seconds).map(Background::wait);
        // The reload's load is stopped once the reload is done; the duration is only a bound.
        let during = loads(Duration::from_secs(120));
        let slow_requests: Vec<_> = (0..slow.count)
            .map(|_| {
                std::thread::spawn(move || {
                    sysmgr_load::get_blocking(addr, slow.path, Duration::from_secs(20))
                })
            })
            .collect();
        // Also lets the slow requests reach their processes before the first one is stopped.
        std::thread::sleep(Duration::from_millis(300));
        let reloaded = reload();
        // Requests in flight at the end of the reload belong to it.
        std::thread::sleep(Duration::from_millis(300));
        let during = during.map(Background::stop);
        // Each is bounded by its own 20 s timeout.
        let slow_ok = slow_requests
            .into_iter()
            .map(|h| h.join())
            .filter(|answer| matches!(answer, Ok(Ok((200, _)))))
            .count();
        let (wall, summary) = reloaded?;
        Ok(ReloadRound {
            steady,
            during,
            wall,
            summary,
            slow_sent: slow.count,
            slow_ok,
        })
    }

    /// `sysmgr reload NAME`'s engine, on a fresh connection as the command makes one.
    fn rollout(&self, app: &App) -> anyhow::Result<(Duration, Option<Summary>)> {
        let plan: Vec<u32> = (1..=app.instances).collect();
        // Every slot at generation 0 (`NAME@N.service`): the apps here are only ever
        // restarted in place, by this engine.
        let generations = Generations::default();
        let summary = self.rt.block_on(async {
            let sd = Systemd::connect(Manager::System).await?;
            anyhow::Ok(
                sysmgr::reload::rollout(
                    &sd,
                    &app.name,
                    &plan,
                    &generations,
                    &Options::default(),
                    &mut |_| {},
                )
                .await,
            )
        })?;
        if !summary.completed() {
            let failed = summary
                .failed()
                .expect("an incomplete rollout has a failure");
            bail!(
                "the reload of `{}` halted at `{}`: {}",
                app.name,
                failed.unit,
                failed
                    .failure
                    .as_ref()
                    .map_or_else(String::new, |f| f.reason.to_string())
            );
        }
        if let Some(same) = summary.instances.iter().find(|i| i.old_pid == i.new_pid) {
            bail!("the reload left `{}` with its old process", same.unit);
        }
        Ok((summary.wall, Some(summary)))
    }

    /// The same Node app (examples/node/app.js) under PM2's cluster mode and under sysmgr
    /// with either socket mode: throughput, then PM2's reload against sysmgr's.
    fn node_comparison(&self, repo: &Path, out: &mut String) -> anyhow::Result<()> {
        let app_js = repo.join("examples/node/app.js");
        let node = "/usr/bin/node";
        if !Path::new(node).exists() {
            bail!("`{node}` is missing");
        }
        let prefix = pm2_prefix(repo);
        eprintln!("installing PM2 under {}", prefix.display());
        let pm2_bin = pm2::install(&prefix).map_err(anyhow::Error::msg)?;
        let pm2_version = pm2::version(&prefix);
        let command = [node.to_string(), app_js.display().to_string()];
        let shared = self.start_app("node-shared", &command, NODE_INSTANCES, Socket::Shared, "")?;
        let per = self.start_app(
            "node-reuse",
            &command,
            NODE_INSTANCES,
            Socket::PerInstance,
            "",
        )?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        eprintln!("starting PM2 ({NODE_INSTANCES} cluster workers)");
        let mut pm2 =
            pm2::Pm2::start(&pm2_bin, &app_js, NODE_INSTANCES, port).map_err(anyhow::Error::msg)?;
        let pm2_addr = SocketAddr::from(([127, 0, 0, 1], port));
        sysmgr_load::get_blocking(pm2_addr, "/", REQUEST_TIMEOUT)
            .map_err(|e| anyhow::anyhow!("PM2's app does not answer on {pm2_addr}: {e}"))?;

        let targets = [
            Target {
                label: "PM2 cluster",
                addr: pm2_addr,
            },
            Target {
                label: "sysmgr shared",
                addr: shared.addr,
            },
            Target {
                label: "sysmgr per-instance",
                addr: per.addr,
            },
        ];
        let results = self.compare(&targets, "node");
        writeln!(
            out,
            "\n### The same Node app: PM2 cluster mode vs sysmgr\n\n\
             `examples/node/app.js`, {NODE_INSTANCES} processes, node {}, PM2 {pm2_version}; \
             PM2's workers get connections from its master process, sysmgr's take them from \
             systemd's socket. {} connections, {:.1} s per measurement, {} rounds rotating the \
             three; requests/s, median of rounds.\n",
            Command::new(node)
                .arg("--version")
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
                .unwrap_or_default(),
            THROUGHPUT_CONNECTIONS,
            self.settings.seconds.as_secs_f64(),
            self.settings.rounds
        )?;
        out.push_str(&table::header(&[
            "load",
            "PM2 cluster req/s",
            "sysmgr shared req/s",
            "sysmgr per-instance req/s",
            "shared / PM2",
            "per-instance / PM2",
            "shared / per-instance",
            "busiest process's share, PM2 / shared / per-instance",
            "failed",
        ]));
        let mut capacity = [f64::MAX; 2];
        for (l, (_, load)) in LOADS.iter().enumerate() {
            let [p, s, r] = [0, 1, 2].map(|k| &results[l][k]);
            let failed: u64 = p.iter().chain(s).chain(r).map(|x| x.failed).sum();
            writeln!(
                out,
                "| {load} | {:.0} | {:.0} | {:.0} | {:.2}x | {:.2}x | {:.2}x | {:.0}% / {:.0}% / {:.0}% | {failed} |",
                median(throughputs(p)),
                median(throughputs(s)),
                median(throughputs(r)),
                median(ratios(s, p)),
                median(ratios(r, p)),
                median(ratios(s, r)),
                busiest(p),
                busiest(s),
                busiest(r),
            )?;
            capacity[l] = [p, s, r]
                .iter()
                .map(|x| median(throughputs(x)))
                .fold(f64::MAX, f64::min);
        }

        // Reloads under the same paced load: PM2's and sysmgr's in both socket modes. Node
        // takes far longer to start than sysmgr-hello, which is what a connection queued on a
        // restarting instance's own `ReusePort` socket waits for.
        let rates = capacity.map(|c| (c * RELOAD_LOAD_SHARE).max(100.0) as u32);
        let mut rounds: Vec<(&str, Vec<ReloadRound>)> = vec![
            ("pm2 reload", Vec::new()),
            ("sysmgr reload, shared", Vec::new()),
            ("sysmgr reload, per-instance", Vec::new()),
        ];
        for round in 0..NODE_RELOAD_ROUNDS {
            for k in rotated(3, round) {
                eprintln!(
                    "node reload round {}/{NODE_RELOAD_ROUNDS}: {}",
                    round + 1,
                    rounds[k].0
                );
                let r = match k {
                    0 => self.reload_round(pm2_addr, rates, Slow::NONE, || {
                        Ok((pm2.reload().map_err(anyhow::Error::msg)?, None))
                    })?,
                    1 => {
                        self.reload_round(shared.addr, rates, Slow::NONE, || self.rollout(&shared))?
                    }
                    _ => self.reload_round(per.addr, rates, Slow::NONE, || self.rollout(&per))?,
                };
                rounds[k].1.push(r);
            }
        }
        drop(pm2);
        writeln!(
            out,
            "\nReload of the {NODE_INSTANCES} Node processes under load ({} keep-alive req/s + {} \
             one-per-connection req/s, paced as above); sums over {NODE_RELOAD_ROUNDS} rounds \
             rotating the three, medians of rounds:\n",
            rates[0], rates[1]
        )?;
        client_table(
            out,
            "manager",
            rounds.iter().map(|(m, r)| (*m, r.as_slice())),
        )?;
        timing_table(
            out,
            "manager",
            rounds.iter().map(|(m, r)| (*m, r.as_slice())),
        )?;
        failures_note(out, rounds.iter().map(|(m, r)| (*m, r.as_slice())))?;
        Ok(())
    }
}

/// Where the benchmark installs PM2 and keeps PM2's copy of an app: beside the build, never
/// in the repository's tracked files.
fn pm2_prefix(repo: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo.join("target"))
        .join("pm2")
}

/// One bounded load run.
fn measure(
    addr: SocketAddr,
    mode: Mode,
    duration: Duration,
    rate: Option<u32>,
    connections: usize,
) -> Report {
    Background::start(LoadConfig {
        mode,
        connections,
        rate,
        duration,
        request_timeout: REQUEST_TIMEOUT,
        ..LoadConfig::new(addr)
    })
    .wait()
}

/// The order of `n` candidates in round `round`: rotated by one each round (ABAB for two), so
/// no candidate always runs first, on a cold cache, or last, on a hot machine.
fn rotated(n: usize, round: usize) -> impl Iterator<Item = usize> {
    (0..n).map(move |i| (i + round) % n)
}

fn throughputs(reports: &[Report]) -> Vec<f64> {
    reports.iter().map(|r| r.throughput).collect()
}

/// Per-round ratios a/b: measured side by side, so drift of the machine cancels out.
fn ratios(a: &[Report], b: &[Report]) -> Vec<f64> {
    a.iter()
        .zip(b)
        .map(|(x, y)| x.throughput / y.throughput.max(1e-9))
        .collect()
}

/// How evenly the processes shared the work: the share of answers (each names its process)
/// that came from the busiest one, in percent, median of rounds. With N processes, 100/N is
/// perfectly even.
fn busiest(reports: &[Report]) -> f64 {
    median(
        reports
            .iter()
            .map(|r| {
                let top = r.bodies.iter().map(|(_, n)| *n).max().unwrap_or(0);
                100.0 * top as f64 / r.ok.max(1) as f64
            })
            .collect(),
    )
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Requests, failures and latency the clients saw, steady and during the reload.
fn client_table<'a>(
    out: &mut String,
    what: &str,
    rows: impl Iterator<Item = (&'a str, &'a [ReloadRound])>,
) -> std::fmt::Result {
    out.push_str(&table::header(&[
        what,
        "load",
        "requests during reloads",
        "failed",
        "hung",
        "p50 steady",
        "p50 reload",
        "p99 steady",
        "p99 reload",
        "max reload",
    ]));
    for (label, rounds) in rows {
        for (l, (_, load)) in LOADS.iter().enumerate() {
            let sum = |f: fn(&Report) -> u64| rounds.iter().map(|r| f(&r.during[l])).sum::<u64>();
            let lat = |steady: bool, f: fn(&Report) -> Duration| {
                median(
                    rounds
                        .iter()
                        .map(|r| ms(f(if steady { &r.steady[l] } else { &r.during[l] })))
                        .collect(),
                )
            };
            writeln!(
                out,
                "| {label} | {load} | {} | {} | {} | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms | {:.1} ms |",
                sum(|r| r.requests),
                sum(|r| r.failed),
                sum(|r| r.hung),
                lat(true, |r| r.latency.p50),
                lat(false, |r| r.latency.p50),
                lat(true, |r| r.latency.p99),
                lat(false, |r| r.latency.p99),
                lat(false, |r| r.latency.max),
            )?;
        }
    }
    Ok(())
}

/// Reload wall time and, for sysmgr's rollouts, where each instance's time went.
fn timing_table<'a>(
    out: &mut String,
    what: &str,
    rows: impl Iterator<Item = (&'a str, &'a [ReloadRound])>,
) -> std::fmt::Result {
    out.push('\n');
    out.push_str(&table::header(&[
        what,
        "reload wall time",
        "per instance: total",
        "restart job (stop, start, READY=1)",
        "min-ready wait",
        "controller overhead per instance",
    ]));
    for (label, rounds) in rows {
        let wall = median(rounds.iter().map(|r| ms(r.wall)).collect());
        let summaries: Vec<&Summary> = rounds.iter().filter_map(|r| r.summary.as_ref()).collect();
        if summaries.is_empty() {
            writeln!(out, "| {label} | {wall:.0} ms | | | | |")?;
            continue;
        }
        let per_instance = |f: fn(&InstanceReport) -> Duration| {
            median(
                summaries
                    .iter()
                    .flat_map(|s| s.instances.iter().map(|i| ms(f(i))))
                    .collect(),
            )
        };
        writeln!(
            out,
            "| {label} | {wall:.0} ms | {:.0} ms | {:.0} ms | {:.0} ms | {:.1} ms |",
            per_instance(|i| i.total),
            per_instance(|i| i.job),
            per_instance(|i| i.settle),
            per_instance(|i| i.overhead()),
        )?;
    }
    Ok(())
}

/// The kinds of failure seen, so a failed count in a table can be told apart.
fn failures_note<'a>(
    out: &mut String,
    rows: impl Iterator<Item = (&'a str, &'a [ReloadRound])>,
) -> std::fmt::Result {
    for (label, rounds) in rows {
        let mut kinds: Vec<(String, u64)> = Vec::new();
        for r in rounds.iter().flat_map(|r| r.during.iter().chain(&r.steady)) {
            for (kind, n) in &r.failures {
                match kinds.iter_mut().find(|(k, _)| k == kind) {
                    Some((_, m)) => *m += n,
                    None => kinds.push((kind.clone(), *n)),
                }
            }
        }
        if !kinds.is_empty() {
            let list: Vec<String> = kinds.iter().map(|(k, n)| format!("{n} x {k}")).collect();
            writeln!(out, "\nFailures, {label}: {}.", list.join("; "))?;
        }
    }
    Ok(())
}

/// Date and machine facts, for the record.
fn machine(out: &mut String, settings: &Settings) {
    let sh = |cmd: &str, args: &[&str]| {
        Command::new(cmd)
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    };
    use facts::{cpu_model, read, utc_now};
    let cpu = cpu_model();
    let systemd = sh("systemctl", &["--version"]);
    let _ = writeln!(
        out,
        "## Run of {}\n\n\
         - machine: {} CPUs (`nproc`), {cpu}; kernel {}; {}; `net.ipv4.tcp_migrate_req` = {}\n\
         - the load client (`sysmgr-load`, one thread per load) runs on the same CPUs as the workers\n\
         - {} rounds, {:.1} s per throughput measurement",
        utc_now(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        read("/proc/sys/kernel/osrelease"),
        systemd.lines().next().unwrap_or("systemd unknown"),
        read("/proc/sys/net/ipv4/tcp_migrate_req"),
        settings.rounds,
        settings.seconds.as_secs_f64(),
    );
}
