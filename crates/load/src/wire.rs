//! The HTTP/1.1 wire side of the load client: open a connection, send one preformatted `GET`,
//! read one response, and name precisely how it failed when it did.
//!
//! No HTTP client library is used on purpose: a library retries, pools and folds distinct
//! failures into one error type, while the whole point here is to see each request's fate
//! (refused, closed or reset before the answer, on a fresh or on a reused connection, hung,
//! malformed). The parser understands what sysmgr's workers and the test servers send:
//! `Content-Length` bodies and bodies delimited by the end of the connection. `Transfer-Encoding`
//! (chunked) is reported as malformed-for-this-client instead of being half supported.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::ops::Range;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest response head accepted; hyper's default limit is in the same range.
pub(crate) const MAX_HEAD: usize = 64 * 1024;
/// Largest body accepted. Bodies are kept whole (the responder's identity is read from them),
/// and the services under test answer a few bytes.
pub(crate) const MAX_BODY: usize = 1024 * 1024;
/// Start small enough to be cheap per connection, large enough for any usual response.
const INITIAL_BUFFER: usize = 8 * 1024;

/// Why a request got no complete HTTP response.
///
/// A non-2xx status is not a `Failure`: the exchange worked, and the status is reported as such.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Failure {
    /// Nothing listens on the address (`ECONNREFUSED`).
    ConnectRefused,
    /// Any other error while connecting.
    Connect(io::ErrorKind),
    /// The server closed the connection before sending any byte of the response. `reused` tells
    /// whether the request went out on a keep-alive connection that had already carried a
    /// response: that is the race a draining server loses when it closes idle connections too
    /// eagerly.
    Closed {
        /// The connection had already carried a complete response.
        reused: bool,
    },
    /// The connection was reset (or the write hit a closed pipe) before any byte of the response.
    Reset {
        /// The connection had already carried a complete response.
        reused: bool,
    },
    /// The connection was closed or reset after part of the response had arrived: a server that
    /// died (or was killed) while answering, rather than one that lost a race with a new request.
    Truncated {
        /// The connection had already carried a complete response.
        reused: bool,
    },
    /// Any other I/O error after connecting, before any byte of the response.
    Io {
        /// The error's kind.
        kind: io::ErrorKind,
        /// The connection had already carried a complete response.
        reused: bool,
    },
    /// The per-request timeout ran out.
    Timeout {
        /// Where the time ran out.
        phase: Phase,
    },
    /// Bytes came back, but not an HTTP/1.x response this client understands.
    Malformed(Malformed),
}

/// Where a request was when its timeout ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Still connecting: on loopback this means the listen backlog was full (SYNs dropped).
    Connect,
    /// Connected (or reusing a connection) and waiting for the complete response: the server
    /// accepted the connection but did not answer in time.
    Response,
}

/// What was wrong with a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Malformed {
    /// The first line is not `HTTP/1.0` or `HTTP/1.1`, a space and a status code in 100..=599.
    StatusLine,
    /// A header line without a colon, with a space before the colon, a folded line or a bare LF.
    HeaderLine,
    /// The head did not end within 64 KiB.
    HeadTooLarge,
    /// `Content-Length` is not a number, or appears twice with different values.
    ContentLength,
    /// The response uses `Transfer-Encoding` (e.g. chunked), which this client does not decode.
    TransferEncoding,
    /// The body is longer than 1 MiB.
    BodyTooLarge,
    /// `101 Switching Protocols` to a plain `GET`.
    Upgrade,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let on = |reused: bool| {
            if reused {
                "on a reused keep-alive connection"
            } else {
                "on a fresh connection"
            }
        };
        match self {
            Failure::ConnectRefused => f.write_str("connection refused"),
            Failure::Connect(kind) => write!(f, "connect failed: {kind}"),
            Failure::Closed { reused } => {
                write!(f, "connection closed before the response {}", on(*reused))
            }
            Failure::Reset { reused } => {
                write!(f, "connection reset before the response {}", on(*reused))
            }
            Failure::Truncated { reused } => write!(
                f,
                "connection closed in the middle of the response {}",
                on(*reused)
            ),
            Failure::Io { kind, reused } => {
                write!(f, "i/o error before the response {}: {kind}", on(*reused))
            }
            Failure::Timeout {
                phase: Phase::Connect,
            } => f.write_str("timed out connecting"),
            Failure::Timeout {
                phase: Phase::Response,
            } => f.write_str("timed out waiting for the response"),
            Failure::Malformed(m) => write!(f, "malformed response: {m}"),
        }
    }
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Malformed::StatusLine => "bad status line",
            Malformed::HeaderLine => "bad header line",
            Malformed::HeadTooLarge => "response head larger than 64 KiB",
            Malformed::ContentLength => "invalid or conflicting `Content-Length`",
            Malformed::TransferEncoding => "`Transfer-Encoding` is not supported by this client",
            Malformed::BodyTooLarge => "body larger than 1 MiB",
            Malformed::Upgrade => "unexpected `101 Switching Protocols`",
        })
    }
}

/// Connects with the settings every request uses.
pub(crate) async fn connect(addr: SocketAddr) -> Result<TcpStream, Failure> {
    let connect_failure = |e: io::Error| match e.kind() {
        io::ErrorKind::ConnectionRefused => Failure::ConnectRefused,
        kind => Failure::Connect(kind),
    };
    let stream = TcpStream::connect(addr).await.map_err(connect_failure)?;
    // A request is written in one piece and the next only after the answer, so Nagle's algorithm
    // could only delay it; turn it off as every HTTP client does.
    stream.set_nodelay(true).map_err(connect_failure)?;
    Ok(stream)
}

/// A receive buffer reused across requests, so the steady state allocates nothing.
pub(crate) struct RecvBuf {
    data: Vec<u8>,
    filled: usize,
}

impl RecvBuf {
    pub(crate) fn new() -> Self {
        Self {
            data: vec![0; INITIAL_BUFFER],
            filled: 0,
        }
    }

    pub(crate) fn clear(&mut self) {
        self.filled = 0;
    }

    pub(crate) fn get(&self, range: Range<usize>) -> &[u8] {
        &self.data[range]
    }

    fn filled(&self) -> &[u8] {
        &self.data[..self.filled]
    }

    /// Makes room for at least `total` bytes in all.
    fn reserve_total(&mut self, total: usize) {
        if self.data.len() < total {
            self.data.resize(total, 0);
        }
    }

    /// Reads once from `stream`, growing the buffer when full. Returns 0 at end of stream.
    async fn fill(&mut self, stream: &mut TcpStream) -> io::Result<usize> {
        if self.filled == self.data.len() {
            let grown = (self.data.len() * 2).min(MAX_HEAD + MAX_BODY);
            self.data.resize(grown.max(self.filled + 1), 0);
        }
        let n = stream.read(&mut self.data[self.filled..]).await?;
        self.filled += n;
        Ok(n)
    }

    /// Drops the first `n` bytes (an interim `1xx` response).
    fn consume(&mut self, n: usize) {
        self.data.copy_within(n..self.filled, 0);
        self.filled -= n;
    }
}

/// A complete response, its body left in the [`RecvBuf`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) body: Range<usize>,
    /// The connection may carry another request: the server did not ask to close, the body had a
    /// known length, and nothing followed it.
    pub(crate) reusable: bool,
}

fn io_failure(e: io::Error, reused: bool) -> Failure {
    match e.kind() {
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe => Failure::Reset { reused },
        io::ErrorKind::UnexpectedEof => Failure::Closed { reused },
        kind => Failure::Io { kind, reused },
    }
}

/// Writes `request` and reads the complete response into `buf` (which must be empty).
pub(crate) async fn exchange(
    stream: &mut TcpStream,
    request: &[u8],
    buf: &mut RecvBuf,
    reused: bool,
) -> Result<Response, Failure> {
    stream
        .write_all(request)
        .await
        .map_err(|e| io_failure(e, reused))?;
    read_response(stream, buf, reused).await
}

async fn read_response(
    stream: &mut TcpStream,
    buf: &mut RecvBuf,
    reused: bool,
) -> Result<Response, Failure> {
    let mut reader = Reader {
        reused,
        started: false,
    };
    loop {
        let head = loop {
            if let Some(head) = parse_head(buf.filled()).map_err(Failure::Malformed)? {
                break head;
            }
            if buf.filled >= MAX_HEAD {
                return Err(Failure::Malformed(Malformed::HeadTooLarge));
            }
            reader.fill_or_fail(stream, buf).await?;
        };
        if (100..200).contains(&head.status) {
            if head.status == 101 {
                return Err(Failure::Malformed(Malformed::Upgrade));
            }
            // An interim response (e.g. `103 Early Hints`): the real one follows.
            buf.consume(head.len);
            continue;
        }
        return match head.body {
            BodyLength::Known(length) => {
                if length > MAX_BODY {
                    return Err(Failure::Malformed(Malformed::BodyTooLarge));
                }
                let end = head.len + length;
                buf.reserve_total(end);
                while buf.filled < end {
                    reader.fill_or_fail(stream, buf).await?;
                }
                Ok(Response {
                    status: head.status,
                    body: head.len..end,
                    // Bytes after the body were not asked for: do not guess what they are.
                    reusable: !head.close && buf.filled == end,
                })
            }
            BodyLength::UntilClose => {
                loop {
                    if buf.filled - head.len > MAX_BODY {
                        return Err(Failure::Malformed(Malformed::BodyTooLarge));
                    }
                    match buf.fill(stream).await {
                        Ok(0) => break,
                        Ok(_) => {}
                        // The end of the body cannot be told from a cut: a reset is a failure.
                        Err(e) => return Err(reader.failure(e)),
                    }
                }
                Ok(Response {
                    status: head.status,
                    body: head.len..buf.filled,
                    reusable: false,
                })
            }
        };
    }
}

/// Reads the bytes of one answer and names the failure by how far the answer had come.
struct Reader {
    reused: bool,
    /// Some byte of the answer has arrived: a close or reset now cuts an answer short, rather
    /// than leaving a request the server never took up.
    started: bool,
}

impl Reader {
    /// Reads more of the answer, which must not end here.
    async fn fill_or_fail(
        &mut self,
        stream: &mut TcpStream,
        buf: &mut RecvBuf,
    ) -> Result<(), Failure> {
        match buf.fill(stream).await {
            Ok(0) if self.started => Err(Failure::Truncated {
                reused: self.reused,
            }),
            Ok(0) => Err(Failure::Closed {
                reused: self.reused,
            }),
            Ok(_) => {
                self.started = true;
                Ok(())
            }
            Err(e) => Err(self.failure(e)),
        }
    }

    fn failure(&self, e: io::Error) -> Failure {
        if self.started {
            Failure::Truncated {
                reused: self.reused,
            }
        } else {
            io_failure(e, self.reused)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyLength {
    Known(usize),
    /// No `Content-Length`: the body is whatever comes until the server closes.
    UntilClose,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Head {
    status: u16,
    /// Bytes up to and including the blank line.
    len: usize,
    body: BodyLength,
    /// The server will close the connection after this response.
    close: bool,
}

/// Parses a response head from the start of `buf`: `Ok(None)` until the blank line has arrived.
///
/// Bytes that cannot begin a status line are rejected at once, so garbage from a server that
/// then keeps the connection open is reported as malformed rather than as a timeout.
fn parse_head(buf: &[u8]) -> Result<Option<Head>, Malformed> {
    const PREFIX: &[u8] = b"HTTP/";
    let n = buf.len().min(PREFIX.len());
    if buf[..n] != PREFIX[..n] {
        return Err(Malformed::StatusLine);
    }
    let Some(blank) = find_blank_line(buf) else {
        return Ok(None);
    };
    // Cut after the last line's CR: split at LF, every line then ends with CR, and a bare LF
    // anywhere shows up as a line without one.
    let mut lines = buf[..blank + 1]
        .split(|&b| b == b'\n')
        .map(|line| line.strip_suffix(b"\r").ok_or(Malformed::HeaderLine));
    let status_line = lines.next().ok_or(Malformed::StatusLine)??;
    let (http_1_0, status) = parse_status_line(status_line)?;

    let mut content_length = None;
    let (mut close, mut keep_alive) = (false, false);
    for line in lines {
        let line = line?;
        // Obsolete line folding is forbidden in responses to clients that did not ask for it.
        if line.first().is_some_and(|b| *b == b' ' || *b == b'\t') {
            return Err(Malformed::HeaderLine);
        }
        let colon = line
            .iter()
            .position(|&b| b == b':')
            .ok_or(Malformed::HeaderLine)?;
        let (name, value) = (&line[..colon], trim(&line[colon + 1..]));
        if name.is_empty() || name.iter().any(|b| b.is_ascii_whitespace()) {
            return Err(Malformed::HeaderLine);
        }
        if name.eq_ignore_ascii_case(b"content-length") {
            let length = parse_length(value).ok_or(Malformed::ContentLength)?;
            if content_length.is_some_and(|seen| seen != length) {
                return Err(Malformed::ContentLength);
            }
            content_length = Some(length);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            return Err(Malformed::TransferEncoding);
        } else if name.eq_ignore_ascii_case(b"connection") {
            for option in value.split(|&b| b == b',').map(trim) {
                close |= option.eq_ignore_ascii_case(b"close");
                keep_alive |= option.eq_ignore_ascii_case(b"keep-alive");
            }
        }
    }
    // RFC 9112 §6.3: these never have a body whatever the headers say.
    let body = if (100..200).contains(&status) || status == 204 || status == 304 {
        BodyLength::Known(0)
    } else {
        content_length.map_or(BodyLength::UntilClose, BodyLength::Known)
    };
    Ok(Some(Head {
        status,
        len: blank + 4,
        body,
        close: close || (http_1_0 && !keep_alive),
    }))
}

/// Where the first `\r\n\r\n` starts.
///
/// Runs on every read of every response, so it skips ahead like Boyer-Moore-Horspool does: a
/// byte that is neither CR nor LF cannot be part of a match, so the next candidate ends 4 bytes
/// later; a LF that does not end a match can only be the pattern's second byte, 2 bytes before
/// the end of the next candidate.
fn find_blank_line(buf: &[u8]) -> Option<usize> {
    let mut end = 3;
    while end < buf.len() {
        match buf[end] {
            b'\n' if &buf[end - 3..end] == b"\r\n\r" => return Some(end - 3),
            b'\n' => end += 2,
            b'\r' => end += 1,
            _ => end += 4,
        }
    }
    None
}

/// Returns whether the version is 1.0, and the status code.
fn parse_status_line(line: &[u8]) -> Result<(bool, u16), Malformed> {
    let http_1_0 = match line.get(..9) {
        Some(b"HTTP/1.1 ") => false,
        Some(b"HTTP/1.0 ") => true,
        _ => return Err(Malformed::StatusLine),
    };
    let code = line.get(9..12).ok_or(Malformed::StatusLine)?;
    // The reason phrase is optional, but a space must separate it from the code.
    if !code.iter().all(u8::is_ascii_digit) || line.get(12).is_some_and(|b| *b != b' ') {
        return Err(Malformed::StatusLine);
    }
    let status = code.iter().fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
    if !(100..=599).contains(&status) {
        return Err(Malformed::StatusLine);
    }
    Ok((http_1_0, status))
}

fn parse_length(value: &[u8]) -> Option<usize> {
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(value).ok()?.parse().ok()
}

fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t'))
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t'))
        .map_or(start, |i| i + 1);
    &bytes[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(text: &str) -> Result<Option<Head>, Malformed> {
        parse_head(text.as_bytes())
    }

    #[test]
    fn a_keep_alive_response_with_content_length() {
        let text = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Other: a:b\r\n\r\nhello";
        assert_eq!(
            head(text),
            Ok(Some(Head {
                status: 200,
                len: text.len() - 5,
                body: BodyLength::Known(5),
                close: false,
            }))
        );
    }

    #[test]
    fn connection_close_is_found_among_options_in_any_case() {
        let h =
            head("HTTP/1.1 503 Busy\r\nconnection: Upgrade, CLOSE\r\ncontent-length: 0\r\n\r\n");
        assert!(h.unwrap().unwrap().close);
    }

    #[test]
    fn http_1_0_closes_unless_it_says_keep_alive() {
        assert!(
            head("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n")
                .unwrap()
                .unwrap()
                .close
        );
        let kept = head("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n");
        assert!(!kept.unwrap().unwrap().close);
    }

    #[test]
    fn without_content_length_the_body_runs_until_close_except_where_it_cannot_exist() {
        let h = head("HTTP/1.1 200 OK\r\n\r\n").unwrap().unwrap();
        assert_eq!(h.body, BodyLength::UntilClose);
        let h = head("HTTP/1.1 204 No Content\r\n\r\n").unwrap().unwrap();
        assert_eq!(h.body, BodyLength::Known(0));
        let h = head("HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(h.body, BodyLength::Known(0));
    }

    #[test]
    fn the_reason_phrase_is_optional() {
        let h = head("HTTP/1.1 404\r\nContent-Length: 0\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(h.status, 404);
    }

    #[test]
    fn an_incomplete_head_asks_for_more() {
        assert_eq!(head(""), Ok(None));
        assert_eq!(head("HTT"), Ok(None));
        assert_eq!(head("HTTP/1.1 200 OK\r\nContent-Le"), Ok(None));
    }

    #[test]
    fn malformed_heads_are_named() {
        let cases = [
            ("SSH-2.0-OpenSSH\r\n", Malformed::StatusLine),
            ("HTTP/2 200\r\n\r\n", Malformed::StatusLine),
            ("HTTP/1.1 20x OK\r\n\r\n", Malformed::StatusLine),
            ("HTTP/1.1 2000 OK\r\n\r\n", Malformed::StatusLine),
            ("HTTP/1.1 099 Low\r\n\r\n", Malformed::StatusLine),
            ("HTTP/1.1 200 OK\r\nNoColon\r\n\r\n", Malformed::HeaderLine),
            ("HTTP/1.1 200 OK\r\nName : v\r\n\r\n", Malformed::HeaderLine),
            (
                "HTTP/1.1 200 OK\r\nA: b\r\n c\r\n\r\n",
                Malformed::HeaderLine,
            ),
            ("HTTP/1.1 200 OK\nA: b\r\n\r\n", Malformed::HeaderLine),
            ("HTTP/1.1 200 OK\r\n\nA: b\r\n\r\n", Malformed::HeaderLine),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
                Malformed::ContentLength,
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\n",
                Malformed::ContentLength,
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                Malformed::ContentLength,
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                Malformed::TransferEncoding,
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(head(text), Err(expected), "{text:?}");
        }
    }

    #[test]
    fn the_blank_line_search_agrees_with_the_naive_one() {
        // Every string of length 0..=9 over the bytes that matter, plus one that does not.
        let alphabet = [b'\r', b'\n', b'a'];
        for len in 0..=9u32 {
            for mut code in 0..3usize.pow(len) {
                let text: Vec<u8> = (0..len)
                    .map(|_| {
                        let b = alphabet[code % 3];
                        code /= 3;
                        b
                    })
                    .collect();
                let naive = text.windows(4).position(|w| w == b"\r\n\r\n");
                assert_eq!(find_blank_line(&text), naive, "{text:?}");
            }
        }
    }

    #[test]
    fn a_repeated_equal_content_length_is_accepted() {
        let h = head("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n");
        assert_eq!(h.unwrap().unwrap().body, BodyLength::Known(2));
    }

    #[test]
    fn failures_read_as_sentences() {
        let cases = [
            (Failure::ConnectRefused, "connection refused"),
            (
                Failure::Closed { reused: true },
                "connection closed before the response on a reused keep-alive connection",
            ),
            (
                Failure::Reset { reused: false },
                "connection reset before the response on a fresh connection",
            ),
            (
                Failure::Truncated { reused: false },
                "connection closed in the middle of the response on a fresh connection",
            ),
            (
                Failure::Timeout {
                    phase: Phase::Response,
                },
                "timed out waiting for the response",
            ),
            (
                Failure::Malformed(Malformed::TransferEncoding),
                "malformed response: `Transfer-Encoding` is not supported by this client",
            ),
        ];
        for (failure, text) in cases {
            assert_eq!(failure.to_string(), text);
        }
    }

    /// How a scripted server ends the exchange.
    #[derive(Clone, Copy)]
    enum End {
        /// Keeps the connection open (the client must not need the close).
        Keep,
        /// Closes normally (FIN).
        Close,
        /// Closes with the request still unread, which makes the kernel send a reset.
        ResetUnread,
    }

    /// One exchange against a loopback server that sends `chunks` with pauses between them
    /// (so the client sees them in separate reads), then ends as told.
    async fn scripted(chunks: &[&str], end: End) -> Result<(u16, String, bool), Failure> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let chunks: Vec<Vec<u8>> = chunks.iter().map(|c| c.as_bytes().to_vec()).collect();
        let server = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            if matches!(end, End::ResetUnread) {
                // Let the request arrive, leave it unread.
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            } else {
                let mut request = [0u8; 1024];
                let mut got = 0;
                while !request[..got].ends_with(b"\r\n\r\n") {
                    got += stream.read(&mut request[got..]).await.unwrap();
                }
            }
            for chunk in chunks {
                stream.write_all(&chunk).await.unwrap();
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            if matches!(end, End::Keep) {
                tokio::time::sleep(std::time::Duration::from_secs(5)).await;
            }
        });
        let mut stream = connect(addr).await?;
        let mut buf = RecvBuf::new();
        let result = tokio::time::timeout(
            std::time::Duration::from_secs(2),
            exchange(
                &mut stream,
                b"GET / HTTP/1.1\r\nHost: t\r\n\r\n",
                &mut buf,
                false,
            ),
        )
        .await
        .expect("the scripted exchange ends");
        server.abort();
        result.map(|r| {
            let body = String::from_utf8_lossy(buf.get(r.body)).into_owned();
            (r.status, body, r.reusable)
        })
    }

    #[tokio::test]
    async fn a_response_split_across_reads_is_reassembled() {
        let got = scripted(
            &[
                "HTTP/1.1 200 OK\r\nContent-Le",
                "ngth: 5\r\n\r",
                "\nhel",
                "lo",
            ],
            End::Keep,
        )
        .await;
        assert_eq!(got, Ok((200, "hello".into(), true)));
    }

    #[tokio::test]
    async fn an_interim_response_is_skipped() {
        let got = scripted(
            &[
                "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n",
                "HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok",
            ],
            End::Keep,
        )
        .await;
        assert_eq!(got, Ok((201, "ok".into(), true)));
    }

    #[tokio::test]
    async fn a_body_without_length_runs_until_the_close_and_ends_the_connection() {
        let got = scripted(&["HTTP/1.1 200 OK\r\n\r\nab", "cd"], End::Close).await;
        assert_eq!(got, Ok((200, "abcd".into(), false)));
    }

    #[tokio::test]
    async fn connection_close_or_unasked_bytes_make_the_connection_unusable() {
        let got = scripted(
            &["HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx"],
            End::Close,
        )
        .await;
        assert_eq!(got, Ok((200, "x".into(), false)));
        let got = scripted(
            &["HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nxJUNK"],
            End::Keep,
        )
        .await;
        assert_eq!(got, Ok((200, "x".into(), false)));
    }

    #[tokio::test]
    async fn a_close_before_any_byte_is_closed_and_after_some_is_truncated() {
        assert_eq!(
            scripted(&[], End::Close).await,
            Err(Failure::Closed { reused: false })
        );
        assert_eq!(
            scripted(
                &["HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"],
                End::Close
            )
            .await,
            Err(Failure::Truncated { reused: false })
        );
        assert_eq!(
            scripted(&["HTTP/1.1 200 OK\r\nContent-"], End::Close).await,
            Err(Failure::Truncated { reused: false })
        );
    }

    #[tokio::test]
    async fn a_request_left_unread_and_dropped_is_a_reset() {
        assert_eq!(
            scripted(&[], End::ResetUnread).await,
            Err(Failure::Reset { reused: false })
        );
    }

    #[tokio::test]
    async fn garbage_is_malformed_at_once_even_if_the_connection_stays_open() {
        assert_eq!(
            scripted(&["SSH-2.0-OpenSSH_9.2\r\n"], End::Keep).await,
            Err(Failure::Malformed(Malformed::StatusLine))
        );
    }

    #[tokio::test]
    async fn nothing_listening_is_refused() {
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        assert_eq!(connect(addr).await.err(), Some(Failure::ConnectRefused));
    }
}
