//! The read benchmark: how long `sysmgr list` and `sysmgr status NAME` take, as a user runs
//! them (the whole process: start, connecting to systemd, the calls, printing), side by side
//! with `systemctl list-units` for the same units and with `pm2 jlist` for as many PM2
//! processes.
//!
//! It boots a private systemd (`sysmgr-sandbox`), starts one app of 8, 64 and 1024 instances
//! in turn (`/bin/sleep`, on a shared socket: what runs does not change what systemd is
//! asked) and then a machine of 200 apps of one instance, and times each command in rounds
//! that rotate their order. The commands inside the sandbox are timed there, by this same
//! executable started through `nsenter` once per round ([`INSIDE`]), so `nsenter`'s own cost
//! is not in the figures; `pm2 jlist` runs on the host against a PM2 daemon of its own, once
//! per round, before the sandbox's commands in even rounds and after them in odd ones.
//! Quoted: medians of wall and CPU time (`wait4`), the median of per-round ratios, and the
//! CPU systemd spent per command (from `/proc/1/task/*/schedstat` inside).
//!
//! Run it as root (see BENCHMARKS.md): `cargo bench --bench list`. Knobs:
//! `SYSMGR_BENCH_ROUNDS` (default 20), `SYSMGR_BENCH_SIZES` (default `8,64,1024`),
//! `SYSMGR_BENCH_APPS` (the many-apps machine, default 200, 0 skips it), `SYSMGR_BENCH_PM2=0`
//! (no PM2), `SYSMGR_BENCH_PM2_MAX` (the most PM2 processes started, default 64) and
//! `SYSMGR_BENCH_BASELINE=PATH` (another sysmgr binary, e.g. an older build, timed beside).
//! Markdown on stdout, progress on stderr.

#[path = "../common/facts.rs"]
mod facts;
#[allow(dead_code)] // The reload benchmark's PM2 driver; this one uses part of it.
#[path = "../reload/pm2.rs"]
mod pm2;
#[path = "../common/table.rs"]
mod table;

use std::fmt::Write as _;
use std::io::Read as _;
use std::os::fd::AsRawFd as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use sysmgr_sandbox::Sandbox;
use table::median;

/// The first argument of this executable when it runs as the timer inside the sandbox.
const INSIDE: &str = "--inside-timer";
/// The app of the per-size part.
const APP: &str = "bench";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(INSIDE) {
        return match inside(&args[2..]) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("inside timer: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench list: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// One timed run of a command.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
struct Sample {
    wall_us: u64,
    /// The command's user + system time.
    cpu_us: u64,
    /// CPU time systemd (PID 1) spent meanwhile; 0 on the host.
    server_us: u64,
    /// Exit code (-1: killed by a signal).
    code: i32,
    /// Bytes it wrote to stdout.
    bytes: usize,
}

/// Runs `argv` with its stdout read through a pipe to the end (as a terminal or a script
/// would) and stderr discarded; times it from spawn to reaping.
fn time_run(
    argv: &[String],
    env: &[(String, String)],
    server: impl Fn() -> u64,
) -> anyhow::Result<Sample> {
    let server_before = server();
    let start = Instant::now();
    let mut child = Command::new(&argv[0])
        .args(&argv[1..])
        .envs(env.iter().cloned())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot run `{}`", argv[0]))?;
    let mut out = Vec::new();
    child.stdout.take().expect("piped").read_to_end(&mut out)?;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to fill in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for the child this function spawned; both pointers are to locals.
    let pid = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    let wall = start.elapsed();
    if pid < 0 {
        bail!("wait4: {}", std::io::Error::last_os_error());
    }
    let tv = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    Ok(Sample {
        wall_us: wall.as_micros() as u64,
        cpu_us: tv(usage.ru_utime) + tv(usage.ru_stime),
        server_us: server().saturating_sub(server_before),
        code: if libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status)
        } else {
            -1
        },
        bytes: out.len(),
    })
}

/// CPU time of every thread of `pid` so far, in µs (`schedstat`'s first field, ns).
fn cpu_of(pid: &str) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum::<u64>()
        / 1000
}

/// Inside the sandbox: runs each command given (a JSON array of argvs) once, in order, and
/// prints their samples as a JSON array.
fn inside(args: &[String]) -> anyhow::Result<()> {
    let commands: Vec<Vec<String>> =
        serde_json::from_str(args.first().context("no commands given")?)?;
    let samples = commands
        .iter()
        .map(|argv| time_run(argv, &[], || cpu_of("1")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    println!("{}", serde_json::to_string(&samples)?);
    Ok(())
}

struct Settings {
    rounds: usize,
    sizes: Vec<u32>,
    apps: u32,
    pm2: bool,
    pm2_max: u32,
    baseline: Option<PathBuf>,
}

impl Settings {
    fn from_env() -> Settings {
        let var = |name| std::env::var(name).ok();
        let number = |name, default: u32| var(name).and_then(|s| s.parse().ok()).unwrap_or(default);
        Settings {
            rounds: number("SYSMGR_BENCH_ROUNDS", 20).clamp(3, 100) as usize,
            sizes: var("SYSMGR_BENCH_SIZES")
                .unwrap_or_else(|| "8,64,1024".into())
                .split(',')
                .filter_map(|s| s.trim().parse().ok())
                .filter(|&n| (1..=1024).contains(&n))
                .collect(),
            apps: number("SYSMGR_BENCH_APPS", 200).min(500),
            pm2: var("SYSMGR_BENCH_PM2").as_deref() != Some("0"),
            pm2_max: number("SYSMGR_BENCH_PM2_MAX", 64),
            baseline: var("SYSMGR_BENCH_BASELINE").map(PathBuf::from),
        }
    }
}

/// The machine-wide lock the heavy tests take (tests/support `OneAtATime("heavy")`): a
/// thousand units starting beside another such load on 2 cores measures nothing.
fn heavy_lock() -> anyhow::Result<std::fs::File> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(std::env::temp_dir().join("sysmgr-tests-heavy.lock"))?;
    // SAFETY: flock on an fd this function owns.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
        bail!("flock: {}", std::io::Error::last_os_error());
    }
    Ok(file)
}

struct Bench {
    sb: Sandbox,
    sysmgr: PathBuf,
    settings: Settings,
}

/// A command and the label it has in the tables.
struct Candidate {
    label: String,
    argv: Vec<String>,
    /// Runs on the host (PM2), not inside the sandbox.
    host: bool,
    /// Its environment beyond this process's (the PM2 daemon's home).
    env: Vec<(String, String)>,
}

impl Bench {
    fn inside(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        self.sb.command(program)
    }

    /// `sysmgr ARGS` inside; its stdout, or an error with its stderr.
    fn sysmgr(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = self.inside(&self.sysmgr).args(args).output()?;
        if !out.status.success() {
            bail!(
                "`sysmgr {}` failed ({}): {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Writes `text` to `path` inside.
    fn write(&self, path: &str, text: &str) -> anyhow::Result<()> {
        let host = self.sb.root().join(path.trim_start_matches('/'));
        std::fs::create_dir_all(host.parent().expect("a file in a directory"))?;
        Ok(std::fs::write(host, text)?)
    }

    /// The candidates timed for an app (or apps) named `status_app`, listed by `patterns`.
    fn candidates(&self, status_app: &str, patterns: &[String]) -> Vec<Candidate> {
        let bin = |p: &Path| p.display().to_string();
        let mut c = vec![
            Candidate {
                label: "sysmgr list".into(),
                argv: vec![bin(&self.sysmgr), "list".into()],
                host: false,
                env: Vec::new(),
            },
            Candidate {
                label: "sysmgr status".into(),
                argv: vec![bin(&self.sysmgr), "status".into(), status_app.into()],
                host: false,
                env: Vec::new(),
            },
            Candidate {
                label: "systemctl list-units".into(),
                argv: ["systemctl", "list-units", "--no-pager"]
                    .iter()
                    .map(|s| s.to_string())
                    .chain(patterns.iter().cloned())
                    .collect(),
                host: false,
                env: Vec::new(),
            },
        ];
        if let Some(old) = &self.settings.baseline {
            c.push(Candidate {
                label: "baseline list".into(),
                argv: vec![bin(old), "list".into()],
                host: false,
                env: Vec::new(),
            });
            c.push(Candidate {
                label: "baseline status".into(),
                argv: vec![bin(old), "status".into(), status_app.into()],
                host: false,
                env: Vec::new(),
            });
        }
        c
    }

    /// Times every candidate once per round, in rotated order; `[candidate][round]`.
    fn rounds(&self, candidates: &[Candidate], what: &str) -> anyhow::Result<Vec<Vec<Sample>>> {
        let exe = std::env::current_exe()?;
        let inside: Vec<usize> = (0..candidates.len())
            .filter(|&k| !candidates[k].host)
            .collect();
        let host: Vec<usize> = (0..candidates.len())
            .filter(|&k| candidates[k].host)
            .collect();
        let mut samples: Vec<Vec<Sample>> = candidates.iter().map(|_| Vec::new()).collect();
        // Round 0 warms up (page cache, systemd's unit objects) and is not counted.
        for round in 0..=self.settings.rounds {
            let order: Vec<usize> = (0..inside.len())
                .map(|i| inside[(i + round) % inside.len()])
                .collect();
            let run_host = |samples: &mut Vec<Vec<Sample>>| -> anyhow::Result<()> {
                for &k in &host {
                    let s = time_run(&candidates[k].argv, &candidates[k].env, || 0)?;
                    if round > 0 {
                        samples[k].push(s);
                    }
                }
                Ok(())
            };
            if round % 2 == 0 {
                run_host(&mut samples)?;
            }
            let argvs: Vec<&Vec<String>> = order.iter().map(|&k| &candidates[k].argv).collect();
            let out = self
                .inside(&exe)
                .arg(INSIDE)
                .arg(serde_json::to_string(&argvs)?)
                .stderr(Stdio::inherit())
                .output()?;
            if !out.status.success() {
                bail!("the timer inside the sandbox failed ({})", out.status);
            }
            let got: Vec<Sample> = serde_json::from_slice(&out.stdout)?;
            if round > 0 {
                for (&k, s) in order.iter().zip(got) {
                    samples[k].push(s);
                }
            }
            if round % 2 == 1 {
                run_host(&mut samples)?;
            }
        }
        for (c, s) in candidates.iter().zip(&samples) {
            if let Some(bad) = s.iter().find(|s| s.code != 0 || s.bytes == 0) {
                bail!(
                    "{what}: `{}` failed (exit code {}, {} bytes of output)",
                    c.argv.join(" "),
                    bad.code,
                    bad.bytes
                );
            }
            eprintln!(
                "{what}: {} median {:.1} ms",
                c.label,
                median(s.iter().map(|s| s.wall_us as f64 / 1000.0).collect())
            );
        }
        Ok(samples)
    }

    /// Starts `APP` with `n` instances and waits until every one runs.
    fn start_app(&self, n: u32) -> anyhow::Result<()> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let file = format!("/srv/bench/{APP}.toml");
        self.write(
            &file,
            &format!(
                "name = \"{APP}\"\ncommand = [\"/bin/sleep\", \"infinity\"]\ninstances = {n}\n\
                 listen = [\"127.0.0.1:{port}\"]\nwait_ready = false\nkill_timeout = 3000\n"
            ),
        )?;
        eprintln!("starting {APP} with {n} instances");
        self.sysmgr(&["start", &file])?;
        let status: serde_json::Value =
            serde_json::from_str(&self.sysmgr(&["status", APP, "--json"])?)?;
        let running = status["instances"].as_array().map_or(0, |a| {
            a.iter().filter(|i| i["active_state"] == "active").count()
        });
        if running != n as usize {
            bail!("{running} of {n} instances of `{APP}` run");
        }
        Ok(())
    }
}

fn run() -> anyhow::Result<()> {
    let settings = Settings::from_env();
    let started = Instant::now();
    sysmgr_sandbox::preflight().context("the benchmark boots a private systemd")?;
    eprintln!("waiting for the machine-wide lock of heavy loads");
    let _heavy = heavy_lock()?;
    let sysmgr = PathBuf::from(env!("CARGO_BIN_EXE_sysmgr"));
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut binds = vec![repo.clone()];
    for extra in [
        sysmgr.parent().map(Path::to_path_buf),
        std::env::current_exe()?.parent().map(Path::to_path_buf),
        settings
            .baseline
            .as_ref()
            .and_then(|b| b.parent().map(Path::to_path_buf)),
    ]
    .into_iter()
    .flatten()
    {
        if !binds.iter().any(|b| extra.starts_with(b)) {
            binds.push(extra);
        }
    }
    eprintln!("booting a private systemd");
    let sb = Sandbox::boot(sysmgr_sandbox::Options {
        binds,
        dir_prefix: "sysmgr-bench-list".into(),
        ..Default::default()
    })?;
    let bench = Bench {
        sb,
        sysmgr,
        settings,
    };
    let mut out = String::new();
    machine(&mut out, &bench.settings);

    let pm2_bin = if bench.settings.pm2 {
        let prefix = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo.join("target"))
            .join("pm2");
        eprintln!("installing PM2 under {}", prefix.display());
        match pm2::install(&prefix) {
            Ok(bin) => {
                writeln!(
                    out,
                    "- PM2 {} (cluster mode, an idle Node app: `setInterval`), node {}",
                    pm2::version(&prefix),
                    version_of("node")
                )?;
                Some((bin, prefix))
            }
            Err(e) => {
                writeln!(out, "- PM2 skipped: {e}")?;
                None
            }
        }
    } else {
        None
    };

    write!(
        out,
        "\n### One app of N instances\n\n\
         Whole process, wall time, median of {} rounds rotating the commands; ratios are \
         medians of per-round ratios. `systemctl list-units` is given the pattern sysmgr \
         sends (`{APP}[@.-]*`: the instances, the target, the socket).\n\n",
        bench.settings.rounds
    )?;
    out.push_str(&table::header(&[&["instances"], WALL_COLUMNS].concat()));
    let mut cpu_rows = String::new();
    let mut notes = String::new();
    let mut rss_mib = None;
    for &n in &bench.settings.sizes {
        bench.start_app(n)?;
        let mut candidates = bench.candidates(APP, &[format!("{APP}[@.-]*")]);
        let mut pm2_daemon = None;
        if let Some((bin, prefix)) = &pm2_bin {
            if n <= bench.settings.pm2_max {
                let (daemon, rss) = start_pm2(bin, prefix, n)?;
                rss_mib = rss_mib.or(Some(rss)).map(|r: f64| r.max(rss));
                let cmd = daemon.command(&["jlist"]);
                candidates.push(Candidate {
                    label: "pm2 jlist".into(),
                    argv: std::iter::once(cmd.get_program())
                        .chain(cmd.get_args())
                        .map(|a| a.to_string_lossy().into_owned())
                        .collect(),
                    host: true,
                    env: cmd
                        .get_envs()
                        .filter_map(|(k, v)| {
                            Some((
                                k.to_string_lossy().into_owned(),
                                v?.to_string_lossy().into_owned(),
                            ))
                        })
                        .collect(),
                });
                pm2_daemon = Some(daemon);
            } else {
                let need = rss_mib.map_or(String::new(), |r| {
                    format!(
                        ": {n} Node processes at about {r:.0} MiB each (measured) need about {:.0} GiB, and this machine has {:.0} GiB available",
                        r * f64::from(n) / 1024.0,
                        mem_available_gib()
                    )
                });
                writeln!(notes, "- PM2 with {n} processes was not started{need}.")?;
            }
        }
        let samples = bench.rounds(&candidates, &format!("{n} instances"))?;
        drop(pm2_daemon);
        table_rows(
            &mut out,
            &mut cpu_rows,
            &n.to_string(),
            &candidates,
            &samples,
        )?;
        bench.sysmgr(&["delete", APP])?;
    }
    out.push_str(&notes);

    if bench.settings.apps > 0 {
        let n = bench.settings.apps;
        eprintln!("generating {n} apps of one instance");
        let names: Vec<String> = (1..=n).map(|i| format!("app{i}")).collect();
        let mut files = Vec::new();
        for name in &names {
            let file = format!("/srv/many/{name}.toml");
            bench.write(
                &file,
                &format!(
                    "name = \"{name}\"\ncommand = [\"/bin/sleep\", \"infinity\"]\ninstances = 1\n\
                     wait_ready = false\nkill_timeout = 3000\n"
                ),
            )?;
            files.push(file);
        }
        let mut args = vec!["generate"];
        args.extend(files.iter().map(String::as_str));
        bench.sysmgr(&args)?;
        let out_start = bench
            .inside("systemctl")
            .arg("start")
            .args(names.iter().map(|n| format!("{n}.target")))
            .output()?;
        if !out_start.status.success() {
            bail!(
                "starting {n} apps failed: {}",
                String::from_utf8_lossy(&out_start.stderr)
            );
        }
        let patterns: Vec<String> = names.iter().map(|n| format!("{n}[@.-]*")).collect();
        let candidates = bench.candidates("app1", &patterns);
        let samples = bench.rounds(&candidates, &format!("{n} apps"))?;
        write!(
            out,
            "\n### A machine of {n} apps of one instance each\n\n\
             `sysmgr list` (every app), `sysmgr status app1`, and `systemctl list-units` with \
             the {n} patterns `sysmgr list` sends. PM2 not run ({n} Node processes).\n\n"
        )?;
        out.push_str(&table::header(&[&["apps"], WALL_COLUMNS].concat()));
        table_rows(
            &mut out,
            &mut cpu_rows,
            &format!("{n} apps"),
            &candidates,
            &samples,
        )?;
    }

    writeln!(
        out,
        "\n### CPU\n\n\
         Medians: the command's own user + system time; systemd's (PID 1) CPU time during the \
         command (`schedstat`), the server side of the answer. PM2's daemon is not measured.\n\n\
         {}{cpu_rows}",
        table::header(&["size", "command", "wall", "own CPU", "systemd CPU"])
    )?;
    writeln!(out, "Whole run: {:.0} s.", started.elapsed().as_secs_f64())?;
    println!("{out}");
    Ok(())
}

/// Starts a PM2 daemon with `n` cluster processes of an idle Node app, waits until all are
/// online, and returns it with the largest process's RSS in MiB.
fn start_pm2(bin: &Path, prefix: &Path, n: u32) -> anyhow::Result<(pm2::Pm2, f64)> {
    let dir = prefix.join("list-app");
    std::fs::create_dir_all(&dir)?;
    let script = dir.join("idle.js");
    std::fs::write(&script, "setInterval(() => {}, 1 << 30);\n")?;
    let file = dir.join("ecosystem.json");
    std::fs::write(
        &file,
        serde_json::json!({
            "apps": [{
                "name": APP,
                "script": script,
                "exec_mode": "cluster",
                "instances": n,
            }]
        })
        .to_string(),
    )?;
    eprintln!("starting PM2 with {n} processes");
    let daemon = pm2::Pm2::start_file(bin, &file, APP).map_err(anyhow::Error::msg)?;
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let list = daemon.run(&["jlist"]).map_err(anyhow::Error::msg)?;
        let json = list.find('[').map_or("[]", |i| &list[i..]);
        let procs: Vec<serde_json::Value> = serde_json::from_str(json).unwrap_or_default();
        let online: Vec<u64> = procs
            .iter()
            .filter(|p| p["pm2_env"]["status"] == "online")
            .filter_map(|p| p["pid"].as_u64())
            .collect();
        if online.len() == n as usize {
            let rss = online
                .iter()
                .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
                .filter_map(|s| {
                    s.lines()
                        .find(|l| l.starts_with("VmRSS:"))?
                        .split_whitespace()
                        .nth(1)?
                        .parse::<f64>()
                        .ok()
                })
                .fold(0.0, f64::max);
            return Ok((daemon, rss / 1024.0));
        }
        if Instant::now() > deadline {
            bail!("PM2: {} of {n} processes online after 180 s", online.len());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The wall-time tables' columns after the size, as [`table_rows`] fills them.
const WALL_COLUMNS: &[&str] = &[
    "sysmgr list",
    "sysmgr status",
    "systemctl list-units",
    "pm2 jlist",
    "list / systemctl",
    "status / systemctl",
    "list / pm2",
];

/// One row of the wall-time table and one CPU row per command.
fn table_rows(
    out: &mut String,
    cpu_rows: &mut String,
    size: &str,
    candidates: &[Candidate],
    samples: &[Vec<Sample>],
) -> std::fmt::Result {
    let find = |label: &str| candidates.iter().position(|c| c.label == label);
    let wall = |k: Option<usize>| {
        k.map_or("-".to_string(), |k| {
            format!(
                "{:.1} ms",
                median(
                    samples[k]
                        .iter()
                        .map(|s| s.wall_us as f64 / 1000.0)
                        .collect()
                )
            )
        })
    };
    let ratio = |a: Option<usize>, b: Option<usize>| match (a, b) {
        (Some(a), Some(b)) => format!(
            "{:.2}x",
            median(
                samples[a]
                    .iter()
                    .zip(&samples[b])
                    .map(|(x, y)| x.wall_us as f64 / y.wall_us.max(1) as f64)
                    .collect()
            )
        ),
        _ => "-".into(),
    };
    let (list, status, systemctl, pm2) = (
        find("sysmgr list"),
        find("sysmgr status"),
        find("systemctl list-units"),
        find("pm2 jlist"),
    );
    writeln!(
        out,
        "| {size} | {} | {} | {} | {} | {} | {} | {} |",
        wall(list),
        wall(status),
        wall(systemctl),
        wall(pm2),
        ratio(list, systemctl),
        ratio(status, systemctl),
        ratio(list, pm2),
    )?;
    for (k, c) in candidates.iter().enumerate() {
        let ms = |f: fn(&Sample) -> u64| {
            median(samples[k].iter().map(|s| f(s) as f64 / 1000.0).collect())
        };
        let server = if c.host {
            "-".to_string()
        } else {
            format!("{:.1} ms", ms(|s| s.server_us))
        };
        writeln!(
            cpu_rows,
            "| {size} | {} | {:.1} ms | {:.1} ms | {server} |",
            c.label,
            ms(|s| s.wall_us),
            ms(|s| s.cpu_us),
        )?;
    }
    // The baseline, if any, against the current build, side by side.
    if let (Some(old_list), Some(old_status)) = (find("baseline list"), find("baseline status")) {
        writeln!(
            cpu_rows,
            "| {size} | list / baseline list, status / baseline status | {} / {} | | |",
            ratio(list, Some(old_list)),
            ratio(status, Some(old_status)),
        )?;
    }
    Ok(())
}

fn version_of(program: &str) -> String {
    Command::new(program)
        .arg("--version")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or_default()
                .trim()
                .to_string()
        })
        .unwrap_or_default()
}

fn mem_available_gib() -> f64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemAvailable:"))?
                .split_whitespace()
                .nth(1)?
                .parse::<f64>()
                .ok()
        })
        .map_or(0.0, |kib| kib / 1024.0 / 1024.0)
}

/// Date and machine facts, for the record.
fn machine(out: &mut String, settings: &Settings) {
    use facts::{cpu_model, read, utc_now};
    let (cpu, date) = (cpu_model(), utc_now());
    let _ = writeln!(
        out,
        "## Run of {date}\n\n\
         - machine: {} CPUs, {cpu}; kernel {}; {}; load average at the start: {}\n\
         - {} rounds (after one warm-up round)",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        read("/proc/sys/kernel/osrelease"),
        version_of("systemctl"),
        read("/proc/loadavg"),
        settings.rounds,
    );
}
