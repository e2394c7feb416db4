//! systemd's private socket, as zbus can read it.
//!
//! systemd stamps every message on its private (peer-to-peer) connections with the sender
//! `org.freedesktop.systemd1` (`sd_bus_set_sender`), so that clients that match on that name
//! work there as on the bus. The D-Bus specification lets only a bus set the sender, and only
//! to a unique name, and zbus refuses a message whose sender is anything else ("Invalid unique
//! name"): every reply would fail. This socket frames the messages itself and, before zbus
//! parses one, turns a sender that is a well-known name into a unique name of the same length
//! by making its first byte a `:` (`:rg.freedesktop.systemd1`). Nothing else is changed, and
//! sysmgr never looks at the sender on this connection. File descriptors are not passed:
//! none of the calls sysmgr makes sends or returns one.

use std::io;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use zbus::connection::socket::{BoxedSplit, ReadHalf, Split, WriteHalf};
use zbus::message::Message;
use zbus::wire::{serialized, Endian};

/// The fixed part of a message header, plus the length of the header fields array.
const FIXED_HEADER: usize = 16;
/// The header field that names the sender.
const SENDER_FIELD: u8 = 7;
/// The largest message the D-Bus specification allows.
const MAX_MESSAGE: usize = 128 * 1024 * 1024;

/// The two halves of a connected private socket, for `zbus::connection::Builder::socket`.
pub(super) fn split(stream: tokio::net::UnixStream) -> BoxedSplit {
    let (read, write) = stream.into_split();
    Split::new(Box::new(Reader(read)), Box::new(Writer(write)))
}

#[derive(Debug)]
struct Reader(OwnedReadHalf);

#[derive(Debug)]
struct Writer(OwnedWriteHalf);

fn eof() -> zbus::Error {
    zbus::Error::InputOutput(
        io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "systemd closed its private socket",
        )
        .into(),
    )
}

fn malformed(what: &str) -> zbus::Error {
    zbus::Error::InputOutput(
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a message from systemd's private socket {what}"),
        )
        .into(),
    )
}

fn padding(n: usize) -> usize {
    (8 - n % 8) % 8
}

fn read_u32(bytes: &[u8], big: bool) -> usize {
    let b = [bytes[0], bytes[1], bytes[2], bytes[3]];
    (if big {
        u32::from_be_bytes(b)
    } else {
        u32::from_le_bytes(b)
    }) as usize
}

/// The total length of the message whose fixed header is `head`, and whether it is big-endian.
fn message_len(head: &[u8; FIXED_HEADER]) -> Result<(usize, bool), zbus::Error> {
    let big = match head[0] {
        b'l' => false,
        b'B' => true,
        _ => return Err(malformed("has no valid byte order")),
    };
    let body = read_u32(&head[4..8], big);
    let fields = read_u32(&head[12..16], big);
    let header = FIXED_HEADER + fields;
    let total = header + padding(header) + body;
    if total > MAX_MESSAGE {
        return Err(malformed("is larger than D-Bus allows"));
    }
    Ok((total, big))
}

/// Makes a sender field that holds a well-known name hold a unique name of the same length.
/// Stops at anything it does not understand and leaves it for zbus to judge.
pub(super) fn patch_sender(msg: &mut [u8], big: bool) {
    if msg.len() < FIXED_HEADER {
        return;
    }
    let end = (FIXED_HEADER + read_u32(&msg[12..16], big)).min(msg.len());
    let mut pos = FIXED_HEADER;
    while pos + 4 <= end {
        let (code, signature) = (msg[pos], &msg[pos + 1..pos + 4]);
        let value = pos + 4;
        let next = match signature {
            // Strings and object paths: length, bytes, NUL.
            [1, b's' | b'o', 0] if value + 4 <= end => {
                let len = read_u32(&msg[value..value + 4], big);
                let name = value + 4;
                if code == SENDER_FIELD && len > 0 && name + len <= end && msg[name] != b':' {
                    msg[name] = b':';
                }
                name + len + 1
            }
            // A signature: one length byte, bytes, NUL.
            [1, b'g', 0] if value < end => value + 1 + msg[value] as usize + 1,
            [1, b'u', 0] => value + 4,
            _ => return,
        };
        pos = next + padding(next);
    }
}

#[async_trait::async_trait]
impl ReadHalf for Reader {
    async fn receive_message(
        &mut self,
        _seq: u64,
        already_received_bytes: &mut Vec<u8>,
        _already_received_fds: &mut Vec<std::os::fd::OwnedFd>,
    ) -> zbus::Result<Message> {
        let mut head = [0u8; FIXED_HEADER];
        let from_handshake = already_received_bytes.len().min(FIXED_HEADER);
        head[..from_handshake].copy_from_slice(&already_received_bytes[..from_handshake]);
        already_received_bytes.drain(..from_handshake);
        if from_handshake < FIXED_HEADER {
            self.0
                .read_exact(&mut head[from_handshake..])
                .await
                .map_err(|_| eof())?;
        }
        let (total, big) = message_len(&head)?;
        let mut bytes = Vec::with_capacity(total);
        bytes.extend_from_slice(&head);
        let take = (total - FIXED_HEADER).min(already_received_bytes.len());
        bytes.extend(already_received_bytes.drain(..take));
        let have = bytes.len();
        bytes.resize(total, 0);
        self.0
            .read_exact(&mut bytes[have..])
            .await
            .map_err(|_| eof())?;
        patch_sender(&mut bytes, big);
        let endian = if big { Endian::Big } else { Endian::Little };
        let data = serialized::Data::new(bytes, serialized::Context::new(endian, 0));
        // SAFETY: `from_bytes` parses and checks the header like any received message; its
        // body is checked when it is deserialized, as for every message zbus receives.
        unsafe { Message::from_bytes(data) }
    }

    async fn recvmsg(&mut self, buf: &mut [u8]) -> io::Result<(usize, Vec<std::os::fd::OwnedFd>)> {
        // The authentication handshake, before any message.
        Ok((self.0.read(buf).await?, Vec::new()))
    }
}

#[async_trait::async_trait]
impl WriteHalf for Writer {
    async fn sendmsg(
        &mut self,
        buffer: &[u8],
        fds: &[std::os::fd::BorrowedFd<'_>],
    ) -> io::Result<usize> {
        if !fds.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "sysmgr passes no file descriptors to systemd",
            ));
        }
        self.0.write(buffer).await
    }

    async fn close(&mut self) -> io::Result<()> {
        self.0.shutdown().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_well_known_sender_becomes_a_unique_name_of_the_same_length() {
        // A method return as systemd 252 sends it on /run/systemd/private: reply serial,
        // sender `org.freedesktop.systemd1`, an empty body.
        let sender = b"org.freedesktop.systemd1";
        let mut msg = vec![b'l', 2, 1, 1, 0, 0, 0, 0, 7, 0, 0, 0];
        let mut fields = vec![5, 1, b'u', 0, 3, 0, 0, 0];
        fields.extend_from_slice(&[SENDER_FIELD, 1, b's', 0]);
        fields.extend_from_slice(&(sender.len() as u32).to_le_bytes());
        fields.extend_from_slice(sender);
        fields.push(0);
        msg.extend_from_slice(&(fields.len() as u32).to_le_bytes());
        msg.extend_from_slice(&fields);
        msg.resize(msg.len() + padding(msg.len()), 0);
        patch_sender(&mut msg, false);
        let text = String::from_utf8_lossy(&msg);
        assert!(text.contains(":rg.freedesktop.systemd1"), "{text:?}");
        let (total, big) = message_len(msg[..16].try_into().unwrap()).unwrap();
        assert_eq!((total, big), (msg.len(), false));
        let data = serialized::Data::new(msg, serialized::Context::new(Endian::Little, 0));
        // SAFETY: a test message built above.
        let parsed = unsafe { Message::from_bytes(data) }.unwrap();
        assert_eq!(
            parsed.header().sender().unwrap().as_str(),
            ":rg.freedesktop.systemd1"
        );
    }
}
