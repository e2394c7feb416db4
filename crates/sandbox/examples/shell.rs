//! Boots a sandbox with the current directory bound, runs the given command inside, prints
//! its output, and tears down. A debugging aid: `cargo run --example shell -- systemctl status`.
fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cwd = std::env::current_dir().unwrap();
    let sb = sysmgr_sandbox::Sandbox::boot(sysmgr_sandbox::Options {
        binds: vec![cwd],
        ..Default::default()
    })
    .unwrap();
    let out = sb
        .command("sh")
        .arg("-c")
        .arg(args.join(" "))
        .output()
        .unwrap();
    print!("{}", String::from_utf8_lossy(&out.stdout));
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
}
