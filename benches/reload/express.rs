//! Part 4: PM2's own app, unchanged. The articles' graceful Express app.js and their
//! ecosystem.config.js (`tests/pm2/`, express from the npm registry, installed there by
//! scripts/setup) run as a PM2 user runs them: `pm2 start ecosystem.config.js` (cluster mode,
//! `instances: 0`, so one worker per CPU) on the host, and `sysmgr start ecosystem.config.js
//! --listen 127.0.0.1:PORT` in the sandbox (one instance per CPU, through the Node bridge).
//! Side by side in alternating rounds: steady throughput, then `pm2 reload` against
//! `sysmgr reload` (the commands, as a user types them) under paced load with slow requests in
//! flight; then what the bridge itself costs ([`crate::bridge`]).
//!
//! The one change to app.js is its port: `3000` becomes a free port, as two copies of the app
//! cannot share one (the tests make the same change). The app binds it on every interface
//! under PM2 (`app.listen(port)` names no host); the load goes to 127.0.0.1 only.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

use crate::{
    bridge, client_table, failures_note, median, ms, pm2, ratios, rotated, table, throughputs,
    Bench, ReloadRound, Slow, Target, LOADS, RELOAD_LOAD_SHARE, REQUEST_TIMEOUT,
    THROUGHPUT_CONNECTIONS,
};

/// The app's name in the articles' ecosystem file.
const APP: &str = "app";
/// Slow requests (the fixture's `/slow` route) in flight when each reload starts: longer than
/// a reload's first step, so the first process stopped has requests to finish.
const SLOW: Slow = Slow {
    count: 4,
    path: "/slow?ms=1000",
};

pub fn run(bench: &Bench, repo: &Path, out: &mut String) -> anyhow::Result<()> {
    let fixtures = repo.join("tests/pm2");
    let node = "/usr/bin/node";
    if !Path::new(node).exists() {
        bail!("`{node}` is missing");
    }
    if !fixtures.join("node_modules/express").is_dir() {
        bail!(
            "express is not installed in `{}`; run scripts/setup (it runs `npm ci` there)",
            fixtures.display()
        );
    }
    let prefix = crate::pm2_prefix(repo);
    eprintln!("installing PM2 under {}", prefix.display());
    let pm2_bin = pm2::install(&prefix).map_err(anyhow::Error::msg)?;

    // sysmgr's copy, inside the sandbox.
    let sysmgr_port = free_port()?;
    let inside = Path::new("/srv/bench/express");
    app_dir(
        &bench.sb.root().join(inside.strip_prefix("/")?),
        &fixtures,
        sysmgr_port,
    )?;
    let ecosystem = inside.join("ecosystem.config.js").display().to_string();
    let listen = format!("127.0.0.1:{sysmgr_port}");
    eprintln!("sysmgr start {ecosystem} --listen {listen}");
    let started = Instant::now();
    bench.sysmgr_cmd(&["start", &ecosystem, "--listen", &listen])?;
    let sysmgr_start = started.elapsed();
    let sysmgr_instances = bench.wait_active(APP)?;
    let sysmgr_addr = SocketAddr::from(([127, 0, 0, 1], sysmgr_port));

    // PM2's copy, on the host beside PM2's install.
    let pm2_port = free_port()?;
    let host_dir = prefix.join("express-app");
    app_dir(&host_dir, &fixtures, pm2_port)?;
    eprintln!("pm2 start ecosystem.config.js in {}", host_dir.display());
    let started = Instant::now();
    let mut pm2 = pm2::Pm2::start_file(&pm2_bin, &host_dir.join("ecosystem.config.js"), APP)
        .map_err(anyhow::Error::msg)?;
    let pm2_start = started.elapsed();
    let pm2_instances = pm2.workers().len();
    let pm2_addr = SocketAddr::from(([127, 0, 0, 1], pm2_port));
    for (who, addr) in [("PM2", pm2_addr), ("sysmgr", sysmgr_addr)] {
        sysmgr_load::get_blocking(addr, "/", REQUEST_TIMEOUT)
            .map_err(|e| anyhow::anyhow!("{who}'s Express app does not answer on {addr}: {e}"))?;
    }
    if pm2_instances != sysmgr_instances {
        bail!("PM2 runs {pm2_instances} workers, sysmgr {sysmgr_instances} instances: not the same app");
    }

    // 1. Steady throughput.
    let targets = [
        Target {
            label: "PM2 cluster",
            addr: pm2_addr,
        },
        Target {
            label: "sysmgr",
            addr: sysmgr_addr,
        },
    ];
    let results = bench.compare(&targets, "express");
    writeln!(
        out,
        "\n### PM2's own app, unchanged (Express): PM2 cluster mode vs sysmgr\n\n\
         `tests/pm2/app.js` and `ecosystem.config.js` (the articles' graceful Express app, \
         `instances: 0`, `wait_ready`, `kill_timeout: 5000`), node {}, express {}, PM2 {}; \
         {pm2_instances} processes each (one per CPU). PM2: `pm2 start ecosystem.config.js` \
         (cluster mode; its master accepts and hands connections to the workers). sysmgr: \
         `sysmgr start ecosystem.config.js --listen 127.0.0.1:PORT` (shared socket; the Node \
         bridge gives `app.listen(port)` systemd's socket). Start commands took {:.1} s (PM2) \
         and {:.1} s (sysmgr, until every instance sent READY=1). {} connections, {:.1} s per \
         measurement, {} rounds alternating the two; requests/s, median of rounds.\n",
        version(node, &["--version"]),
        package_version(&fixtures.join("node_modules/express")),
        pm2::version(&prefix),
        pm2_start.as_secs_f64(),
        sysmgr_start.as_secs_f64(),
        THROUGHPUT_CONNECTIONS,
        bench.settings.seconds.as_secs_f64(),
        bench.settings.rounds,
    )?;
    out.push_str(&table::header(&[
        "load",
        "PM2 cluster req/s",
        "sysmgr req/s",
        "sysmgr / PM2 (median of round ratios)",
        "round ratios",
        "goal",
        "failed",
    ]));
    let mut capacity = [f64::MAX; 2];
    for (l, (_, load)) in LOADS.iter().enumerate() {
        let [p, s] = [0, 1].map(|k| &results[l][k]);
        let failed: u64 = p.iter().chain(s).map(|x| x.failed).sum();
        let round_ratios: Vec<String> = ratios(s, p).iter().map(|r| format!("{r:.2}")).collect();
        let goal = if l == 0 { "≥ 1.0x" } else { "≥ 1.25x" };
        writeln!(
            out,
            "| {load} | {:.0} | {:.0} | {:.2}x | {} | {goal} | {failed} |",
            median(throughputs(p)),
            median(throughputs(s)),
            median(ratios(s, p)),
            round_ratios.join(", "),
        )?;
        capacity[l] = median(throughputs(p)).min(median(throughputs(s)));
    }

    // 2. Reloads under paced load, slow requests in flight.
    let rates = capacity.map(|c| (c * RELOAD_LOAD_SHARE).max(100.0) as u32);
    let mut rounds: Vec<(&str, Vec<ReloadRound>)> =
        vec![("pm2 reload", Vec::new()), ("sysmgr reload", Vec::new())];
    let mut sysmgr_says = String::new();
    for round in 0..bench.settings.rounds {
        for k in rotated(2, round) {
            eprintln!(
                "express reload round {}/{}: {}",
                round + 1,
                bench.settings.rounds,
                rounds[k].0
            );
            let r = if k == 0 {
                bench.reload_round(pm2_addr, rates, SLOW, || {
                    Ok((pm2.reload().map_err(anyhow::Error::msg)?, None))
                })?
            } else {
                bench.reload_round(sysmgr_addr, rates, SLOW, || {
                    let started = Instant::now();
                    let (_, stderr) = bench.sysmgr_output(&["reload", APP])?;
                    let wall = started.elapsed();
                    sysmgr_says = stderr;
                    Ok((wall, None))
                })?
            };
            rounds[k].1.push(r);
        }
    }
    drop(pm2);
    bench.sysmgr_cmd(&["stop", APP])?;
    eprintln!("the last `sysmgr reload {APP}` said:\n{sysmgr_says}");

    writeln!(
        out,
        "\nReload of the {pm2_instances} processes under load: {} keep-alive req/s from 16 \
         connections + {} one-per-connection req/s from 4 ({:.0}% of the lower capacity \
         above), and {} requests to `{}` sent 300 ms before each reload. `pm2 reload app` and \
         `sysmgr reload app` are the commands, timed from start to exit; steady = the same load \
         for {:.1} s just before. Requests, failed and hung: sums over {} rounds alternating \
         the two; latencies and times: medians of rounds.\n",
        rates[0],
        rates[1],
        RELOAD_LOAD_SHARE * 100.0,
        SLOW.count,
        SLOW.path,
        bench.settings.seconds.as_secs_f64(),
        bench.settings.rounds,
    )?;
    client_table(
        out,
        "manager",
        rounds.iter().map(|(m, r)| (*m, r.as_slice())),
    )?;
    out.push('\n');
    out.push_str(&table::header(&[
        "manager",
        "reload wall time, median (min to max)",
        "slow requests answered 200",
    ]));
    for (label, rs) in &rounds {
        let walls: Vec<f64> = rs.iter().map(|r| ms(r.wall)).collect();
        let lo = walls.iter().copied().fold(f64::MAX, f64::min);
        let hi = walls.iter().copied().fold(0.0, f64::max);
        writeln!(
            out,
            "| {label} | {:.0} ms ({lo:.0} to {hi:.0}) | {} of {} |",
            median(walls.clone()),
            rs.iter().map(|r| r.slow_ok).sum::<usize>(),
            rs.iter().map(|r| r.slow_sent).sum::<usize>(),
        )?;
    }
    failures_note(out, rounds.iter().map(|(m, r)| (*m, r.as_slice())))?;

    // 3. The bridge's own cost, on the host (no systemd needed), with PM2 gone.
    bridge::run(
        node,
        &repo.join("node/bridge.cjs"),
        &host_dir,
        pm2_port,
        bench.settings.rounds,
        out,
    )
}

/// A copy of the fixtures' app in `dir`: app.js with `port` for 3000, ecosystem.config.js as
/// it is, and their express install.
fn app_dir(dir: &Path, fixtures: &Path, port: u16) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create `{}`", dir.display()))?;
    let app = std::fs::read_to_string(fixtures.join("app.js"))?;
    std::fs::write(dir.join("app.js"), app.replace("3000", &port.to_string()))?;
    std::fs::copy(
        fixtures.join("ecosystem.config.js"),
        dir.join("ecosystem.config.js"),
    )?;
    let modules = dir.join("node_modules");
    if std::fs::symlink_metadata(&modules).is_ok() {
        std::fs::remove_file(&modules)?;
    }
    std::os::unix::fs::symlink(fixtures.join("node_modules"), &modules)?;
    Ok(())
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn version(program: &str, args: &[&str]) -> String {
    std::process::Command::new(program)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// `version` from a package's package.json.
fn package_version(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("package.json"))
        .ok()
        .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
        .and_then(|v| v["version"].as_str().map(str::to_string))
        .unwrap_or_default()
}

impl Bench {
    /// Waits until the instances of `app` (as many as `sysmgr start` made) are active, and
    /// returns how many there are.
    fn wait_active(&self, app: &str) -> anyhow::Result<usize> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let units = self
                .inside("systemctl")
                .args(["list-units", "--plain", "--no-legend", "--state=active"])
                .arg(format!("{app}@*.service"))
                .output()?;
            let active = String::from_utf8_lossy(&units.stdout).lines().count();
            let all = self
                .inside("systemctl")
                .args(["list-units", "--plain", "--no-legend", "--all"])
                .arg(format!("{app}@*.service"))
                .output()?;
            let all = String::from_utf8_lossy(&all.stdout).lines().count();
            if active > 0 && active == all {
                return Ok(active);
            }
            if Instant::now() > deadline {
                bail!("`{app}`: {active} of {all} instances active after 30 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
