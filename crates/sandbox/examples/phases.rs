//! Where a boot's time goes: the boot script, systemd's own start-up, and the wait for the
//! answer on the bus. `cargo run --example phases`.
use std::time::Instant;

fn monotonic_us() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid timespec for the call to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1000
}

fn main() {
    let start_us = monotonic_us();
    let t = Instant::now();
    let sb = sysmgr_sandbox::Sandbox::boot(sysmgr_sandbox::Options::default()).unwrap();
    let total = t.elapsed();
    let show = sb
        .systemctl(&[
            "show",
            "-p",
            "UserspaceTimestampMonotonic",
            "-p",
            "FinishTimestampMonotonic",
        ])
        .unwrap();
    let get = |key: &str| -> u64 {
        show.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .unwrap()
            .parse()
            .unwrap()
    };
    let userspace = get("UserspaceTimestampMonotonic");
    let finish = get("FinishTimestampMonotonic");
    println!(
        "script until systemd starts: {} ms; systemd boot: {} ms; until boot() returned: {} ms; total {:?}",
        (userspace - start_us) / 1000,
        (finish - userspace) / 1000,
        (start_us + total.as_micros() as u64 - finish) / 1000,
        total
    );
}
