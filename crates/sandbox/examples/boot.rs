//! Boots a sandbox, prints how long it took and its state, and tears it down.
fn main() {
    let t = std::time::Instant::now();
    let sb = sysmgr_sandbox::Sandbox::boot(sysmgr_sandbox::Options::default()).unwrap();
    let booted = t.elapsed();
    println!("booted in {booted:?}, pid {}", sb.pid());
    println!(
        "{}",
        sb.systemctl(&["is-system-running"])
            .unwrap_or_else(|e| e.to_string())
    );
    println!(
        "{}",
        sb.systemctl(&["--failed", "--no-legend"])
            .unwrap_or_else(|e| e.to_string())
    );
    let t = std::time::Instant::now();
    drop(sb);
    println!("torn down in {:?}", t.elapsed());
}
