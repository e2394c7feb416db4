//! The cheapest HTTP/1.1 server that still behaves: it answers every request with the same
//! fixed keep-alive response (or closes after it when the request says `Connection: close`).
//!
//! It exists to measure the load client's own ceiling: against it the client, not the server,
//! should be what limits throughput. Run `cargo run --release --example fixed_server -- ADDR
//! [THREADS]` and point `sysmgr-load` at ADDR.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n";
const RESPONSE_CLOSE: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n";

fn main() {
    let mut args = std::env::args().skip(1);
    let addr: SocketAddr = args
        .next()
        .unwrap_or_else(|| "127.0.0.1:3999".into())
        .parse()
        .expect("usage: fixed_server ADDR [THREADS]");
    let threads: usize = args
        .next()
        .map_or(1, |t| t.parse().expect("THREADS is a number"));
    let rt = if threads > 1 {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    }
    .expect("a runtime starts");
    rt.block_on(async {
        let listener = TcpListener::bind(addr).await.expect("the address is free");
        eprintln!("fixed_server: listening on {addr} with {threads} thread(s)");
        loop {
            if let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream));
            }
        }
    });
}

async fn serve(mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut buf = vec![0u8; 8192];
    let mut filled = 0;
    loop {
        // Answer every complete request in the buffer (requests are GETs without bodies).
        while let Some(end) = buf[..filled].windows(4).position(|w| w == b"\r\n\r\n") {
            let close = buf[..end]
                .windows(17)
                .any(|w| w.eq_ignore_ascii_case(b"connection: close"));
            let response = if close { RESPONSE_CLOSE } else { RESPONSE };
            if stream.write_all(response).await.is_err() || close {
                return;
            }
            buf.copy_within(end + 4..filled, 0);
            filled -= end + 4;
        }
        if filled == buf.len() {
            return;
        }
        match stream.read(&mut buf[filled..]).await {
            Ok(0) | Err(_) => return,
            Ok(n) => filled += n,
        }
    }
}
