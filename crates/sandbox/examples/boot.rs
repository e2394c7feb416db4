//! Boots sandboxes one after another and prints how long booting and tearing down took, the
//! state systemd reached and its failed units: `cargo run --example boot -- [COUNT]`.
use std::time::Instant;

fn main() {
    let count: usize = std::env::args()
        .nth(1)
        .map_or(1, |n| n.parse().expect("COUNT is a number"));
    let (mut boots, mut drops) = (Vec::new(), Vec::new());
    for _ in 0..count {
        let t = Instant::now();
        let sb = match sysmgr_sandbox::Sandbox::boot(sysmgr_sandbox::Options::default()) {
            Ok(sb) => sb,
            Err(e) => {
                eprintln!("error: {e}");
                std::process::exit(1);
            }
        };
        boots.push(t.elapsed());
        let state = sb
            .command("systemctl")
            .arg("is-system-running")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_else(|e| e.to_string());
        let failed = sb
            .systemctl(&["--failed", "--no-legend", "--plain"])
            .unwrap_or_else(|e| e.to_string());
        println!(
            "pid {}: {state}; failed units: {:?}",
            sb.pid(),
            failed.trim()
        );
        let t = Instant::now();
        drop(sb);
        drops.push(t.elapsed());
    }
    boots.sort();
    drops.sort();
    println!(
        "boot: median {:?} (min {:?}, max {:?}); teardown: median {:?} (max {:?})",
        boots[count / 2],
        boots[0],
        boots[count - 1],
        drops[count / 2],
        drops[count - 1]
    );
}
