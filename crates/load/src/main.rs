//! `sysmgr-load`: the load client as a command, for benchmark scripts and for poking at a
//! worker by hand. It prints the [`Report`] and exits 1 when any request failed, so a script can
//! tell a clean run without parsing the text.
//!
//! Arguments are parsed by hand: a dozen flags do not justify a parser dependency in a crate
//! that tests link.

use std::fmt;
use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use sysmgr_load::{LoadConfig, Mode, Report};

const USAGE: &str = "\
usage: sysmgr-load ADDR [options]

Sends HTTP/1.1 GET requests to ADDR (a loopback address such as 127.0.0.1:3000
or [::1]:3000) and reports every failed and hung request, throughput and
latency. Exits 0 when every request got a 2xx answer, 1 when some did not,
2 on bad arguments.

options:
  --connections N   concurrent connections (default 8)
  --per-request     a new connection for every request (default: keep-alive)
  --duration S      seconds to send for, fractions allowed (default 10)
  --requests N      stop after N requests in all
  --rate R          at most R requests per second in all
  --path P          request target (default /)
  --host H          Host header (default ADDR)
  --timeout S       seconds without a complete answer before a request
                    counts as hung (default 5)
  --threads N       runtime threads (default 1: leaves the other cores to
                    the server under test)
  -h, --help        print this help
";

/// Why the command line cannot be used.
#[derive(Debug, PartialEq)]
enum ArgError {
    Missing(&'static str),
    Value { flag: String, value: String },
    Unknown(String),
    NotLoopback(SocketAddr),
}

impl fmt::Display for ArgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArgError::Missing(what) => write!(f, "missing {what}; see `sysmgr-load --help`"),
            ArgError::Value { flag, value } => write!(
                f,
                "invalid value `{value}` for `{flag}`; see `sysmgr-load --help`"
            ),
            ArgError::Unknown(arg) => {
                write!(f, "unknown argument `{arg}`; see `sysmgr-load --help`")
            }
            ArgError::NotLoopback(addr) => write!(
                f,
                "refusing to load `{addr}`: sysmgr-load only targets loopback addresses (127.0.0.0/8, ::1)"
            ),
        }
    }
}

/// What the command line asks for.
#[derive(Debug)]
enum Command {
    Help,
    Load(LoadConfig),
}

fn parse(args: impl IntoIterator<Item = String>) -> Result<Command, ArgError> {
    let mut args = args.into_iter();
    let mut addr: Option<SocketAddr> = None;
    let mut options: Vec<(String, String)> = Vec::new();
    let mut per_request = false;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "--per-request" => per_request = true,
            flag if flag.starts_with("--") => {
                let value = args
                    .next()
                    .ok_or(ArgError::Missing("a value after a flag"))?;
                options.push((flag.to_string(), value));
            }
            _ if addr.is_none() => {
                addr = Some(arg.parse().map_err(|_| ArgError::Value {
                    flag: "ADDR".into(),
                    value: arg.clone(),
                })?);
            }
            _ => return Err(ArgError::Unknown(arg)),
        }
    }
    let addr = addr.ok_or(ArgError::Missing(
        "the address to load, e.g. `127.0.0.1:3000`",
    ))?;
    if !addr.ip().is_loopback() {
        return Err(ArgError::NotLoopback(addr));
    }
    let mut config = LoadConfig::new(addr);
    if per_request {
        config.mode = Mode::PerRequest;
    }
    for (flag, value) in options {
        let bad = || ArgError::Value {
            flag: flag.clone(),
            value: value.clone(),
        };
        let seconds = || {
            value
                .parse::<f64>()
                .ok()
                .and_then(|s| Duration::try_from_secs_f64(s).ok())
                .filter(|d| !d.is_zero())
                .ok_or_else(bad)
        };
        let count = || value.parse::<u64>().ok().filter(|n| *n > 0).ok_or_else(bad);
        match flag.as_str() {
            "--connections" => config.connections = count()? as usize,
            "--duration" => config.duration = seconds()?,
            "--requests" => config.max_requests = Some(count()?),
            "--rate" => config.rate = Some(u32::try_from(count()?).map_err(|_| bad())?),
            "--path" if value.starts_with('/') && !value.bytes().any(|b| b <= b' ') => {
                config.path = value
            }
            "--path" => return Err(bad()),
            "--host" if !value.is_empty() && !value.bytes().any(|b| b <= b' ') => {
                config.host = value
            }
            "--host" => return Err(bad()),
            "--timeout" => config.request_timeout = seconds()?,
            "--threads" => config.threads = count()?.min(256) as usize,
            _ => return Err(ArgError::Unknown(flag)),
        }
    }
    Ok(Command::Load(config))
}

fn main() -> ExitCode {
    let config = match parse(std::env::args().skip(1)) {
        Ok(Command::Help) => {
            let _ = std::io::stdout().write_all(USAGE.as_bytes());
            return ExitCode::SUCCESS;
        }
        Ok(Command::Load(config)) => config,
        Err(e) => {
            eprintln!("sysmgr-load: {e}");
            return ExitCode::from(2);
        }
    };
    // Written, not `println!`ed: a reader that goes away (`| head`) must not turn a finished
    // run into a panic.
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "{} {} connections to {} for {:.1} s",
        match config.mode {
            Mode::KeepAlive => "keep-alive:",
            Mode::PerRequest => "one request per connection:",
        },
        config.connections,
        config.addr,
        config.duration.as_secs_f64()
    );
    let _ = out.flush();
    let report: Report = sysmgr_load::Background::start(config).wait();
    let _ = writeln!(out, "{report}");
    if report.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Result<Command, ArgError> {
        parse(line.split_whitespace().map(String::from))
    }

    #[test]
    fn every_option_lands_in_the_config() {
        let Ok(Command::Load(c)) = args(
            "127.0.0.1:3000 --connections 64 --per-request --duration 2.5 --requests 1000 \
             --rate 500 --path /slow?ms=1 --host h --timeout 0.5 --threads 2",
        ) else {
            panic!("parses");
        };
        assert_eq!(c.addr, SocketAddr::from(([127, 0, 0, 1], 3000)));
        assert_eq!(c.connections, 64);
        assert_eq!(c.mode, Mode::PerRequest);
        assert_eq!(c.duration, Duration::from_millis(2500));
        assert_eq!(c.max_requests, Some(1000));
        assert_eq!(c.rate, Some(500));
        assert_eq!(c.path, "/slow?ms=1");
        assert_eq!(c.host, "h");
        assert_eq!(c.request_timeout, Duration::from_millis(500));
        assert_eq!(c.threads, 2);
    }

    #[test]
    fn defaults_are_the_library_defaults() {
        let Ok(Command::Load(c)) = args("[::1]:80") else {
            panic!("parses");
        };
        let d = LoadConfig::new(c.addr);
        assert_eq!(
            (c.connections, c.mode, c.duration, c.request_timeout),
            (d.connections, d.mode, d.duration, d.request_timeout)
        );
    }

    #[test]
    fn errors_say_what_is_wrong_and_where_to_look() {
        let cases = [
            ("", "missing the address to load, e.g. `127.0.0.1:3000`; see `sysmgr-load --help`"),
            ("127.0.0.1:1 --duration", "missing a value after a flag; see `sysmgr-load --help`"),
            ("localhost:80", "invalid value `localhost:80` for `ADDR`; see `sysmgr-load --help`"),
            ("127.0.0.1:1 --duration -1", "invalid value `-1` for `--duration`; see `sysmgr-load --help`"),
            ("127.0.0.1:1 --connections 0", "invalid value `0` for `--connections`; see `sysmgr-load --help`"),
            ("127.0.0.1:1 --path x", "invalid value `x` for `--path`; see `sysmgr-load --help`"),
            ("127.0.0.1:1 --frobnicate 1", "unknown argument `--frobnicate`; see `sysmgr-load --help`"),
            ("127.0.0.1:1 extra", "unknown argument `extra`; see `sysmgr-load --help`"),
            (
                "192.0.2.1:80",
                "refusing to load `192.0.2.1:80`: sysmgr-load only targets loopback addresses (127.0.0.0/8, ::1)",
            ),
        ];
        for (line, message) in cases {
            let e = args(line).expect_err(line);
            assert_eq!(e.to_string(), message, "{line}");
        }
        assert!(matches!(args("--help"), Ok(Command::Help)));
    }
}
