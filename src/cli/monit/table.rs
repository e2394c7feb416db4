//! The table of `sysmgr monit`: a row per instance (state, PID, CPU %, memory, restarts,
//! uptime) and a total row per app, laid out in the terminal's width. Pure: the terminal view
//! and the plain snapshot share it, and its tests need no systemd.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::super::status::{bytes, uptime};
use crate::controller::status::AppStatus;

/// CPU use between two readings of a unit's CPU time, in percent of one CPU (two busy cores
/// read 200 %). `None` without two readings, or when the counter went back (the instance was
/// restarted between them, so its cgroup's count began again).
pub fn cpu_percent(
    prev_nsec: Option<u64>,
    now_nsec: Option<u64>,
    elapsed: Duration,
) -> Option<f64> {
    let (prev, now) = (prev_nsec?, now_nsec?);
    let elapsed = elapsed.as_nanos();
    if now < prev || elapsed == 0 {
        return None;
    }
    Some((now - prev) as f64 * 100.0 / elapsed as f64)
}

/// `12.3%`, or `-` when unknown.
fn percent(p: Option<f64>) -> String {
    p.map_or("-".into(), |p| format!("{p:.1}%"))
}

/// The CPU times of the last refresh, by unit and main PID (a new PID is a new process).
#[derive(Debug, Default)]
pub struct Sampler {
    last: HashMap<String, (Option<u32>, u64)>,
    at: Option<Instant>,
}

impl Sampler {
    /// The CPU % of every instance of `apps` since the previous call, by unit name.
    pub fn sample(&mut self, apps: &[AppStatus], now: Instant) -> HashMap<String, f64> {
        let elapsed = self.at.map(|at| now.duration_since(at));
        let mut cpu = HashMap::new();
        let mut last = HashMap::new();
        for i in apps.iter().flat_map(|a| &a.instances) {
            let prev = self
                .last
                .get(&i.unit)
                .filter(|(pid, _)| *pid == i.pid)
                .map(|(_, n)| *n);
            if let Some(p) = elapsed.and_then(|e| cpu_percent(prev, i.cpu_nsec, e)) {
                cpu.insert(i.unit.clone(), p);
            }
            if let Some(n) = i.cpu_nsec {
                last.insert(i.unit.clone(), (i.pid, n));
            }
        }
        self.last = last;
        self.at = Some(now);
        cpu
    }
}

/// The columns, in order.
pub const HEADER: [&str; 8] = [
    "APP", "INST", "STATE", "PID", "CPU", "MEMORY", "RESTARTS", "UPTIME",
];

/// One row of the table: its cells, and what it stands for (what the keys act on).
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The app.
    pub app: String,
    /// The instance, `None` on the app's total row.
    pub instance: Option<u32>,
    pub cells: [String; 8],
}

impl Row {
    /// The app's total row.
    pub fn total(&self) -> bool {
        self.instance.is_none()
    }
}

/// A row per instance, then the app's total row (memory and CPU % summed over the instances
/// that report them), for each app.
pub fn rows(apps: &[AppStatus], cpu: &HashMap<String, f64>) -> Vec<Row> {
    let mut out = Vec::new();
    for app in apps {
        let (mut mem, mut mem_known) = (0u64, false);
        let (mut cpu_sum, mut cpu_known) = (0f64, false);
        let mut restarts = 0u32;
        let mut running = 0usize;
        for i in &app.instances {
            let c = cpu.get(&i.unit).copied();
            if let Some(m) = i.memory_bytes {
                mem += m;
                mem_known = true;
            }
            if let Some(c) = c {
                cpu_sum += c;
                cpu_known = true;
            }
            restarts += i.restarts;
            running += usize::from(i.sub_state == "running");
            out.push(Row {
                app: app.name.clone(),
                instance: Some(i.instance),
                cells: [
                    app.name.clone(),
                    format!("{}{}", i.instance, if i.wanted { "" } else { "*" }),
                    format!("{}/{}", i.active_state, i.sub_state),
                    i.pid.map_or("-".into(), |p| p.to_string()),
                    percent(c),
                    i.memory_bytes.map_or("-".into(), bytes),
                    i.restarts.to_string(),
                    i.uptime_secs.map_or("-".into(), uptime),
                ],
            });
        }
        out.push(Row {
            app: app.name.clone(),
            instance: None,
            cells: [
                app.name.clone(),
                "total".into(),
                format!("{} {running}/{}", app.state, app.instances.len()),
                "-".into(),
                percent(cpu_known.then_some(cpu_sum)),
                if mem_known { bytes(mem) } else { "-".into() },
                restarts.to_string(),
                "-".into(),
            ],
        });
    }
    out
}

/// The header and the rows as lines of at most `width` characters: columns as wide as their
/// widest cell, two spaces apart; when that is too wide the APP and STATE columns are cut
/// (ending in `~`), and then every line.
pub fn layout(rows: &[Row], width: usize) -> Vec<String> {
    let header = HEADER.map(String::from);
    let all: Vec<&[String; 8]> = std::iter::once(&header)
        .chain(rows.iter().map(|r| &r.cells))
        .collect();
    let mut widths: Vec<usize> = (0..8)
        .map(|c| all.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    // Columns that give way, with the narrowest they get: APP, then STATE.
    let shrinkable = [(2usize, 10usize), (0, 6)];
    let total = |w: &[usize]| w.iter().sum::<usize>() + 2 * (w.len() - 1);
    while total(&widths) > width {
        let Some(&(c, _)) = shrinkable
            .iter()
            .filter(|(c, min)| widths[*c] > *min)
            .max_by_key(|(c, _)| widths[*c])
        else {
            break;
        };
        widths[c] -= 1;
    }
    all.iter()
        .map(|row| {
            let cells: Vec<String> = row
                .iter()
                .zip(&widths)
                .map(|(cell, &w)| format!("{:<w$}", cut(cell, w)))
                .collect();
            cut(cells.join("  ").trim_end(), width)
        })
        .collect()
}

/// `text` in at most `width` characters, its end replaced by `~` when cut.
pub fn cut(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    let mut out: String = text.chars().take(width.saturating_sub(1)).collect();
    if width > 0 {
        out.push('~');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::status::InstanceStatus;

    #[test]
    fn cpu_percent_is_the_cpu_time_delta_over_the_wall_time() {
        let s = Duration::from_secs(1);
        assert_eq!(cpu_percent(Some(0), Some(500_000_000), s), Some(50.0));
        assert_eq!(
            cpu_percent(Some(1_000), Some(2_000_001_000), s),
            Some(200.0)
        );
        assert_eq!(
            cpu_percent(Some(10), Some(10), Duration::from_millis(500)),
            Some(0.0)
        );
        // Nothing to compare with, no accounting, a restart, no time.
        assert_eq!(cpu_percent(None, Some(5), s), None);
        assert_eq!(cpu_percent(Some(5), None, s), None);
        assert_eq!(cpu_percent(Some(5), Some(4), s), None);
        assert_eq!(cpu_percent(Some(5), Some(6), Duration::ZERO), None);
    }

    fn instance(n: u32, pid: u32, mem: Option<u64>, cpu: Option<u64>) -> InstanceStatus {
        InstanceStatus {
            instance: n,
            unit: format!("web@{n}.service"),
            wanted: true,
            active_state: "active".into(),
            sub_state: "running".into(),
            pid: Some(pid),
            uptime_secs: Some(125),
            restarts: n,
            memory_bytes: mem,
            cpu_nsec: cpu,
            result: "success".into(),
        }
    }

    fn app(name: &str, instances: Vec<InstanceStatus>) -> AppStatus {
        AppStatus {
            name: name.into(),
            source: None,
            state: "active".into(),
            target: "active".into(),
            wanted: instances.len(),
            instances,
            sockets: Vec::new(),
        }
    }

    #[test]
    fn the_sampler_compares_the_same_process_only() {
        let mut s = Sampler::default();
        let t0 = Instant::now();
        let a = [app(
            "web",
            vec![
                instance(1, 10, None, Some(0)),
                instance(2, 20, None, Some(0)),
            ],
        )];
        assert!(s.sample(&a, t0).is_empty(), "one reading has no rate");
        let b = [app(
            "web",
            vec![
                instance(1, 10, None, Some(250_000_000)),
                instance(2, 21, None, Some(1)),
            ],
        )];
        let cpu = s.sample(&b, t0 + Duration::from_secs(1));
        assert_eq!(cpu.get("web@1.service"), Some(&25.0));
        assert_eq!(cpu.get("web@2.service"), None, "a new PID starts over");
    }

    #[test]
    fn rows_have_an_app_total_of_memory_and_cpu() {
        let a = [app(
            "web",
            vec![
                instance(1, 4242, Some(3 * 1024 * 1024), Some(0)),
                instance(2, 4243, Some(1024 * 1024), Some(0)),
            ],
        )];
        let cpu = HashMap::from([
            ("web@1.service".to_string(), 12.5),
            ("web@2.service".to_string(), 2.5),
        ]);
        let r = rows(&a, &cpu);
        assert_eq!(r.len(), 3);
        assert_eq!(r[0].cells[3], "4242");
        assert_eq!(r[0].cells[4], "12.5%");
        assert_eq!(r[0].cells[5], "3.0 MiB");
        assert_eq!(r[0].cells[7], "2m5s");
        assert!(r[2].total());
        assert_eq!((r[0].instance, r[2].instance), (Some(1), None));
        assert_eq!(r[2].cells[1], "total");
        assert_eq!(r[2].cells[2], "active 2/2");
        assert_eq!(r[2].cells[4], "15.0%");
        assert_eq!(r[2].cells[5], "4.0 MiB");
        assert_eq!(r[2].cells[6], "3");
        // No accounting: `-`, in the rows and the total.
        let r = rows(
            &[app("web", vec![instance(1, 1, None, None)])],
            &HashMap::new(),
        );
        assert_eq!((r[0].cells[4].as_str(), r[0].cells[5].as_str()), ("-", "-"));
        assert_eq!((r[1].cells[4].as_str(), r[1].cells[5].as_str()), ("-", "-"));
    }

    #[test]
    fn the_table_fits_80_columns() {
        let long = "a-very-long-application-name-that-goes-on";
        let mut i = instance(12, 4_194_303, Some(1536 * 1024 * 1024), Some(0));
        i.active_state = "deactivating".into();
        i.sub_state = "stop-sigterm".into();
        i.restarts = 123_456;
        i.uptime_secs = Some(3 * 86_400 + 7200);
        let a = [
            app(long, vec![i]),
            app("web", vec![instance(1, 7, Some(2048), Some(0))]),
        ];
        let cpu = HashMap::from([("web@12.service".to_string(), 100.0)]);
        let lines = layout(&rows(&a, &cpu), 80);
        for l in &lines {
            assert!(
                l.chars().count() <= 80,
                "{l:?} is {} wide",
                l.chars().count()
            );
        }
        assert_eq!(
            lines,
            [
                "APP            INST   STATE           PID      CPU     MEMORY   RESTARTS  UPTIME",
                "a-very-long-~  12     deactivating/~  4194303  100.0%  1.5 GiB  123456    3d2h",
                "a-very-long-~  total  active 0/1      -        100.0%  1.5 GiB  123456    -",
                "web            1      active/running  7        -       2.0 KiB  1         2m5s",
                "web            total  active 1/1      -        -       2.0 KiB  1         -",
            ]
            .map(String::from)
        );
        // Short names keep their width; a very narrow screen still cuts every line.
        let short = layout(&rows(&a[1..], &HashMap::new()), 80);
        assert!(
            short[1].starts_with("web  1      active/running  7"),
            "{short:?}"
        );
        assert!(layout(&rows(&a, &cpu), 30)
            .iter()
            .all(|l| l.chars().count() <= 30));
    }
}
