//! One listener and one stream type over TCP and unix sockets, for tokio.
//!
//! A sysmgr socket is TCP (IPv4 or IPv6) or a unix stream socket, decided by the unit, not by
//! the program; these two enums let a server accept from either without being generic over it.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};

use crate::listen::unix_addr_string;

/// A tokio listener on a TCP or unix stream socket; made by [`Listener::into_tokio`](crate::Listener::into_tokio).
#[derive(Debug)]
pub enum TokioListener {
    /// TCP, IPv4 or IPv6.
    Tcp(TcpListener),
    /// Unix stream socket.
    Unix(UnixListener),
}

impl TokioListener {
    /// Accepts one connection. TCP connections get `TCP_NODELAY`: responses are written whole,
    /// and Nagle's algorithm would only delay the last segment of each.
    pub async fn accept(&self) -> io::Result<TokioStream> {
        match self {
            Self::Tcp(l) => {
                let (stream, _) = l.accept().await?;
                // Best effort: a failure here only costs latency.
                let _ = stream.set_nodelay(true);
                Ok(TokioStream::Tcp(stream))
            }
            Self::Unix(l) => Ok(TokioStream::Unix(l.accept().await?.0)),
        }
    }

    /// The address, printable for logs.
    pub fn local_addr(&self) -> io::Result<String> {
        Ok(match self {
            Self::Tcp(l) => l.local_addr()?.to_string(),
            Self::Unix(l) => unix_addr_string(&l.local_addr()?.into()),
        })
    }
}

impl From<TcpListener> for TokioListener {
    fn from(l: TcpListener) -> Self {
        Self::Tcp(l)
    }
}

impl From<UnixListener> for TokioListener {
    fn from(l: UnixListener) -> Self {
        Self::Unix(l)
    }
}

impl AsFd for TokioListener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Self::Tcp(l) => l.as_fd(),
            Self::Unix(l) => l.as_fd(),
        }
    }
}

/// An accepted connection, TCP or unix.
#[derive(Debug)]
pub enum TokioStream {
    /// TCP.
    Tcp(TcpStream),
    /// Unix stream socket.
    Unix(UnixStream),
}

impl AsRawFd for TokioStream {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            Self::Tcp(s) => s.as_raw_fd(),
            Self::Unix(s) => s.as_raw_fd(),
        }
    }
}

impl AsyncRead for TokioStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Self::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for TokioStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Self::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Self::Unix(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Tcp(s) => s.is_write_vectored(),
            Self::Unix(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_flush(cx),
            Self::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Self::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
