//! sysmgr-hello: the reference worker, used by sysmgr's tests, demo and benchmarks.
//!
//! It does the three duties of a sysmgr worker with `sysmgr-worker` and nothing else: takes its
//! sockets from systemd (or binds `--listen` by hand), sends `READY=1` once it serves, and drains
//! on SIGINT/SIGTERM without losing a request. Its answers name the instance and PID, so a test
//! can tell which worker served a request:
//!
//! - `/` answers `instance {SYSMGR_INSTANCE or -} pid {PID}\n`;
//! - `/slow?ms=N` answers `slow {N}ms instance {i} pid {p}\n` after N ms (at most 60000);
//! - `/health` answers `ok\n` (or, with `--health-status CODE`, that status: a version that is
//!   ready but unhealthy, for the tests of `health_check`); anything else is 404.
//!
//! It logs one line to stderr (the journal) when it is ready and one when its drain ends.

mod serve;

use std::process::ExitCode;
use std::time::Duration;

/// The whole usage text; `--help` prints it.
const USAGE: &str = "\
usage: sysmgr-hello [--listen ADDR] [--ready-delay MS] [--health-status CODE] [--threads N]

The reference worker of sysmgr. Under systemd it takes its listening sockets
from socket activation (LISTEN_FDS) and sends READY=1 when it serves; on
SIGINT or SIGTERM it drains (in-flight requests finish, keep-alive clients get
`Connection: close`) and exits before SYSMGR_KILL_TIMEOUT_MS.

  GET /             instance {SYSMGR_INSTANCE} pid {PID}
  GET /slow?ms=N    the same after N ms (N <= 60000)
  GET /health       ok (status 200, or --health-status)

options:
  --listen ADDR       address to bind when not socket-activated, e.g.
                      127.0.0.1:3000, [::1]:3000, /run/hello.sock or
                      NAME=ADDR,...; default: $SYSMGR_DEV_LISTEN, else
                      127.0.0.1:3000. Ignored under socket activation.
  --ready-delay MS    wait MS milliseconds before READY=1, as an app warming
                      up would (tests of PM2's wait_ready)
  --health-status CODE
                      answer /health with this HTTP status (100 to 599) instead
                      of 200, as an unhealthy version would (tests of health_check)
  --threads N         tokio worker threads (default 2, see docs/workers.md)
  -h, --help          print this help
  -V, --version       print the version
";

/// Worker threads per instance. sysmgr runs one instance per core, so a process needs little
/// parallelism of its own; measured with wrk (64 keep-alive connections) on 2 cores with 2
/// instances on one shared socket, 1 and 2 threads give the same throughput (77k to 95k
/// requests/s, run to run), and 2 threads a lower mean latency (0.8 to 1.0 ms against 1.3 ms):
/// a connection whose thread is preempted can be picked up by the other one.
const DEFAULT_THREADS: usize = 2;

/// The development address when neither `--listen` nor `SYSMGR_DEV_LISTEN` gives one.
const DEFAULT_LISTEN: &str = "127.0.0.1:3000";

/// Parsed command line.
#[derive(Debug, PartialEq, Eq)]
pub struct Args {
    /// `--listen`.
    pub listen: Option<String>,
    /// `--ready-delay`.
    pub ready_delay: Duration,
    /// `--threads`.
    pub threads: usize,
    /// `--health-status`: the status of `/health`.
    pub health_status: u16,
}

/// Everything that can stop sysmgr-hello, mapped to an exit code in `main`.
#[derive(Debug, thiserror::Error)]
pub enum HelloError {
    /// The command line is wrong (exit code 2).
    #[error("{0}\n\n{USAGE}")]
    Usage(String),
    /// The environment systemd wrote cannot be read.
    #[error(transparent)]
    Env(#[from] sysmgr_worker::EnvError),
    /// No listening socket.
    #[error(transparent)]
    Listen(#[from] sysmgr_worker::ListenError),
    /// The notify socket is unusable.
    #[error(transparent)]
    Notify(#[from] sysmgr_worker::NotifyError),
    /// Signal handlers could not be installed.
    #[error(transparent)]
    Shutdown(#[from] sysmgr_worker::ShutdownError),
    /// The listener could not be handed to tokio, or the runtime could not start.
    #[error("cannot start the async runtime or register the listener")]
    Runtime(#[source] std::io::Error),
    /// Serving failed.
    #[error(transparent)]
    Serve(#[from] sysmgr_worker::http::ServeError),
}

fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Option<Args>, HelloError> {
    let mut parsed = Args {
        listen: None,
        ready_delay: Duration::ZERO,
        threads: DEFAULT_THREADS,
        health_status: 200,
    };
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| HelloError::Usage(format!("`{name}` needs a value")))
        };
        match flag.as_str() {
            "-h" | "--help" => {
                print!("{USAGE}");
                return Ok(None);
            }
            "-V" | "--version" => {
                println!("sysmgr-hello {}", env!("CARGO_PKG_VERSION"));
                return Ok(None);
            }
            "--listen" => parsed.listen = Some(value("--listen")?),
            "--ready-delay" => {
                let v = value("--ready-delay")?;
                let ms: u64 = v.parse().map_err(|_| {
                    HelloError::Usage(format!("`--ready-delay` takes milliseconds, found `{v}`"))
                })?;
                parsed.ready_delay = Duration::from_millis(ms);
            }
            "--health-status" => {
                let v = value("--health-status")?;
                parsed.health_status = v
                    .parse()
                    .ok()
                    .filter(|&n| (100..=599).contains(&n))
                    .ok_or_else(|| {
                        HelloError::Usage(format!(
                            "`--health-status` takes an HTTP status from 100 to 599, found `{v}`"
                        ))
                    })?;
            }
            "--threads" => {
                let v = value("--threads")?;
                parsed.threads = v
                    .parse()
                    .ok()
                    .filter(|&n| (1..=64).contains(&n))
                    .ok_or_else(|| {
                        HelloError::Usage(format!("`--threads` takes 1 to 64, found `{v}`"))
                    })?;
            }
            other => return Err(HelloError::Usage(format!("unknown argument `{other}`"))),
        }
    }
    Ok(Some(parsed))
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("sysmgr-hello: error: {err}");
            let mut source = std::error::Error::source(&err);
            while let Some(cause) = source {
                eprintln!("  caused by: {cause}");
                source = cause.source();
            }
            ExitCode::from(match err {
                HelloError::Usage(_) => 2,
                _ => 1,
            })
        }
    }
}

fn run() -> Result<(), HelloError> {
    // The environment first, while this is the only thread (see sysmgr_worker::WorkerEnv).
    let env = sysmgr_worker::WorkerEnv::from_process()?;
    let Some(args) = parse_args(std::env::args().skip(1))? else {
        return Ok(());
    };
    let listeners = match (&args.listen, env.is_socket_activated()) {
        (Some(addr), false) => sysmgr_worker::Listeners::bind(addr)?,
        _ => sysmgr_worker::Listeners::from_env_or_bind(&env, DEFAULT_LISTEN)?,
    };
    serve::run(env, listeners, &args)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Option<Args>, HelloError> {
        parse_args(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn flags_are_parsed_with_or_without_equals() {
        let a = parse(&[
            "--listen",
            "[::1]:8080",
            "--ready-delay=250",
            "--threads",
            "2",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(
            a,
            Args {
                listen: Some("[::1]:8080".into()),
                ready_delay: Duration::from_millis(250),
                threads: 2,
                health_status: 200,
            }
        );
        assert_eq!(parse(&[]).unwrap().unwrap().threads, DEFAULT_THREADS);
    }

    #[test]
    fn bad_flags_are_usage_errors_that_name_them() {
        for (args, msg) in [
            (
                &["--threads", "0"][..],
                "`--threads` takes 1 to 64, found `0`",
            ),
            (
                &["--ready-delay", "soon"][..],
                "`--ready-delay` takes milliseconds, found `soon`",
            ),
            (&["--listen"][..], "`--listen` needs a value"),
            (
                &["--health-status", "99"][..],
                "`--health-status` takes an HTTP status from 100 to 599, found `99`",
            ),
            (&["--port", "1"][..], "unknown argument `--port`"),
        ] {
            match parse(args) {
                Err(HelloError::Usage(m)) => assert_eq!(m, msg),
                other => panic!("{args:?}: {other:?}"),
            }
        }
    }
}
