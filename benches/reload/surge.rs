//! Part `surge`: what `sysmgr reload` by surge (the default: each slot's new process starts
//! beside the old one, which drains in the background once the new one is ready) buys over
//! the in-place reload (`--surge 0`: the old process drains, then the new one starts, then
//! the next instance) and over `pm2 reload`, when the old processes have slow requests to
//! finish.
//!
//! For each drain time D of `SYSMGR_BENCH_DRAINS` (seconds, default `0,1.5,5`): 4 instances
//! of `sysmgr-hello` (shared socket, `kill_timeout` = D + 3 s, so the drain fits the budget
//! the worker plans from it), and, unless `SYSMGR_BENCH_PM2=0`, 4 PM2 cluster workers of
//! `examples/node/app.js` (which answers `/slow?ms=N` after N ms and drains on SIGINT) with
//! the same `kill_timeout` and `wait_ready`. Under clients looping on `/slow?ms=D` (none
//! when D is 0) and paced fast clients, rounds rotate the candidates (ABAB with two):
//!
//! - `sysmgr reload NAME` and `sysmgr reload NAME --surge 0`: the commands, run inside the
//!   sandbox (under `timeout`, a bound) and timed from the host from spawn to exit (the
//!   `nsenter` around them costs a few ms), beside the rollout's own wall time from the
//!   journal's summary entry (`SYSMGR_DURATION_MS`); for a surge also its steps and drains,
//!   from the same run's entries;
//! - the processes accepting during the reload: units `active running`, counted every 50 ms
//!   by `systemctl list-units --state=running NAME@*.service` inside the sandbox (a draining
//!   process is `deactivating`, a starting one `activating`);
//! - `pm2 reload APP`, timed from start to exit (PM2's processes cannot be counted the same
//!   way: its master accepts for all of them).
//!
//! Failed and hung requests are counted by `sysmgr-load`, which never retries; every one of
//! them is a request a user would have seen fail.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use sysmgr_load::{Background, LoadConfig, Mode, Report};

use crate::{median, ms, pm2, rotated, Bench, Socket, REQUEST_TIMEOUT};

/// Instances (slots) reloaded.
const INSTANCES: u32 = 4;
/// Clients looping on slow requests, over keep-alive connections (as in tests/surge.rs).
const SLOW_CONNECTIONS: usize = 16;
/// Paced fast clients beside them: keep-alive, and one connection per request (what a
/// process that stopped accepting would make wait or fail).
const FAST_KEEP_ALIVE: (usize, u32) = (8, 400);
const FAST_PER_REQUEST: (usize, u32) = (4, 200);
/// The app's `kill_timeout` is the drain time plus this: the worker plans its drain as the
/// kill timeout less a margin of at most 500 ms, and a slow request begun just before the
/// kill signal needs the whole drain time.
const KILL_TIMEOUT_ABOVE_DRAIN: Duration = Duration::from_secs(3);
/// Before each reload, so that every process has slow requests in flight.
const BEFORE: Duration = Duration::from_millis(700);
/// After each reload, so that requests in flight at its end belong to it.
const AFTER: Duration = Duration::from_millis(300);
/// How often the processes accepting are counted, and for how long at most.
const SAMPLE_EVERY: Duration = Duration::from_millis(50);
const SAMPLE_LIMIT: Duration = Duration::from_secs(180);
/// A bound on each `sysmgr reload` command (its own waits are bounded by the units' timeouts
/// already); the loads' durations are bounds too, each is stopped when its reload is done.
const COMMAND_LIMIT: Duration = Duration::from_secs(180);
const LOAD_LIMIT: Duration = Duration::from_secs(200);
/// At most this many drain times, each at most this long.
const MAX_DRAINS: usize = 5;
const MAX_DRAIN: Duration = Duration::from_secs(20);

/// The drain times from `SYSMGR_BENCH_DRAINS` (seconds, comma-separated), default `0,1.5,5`;
/// entries that are not numbers are left out, each is clamped to 0..=20 s.
pub fn drains(var: Option<&str>) -> Vec<Duration> {
    let parsed: Vec<Duration> = var
        .unwrap_or("0,1.5,5")
        .split(',')
        .filter_map(|s| s.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite())
        .map(|s| Duration::from_secs_f64(s.clamp(0.0, MAX_DRAIN.as_secs_f64())))
        .take(MAX_DRAINS)
        .collect();
    if parsed.is_empty() {
        vec![
            Duration::ZERO,
            Duration::from_millis(1500),
            Duration::from_secs(5),
        ]
    } else {
        parsed
    }
}

/// The ways an app is reloaded here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Candidate {
    /// `sysmgr reload NAME`: surge, the default.
    Surge,
    /// `sysmgr reload NAME --surge 0`: in place.
    InPlace,
    /// `pm2 reload APP`.
    Pm2,
}

impl Candidate {
    fn label(self) -> &'static str {
        match self {
            Candidate::Surge => "`sysmgr reload` (surge)",
            Candidate::InPlace => "`sysmgr reload --surge 0` (in place)",
            Candidate::Pm2 => "`pm2 reload` (Node app)",
        }
    }
}

/// What one reload saw.
struct Round {
    /// The command, from spawn to exit.
    wall: Duration,
    /// sysmgr's: the rollout's wall time (the summary entry), the sum of its instances'
    /// steps, and each drain that ran in the background (surge only), from the journal.
    journal: Option<Journal>,
    /// Processes accepting, every [`SAMPLE_EVERY`] during the command (sysmgr's only).
    samples: Vec<usize>,
    /// The loads: slow (if any), fast keep-alive, fast one request per connection.
    reports: Vec<Report>,
    /// PM2's: when each old worker was gone, from the command's start (`None`: still
    /// running at the watch's end).
    exits: Vec<Option<Duration>>,
}

/// One reload's entries in the journal.
struct Journal {
    rollout: Duration,
    steps: Duration,
    drains: Vec<Duration>,
}

/// Runs the part: one block of tables per drain time.
pub fn run(bench: &Bench, hello: &Path, repo: &Path, out: &mut String) -> anyhow::Result<()> {
    let rounds = bench.settings.rounds;
    // PM2 on the host, if wanted and installable; without it the sysmgr rows still run.
    let mut pm2_setup: Option<(std::path::PathBuf, std::path::PathBuf, String)> = None;
    if bench.settings.parts.surge_pm2 {
        let node = Path::new("/usr/bin/node");
        let prefix = crate::pm2_prefix(repo);
        if !node.exists() {
            writeln!(
                out,
                "\n(`pm2 reload` left out: `/usr/bin/node` is missing.)"
            )?;
        } else {
            eprintln!("installing PM2 under {}", prefix.display());
            match pm2::install(&prefix) {
                Ok(bin) => {
                    pm2_setup = Some((
                        bin,
                        repo.join("examples/node/app.js"),
                        pm2::version(&prefix),
                    ))
                }
                Err(e) => {
                    eprintln!("`pm2 reload` left out: {e}");
                    writeln!(out, "\n(`pm2 reload` left out: {e}.)")?;
                }
            }
        }
    }
    let mut candidates = vec![Candidate::Surge, Candidate::InPlace];
    if pm2_setup.is_some() {
        candidates.push(Candidate::Pm2);
    }

    writeln!(
        out,
        "\n### Surge vs in-place reload under slow requests{}\n\n\
         {INSTANCES} instances of `sysmgr-hello` (shared socket, `kill_timeout` = drain + {} s){}. \
         Load during each reload: {SLOW_CONNECTIONS} keep-alive connections looping on \
         `/slow?ms=D` (D = the drain time; none when it is 0), plus fast `/` requests: {} \
         keep-alive connections paced at {} req/s and {} connections opening one connection per \
         request paced at {} req/s; the reload begins {} ms after the load. {rounds} rounds per \
         drain time, rotating the candidates; times: median (min to max) of rounds, ratios: \
         median of the per-round ratios to the surge's wall time; requests, failed and hung: \
         sums over the rounds. Wall time: the command, spawn to exit; rollout: the summary \
         entry's `SYSMGR_DURATION_MS`. Processes accepting: units `active running` every {} ms \
         during the command (4 is the app's full capacity; a draining process no longer \
         accepts).\n",
        if pm2_setup.is_some() {
            ", and `pm2 reload`"
        } else {
            ""
        },
        KILL_TIMEOUT_ABOVE_DRAIN.as_secs(),
        match &pm2_setup {
            Some((_, _, version)) => format!(
                "; PM2 {version}: {INSTANCES} cluster workers of `examples/node/app.js` (node {}, \
                 `wait_ready`, the same `kill_timeout`; it answers `/slow?ms=N` after N ms and \
                 drains on SIGINT), on the host",
                node_version()
            ),
            None => String::new(),
        },
        FAST_KEEP_ALIVE.0,
        FAST_KEEP_ALIVE.1,
        FAST_PER_REQUEST.0,
        FAST_PER_REQUEST.1,
        BEFORE.as_millis(),
        SAMPLE_EVERY.as_millis(),
    )?;

    let mut header_written = false;
    let mut detail: Vec<String> = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    for &drain in &bench.settings.drains {
        let drain_label = format!("{:.1} s", drain.as_secs_f64());
        let kill_timeout = drain + KILL_TIMEOUT_ABOVE_DRAIN;
        let name = format!("surge-{}ms", drain.as_millis());
        let app = bench.start_app(
            &name,
            &[hello.display().to_string()],
            INSTANCES,
            Socket::Shared,
            &format!("kill_timeout = {}\n", kill_timeout.as_millis()),
        )?;
        let mut pm2 = match &pm2_setup {
            Some((bin, app_js, _)) => {
                let port = std::net::TcpListener::bind("127.0.0.1:0")?
                    .local_addr()?
                    .port();
                eprintln!(
                    "starting PM2 ({INSTANCES} cluster workers, kill_timeout {} ms)",
                    kill_timeout.as_millis()
                );
                let pm2 = pm2::Pm2::start_with_kill_timeout(
                    bin,
                    app_js,
                    INSTANCES,
                    port,
                    kill_timeout.as_millis() as u64,
                )
                .map_err(anyhow::Error::msg)?;
                let addr = SocketAddr::from(([127, 0, 0, 1], port));
                sysmgr_load::get_blocking(addr, "/", REQUEST_TIMEOUT)
                    .map_err(|e| anyhow::anyhow!("PM2's app does not answer on {addr}: {e}"))?;
                Some((pm2, addr))
            }
            None => None,
        };

        let mut results: Vec<Vec<Round>> = candidates.iter().map(|_| Vec::new()).collect();
        let mut last_run = String::new();
        for round in 0..rounds {
            for k in rotated(candidates.len(), round) {
                let candidate = candidates[k];
                eprintln!(
                    "surge, drain {drain_label}, round {}/{rounds}: {}",
                    round + 1,
                    candidate.label()
                );
                let r = match candidate {
                    Candidate::Pm2 => {
                        let (pm2, addr) = pm2.as_mut().expect("PM2 runs when it is a candidate");
                        let addr = *addr;
                        let old = pm2.workers();
                        if old.len() != INSTANCES as usize {
                            bail!("PM2 runs {} workers, not {INSTANCES}: {old:?}", old.len());
                        }
                        let mut exits = Vec::new();
                        // Timed from start to exit by `reload` itself; the old workers are
                        // watched from the same moment, to see whether it waited for them.
                        let mut r = under_load(addr, drain, || {
                            let watcher = watch_exits(old, kill_timeout + REQUEST_TIMEOUT);
                            let took = pm2.reload().map_err(anyhow::Error::msg);
                            exits = watcher.join().expect("the watcher does not panic");
                            Ok((took?, Vec::new()))
                        })?;
                        r.exits = exits;
                        r
                    }
                    _ => {
                        let surge = candidate == Candidate::Surge;
                        let mut r = under_load(app.addr, drain, || {
                            let sampler = Sampler::start(bench, &name);
                            let reloaded = bench.reload_command(&name, surge);
                            let samples = sampler.stop();
                            Ok((reloaded?, samples))
                        })?;
                        let (run, journal) = bench.reload_journal(&name, &last_run)?;
                        last_run = run;
                        r.journal = Some(journal);
                        let running = bench.running_units(&name)?;
                        if running.len() != INSTANCES as usize {
                            bail!(
                                "after the reload of `{name}`, {} units run, not {INSTANCES}: {running:?}",
                                running.len()
                            );
                        }
                        r
                    }
                };
                let failed: u64 = r.reports.iter().map(|x| x.failed).sum();
                eprintln!(
                    "  {:.0} ms, {} requests, {failed} failed, accepting min {}",
                    ms(r.wall),
                    r.reports.iter().map(|x| x.requests).sum::<u64>(),
                    r.samples
                        .iter()
                        .min()
                        .map_or_else(|| "-".to_string(), |n| n.to_string()),
                );
                results[k].push(r);
            }
        }
        drop(pm2);
        bench.sysmgr_cmd(&["stop", &name])?;

        // The main table, one row per candidate.
        if !header_written {
            out.push_str(
                "| drain | reload | wall time | rollout (journal) | / surge | processes accepting: min / median / max (samples) | old processes running when the command returned; the last gone after | requests | failed | hung |\n\
                 |---|---|---|---|---|---|---|---|---|---|\n",
            );
            header_written = true;
        }
        let surge_walls: Vec<f64> = results[0].iter().map(|r| ms(r.wall)).collect();
        for (k, candidate) in candidates.iter().enumerate() {
            let rs = &results[k];
            let walls: Vec<f64> = rs.iter().map(|r| ms(r.wall)).collect();
            let per_round: Vec<f64> = walls
                .iter()
                .zip(&surge_walls)
                .map(|(w, s)| w / s.max(1e-9))
                .collect();
            let rollouts: Vec<f64> = rs
                .iter()
                .filter_map(|r| r.journal.as_ref().map(|j| ms(j.rollout)))
                .collect();
            let samples: Vec<usize> = rs.iter().flat_map(|r| r.samples.iter().copied()).collect();
            let capacity = if samples.is_empty() {
                "n/a (PM2's master accepts for every worker)".to_string()
            } else {
                // The lowest in any round, the median of the rounds' medians, the highest.
                let medians: Vec<f64> = rs
                    .iter()
                    .map(|r| median(r.samples.iter().map(|&n| n as f64).collect()))
                    .collect();
                format!(
                    "{} / {} / {} ({})",
                    samples.iter().min().expect("not empty"),
                    median(medians),
                    samples.iter().max().expect("not empty"),
                    samples.len()
                )
            };
            let sum = |f: fn(&Report) -> u64| {
                rs.iter().flat_map(|r| r.reports.iter()).map(f).sum::<u64>()
            };
            writeln!(
                out,
                "| {drain_label} | {} | {} | {} | {} | {capacity} | {} | {} | {} | {} |",
                candidate.label(),
                spread(&walls),
                if rollouts.is_empty() {
                    String::new()
                } else {
                    format!("{:.0} ms", median(rollouts))
                },
                if *candidate == Candidate::Surge {
                    "1".to_string()
                } else {
                    format!("{:.2}x", median(per_round))
                },
                old_processes(*candidate, rs),
                sum(|r| r.requests),
                sum(|r| r.failed),
                sum(|r| r.hung),
            )?;
            // Failure kinds, so a failed count can be told apart.
            let mut kinds: Vec<(String, u64)> = Vec::new();
            for report in rs.iter().flat_map(|r| r.reports.iter()) {
                for (kind, n) in &report.failures {
                    match kinds.iter_mut().find(|(k, _)| k == kind) {
                        Some((_, m)) => *m += n,
                        None => kinds.push((kind.clone(), *n)),
                    }
                }
            }
            if !kinds.is_empty() {
                let list: Vec<String> = kinds.iter().map(|(k, n)| format!("{n} x {k}")).collect();
                notes.push(format!(
                    "Failures, {}, drain {drain_label}: {}.",
                    candidate.label(),
                    list.join("; ")
                ));
            }
        }

        // Where the surge's time went: its steps, and the drains it did not wait for but the last.
        let journals: Vec<&Journal> = results[0]
            .iter()
            .filter_map(|r| r.journal.as_ref())
            .collect();
        let longest: Vec<f64> = journals
            .iter()
            .map(|j| j.drains.iter().map(|d| ms(*d)).fold(0.0, f64::max))
            .collect();
        let all: Vec<f64> = journals
            .iter()
            .map(|j| j.drains.iter().map(|d| ms(*d)).sum())
            .collect();
        let steps: Vec<f64> = journals.iter().map(|j| ms(j.steps)).collect();
        let bound: Vec<f64> = journals
            .iter()
            .zip(&longest)
            .map(|(j, l)| ms(j.rollout) / (ms(j.steps) + l).max(1e-9))
            .collect();
        let in_place_steps: Vec<f64> = results[1]
            .iter()
            .filter_map(|r| r.journal.as_ref().map(|j| ms(j.steps)))
            .collect();
        detail.push(format!(
            "| {drain_label} | {} | {} | {} | {:.2} | {} | {} |",
            spread(&steps),
            spread(&longest),
            spread(&all),
            median(bound),
            journals.iter().map(|j| j.drains.len()).sum::<usize>(),
            spread(&in_place_steps),
        ));
    }

    writeln!(
        out,
        "\nWhere the surge's time went (from its journal entries; medians (min to max) of rounds): \
         each slot's step is its new process's start job until `READY=1`, the min-ready window \
         and the calls around them; the old processes drain in the background, and the rollout \
         ends when the last drain has, so it should take the steps plus about one drain, not \
         all of them. The in-place rollout's instances, for comparison, each take a drain, a \
         start and the min-ready window.\n\n\
         | drain | surge: steps, sum | longest drain | drains, sum | rollout / (steps + longest drain) | drains seen | in place: instances, sum |\n\
         |---|---|---|---|---|---|---|"
    )?;
    for line in &detail {
        writeln!(out, "{line}")?;
    }
    for note in &notes {
        writeln!(out, "\n{note}")?;
    }
    Ok(())
}

/// Watches `pids` from now, every 10 ms for at most `limit`: when each was gone (no
/// `/proc/PID`), or `None` if it still ran at the end.
fn watch_exits(pids: Vec<u32>, limit: Duration) -> std::thread::JoinHandle<Vec<Option<Duration>>> {
    let started = Instant::now();
    std::thread::spawn(move || {
        let mut gone: Vec<Option<Duration>> = pids.iter().map(|_| None).collect();
        while started.elapsed() < limit && gone.iter().any(Option::is_none) {
            for (pid, at) in pids.iter().zip(gone.iter_mut()) {
                if at.is_none() && !Path::new(&format!("/proc/{pid}")).exists() {
                    *at = Some(started.elapsed());
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        gone
    })
}

/// `median ms (min to max)` of `v`.
fn spread(v: &[f64]) -> String {
    if v.is_empty() {
        return String::new();
    }
    let lo = v.iter().copied().fold(f64::MAX, f64::min);
    let hi = v.iter().copied().fold(0.0, f64::max);
    format!("{:.0} ms ({lo:.0} to {hi:.0})", median(v.to_vec()))
}

/// Whether the command returned before the old processes were gone: sysmgr's rollouts wait
/// for them by design (the in-place one for each drain before the next start, the surge for
/// the last drain), PM2's workers are watched ([`watch_exits`]).
fn old_processes(candidate: Candidate, rounds: &[Round]) -> String {
    if candidate != Candidate::Pm2 {
        return "0 (the rollout waits for every drain)".into();
    }
    let at_exit: usize = rounds
        .iter()
        .map(|r| {
            r.exits
                .iter()
                .filter(|gone| !matches!(gone, Some(at) if *at <= r.wall))
                .count()
        })
        .sum();
    let last: Vec<f64> = rounds
        .iter()
        .filter_map(|r| {
            r.exits
                .iter()
                .map(|gone| gone.map(ms))
                .collect::<Option<Vec<f64>>>()
                .map(|v| v.into_iter().fold(0.0, f64::max))
        })
        .collect();
    let never = rounds.len() - last.len();
    format!(
        "{at_exit} of {} in all; {}{}",
        rounds.iter().map(|r| r.exits.len()).sum::<usize>(),
        spread(&last),
        if never > 0 {
            format!(" ({never} rounds with one still running at the watch's end)")
        } else {
            String::new()
        }
    )
}

fn node_version() -> String {
    Command::new("/usr/bin/node")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// The loads of one round on `addr`: clients looping on `/slow?ms=D` (if D > 0) and the
/// paced fast ones, each bounded by [`LOAD_LIMIT`] and stopped once `reload` returned.
fn under_load(
    addr: SocketAddr,
    drain: Duration,
    reload: impl FnOnce() -> anyhow::Result<(Duration, Vec<usize>)>,
) -> anyhow::Result<Round> {
    let mut loads = Vec::new();
    if !drain.is_zero() {
        loads.push(Background::start(LoadConfig {
            path: format!("/slow?ms={}", drain.as_millis()),
            connections: SLOW_CONNECTIONS,
            mode: Mode::KeepAlive,
            duration: LOAD_LIMIT,
            // A slow request must never count as hung for being slow.
            request_timeout: drain + REQUEST_TIMEOUT,
            ..LoadConfig::new(addr)
        }));
    }
    for (mode, (connections, rate)) in [
        (Mode::KeepAlive, FAST_KEEP_ALIVE),
        (Mode::PerRequest, FAST_PER_REQUEST),
    ] {
        loads.push(Background::start(LoadConfig {
            mode,
            connections,
            rate: Some(rate),
            duration: LOAD_LIMIT,
            request_timeout: REQUEST_TIMEOUT,
            ..LoadConfig::new(addr)
        }));
    }
    std::thread::sleep(BEFORE);
    let reloaded = reload();
    std::thread::sleep(AFTER);
    // Stopped together: each waits for its requests in flight (a slow one up to D), and the
    // fast ones should not run on meanwhile.
    let reports: Vec<Report> = std::thread::scope(|s| {
        let handles: Vec<_> = loads
            .into_iter()
            .map(|l| s.spawn(move || l.stop()))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("the load client does not panic"))
            .collect()
    });
    let (wall, samples) = reloaded?;
    Ok(Round {
        wall,
        journal: None,
        samples,
        reports,
        exits: Vec::new(),
    })
}

impl Bench {
    /// `sysmgr reload NAME` (surge) or `sysmgr reload NAME --surge 0` inside the sandbox,
    /// bounded by `timeout`, timed from spawn to exit; checks that it ran in the mode asked.
    fn reload_command(&self, name: &str, surge: bool) -> anyhow::Result<Duration> {
        let mut cmd = self.inside("timeout");
        cmd.arg(COMMAND_LIMIT.as_secs().to_string())
            .arg(&self.sysmgr)
            .args(["reload", name]);
        if !surge {
            cmd.args(["--surge", "0"]);
        }
        let started = Instant::now();
        let out = cmd.output().context("cannot run nsenter")?;
        let wall = started.elapsed();
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            bail!(
                "`sysmgr reload {name}{}` failed ({}): {}",
                if surge { "" } else { " --surge 0" },
                out.status,
                stderr.trim()
            );
        }
        let first = stderr.lines().next().unwrap_or_default();
        let expected = if surge {
            format!("reload {name}: {INSTANCES} instances, surge 1:")
        } else {
            format!("reload {name}: {INSTANCES} instances, 1 at a time")
        };
        if !first.starts_with(&expected) {
            bail!("`sysmgr reload {name}` did not run as asked (expected `{expected}`): {stderr}");
        }
        Ok(wall)
    }

    /// The entries of the last reload of `name` in the journal: its run id (not `previous`)
    /// and figures. Waits up to 2 s for journald to have stored the summary.
    fn reload_journal(&self, name: &str, previous: &str) -> anyhow::Result<(String, Journal)> {
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let out = self
                .inside("journalctl")
                .args([
                    "SYSLOG_IDENTIFIER=sysmgr",
                    &format!("SYSMGR_APP={name}"),
                    "SYSMGR_ACTION=reload",
                    "--output=json",
                    "--output-fields=SYSMGR_EVENT,SYSMGR_DURATION_MS,SYSMGR_RUN",
                ])
                .output()
                .context("cannot run journalctl")?;
            let entries: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect();
            let field =
                |e: &serde_json::Value, k: &str| e[k].as_str().unwrap_or_default().to_string();
            let run = entries
                .iter()
                .rev()
                .find(|e| field(e, "SYSMGR_EVENT") == "summary")
                .map(|e| field(e, "SYSMGR_RUN"))
                .unwrap_or_default();
            if !run.is_empty() && run != previous {
                let of_run: Vec<(String, Duration)> = entries
                    .iter()
                    .filter(|e| field(e, "SYSMGR_RUN") == run)
                    .map(|e| {
                        (
                            field(e, "SYSMGR_EVENT"),
                            Duration::from_millis(
                                field(e, "SYSMGR_DURATION_MS").parse().unwrap_or(0),
                            ),
                        )
                    })
                    .collect();
                let of = |event: &str| {
                    of_run
                        .iter()
                        .filter(|(e, _)| e == event)
                        .map(|(_, d)| *d)
                        .collect::<Vec<_>>()
                };
                let rollout = *of("summary").last().expect("found above");
                let steps = of("instance").iter().sum();
                let journal = Journal {
                    rollout,
                    steps,
                    drains: of("drain"),
                };
                return Ok((run, journal));
            }
            if Instant::now() > deadline {
                bail!("no new summary entry of the reload of `{name}` in the journal after 2 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The units of `name` that are active/running.
    fn running_units(&self, name: &str) -> anyhow::Result<BTreeSet<String>> {
        let out = self
            .inside("systemctl")
            .args(["list-units", "--plain", "--no-legend", "--state=running"])
            .arg(format!("{name}@*.service"))
            .output()
            .context("cannot run systemctl")?;
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains(" active running "))
            .filter_map(|l| l.split_whitespace().next().map(str::to_string))
            .collect())
    }
}

/// Counts the app's processes that accept connections (units active/running) every
/// [`SAMPLE_EVERY`] until stopped, for at most [`SAMPLE_LIMIT`], as tests/surge.rs does.
struct Sampler {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Vec<usize>>,
}

impl Sampler {
    fn start(bench: &Bench, name: &str) -> Sampler {
        // The command line `inside` builds (nsenter into the sandbox), rebuilt per sample.
        let proto = bench.inside("systemctl");
        let program: OsString = proto.get_program().to_owned();
        let mut args: Vec<OsString> = proto.get_args().map(|a| a.to_owned()).collect();
        args.extend(
            ["list-units", "--plain", "--no-legend", "--state=running"]
                .iter()
                .map(OsString::from),
        );
        args.push(format!("{name}@*.service").into());
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut samples = Vec::new();
                let started = Instant::now();
                while !stop.load(Ordering::Relaxed) && started.elapsed() < SAMPLE_LIMIT {
                    let out = Command::new(&program)
                        .args(&args)
                        .env_remove("DBUS_SYSTEM_BUS_ADDRESS")
                        .stdin(std::process::Stdio::null())
                        .output();
                    if let Ok(out) = out {
                        samples.push(
                            String::from_utf8_lossy(&out.stdout)
                                .lines()
                                .filter(|l| l.contains(" active running "))
                                .count(),
                        );
                    }
                    std::thread::sleep(SAMPLE_EVERY);
                }
                samples
            })
        };
        Sampler { stop, thread }
    }

    fn stop(self) -> Vec<usize> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("the sampler does not panic")
    }
}
