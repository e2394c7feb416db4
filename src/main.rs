//! The `sysmgr` binary: everything lives in the library's [`sysmgr::cli`]; this only runs it.
//! Installed also as `sysmgr-generator` (a link), where it runs as a systemd generator.

fn main() -> std::process::ExitCode {
    sysmgr::cli::main()
}
